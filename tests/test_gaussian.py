import math

import pytest
import torch

from deepinv_energy import Covariance, GaussianEnergy, GaussianMixtureEnergy
from helpers import random_mixture

SHAPE = (1, 3, 4)


def anisotropic(basis, b=2, shape=SHAPE, seed=1, low=-4.0, high=1.0):
    g = torch.Generator().manual_seed(seed)
    lv = low + (high - low) * torch.rand(b, *shape, generator=g, dtype=torch.float64)
    return Covariance(basis, lv)


def noisy(model, cov, seed=2):
    g = torch.Generator().manual_seed(seed)
    x = model.sample_prior(cov.shape[0], generator=g)
    return x + cov.sample(generator=g)


@pytest.mark.parametrize("basis", ["pixel", "hartley"])
def test_grads_match_finite_differences(basis):
    model = random_mixture(SHAPE, seed=4)
    cov = anisotropic(basis)
    y = noisy(model, cov)
    g, h = model.grads(y, cov)
    eps = 1e-6
    for idx in [(0, 0, 0, 0), (1, 0, 2, 3), (0, 0, 1, 2)]:
        dy = torch.zeros_like(y)
        dy[idx] = eps
        fd = (model.energy(y + dy, cov) - model.energy(y - dy, cov)) / (2 * eps)
        assert torch.allclose(fd[idx[0]], g[idx], rtol=1e-6, atol=1e-7)
        up = cov.with_log_var(cov.log_var + dy)
        down = cov.with_log_var(cov.log_var - dy)
        fd = (model.energy(y, up) - model.energy(y, down)) / (2 * eps)
        assert torch.allclose(fd[idx[0]], h[idx], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("basis", ["pixel", "hartley"])
def test_tweedie_and_posterior_variance_are_exact(basis):
    model = random_mixture(SHAPE, seed=5)
    cov = anisotropic(basis, b=3)
    y = noisy(model, cov)
    post = model.posterior(y, cov)
    assert torch.allclose(model.denoise(y, cov), post.mean(), atol=1e-10)
    v = cov.basis_matrix()
    exact_var = torch.diagonal(v.T @ post.covariance() @ v, dim1=-2, dim2=-1).reshape(y.shape)
    assert torch.allclose(model.posterior_variance(y, cov), exact_var, atol=1e-10)
    mean, var = model.posterior_moments(y, cov)
    assert torch.allclose(mean, post.mean(), atol=1e-10) and torch.allclose(var, exact_var, atol=1e-10)


def test_large_noise_limit():
    model = random_mixture(SHAPE, seed=6)
    y = torch.rand(2, *SHAPE, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    d = math.prod(SHAPE)
    errs = []
    for lam in [1e4, 1e5, 1e6]:
        cov = Covariance.isotropic(lam, y, basis="hartley")
        c = cov.to_basis(y)
        gauss = 0.5 * (c**2).flatten(1).sum(1) / lam + 0.5 * d * math.log(2 * math.pi * lam)
        errs.append((model.energy(y, cov) - gauss).abs())
    # identity 4: the error is O(1/lam), so it shrinks tenfold per decade
    assert (errs[2] < 1e-4).all()
    for a, b in zip(errs[:-1], errs[1:]):
        assert torch.allclose(a / b, torch.full_like(a, 10.0), rtol=0.1)


def test_energy_is_normalized_1d_and_2d():
    # 1-D: integrate exp(-U) on a fine grid
    means = torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64).reshape(3, 1, 1, 1)
    covs = torch.tensor([0.2, 0.05, 0.5], dtype=torch.float64).reshape(3, 1, 1)
    model = GaussianMixtureEnergy(means, covs, torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64))
    t = torch.linspace(-12, 14, 20001, dtype=torch.float64)
    y = t.reshape(-1, 1, 1, 1)
    p = torch.exp(-model.energy(y, Covariance.isotropic(0.3, y)))
    assert abs(torch.trapezoid(p, t).item() - 1) < 1e-9
    # 2-D (two pixels), anisotropic covariance in the Hartley basis, correlated components
    model = random_mixture((1, 1, 2), k=2, seed=7, scale=0.5)
    t = torch.linspace(-6, 7, 801, dtype=torch.float64)
    yy = torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 1, 1, 2)
    cov = Covariance("hartley", torch.log(torch.tensor([0.3, 0.05], dtype=torch.float64)).reshape(1, 1, 1, 2).expand_as(yy))
    p = torch.exp(-model.energy(yy, cov)).reshape(801, 801)
    total = torch.trapezoid(torch.trapezoid(p, t, dim=1), t)
    assert abs(total.item() - 1) < 1e-6


def test_gaussian_energy_closed_form():
    g = torch.Generator().manual_seed(8)
    d = math.prod(SHAPE)
    q = torch.randn(d, d, generator=g, dtype=torch.float64)
    c = q @ q.T / d + 0.1 * torch.eye(d, dtype=torch.float64)
    mu = torch.rand(SHAPE, generator=g, dtype=torch.float64)
    model = GaussianEnergy(mu, c)
    cov = anisotropic("hartley")
    y = torch.randn(2, *SHAPE, generator=g, dtype=torch.float64)
    m = c + cov.dense()
    r = (y - mu).reshape(2, d, 1)
    ref = 0.5 * (r.transpose(1, 2) @ torch.linalg.solve(m, r)).flatten() + 0.5 * torch.logdet(2 * math.pi * m)
    assert torch.allclose(model.energy(y, cov), ref, atol=1e-10)
    assert torch.allclose(model.log_prob(y, cov), -ref, atol=1e-10)


def test_prior_and_posterior_samples_match_moments():
    model = random_mixture((1, 2, 2), k=2, seed=9)
    cov = anisotropic("pixel", b=1, shape=(1, 2, 2), low=-3, high=-1)
    y = noisy(model, cov)
    post = model.posterior(y, cov)
    n = 40000
    s = post.sample(n, generator=torch.Generator().manual_seed(0))[:, 0].reshape(n, -1)
    mean, covm = post.mean().reshape(-1), post.covariance()[0]
    se = torch.sqrt(torch.diagonal(covm) / n)
    assert ((s.mean(0) - mean).abs() < 5 * se).all()
    assert torch.allclose(torch.cov(s.T), covm, atol=5 * covm.abs().max().item() * math.sqrt(2 / n))


def test_bad_inputs():
    model = random_mixture(SHAPE)
    y = torch.zeros(1, *SHAPE, dtype=torch.float64)
    with pytest.raises(ValueError, match="image shape"):
        model.energy(torch.zeros(1, 1, 4, 4, dtype=torch.float64), Covariance.isotropic(1.0, torch.zeros(1, 1, 4, 4)))
    with pytest.raises(ValueError, match="NaN"):
        model.energy(y * float("nan"), Covariance.isotropic(1.0, y))
    with pytest.raises(ValueError, match="covs"):
        GaussianMixtureEnergy(torch.zeros(2, 1, 2, 2), torch.eye(4).expand(3, 4, 4))
