r"""The posterior over a family's parameter grid."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["BlindPosterior"]


@dataclass
class BlindPosterior:
    r"""Posterior over a family's parameter grid for a batch of measurements.

    :param dict theta: parameter name -> (N,) grid values.
    :param torch.Tensor log_evidence: (B, N) float64 :math:`\log p(y \mid \theta)`.
    :param torch.Tensor log_posterior: (B, N) float64 normalized :math:`\log p(\theta \mid y)`.
    """

    theta: dict
    log_evidence: torch.Tensor
    log_posterior: torch.Tensor

    def marginal(self, name: str):
        r"""Marginal posterior of one parameter (others marginalized by logsumexp).

        :return: ``(values (M,), log_probs (B, M))``.
        """
        values, inverse = torch.unique(self.theta[name], return_inverse=True)
        out = torch.full((self.log_posterior.shape[0], values.numel()), -math.inf, dtype=torch.float64)
        for m in range(values.numel()):
            out[:, m] = torch.logsumexp(self.log_posterior[:, inverse == m], dim=1)
        return values, out

    def map(self) -> dict:
        """Joint maximum a posteriori parameters, name -> (B,)."""
        idx = self.log_posterior.argmax(1)
        return {k: v[idx] for k, v in self.theta.items()}

    def mean(self, name: str) -> torch.Tensor:
        """Posterior mean of a parameter, (B,)."""
        return (self.log_posterior.exp() * self.theta[name]).sum(1)

    def credible_interval(self, name: str, level: float = 0.9):
        """Equal-tailed credible interval of a parameter's marginal on the grid: ``(low, high)``, each (B,).

        The grid mass below ``low`` and above ``high`` is at most ``(1 - level) / 2`` each, so the
        interval holds at least ``level`` of the posterior (conservative on a coarse grid).
        """
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level}.")
        values, logp = self.marginal(name)
        cdf = logp.exp().cumsum(1)
        tail = (1 - level) / 2
        lo = (cdf <= tail + 1e-12).sum(1).clamp(max=values.numel() - 1)
        hi = (cdf < 1 - tail - 1e-12).sum(1).clamp(max=values.numel() - 1)
        return values[lo], values[hi]

    def edge_mass(self, name: str):
        """Posterior mass of a parameter's smallest and largest grid values: ``(low, high)``, each (B,).

        Most of the mass on an end of the grid means that the truth lies at or beyond it; for a
        noise level at the lower end, it is also the known failure of a learned energy evaluated at
        variances far below the noise present (``benchmarks/results/blind.md``). ``deepinv-energy
        blind`` prints a note in both cases.
        """
        _, logp = self.marginal(name)
        return logp[:, 0].exp(), logp[:, -1].exp()
