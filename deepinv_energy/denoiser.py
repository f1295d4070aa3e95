r"""The energy model as a deepinv denoiser."""

from __future__ import annotations

import torch
from deepinv.models import Denoiser

from .covariance import Covariance, check_image
from .models.base import EnergyModel, work_dtype
from .problems import LAM_MIN

__all__ = ["EnergyDenoiser", "UNetDenoiser"]


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
        cov = _isotropic(x, sigma, self.lam_min)
        create_graph = torch.is_grad_enabled() and x.requires_grad
        work = work_dtype(self.model, x)  # float64/float16 input: computed in the model's dtype, returned in x's
        out = self.model.denoise(x.to(work), cov.to(work), create_graph=create_graph)
        if not torch.isfinite(out.detach()).all():
            raise FloatingPointError("the energy model's denoiser returned NaN/inf: the weights may be corrupt or "
                                     "the input is far outside the model's range.")
        return out.to(x.dtype)


class UNetDenoiser(Denoiser):
    r"""A plain (non-energy) denoiser of the :class:`~deepinv_energy.models.unet.EnergyUNet` backbone.

    .. math::

        D(x, \sigma) = \mu + c_\text{skip} (x - \mu) + c_\text{out} F_\theta(x, \sigma)

    (:meth:`EnergyUNet.direct_denoise <deepinv_energy.models.unet.EnergyUNet.direct_denoise>`),
    for a network trained by ordinary denoising score matching on isotropic noise
    (``deepinv-energy train --objective denoiser``). It is the baseline of the benchmarks: same
    architecture, same data, no energy, no anisotropic covariances, no double backpropagation.
    Noise levels below :math:`\sqrt{\lambda_{\min}}` are raised to it (with a warning).

    :param EnergyUNet model: the network (trained with ``objective="denoiser"``).
    :param float lam_min: smallest variance passed to the model.

    :Examples:

    >>> import torch
    >>> from deepinv_energy import EnergyUNet, UNetDenoiser
    >>> denoiser = UNetDenoiser(EnergyUNet(channels=1, height=8, width_px=8, base_channels=8, mult=(1, 2)))
    >>> denoiser(torch.rand(2, 1, 8, 8), 0.1).shape
    torch.Size([2, 1, 8, 8])
    """

    def __init__(self, model, lam_min: float = LAM_MIN):
        super().__init__()
        if not hasattr(model, "direct_denoise"):
            raise TypeError(f"model must be an EnergyUNet, got {type(model).__name__}.")
        self.model = model
        self.lam_min = lam_min

    def forward(self, x: torch.Tensor, sigma, *args, **kwargs) -> torch.Tensor:
        return self.model.direct_denoise(x, _isotropic(x, sigma, self.lam_min))


def _isotropic(x: torch.Tensor, sigma, lam_min: float) -> Covariance:
    """Isotropic covariance from deepinv's ``sigma`` (float or (B,) tensor), checked."""
    check_image(x, "x")
    return Covariance.from_sigma(torch.as_tensor(sigma, dtype=x.dtype, device=x.device), x, lam_min)
