"""Tests of the training stack: covariance distribution, loss, trainer (resume, signals, DDP)."""

import math
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from deepinv_energy.covariance import Covariance
from deepinv_energy.models.base import EnergyModel
from deepinv_energy.problems import to_denoising_problem
from deepinv_energy.training import (
    ALL_FAMILIES,
    DEFAULT_FAMILIES,
    DEFAULT_HOLDOUT,
    BLUR_FAMILIES,
    CovarianceDistribution,
    TrainConfig,
    Trainer,
    blur_spectrum,
    build_parser,
    covariance_score_matching_loss,
    normalize_model,
    train,
)
from deepinv_energy.training.trainer import config_from_args, load_checkpoint



# ---------------------------------------------------------------------------- distribution
def test_default_holdout():
    assert set(DEFAULT_HOLDOUT) == {"motion_blur", "bands"}
    assert not set(DEFAULT_HOLDOUT) & set(DEFAULT_FAMILIES)
    with pytest.raises(ValueError, match="unknown families"):
        CovarianceDistribution(families=["nope"])


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("shape", [(1, 16, 16), (3, 12, 10)])
def test_every_family(family, shape):
    dist = CovarianceDistribution(families=[family], lam_min=1e-9, lam_max=1e3)
    covs = dist.sample(6, shape, generator=torch.Generator().manual_seed(0))
    assert sum(c.shape[0] for c in covs) == 6
    for c in covs:
        assert c.shape[1:] == shape
        assert c.log_var.min() >= math.log(1e-9) - 1e-4 and c.log_var.max() <= math.log(1e3) + 1e-4
    again = dist.sample(6, shape, generator=torch.Generator().manual_seed(0))
    for a, b in zip(covs, again):
        assert a.basis == b.basis and torch.equal(a.log_var, b.log_var)


def test_mixed_batch_bases():
    dist = CovarianceDistribution(p_pixel=0.25)
    covs = dist.sample(8, (1, 8, 8), generator=torch.Generator().manual_seed(1))
    assert [(c.basis, c.shape[0]) for c in covs] == [("pixel", 2), ("hartley", 6)]
    only = CovarianceDistribution(families=["box", "mask"])
    assert [c.basis for c in only.sample(4, (1, 8, 8))] == ["pixel"]


def test_batched_draw_picks_families_by_weight_and_shares_channels():
    """Every family is drawn for the whole batch and one is picked per sample: the picks follow the
    weights (isotropic maps are constant, mask maps are not), and a multi-channel sample shares one
    map across channels unless drawn channel-independent (fraction p_channel_independent)."""
    n = 3000
    dist = CovarianceDistribution(families=["isotropic", "mask"], weights={"isotropic": 3.0, "mask": 1.0},
                                  p_channel_independent=0.25)
    lv = dist.sample_basis("pixel", n, (3, 8, 8), torch.Generator().manual_seed(2)).log_var
    flat = lv.flatten(2)
    constant = (flat.amax(2) == flat.amin(2)).all(1)
    assert abs(constant.double().mean().item() - 0.75) < 4 * math.sqrt(0.75 * 0.25 / n)
    shared = (lv == lv[:, :1]).flatten(1).all(1)
    assert abs(1 - shared.double().mean().item() - 0.25) < 4 * math.sqrt(0.25 * 0.75 / n)
    with pytest.raises(ValueError, match="no family of basis"):
        CovarianceDistribution(families=["mask"]).sample_basis("hartley", 4, (1, 8, 8))


def test_box_grid_is_piecewise_constant_on_a_k_by_k_grid():
    """``box_grid``: the map is constant on the cells of an k x k grid (rows floor(i k / H)), k in
    [2, 8], with k^2 distinct levels."""
    H, W, n = 16, 24, 64
    dist = CovarianceDistribution(families=["box_grid"], p_useful=0.0)
    lv = dist.sample(n, (1, H, W), torch.Generator().manual_seed(0))[0].log_var[:, 0]
    ks = set()
    for m in lv:
        k = math.isqrt(m.unique().numel())
        assert k * k == m.unique().numel() and 2 <= k <= 8
        ks.add(k)
        rows, cols = torch.arange(H) * k // H, torch.arange(W) * k // W
        cell = rows.view(-1, 1) * k + cols.view(1, -1)
        for c in range(k * k):
            assert m[cell == c].unique().numel() == 1
    assert len(ks) >= 5


@pytest.mark.parametrize("family", ["box", "mask", "bands"])
def test_p_unobserved(family):
    """With p_unobserved = p, the inside level of a two-level family is lam_max for a fraction p of
    the draws (outside levels untouched); p = 0 is the old distribution, draw for draw."""
    n, shape, lmax = 4000, (1, 8, 8), math.log(1e3)
    g = torch.Generator().manual_seed(3)
    base = CovarianceDistribution(families=[family], p_unobserved=0.0).sample(64, shape, generator=g)[0]
    again = CovarianceDistribution(families=[family]).sample(64, shape, generator=torch.Generator().manual_seed(3))[0]
    assert torch.equal(base.log_var, again.log_var)
    dist = CovarianceDistribution(families=[family], p_unobserved=0.3)
    lv = dist.sample(n, shape, generator=torch.Generator().manual_seed(4))[0].log_var.flatten(1)
    # a draw has the value lam_max on some pixel: (inside level set) or (a level drawn that high: ~never)
    frac = (lv >= lmax - 1e-6).any(1).double().mean().item()
    assert abs(frac - 0.3) < 4 * math.sqrt(0.3 * 0.7 / n) + 0.01
    with pytest.raises(ValueError, match="p_unobserved"):
        CovarianceDistribution(p_unobserved=1.5)
    # the docstring's "a level within a decade of lam_max about 4 % of the time": 0.5 * 1 / 12 per level
    iso = CovarianceDistribution(families=["isotropic"]).sample(n, (1, 2, 2), generator=torch.Generator().manual_seed(5))
    near = (iso[0].log_var[:, 0, 0, 0] >= lmax - math.log(10)).double().mean().item()
    assert abs(near - 1 / 24) < 4 * math.sqrt(1 / 24 * 23 / 24 / n)


def test_blur_spectrum_matches_deepinv_blur():
    """|K|^2 in the Hartley basis is exactly A^T A of deepinv's circular BlurFFT."""
    import deepinv as dinv

    g = torch.Generator().manual_seed(0)
    k = torch.rand(1, 5, 5, generator=g, dtype=torch.float64)
    k /= k.sum()
    H, W = 12, 16
    physics = dinv.physics.BlurFFT(img_size=(1, H, W), filter=k.unsqueeze(0), device="cpu")
    x = torch.randn(2, 1, H, W, generator=g, dtype=torch.float64)
    ata = physics.A_adjoint(physics.A(x))
    k2 = blur_spectrum(k, H, W).reshape(1, 1, H, W).expand(2, 1, H, W)
    cov = Covariance("hartley", torch.log(k2.clamp_min(1e-300)))
    assert torch.allclose(cov.apply(x), ata, atol=1e-10)


def test_blur_family_levels():
    """Blur covariances are noise^2 / |K|^2 clamped to lam_max: the DC coefficient (|K|=1) is
    the noise level, and high frequencies of a wide blur are unobserved."""
    dist = CovarianceDistribution(families=["gaussian_blur"], p_useful=0.0)
    cov = dist.sample(16, (1, 32, 32), generator=torch.Generator().manual_seed(0))[0]
    lv = cov.log_var
    assert torch.equal(lv[:, :, 0, 0], lv.amin(dim=(2, 3)))  # |K(0)| = 1 is the largest |K|
    assert torch.isclose(lv.max(), torch.tensor(math.log(1e3)), atol=1e-4)


@pytest.mark.parametrize("family", BLUR_FAMILIES)
def test_blur_families_are_deepinv_physics(family):
    """A blur family's variances are those of its deepinv BlurFFT measurement: noise^2 / |K|^2 with
    K the DFT of the physics' impulse response, lam_max where that exceeds lam_max."""
    dist = CovarianceDistribution(families=[family], lam_min=1e-9, lam_max=100.0)
    H, W = 14, 12
    lam = dist._draw(family, 5, H, W, torch.Generator().manual_seed(4), torch.device("cpu")).double().exp()
    physics = dist.blur_physics(family, 5, H, W, torch.Generator().manual_seed(4))
    delta = torch.zeros(5, 1, H, W)
    delta[..., 0, 0] = 1
    power = torch.fft.fft2(physics.A(delta))[:, 0].abs().double() ** 2
    noise = physics.noise_model.sigma.double().view(-1, 1, 1) ** 2
    observed = power * 100 > noise
    assert observed.any() and (~observed).any()
    assert torch.allclose((lam * power)[observed], noise.expand_as(lam)[observed], rtol=1e-3)
    assert torch.allclose(lam[~observed], torch.tensor(100.0, dtype=torch.float64), rtol=1e-5)
    # the covariance to_denoising_problem gives for the same physics (float32 spectra: the smallest
    # |K|^2 agree to about 1e-4 relative)
    ref = to_denoising_problem(torch.zeros(5, 1, H, W), physics, 1e-9, 100.0).cov.log_var[:, 0].double()
    assert torch.allclose(lam.log(), ref, atol=1e-3)


def test_blur_noise_level_is_a_variance():
    """The noise of a blur family is drawn as a variance: at the DC coefficient (|K(0)| = 1) the
    covariance is the noise variance s^2 itself, log-uniform on [lam_min, lam_max] with p_useful = 0
    (mean and standard deviation of the log-variance (lo + hi) / 2 and (hi - lo) / sqrt(12), nothing
    at the clamps); and the physics' sigma is its square root. A sigma of exp(log_var) (the level
    taken as a standard deviation) doubles the log-variances: 50 % of them clamped."""
    lo, hi, n = math.log(1e-9), math.log(1e3), 3000
    for family in ("gaussian_blur", "defocus_blur"):
        dist = CovarianceDistribution(families=[family], p_useful=0.0)
        dc = dist.sample(n, (1, 8, 8), generator=torch.Generator().manual_seed(0))[0].log_var[:, 0, 0, 0].double()
        assert ((dc <= lo + 1e-4) | (dc >= hi - 1e-4)).double().mean() < 0.01
        assert abs(dc.mean().item() - (lo + hi) / 2) < 4 * (hi - lo) / math.sqrt(12 * n)
        assert abs(dc.std().item() / ((hi - lo) / math.sqrt(12)) - 1) < 0.05
        physics = dist.blur_physics(family, n, 8, 8, torch.Generator().manual_seed(1))
        log_s2 = 2 * torch.log(physics.noise_model.sigma.double())
        assert log_s2.min() >= lo - 1e-4 and log_s2.max() <= hi + 1e-4


# ---------------------------------------------------------------------------- loss
class _FullGaussian(EnergyModel):
    """-log N(y; m, S + Sigma) with dense float64 algebra (the exact energy of Gaussian data)."""

    def __init__(self, m, S, S_weight=None):
        super().__init__()
        self.m, self.S = m, S
        self.S_weight = S if S_weight is None else S_weight

    def data_log_var(self, basis, size=None):
        """Log of the data variances in ``basis`` (what ``weighting="edm"`` reads), from ``S_weight``:
        the weight must not move with the parameters being compared."""
        V = Covariance(basis, torch.zeros(1, 1, 2, 2, dtype=self.S.dtype)).basis_matrix()
        return torch.log(torch.diagonal(V.T @ self.S_weight @ V)).reshape(1, 2, 2)

    def energy(self, y, cov):
        B = y.shape[0]
        V = cov.basis_matrix()
        K = self.S + (V.unsqueeze(0) * cov.variances.reshape(B, 1, -1)) @ V.T
        r = (y.reshape(B, -1) - self.m).unsqueeze(-1)
        quad = (r.transpose(1, 2) @ torch.linalg.solve(K, r)).reshape(B)
        return 0.5 * quad + 0.5 * torch.logdet(2 * math.pi * K)


def _gaussian_data(d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(d, d, generator=g, dtype=torch.float64)
    S = 0.05 * A @ A.T / d + 0.01 * torch.eye(d, dtype=torch.float64)
    m = 0.5 + 0.1 * torch.randn(d, generator=g, dtype=torch.float64)
    return m, S


@pytest.mark.parametrize("basis,weighting", [("pixel", "none"), ("hartley", "none"), ("pixel", "edm"), ("hartley", "edm")])
def test_loss_is_stationary_at_the_exact_energy(basis, weighting):
    """d E[L_den] / dt = d E[L_cov] / dt = 0 at the true energy (t perturbs its parameters), with
    and without the EDM weighting (a weight that depends on Sigma only keeps the minimizer)."""
    m, S = _gaussian_data()
    n = 20000
    g = torch.Generator().manual_seed(3)
    L = torch.linalg.cholesky(S)
    x = (m + torch.randn(n, 4, generator=g, dtype=torch.float64) @ L.T).reshape(n, 1, 2, 2)
    lv = -3 + 3 * torch.rand(n, 1, 2, 2, generator=g, dtype=torch.float64)
    cov = Covariance(basis, lv)
    D = torch.diag(2 * torch.rand(4, generator=g, dtype=torch.float64) - 1)
    P = 0.3 * L @ D @ L.T  # S + t P stays positive definite for |t| <= 1
    dm = 0.05 * torch.randn(4, generator=g, dtype=torch.float64)
    for make in (lambda t: _FullGaussian(m, S + t * P, S), lambda t: _FullGaussian(m + t * dm, S)):
        vals = {}
        for t in (-1.0, 0.0, 1.0):
            out = covariance_score_matching_loss(make(t), x, cov, torch.Generator().manual_seed(7), weighting=weighting)
            vals[t] = (out["den"].item(), out["cov"].item())
        for k in range(2):
            slope = (vals[1.0][k] - vals[-1.0][k]) / 2
            curv = vals[1.0][k] + vals[-1.0][k] - 2 * vals[0.0][k]
            assert curv > 0, (k, vals)
            # the minimizer of the fitted parabola is at t = 0 within Monte Carlo error
            assert abs(slope / curv) < 0.1, (k, vals)


class _LearnedGaussian(EnergyModel):
    """Gaussian energy with a learnable mean and Cholesky factor (float64)."""

    def __init__(self, d):
        super().__init__()
        self.m = torch.nn.Parameter(0.5 * torch.ones(d, dtype=torch.float64))
        self.L = torch.nn.Parameter(0.1 * torch.eye(d, dtype=torch.float64))

    def energy(self, y, cov):
        L = torch.tril(self.L)
        return _FullGaussian(self.m, L @ L.T).energy(y, cov)


@pytest.mark.parametrize("term,tol", [("loss", 0.1), ("cov", 0.2)])
def test_loss_minimizer_is_the_exact_energy(term, tol):
    """Minimizing L (or L_cov alone) over Gaussian energies recovers the data's mean and
    covariance: the minimizer's g and h are the exact ones. Tolerance: relative Frobenius
    error of the covariance < 10% (full loss) / 20% (L_cov only), mean error < 0.02."""
    m, S = _gaussian_data()
    Lc = torch.linalg.cholesky(S)
    g = torch.Generator().manual_seed(0)
    model = _LearnedGaussian(4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    dist = CovarianceDistribution(families=["isotropic", "box", "lowpass"], lam_min=1e-3, lam_max=1.0, p_useful=0)
    for _ in range(300):
        x = (m + torch.randn(256, 4, generator=g, dtype=torch.float64) @ Lc.T).reshape(-1, 1, 2, 2)
        covs = [c.to(torch.float64) for c in dist.sample(256, (1, 2, 2), g)]
        out = covariance_score_matching_loss(model, x, covs, g)
        opt.zero_grad()
        out[term].backward()
        opt.step()
    L = torch.tril(model.L.detach())
    assert (L @ L.T - S).norm() / S.norm() < tol
    assert (model.m.detach() - m).abs().max() < 0.02


@pytest.mark.parametrize("basis", ["pixel", "hartley"])
def test_edm_weighting_closed_form(basis):
    """At F = 0 a fresh EnergyUNet is the diagonal Gaussian with the data variances v (its Tweedie
    denoiser is the Wiener filter), so for x at the data mean the whitened residual of coefficient
    i is -v_i/(v_i+lam_i) z_i: E[L_den] = mean_i v_i^2/(v_i+lam_i)^2 unweighted and
    mean_i v_i/(v_i+lam_i) with the EDM weight 1 + lam_i/v_i (Monte Carlo, 20000 draws, 1 %), and L_cov
    (unweighted either way) its closed form below (3 %: z^4 terms): both are means over coefficients."""
    from deepinv_energy.models.unet import EnergyUNet
    from deepinv_energy.training.loss import denoising_weight

    model = EnergyUNet(channels=1, height=4, width_px=4, base_channels=4, mult=(1, 2))
    g = torch.Generator().manual_seed(0)
    model.set_data_statistics(torch.rand(512, 1, 4, 4, generator=g) ** 2)
    model.double()
    n = 20000
    x = model.mean.expand(n, 1, 4, 4).contiguous()
    lv = math.log(10.0) * (4 * torch.rand(1, 1, 4, 4, generator=g, dtype=torch.float64) - 3)  # 1e-3 .. 10
    cov = Covariance(basis, lv.expand(n, 1, 4, 4).contiguous())
    v, lam = torch.exp(model.data_log_var(basis)), torch.exp(lv[0])
    # L_cov: h = a/2 - a^2 z^2/2 with a = lam/(v+lam) (b = 0 at init), target (1 - z^2)/2, so
    # E[(h - target)^2] = (a-1)^2/4 + (a-1)(1-a^2)/2 + 3(1-a^2)^2/4, averaged over coefficients
    a = lam / (v + lam)
    cov_expected = ((a - 1) ** 2 / 4 + (a - 1) * (1 - a**2) / 2 + 3 * (1 - a**2) ** 2 / 4).mean()
    for weighting, expected in (("none", (v**2 / (v + lam) ** 2).mean()), ("edm", (v / (v + lam)).mean())):
        out = covariance_score_matching_loss(model, x, cov, torch.Generator().manual_seed(1), weighting=weighting)
        assert abs(out["den"].item() / expected.item() - 1) < 0.01, (weighting, out["den"].item(), expected.item())
        assert abs(out["cov"].item() / cov_expected.item() - 1) < 0.03, (out["cov"].item(), cov_expected.item())
    torch.testing.assert_close(denoising_weight(model, cov, "edm")[0], 1 + lam / v)
    with pytest.raises(ValueError, match="weighting"):
        denoising_weight(model, cov, "snr")
    with pytest.raises(TypeError, match="data variances"):
        denoising_weight(EnergyModel(), cov, "edm")


def test_loss_values_and_targets():
    """Exact model: E[L_cov] = E[(h - (1 - z^2)/2)^2] is the posterior variance term; both terms
    are per-coefficient averages (divided by d) and the batch can be split by basis."""
    m, S = _gaussian_data()
    model = _FullGaussian(m, S)
    x = m.reshape(1, 1, 2, 2).expand(6, 1, 2, 2).contiguous()
    covs = [Covariance("pixel", torch.zeros(4, 1, 2, 2, dtype=torch.float64)),
            Covariance("hartley", torch.zeros(2, 1, 2, 2, dtype=torch.float64))]
    out = covariance_score_matching_loss(model, x, covs, torch.Generator().manual_seed(0), reduction="none")
    assert out["den"].shape == (6,) and out["cov"].shape == (6,)
    with pytest.raises(ValueError, match="add up"):
        covariance_score_matching_loss(model, x[:5], covs)


@pytest.mark.parametrize("weighting", ["none", "edm"])
def test_coefficient_loss_is_the_loss(weighting):
    """coefficient_score_matching_loss (torch.func, in coefficients; the compiled trainer's loss) with
    the noise draw_noise takes from a generator equals covariance_score_matching_loss with that
    generator: values and parameter gradients, float64, both bases."""
    from deepinv_energy.models.unet import EnergyUNet
    from deepinv_energy.training.loss import coefficient_score_matching_loss, draw_noise

    torch.manual_seed(0)
    model = EnergyUNet(channels=1, height=8, width_px=8, base_channels=4, mult=(1, 2), input_scale="wiener")
    model.set_data_statistics(torch.rand(64, 1, 8, 8))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.double()
    x = torch.rand(6, 1, 8, 8, dtype=torch.float64)
    covs = [c.to(torch.float64) for c in CovarianceDistribution().sample(6, (1, 8, 8), torch.Generator().manual_seed(1))]
    outs, grads = [], []
    for fn in ("autograd", "func"):
        model.zero_grad()
        if fn == "autograd":
            out = covariance_score_matching_loss(model, x, covs, torch.Generator().manual_seed(2), weighting=weighting)
        else:
            z = draw_noise(x, covs, torch.Generator().manual_seed(2))
            out = coefficient_score_matching_loss(model, x, covs, z, weighting=weighting)
        out["loss"].backward()
        outs.append(out)
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None]))
    for key in ("loss", "den", "cov", "energy"):
        torch.testing.assert_close(outs[1][key], outs[0][key], rtol=1e-10, atol=1e-10, msg=key)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-8, atol=1e-10)
    with pytest.raises(TypeError, match="EnergyUNet"):
        coefficient_score_matching_loss(EnergyModel(), x, covs, z)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("DEEPINV_ENERGY_TEST_COMPILE") != "1",
                    reason="torch.compile of the double backward takes minutes (set DEEPINV_ENERGY_TEST_COMPILE=1)")
def test_compiled_training_matches_eager(tmp_path):
    """TrainConfig(compile=True) trains like the eager trainer: same losses to round-off over 3 steps,
    and its resume is bit for bit."""
    eager = train(_tiny_cfg(tmp_path / "eager", steps=3), progress=False)
    comp = train(_tiny_cfg(tmp_path / "comp", steps=3, compile=True), progress=False)
    one, two = _log_columns(tmp_path / "eager" / "log.csv"), _log_columns(tmp_path / "comp" / "log.csv")
    torch.testing.assert_close(torch.tensor(two["loss"]), torch.tensor(one["loss"]), rtol=1e-4, atol=0)
    for k, v in eager.model.state_dict().items():
        torch.testing.assert_close(comp.model.state_dict()[k], v, rtol=1e-3, atol=1e-5, msg=k)
    train(_tiny_cfg(tmp_path / "part", steps=3, compile=True), max_steps=2, progress=False)
    resumed = train(_tiny_cfg(tmp_path / "part", steps=3, compile=True), resume=True, progress=False)
    _states_equal(comp.model.state_dict(), resumed.model.state_dict())


@pytest.mark.slow
def test_training_learns_the_gaussian_score(tmp_path):
    """100 steps of the EnergyUNet on correlated Gaussian data (pixel basis) bring g and h closer
    to the closed form than the diagonal-Gaussian initialization: whitened errors reduced by at
    least 15% (g) and 5% (h) (measured: 24% and 12%; 28% and 14% after 200 steps)."""
    d = 4
    g = torch.Generator().manual_seed(0)
    idx = torch.arange(d, dtype=torch.float64)
    pos = torch.stack([idx // 2, idx % 2], 1)
    S = 0.05 * torch.exp(-torch.cdist(pos, pos) ** 2 / 8) + 1e-3 * torch.eye(d, dtype=torch.float64)
    m = 0.5 + 0.1 * torch.randn(d, generator=g, dtype=torch.float64)
    X = (m + torch.randn(20000, d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(S).T)
    X = X.float().reshape(-1, 1, 2, 2)
    fam = ["isotropic", "box", "mask"]
    cfg = TrainConfig(out=str(tmp_path), steps=100, batch_size=32, lr=3e-3, warmup=20, width=8, depth=1,
                      lam_min=1e-3, lam_max=10.0, families=fam, ema_decay=0.99, ckpt_every=10**9)
    tr = Trainer(cfg, images=X)
    exact = _FullGaussian(m, S)
    dist = CovarianceDistribution(families=fam, lam_min=1e-3, lam_max=10.0, p_useful=0.0)
    cov = dist.sample_basis("pixel", 512, (1, 2, 2), torch.Generator().manual_seed(1))
    y = X[:512] + cov.sample(torch.Generator().manual_seed(2))

    def errors(model):
        _, gm, hm = model.energy_and_grads(y, cov)
        _, ge, he = exact.energy_and_grads(y.double(), cov.to(torch.float64))
        eg = ((cov.variances.double().sqrt() * (gm.double() - ge)) ** 2).mean().item()
        return eg, ((hm.double() - he) ** 2).mean().item()

    before = errors(tr.model)
    for _ in range(cfg.steps):
        tr.train_step()
    after = errors(tr.ema)
    assert after[0] < 0.85 * before[0], (before, after)
    assert after[1] < 0.95 * before[1], (before, after)


# ---------------------------------------------------------------------------- trainer
def _tiny_cfg(out, **kw):
    base = dict(data="gmm:1,4,4,2,0,256", out=str(out), steps=6, batch_size=8, lr=1e-3, warmup=2,
                width=4, depth=1, ckpt_every=2, log_every=1, seed=3, ema_decay=0.9, norm_images=64)
    base.update(kw)
    return TrainConfig(**base)


def _states_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_is_bit_for_bit(tmp_path):
    full = train(_tiny_cfg(tmp_path / "full"), progress=False)
    part = train(_tiny_cfg(tmp_path / "part"), max_steps=3, progress=False)
    assert part.step == 3
    ck = load_checkpoint(str(tmp_path / "part" / "checkpoint.pt"))
    assert ck["step"] == 3 and ck["config"]["width"] == 4
    resumed = train(_tiny_cfg(tmp_path / "part"), resume=True, progress=False)
    assert resumed.step == 6
    _states_equal(full.model.state_dict(), resumed.model.state_dict())
    _states_equal(full.ema.state_dict(), resumed.ema.state_dict())
    lines = (tmp_path / "part" / "log.csv").read_text().strip().splitlines()
    assert [ln.split(",")[0] for ln in lines[1:]] == [str(i) for i in range(1, 7)]
    full_lines = (tmp_path / "full" / "log.csv").read_text().strip().splitlines()
    assert [ln.split(",")[1:4] for ln in lines[1:]] == [ln.split(",")[1:4] for ln in full_lines[1:]]
    # a truncated latest checkpoint falls back to the previous one
    (tmp_path / "part" / "checkpoint.pt").write_bytes(b"garbage")
    again = Trainer(_tiny_cfg(tmp_path / "part"))
    assert again.try_resume() and again.step == 4
    again.fit(max_steps=1, progress=False)  # a resumed run continues (and replaces its own checkpoint)
    assert again.step == 5
    with pytest.raises(ValueError, match="width"):
        Trainer(_tiny_cfg(tmp_path / "part", width=8)).try_resume()


def test_warm_start_and_loss_weight_resume(tmp_path):
    """init_from copies the model and EMA weights (not the step or optimizer), refuses another
    architecture, is not re-applied on resume (which stays bit for bit), and resuming with another
    loss_weight is refused."""
    src = train(_tiny_cfg(tmp_path / "src", steps=3), progress=False)
    ck = str(tmp_path / "src" / "checkpoint.pt")
    warm = Trainer(_tiny_cfg(tmp_path / "warm", loss_weight="edm", init_from=ck))
    warm.start(resume=True)  # no checkpoint of its own yet: warm start
    assert warm.step == 0
    _states_equal(warm.model.state_dict(), src.model.state_dict())
    _states_equal(warm.ema.state_dict(), src.ema.state_dict())
    with pytest.raises(ValueError, match="width"):
        Trainer(_tiny_cfg(tmp_path / "bad", width=8, init_from=ck)).start()
    full = train(_tiny_cfg(tmp_path / "full", loss_weight="edm", init_from=ck), progress=False)
    train(_tiny_cfg(tmp_path / "part", loss_weight="edm", init_from=ck), max_steps=3, progress=False)
    resumed = train(_tiny_cfg(tmp_path / "part", loss_weight="edm", init_from=ck), resume=True, progress=False)
    _states_equal(full.model.state_dict(), resumed.model.state_dict())
    assert not torch.equal(full.model.state_dict()["emb.0.weight"], src.model.state_dict()["emb.0.weight"])
    with pytest.raises(ValueError, match="loss_weight"):
        Trainer(_tiny_cfg(tmp_path / "part", init_from=ck)).start(resume=True)
    with pytest.raises(ValueError, match="loss_weight"):
        Trainer(_tiny_cfg(tmp_path / "x", loss_weight="snr"))
    os.remove(ck)  # the warm-start source is only read by a fresh run, never by a resume
    Trainer(_tiny_cfg(tmp_path / "part", loss_weight="edm", init_from=ck)).start(resume=True)
    with pytest.raises(ValueError, match="not a file"):
        Trainer(_tiny_cfg(tmp_path / "fresh", loss_weight="edm", init_from=ck)).start(resume=True)


def test_resume_never_overwrites_a_run(tmp_path):
    """Unreadable checkpoints refuse a resume (nothing overwritten); a run directory holding a
    checkpoint is refused without resume unless overwrite=True."""
    run = tmp_path / "run"
    train(_tiny_cfg(run), max_steps=4, progress=False)  # checkpoint.pt (step 4) and checkpoint_prev.pt (step 2)
    with pytest.raises(FileExistsError, match="checkpoint.pt.*--resume.*--overwrite"):
        train(_tiny_cfg(run), progress=False)
    with pytest.raises(FileExistsError, match="--overwrite"):
        Trainer(_tiny_cfg(run)).fit(progress=False)  # fit() without start() is guarded too
    for name in ("checkpoint.pt", "checkpoint_prev.pt"):
        (run / name).write_bytes(b"garbage")
    log = (run / "log.csv").read_text()
    with pytest.raises(ValueError, match="no readable checkpoint.*checkpoint.pt.*checkpoint_prev.pt"):
        train(_tiny_cfg(run), resume=True, progress=False)
    assert (run / "checkpoint.pt").read_bytes() == b"garbage" and (run / "log.csv").read_text() == log
    fresh = train(_tiny_cfg(run, overwrite=True), max_steps=2, progress=False)
    assert fresh.step == 2 and load_checkpoint(str(run / "checkpoint.pt"))["step"] == 2


def test_resume_with_a_changed_schedule(tmp_path):
    """A changed lr, w_cov, families or ema_decay is refused on resume unless allow_config_change,
    which records the change in changes.log and config.json."""
    import json

    run = tmp_path / "run"
    train(_tiny_cfg(run), max_steps=2, progress=False)
    for change in [dict(lr=2e-3), dict(w_cov=0.5), dict(families=["box"]), dict(ema_decay=0.99), dict(steps=8)]:
        key = next(iter(change))
        with pytest.raises(ValueError, match=f"{key}: .*--allow-config-change"):
            Trainer(_tiny_cfg(run, **change)).start(resume=True)
    with pytest.raises(ValueError, match="checkpoint has input_scale='whiten'"):  # architecture: never
        Trainer(_tiny_cfg(run, input_scale="wiener", allow_config_change=True)).start(resume=True)
    assert not (run / "changes.log").exists()
    tr = train(_tiny_cfg(run, lr=2e-3, w_cov=0.5, allow_config_change=True), resume=True, progress=False)
    assert tr.step == 6
    log = (run / "changes.log").read_text()
    assert "step 2: lr: 0.001 -> 0.002, w_cov: 1.0 -> 0.5" in log
    assert json.loads((run / "config.json").read_text())["lr"] == 2e-3
    assert load_checkpoint(str(run / "checkpoint.pt"))["config"]["w_cov"] == 0.5
    again = Trainer(_tiny_cfg(run, lr=2e-3, w_cov=0.5))  # the new values are now the run's
    assert again.try_resume() and again.step == 6


def test_resume_with_a_changed_lr_trains_with_the_new_lr(tmp_path):
    """After a resume with a changed lr (allow_config_change), the optimizer steps with the NEW lr
    times the schedule, the value changes.log records (the optimizer's state holds the old one)."""
    from deepinv_energy.training.trainer import lr_factor

    run = tmp_path / "run"
    train(_tiny_cfg(run, steps=8, warmup=2), max_steps=3, progress=False)
    cfg = _tiny_cfg(run, steps=8, warmup=2, lr=5e-3, allow_config_change=True)
    tr = Trainer(cfg)
    tr.start(resume=True)
    assert "lr: 0.001 -> 0.005" in (run / "changes.log").read_text()
    seen = [tr.train_step()["lr"] for _ in range(2)]
    assert seen == pytest.approx([5e-3 * lr_factor(cfg, s) for s in (3, 4)], rel=1e-12)
    assert tr.opt.param_groups[0]["lr"] == pytest.approx(5e-3 * lr_factor(cfg, 5), rel=1e-12)


def test_ema_warmup(tmp_path):
    """EMA after step t: ema_t = ema_(t-1) + (1 - d_t) (w_t - ema_(t-1)) with the warmed-up decay
    d_t = min(ema_decay, (1 + t) / (10 + t)) (2/11 after the first step, not ema_decay = 0.9),
    starting from the initial weights; buffers follow the model."""
    tr = Trainer(_tiny_cfg(tmp_path, ema_decay=0.9, steps=40))
    tr.start()
    ema = {k: v.double().clone() for k, v in tr.model.state_dict().items()}
    params = {k for k, _ in tr.model.named_parameters()}
    for t in range(1, 4):
        tr.train_step()
        d = min(0.9, (1 + t) / (10 + t))
        for k, w in tr.model.state_dict().items():
            ema[k] = ema[k] + (1 - d) * (w.double() - ema[k]) if k in params else w.double()
    for k, v in tr.ema.state_dict().items():
        torch.testing.assert_close(v.double(), ema[k], rtol=1e-5, atol=1e-6, msg=k)


def test_trainer_draws_unobserved_regions(tmp_path, monkeypatch):
    """TrainConfig.p_unobserved reaches the covariances the trainer trains on: with p_unobserved = 1
    every box covariance of a training batch has lam_max inside its box (without it, ~never)."""
    from deepinv_energy.training import trainer as trainer_module

    seen = []
    loss_fn = trainer_module.covariance_score_matching_loss

    def spy(model, x, covs, **kw):
        seen.extend(covs if isinstance(covs, list) else [covs])
        return loss_fn(model, x, covs, **kw)

    monkeypatch.setattr(trainer_module, "covariance_score_matching_loss", spy)
    for p, expected in ((1.0, 1.0), (0.0, 0.0)):
        seen.clear()
        tr = Trainer(_tiny_cfg(tmp_path / str(p), families=["box"], p_unobserved=p, lam_max=1e3))
        tr.start()
        for _ in range(3):
            tr.train_step()
        lv = torch.cat([c.log_var for c in seen]).flatten(1)
        assert lv.shape[0] == 3 * 8
        assert (lv >= math.log(1e3) - 1e-5).any(1).double().mean().item() == expected


@pytest.mark.parametrize("field, value, match", [
    ("batch_size", 0, "batch_size must be an integer >= 1"), ("ckpt_every", 0, "ckpt_every must be"),
    ("width", 0, "width must be"), ("lr", float("nan"), "lr must be a finite number > 0"),
    ("families", ["nope"], "families must be"), ("p_pixel", 2.0, "p_pixel must be"),
])
def test_config_errors_name_the_field(tmp_path, field, value, match):
    with pytest.raises(ValueError, match=match):
        Trainer(_tiny_cfg(tmp_path, **{field: value}))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        Trainer(_tiny_cfg(tmp_path / "file"))


def test_sigterm_saves_a_checkpoint(tmp_path):
    tr = Trainer(_tiny_cfg(tmp_path, steps=50, ckpt_every=1000))
    step = tr.train_step

    def step_then_signal():
        out = step()
        if tr.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    tr.train_step = step_then_signal
    before = signal.getsignal(signal.SIGTERM)
    tr.fit(progress=False)
    assert tr.step == 2
    assert load_checkpoint(str(tmp_path / "checkpoint.pt"))["step"] == 2
    assert signal.getsignal(signal.SIGTERM) is before


def test_normalization_constant(tmp_path):
    tr = Trainer(_tiny_cfg(tmp_path))
    model = tr.model
    with torch.no_grad():
        model.b_head[-1].bias.fill_(0.01)
    x = tr.images[:64]
    normalize_model(model, x, var=1e3)
    gen = torch.Generator().manual_seed(0)
    for basis in ("pixel", "hartley"):
        y = x + math.sqrt(1e3) * torch.randn(x.shape, generator=gen)
        cov = Covariance.isotropic(1e3, y, basis=basis)
        gauss, net, b, kappa = model.energy_terms(y, cov)
        # normalized: the energy agrees on average with the analytic large-noise limit
        assert abs((model.energy(y, cov) - gauss).mean().item()) < 1e-3 * x[0].numel()
        assert abs(kappa[0].item() - 0.01 * x[0].numel()) < 0.05 * x[0].numel()


def test_cli_parser():
    args = build_parser().parse_args(
        ["--data", "gmm:1,4,4,2", "--out", "o", "--steps", "5", "--batch-size", "4", "--lr", "1e-3",
         "--width", "8", "--depth", "1", "--w-cov", "0.5", "--ckpt-every", "2", "--resume", "--seed", "1",
         "--device", "cpu", "--families", "box,mask"]
    )
    cfg = config_from_args(args)
    assert cfg.steps == 5 and cfg.w_cov == 0.5 and cfg.families == ["box", "mask"] and args.resume
    # the options are generated from TrainConfig: no arguments give its defaults, field by field
    assert config_from_args(build_parser().parse_args([])) == TrainConfig()
    off = config_from_args(build_parser().parse_args(["--no-attention", "--lam-min", "1e-8", "--overwrite"]))
    assert not off.attention and off.lam_min == 1e-8 and off.overwrite


DDP_CFG = dict(data="gmm:1,4,4,2,0,256", steps=3, batch_size=8, width=4, depth=1, ckpt_every=10, warmup=1, seed=5,
               lr=1e-3, grad_clip=0.0, ema_decay=0.9, log_every=1)

DDP_SCRIPT = textwrap.dedent(
    f"""
    import os, sys, torch
    from deepinv_energy.training.trainer import Trainer, TrainConfig
    torch.set_num_threads(1)
    out = sys.argv[1]
    cfg = TrainConfig(out=out, **{DDP_CFG!r})
    tr = Trainer(cfg)
    tr.fit(progress=False)
    flat = torch.cat([p.detach().reshape(-1) for p in tr.model.parameters()])
    grad = torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1)
                      for p in tr.model.parameters()])
    torch.save({{"params": flat, "grad": grad}}, os.path.join(out, f"params_rank{{tr.rank}}.pt"))
    assert tr.world == 2 and tr.local_batch == 4
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    """
)


def _one_process_reference(out, monkeypatch):
    """The same 3 steps in one process on the same global batch of 8: the library's train_step, with
    the loss of the batch taken as the mean of the two ranks' shard losses, each shard (indices
    rank::2 of the global batch) with the covariances and noise that rank draws (generator seeded by
    (seed, step, rank)). Its gradients are the mean of the shards' gradients by definition."""
    from deepinv_energy.training import trainer as trainer_module

    loss_fn = trainer_module.covariance_score_matching_loss
    ref = Trainer(TrainConfig(out=str(out), **DDP_CFG))
    assert ref.world == 1

    def global_batch_loss(model, x, covs, generator=None, **kw):
        outs = []
        for rank in range(2):
            gen = torch.Generator().manual_seed(trainer_module._step_seed(ref.cfg.seed, ref.step, rank))
            xr = x[rank::2]
            outs.append(loss_fn(model, xr, ref.dist.sample(xr.shape[0], ref.shape, generator=gen), generator=gen, **kw))
        return {k: (outs[0][k] + outs[1][k]) / 2 for k in ("loss", "den", "cov")}

    monkeypatch.setattr(trainer_module, "covariance_score_matching_loss", global_batch_loss)
    ref.fit(progress=False)
    return ref


def _log_columns(path):
    rows = [line.split(",") for line in path.read_text().strip().splitlines()]
    header = rows[0]
    return {name: [float(r[header.index(name)]) for r in rows[1:]] for name in ("step", "loss", "grad_norm")}


def test_ddp_two_gloo_processes(tmp_path, monkeypatch):
    """Two gloo processes train exactly like one process on the same global batch: the replicas
    agree, and gradients, logged gradient norms and losses, weights and EMA weights after 3 steps
    equal the one-process run's (same seed, the union of the two shards is the global batch) to
    float32 round-off. Adam is invariant to a constant scale of the gradients but for its eps, so the
    weights alone barely tell a sum of the ranks' gradients from their mean (measured: 6e-4 apart
    after 3 steps): the gradients (grad_clip=0, so p.grad is the all-reduced gradient) and their
    logged norms do (a sum doubles them)."""
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), str(out)],
        capture_output=True, text=True, timeout=180, env=env,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    r0 = torch.load(out / "params_rank0.pt", weights_only=True)
    r1 = torch.load(out / "params_rank1.pt", weights_only=True)
    assert torch.equal(r0["params"], r1["params"]) and torch.equal(r0["grad"], r1["grad"])  # the replicas agree
    ck = load_checkpoint(str(out / "checkpoint.pt"))
    assert ck["step"] == 3 and ck["world_size"] == 2
    flat = torch.cat([ck["model"][name].reshape(-1) for name, _ in tr_param_names(ck)])
    assert torch.equal(flat, r0["params"])  # rank 0 saved the shared weights

    ref = _one_process_reference(tmp_path / "ref", monkeypatch)
    grad = torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1) for p in ref.model.parameters()])
    torch.testing.assert_close(r0["grad"], grad, rtol=1e-4, atol=1e-6)
    # Adam divides by |g|: a weight whose gradient is near round-off moves by a round-off-sized fraction of lr
    # per step (measured: 6e-6 at most, lr = 1e-3); 5e-5 is 2 % of the largest possible move (3 lr)
    torch.testing.assert_close(r0["params"], torch.cat([p.detach().reshape(-1) for p in ref.model.parameters()]),
                               rtol=1e-4, atol=5e-5)
    for name, p in ref.ema.state_dict().items():
        torch.testing.assert_close(ck["ema"][name], p, rtol=1e-4, atol=5e-5, msg=name)
    two, one = _log_columns(out / "log.csv"), _log_columns(tmp_path / "ref" / "log.csv")
    assert two["step"] == one["step"] == [1.0, 2.0, 3.0]
    for key in ("loss", "grad_norm"):  # logged with 6 and 4 significant digits
        torch.testing.assert_close(torch.tensor(two[key]), torch.tensor(one[key]), rtol=2e-3, atol=0, msg=key)


def tr_param_names(ck):
    from deepinv_energy.models.unet import EnergyUNet, UNetConfig

    model = EnergyUNet(UNetConfig.from_dict(ck["model_config"]))
    return list(model.named_parameters())


# ---------------------------------------------------------------------------- plain-denoiser baseline
def test_direct_denoising_loss_matches_the_energy_loss_scale():
    """With F = 0 (a fresh network) the network's direct denoiser and the energy's Tweedie
    denoiser are the same Wiener filter, so with the same noise both losses give the same L_den."""
    from deepinv_energy.models.unet import EnergyUNet
    from deepinv_energy.training.loss import direct_denoising_loss

    model = EnergyUNet(channels=1, height=4, width_px=4, base_channels=4, mult=(1, 2)).double()
    x = torch.rand(6, 1, 4, 4, dtype=torch.float64)
    covs = [Covariance("pixel", torch.randn(3, 1, 4, 4, dtype=torch.float64)),
            Covariance("hartley", torch.randn(3, 1, 4, 4, dtype=torch.float64))]
    a = direct_denoising_loss(model, x, covs, torch.Generator().manual_seed(0), reduction="none")
    b = covariance_score_matching_loss(model, x, covs, torch.Generator().manual_seed(0), reduction="none")
    torch.testing.assert_close(a["den"], b["den"].detach(), rtol=1e-10, atol=1e-12)
    assert a["den"].shape == (6,) and a["loss"].requires_grad


def test_plain_denoiser_objective(tmp_path):
    """objective="denoiser" trains the same network as an isotropic denoiser (pixel basis only),
    saves without normalization, loads as a deepinv UNetDenoiser and refuses to resume as an energy."""
    from deepinv_energy import EnergyUNet, UNetDenoiser

    tr = train(_tiny_cfg(tmp_path, objective="denoiser", steps=4), progress=False)
    covs = tr.dist.sample(16, (1, 4, 4), generator=torch.Generator().manual_seed(0))
    assert [c.basis for c in covs] == ["pixel"]
    lv = covs[0].log_var
    assert torch.equal(lv, lv[:, :1, :1, :1].expand_as(lv))  # isotropic
    tr.finalize(str(tmp_path / "export"))
    model = EnergyUNet.from_pretrained(str(tmp_path / "export"))
    assert torch.equal(model.log_norm, torch.zeros_like(model.log_norm))
    x = tr.images[:3]
    y = x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    den = UNetDenoiser(model)
    torch.testing.assert_close(den(y, 0.2), model.direct_denoise(y, Covariance.isotropic(0.04, y)))
    with pytest.raises(ValueError, match="sigma"):
        den(y, torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match="objective"):
        Trainer(_tiny_cfg(tmp_path)).try_resume()
    with pytest.raises(ValueError, match="objective"):
        Trainer(_tiny_cfg(tmp_path, objective="score"))


def test_learning_rate_schedule(tmp_path):
    """Linear warmup to lr, cosine to min_lr_ratio * lr at `steps` (constant after), the values the
    trainer's LambdaLR gives the optimizer at every step, also after a resume."""
    from deepinv_energy.training.trainer import lr_factor

    cfg = _tiny_cfg(tmp_path / "run", steps=6, warmup=2, min_lr_ratio=0.1)
    cosine = lambda t: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t))  # noqa: E731
    expected = [0.5, 1.0, cosine(0), cosine(0.25), cosine(0.5), cosine(0.75)]  # warmup 2, then t = (s - 2) / 4
    assert [round(lr_factor(cfg, s), 12) for s in range(6)] == [round(v, 12) for v in expected]
    assert lr_factor(cfg, 10) == pytest.approx(0.1)
    assert lr_factor(_tiny_cfg(tmp_path, schedule="constant", warmup=2), 5) == 1.0
    tr = Trainer(cfg)
    tr.start()
    seen = []
    for _ in range(3):
        seen.append(tr.train_step()["lr"])
    tr.save_checkpoint()
    again = Trainer(cfg)
    assert again.try_resume() and again.step == 3
    seen += [again.train_step()["lr"] for _ in range(3)]
    assert seen == pytest.approx([1e-3 * v for v in expected], rel=1e-12)


# ---------------------------------------------------------------------------- device recipe
def test_device_recipe_cpu(tmp_path):
    """The one-call recipe on CPU with a tiny model and budget: it probes, sizes the cosine schedule
    to the budget, trains, exports the normalized EMA weights and returns at most max_files files of
    at most part_mib MiB, which reassemble (cat parts) into a tar holding a loadable model, the
    checkpoint of the run at its last step, the log and the configuration."""
    import hashlib
    import json
    import tarfile

    from deepinv_energy import EnergyUNet
    from deepinv_energy.training.recipe import run_recipe

    out = tmp_path / "results"
    cfg = _tiny_cfg(tmp_path / "run", steps=1, warmup=2, ckpt_every=10**6, log_every=5)
    part_mib = 0.02  # ~20 kB: the tiny export needs several parts, the checkpoint does not fit in 7
    summary = run_recipe(cfg, budget_s=6.0, results=str(out), probe_steps=3, part_mib=part_mib, margin=0.3)
    files = sorted(os.listdir(out))
    assert files == sorted(summary["files"]) and 2 < len(files) <= 8
    assert all((out / f).stat().st_size <= part_mib * 2**20 for f in files)
    assert summary["trained_steps"] > summary["config"]["warmup"] and summary["total_s"] < 6.0 + 3
    assert summary["config"]["steps"] == summary["scheduled_steps"] and not summary["checkpoint_included"]
    tar = tmp_path / "recipe.tar"
    tar.write_bytes(b"".join((out / f).read_bytes() for f in files if ".part" in f))
    assert hashlib.sha256(tar.read_bytes()).hexdigest() == summary["tar_sha256"]
    with tarfile.open(tar) as t:
        t.extractall(tmp_path / "x")
    model = EnergyUNet.from_pretrained(str(tmp_path / "x" / "export"))
    assert model.log_norm.abs().sum() > 0  # normalized
    assert json.loads((tmp_path / "x" / "recipe.json").read_text())["scheduled_steps"] == summary["scheduled_steps"]
    # default 16 MiB parts: one part, with the run's checkpoint at its last step
    big = run_recipe(_tiny_cfg(tmp_path / "run2", steps=1, warmup=2), budget_s=3.0, results=str(tmp_path / "r2"), probe_steps=2)
    assert big["checkpoint_included"] and big["files"] == ["recipe.tar.part00", "summary.json"]
    with tarfile.open(tmp_path / "r2" / "recipe.tar.part00") as t:
        t.extractall(tmp_path / "y")
    assert load_checkpoint(str(tmp_path / "y" / "checkpoint.pt"))["step"] == big["trained_steps"]
    with pytest.raises(ValueError, match="probe_steps"):
        run_recipe(cfg, budget_s=5.0, results=str(out), probe_steps=1)
