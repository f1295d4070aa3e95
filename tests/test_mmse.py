r"""Exactness of the one-evaluation posterior mean and std (:class:`deepinv_energy.EnergyMMSE`).

Reference: the exact Gaussian-mixture posterior computed densely in measurement space
(``deepinv_energy.testing.measurement_posterior``), float64.

Tolerances. With the exact energy the only approximation is the finite ``lam_max`` (and the floor
``lam_min`` for noise-free coefficients): the translated posterior is the exact one conditioned on
an extra observation of variance ``lam_max`` on the unobserved coefficients, which moves means and
variances by O(|C| / lam_max) ~ 1e-6 (|C| <= 1, lam_max = 1e6); for a blur, frequencies so weakly
observed that ``|K|^2 lam_max <= sigma^2`` are treated as unobserved, an error of the same order. We
allow 1e-5 on means and variances (as ``test_problems.py``).

Per-pixel variance of a blur. The model predicts the posterior variance of each Hartley
coefficient, not the off-diagonal terms, so the per-pixel map is the diagonal of the Hartley-
diagonal part of the posterior covariance: that is what is compared to 1e-5 (and its per-channel
mean, the trace, to the exact per-pixel variances). It is not the exact per-pixel variance for a
non-stationary prior (for the mixture below the two differ by up to ~40 % relative); for a
stationary Gaussian prior the posterior covariance is diagonal in the Hartley basis and the map is
exact and constant (tested).
"""

import math

import deepinv as dinv
import pytest
import torch

from deepinv_energy.testing import measurement_posterior
from deepinv_energy import (
    LAM_MAX as LAM_MAX_DEFAULT,
    LAM_MIN,
    Covariance,
    EnergyMMSE,
    EnergyModel,
    GaussianEnergy,
    MMSEOutput,
    PredictorCorrectorSampler,
    UnsupportedPhysicsError,
)
from helpers import random_mixture

DT = torch.float64
LAM_MAX = 1e6
TOL = 1e-5


def noise(sigma):
    return dinv.physics.GaussianNoise(sigma) if sigma is not None else dinv.physics.ZeroNoise()


def make_physics(name, shape, sigma, seed=12):
    """deepinv physics with per-element parameters (batch of 2)."""
    g = torch.Generator().manual_seed(seed)
    nm = noise(sigma)
    c, h, w = shape
    if name == "denoising":
        return dinv.physics.Denoising(noise_model=nm)
    if name == "inpainting-box":
        mask = torch.ones(2, *shape, dtype=DT)
        mask[0, :, 1:4, 1:4] = 0
        mask[1, :, 2:5, 0:3] = 0
        return dinv.physics.Inpainting(shape, mask=mask, noise_model=nm)
    if name == "inpainting-random":
        mask = (torch.rand(2, *shape, generator=g) > 0.5).to(DT)
        return dinv.physics.Inpainting(shape, mask=mask, noise_model=nm)
    if name in ("blurfft", "blur-circular"):
        k = torch.rand(2, 1, 3, 3, generator=g, dtype=DT)
        k = k / k.sum(dim=(-2, -1), keepdim=True)
        if name == "blurfft":
            return dinv.physics.BlurFFT(shape, filter=k, noise_model=nm)
        return dinv.physics.Blur(filter=k, padding="circular", noise_model=nm)
    if name == "decimation":
        return dinv.physics.Downsampling(shape, filter=None, factor=2, noise_model=nm)
    raise AssertionError(name)


SIG = torch.tensor([0.05, 0.15], dtype=DT)  # per-element noise levels
CASES = [
    ("denoising", SIG),
    ("inpainting-box", SIG),
    ("inpainting-box", None),  # noise-free
    ("inpainting-random", SIG),
    ("blurfft", SIG),
    ("blur-circular", 0.05),
    ("decimation", SIG),
    ("decimation", None),
]


def setup(name, sigma, shape, seed=11):
    model = random_mixture(shape, k=3, seed=seed)
    physics = make_physics(name, shape, sigma)
    x = model.sample_prior(2, generator=torch.Generator().manual_seed(seed + 2))
    torch.manual_seed(seed + 3)
    y = physics(x)
    return model, physics, x, y, measurement_posterior(model, y, physics)


def hartley_matrix(shape):
    return Covariance("hartley", torch.zeros(1, *shape, dtype=DT)).basis_matrix()


@pytest.mark.parametrize("shape", [(1, 6, 6), (2, 4, 6)])
@pytest.mark.parametrize("name,sigma", CASES, ids=[f"{n}-{'noisy' if s is not None else 'noise-free'}" for n, s in CASES])
def test_mean_and_std_match_exact_posterior(name, sigma, shape):
    model, physics, x, y, ref = setup(name, sigma, shape)
    mmse = EnergyMMSE(model, lam_max=LAM_MAX)
    mean, std = mmse(y, physics, return_std=True)
    assert mean.shape == x.shape and std.shape == x.shape and mean.dtype == DT
    assert torch.allclose(mean, ref.mean(), atol=TOL), (mean - ref.mean()).abs().max()
    assert torch.equal(mmse(y, physics), mean)  # plain tensor by default, same value

    out = mmse.moments(y, physics)
    assert torch.allclose(out.std, std) and (out.negative == 0).all()
    cov = ref.covariance()  # (B, d, d)
    exact_pixel_var = torch.diagonal(cov, dim1=-2, dim2=-1).reshape(x.shape)
    if out.basis == "pixel":
        assert torch.allclose(std**2, exact_pixel_var, atol=TOL), (std**2 - exact_pixel_var).abs().max()
    else:
        v = hartley_matrix(shape)
        coef_var = torch.diagonal(v.T @ cov @ v, dim1=-2, dim2=-1)  # exact Var of each Hartley coefficient
        assert torch.allclose(out.coef_variance.reshape(2, -1), coef_var, atol=TOL)
        diag_part = torch.diagonal((v * coef_var[:, None, :]) @ v.T, dim1=-2, dim2=-1).reshape(x.shape)
        assert torch.allclose(std**2, diag_part, atol=TOL), (std**2 - diag_part).abs().max()
        # the trace (per channel) is exact
        assert torch.allclose((std**2).mean((-2, -1)), exact_pixel_var.mean((-2, -1)), atol=TOL)


def test_stationary_prior_blur_std_is_exact_and_constant():
    """Prior N(mu, C) with C circulant and symmetric: the posterior covariance is diagonal in the
    Hartley basis and the per-pixel variance is the per-channel mean of the coefficient variances."""
    shape = (2, 6, 6)
    v = hartley_matrix(shape)
    fy = torch.fft.fftfreq(6, dtype=DT)
    spectrum = 0.05 / (1 + 40 * (fy[:, None] ** 2 + fy[None, :] ** 2))  # symmetric: c_k = c_{-k}
    spectrum = torch.stack([spectrum, 2 * spectrum]).reshape(-1)  # per channel
    prior = GaussianEnergy(torch.full((1, *shape), 0.5, dtype=DT), (v * spectrum) @ v.T)
    k = torch.tensor([[[[0.5, 0.3, 0.0], [0.0, 0.2, 0.0]]]], dtype=DT)  # not symmetric
    physics = dinv.physics.BlurFFT(shape, filter=k, noise_model=noise(0.05))
    torch.manual_seed(0)
    y = physics(prior.sample_prior(2, generator=torch.Generator().manual_seed(1)))
    ref = measurement_posterior(prior, y, physics)
    mean, std = EnergyMMSE(prior, lam_max=LAM_MAX)(y, physics, return_std=True)
    exact = torch.diagonal(ref.covariance(), dim1=-2, dim2=-1).reshape(y.shape).sqrt()
    assert torch.allclose(mean, ref.mean(), atol=TOL)
    assert torch.allclose(std, exact, atol=TOL), (std - exact).abs().max()
    per_channel = std.flatten(2)
    assert torch.allclose(per_channel, per_channel[..., :1].expand_as(per_channel), atol=1e-10)
    assert float(per_channel[:, 0].mean()) < float(per_channel[:, 1].mean())  # channels differ


def test_defaults_follow_the_samplers():
    """Same lam_min, lam_max and fill of unobserved pixels as the samplers, so the same problem."""
    model, physics, x, y, ref = setup("inpainting-box", 0.1, (1, 6, 6))
    mmse = EnergyMMSE(model)
    it = PredictorCorrectorSampler(model).iterator
    assert (mmse.lam_min, mmse.lam_max, mmse.fill) == (it.lam_min, it.lam_max, it.fill) == (LAM_MIN, LAM_MAX_DEFAULT, 0.5)
    ours, theirs = mmse.problem(y, physics), it.problem(model, y, physics)
    assert torch.equal(ours.x_tilde, theirs.x_tilde) and torch.equal(ours.cov.log_var, theirs.cov.log_var)
    assert (ours.x_tilde[~ours.observed] == 0.5).all()
    # at the default lam_max = 1e3 the error is O(|C| / lam_max), still small for the exact energy
    assert torch.allclose(mmse(y, physics), ref.mean(), atol=1e-3)


def test_inside_deepinv_test():
    model, physics, x, y, ref = setup("inpainting-random", 0.1, (1, 6, 6))
    loader = torch.utils.data.DataLoader([{"x": x[i], "y": y[i]} for i in range(2)], batch_size=2)
    res = dinv.test(EnergyMMSE(model, lam_max=LAM_MAX), loader, physics, metrics=dinv.metric.MSE(),
                    compare_no_learning=False, verbose=False, show_progress_bar=False)
    exact = float(((ref.mean() - x) ** 2).mean())
    assert math.isclose(res["MSE"], exact, rel_tol=1e-4), (res, exact)


def test_float32_measurements_with_float64_model():
    model, physics, x, y, ref = setup("blurfft", 0.05, (1, 6, 6))
    mean32, std32 = EnergyMMSE(model, lam_max=LAM_MAX)(y.float(), physics, return_std=True)
    assert mean32.dtype == torch.float32 and std32.dtype == torch.float32
    assert torch.allclose(mean32.double(), ref.mean(), atol=1e-5)


class _NegativeVariance(EnergyModel):
    """U = sum(log lam): h = 1, g = 0, so every predicted variance is -lam < 0."""

    def energy(self, y, cov):
        return (0 * y).flatten(1).sum(1) + cov.log_var.flatten(1).sum(1)


@pytest.mark.parametrize("physics", [dinv.physics.Denoising(noise_model=noise(0.1)),
                                     dinv.physics.BlurFFT((1, 4, 4), filter=torch.ones(1, 1, 2, 2) / 4,
                                                          noise_model=noise(0.1))])
def test_negative_variances_are_clamped_and_counted(physics):
    y = torch.rand(3, 1, 4, 4)
    out = EnergyMMSE(_NegativeVariance()).moments(y, physics)
    assert isinstance(out, MMSEOutput)
    assert (out.coef_variance < 0).all() and (out.negative == 16).all()
    assert (out.variance == 0).all() and (out.std == 0).all()


def test_unsupported_physics_and_bad_inputs():
    model = random_mixture((1, 4, 4), k=2, seed=1)
    mmse = EnergyMMSE(model)
    x = torch.rand(1, 1, 4, 4, dtype=DT)
    for physics in [
        dinv.physics.CompressedSensing(m=10, img_size=(1, 4, 4)),
        dinv.physics.Blur(filter=torch.ones(1, 1, 3, 3) / 9, padding="valid"),
        dinv.physics.Downsampling((1, 4, 4), filter="bicubic", factor=2),
    ]:
        with pytest.raises(UnsupportedPhysicsError, match=type(physics).__name__):
            mmse(physics(x.float()), physics)  # CS: a (B, m) measurement, still reported as unsupported
    den = dinv.physics.Denoising(noise_model=noise(0.1))
    with pytest.raises(ValueError, match="NaN"):
        mmse(x * float("nan"), den)
    with pytest.raises(TypeError, match="floating"):
        mmse(torch.ones(1, 1, 4, 4, dtype=torch.long), den)
    with pytest.raises(ValueError, match="shape"):
        mmse(torch.rand(1, 1, 6, 6, dtype=DT), den)  # the mixture lives on 4x4 images
    with pytest.raises(TypeError, match="EnergyModel"):
        EnergyMMSE(torch.nn.Identity())
    with pytest.raises(ValueError, match="lam_min"):
        EnergyMMSE(model, lam_min=1.0, lam_max=0.5)
    with pytest.raises(ValueError, match="fill"):
        EnergyMMSE(model, fill=float("nan"))
