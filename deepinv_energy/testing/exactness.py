r"""Closed-form reference problems and moment statistics for exactness checks of samplers.

The tools of the package's exactness tests and of ``benchmarks/sampler_exactness.py``: random
Gaussian-mixture priors (whose posteriors under every supported physics are exact, see
:func:`measurement_posterior`), batches of measurements with
per-element physics parameters, and statistics comparing draws with an exact posterior (max
:math:`|z|` of the moments, KL divergence of the Gaussian fits).

:Examples:

>>> from deepinv_energy.testing import mixture_problem, moment_z
>>> model, physics, y, ref = mixture_problem("denoising", (1, 2, 2))
>>> xs = ref.sample(4000, generator=__import__("torch").Generator().manual_seed(0))[:, 0].reshape(4000, -1)
>>> z_mean, z_cov = moment_z(xs, ref.mean()[0].reshape(-1), ref.covariance()[0])
>>> z_mean < 4.5 and z_cov < 4.5  # exact draws
True
"""

from __future__ import annotations

import math

import deepinv as dinv
import torch

from ..covariance import Covariance
from ..models.gaussian import GaussianMixtureEnergy, MixturePosterior, linear_gaussian_posterior
from ..problems import noise_std, physics_matrix
from ..sampling import AdaptiveSampler, MALASampler, PredictorCorrectorSampler

__all__ = ["measurement_posterior", "random_mixture", "mixture_problem", "bimodal_problem", "mode_weights", "level_target", "split_gibbs_target", "moment_z", "gaussian_kl", "tweedie_extra_var",
           "PHYSICS_CASES", "SAMPLER_CASES", "ADAPTIVE_CASE"]

def measurement_posterior(model: GaussianMixtureEnergy, y: torch.Tensor, physics) -> MixturePosterior:
    r"""Exact posterior and evidence for :math:`y = A x + \sigma n` with a deepinv physics.

    Computed densely in measurement space (no change of basis), as the reference the
    energy path is tested against. The physics' noise model must be Gaussian (or zero).
    Entries where :math:`A` has a zero row and :math:`y` is exactly zero (noise-free
    measurements, or inpainting, whose noise deepinv masks too) carry no information and
    are left out: the evidence is the density of the other entries.

    :param GaussianMixtureEnergy model: the prior (a Gaussian mixture, or a Gaussian).
:param torch.Tensor y: measurements.
    :param deepinv.physics.LinearPhysics physics: the forward model.
    """
    b = y.shape[0]
    dt, dev = y.dtype, y.device
    a = physics_matrix(physics, model.image_shape, b, dtype=dt, device=dev)
    yv = y.reshape(b, -1)
    sigma = noise_std(physics, b, dtype=dt, device=dev)
    log_ws, means, covs, evid = [], [], [], []
    for i in range(b):  # rows kept may differ per element when noise-free
        ai, yi = a[i], yv[i]
        # rows where A vanishes and y is exactly 0 measured nothing (noise-free, or
        # inpainting, where deepinv masks the noise too): condition on the other rows.
        keep = (ai.abs().sum(1) > 0) | (yi != 0)
        ai, yi = ai[keep], yi[keep]
        r = sigma[i] ** 2 * torch.eye(ai.shape[0], dtype=dt, device=dev)
        lw, mu, cv, ev = linear_gaussian_posterior(
            model.log_weights.to(y), model.means.reshape(-1, model.dim).to(y), model.covs.to(y),
            ai[None], yi[None], r[None],
        )
        log_ws.append(lw), means.append(mu), covs.append(cv), evid.append(ev)
    return MixturePosterior(
        torch.cat(log_ws), torch.cat(means), torch.cat(covs), torch.cat(evid), model.image_shape
    )


#: physics names of :func:`mixture_problem`.
PHYSICS_CASES = ("denoising", "inpainting", "inpainting-noiseless", "blur", "decimation")

#: (physics, image shape, sampler factory, label): every physics, both predictors, with and without
#: MH; the configurations whose exactness the tests check (``tests/test_sampling.py``) and the
#: benchmark measures at larger n.
SAMPLER_CASES = [
    ("denoising", (1, 4, 4), lambda m: PredictorCorrectorSampler(m, n_levels=100, n_corrector=0),
     "PC euler, 100 levels, no corrector"),
    ("inpainting", (1, 4, 4), lambda m: MALASampler(m, n_levels=40, predictor="covariance"),
     "MALA (snr 0.15), covariance predictor, 40 levels"),
    ("inpainting-noiseless", (1, 4, 4), lambda m: PredictorCorrectorSampler(m, n_levels=40, n_corrector=0, predictor="covariance"),
     "PC covariance predictor, 40 levels, no corrector"),
    ("blur", (2, 4, 4), lambda m: MALASampler(m, n_levels=40, predictor="covariance"),
     "MALA (snr 0.15), covariance predictor, 40 levels"),
    ("decimation", (1, 4, 4), lambda m: PredictorCorrectorSampler(m, n_levels=60, n_corrector=0, predictor="covariance"),
     "PC covariance predictor, 60 levels, no corrector"),
]
#: the adaptive configuration checked for exactness, in the format of :data:`SAMPLER_CASES`.
ADAPTIVE_CASE = ("inpainting", (1, 4, 4), lambda m: AdaptiveSampler(m, tolerance=0.05, predictor="covariance"),
                 "Adaptive (error rule, tol 0.05), covariance predictor")


def random_mixture(shape=(1, 6, 6), k=3, seed=0, dtype=torch.float64, scale=0.05) -> GaussianMixtureEnergy:
    """A Gaussian mixture with distinct means in [0.2, 0.8] and non-diagonal covariances.

    :param tuple shape: image shape (C, H, W).
    :param int k: number of components.
    :param int seed: seed of the parameters.
    :param float scale: scale of the random part of the covariances (plus 0.01 I).
    """
    g = torch.Generator().manual_seed(seed)
    d = math.prod(shape)
    means = 0.2 + 0.6 * torch.rand(k, *shape, generator=g, dtype=dtype)
    q = torch.randn(k, d, d, generator=g, dtype=dtype)
    covs = scale * q @ q.transpose(-1, -2) / d + 0.01 * torch.eye(d, dtype=dtype)
    weights = 0.5 + torch.rand(k, generator=g, dtype=dtype)
    return GaussianMixtureEnergy(means, covs, weights)


def mixture_problem(name: str, shape, seed: int = 3):
    """A batch of two measurements with per-element physics parameters, and the exact posterior.

    Noise levels 0.05 / 0.1 (float64); masks and blur kernels differ per element.

    :param str name: one of :data:`PHYSICS_CASES`.
    :param tuple shape: image shape (C, H, W).
    :param int seed: seed of the prior, the physics and the measurement.
    :return: ``(model, physics, y, posterior)``: the mixture energy, the deepinv physics, the
        measurements (2, ...) and the exact :class:`~deepinv_energy.models.gaussian.MixturePosterior`.
    """
    dt = torch.float64
    model = random_mixture(shape, k=3, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    b = 2
    nm = dinv.physics.GaussianNoise(torch.tensor([0.05, 0.1], dtype=dt))
    if name == "denoising":
        physics = dinv.physics.Denoising(noise_model=nm)
    elif name in ("inpainting", "inpainting-noiseless"):
        mask = (torch.rand(b, *shape, generator=g) > 0.4).to(dt)
        mask[..., 0, 0] = 1
        nm = nm if name == "inpainting" else dinv.physics.ZeroNoise()
        physics = dinv.physics.Inpainting(shape, mask=mask, noise_model=nm)
    elif name == "blur":
        k = torch.rand(b, 1, 3, 3, generator=g, dtype=dt)
        physics = dinv.physics.Blur(filter=k / k.sum(dim=(-2, -1), keepdim=True), padding="circular", noise_model=nm)
    elif name == "decimation":
        physics = dinv.physics.Downsampling(shape, filter=None, factor=2, noise_model=nm)
    else:
        raise ValueError(f"name must be one of {PHYSICS_CASES}, got {name!r}.")
    x = model.sample_prior(b, generator=torch.Generator().manual_seed(seed + 2))
    torch.manual_seed(seed + 3)
    y = physics(x)
    return model, physics, y, measurement_posterior(model, y, physics)


def bimodal_problem(physics: str = "denoising", noise: float = 0.3, seed: int = 0, scale: float = 0.05):
    r"""A bimodal posterior: the measurement of the midpoint of two components of a 1x5x5 mixture
    with non-diagonal covariances (:func:`random_mixture` with ``seed`` and ``scale``), without noise
    added. With the defaults (denoising, noise 0.3, seed 0) the exact posterior puts 0.46 / 0.50 /
    0.04 on its three components; ``scale=0.02`` gives narrower, better separated modes.

    :param str physics: ``"denoising"``, ``"blur"`` (circular, separable [1, 2, 1] / 4 kernel) or
        ``"inpainting"`` (fixed random mask, 70 % observed).
    :param float noise: Gaussian noise standard deviation of the physics.
    :return: ``(model, physics, y, posterior)``.
    """
    model = random_mixture((1, 5, 5), k=3, seed=seed, scale=scale)
    nm = dinv.physics.GaussianNoise(noise)
    if physics == "denoising":
        op = dinv.physics.Denoising(nm)
    elif physics == "blur":
        k = torch.tensor([[0.25, 0.5, 0.25]], dtype=torch.float64)
        op = dinv.physics.Blur(filter=(k.T @ k)[None, None], padding="circular", noise_model=nm)
    elif physics == "inpainting":
        mask = (torch.rand(1, 1, 5, 5, generator=torch.Generator().manual_seed(1)) > 0.3).double()
        op = dinv.physics.Inpainting((1, 5, 5), mask=mask, noise_model=nm)
    else:
        raise ValueError(f"physics must be 'denoising', 'blur' or 'inpainting', got {physics!r}.")
    y = op.A(0.5 * (model.means[0] + model.means[1]).reshape(1, 1, 5, 5))
    return model, op, y, measurement_posterior(model, y, op)


def mode_weights(posterior, x: torch.Tensor, i: int = 0) -> torch.Tensor:
    r"""Fraction of the draws ``x`` (n, d) assigned to each component of element ``i`` of a
    :class:`~deepinv_energy.models.gaussian.MixturePosterior` (largest weighted component density)."""
    lp = torch.stack([
        torch.distributions.MultivariateNormal(
            posterior.means[i, k], covariance_matrix=0.5 * (posterior.covs[i, k] + posterior.covs[i, k].T)
        ).log_prob(x) + posterior.log_weights[i, k]
        for k in range(posterior.means.shape[1])], 1)
    return torch.bincount(lp.argmax(1), minlength=posterior.means.shape[1]).double() / x.shape[0]


def level_target(seed=7, s_obs=0.3, s_lvl=0.2):
    r"""The target of a sampler's corrector at one level, in closed form.

    Denoising (pixel basis) at noise ``s_obs`` and one level :math:`\sigma` = ``s_lvl`` < ``s_obs``:
    every coefficient is free and the level target :math:`p(y_\sigma \mid \tilde x)` is the exact
    posterior of the mixture with covariances :math:`C_k + \sigma^2 I` observed with noise variance
    ``s_obs**2 - s_lvl**2``.

    :return: ``(model, physics, y, s_lvl, target)``.
    """
    shape = (1, 4, 4)
    model = random_mixture(shape, k=3, seed=seed)
    physics = dinv.physics.Denoising(noise_model=dinv.physics.GaussianNoise(s_obs))
    x = model.sample_prior(1, generator=torch.Generator().manual_seed(8))
    torch.manual_seed(9)
    y = physics(x)
    d = math.prod(shape)
    dt = model.covs.dtype
    level_prior = GaussianMixtureEnergy(model.means, model.covs + s_lvl**2 * torch.eye(d, dtype=dt),
                                        model.log_weights.exp())
    target = level_prior.posterior(y, Covariance.isotropic(s_obs**2 - s_lvl**2, y))
    return model, physics, y, s_lvl, target


def split_gibbs_target(model: GaussianMixtureEnergy, y: torch.Tensor, physics, rho: float) -> MixturePosterior:
    r"""Exact :math:`x`-marginal of the split Gibbs target of :class:`~deepinv_energy.sampling.SplitGibbsSampler`:
    the posterior of the mixture under the inflated likelihood
    :math:`\mathcal{N}(y;\, A x,\, \sigma^2 I + \rho^2 A A^\top)` (``rho=0``: the posterior itself).

    :param model: the mixture prior; ``y`` (B, ...) measurements of the linear ``physics``
        (Gaussian noise, dense matrix from :func:`~deepinv_energy.problems.physics_matrix`).
    """
    b, dt, dev = y.shape[0], y.dtype, y.device
    a = physics_matrix(physics, model.image_shape, b, dtype=dt, device=dev)
    sigma = noise_std(physics, b, dtype=dt, device=dev)
    eye = torch.eye(a.shape[1], dtype=dt, device=dev)
    noise_cov = sigma.reshape(-1, 1, 1) ** 2 * eye + rho**2 * a @ a.transpose(-1, -2)
    out = linear_gaussian_posterior(model.log_weights.to(y), model.means.reshape(-1, model.dim).to(y),
                                     model.covs.to(y), a, y.reshape(b, -1), noise_cov)
    return MixturePosterior(*out, image_shape=model.image_shape)


def moment_z(xs: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor, extra_var: torch.Tensor | None = None):
    r"""max :math:`|z|` of the sample mean and of the sample covariance entries; ``xs`` (n, d).

    :math:`z` = (estimate - exact) / standard error, the standard error estimated from the samples
    (for covariances, the std of the centred products / :math:`\sqrt n`: valid for non-Gaussian
    posteriors). ``extra_var`` (d,) is added to the diagonal of the sample covariance: for Tweedie
    draws :math:`\mathbb{E}[x \mid y_K]` the posterior covariance is their covariance plus
    :math:`\mathbb{E}[\operatorname{Cov}(x \mid y_K)]` (law of total covariance), whose diagonal
    the sampler returns (:func:`tweedie_extra_var`). Coordinates with zero exact variance
    (noise-free observations) must match exactly instead (``AssertionError`` otherwise).

    :return: ``(z_mean, z_cov)``.
    """
    n = xs.shape[0]
    keep = torch.diagonal(cov) > 1e-10
    if not torch.allclose(xs[:, ~keep], mean[~keep].expand(n, -1), atol=1e-5):
        raise AssertionError("draws differ from the exact value on noise-free coordinates.")
    xs, mean, cov = xs[:, keep], mean[keep], cov[keep][:, keep]
    m_hat = xs.mean(0)
    z_mean = ((m_hat - mean) / torch.sqrt(torch.diagonal(cov) / n)).abs().max()
    xc = xs - m_hat
    prod = xc[:, :, None] * xc[:, None, :]
    c_hat = prod.sum(0) / (n - 1)
    if extra_var is not None:
        c_hat = c_hat + torch.diag(extra_var[keep])
    se = prod.std(0) / math.sqrt(n)
    iu = torch.triu_indices(cov.shape[0], cov.shape[0])
    z_cov = ((c_hat - cov) / se)[iu[0], iu[1]].abs().max()
    return float(z_mean), float(z_cov)


def gaussian_kl(xs, mean, cov, extra_var=None) -> float:
    r""":math:`\mathrm{KL}(\mathcal{N}(\hat m, \hat C) \,\|\, \mathcal{N}(m, C))` of the Gaussian fit of draws
    ``xs`` (n, d) [+ diag ``extra_var``] to the exact moments, over coordinates with positive
    variance (see :func:`moment_z` for ``extra_var``)."""
    keep = torch.diagonal(cov) > 1e-10
    xs, mean, cov = xs[:, keep], mean[keep], cov[keep][:, keep]
    m_hat, c_hat = xs.mean(0), torch.cov(xs.T)
    if extra_var is not None:
        c_hat = c_hat + torch.diag(extra_var[keep])
    ci = torch.linalg.inv(cov)
    dm = m_hat - mean
    return float(0.5 * (torch.trace(ci @ c_hat) - mean.numel() + dm @ ci @ dm + torch.logdet(cov) - torch.logdet(c_hat)))


def tweedie_extra_var(out, i: int) -> torch.Tensor:
    r"""(d,) mean per-pixel :math:`\operatorname{Var}[x \mid y_K]` of element ``i`` of a
    :class:`~deepinv_energy.sampling.SamplerOutput` (the ``extra_var`` of :func:`moment_z`)."""
    return out.variance[:, i].reshape(out.variance.shape[0], -1).mean(0)
