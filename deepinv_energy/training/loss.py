r"""Anisotropic covariance score matching (section 6 of the method) and normalization.

For clean images :math:`x`, covariances :math:`\Sigma = V\operatorname{diag}(\lambda)V^\top`
and :math:`z \sim \mathcal{N}(0, I)`, :math:`y = x + V(\sqrt\lambda\, z)`; with
:math:`(U, g, h)` from ONE autograd call (``create_graph=True``):

.. math::

    L_\text{den} = \frac1d \big\| \sqrt\lambda \odot V^\top g - z \big\|^2, \qquad
    L_\text{cov} = \frac1d \big\| h - \tfrac12 (1 - z^2) \big\|^2, \qquad
    L = L_\text{den} + w\, L_\text{cov}.

Log-variances are per channel, so each coefficient has its own target (if one log-variance
were shared by several channels its target would be the sum of theirs).

Weighting. A per-coefficient weight that depends on :math:`\Sigma` only leaves the minimizer of
:math:`L_\text{den}` unchanged but decides which coefficients are learned. Unweighted, the
whitened residual :math:`\sqrt\lambda\, V^\top g - z = V^\top(x - D)/\sqrt\lambda` charges a
denoising error at :math:`\lambda = 100` a hundredth of one at :math:`\lambda = 1`, so unobserved
pixels and blurred-away frequencies teach almost nothing. ``weighting="edm"`` multiplies the
squared residual of coefficient :math:`i` by :math:`1 + \lambda_i / v_i` (:math:`v_i` the model's
data variance of the coefficient), i.e. the squared denoising error by EDM's
:math:`(v_i + \lambda_i)/(v_i \lambda_i)`, so every coefficient's loss is of order one.
:math:`L_\text{cov}` stays unweighted (its target noise does not shrink with :math:`\lambda`).
"""

from __future__ import annotations

import math

import torch

from ..covariance import LAM_MAX, Covariance, to_basis

__all__ = ["covariance_score_matching_loss", "coefficient_score_matching_loss", "draw_noise", "denoising_weight", "direct_denoising_loss", "normalization_constant"]


def covariance_score_matching_loss(
    model,
    x: torch.Tensor,
    covs,
    generator: torch.Generator | None = None,
    w_cov: float = 1.0,
    reduction: str = "mean",
    weighting: str = "none",
):
    r"""Loss :math:`L = L_\text{den} + w L_\text{cov}` on a batch.

    :param EnergyModel model: the energy model.
    :param torch.Tensor x: clean images (B, C, H, W).
    :param Covariance | list covs: one covariance batch, or a list of them whose batch sizes
        add up to B (consecutive slices of ``x``, e.g. one per basis).
    :param torch.Generator generator: randomness of the noise ``z``.
    :param float w_cov: weight :math:`w` of the covariance term.
    :param str reduction: ``"mean"`` (scalars) or ``"none"`` (per-sample (B,) tensors).
    :param str weighting: ``"none"`` (the paper's loss) or ``"edm"`` (the squared whitened
        residual of coefficient :math:`i` times :math:`1 + \lambda_i / v_i`, with :math:`v_i` from
        ``model.data_log_var(basis)``; see the module docstring).
    :return: dict with ``loss``, ``den``, ``cov`` (and ``energy``, the detached energies (B,)).
    """
    terms = []
    for xb, cov, z, lam_sqrt, y in _noisy_batches(x, covs, generator):
        u, g, h = model.energy_and_grads(y, cov, create_graph=True)
        terms.append(_sample_terms(denoising_weight(model, cov, weighting), lam_sqrt, cov.to_basis(g), h, z) + (u.detach(),))
    return _reduce(terms, w_cov, reduction)


def coefficient_score_matching_loss(model, x: torch.Tensor, covs, noise, w_cov: float = 1.0, reduction: str = "mean",
                                    weighting: str = "none"):
    r"""The loss of :func:`covariance_score_matching_loss` for given noise, computed in the coefficients
    of each covariance's basis with :func:`torch.func.grad` instead of ``torch.autograd.grad``: the form
    :func:`torch.compile` traces as one graph and differentiates a second time
    (``TrainConfig.compile``). For an orthonormal :math:`V`, :math:`c = V^\top(y - \mu) = V^\top(x - \mu)
    + \sqrt\lambda\, z` and :math:`\nabla_c U = V^\top g`, so with the noise that
    :func:`covariance_score_matching_loss` draws (:func:`draw_noise` with the same generator) it is the
    same loss, to round-off. No validation and no host-device synchronization inside.

    :param EnergyUNet model: the learned energy (its unchecked coefficient path is used).
    :param torch.Tensor x: clean images (B, C, H, W).
    :param list covs: covariance batches (consecutive slices of ``x``).
    :param list noise: the standard normal noise ``z`` of each covariance batch (:func:`draw_noise`).
    :return: the dict of :func:`covariance_score_matching_loss`.
    """
    if not hasattr(model, "_core"):
        raise TypeError(f"coefficient_score_matching_loss needs an EnergyUNet, got {type(model).__name__}.")
    terms = []
    for (xb, cov), z in zip(_split(x, covs), noise):
        basis, lv = cov.basis, cov.log_var.to(x.dtype)
        lam_sqrt = torch.exp(0.5 * lv)
        c = to_basis(xb - model.mean.to(x.dtype), basis) + lam_sqrt * z

        def energy(c, lv, basis=basis):
            gauss, net, b, kappa = model._terms(*model._core(c, basis, lv), basis, c.dtype)
            u = gauss + net + b - kappa
            return u.sum(), u.detach()

        (gc, h), u = torch.func.grad(energy, argnums=(0, 1), has_aux=True)(c, lv)
        wt = denoising_weight(model, Covariance.trusted(basis, lv), weighting)
        terms.append(_sample_terms(wt, lam_sqrt, gc, h, z) + (u,))
    return _reduce(terms, w_cov, reduction)


def _sample_terms(wt, lam_sqrt, gc, h, z):
    r"""Per-sample ``(L_den, L_cov)`` from the weight, :math:`\sqrt\lambda`, :math:`V^\top g`, :math:`h` and :math:`z`."""
    d = z[0].numel()
    return (wt * (lam_sqrt * gc - z) ** 2).flatten(1).sum(1) / d, ((h - 0.5 * (1 - z**2)) ** 2).flatten(1).sum(1) / d


def _reduce(terms, w_cov, reduction):
    den, cvl, energy = (torch.cat(t) for t in zip(*terms))
    loss = den + w_cov * cvl
    if reduction == "mean":
        loss, den, cvl = loss.mean(), den.mean(), cvl.mean()
    elif reduction != "none":
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}.")
    return {"loss": loss, "den": den, "cov": cvl, "energy": energy}


def denoising_weight(model, cov: Covariance, weighting: str = "none"):
    r"""Per-coefficient weight of the squared whitened denoising residual: ``1.0`` for
    ``"none"``, :math:`1 + \lambda_i / v_i` for ``"edm"`` (:math:`v` from
    ``model.data_log_var(cov.basis)``, shape (C, H, W))."""
    if weighting == "none":
        return 1.0
    if weighting != "edm":
        raise ValueError(f"weighting must be 'none' or 'edm', got {weighting!r}.")
    if not hasattr(model, "data_log_var"):
        raise TypeError(f"weighting='edm' needs the model's data variances (data_log_var); {type(model).__name__} has none.")
    log_v = model.data_log_var(cov.basis, tuple(cov.shape[-2:])).to(cov.log_var.dtype)
    return 1.0 + torch.exp(cov.log_var - log_v)


def direct_denoising_loss(model, x: torch.Tensor, covs, generator: torch.Generator | None = None, reduction: str = "mean",
                          weighting: str = "none"):
    r"""Plain denoising score matching of the network read as a denoiser (no energy, no double backprop):

    .. math::

        L_\text{den} = \frac1d \big\| (D(y) - x) / \sqrt\lambda \big\|^2_{V}, \qquad
        D = \texttt{model.direct\_denoise}(y, \Sigma),

    i.e. the same whitened denoising error as in :func:`covariance_score_matching_loss` (there
    :math:`\sqrt\lambda\, V^\top g - z = V^\top(x - D)/\sqrt\lambda` by Tweedie), so both
    objectives are on the same scale, with the same ``weighting``. Same arguments and outputs
    (``cov`` is zero).
    """
    dens = []
    for xb, cov, z, lam_sqrt, y in _noisy_batches(x, covs, generator):
        r = cov.to_basis(model.direct_denoise(y, cov) - xb) / lam_sqrt
        dens.append((denoising_weight(model, cov, weighting) * r**2).flatten(1).sum(1) / z[0].numel())
    den = torch.cat(dens)
    if reduction == "mean":
        den = den.mean()
    elif reduction != "none":
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}.")
    return {"loss": den, "den": den, "cov": torch.zeros_like(den), "energy": None}


def _split(x: torch.Tensor, covs) -> list:
    """``(x slice, covariance)`` pairs: the covariance batches take consecutive slices of ``x``."""
    if isinstance(covs, Covariance):
        covs = [covs]
    if sum(c.shape[0] for c in covs) != x.shape[0]:
        raise ValueError("the covariances' batch sizes must add up to the batch size of x.")
    out, start = [], 0
    for cov in covs:
        out.append((x[start : start + cov.shape[0]], cov))
        start += cov.shape[0]
    return out


def draw_noise(x: torch.Tensor, covs, generator=None) -> list:
    """The standard normal noise ``z`` of each covariance batch, drawn in the order (and from the
    generator state) in which :func:`covariance_score_matching_loss` draws it."""
    return [torch.randn(xb.shape, generator=generator, dtype=x.dtype, device=x.device) for xb, _ in _split(x, covs)]


def _noisy_batches(x: torch.Tensor, covs, generator):
    """For each covariance batch (consecutive slices of ``x``): ``(x, cov, z, sqrt(lam), y)`` with
    ``y = x + V(sqrt(lam) z)``, the noise drawn in order from ``generator``."""
    for xb, cov in _split(x, covs):
        cov = cov.to(dtype=x.dtype, device=x.device)
        z = torch.randn(xb.shape, generator=generator, dtype=x.dtype, device=x.device)
        lam_sqrt = torch.exp(0.5 * cov.log_var)
        yield xb, cov, z, lam_sqrt, xb + cov.from_basis(lam_sqrt * z)


@torch.no_grad()
def normalization_constant(model, images: torch.Tensor, var: float = LAM_MAX, basis: str = "pixel", batch: int = 256, seed: int = 0) -> float:
    r"""Mean over noisy data of :math:`U - U_\text{limit}` at a very large isotropic variance.

    By identity 4, for :math:`\lambda \to \infty`,
    :math:`-\log p_\Sigma(y) \to U_\text{limit}(y) = \tfrac12 \sum_i c_i^2/(v_i+\lambda) + \tfrac12\sum_i\log 2\pi(v_i+\lambda)`
    (the data's Gaussian, exact up to :math:`O(1/\lambda^2)`), so subtracting the returned
    constant from :math:`U` (for this basis) normalizes the model. The model's own stored
    constant for ``basis`` is excluded from the result (it returns the raw offset).
    ``var`` defaults to the largest training variance (:data:`~deepinv_energy.covariance.LAM_MAX`): beyond the training range the
    network's conditioning is extrapolated.

    :return: (float) the constant, accumulated in float64.
    """
    g = torch.Generator(device="cpu").manual_seed(seed)
    dev = next(model.parameters()).device
    total, n = 0.0, 0
    for i in range(0, images.shape[0], batch):
        x = images[i : i + batch].to(dev)
        cov = Covariance.isotropic(var, x, basis=basis)
        y = x + math.sqrt(var) * torch.randn(x.shape, generator=g).to(dev)
        gauss, net, b, _ = model.energy_terms(y, cov)
        total += (net.double() + b.double()).sum().item()
        n += x.shape[0]
    return total / n
