"""Blind estimation: grid posteriors equal the exact ones from measurement-space evidences.

Reference: ``measurement_posterior(GaussianMixtureEnergy, y, physics).log_evidence`` for each
candidate physics (dense, float64), plus the fill density for the box family. Tolerance 1e-4
nats: the energy-path evidence differs from the exact one only through lam_max = 1e6, by at
most E|x_u|^2 / (2 lam_max) <~ 36 * 1 / 2e6 ~ 2e-5 (see tests/test_problems.py).
"""

import math

import deepinv as dinv
import pytest
import torch

from deepinv_energy.testing import measurement_posterior
from deepinv_energy import (
    BlindEstimator,
    BoxInpaintingFamily,
    DenoisingFamily,
    GaussianBlurFamily,
    MotionBlurFamily,
    OperatorFamily,
    UnsupportedPhysicsError,
    to_denoising_problem,
)
from helpers import random_mixture

SHAPE = (1, 6, 6)
LAM_MAX = 1e6


@pytest.fixture(scope="module")
def model():
    return random_mixture(SHAPE, k=3, seed=50)


def exact_log_posterior(model, family, y, extra=None):
    theta = family.candidates()
    n = next(iter(theta.values())).shape[0]
    ev = torch.empty(y.shape[0], n, dtype=torch.float64)
    for i in range(n):
        t = {k: v[i : i + 1].expand(y.shape[0]) for k, v in theta.items()}
        physics = family.physics(t)
        y_model = y if extra is None else y * physics.mask  # the physics' part of the measurement
        ev[:, i] = measurement_posterior(model, y_model, physics).log_evidence
        if extra is not None:
            ev[:, i] += extra(y, t)
    return ev, ev - torch.logsumexp(ev, dim=1, keepdim=True)


def simulate(model, family, truth, seed):
    x = model.sample_prior(len(next(iter(truth.values()))), generator=torch.Generator().manual_seed(seed))
    theta = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in truth.items()}
    return family.measure(x, theta, generator=torch.Generator().manual_seed(seed + 1))


def check(model, family, y, extra=None):
    est = BlindEstimator(model, family, lam_max=LAM_MAX, batch_size=7)
    post = est.posterior(y)
    ev, lp = exact_log_posterior(model, family, y, extra)
    assert torch.allclose(post.log_evidence, ev, atol=1e-4), (post.log_evidence - ev).abs().max()
    assert torch.allclose(post.log_posterior, lp, atol=1e-4)
    return post


def test_blur_width_and_noise_joint(model):
    family = GaussianBlurFamily(SHAPE, widths=[0.4, 0.7, 1.0, 1.5, 2.2], noise=[0.02, 0.05, 0.1])
    y = simulate(model, family, {"width": [0.7, 1.5], "noise": [0.05, 0.02]}, seed=1)
    post = check(model, family, y)
    # nuisance marginalization is a logsumexp over the other axis
    values, lm = post.marginal("width")
    manual = torch.logsumexp(post.log_posterior.reshape(2, 5, 3), dim=2)
    assert torch.allclose(values, torch.tensor([0.4, 0.7, 1.0, 1.5, 2.2], dtype=torch.float64))
    assert torch.allclose(lm, manual)


def test_motion_blur_length_angle_noise(model):
    family = MotionBlurFamily(SHAPE, lengths=[1.0, 2.5, 4.0], angles=[0.0, 45.0, 90.0, 135.0], noise=[0.02, 0.08])
    y = simulate(model, family, {"length": [4.0, 2.5], "angle": [45.0, 90.0], "noise": [0.02, 0.08]}, seed=7)
    post = check(model, family, y)
    values, lm = post.marginal("angle")
    assert lm.shape == (2, 4) and torch.allclose(lm.exp().sum(1), torch.ones(2, dtype=torch.float64))


def test_line_kernel():
    from deepinv_energy.blind import line_kernel

    size = (1, 15, 15)
    k = line_kernel(torch.tensor([0.0, 6.0, 6.0, 6.0], dtype=torch.float64),
                    torch.tensor([0.0, 0.0, 90.0, 180.0], dtype=torch.float64), size)
    assert k.shape == (4, 1, 15, 15)
    assert torch.allclose(k.sum((-2, -1)), torch.ones(4, 1, dtype=torch.float64))
    c = 7  # centre
    # length 0: an isotropic spot; horizontal line: spread along the centre row; 90 degrees: along the column
    assert torch.allclose(k[0], k[0].transpose(-1, -2))
    assert k[1, 0, c, c + 3] > 20 * k[1, 0, c + 3, c] and k[2, 0, c + 3, c] > 20 * k[2, 0, c, c + 3]
    torch.testing.assert_close(k[1], k[3])  # modulo 180 degrees
    # second moment along the line: a uniform segment of length L has variance L^2 / 12, plus the spot's 0.25
    j = torch.arange(15, dtype=torch.float64) - c
    var = (k[1, 0].sum(0) * j**2).sum()
    assert abs(var - (36 / 12 * 42 / 40 + 0.25)) < 0.02  # 41 points: discrete uniform variance L^2 (P+1)/(12 (P-1))
    # differentiable in length and angle
    length = torch.tensor([3.0], dtype=torch.float64, requires_grad=True)
    angle = torch.tensor([30.0], dtype=torch.float64, requires_grad=True)
    torch.autograd.grad((line_kernel(length, angle, size) ** 2).sum(), (length, angle))


def test_denoising_noise_level(model):
    family = DenoisingFamily(SHAPE, noise=torch.linspace(0.05, 0.5, 10))
    y = simulate(model, family, {"noise": [0.1, 0.3]}, seed=2)
    check(model, family, y)


def test_edge_mass(model):
    """Noise 0.3 and 0.4 on a grid that stops at 0.2: the exact posterior piles on 0.2, and
    edge_mass reports the marginal's mass on each end of the grid."""
    short = DenoisingFamily(SHAPE, noise=torch.linspace(0.05, 0.2, 4))
    y = simulate(model, short, {"noise": [0.3, 0.4]}, seed=12)
    post = check(model, short, y)
    low, high = post.edge_mass("noise")
    p = post.log_posterior.exp()
    assert torch.allclose(low, p[:, 0]) and torch.allclose(high, p[:, -1])
    assert (high > 0.5).all() and (low < 0.01).all()


def test_box_size_and_position_noisy_fill(model):
    family = BoxInpaintingFamily(SHAPE, sizes=[1, 2, 3], noise=0.02, fill_mean=0.5, fill_std=0.05)

    def fill(y, t):
        box = family.box(t, y).expand_as(y)
        r = (y - 0.5)[box].reshape(y.shape[0], -1)
        return (-0.5 * r**2 / 0.0025 - 0.5 * math.log(2 * math.pi * 0.0025)).sum(1)

    y = simulate(model, family, {"size": [2, 3], "top": [1, 3], "left": [2, 0], "noise": [0.02, 0.02]}, seed=3)
    post = check(model, family, y, extra=fill)
    assert post.map()["size"].tolist() == [2.0, 3.0]


def test_box_position_constant_fill(model):
    family = BoxInpaintingFamily(SHAPE, sizes=[2], noise=0.02, fill_mean=0.0, fill_std=0.0)

    def fill(y, t):
        box = family.box(t, y).expand_as(y)
        ok = ((y * box).abs() <= 1e-6).flatten(1).all(1)
        return torch.where(ok, 0.0, -math.inf).double()

    y = simulate(model, family, {"size": [2, 2], "top": [0, 4], "left": [3, 1], "noise": [0.02, 0.02]}, seed=4)
    est = BlindEstimator(model, family, lam_max=LAM_MAX)
    post = est.posterior(y)
    ev, lp = exact_log_posterior(model, family, y, fill)
    finite = torch.isfinite(lp)
    assert torch.equal(finite, torch.isfinite(post.log_posterior))
    assert torch.allclose(post.log_posterior[finite], lp[finite], atol=1e-4)
    assert post.map()["top"].tolist() == [0.0, 4.0] and post.map()["left"].tolist() == [3.0, 1.0]


def test_posterior_summaries():
    family = DenoisingFamily(SHAPE, noise=[0.1, 0.2, 0.3, 0.4])
    from deepinv_energy.blind import BlindPosterior

    lp = torch.log(torch.tensor([[0.1, 0.6, 0.25, 0.05]], dtype=torch.float64))
    post = BlindPosterior(family.candidates(), lp, lp)
    assert torch.allclose(post.mean("noise"), torch.tensor([0.225], dtype=torch.float64))
    lo, hi = post.credible_interval("noise", 0.8)  # tails of 0.1 each
    assert lo.item() == pytest.approx(0.2) and hi.item() == pytest.approx(0.3)
    lo, hi = post.credible_interval("noise", 0.95)
    assert lo.item() == pytest.approx(0.1) and hi.item() == pytest.approx(0.4)
    assert post.map()["noise"].item() == pytest.approx(0.2)


def test_refine_reaches_a_stationary_point(model):
    family = GaussianBlurFamily(SHAPE, widths=[0.5, 1.0, 2.0], noise=0.05)
    y = simulate(model, family, {"width": [1.3], "noise": [0.05]}, seed=5)
    est = BlindEstimator(model, family, lam_max=LAM_MAX)
    post = est.posterior(y)
    best = est.refine(y, post.map(), params=["width"], steps=150, lr=0.05)
    w = best["width"].item()

    def exact(width):
        t = {"width": torch.tensor([width], dtype=torch.float64), "noise": torch.tensor([0.05], dtype=torch.float64)}
        return measurement_posterior(model, y, family.physics(t)).log_evidence.item()

    assert exact(w) >= post.log_evidence.max().item() - 1e-6
    eps = 1e-4
    slope = (exact(w + eps) - exact(w - eps)) / (2 * eps)
    curvature = (exact(w + eps) - 2 * exact(w) + exact(w - eps)) / eps**2
    assert abs(slope / curvature) < 1e-2  # within a hundredth of a pixel of the maximum


def test_bad_inputs(model):
    with pytest.raises(ValueError, match="empty"):
        DenoisingFamily(SHAPE, noise=[])
    with pytest.raises(ValueError, match="non-finite"):
        GaussianBlurFamily(SHAPE, widths=[1.0, float("nan")])
    with pytest.raises(ValueError, match="single box size"):
        BoxInpaintingFamily(SHAPE, sizes=[1, 2], fill_std=0.0)
    family = DenoisingFamily(SHAPE, noise=[0.1, 0.2])
    with pytest.raises(ValueError, match="zero on the whole grid"):
        BlindEstimator(model, family, log_prior=lambda t: torch.full_like(t["noise"], -math.inf))

    class ValidBlur(OperatorFamily):
        def physics(self, theta):
            return dinv.physics.Blur(filter=torch.ones(1, 1, 3, 3, dtype=torch.float64) / 9, padding="valid")

    calls = []
    model_spy = random_mixture(SHAPE, seed=51)
    model_spy.register_forward_pre_hook(lambda *a: calls.append(1))
    with pytest.raises(UnsupportedPhysicsError):
        BlindEstimator(model_spy, ValidBlur(SHAPE, {"w": [1.0]}))
    assert not calls
    with pytest.raises(ValueError, match="continuous"):
        BlindEstimator(model, BoxInpaintingFamily(SHAPE, sizes=[2])).refine(
            torch.zeros(1, *SHAPE, dtype=torch.float64), {"size": 2, "top": 0, "left": 0, "noise": 0.0}, params=["size"]
        )
    est = BlindEstimator(model, GaussianBlurFamily(SHAPE, widths=[0.5, 1.0], noise=0.05))
    y = torch.rand(1, *SHAPE, dtype=torch.float64)
    with pytest.raises(ValueError, match="init\\['width'\\] must be positive"):  # returned NaN
        est.refine(y, {"width": 0.0, "noise": 0.05}, params=["width"], steps=2)
    with pytest.raises(ValueError, match="init lacks \\['noise'\\]"):
        est.refine(y, {"width": 1.0}, params=["width"], steps=2)
    with pytest.raises(ValueError, match="empty batch"):
        est.posterior(y[:0])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_float32_unet_takes_other_dtypes(dtype):
    from deepinv_energy import EnergyUNet

    net = EnergyUNet(channels=1, height=8, width_px=8, base_channels=8, mult=(1, 2))
    est = BlindEstimator(net, GaussianBlurFamily((1, 8, 8), widths=[0.5, 1.0], noise=0.05))
    y = torch.rand(2, 1, 8, 8).to(dtype).float()  # representable in dtype
    post = est.posterior(y.to(dtype))
    assert torch.allclose(post.log_posterior, est.posterior(y).log_posterior, atol=1e-3)
    theta = est.refine(y.to(dtype), post.map(), params=["width"], steps=2)
    assert theta["width"].dtype == dtype and torch.isfinite(theta["width"].float()).all()


def test_credible_intervals_are_calibrated():
    """With the exact model and theta drawn from the (uniform) prior, p(theta | y) is the true
    posterior, so level-0.8 intervals cover the truth at least 80 % of the time (grid intervals
    are conservative); 400 trials give a binomial standard error of 2 %."""
    model = random_mixture((1, 4, 4), k=2, seed=60)
    grid = torch.linspace(0.05, 0.4, 8, dtype=torch.float64)
    family = GaussianBlurFamily((1, 4, 4), widths=[0.6], noise=grid)
    n = 400
    truth = grid[torch.randint(0, 8, (n,), generator=torch.Generator().manual_seed(0))]
    y = family.measure(
        model.sample_prior(n, generator=torch.Generator().manual_seed(1)),
        {"width": torch.full((n,), 0.6, dtype=torch.float64), "noise": truth},
        generator=torch.Generator().manual_seed(2),
    )
    post = BlindEstimator(model, family, lam_max=LAM_MAX, batch_size=512).posterior(y)
    lo, hi = post.credible_interval("noise", 0.8)
    coverage = ((truth >= lo - 1e-12) & (truth <= hi + 1e-12)).double().mean().item()
    assert coverage >= 0.8 - 3 * 0.02, coverage
    assert (hi - lo).mean() < 0.3  # and the intervals are informative


def test_joint_restoration_marginalizes_the_operator():
    """Draws with theta ~ p(theta | y) sample p(x | y) = sum_theta p(theta | y) p(x | y, theta):
    their mean matches the exact mixture of posterior means within 5 standard errors."""
    from deepinv_energy.sampling import PredictorCorrectorSampler

    model = random_mixture((1, 4, 4), k=2, seed=70)
    family = DenoisingFamily((1, 4, 4), noise=[0.2, 0.3])  # posterior weights about 0.42 / 0.58
    y = family.measure(model.sample_prior(1, generator=torch.Generator().manual_seed(0)),
                       {"noise": torch.tensor([0.3], dtype=torch.float64)}, generator=torch.Generator().manual_seed(1))
    est = BlindEstimator(model, family, lam_max=LAM_MAX)
    post = est.posterior(y)
    sampler = PredictorCorrectorSampler(model, n_levels=40, n_corrector=0, predictor="covariance")
    x, theta = est.restore(y, sampler, n=600, seed=2, posterior=post)
    assert x.shape == (600, 1, 1, 4, 4) and theta["noise"].shape == (600, 1)
    w = post.log_posterior[0].exp()
    exact = sum(w[i] * measurement_posterior(model, y, family.physics({"noise": post.theta["noise"][i : i + 1]})).mean()
                for i in range(2))
    se = x.std(0) / 600**0.5
    assert ((x.mean(0) - exact).abs() < 5 * se + 1e-3).all()
    # (the operator frequencies are checked exactly in test_joint_restoration_draws_operators_from_the_posterior)
    xm, tm = est.restore(y, sampler, n=4, mode="map", seed=2, posterior=post)
    assert (tm["noise"] == post.map()["noise"]).all()


@pytest.mark.parametrize("joint", [False, True])
def test_blur_evidences_exact_at_the_default_lam_max(model, joint):
    """At the DEFAULT lam_max (1e3), weakly observed blur frequencies (sigma^2/|K|^2 > lam_max) kept
    as observed up to lam_weak = 1e6 make evidences exact to 1e-3 nats; treating them as pure noise
    (lam_weak=None) errs at first order (measured here: 3.4e-2 nats for widths, 1.4e-2 for width x noise)."""
    widths = [0.4, 0.7, 1.0, 1.5, 2.2]
    family = GaussianBlurFamily(SHAPE, widths=widths, noise=[0.01, 0.03, 0.1] if joint else 0.02)
    truth = {"width": [0.7, 1.5, 2.2], "noise": [0.01, 0.03, 0.01] if joint else [0.02] * 3}
    y = simulate(model, family, truth, seed=11)
    ev, _ = exact_log_posterior(model, family, y)
    err = (BlindEstimator(model, family).posterior(y).log_evidence - ev).abs().max().item()
    assert err < 1e-3, err
    err_noise = (BlindEstimator(model, family, lam_weak=None).posterior(y).log_evidence - ev).abs().max().item()
    assert err_noise > 3e-3, err_noise  # what the weak frequencies carry at this lam_max
    with pytest.raises(ValueError, match="lam_weak"):
        to_denoising_problem(y, family.physics({k: v[:1] for k, v in family.candidates().items()}), lam_weak=10.0)


class _RecordingSampler:
    """A stand-in sampler that returns, for each draw, its measurement with the first pixel replaced
    by the noise level of the physics it was given: what restore() paired with what."""

    def draw(self, y, physics, n=1, seed=0):
        from types import SimpleNamespace

        x = y.clone()
        x[:, 0, 0, 0] = physics.noise_model.sigma.reshape(-1).to(y)
        return SimpleNamespace(x=x.unsqueeze(0))


def test_joint_restoration_draws_operators_from_the_posterior():
    """restore(mode="posterior") draws theta_j ~ p(theta | y) for each measurement: over 20000 draws
    the counts of the 4 noise levels match n p(theta | y) (chi-square with 3 degrees of freedom
    below 21.1, its 0.9999 quantile, for each of 3 measurements whose posteriors, 0.02-0.64, are far
    from uniform: measured 0.5-2.5; drawing uniformly gives 4e4-7e4, always the MAP 1e4-2e4), and each draw's
    physics and measurement are the ones its theta belongs to. mode="map" uses the MAP for all."""
    model = random_mixture((1, 4, 4), k=2, seed=70)
    family = DenoisingFamily((1, 4, 4), noise=[0.1, 0.2, 0.3, 0.45])
    y = family.measure(model.sample_prior(3, generator=torch.Generator().manual_seed(0)),
                       {"noise": torch.tensor([0.3, 0.15, 0.25], dtype=torch.float64)},
                       generator=torch.Generator().manual_seed(1))
    est = BlindEstimator(model, family, lam_max=LAM_MAX)
    post = est.posterior(y)
    w = post.log_posterior.exp()
    assert w.min() < 0.05 and w.max() > 0.5  # far from uniform (and not a point mass)
    n = 20000
    x, theta = est.restore(y.float(), _RecordingSampler(), n=n, seed=3, posterior=post)
    assert x.shape == (n, 3, 1, 4, 4) and theta["noise"].shape == (n, 3)
    grid = post.theta["noise"]
    counts = (theta["noise"].unsqueeze(-1) == grid).double().sum(0)  # (3 measurements, 4 levels)
    assert torch.equal(counts.sum(1), torch.full((3,), float(n), dtype=torch.float64))
    chi2 = ((counts - n * w) ** 2 / (n * w)).sum(1)
    assert (chi2 < 21.1).all(), (chi2, counts / n, w)
    torch.testing.assert_close(x[:, :, 0, 0, 0].double(), theta["noise"], rtol=1e-6, atol=0)  # draw j used theta_j
    torch.testing.assert_close(x.flatten(2)[..., 1:], y.float().flatten(1)[:, 1:].expand(n, 3, 15))  # ... and y_b
    _, tm = est.restore(y.float(), _RecordingSampler(), n=5, mode="map", posterior=post)
    assert torch.equal(tm["noise"], post.map()["noise"].expand(5, 3))


@pytest.mark.parametrize("family", [
    GaussianBlurFamily(SHAPE, widths=[0.5, 1.0, 2.0], noise=[0.01, 0.1], dtype=torch.float64),
    MotionBlurFamily(SHAPE, lengths=[1.0, 3.0], angles=[0.0, 45.0, 90.0], noise=0.05, dtype=torch.float64),
    BoxInpaintingFamily(SHAPE, sizes=[2, 3], noise=0.02, dtype=torch.float64),
    DenoisingFamily(SHAPE, noise=[0.05, 0.1, 0.2], dtype=torch.float64),
])
def test_families_are_deepinv_physics_generators(family):
    """``step`` draws admissible grid values uniformly (seeded; chi-square over 3000 draws below the
    0.999 quantile), and deepinv's ``physics.update(**params)`` turns any physics of the family into
    ``family.physics(theta)`` (same A, same noise level)."""
    assert isinstance(family, dinv.physics.generator.PhysicsGenerator)
    a, b = family.step(batch_size=5, seed=3), family.step(batch_size=5, seed=3)
    assert all(torch.equal(a["theta"][k], b["theta"][k]) for k in family.names)
    cand = family.candidates()
    keys = torch.stack([cand[k] for k in family.names], 1)
    draws = family.step(batch_size=3000, seed=0)["theta"]
    hits = (torch.stack([draws[k] for k in family.names], 1)[:, None] == keys[None]).all(-1)
    assert (hits.sum(1) == 1).all()  # every draw is one admissible candidate
    counts, n = hits.sum(0).double(), keys.shape[0]
    chi2 = ((counts - 3000 / n) ** 2 / (3000 / n)).sum().item()
    k = n - 1  # the chi-square's 0.999 quantile (Wilson-Hilferty; z = 3.09)
    assert chi2 < k * (1 - 2 / (9 * k) + 3.09 * math.sqrt(2 / (9 * k))) ** 3, (chi2, n)
    params = family.step(batch_size=4, seed=1)
    physics = family.physics({k: v[:1].expand(4) for k, v in cand.items()})
    physics.update(**params)
    ref = family.physics(params["theta"])
    x = torch.rand(4, *SHAPE, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert torch.allclose(physics.A(x), ref.A(x), atol=1e-12)
    if not isinstance(family, BoxInpaintingFamily):
        assert torch.equal(physics.noise_model.sigma.reshape(-1), ref.noise_model.sigma.reshape(-1))


# ---------------------------------------------------------------- grids, circular parameters, bad input
def test_edge_mass_on_a_two_dimensional_grid():
    """edge_mass reads the parameter's marginal, not the joint grid: on a (width x noise) grid the
    smallest width has marginal mass 0.7 while the joint grid's first point (smallest width and
    smallest noise) has 0.1, and the joint grid's last point differs from the largest width's mass."""
    from deepinv_energy.blind import BlindPosterior

    family = GaussianBlurFamily(SHAPE, widths=[0.5, 1.0, 2.0], noise=[0.01, 0.05])
    theta = family.candidates()  # width-major: (0.5, .01), (0.5, .05), (1, .01), (1, .05), (2, .01), (2, .05)
    p = torch.tensor([[0.1, 0.6, 0.05, 0.05, 0.15, 0.05]], dtype=torch.float64)
    post = BlindPosterior(theta, p.log(), p.log())
    low, high = post.edge_mass("width")
    assert low.item() == pytest.approx(0.7) and high.item() == pytest.approx(0.2)
    low, high = post.edge_mass("noise")
    assert low.item() == pytest.approx(0.3) and high.item() == pytest.approx(0.7)


def test_circular_angle_statistics():
    """Angles are directions modulo 180: mass split between 0 and 170 degrees has circular mean 175
    (not 85) and a 90 % interval [170, 180]; a posterior concentrated on one angle gives that angle."""
    from deepinv_energy.blind import BlindPosterior

    family = MotionBlurFamily(SHAPE, lengths=[2.0], angles=[0, 45, 90, 135, 170])
    theta = family.candidates()
    p = torch.tensor([[0.5, 0.0, 0.0, 0.0, 0.5], [0.0, 0.1, 0.8, 0.1, 0.0]], dtype=torch.float64)
    post = BlindPosterior(theta, p.log(), p.log(), periods=family.periods)
    assert post.mean("angle").tolist() == pytest.approx([175.0, 90.0])
    lo, hi = post.credible_interval("angle", 0.9)
    assert lo.tolist() == pytest.approx([170.0, 45.0]) and hi.tolist() == pytest.approx([180.0, 135.0])
    with pytest.raises(ValueError, match="circular"):
        post.edge_mass("angle")
    # the linear statistics (no period) are the ones the issue reported: mean 85
    linear = BlindPosterior(theta, p.log(), p.log())
    assert linear.mean("angle")[0].item() == pytest.approx(85.0)
    with pytest.raises(ValueError, match="unknown parameter"):
        post.mean("angel")


def test_circular_mean_float64_closed_form():
    """Circular mean on a fine grid of a wrapped distribution centred at 178 degrees (= -2): the
    doubled-angle mean equals the centre to rounding for any symmetric weights."""
    from deepinv_energy.blind import BlindPosterior

    angles = torch.arange(0, 180, 1.0, dtype=torch.float64)
    d = torch.remainder(angles - 178 + 90, 180) - 90
    w = torch.exp(-0.5 * (d / 7) ** 2)
    lp = (w / w.sum()).log()[None]
    post = BlindPosterior({"angle": angles}, lp, lp, periods={"angle": 180.0})
    assert post.mean("angle").item() == pytest.approx(178.0, abs=1e-9)


@pytest.mark.parametrize("angles,expected", [([0.0, 45.0, 90.0, 135.0, 180.0], [0.0, 45.0, 90.0, 135.0]),
                                             ([-45.0, 135.0, 10.0], [10.0, 135.0]),
                                             ([360.0, 30.0, 0.0], [0.0, 30.0])])
def test_motion_angles_equal_modulo_180_are_merged(angles, expected):
    with pytest.warns(UserWarning, match="same direction modulo 180"):
        family = MotionBlurFamily(SHAPE, lengths=[2.0], angles=angles)
    assert family.grid["angle"].tolist() == pytest.approx(expected)


def test_cli_angle_grid_through_180_is_circular(model):
    """The issue's case: angles 0:180:13 with truth 0 -> one candidate per direction and a circular
    mean near 0 (or 180), never 90."""
    family = MotionBlurFamily(SHAPE, lengths=[2.0], angles=torch.linspace(0, 165, 12), noise=0.02)
    y = simulate(model, family, {"length": [2.0], "angle": [0.0], "noise": [0.02]}, seed=30)
    with pytest.warns(UserWarning, match="13 values but only 12 distinct"):
        wide = MotionBlurFamily(SHAPE, lengths=[2.0], angles=torch.linspace(0, 180, 13), noise=0.02)
    post = BlindEstimator(model, wide, lam_max=LAM_MAX).posterior(y)
    m = post.mean("angle").item()
    assert min(m, 180 - m) < 30


@pytest.mark.parametrize("make", [
    lambda: GaussianBlurFamily(SHAPE, widths=[0.8, 0.95, 0.95, 0.95, 1.1]),
    lambda: DenoisingFamily(SHAPE, noise=[0.1, 0.1]),
    lambda: BoxInpaintingFamily(SHAPE, sizes=[2, 2], noise=0.01),
])
def test_duplicated_grid_values_are_merged_with_a_warning(make):
    with pytest.warns(UserWarning, match="duplicates merged"):
        family = make()
    for v in family.grid.values():
        assert torch.equal(v, torch.unique(v))


@pytest.mark.parametrize("kwargs,match", [
    (dict(sizes=[5], tops=[-1]), "tops must be integers >= 0"),
    (dict(sizes=[2.5]), "sizes must be integers >= 1"),
    (dict(sizes=[0]), "sizes must be integers >= 1"),
    (dict(sizes=[2], lefts=[0.5]), "lefts must be integers >= 0"),
    (dict(sizes=[2], noise=-0.1), "noise"),
])
def test_box_family_refuses_bad_grids(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BoxInpaintingFamily(SHAPE, **kwargs)


@pytest.mark.parametrize("batch_size", [-1, 0, 1.5, True])
def test_family_step_refuses_bad_batch_size(batch_size):
    family = GaussianBlurFamily(SHAPE, widths=[0.5, 1.0])
    with pytest.raises(ValueError, match="batch_size"):
        family.step(batch_size=batch_size)


def test_box_family_refuses_a_box_that_never_fits():
    with pytest.raises(ValueError, match="fits the 6x6 image"):
        BoxInpaintingFamily(SHAPE, sizes=[7])


def test_fit_check_flags_a_family_that_does_not_explain_the_measurement(model):
    """Exact energy: measurements of noise 0.1 score like re-simulated ones under a grid holding 0.1 (deficit
    ~0 nats/pixel), measurements of noise 0.6 far below under a grid stopping at 0.15."""
    family = DenoisingFamily(SHAPE, noise=[0.05, 0.1, 0.15])
    est = BlindEstimator(model, family, lam_max=LAM_MAX)
    good = est.fit_check(simulate(model, family, {"noise": [0.1] * 4}, seed=40).float())
    bad = est.fit_check(simulate(model, family, {"noise": [0.6] * 4}, seed=41).float())
    assert good["deficit"].abs().max() < 0.25 and bad["deficit"].min() > 1.0, (good["deficit"], bad["deficit"])
    assert torch.allclose(good["deficit"], (good["reference"] - good["log_evidence"]) / 36)
