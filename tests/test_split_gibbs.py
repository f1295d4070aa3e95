"""Split Gibbs sampling (any linear physics) against exact Gaussian-mixture posteriors, float64."""

import deepinv as dinv
import pytest
import torch
from deepinv.physics.functional import gaussian_blur

from deepinv_energy import GaussianEnergy
from deepinv_energy.testing import moment_z, random_mixture, split_gibbs_target, tweedie_extra_var
from deepinv_energy.sampling import SplitGibbsSampler, geometric_schedule

DT = torch.float64
SHAPE = (1, 4, 4)


def _physics(name):
    if name == "dense":  # a random matrix, two measurements with their own noise levels
        a = torch.randn(10, 16, generator=torch.Generator().manual_seed(4), dtype=DT)
        a = a / torch.linalg.matrix_norm(a, ord=2)  # |A| = 1
        return dinv.physics.LinearPhysics(
            A=lambda x: x.flatten(1) @ a.T, A_adjoint=lambda y: (y @ a).reshape(-1, *SHAPE),
            noise_model=dinv.physics.GaussianNoise(torch.tensor([0.1, 0.05], dtype=DT)))
    if name == "downsampling":  # anti-aliasing filter: not diagonal in any basis of the package
        k = gaussian_blur(psf_size=(3, 3), sigma=(1.0, 1.0), dtype=DT)
        return dinv.physics.Downsampling(img_size=SHAPE, filter=k, factor=2, noise_model=dinv.physics.GaussianNoise(0.05))
    k = gaussian_blur(psf_size=(3, 3), sigma=(0.7, 0.7), dtype=DT)
    return dinv.physics.Blur(filter=k, padding="reflect", noise_model=dinv.physics.GaussianNoise(0.05))


def _problem(name):
    model = random_mixture(SHAPE, k=3, seed=3)
    physics = _physics(name)
    b = 2 if name == "dense" else 1
    x = model.sample_prior(b, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(6)
    return model, physics, physics(x)


def _z(out, post, i):
    xs = out.x[:, i].reshape(out.x.shape[0], -1)
    return moment_z(xs, post.mean()[i].reshape(-1), post.covariance()[i], tweedie_extra_var(out, i))


@pytest.mark.parametrize("name,x_levels", [("dense", 8), ("downsampling", 8), ("blur", 8), ("dense", 2)])
def test_draws_match_the_exact_posterior_at_small_rho(name, x_levels):
    """At rho_min = 0.03 the draws are within Monte Carlo error of the exact posterior p(x | y)
    (max |z| over the 16 means and 136 covariance entries, 1000 draws), with eight-level x-steps and
    with the default two-level ones (measured on the dense operator: max |z| 3.9 / 4.7 with 8 / 2 levels)."""
    model, physics, y = _problem(name)
    sampler = SplitGibbsSampler(model, [1.0, 0.5, 0.25, 0.12, 0.06, 0.03], sweeps=[3, 3, 5, 10, 10, 20],
                                x_levels=x_levels, cg_tol=1e-10)
    out = sampler.draw(y, physics, n=1000, seed=1)
    exact = split_gibbs_target(model, y, physics, 0.0)
    for i in range(y.shape[0]):
        z_mean, z_cov = _z(out, exact, i)
        assert z_mean < 5 and z_cov < 5, (name, i, z_mean, z_cov)
    d = sampler.diagnostics
    assert d.rho.shape == (51,) and torch.all(d.cg_residual < 1e-9)
    assert d.nfe == int(d.nfe_per_chain.max()) and float(d.sweep_acceptance.mean()) > 0.5


def test_bias_is_the_rho_target_and_shrinks_with_rho():
    """At rho_min = 0.3 the draws follow the inflated-likelihood target, measurably away from the
    posterior; the target's error (closed form) shrinks as rho does."""
    model, physics, y = _problem("dense")
    sampler = SplitGibbsSampler(model, geometric_schedule(1.0, 0.3, 3), sweeps=10, x_levels=8, cg_tol=1e-10)
    out = sampler.draw(y, physics, n=1000, seed=2)
    target = split_gibbs_target(model, y, physics, 0.3)
    exact = split_gibbs_target(model, y, physics, 0.0)
    assert max(_z(out, target, 0)) < 5
    assert _z(out, exact, 0)[0] > 8
    errors = [float((split_gibbs_target(model, y, physics, r).mean() - exact.mean()).abs().max()) for r in (0.3, 0.1, 0.03, 0.01)]
    assert all(a > b for a, b in zip(errors, errors[1:])) and errors[-1] < 0.1 * errors[0]


def test_mean_variant_and_deepinv_interface():
    """x_step="mean": one evaluation per sweep; sample() runs deepinv's loop on any linear physics."""
    model = GaussianEnergy(torch.zeros(1, 1, 2, 2, dtype=DT), torch.eye(4, dtype=DT))
    physics = dinv.physics.CompressedSensing(m=3, img_size=(1, 2, 2), dtype=DT, rng=torch.Generator().manual_seed(0),
                                             noise_model=dinv.physics.GaussianNoise(0.1))
    y = physics.A(torch.ones(1, 1, 2, 2, dtype=DT))
    sampler = SplitGibbsSampler(model, rho_max=1.0, rho_min=0.05, n_stages=5, sweeps=3, x_step="mean", parallel=4)
    out = sampler.draw(y, physics, n=4, seed=0)
    assert sampler.diagnostics.nfe == 15 and out.x.shape == (4, 1, 1, 2, 2)
    mean, var = sampler.sample(y, physics, n_samples=8, seed=0)
    assert mean.shape == (1, 1, 2, 2) and sampler.diagnostics.cg_iterations.shape == (15,)
    assert sampler.diagnostics.sweep_acceptance.shape == (15, 8)


def test_clear_errors():
    model = GaussianEnergy(torch.zeros(1, 1, 2, 2, dtype=DT), torch.eye(4, dtype=DT))
    y = torch.ones(1, 1, 2, 2, dtype=DT)
    sampler = SplitGibbsSampler(model, n_stages=2)
    with pytest.raises(TypeError, match="LinearPhysics"):
        sampler.draw(y, dinv.physics.Physics(A=lambda x: x**2), n=1)
    with pytest.raises(ValueError, match="GaussianNoise"):
        sampler.draw(y, dinv.physics.Denoising(dinv.physics.PoissonNoise(0.1)), n=1)
    with pytest.raises(ValueError, match="x_step"):
        SplitGibbsSampler(model, x_step="map")
    with pytest.raises(ValueError, match="sweeps"):
        SplitGibbsSampler(model, n_stages=3, sweeps=[1, 2])
    with pytest.raises(NotImplementedError):
        sampler.generate(1, (1, 2, 2))
