r"""The posterior mean of a linear inverse problem from one energy evaluation."""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import torch
from deepinv.models import Reconstructor

from ._checks import check_variance_range, warn_outside_training
from .models.base import EnergyModel, check_model_shape, trained_variance_range, work_dtype
from .problems import DenoisingProblem, check_supported, to_denoising_problem
from .covariance import pixel_variance

__all__ = ["EnergyMMSE", "MMSEOutput"]


@dataclass
class MMSEOutput:
    r"""Posterior moments of :class:`EnergyMMSE`, all from one gradient evaluation.

    :param torch.Tensor mean: (B, C, H, W) posterior mean :math:`\mathbb{E}[x \mid y]`.
    :param torch.Tensor variance: (B, C, H, W) per-pixel posterior variance (negative coefficient
        variances clamped to 0 first, see :class:`EnergyMMSE`).
    :param torch.Tensor coef_variance: (B, C, H, W) per-coefficient posterior variance in ``basis``,
        as predicted by identity 3, *not* clamped.
    :param str basis: basis of the coefficients (``"pixel"`` or ``"hartley"``).
    :param torch.Tensor negative: (B,) number of coefficients whose predicted variance was negative
        (always 0 for an exact energy, up to rounding).

    :Examples:

    >>> import torch, deepinv as dinv
    >>> from deepinv_energy import EnergyMMSE, GaussianEnergy
    >>> mmse = EnergyMMSE(GaussianEnergy(torch.zeros(1, 1, 2, 2), 2 * torch.eye(4)))
    >>> out = mmse.moments(torch.zeros(1, 1, 2, 2), dinv.physics.Denoising(dinv.physics.GaussianNoise(1.0)))
    >>> out.basis, round(float(out.variance.max()), 4), int(out.negative)  # 2 * 1 / (2 + 1)
    ('pixel', 0.6667, 0)
    """

    mean: torch.Tensor
    variance: torch.Tensor
    coef_variance: torch.Tensor
    basis: str
    negative: torch.Tensor

    @property
    def std(self) -> torch.Tensor:
        """(B, C, H, W) per-pixel posterior standard deviation, :math:`\\sqrt{\\text{variance}}`."""
        return self.variance.sqrt()


class EnergyMMSE(Reconstructor):
    r"""Posterior mean of a linear inverse problem from ONE energy evaluation, as a deepinv
    :class:`~deepinv.models.Reconstructor`.

    The measurement :math:`y = A x + \sigma n` is rewritten as anisotropic denoising,
    :math:`\tilde x = x + \tilde n`, :math:`\tilde n \sim \mathcal{N}(0, \Sigma)`,
    :math:`\Sigma = V \operatorname{diag}(\lambda) V^\top` (:func:`deepinv_energy.to_denoising_problem`:
    unobserved coefficients get the variance :math:`\lambda_{\max}` and the value ``fill``), and
    anisotropic Tweedie's formula gives the posterior mean; identity 3 of the method gives the
    posterior variance of every coefficient from the same gradient:

    .. math::

        \mathbb{E}[x \mid y] = \tilde x - \Sigma g, \qquad
        v_i = \operatorname{Var}[(V^\top x)_i \mid y] = \lambda_i (1 - 2 h_i) - \big(\lambda_i (V^\top g)_i\big)^2,

    with :math:`g = \nabla U(\tilde x, \Sigma)` and :math:`h = \partial U / \partial \log \lambda`.
    The per-pixel variance returned with ``return_std=True`` is the diagonal of
    :math:`V \operatorname{diag}(v) V^\top`:

    - pixel basis (denoising, inpainting, decimation): :math:`v` itself, the exact marginal
      posterior variance of each pixel;
    - Hartley basis (circular blur): with :math:`V_{pk}^2 = (1 + \sin 2\theta_{pk}) / (HW)`,
      :math:`\theta_{pk} = 2\pi(k_1 p_1 / H + k_2 p_2 / W)`,

      .. math::

          \operatorname{diag}(V \operatorname{diag}(v) V^\top)_p
          = \frac{1}{HW}\Big(\sum_k v_k - \operatorname{Im}\hat v(2p)\Big)

      per channel (:math:`\hat v` the unnormalized 2-D DFT of :math:`v`). Its average over the
      pixels of a channel is the mean of :math:`v` over the frequencies, which is exact (the trace
      of the posterior covariance); when :math:`v` is symmetric (:math:`v_k = v_{-k}`, e.g. a
      stationary prior) every pixel has that value. The spatial distribution is the one of the
      Hartley-diagonal part of the posterior covariance: exact when that covariance is diagonal in
      the Hartley basis, an approximation otherwise (the off-diagonal terms are not predicted).

    With the true energy, the mean and the coefficient variances are exact up to the finite
    :math:`\lambda_{\max}` (the posterior then also conditions on the fictitious observation
    ``fill`` of variance :math:`\lambda_{\max}` on unobserved coefficients: an error of order
    :math:`\|C\| / \lambda_{\max}` with :math:`C` the prior covariance).

    .. note::

        A learned energy can predict negative variances, especially on unobserved coefficients
        where :math:`\lambda_i (1 - 2h_i)` and :math:`(\lambda_i (V^\top g)_i)^2` are both of order
        :math:`\lambda_{\max}` and their difference is of order the image variance, and on
        observed coefficients whose posterior variance is close to 0 (the flat background of
        Fashion-MNIST images, see ``benchmarks/results/mmse_unobserved.md``). They are
        clamped to 0 before the change of basis, without a warning;
        :meth:`moments` reports how many there were (:attr:`MMSEOutput.negative`) and the
        unclamped values (:attr:`MMSEOutput.coef_variance`).

    The measurement is cast to the model's dtype (as the samplers do) and the outputs back to
    the measurement's dtype.

    :param EnergyModel model: the energy.
    :param float lam_min: variance floor of observed coefficients (default: the model's trained range,
        :func:`~deepinv_energy.models.base.trained_variance_range`; outside it, a warning).
    :param float lam_max: variance of unobserved coefficients (default: likewise).
    :param float fill: value of unobserved pixels in :math:`\tilde x` (the samplers' default).

    :Examples:

    Exact energy of the prior :math:`\mathcal{N}(0, I)` seen with noise of variance 1: posterior
    mean :math:`y/2`, posterior std :math:`1/\sqrt 2`.

    >>> import torch, deepinv as dinv
    >>> from deepinv_energy import EnergyMMSE, GaussianEnergy
    >>> mmse = EnergyMMSE(GaussianEnergy(torch.zeros(1, 1, 2, 2), torch.eye(4)))
    >>> physics = dinv.physics.Denoising(dinv.physics.GaussianNoise(1.0))
    >>> mean, std = mmse(torch.ones(1, 1, 2, 2), physics, return_std=True)
    >>> mean.flatten().tolist(), round(float(std.max()), 4)
    ([0.5, 0.5, 0.5, 0.5], 0.7071)

    The bundled model on box inpainting:

    >>> from deepinv_energy import EnergyUNet
    >>> from deepinv_energy.demo import bundled_test_images
    >>> x, _ = bundled_test_images(2)
    >>> mask = torch.ones(1, 1, 28, 28); mask[..., 8:20, 8:20] = 0
    >>> physics = dinv.physics.Inpainting((1, 28, 28), mask=mask, noise_model=dinv.physics.GaussianNoise(0.01))
    >>> mmse = EnergyMMSE(EnergyUNet.from_pretrained("fashion-mnist-28"))
    >>> x_hat = mmse(physics(x), physics)
    >>> x_hat.shape
    torch.Size([2, 1, 28, 28])
    """

    def __init__(self, model: EnergyModel, lam_min: float | None = None, lam_max: float | None = None,
                 fill: float = 0.5):
        super().__init__()
        if not isinstance(model, EnergyModel):
            raise TypeError(f"model must be an EnergyModel, got {type(model).__name__}.")
        trained = trained_variance_range(model)
        lam_min = trained[0] if lam_min is None else lam_min
        lam_max = trained[1] if lam_max is None else lam_max
        for name, v in (("lam_min", lam_min), ("lam_max", lam_max), ("fill", fill)):
            if not isinstance(v, Real) or isinstance(v, bool) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}.")
        check_variance_range(lam_min, lam_max)
        warn_outside_training(model, lam_min=lam_min, lam_max=lam_max)
        self.model = model
        self.lam_min, self.lam_max, self.fill = float(lam_min), float(lam_max), float(fill)

    def problem(self, y: torch.Tensor, physics) -> DenoisingProblem:
        """The validated :class:`~deepinv_energy.DenoisingProblem` of ``(y, physics)``, in the model's dtype."""
        check_supported(physics)
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}.")
        if not y.is_floating_point():
            raise TypeError(f"y must be a floating tensor, got {y.dtype}.")
        work = work_dtype(self.model, y)
        problem = to_denoising_problem(y.to(work), physics, lam_min=self.lam_min, lam_max=self.lam_max,
                                       fill=self.fill)
        check_model_shape(self.model, problem.x_tilde.shape)
        return problem

    def moments(self, y: torch.Tensor, physics) -> MMSEOutput:
        r"""Posterior mean and per-pixel variance from one gradient evaluation.

        :param torch.Tensor y: measurements, as for ``physics``.
        :param deepinv.physics.Physics physics: any physics :func:`deepinv_energy.to_denoising_problem`
            supports.
        :return: :class:`MMSEOutput`, in the dtype of ``y``.
        :raises UnsupportedPhysicsError: for other physics.
        """
        problem = self.problem(y, physics)
        mean, coef_var = self.model.posterior_moments(problem.x_tilde, problem.cov)
        basis = problem.cov.basis
        negative = (coef_var < 0).flatten(1).sum(1)
        var = pixel_variance(coef_var.clamp(min=0), basis).clamp(min=0)  # clamp: rounding of the FFT
        if not (torch.isfinite(mean).all() and torch.isfinite(coef_var).all()):
            raise FloatingPointError("the energy model's gradients are NaN/inf at this measurement: the weights may be "
                                     "corrupt or the measurement far outside the model's range.")
        out = y.dtype
        return MMSEOutput(mean.detach().to(out), var.detach().to(out), coef_var.detach().to(out), basis, negative)

    def forward(self, y: torch.Tensor, physics, return_std: bool = False, **kwargs):
        r"""Posterior mean :math:`\mathbb{E}[x \mid y]`, and with ``return_std=True`` also the per-pixel
        posterior standard deviation (same evaluation).

        :param torch.Tensor y: measurements.
        :param deepinv.physics.Physics physics: the forward model.
        :param bool return_std: also return the standard deviation.
        :return: ``mean`` (B, C, H, W), or ``(mean, std)``.
        """
        m = self.moments(y, physics)
        return (m.mean, m.std) if return_std else m.mean
