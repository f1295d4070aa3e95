r"""The energy model as an explicit deepinv prior."""

from __future__ import annotations

import torch
from deepinv.optim import Prior

from ._checks import warn_outside_training
from .covariance import Covariance, check_image
from .models.base import EnergyModel, work_dtype

__all__ = ["EnergyPrior"]


class EnergyPrior(Prior):
    r"""Explicit prior :math:`g(x) = U(x, \sigma^2 I)`, the energy at a small noise level.

    Unlike score-based priors, the potential itself is available: ``fn`` returns it per
    image, so deepinv's optimizers can monitor a cost and MCMC can use Metropolis
    corrections. ``grad`` returns a detached gradient and never touches the caller's tensor
    (deepinv's default ``Potential.grad`` sets ``requires_grad`` on it).

    .. math::

        g(x) = -\log p_{\sigma^2 I}(x), \qquad \nabla g(x) = -\nabla_x \log p_{\sigma^2 I}(x).

    :param EnergyModel model: the energy.
    :param float sigma: default noise level of the smoothed prior; ``fn``/``grad`` accept a
        ``sigma`` argument (deepinv's ``g_param``) that overrides it.

    :Examples:

    >>> import torch
    >>> from deepinv_energy import EnergyPrior, GaussianEnergy
    >>> prior = EnergyPrior(GaussianEnergy(torch.zeros(1, 1, 2, 2), torch.eye(4)), sigma=1.0)
    >>> x = torch.ones(1, 1, 2, 2)
    >>> prior.grad(x)  # (C + s^2 I)^{-1} x
    tensor([[[[0.5000, 0.5000],
              [0.5000, 0.5000]]]])
    >>> x.requires_grad
    False
    """

    def __init__(self, model: EnergyModel, sigma: float = 0.01):
        super().__init__()
        if not isinstance(model, EnergyModel):
            raise TypeError(f"model must be an EnergyModel, got {type(model).__name__}.")
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}.")
        self.model = model
        self.sigma = sigma
        self.explicit_prior = True

    def _cov(self, x, sigma):
        check_image(x, "x")
        s = self.sigma if sigma is None else sigma
        s = torch.as_tensor(s, dtype=x.dtype, device=x.device).reshape(-1)
        if not (s > 0).all():
            raise ValueError("sigma must be positive.")
        work = work_dtype(self.model, x)  # float64/float16 input: computed in the model's dtype
        warn_outside_training(self.model, stacklevel=4, **{"sigma**2": float(s.max()) ** 2})
        return Covariance.from_sigma(s, x.to(work))

    def fn(self, x: torch.Tensor, sigma=None, *args, **kwargs) -> torch.Tensor:
        """Energy :math:`U(x, \\sigma^2 I)`, shape (B,)."""
        cov = self._cov(x, sigma)
        return self.model.energy(x.to(cov.log_var.dtype), cov).to(x.dtype)

    def grad(self, x: torch.Tensor, sigma=None, *args, **kwargs) -> torch.Tensor:
        """Detached gradient :math:`\\nabla_x U(x, \\sigma^2 I)`; the caller's tensor is untouched."""
        cov = self._cov(x, sigma)
        _, g, _ = self.model.energy_and_grads(x.to(cov.log_var.dtype), cov, wrt_log_var=False)
        return g.to(x.dtype)
