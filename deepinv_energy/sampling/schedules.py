r"""Noise schedules of the reverse diffusion in covariance space."""

from __future__ import annotations

import math
from numbers import Integral, Real

import torch

__all__ = ["geometric_schedule", "check_schedule"]


def geometric_schedule(sigma_max: float, sigma_min: float, n: int) -> torch.Tensor:
    r"""Geometric schedule of noise standard deviations, from ``sigma_max`` down to ``sigma_min``.

    .. math::

        \sigma_k = \sigma_{\max} \left(\frac{\sigma_{\min}}{\sigma_{\max}}\right)^{k / (n - 1)},
        \qquad k = 0, \dots, n - 1.

    The level covariances of the samplers are :math:`\Lambda_k = \min(\lambda^{\mathrm{obs}}, \sigma_k^2)`
    coefficient-wise.

    :param float sigma_max: first (largest) level, positive.
    :param float sigma_min: last (smallest) level, ``0 < sigma_min <= sigma_max``.
    :param int n: number of levels, at least 1 (exactly 1 only if ``sigma_min == sigma_max``).
    :return: (torch.Tensor) float64 tensor of shape (n,), strictly decreasing.

    :Examples:

    >>> from deepinv_energy.sampling import geometric_schedule
    >>> [round(s, 6) for s in geometric_schedule(1.0, 0.01, 3).tolist()]
    [1.0, 0.1, 0.01]
    """
    if not isinstance(n, Integral) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}.")
    for name, v in (("sigma_max", sigma_max), ("sigma_min", sigma_min)):
        if not isinstance(v, Real) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be a positive finite number, got {v!r}.")
    if sigma_min > sigma_max:
        raise ValueError(
            f"the schedule must decrease: need sigma_min <= sigma_max, got sigma_max={sigma_max}, sigma_min={sigma_min}."
        )
    if n == 1:
        if sigma_min != sigma_max:
            raise ValueError("n = 1 needs sigma_min == sigma_max; use n >= 2 for a decreasing schedule.")
        return torch.tensor([float(sigma_max)], dtype=torch.float64)
    if sigma_min == sigma_max:
        raise ValueError("n >= 2 needs sigma_min < sigma_max (a schedule must strictly decrease).")
    t = torch.linspace(0, 1, n, dtype=torch.float64)
    s = torch.exp(math.log(sigma_max) * (1 - t) + math.log(sigma_min) * t)
    s[0], s[-1] = float(sigma_max), float(sigma_min)
    return s


def check_schedule(sigmas, lam_min: float | None = None, lam_max: float | None = None) -> torch.Tensor:
    r"""Validate a schedule of noise standard deviations and return it as a float64 tensor.

    :param sigmas: sequence or 1-D tensor of positive, finite, strictly decreasing values.
    :param float lam_min: if given, require :math:`\sigma_{\min}^2 \geq` ``lam_min``
        (the smallest variance the energy model is trained for).
    :param float lam_max: if given, require :math:`\sigma_{\max}^2 <` ``lam_max``
        (the variance of unobserved coefficients).
    :return: (torch.Tensor) float64 tensor (n,).
    :raises ValueError: naming ``sigmas`` and the accepted values.
    """
    try:
        s = torch.as_tensor(sigmas, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"sigmas must be a 1-D sequence of numbers, got {type(sigmas).__name__}.") from None
    if s.ndim != 1 or s.numel() < 1:
        raise ValueError(f"sigmas must be a non-empty 1-D sequence, got shape {tuple(s.shape)}.")
    if not torch.isfinite(s).all() or (s <= 0).any():
        raise ValueError("sigmas must be positive and finite.")
    if s.numel() > 1 and not (s[1:] < s[:-1]).all():
        k = int(torch.nonzero(s[1:] >= s[:-1])[0])
        raise ValueError(
            f"sigmas must strictly decrease (sigma_0 > sigma_1 > ... > sigma_K); "
            f"got sigmas[{k}]={float(s[k]):g} <= sigmas[{k + 1}]={float(s[k + 1]):g}."
        )
    if lam_min is not None and float(s[-1]) ** 2 < lam_min * (1 - 1e-9):
        raise ValueError(
            f"the last level sigmas[-1]**2 = {float(s[-1]) ** 2:.3g} is below lam_min = {lam_min:g}; "
            f"use sigma_min >= {math.sqrt(lam_min):.3g}."
        )
    if lam_max is not None and float(s[0]) ** 2 >= lam_max:
        raise ValueError(
            f"the first level sigmas[0]**2 = {float(s[0]) ** 2:.3g} must be below lam_max = {lam_max:g}; "
            f"use sigma_max < {math.sqrt(lam_max):.3g}."
        )
    return s
