r"""Noise schedules of the reverse diffusion in covariance space."""

from __future__ import annotations

import math
from numbers import Integral, Real

import torch

__all__ = ["geometric_schedule", "check_schedule", "FixedSchedule", "AdaptiveSchedule"]


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


# ---------------------------------------------------------------------------------------- strategies
class FixedSchedule:
    r"""A global schedule fixed in advance: level :math:`k` has variances
    :math:`\Lambda_k = \min(\lambda^{\mathrm{obs}}, \sigma_k^2)` (coefficient-wise).

    A schedule strategy of the sampling loop (:func:`deepinv_energy.sampling.engine.run`): it gives
    the start variances, the variances of the next level and when the path ends.

    :param torch.Tensor sigmas: strictly decreasing standard deviations (:func:`check_schedule`).
    """

    #: no pilot chains: the path does not depend on any state.
    pilots = 0

    def __init__(self, sigmas: torch.Tensor):
        self.sigmas = sigmas
        self._s2 = (sigmas**2).tolist()
        self.max_levels = len(self._s2)

    def first(self, chains) -> torch.Tensor:
        return torch.clamp(chains.lam_obs, max=self._s2[0])

    def next(self, k: int, ev, lam: torch.Tensor, chains) -> torch.Tensor:
        return torch.clamp(chains.lam_obs, max=self._s2[k + 1])

    def finished(self, k: int, lam: torch.Tensor, chains) -> torch.Tensor:
        return torch.full((chains.n_chains,), k == self.max_levels - 1, dtype=torch.bool, device=lam.device)

    def info(self, k: int) -> dict:
        return {"sigma": math.sqrt(self._s2[k])}


class AdaptiveSchedule:
    r"""Energy-guided per-coefficient schedule of :class:`~deepinv_energy.sampling.AdaptiveSampler`.

    From :math:`\min(\lambda^{\mathrm{obs}}, \sigma_{\max}^2)`, each level lowers
    :math:`\log\lambda_i \leftarrow \max(\log\lambda_i - \delta_i, \log\lambda^{\mathrm{floor}}_i)`,
    :math:`\lambda^{\mathrm{floor}} = \min(\lambda^{\mathrm{obs}}, \sigma_{\min}^2)`, with
    :math:`\delta_i` = :meth:`decrement` of the pilot chains' evaluations: one path per
    measurement, shared by all its chains (see :class:`~deepinv_energy.sampling.AdaptiveSampler`).

    :param float sigma_max: start level.
    :param float sigma_min: floor.
    :param str rule: ``"error"`` or ``"covariance_score"``.
    :param float tolerance: :math:`\varepsilon` of the error rule.
    :param float gamma: :math:`\gamma` of the covariance-score rule.
    :param float min_decrease: :math:`\delta_{\min}`.
    :param float max_decrease: :math:`\delta_{\max}`.
    :param int max_steps: error if the path has not reached its floor after this many steps.
    :param int pilots: pilot chains per measurement.
    """

    def __init__(self, sigma_max, sigma_min, rule, tolerance, gamma, min_decrease, max_decrease, max_steps, pilots):
        self.sigma_max, self.sigma_min, self.rule = sigma_max, sigma_min, rule
        self.tolerance, self.gamma = tolerance, gamma
        self.min_decrease, self.max_decrease = min_decrease, max_decrease
        self.max_steps, self.pilots = max_steps, pilots
        self.max_levels = max_steps + 1

    def first(self, chains) -> torch.Tensor:
        return torch.clamp(chains.lam_obs, max=self.sigma_max**2)

    def _floor(self, chains) -> torch.Tensor:
        return torch.clamp(chains.lam_obs, max=self.sigma_min**2)

    def finished(self, k: int, lam: torch.Tensor, chains) -> torch.Tensor:
        done = (lam <= self._floor(chains)).flatten(1).all(1)
        if k == self.max_steps and not bool(done.all()):
            raise RuntimeError(
                f"the adaptive schedule did not reach sigma_min within max_steps={self.max_steps} steps; "
                "increase max_steps, gamma, tolerance or min_decrease."
            )
        return done

    def decrement(self, ev, lam: torch.Tensor) -> torch.Tensor:
        r"""Decrease :math:`\delta` of :math:`\log\lambda` for the next step, one per measurement.

        :param ev: :class:`~deepinv_energy.sampling.engine.Evaluation` of the pilot chains,
            ``pilots * B`` rows (draw-major).
        :param torch.Tensor lam: (pilots * B, C, H, W) their level variances (equal across pilots).
        :return: (B, C, H, W) decrements, from the pilots' mean statistic: :math:`\gamma |h_i|`, or
            :math:`\varepsilon / (|s_i| \sqrt{1 - s_i})` with :math:`s_i = 1 - \operatorname{Var}[x_i \mid y] / \lambda_i`.
        """
        def mean(t):
            return t.reshape(self.pilots, -1, *t.shape[1:]).mean(0)

        if self.rule == "covariance_score":
            delta = self.gamma * mean(ev.h.abs())
        else:
            s = mean(1 - ev.posterior_variance(lam) / lam)  # 1 - Var[eps_i | y] = 2h + lam g^2
            delta = self.tolerance / (s.abs().clamp(1e-6, 1.0) * torch.sqrt((1 - s).clamp(min=1e-6)))
        return delta.clamp(self.min_decrease, self.max_decrease)

    def next(self, k: int, ev, lam: torch.Tensor, chains) -> torch.Tensor:
        b = ev.u.shape[0] // self.pilots
        delta = self.decrement(ev, lam[: self.pilots * b])
        delta = delta.repeat(chains.n_chains // b, *([1] * (delta.ndim - 1)))  # shared by the measurement's chains
        floor = self._floor(chains)
        lam_new = torch.maximum(lam * torch.exp(-delta), floor)
        return torch.where(lam_new <= floor * (1 + 1e-12), floor, lam_new)

    def info(self, k: int) -> dict:
        return {}
