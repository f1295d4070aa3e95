r"""The energy model as a deepinv denoiser."""

from __future__ import annotations

import warnings

import torch
from deepinv.models import Denoiser

from .covariance import Covariance
from .models.base import EnergyModel, check_image
from .problems import LAM_MIN

__all__ = ["EnergyDenoiser"]


class EnergyDenoiser(Denoiser):
    r"""Tweedie denoiser of an energy model at isotropic noise, as a :class:`deepinv.models.Denoiser`.

    .. math::

        D(x, \sigma) = x - \sigma^2 \nabla_x U(x, \sigma^2 I) = \mathbb{E}[x_0 \mid x_0 + \sigma n = x],

    the minimum mean squared error denoiser when :math:`U` is the true energy. It runs inside
    deepinv's diffusion and plug-and-play algorithms (``DPS``, ``DiffPIR``, ``DDRM``,
    ``PosteriorDiffusion``, PnP, ``ULA`` through :class:`deepinv.optim.ScorePrior`). When the
    input requires gradients and grad mode is on (DPS and PiGDM-style data fidelities
    differentiate through the denoiser), the graph through the score is kept.

    Noise levels below :math:`\sqrt{\lambda_{\min}}` are raised to it (with a warning).

    :param EnergyModel model: the energy.
    :param float lam_min: smallest variance passed to the model.

    :Examples:

    >>> import torch
    >>> from deepinv_energy import EnergyDenoiser, GaussianEnergy
    >>> denoiser = EnergyDenoiser(GaussianEnergy(torch.zeros(1, 1, 2, 2), torch.eye(4)))
    >>> x = torch.ones(2, 1, 2, 2)
    >>> denoiser(x, torch.tensor([1.0, 0.5])).flatten(1)[:, 0]  # Wiener shrinkage 1/(1+s^2)
    tensor([0.5000, 0.8000])
    """

    def __init__(self, model: EnergyModel, lam_min: float = LAM_MIN):
        super().__init__()
        if not isinstance(model, EnergyModel):
            raise TypeError(f"model must be an EnergyModel, got {type(model).__name__}.")
        self.model = model
        self.lam_min = lam_min

    def forward(self, x: torch.Tensor, sigma, *args, **kwargs) -> torch.Tensor:
        check_image(x, "x")
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
        if sigma.numel() not in (1, x.shape[0]):
            raise ValueError(f"sigma must be a float or a tensor of shape ({x.shape[0]},), got {sigma.numel()} values.")
        if not torch.isfinite(sigma).all() or (sigma < 0).any():
            raise ValueError("sigma must be finite and non-negative.")
        var = sigma.expand(x.shape[0]) ** 2
        if (var < self.lam_min).any():
            warnings.warn(f"sigma below sqrt(lam_min)={self.lam_min ** 0.5:.2g} is raised to it.", stacklevel=2)
            var = var.clamp(min=self.lam_min)
        cov = Covariance.isotropic(var, x)
        create_graph = torch.is_grad_enabled() and x.requires_grad
        return self.model.denoise(x, cov, create_graph=create_graph)
