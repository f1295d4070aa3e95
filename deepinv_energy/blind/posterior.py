r"""The posterior over a family's parameter grid."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

__all__ = ["BlindPosterior"]


@dataclass
class BlindPosterior:
    r"""Posterior over a family's parameter grid for a batch of measurements.

    Parameters listed in ``periods`` are circular (a motion-blur angle is a direction modulo
    180 degrees): their :meth:`mean` is the circular mean and their :meth:`credible_interval` is
    taken around it, so that 0 and 180 degrees are the same value.

    :param dict theta: parameter name -> (N,) grid values.
    :param torch.Tensor log_evidence: (B, N) float64 :math:`\log p(y \mid \theta)`.
    :param torch.Tensor log_posterior: (B, N) float64 normalized :math:`\log p(\theta \mid y)`.
    :param dict periods: name -> period of the circular parameters (e.g. ``{"angle": 180.0}``).

    :Examples:

    Half the mass on 0 degrees and half on 170: the circular mean is 175 (i.e. -5), not 85.

    >>> import torch
    >>> from deepinv_energy.blind import BlindPosterior
    >>> lp = torch.tensor([[0.5, 0.0, 0.5]], dtype=torch.float64).log()
    >>> post = BlindPosterior({"angle": torch.tensor([0.0, 90.0, 170.0], dtype=torch.float64)}, lp, lp,
    ...                       periods={"angle": 180.0})
    >>> round(post.mean("angle").item(), 6)
    175.0
    >>> [round(v.item(), 6) for v in post.credible_interval("angle", 0.9)]  # 170 to 180 = 0 degrees
    [170.0, 180.0]
    """

    theta: dict
    log_evidence: torch.Tensor
    log_posterior: torch.Tensor
    periods: dict = field(default_factory=dict)

    def marginal(self, name: str):
        r"""Marginal posterior of one parameter (others marginalized by logsumexp).

        :return: ``(values (M,), log_probs (B, M))``.
        """
        self._check_name(name)
        values, inverse = torch.unique(self.theta[name], return_inverse=True)
        out = torch.full((self.log_posterior.shape[0], values.numel()), -math.inf, dtype=torch.float64)
        for m in range(values.numel()):
            out[:, m] = torch.logsumexp(self.log_posterior[:, inverse == m], dim=1)
        return values, out

    def _check_name(self, name):
        if name not in self.theta:
            raise ValueError(f"unknown parameter {name!r}; this posterior has {tuple(self.theta)}.")

    def map(self) -> dict:
        """Joint maximum a posteriori parameters, name -> (B,)."""
        idx = self.log_posterior.argmax(1)
        return {k: v[idx] for k, v in self.theta.items()}

    def mean(self, name: str) -> torch.Tensor:
        r"""Posterior mean of a parameter, (B,). For a circular parameter of period :math:`T`, the
        circular mean :math:`\frac{T}{2\pi}\arg \sum_j p_j e^{2\pi i \theta_j / T}`, in :math:`[0, T)`."""
        self._check_name(name)
        p = self.log_posterior.exp()
        if name not in self.periods:
            return (p * self.theta[name]).sum(1)
        period = float(self.periods[name])
        phase = self.theta[name] * (2 * math.pi / period)
        angle = torch.atan2((p * phase.sin()).sum(1), (p * phase.cos()).sum(1))
        return torch.remainder(angle * (period / (2 * math.pi)), period)

    def credible_interval(self, name: str, level: float = 0.9):
        """Equal-tailed credible interval of a parameter's marginal on the grid: ``(low, high)``, each (B,).

        The grid mass below ``low`` and above ``high`` is at most ``(1 - level) / 2`` each, so the
        interval holds at least ``level`` of the posterior (conservative on a coarse grid). Its ends
        are grid values: an interval of zero width (``low == high``) means that the posterior is
        narrower than the grid spacing (the interval is at grid resolution; a finer grid resolves it).

        For a circular parameter the values are first unwrapped to within half a period of the
        circular :meth:`mean`, so ``low`` may be below 0 or ``high`` above the period (e.g. an angle
        interval ``[-10, 15]`` degrees around 0).
        """
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level}.")
        values, logp = self.marginal(name)
        tail = (1 - level) / 2
        if name not in self.periods:
            cdf = logp.exp().cumsum(1)
            lo = (cdf <= tail + 1e-12).sum(1).clamp(max=values.numel() - 1)
            hi = (cdf < 1 - tail - 1e-12).sum(1).clamp(max=values.numel() - 1)
            return values[lo], values[hi]
        period = float(self.periods[name])
        centre = self.mean(name).unsqueeze(1)  # (B, 1)
        unwrapped = centre + torch.remainder(values - centre + period / 2, period) - period / 2  # (B, M)
        order = unwrapped.argsort(1)
        v = unwrapped.gather(1, order)
        cdf = logp.exp().gather(1, order).cumsum(1)
        lo = (cdf <= tail + 1e-12).sum(1, keepdim=True).clamp(max=values.numel() - 1)
        hi = (cdf < 1 - tail - 1e-12).sum(1, keepdim=True).clamp(max=values.numel() - 1)
        return v.gather(1, lo)[:, 0], v.gather(1, hi)[:, 0]

    def edge_mass(self, name: str):
        """Posterior mass of a parameter's smallest and largest grid values: ``(low, high)``, each (B,).

        Most of the mass on an end of the grid means that the truth lies at or beyond it; for a
        noise level at the lower end, it is also the known failure of a learned energy evaluated at
        variances far below the noise present (``benchmarks/results/blind.md``). ``deepinv-energy
        blind`` prints a note in both cases. A circular parameter has no ends (``ValueError``).
        """
        if name in self.periods:
            raise ValueError(f"{name!r} is circular (period {self.periods[name]:g}): its grid has no ends.")
        _, logp = self.marginal(name)
        return logp[:, 0].exp(), logp[:, -1].exp()
