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

from ..covariance import LAM_MAX, Covariance

__all__ = ["covariance_score_matching_loss", "denoising_weight", "direct_denoising_loss", "normalization_constant"]


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
    dens, covls, energies = [], [], []
    for xb, cov, z, lam_sqrt, y in _noisy_batches(x, covs, generator):
        u, g, h = model.energy_and_grads(y, cov, create_graph=True)
        d = z[0].numel()
        wt = denoising_weight(model, cov, weighting)
        dens.append((wt * (lam_sqrt * cov.to_basis(g) - z) ** 2).flatten(1).sum(1) / d)
        covls.append(((h - 0.5 * (1 - z**2)) ** 2).flatten(1).sum(1) / d)
        energies.append(u.detach())
    den = torch.cat(dens)
    cvl = torch.cat(covls)
    loss = den + w_cov * cvl
    if reduction == "mean":
        loss, den, cvl = loss.mean(), den.mean(), cvl.mean()
    elif reduction != "none":
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}.")
    return {"loss": loss, "den": den, "cov": cvl, "energy": torch.cat(energies)}


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


def _noisy_batches(x: torch.Tensor, covs, generator):
    """For each covariance batch (consecutive slices of ``x``): ``(x, cov, z, sqrt(lam), y)`` with
    ``y = x + V(sqrt(lam) z)``, the noise drawn in order from ``generator``."""
    if isinstance(covs, Covariance):
        covs = [covs]
    if sum(c.shape[0] for c in covs) != x.shape[0]:
        raise ValueError("the covariances' batch sizes must add up to the batch size of x.")
    start = 0
    for cov in covs:
        xb = x[start : start + cov.shape[0]]
        start += cov.shape[0]
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
