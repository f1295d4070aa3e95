r"""Exactness of the physics -> anisotropic denoising translation.

Reference: the exact Gaussian-mixture posterior and evidence computed densely in measurement
space (``deepinv_energy.testing.measurement_posterior``). Compared: the posterior of x given
``(x_tilde, cov)`` and the evidence ``-U(x_tilde, cov) + offset``.

Tolerances. The only modelling approximation is the finite variance ``lam_max`` of the
unobserved coefficients (and the floor ``lam_min`` for noise-free ones):
- evidence: -U + k/2 log(2 pi lam_max) = log p_obs + log E[exp(-|x_tilde_u - x_u|^2 / (2 lam_max)) | y],
  so the error lies in [-B, 0] with B = E[|x_tilde_u - x_u|^2 | y] / (2 lam_max), computed here
  from the exact posterior; a noise-free coefficient's lam_min adds at most
  lam_min * tr(C_o^-1) / 2 ~ 1e-7 nats with our priors (eigenvalues >= 0.01);
- posterior moments: the posterior with a finite lam_max is the exact one conditioned on
  an extra observation of variance lam_max, which moves means and covariances by
  O(|C| / lam_max) ~ 1e-6 here (|C| <= 1, lam_max = 1e6); we allow 1e-5 (lam_min adds
  O(lam_min / 0.01) = 1e-7).
"""

import deepinv as dinv
import pytest
import torch

from deepinv_energy.testing import measurement_posterior
from deepinv_energy import UnsupportedPhysicsError, to_denoising_problem
from helpers import random_mixture

LAM_MAX = 1e6
DT = torch.float64


def noise(sigma):
    return dinv.physics.GaussianNoise(sigma) if sigma is not None else dinv.physics.ZeroNoise()


def mask_for(shape, b, seed, per_element):
    g = torch.Generator().manual_seed(seed)
    m = (torch.rand(b if per_element else 1, *shape, generator=g) > 0.4).to(DT)
    m[..., 0, 0] = 1
    return m


def kernel(kind, b, seed):
    g = torch.Generator().manual_seed(seed)
    if kind == "random":
        k = torch.rand(b, 1, 3, 3, generator=g, dtype=DT)
    else:  # 2-tap box: exact zero of the spectrum at the horizontal Nyquist frequency
        k = torch.zeros(b, 1, 1, 2, dtype=DT) + 0.5
    return k / k.sum(dim=(-2, -1), keepdim=True)


def make_physics(name, shape, b, sigma, seed):
    """deepinv physics with per-element parameters when b > 1."""
    nm = noise(sigma)
    if name == "denoising":
        return dinv.physics.Denoising(noise_model=nm)
    if name == "inpainting":
        return dinv.physics.Inpainting(shape, mask=mask_for(shape, b, seed, b > 1), noise_model=nm)
    if name == "blurfft":
        return dinv.physics.BlurFFT(shape, filter=kernel("random", b, seed), noise_model=nm)
    if name == "blur-nyquist-zero":
        return dinv.physics.BlurFFT(shape, filter=kernel("box", b, seed), noise_model=nm)
    if name == "blur-circular":
        return dinv.physics.Blur(filter=kernel("random", b, seed), padding="circular", noise_model=nm)
    if name == "decimation":
        return dinv.physics.Downsampling(shape, filter=None, factor=2, noise_model=nm)
    raise AssertionError(name)


CASES = [
    ("denoising", 0.1),
    ("inpainting", 0.1),
    ("inpainting", None),  # noise-free
    ("blurfft", 0.05),
    ("blurfft", None),
    ("blur-nyquist-zero", 0.05),
    ("blur-circular", 0.05),
    ("decimation", 0.1),
    ("decimation", None),
]


def unobserved_bound(problem, post):
    """B = E[|x_tilde_u - x_u|^2 | y] / (2 lam_max) from the exact posterior, per element."""
    v = problem.cov.basis_matrix()
    b = problem.x_tilde.shape[0]
    t = problem.cov.to_basis(problem.x_tilde).reshape(b, -1)
    m = (post.mean().reshape(b, -1) @ v)  # posterior mean in the basis (V symmetric)
    var = torch.diagonal(v.T @ post.covariance() @ v, dim1=-2, dim2=-1)
    sq = ((t - m) ** 2 + var) * (~problem.observed).reshape(b, -1)
    return sq.sum(1) / (2 * problem.lam_max)


@pytest.mark.parametrize("shape", [(1, 6, 6), (2, 4, 6)])
@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("name,sigma", CASES)
def test_posterior_and_evidence_match_measurement_space(name, sigma, shape, batched):
    b = 2
    model = random_mixture(shape, k=3, seed=11)
    if batched and sigma is not None:
        sigma = torch.tensor([sigma, 2.5 * sigma], dtype=DT)
    physics = make_physics(name, shape, b if batched else 1, sigma, seed=12)
    x = model.sample_prior(b, generator=torch.Generator().manual_seed(13))
    torch.manual_seed(14)
    y = physics(x)

    ref = measurement_posterior(model, y, physics)
    problem = to_denoising_problem(y, physics, lam_max=LAM_MAX)
    got = model.posterior(problem.x_tilde, problem.cov)

    assert torch.allclose(got.mean(), ref.mean(), atol=1e-5), (got.mean() - ref.mean()).abs().max()
    assert torch.allclose(got.covariance(), ref.covariance(), atol=1e-5)

    log_ev = problem.log_evidence(model)
    bound = unobserved_bound(problem, ref)
    err = log_ev - ref.log_evidence
    assert (err <= 1e-6).all() and (err >= -1.5 * bound - 1e-6).all(), (err, bound)


def test_evidence_error_scales_with_lam_max():
    """The only approximation is lam_max: the error shrinks as 1/lam_max."""
    shape = (1, 6, 6)
    model = random_mixture(shape, seed=21)
    physics = make_physics("inpainting", shape, 1, 0.1, seed=22)
    torch.manual_seed(0)
    y = physics(model.sample_prior(2, generator=torch.Generator().manual_seed(1)))
    ref = measurement_posterior(model, y, physics).log_evidence
    errs = [(to_denoising_problem(y, physics, lam_max=lm).log_evidence(model) - ref).abs() for lm in (1e2, 1e3, 1e4)]
    for a, c in zip(errs[:-1], errs[1:]):
        assert torch.allclose(a / c, torch.full_like(a, 10.0), rtol=0.1)


def test_batched_physics_equals_per_element():
    shape = (1, 6, 6)
    model = random_mixture(shape, seed=31)
    sig = torch.tensor([0.05, 0.2], dtype=DT)
    physics = make_physics("blurfft", shape, 2, sig, seed=32)
    torch.manual_seed(0)
    y = physics(model.sample_prior(2, generator=torch.Generator().manual_seed(2)))
    batch = to_denoising_problem(y, physics)
    for i in range(2):
        single = dinv.physics.BlurFFT(shape, filter=physics.filter[i : i + 1], noise_model=noise(float(sig[i])))
        one = to_denoising_problem(y[i : i + 1], single)
        assert torch.allclose(one.x_tilde, batch.x_tilde[i : i + 1], atol=1e-12)
        assert torch.allclose(one.cov.log_var, batch.cov.log_var[i : i + 1], atol=1e-12)
        assert torch.allclose(one.evidence_offset(), batch.evidence_offset()[i : i + 1], atol=1e-9)


def test_table_values():
    """Spot values of PAPER.md section 4's table."""
    x = torch.rand(1, 1, 4, 4, dtype=DT)
    mask = torch.ones(1, 1, 4, 4, dtype=DT)
    mask[..., :2, :] = 0
    p = to_denoising_problem(x * mask, dinv.physics.Inpainting((1, 4, 4), mask=mask, noise_model=noise(0.2)))
    assert torch.allclose(p.cov.variances[mask.bool()], torch.full((8,), 0.04, dtype=DT))
    assert torch.allclose(p.cov.variances[~mask.bool()], torch.full((8,), 1e3, dtype=DT))
    assert (p.x_tilde[~mask.bool()] == 0).all()
    dec = dinv.physics.Downsampling((1, 4, 4), filter=None, factor=2, noise_model=noise(None))
    d = to_denoising_problem(x[..., ::2, ::2], dec)
    assert d.observed.sum() == 4 and torch.allclose(d.x_tilde[..., ::2, ::2], x[..., ::2, ::2])
    assert torch.allclose(d.cov.variances[d.observed], torch.full((4,), 1e-9, dtype=DT))


def test_unsupported_physics_and_bad_inputs():
    y = torch.rand(1, 1, 8, 8)
    for physics in [
        dinv.physics.Blur(filter=torch.ones(1, 1, 3, 3) / 9, padding="valid"),
        dinv.physics.Downsampling((1, 16, 16), filter="bicubic", factor=2),
        dinv.physics.CompressedSensing(m=10, img_size=(1, 8, 8)),
    ]:
        with pytest.raises(UnsupportedPhysicsError) as info:
            to_denoising_problem(y, physics)
        assert isinstance(info.value, TypeError)
        assert type(physics).__name__ in str(info.value) and "Inpainting" in str(info.value)
    den = dinv.physics.Denoising(noise_model=noise(0.1))
    with pytest.raises(ValueError, match="NaN"):
        to_denoising_problem(y * float("nan"), den)
    with pytest.raises(ValueError, match="noise_model"):
        to_denoising_problem(y, dinv.physics.Denoising(noise_model=dinv.physics.PoissonNoise(0.1)))
    with pytest.raises(ValueError, match="shape"):
        to_denoising_problem(y, dinv.physics.Inpainting((1, 6, 6), mask=torch.ones(1, 1, 6, 6)))
    with pytest.raises(ValueError, match="shape"):
        to_denoising_problem(y, dinv.physics.BlurFFT((1, 6, 6), filter=torch.ones(1, 1, 3, 3) / 9))
    with pytest.raises(ValueError, match="shape"):
        to_denoising_problem(y, dinv.physics.Downsampling((1, 8, 8), filter=None, factor=2))
    with pytest.raises(ValueError, match="lam_min"):
        to_denoising_problem(y, den, lam_min=1.0, lam_max=0.5)
    bad = torch.ones(1, 1, 3, 3) / 9
    bad[..., 1, 1] = float("nan")  # was read as "unobserved everywhere" (prior draws)
    with pytest.raises(ValueError, match="blur kernel.*NaN"):
        to_denoising_problem(y, dinv.physics.BlurFFT((1, 8, 8), filter=bad, noise_model=noise(0.1)))
    with pytest.warns(UserWarning, match="lam_min"):
        to_denoising_problem(y, dinv.physics.Denoising(noise_model=noise(1e-6)))


def test_spectra_of_physics_and_simulated_measurements():
    from deepinv_energy.problems import blur_spectrum, blur_transfer, simulate

    g = torch.Generator().manual_seed(0)
    k = torch.rand(2, 1, 5, 4, generator=g, dtype=DT)
    physics = dinv.physics.BlurFFT((1, 9, 8), filter=k / k.sum(dim=(-2, -1), keepdim=True))
    like = torch.zeros(2, 1, 9, 8, dtype=DT)
    k2 = blur_transfer(physics, like).abs() ** 2
    assert torch.allclose(blur_spectrum(physics.filter[:, 0], 9, 8).unsqueeze(1), k2, atol=1e-12)
    # a circular Blur has the same transfer function as BlurFFT with the same (odd) kernel
    k3 = k[..., :3, :3] / k[..., :3, :3].sum(dim=(-2, -1), keepdim=True)
    kb = blur_transfer(dinv.physics.Blur(filter=k3, padding="circular"), like)
    assert torch.allclose(kb, blur_transfer(dinv.physics.BlurFFT((1, 9, 8), filter=k3), like), atol=1e-12)
    # simulate: y = A x + sigma n (per-element sigma), noise masked for inpainting, seeded
    x = torch.rand(2, 1, 9, 8, generator=g, dtype=DT)
    mask = (torch.rand(2, 1, 9, 8, generator=g) > 0.5).to(DT)
    sig = torch.tensor([0.1, 0.2], dtype=DT)
    inp = dinv.physics.Inpainting((1, 9, 8), mask=mask, noise_model=noise(sig))
    y = simulate(inp, x, torch.Generator().manual_seed(1))
    n = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=DT)
    assert torch.equal(y, (x * mask + sig.view(-1, 1, 1, 1) * n) * mask)
    assert torch.equal(simulate(dinv.physics.Denoising(dinv.physics.ZeroNoise()), x), x)
