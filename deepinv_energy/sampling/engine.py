r"""Reverse diffusion in covariance space: the numerical kernels shared by the samplers.

Everything here works on the coefficients :math:`c = V^\top y` of the state in the problem's
basis (pixel or Hartley), where every covariance of the method is diagonal. The state is kept in
float64 (a master copy: pinned coefficients stay exactly equal to :math:`\tilde x`, and hundreds
of basis changes do not accumulate rounding); the energy model sees it cast to its own dtype and
is called only through :meth:`EnergyModel.energy_and_grads`. Energies, Metropolis-Hastings
ratios and proposal densities are accumulated in float64.

Notation (per coefficient :math:`i`): :math:`\lambda^{\mathrm{obs}}_i` the variance of
:math:`\tilde x` (``lam_max`` when unobserved), :math:`\lambda_i` the current level variance
(:math:`\leq \lambda^{\mathrm{obs}}_i`). A coefficient is *pinned* when
:math:`\lambda_i = \lambda^{\mathrm{obs}}_i` (then :math:`y_i = \tilde x_i` exactly) and *free*
otherwise. The level target is

.. math::

    \pi(y) \propto \exp(-U(y, \Lambda))\, \prod_{i\ \mathrm{free,\ observed}}
    \mathcal{N}\big(\tilde x_i;\, (V^\top y)_i,\, \lambda^{\mathrm{obs}}_i - \lambda_i\big),

the law of :math:`y = x + \mathcal{N}(0, \Lambda)` given :math:`\tilde x`; unobserved coefficients
carry no likelihood (the limit ``lam_max`` :math:`\to\infty`, i.e. the exact measurement posterior).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from tqdm import tqdm

from ..covariance import from_basis, pixel_variance, to_basis
from ..models.base import posterior_variance
from ..problems import DenoisingProblem

__all__ = ["SamplerDiagnostics", "SamplerOutput", "Evaluation", "Chains", "run", "pixel_variance", "posterior_variance"]


# ---------------------------------------------------------------------------------------- outputs
@dataclass
class SamplerDiagnostics:
    r"""Diagnostics of a sampler run over :math:`N` parallel chains and :math:`L` levels (steps).

    :param int nfe: batched energy-model evaluations (each evaluates every chain once; one call
        of :meth:`EnergyModel.energy_and_grads` returns :math:`U`, :math:`g` and :math:`h`).
    :param torch.Tensor nfe_per_chain: (N,) evaluations each chain needed (the adaptive sampler
        stops counting a chain once all its coefficients reached their floor).
    :param torch.Tensor energy_trace: (L, N) float64 energy :math:`U(y, \Lambda)` at the end of
        each level (after its corrector steps). NaN once a chain has finished.
    :param torch.Tensor log_variance_trace: (L, N) float64 mean log level variance over the
        coefficients (for a fixed schedule, a function of :math:`\sigma_k` and the problem).
    :param torch.Tensor acceptance: (L, N) float64 mean Metropolis-Hastings acceptance
        probability :math:`\min(1, a)` of the corrector proposals of each level. For the
        Metropolis-adjusted corrector this is its expected acceptance rate; for the unadjusted
        one it is the rate MALA would have had (a bias indicator). NaN without corrector steps.
    :param torch.Tensor step_size: (L, N) float64 mean corrector step :math:`\eta` per level.
    :param torch.Tensor log_weight: (L, N) float64 log importance weight :math:`\log w` of the
        reverse (predictor) step into each level (:meth:`Chains.step_log_weight`; NaN at the first
        level, at levels the chain did not move to, and once it has finished). Its negative mean
        over the chains estimates the KL divergence of the step's proposal from the exact reverse
        kernel (see :attr:`path_kl`).
    """

    nfe: int
    nfe_per_chain: torch.Tensor
    energy_trace: torch.Tensor
    log_variance_trace: torch.Tensor
    acceptance: torch.Tensor
    step_size: torch.Tensor
    log_weight: torch.Tensor | None = None

    @property
    def path_kl(self) -> torch.Tensor:
        r"""(N,) :math:`-\sum_k \log w_k` of each chain; its mean over the chains is an unbiased
        estimate of :math:`\mathrm{KL}(Q \,\|\, P)` between the law :math:`Q` of the sampler's
        path of states (predictor steps) and the exact reverse diffusion :math:`P` along the same
        levels from the same first state, which bounds the KL divergence of the last level's states
        from :math:`P`'s (data processing); those follow the last level's exact target when the first
        state does, and Metropolis-adjusted corrector steps leave that unchanged. It assumes energies
        normalized across covariances (exact for the closed-form energies, for which it measures
        the schedule's discretization error: ``benchmarks/sampler_exactness.py``)."""
        if self.log_weight is None:
            raise ValueError("these diagnostics carry no log weights.")
        return -torch.where(torch.isnan(self.log_weight), 0.0, self.log_weight).sum(0)

    @property
    def acceptance_rate(self) -> torch.Tensor:
        """(N,) mean acceptance probability per chain over all corrector steps (NaN if none)."""
        return _nanmean(self.acceptance, 0)

    @property
    def n_levels(self) -> int:
        """Number of levels (steps) recorded."""
        return self.energy_trace.shape[0]

    @staticmethod
    def concat(parts: list["SamplerDiagnostics"]) -> "SamplerDiagnostics":
        """Diagnostics of several runs side by side (chains concatenated, traces NaN-padded)."""
        if len(parts) == 1:
            return parts[0]
        n_levels = max(p.n_levels for p in parts)

        def cat(name):
            ts = []
            for p in parts:
                t = getattr(p, name)
                pad = torch.full((n_levels - t.shape[0], t.shape[1]), float("nan"), dtype=t.dtype, device=t.device)
                ts.append(torch.cat([t, pad]))
            return torch.cat(ts, dim=1)

        return SamplerDiagnostics(
            nfe=sum(p.nfe for p in parts),
            nfe_per_chain=torch.cat([p.nfe_per_chain for p in parts]),
            energy_trace=cat("energy_trace"),
            log_variance_trace=cat("log_variance_trace"),
            acceptance=cat("acceptance"),
            step_size=cat("step_size"),
            log_weight=None if any(p.log_weight is None for p in parts) else cat("log_weight"),
        )

    def summary(self) -> dict:
        """Scalars for logs: NFE per chain (mean), mean acceptance, number of levels."""
        acc = self.acceptance_rate
        return {
            "nfe": self.nfe,
            "nfe_per_chain": float(self.nfe_per_chain.double().mean()),
            "acceptance_rate": float(_nanmean(acc, 0)) if acc.numel() else float("nan"),
            "levels": self.n_levels,
        }


@dataclass
class SamplerOutput:
    r"""Posterior draws of a sampler for a batch of B measurements, n draws each.

    :param torch.Tensor x: (n, B, C, H, W) draws, each the final Tweedie estimate
        :math:`\mathbb{E}[x \mid y_K] = y_K - \Lambda_K g`.
    :param torch.Tensor y: (n, B, C, H, W) final noisy states :math:`y_K`.
    :param torch.Tensor lam: (n, B, C, H, W) float64 final level variances :math:`\Lambda_K` in ``basis``.
    :param torch.Tensor variance: (n, B, C, H, W) per-pixel :math:`\operatorname{Var}[x \mid y_K]`
        (identity 3 of the method, mapped to pixels), the part of the posterior variance a
        Tweedie draw does not carry.
    :param str basis: the problem's basis.
    :param SamplerDiagnostics diagnostics: with the n * B chains ordered draw-major.
    """

    x: torch.Tensor
    y: torch.Tensor
    lam: torch.Tensor
    variance: torch.Tensor
    basis: str
    diagnostics: SamplerDiagnostics = field(repr=False)

    def mean(self) -> torch.Tensor:
        """(B, C, H, W) posterior mean estimate (average of the draws)."""
        return self.x.mean(0)

    def drop_leading(self, k: int) -> "SamplerOutput":
        """The output without its first ``k`` draws per measurement (e.g. pilot chains)."""
        if k == 0:
            return self
        b = self.x.shape[1]
        d = self.diagnostics
        cols = slice(k * b, None)
        diag = SamplerDiagnostics(
            nfe=d.nfe, nfe_per_chain=d.nfe_per_chain[cols], energy_trace=d.energy_trace[:, cols],
            log_variance_trace=d.log_variance_trace[:, cols], acceptance=d.acceptance[:, cols],
            step_size=d.step_size[:, cols], log_weight=None if d.log_weight is None else d.log_weight[:, cols],
        )
        return SamplerOutput(self.x[k:], self.y[k:], self.lam[k:], self.variance[k:], self.basis, diag)

    def var(self) -> torch.Tensor:
        r"""(B, C, H, W) per-pixel posterior variance by the law of total variance:
        sample variance of the draws plus the mean of :math:`\operatorname{Var}[x \mid y_K]`."""
        if self.x.shape[0] < 2:
            raise ValueError("var() needs at least 2 draws per measurement.")
        return self.x.var(0) + self.variance.mean(0)


def _nanmean(t: torch.Tensor, dim: int) -> torch.Tensor:
    ok = ~torch.isnan(t)
    n = ok.sum(dim)
    s = torch.where(ok, t, 0).sum(dim)
    return torch.where(n > 0, s / n.clamp(min=1), float("nan"))


# ---------------------------------------------------------------------------------------- kernels
@dataclass
class Evaluation:
    r"""One energy-model evaluation of N chains, in the coefficients of the problem's basis (float64).

    :param torch.Tensor u: (N,) energies :math:`U(y, \Lambda)`.
    :param torch.Tensor gc: :math:`V^\top g`, the gradient :math:`g = \nabla_y U` in the basis.
    :param torch.Tensor h: :math:`\partial U / \partial \log\lambda` (covariance score).
    """

    u: torch.Tensor
    gc: torch.Tensor
    h: torch.Tensor

    def tweedie(self, c: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        r"""Coefficients of :math:`\mathbb{E}[x \mid y] = y - \Lambda g`."""
        return c - lam * self.gc

    def posterior_variance(self, lam: torch.Tensor) -> torch.Tensor:
        r""":math:`\operatorname{Var}[x_i \mid y] = \lambda_i (1 - 2h_i) - (\lambda_i (V^\top g)_i)^2` (identity 3; unclipped)."""
        return posterior_variance(lam, self.gc, self.h)

    def rows(self, r) -> "Evaluation":
        """The evaluation of a subset of the chains."""
        return Evaluation(self.u[r], self.gc[r], self.h[r])

    def where(self, take: torch.Tensor, other: "Evaluation") -> "Evaluation":
        """``other`` on chains where ``take`` (N,) is true, ``self`` elsewhere."""
        t4 = take.view(-1, *([1] * (self.gc.ndim - 1)))
        return Evaluation(torch.where(take, other.u, self.u), torch.where(t4, other.gc, self.gc),
                          torch.where(t4, other.h, self.h))


class _Level:
    r"""Per-coefficient quantities of one level variance :math:`\Lambda` (float64)."""

    def __init__(self, lam: torch.Tensor, lam_obs: torch.Tensor, observed: torch.Tensor):
        self.lam = lam
        self.free = lam < lam_obs
        lik = self.free & observed
        lik_var = torch.where(lik, lam_obs - lam, 1.0)
        self.inv_lik_var = torch.where(lik, 1.0 / lik_var, 0.0)
        # Preconditioner: the inverse of the curvature bound 1/lam + 1/(lam_obs - lam) of
        # -log pi (it equals lam where the likelihood is absent or weak), zero when pinned.
        p = torch.where(lik, lam * lik_var / torch.where(lik, lam_obs, 1.0), lam)
        self.p = torch.where(self.free, p, 0.0)
        self.log_p = torch.where(self.free, torch.log(torch.where(self.free, self.p, 1.0)), 0.0)
        self.n_free = self.free.flatten(1).sum(1).double()


class Chains:
    r"""N parallel chains of one reverse-diffusion run on a :class:`DenoisingProblem`.

    Low-level building block of the samplers (their ``draw`` methods are the public entry
    points). The problem is repeated ``n`` times along the batch (draw-major order).

    :param deepinv_energy.EnergyModel model: evaluated only through ``energy_and_grads``.
    :param DenoisingProblem problem: from :func:`deepinv_energy.to_denoising_problem`.
    :param int n: draws per measurement.
    :param torch.Generator generator: source of all randomness.
    :param torch.dtype work_dtype: dtype of the model's inputs.
    """

    def __init__(self, model, problem: DenoisingProblem, n: int, generator: torch.Generator, work_dtype):
        self.model = model
        self.basis = problem.cov.basis
        self.work = work_dtype
        self.gen = generator
        rep = lambda t: t.repeat(n, *([1] * (t.ndim - 1)))  # noqa: E731
        self.xc = rep(to_basis(problem.x_tilde.double(), self.basis))
        self.lam_obs = rep(problem.cov.log_var.double().exp())
        self.observed = rep(problem.observed)
        self.n_chains = self.xc.shape[0]
        #: predictor variance D - D^2 H_ii (from the covariance score) instead of D.
        self.second_order = False
        self.nfe = 0
        self.nfe_per_chain = torch.zeros(self.n_chains, dtype=torch.long, device=self.xc.device)
        self.records = {"u": [], "loglam": [], "acc": [], "eta": [], "logw": []}

    # ------------------------------------------------------------------ primitives
    def randn(self) -> torch.Tensor:
        return torch.randn(self.xc.shape, generator=self.gen, dtype=torch.float64, device=self.xc.device)

    def level(self, lam: torch.Tensor) -> _Level:
        return _Level(lam, self.lam_obs, self.observed)

    def evaluate(self, c: torch.Tensor, lam: torch.Tensor, active: torch.Tensor | None = None) -> Evaluation:
        """One energy-model evaluation at coefficients ``c`` and level variances ``lam``."""
        u, gc, h = self.model.coefficient_energy_and_grads(c.to(self.work), self.basis, torch.log(lam).to(self.work))
        self.nfe += 1
        self.nfe_per_chain += 1 if active is None else active.long()
        u, gc, h = u.double(), gc.double(), h.double()
        if not (torch.isfinite(u).all() and torch.isfinite(gc).all() and torch.isfinite(h).all()):
            raise FloatingPointError(
                f"the energy model returned NaN/inf at evaluation {self.nfe} (level variances in "
                f"[{float(lam.min()):.3g}, {float(lam.max()):.3g}]); the chain diverged or the model is "
                "outside its range. Reduce the step size (snr / step_size) or use the Metropolis-adjusted corrector."
            )
        return Evaluation(u, gc, h)

    def start(self, lam0: torch.Tensor) -> torch.Tensor:
        r"""Initial state: :math:`\tilde x` on pinned coefficients; on free ones
        :math:`\tilde x + \sqrt{P_0}\,\xi` (i.e. fill + :math:`\sigma_0` noise where unobserved)."""
        lv = self.level(lam0)
        return self.xc + torch.sqrt(lv.p) * self.randn()

    def predictor(self, c: torch.Tensor, ev: Evaluation, lam_old: torch.Tensor, lam_new: torch.Tensor):
        r"""Reverse step :math:`c \leftarrow c - D\, V^\top g + \sqrt{v}\,\xi`, :math:`D = \lambda_{\mathrm{old}} - \lambda_{\mathrm{new}}`.

        :math:`v = D` (Euler), or with ``second_order`` the diagonal of the exact reverse-kernel
        covariance :math:`D - D \nabla^2 U D`: :math:`v_i = D_i - D_i^2 (\lambda_i - \operatorname{Var}[x_i \mid y]) / \lambda_i^2`,
        :math:`\operatorname{Var}[x_i \mid y] = \lambda_i (1 - 2h_i) - (\lambda_i (V^\top g)_i)^2`, clipped to :math:`[0, D_i]`.

        :return: ``(c_new, mean, v)``: the new coefficients and the Gaussian proposal's mean and variance.
        """
        d = (lam_old - lam_new).clamp(min=0)
        var = d
        if self.second_order:
            post = torch.minimum(ev.posterior_variance(lam_old).clamp(min=0), lam_old)
            var = (d - d * d * (lam_old - post) / lam_old**2).clamp(min=0)
            var = torch.minimum(var, d)
        mean = c - d * ev.gc
        return mean + torch.sqrt(var) * self.randn(), mean, var

    @staticmethod
    def step_log_weight(c_old, ev_old: Evaluation, lam_old, c_new, ev_new: Evaluation, lam_new, mean, var) -> torch.Tensor:
        r"""(N,) float64 log importance weight of a reverse step :math:`a \to b` from level
        :math:`\Lambda_{\mathrm{old}}` to :math:`\Lambda_{\mathrm{new}}`, :math:`D = \Lambda_{\mathrm{old}} - \Lambda_{\mathrm{new}}`:

        .. math::

            \log w = U(a, \Lambda_{\mathrm{old}}) - U(b, \Lambda_{\mathrm{new}})
            + \log\mathcal{N}(a;\, b,\, D) - \log\mathcal{N}(b;\, m,\, v),

        the ratio of the exact joint law of the two levels, :math:`\pi_{\mathrm{new}}(b)\,p(a \mid b)`
        (forward noising :math:`a = b + \mathcal{N}(0, D)`), to the sampler's,
        :math:`\pi_{\mathrm{old}}(a)\,q(b \mid a)` (the Gaussian proposal :math:`q = \mathcal{N}(m, v)` of
        :meth:`predictor`); the likelihood of :math:`\tilde x`, which depends on :math:`a` only,
        cancels. Both Gaussian densities are full (with their log-determinants: :math:`v \neq D`
        for the covariance predictor), over the coefficients with :math:`D_i > 0` (the others do not
        move). It needs the energy *values* at both levels, normalized across covariances: one
        evaluation per step, the one the next step needs anyway. :math:`w \equiv 1` iff :math:`q` is
        the exact reverse kernel :math:`p(b \mid a)`; :math:`\mathbb{E}_q[-\log w]` is the KL divergence
        of the step's joint law from the exact one.
        """
        d = (lam_old - lam_new).clamp(min=0)
        move = d > 0
        d1 = torch.where(move, d, 1.0)
        v1 = torch.where(move, var, 1.0).clamp(min=1e-300)
        log_rev = torch.where(move, (c_old - c_new) ** 2 / d1 + torch.log(d1), 0.0).flatten(1).sum(1)
        log_fwd = torch.where(move, (c_new - mean) ** 2 / v1 + torch.log(v1), 0.0).flatten(1).sum(1)
        return ev_old.u - ev_new.u - 0.5 * (log_rev - log_fwd)  # the 2 pi terms cancel

    def grad_log_pi(self, c: torch.Tensor, ev: Evaluation, lv: _Level) -> torch.Tensor:
        return torch.where(lv.free, -ev.gc + lv.inv_lik_var * (self.xc - c), 0.0)

    def log_pi(self, c: torch.Tensor, ev: Evaluation, lv: _Level) -> torch.Tensor:
        return -ev.u - 0.5 * (lv.inv_lik_var * (self.xc - c) ** 2).flatten(1).sum(1)

    def corrector(
        self, c, ev: Evaluation, lv: _Level, *, mh: bool, snr: float, step_size: float | None, temperature: float,
        active: torch.Tensor | None = None,
    ):
        r"""One preconditioned Langevin step targeting :math:`\pi^{1/T}`, optionally Metropolis-adjusted.

        :return: ``(c, ev, accept_prob (N,), eta (N,))``.
        """
        has_free = lv.n_free > 0
        g_cur = self.grad_log_pi(c, ev, lv)
        eta = self._eta(g_cur, lv, snr, step_size, has_free)
        mean_fwd = c + eta.view(-1, 1, 1, 1) * lv.p * g_cur
        noise_var = 2 * temperature * eta.view(-1, 1, 1, 1) * lv.p
        prop = mean_fwd + torch.sqrt(noise_var) * self.randn()
        ev_p = self.evaluate(prop, lv.lam, active)
        g_prop = self.grad_log_pi(prop, ev_p, lv)
        eta_p = self._eta(g_prop, lv, snr, step_size, has_free)
        mean_bwd = prop + eta_p.view(-1, 1, 1, 1) * lv.p * g_prop
        log_q_fwd = self._log_q(prop, mean_fwd, eta, lv, temperature)
        log_q_bwd = self._log_q(c, mean_bwd, eta_p, lv, temperature)
        log_a = (self.log_pi(prop, ev_p, lv) - self.log_pi(c, ev, lv)) / temperature + log_q_bwd - log_q_fwd
        log_a = torch.where(torch.isnan(log_a), -math.inf, log_a)
        prob = torch.where(has_free, torch.exp(log_a.clamp(max=0)), float("nan"))
        if mh:
            u = torch.rand(log_a.shape, generator=self.gen, dtype=torch.float64, device=log_a.device)
            take = (torch.log(u) < log_a) & has_free
        else:
            take = has_free
        c = torch.where(take.view(-1, 1, 1, 1), prop, c)
        return c, ev.where(take, ev_p), prob, eta

    @staticmethod
    def _eta(grad, lv: _Level, snr, step_size, has_free):
        if step_size is not None:
            return torch.where(has_free, float(step_size), 0.0).to(grad)
        norm2 = (lv.p * grad**2).flatten(1).sum(1)
        eta = 2 * snr**2 * lv.n_free / norm2.clamp(min=1e-300)
        return torch.where(has_free & (norm2 > 0), eta, 0.0)

    @staticmethod
    def _log_q(to, mean, eta, lv: _Level, temperature):
        r"""Full log-density of the Gaussian proposal :math:`\mathcal{N}(\text{mean}, 2\eta T P)` on free coefficients."""
        var = 2 * temperature * eta.view(-1, 1, 1, 1) * lv.p
        safe = torch.where(lv.free, var, 1.0)
        quad = torch.where(lv.free, (to - mean) ** 2 / safe, 0.0).flatten(1).sum(1)
        log_det = lv.n_free * torch.log((2 * temperature * eta).clamp(min=1e-300)) + lv.log_p.flatten(1).sum(1)
        return -0.5 * (quad + log_det + lv.n_free * math.log(2 * math.pi))

    def record(self, ev: Evaluation, lam: torch.Tensor, acc: torch.Tensor, eta: torch.Tensor, done=None,
               log_weight: torch.Tensor | None = None):
        u = ev.u.clone()
        logw = torch.full_like(u, float("nan")) if log_weight is None else log_weight.clone()
        if done is not None:
            u[done] = float("nan")
            logw[done] = float("nan")
        self.records["u"].append(u)
        self.records["logw"].append(logw)
        self.records["loglam"].append(torch.log(lam).flatten(1).mean(1))
        self.records["acc"].append(acc)
        self.records["eta"].append(eta)

    def finish(self, c: torch.Tensor, ev: Evaluation, lam: torch.Tensor, n: int, out_dtype) -> SamplerOutput:
        r"""Final Tweedie step :math:`x = y - \Lambda g` and :math:`\operatorname{Var}[x \mid y]` maps."""
        x = from_basis(ev.tweedie(c, lam), self.basis)
        v = ev.posterior_variance(lam).clamp(min=0)
        var = pixel_variance(v, self.basis).clamp(min=0)
        shape = (n, self.n_chains // n, *c.shape[1:])
        r = self.records
        diag = SamplerDiagnostics(
            nfe=self.nfe,
            nfe_per_chain=self.nfe_per_chain.clone(),
            energy_trace=torch.stack(r["u"]),
            log_variance_trace=torch.stack(r["loglam"]),
            acceptance=torch.stack(r["acc"]),
            step_size=torch.stack(r["eta"]),
            log_weight=torch.stack(r["logw"]),
        )
        return SamplerOutput(
            x=x.to(out_dtype).reshape(shape),
            y=from_basis(c, self.basis).to(out_dtype).reshape(shape),
            lam=lam.reshape(shape),
            variance=var.to(out_dtype).reshape(shape),
            basis=self.basis,
            diagnostics=diag,
        )


# ---------------------------------------------------------------------------------------- run
def run(chains: Chains, schedule, n: int, out_dtype, *, n_corrector: int, mh: bool, snr: float,
        step_size: float | None, temperature: float, level_callback: Callable | None = None,
        verbose: bool = False) -> SamplerOutput:
    r"""The sampling loop shared by every schedule: at each level, ``n_corrector`` corrector steps,
    then the schedule's next level variances and one reverse (predictor) step to them.

    ``chains`` holds ``n + schedule.pilots`` draws per measurement (draw-major); the first
    ``schedule.pilots`` are pilot chains, seen by the schedule and dropped from the output. A
    schedule (:class:`~deepinv_energy.sampling.FixedSchedule`,
    :class:`~deepinv_energy.sampling.AdaptiveSchedule`) provides ``first(chains)`` (the start
    variances), ``finished(k, lam, chains)`` ((N,) chains whose path has ended after level ``k``)
    and ``next(k, ev, lam, chains)`` (the variances of level ``k + 1``). A level at which the
    variances do not change (every coefficient pinned) costs no evaluation, and a level without
    free coefficients runs no corrector.
    """
    pilots = schedule.pilots
    n_pilot_rows = pilots * (chains.n_chains // (n + pilots))
    lam = schedule.first(chains)
    c = chains.start(lam)
    ev = chains.evaluate(c, lam)
    nan = torch.full((chains.n_chains,), float("nan"), dtype=torch.float64, device=c.device)
    done = torch.zeros(chains.n_chains, dtype=torch.bool, device=c.device)
    bar = tqdm(total=schedule.max_levels, disable=not verbose, desc="levels")
    log_w = None  # of the step into the current level
    for k in range(schedule.max_levels):
        lv = chains.level(lam)
        accs, etas = [], []
        for _ in range(n_corrector if bool((lv.n_free > 0).any()) else 0):
            c, ev, a, e = chains.corrector(c, ev, lv, mh=mh, snr=snr, step_size=step_size,
                                           temperature=temperature, active=~done)
            accs.append(a), etas.append(e)
        acc = _nanmean(torch.stack(accs), 0) if accs else nan
        eta = torch.stack(etas).mean(0) if etas else nan
        chains.record(ev, lam, acc, eta, done=done if k > 0 else None, log_weight=log_w)
        bar.update(1)
        if level_callback is not None:
            r = slice(n_pilot_rows, None)  # the returned chains only
            level_callback({"level": k, **schedule.info(k), "y": from_basis(c[r], chains.basis), "lam": lam[r],
                            "energy": ev.u[r], "acceptance": acc[r], "nfe": chains.nfe})
        done = schedule.finished(k, lam, chains)
        if bool(done.all()):
            break
        lam_new = schedule.next(k, ev.rows(slice(None, n_pilot_rows)) if pilots else ev, lam, chains)
        log_w = None
        if not torch.equal(lam_new, lam):  # else every coefficient is pinned: nothing moves
            c_new, mean, var = chains.predictor(c, ev, lam, lam_new)
            ev_new = chains.evaluate(c_new, lam_new, active=~done)
            log_w = chains.step_log_weight(c, ev, lam, c_new, ev_new, lam_new, mean, var)
            c, ev, lam = c_new, ev_new, lam_new
    bar.close()
    return chains.finish(c, ev, lam, n + pilots, out_dtype).drop_leading(pilots)
