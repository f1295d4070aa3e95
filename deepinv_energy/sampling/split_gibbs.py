r"""Split Gibbs sampling for any linear deepinv physics with Gaussian noise.

The exact samplers of this package need a physics that :func:`deepinv_energy.to_denoising_problem`
writes as anisotropic denoising (a diagonal covariance in the pixel or Hartley basis). For any
other :class:`deepinv.physics.LinearPhysics` (filtered decimation, blur with reflect padding,
compressed sensing, tomography, compositions), augment the unknown with
:math:`z = x + \rho\, n`, :math:`n \sim \mathcal{N}(0, I)`, and sample

.. math::

    p_\rho(x, z \mid y) \propto \mathcal{N}(y;\, A z,\, \sigma^2 I)\; \mathcal{N}(z;\, x,\, \rho^2 I)\; p(x),

whose :math:`x`-marginal is the posterior of :math:`x` under the inflated likelihood
:math:`\mathcal{N}(y;\, A x,\, \sigma^2 I + \rho^2 A A^\top)`: the exact posterior as
:math:`\rho \to 0`, and the only approximation of the method. Both conditionals are exact:

* :math:`z \mid x, y` is Gaussian with precision :math:`Q = A^\top A / \sigma^2 + I / \rho^2`, drawn
  by perturb-then-optimize: :math:`z = Q^{-1}\big(A^\top (y + \sigma \epsilon_1) / \sigma^2 + (x + \rho \epsilon_2) / \rho^2\big)`
  with :math:`\epsilon_{1,2} \sim \mathcal{N}(0, I)`, solved by deepinv's conjugate gradient on
  ``physics.A`` / ``physics.A_adjoint`` only;
* :math:`x \mid z` is the posterior of *isotropic denoising* at noise :math:`\rho^2`, drawn with this
  package's exactness-tested reverse diffusion (:class:`PredictorCorrectorIterator`, by default with
  the Metropolis-adjusted corrector) on ``Denoising(GaussianNoise(rho))``, or replaced by its
  Tweedie mean :math:`\mathbb{E}[x \mid z]` (one evaluation, a deterministic variant that is not an
  exact Gibbs step).

:math:`\rho` is annealed along a decreasing schedule :math:`\rho_0 > \dots > \rho_J`
(``sweeps`` Gibbs sweeps per value) so that the chain mixes at large :math:`\rho` and its bias
vanishes at the last. The normalized energy is what makes the :math:`x`-step exact: the
Metropolis test of its corrector uses energy *values* at the covariances of the reverse diffusion.
"""

from __future__ import annotations

import warnings

from dataclasses import dataclass, field, fields

import deepinv as dinv
import torch
from deepinv.optim.linear import conjugate_gradient
from tqdm import tqdm

from .._checks import check_number
from ..models.base import check_model_shape, work_dtype
from ..problems import noise_std, to_denoising_problem
from .engine import SamplerDiagnostics, SamplerOutput
from .samplers import (
    EnergySamplingIterator,
    PredictorCorrectorIterator,
    SamplerSettings,
    EnergySampler,
    split_sampler_kwargs,
)
from .schedules import check_schedule, geometric_schedule

__all__ = ["SplitGibbsDiagnostics", "SplitGibbsIterator", "SplitGibbsSampler", "X_STEPS"]

#: x-step variants of :class:`SplitGibbsSampler`.
X_STEPS = ("sample", "mean")


@dataclass
class SplitGibbsDiagnostics(SamplerDiagnostics):
    r""":class:`SamplerDiagnostics` of a split Gibbs run (its level traces are those of the
    successive :math:`x`-steps, one after the other), plus one entry per sweep :math:`s`:

    :param torch.Tensor rho: (S,) float64 :math:`\rho` of each sweep.
    :param torch.Tensor cg_iterations: (S,) conjugate-gradient iterations of each :math:`z`-step
        (the batch stops when every chain has converged; the max over batches in :meth:`concat`).
    :param torch.Tensor cg_residual: (S,) largest relative residual :math:`\|Q z - b\| / \|b\|` of
        each :math:`z`-step over the chains (above ``cg_tol`` when ``cg_max_iter`` was reached).
    :param torch.Tensor sweep_acceptance: (S, N) mean Metropolis acceptance of each
        :math:`x`-step's corrector (NaN without corrector steps).
    """

    rho: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.float64))
    cg_iterations: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    cg_residual: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.float64))
    sweep_acceptance: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 0, dtype=torch.float64))

    @staticmethod
    def concat(parts: list["SplitGibbsDiagnostics"]) -> "SplitGibbsDiagnostics":
        """Diagnostics of several runs side by side (chains concatenated)."""
        base = SamplerDiagnostics.concat(parts)
        if len(parts) == 1:
            return base
        return SplitGibbsDiagnostics(
            **{f.name: getattr(base, f.name) for f in fields(SamplerDiagnostics)},
            rho=parts[0].rho,
            cg_iterations=torch.stack([p.cg_iterations for p in parts]).amax(0),
            cg_residual=torch.stack([p.cg_residual for p in parts]).amax(0),
            sweep_acceptance=torch.cat([p.sweep_acceptance for p in parts], dim=1),
        )


@dataclass
class _Measurement:
    """What the split Gibbs chains need of ``(y, physics)``: validated once per call."""

    y: torch.Tensor
    physics: object
    noise_var: torch.Tensor  # (B,) sigma^2, floored at lam_min
    image_shape: tuple


class SplitGibbsIterator(EnergySamplingIterator):
    r"""Kernel of :class:`SplitGibbsSampler`: one posterior draw per deepinv iteration, by split
    Gibbs sampling along the :math:`\rho` schedule,

    .. math::

        z \leftarrow Q^{-1}\Big(\frac{A^\top (y + \sigma\epsilon_1)}{\sigma^2} + \frac{x + \rho\,\epsilon_2}{\rho^2}\Big),

        x \sim p(x \mid z) \ \text{(isotropic denoising at } \rho^2\text{)},

    :math:`Q = A^\top A/\sigma^2 + I/\rho^2`, ``sweeps`` times per :math:`\rho` (full description at
    :class:`SplitGibbsSampler`).

    :param rhos: strictly decreasing values of :math:`\rho` (:func:`check_schedule`).
    :param sweeps: Gibbs sweeps per value of :math:`\rho` (an integer, or one per value).
    :param str x_step: ``"sample"`` (exact draw of :math:`x \mid z`) or ``"mean"`` (its Tweedie mean).
    :param int x_levels: levels of each :math:`x`-step's reverse diffusion (geometric, from
        :math:`\rho` to ``x_ratio`` :math:`\times\,\rho`).
    :param float x_ratio: last level of an :math:`x`-step relative to :math:`\rho` (the Tweedie
        draw it returns lacks a variance of about (``x_ratio`` :math:`\rho)^2`).
    :param float cg_tol: relative tolerance of the conjugate gradient.
    :param int cg_max_iter: iteration cap of the conjugate gradient.
    :param SamplerSettings settings: settings of the :math:`x`-step (or their fields as keyword
        arguments; ``mh`` defaults to True, ``predictor`` to ``"covariance"``).
    """

    def __init__(self, rhos, sweeps: int = 1, x_step: str = "sample", x_levels: int = 2, x_ratio: float = 0.05,
                 cg_tol: float = 1e-6, cg_max_iter: int = 500, settings: SamplerSettings | None = None, **kwargs):
        if settings is None:
            settings = SamplerSettings(**{"mh": True, "predictor": "covariance", **kwargs})
            kwargs = {}
        self.rhos = check_schedule(rhos, lam_min=settings.lam_min, lam_max=settings.lam_max)
        if not isinstance(sweeps, (list, tuple, torch.Tensor)):  # one value: an integer >= 1 (1.5 -> a clear error)
            sweeps = [check_number("sweeps", sweeps, integer=True, low=1)] * len(self.rhos)
        per_rho = [int(s) if isinstance(s, torch.Tensor) and not s.is_floating_point() else s for s in list(sweeps)]
        if len(per_rho) != len(self.rhos):
            raise ValueError(f"sweeps must be an integer or one integer per rho ({len(self.rhos)}), got {sweeps!r}.")
        #: Gibbs sweeps at each value of rho.
        self.sweeps = [check_number("sweeps", s, integer=True, low=1) for s in per_rho]
        if x_step not in X_STEPS:
            raise ValueError(f"x_step must be one of {X_STEPS}, got {x_step!r}.")
        self.x_step = x_step
        ratio = check_number("x_ratio", x_ratio, low=0, high=1, low_open=True, high_open=True)
        self.cg_tol = check_number("cg_tol", cg_tol, low=0, low_open=True)
        self.cg_max_iter = check_number("cg_max_iter", cg_max_iter, integer=True, low=1)
        x_levels = check_number("x_levels", x_levels, integer=True, low=2)
        # the x-step at rho starts pinned at rho and runs down to x_ratio * rho (the same relative schedule at every rho)
        # (its first level sits a hair above rho so that every coefficient starts pinned whatever the rounding of rho^2)
        top = lambda r: r * (1 + 1e-6)  # noqa: E731
        self._x_iterators = [
            PredictorCorrectorIterator(geometric_schedule(top(r), r * ratio, x_levels) if x_step == "sample" else [top(r)],
                                       settings)
            for r in self.rhos.tolist()
        ]
        super().__init__(self._x_iterators[-1].schedule, settings, **kwargs)

    # ------------------------------------------------------------------ problems
    def problem(self, model, y: torch.Tensor, physics) -> _Measurement:
        """Validated measurement (no network evaluation); ``physics`` any linear Gaussian-noise physics."""
        if not isinstance(physics, dinv.physics.LinearPhysics):
            raise TypeError(
                f"SplitGibbsSampler needs a deepinv.physics.LinearPhysics (A and A_adjoint), got {type(physics).__name__}."
            )
        if not isinstance(y, torch.Tensor) or not y.is_floating_point():
            raise TypeError(f"y must be a floating torch.Tensor, got {type(y).__name__}.")
        if not torch.isfinite(y).all():
            raise ValueError("y must be finite.")
        y = y.to(work_dtype(model, y))
        noise_var = noise_std(physics, y.shape[0], dtype=y.dtype, device=y.device) ** 2
        try:
            back = physics.A_adjoint(y)
            again = physics.A(back)
        except (RuntimeError, ValueError, IndexError) as err:
            raise ValueError(f"y of shape {tuple(y.shape)} is not a measurement of this physics "
                             f"({type(physics).__name__}): {' '.join(str(err).split())[:160]}") from None
        shape = tuple(back.shape)
        if len(shape) != 4:
            raise ValueError(f"physics.A_adjoint(y) must be images (B, C, H, W), got shape {shape}.")
        if tuple(again.shape) != tuple(y.shape):
            raise ValueError(f"y has shape {tuple(y.shape)} but this physics measures {tuple(again.shape)}: "
                             f"not a measurement of this physics.")
        check_model_shape(model, shape)
        _check_adjoint(physics, back, y)
        return _Measurement(y, physics, noise_var.clamp(min=self.lam_min), shape[1:])

    def unconditional_problem(self, model, image_shape):
        raise NotImplementedError("split Gibbs samples posteriors; use PredictorCorrectorSampler.generate for the prior.")

    # ------------------------------------------------------------------ runs
    def _operators(self, physics, b: int, n: int):
        """``A`` and ``A^T`` on draw-major batches of n * B chains (one call per draw if the physics is batched)."""
        if b == 1:  # physics parameters broadcast over the batch
            return physics.A, physics.A_adjoint

        def per_draw(op):
            return lambda t: torch.cat([op(t[k * b:(k + 1) * b]) for k in range(n)])

        return per_draw(physics.A), per_draw(physics.A_adjoint)

    def z_step(self, x, m: _Measurement, rho: float, n: int, generator):
        r"""One exact draw of :math:`z \mid x, y` for the N = n * B chains ``x``; returns ``(z, iterations, residual)``."""
        b = m.y.shape[0]
        a, at = self._operators(m.physics, b, n)
        rep = lambda t: t.repeat(n, *([1] * (t.ndim - 1)))  # noqa: E731
        y = rep(m.y)
        s2 = rep(m.noise_var)
        r2 = rho**2
        ratio_y = (r2 / s2).reshape(-1, *([1] * (y.ndim - 1)))  # rho^2 / sigma^2, on measurements
        ratio_x = (r2 / s2).reshape(-1, 1, 1, 1)
        eps_y = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
        eps_x = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        # rho^2 Q z = rho^2 A^T A z / sigma^2 + z  (better conditioned than Q itself)
        rhs = at(ratio_y * (y + s2.sqrt().reshape(ratio_y.shape) * eps_y)) + x + rho * eps_x
        calls = [0]

        def q(t):
            calls[0] += 1
            return ratio_x * at(a(t)) + t

        z = conjugate_gradient(q, rhs, max_iter=self.cg_max_iter, tol=self.cg_tol, eps=1e-30, init=x)
        iterations = calls[0] - 1  # deepinv's CG applies q once before its first iteration
        res = (q(z) - rhs).flatten(1).norm(dim=1) / rhs.flatten(1).norm(dim=1).clamp(min=1e-300)
        return z, iterations, float(res.max())

    def draw_problem(self, model, problem: _Measurement, n: int, generator, out_dtype, level_callback=None,
                     verbose=False) -> SamplerOutput:
        """``n`` draws for every measurement of ``problem`` (from :meth:`problem`)."""
        n = check_number("n", n, integer=True, low=1)
        m = problem
        b = m.y.shape[0]
        x = torch.full((n * b, *m.image_shape), self.fill, dtype=m.y.dtype, device=m.y.device)
        st = self.settings
        parts, rhos, iters, resid, accs = [], [], [], [], []
        with torch.no_grad(), tqdm(total=sum(self.sweeps), disable=not verbose, desc="split Gibbs sweeps") as bar:
            for rho, x_it, sweeps in zip(self.rhos.tolist(), self._x_iterators, self.sweeps):
                for _ in range(sweeps):
                    z, it, res = self.z_step(x, m, rho, n, generator)
                    denoise = dinv.physics.Denoising(dinv.physics.GaussianNoise(rho))
                    prob = to_denoising_problem(z, denoise, lam_min=st.lam_min, lam_max=st.lam_max)
                    out = x_it.draw_problem(model, prob, 1, generator, m.y.dtype, level_callback=level_callback)
                    x = out.x[0]
                    parts.append(out.diagnostics)
                    rhos.append(rho), iters.append(it), resid.append(res), accs.append(out.diagnostics.acceptance_rate)
                    bar.update(1)
                    bar.set_postfix(rho=f"{rho:.3g}", cg=it)
        worst = max(range(len(resid)), key=resid.__getitem__)
        if resid[worst] > 10 * self.cg_tol and iters[worst] >= self.cg_max_iter:
            warnings.warn(f"the conjugate gradient of the z-step stopped at cg_max_iter={self.cg_max_iter} with relative "
                          f"residual {resid[worst]:.3g} (cg_tol {self.cg_tol:g}, rho {rhos[worst]:.3g}): the z-steps are "
                          f"inexact and the draws biased; raise cg_max_iter (diagnostics.cg_residual has every "
                          f"sweep's).", stacklevel=4)
        shape = (n, b, *m.image_shape)
        diag = SplitGibbsDiagnostics(
            nfe=sum(p.nfe for p in parts),
            nfe_per_chain=torch.stack([p.nfe_per_chain for p in parts]).sum(0),
            **{k: torch.cat([getattr(p, k) for p in parts]) for k in
               ("energy_trace", "log_variance_trace", "acceptance", "step_size")},
            rho=torch.tensor(rhos, dtype=torch.float64),
            cg_iterations=torch.tensor(iters, dtype=torch.long),
            cg_residual=torch.tensor(resid, dtype=torch.float64),
            sweep_acceptance=torch.stack(accs),
        )
        return SamplerOutput(x.to(out_dtype).reshape(shape), out.y[0].to(out_dtype).reshape(shape),
                             out.lam[0].reshape(shape), out.variance[0].to(out_dtype).reshape(shape), out.basis, diag)


def _check_adjoint(physics, x_like, y_like, tol: float = 1e-3) -> None:
    r"""Raise a ``ValueError`` unless ``physics`` is linear with ``A_adjoint`` its adjoint, checked once on
    random vectors: :math:`\langle A u, v\rangle = \langle u, A^\top v\rangle` and :math:`A(2u) = 2Au` (a
    wrong adjoint or a non-linear operator makes the z-step diverge)."""
    g = torch.Generator(device=x_like.device).manual_seed(0)
    u = torch.randn(x_like.shape, generator=g, dtype=x_like.dtype, device=x_like.device)
    v = torch.randn(y_like.shape, generator=g, dtype=y_like.dtype, device=y_like.device)
    au = physics.A(u)
    lhs, rhs = (au * v).sum().item(), (u * physics.A_adjoint(v)).sum().item()
    scale = au.norm().item() * v.norm().item() + 1e-30
    if abs(lhs - rhs) > tol * scale:
        raise ValueError(f"physics.A_adjoint is not the adjoint of physics.A (<Au, v> = {lhs:.4g}, <u, A^T v> = "
                         f"{rhs:.4g}): split Gibbs needs a linear physics with its exact adjoint.")
    if (physics.A(2 * u) - 2 * au).norm().item() > tol * (2 * au.norm().item() + 1e-30):
        raise ValueError("physics.A is not linear (A(2u) != 2 A(u)): split Gibbs needs a linear physics.")


class SplitGibbsSampler(EnergySampler):
    r"""Posterior sampling for any linear deepinv physics with Gaussian noise, by split Gibbs
    sampling with the normalized energy (exact as :math:`\rho_{\min} \to 0`).

    Augmenting the unknown with :math:`z = x + \rho n`, the target

    .. math::

        p_\rho(x, z \mid y) \propto \mathcal{N}(y;\, A z,\, \sigma^2 I)\;\mathcal{N}(z;\, x,\, \rho^2 I)\; p(x)

    has the :math:`x`-marginal :math:`p(x)\,\mathcal{N}(y;\, A x,\, \sigma^2 I + \rho^2 A A^\top)`:
    the posterior with a likelihood inflated by :math:`\rho^2 A A^\top`, whose bias goes to zero with
    :math:`\rho`. Each sweep draws both conditionals exactly:

    * :math:`z \mid x, y \sim \mathcal{N}(Q^{-1} b, Q^{-1})`,
      :math:`Q = A^\top A / \sigma^2 + I / \rho^2`, by perturb-then-optimize:
      :math:`z = Q^{-1}\big(A^\top (y + \sigma \epsilon_1)/\sigma^2 + (x + \rho\epsilon_2)/\rho^2\big)`,
      solved with :func:`deepinv.optim.linear.conjugate_gradient` using only ``physics.A`` and
      ``physics.A_adjoint`` (no network evaluation; iterations and residuals in
      :attr:`diagnostics`);
    * :math:`x \mid z`: the posterior of isotropic denoising at noise :math:`\rho^2`, drawn by this
      package's reverse diffusion (:class:`PredictorCorrectorIterator`, Metropolis-adjusted
      corrector and covariance predictor by default) from :math:`\rho` down to ``x_ratio`` :math:`\times\,\rho`: the
      exactly-tested path with ``Denoising`` physics. With ``x_step="mean"`` it is replaced by the
      Tweedie mean :math:`\mathbb{E}[x \mid z]` (one evaluation per sweep): a deterministic
      half-quadratic-splitting-like variant, cheaper but not an exact Gibbs step.

    :math:`\rho` decreases along ``rhos`` (default geometric from ``rho_max`` to ``rho_min`` in
    ``n_stages`` values), ``sweeps`` sweeps per value, from :math:`x = ` ``fill``. The draws are the
    last :math:`x`-step's Tweedie estimates :math:`\mathbb{E}[x \mid y_K]`, with the per-pixel
    :math:`\operatorname{Var}[x \mid y_K]` in ``variance`` (``"mean"``: :math:`\operatorname{Var}[x \mid z]`,
    so that :meth:`SamplerOutput.var` is the variance of :math:`x \mid z` averaged over the draws of
    :math:`z`).

    What is exact and what is not: each sweep leaves :math:`p_\rho` invariant (up to the
    :math:`x`-step's discretization, which its Metropolis corrector and the covariance predictor
    keep small, and the CG tolerance); the draws follow :math:`p_{\rho_{\min}}` once the chain has
    mixed at :math:`\rho_{\min}` (more ``sweeps``, a slower annealing); and
    :math:`p_{\rho_{\min}} \to p(x \mid y)` as :math:`\rho_{\min} \to 0`. ``tests/test_split_gibbs.py``
    checks the three on Gaussian-mixture priors with a dense random ``LinearPhysics``, filtered
    ``Downsampling`` and reflect-padded ``Blur``. Small :math:`\rho` mixes slowly (each sweep moves
    :math:`x` by about :math:`\rho`) and makes CG work harder (the condition number of :math:`\rho^2 Q`
    is :math:`1 + \rho^2 \|A\|^2 / \sigma^2`).

    For the physics :func:`deepinv_energy.to_denoising_problem` supports (``SUPPORTED_PHYSICS``),
    :class:`PredictorCorrectorSampler` / :class:`MALASampler` sample the posterior itself, with no
    :math:`\rho` bias and fewer evaluations: prefer them there (this sampler does not delegate, so
    that it can be compared with them on the same physics).

    Noise-free physics (``ZeroNoise``) use :math:`\sigma^2 =` ``lam_min``; other noise models raise
    ``ValueError``.

    Cost: ``sum(sweeps)`` sweeps, each one :math:`x`-step (at most
    :math:`1 + (x_{\mathrm{levels}} - 1)(1 + n_{\mathrm{corrector}})` evaluations, or 1 with
    ``x_step="mean"``) and one CG solve (two operator applications per iteration). The defaults
    (40 values of :math:`\rho`, one sweep each, two-level :math:`x`-steps: 120 evaluations) spend the
    budget on many cheap sweeps rather than on few accurate :math:`x`-steps, because mixing, not the
    :math:`x`-step, is what limits the chain: they beat 8 values of :math:`\rho` with ten-level
    :math:`x`-steps (152 evaluations) on the three tasks of
    ``benchmarks/results/restoration_splitgibbs_defaults.md`` (the numbers are there), and two-level
    :math:`x`-steps are within Monte-Carlo error of the exact mixture posterior in
    ``tests/test_split_gibbs.py`` like ten-level ones.

    :param deepinv_energy.EnergyModel model: energy model (closed-form or learned).
    :param rhos: explicit strictly decreasing :math:`\rho` schedule (overrides ``rho_max``,
        ``rho_min``, ``n_stages``).
    :param float rho_max: first :math:`\rho`.
    :param float rho_min: last :math:`\rho` (the bias of the target).
    :param int n_stages: number of :math:`\rho` values of the geometric schedule.
    :param sweeps: Gibbs sweeps per value of :math:`\rho` (an integer, or one per value: mixing
        in directions the measurement does not see takes about :math:`(s / \rho)^2` sweeps for a
        prior spread :math:`s`, so spend them at moderate :math:`\rho`, where the bias is already small).
    :param str x_step: ``"sample"`` or ``"mean"``.
    :param int x_levels: levels of each :math:`x`-step (geometric from :math:`\rho` to
        ``x_ratio`` :math:`\times\,\rho`).
    :param float x_ratio: last level of an :math:`x`-step relative to :math:`\rho`.
    :param float cg_tol: relative residual tolerance of CG.
    :param int cg_max_iter: CG iteration cap.
    :param kwargs: ``n_corrector``, ``snr``, ``step_size``, ``temperature``, ``mh`` (default True),
        ``predictor`` (default ``"covariance"``), ``parallel``, ``lam_min``, ``lam_max``, ``fill``
        (start of :math:`x`) of the :math:`x`-step, and ``n_samples``, ``callback``,
        ``level_callback``, ``history_size``, ``verbose`` as in :class:`PredictorCorrectorSampler`.

    :Examples:

    Compressed sensing of a 2x2 Gaussian prior (no basis diagonalizes it):

    >>> import torch, deepinv as dinv
    >>> from deepinv_energy import GaussianEnergy
    >>> from deepinv_energy.sampling import SplitGibbsSampler
    >>> from deepinv_energy.testing import measurement_posterior
    >>> model = GaussianEnergy(torch.zeros(1, 1, 2, 2, dtype=torch.float64), torch.eye(4, dtype=torch.float64))
    >>> physics = dinv.physics.CompressedSensing(m=3, img_size=(1, 2, 2), dtype=torch.float64,
    ...     noise_model=dinv.physics.GaussianNoise(0.1), rng=torch.Generator().manual_seed(0))
    >>> y = physics.A(torch.ones(1, 1, 2, 2, dtype=torch.float64))
    >>> sampler = SplitGibbsSampler(model, rho_max=1.0, rho_min=0.05, n_stages=6, sweeps=10)
    >>> out = sampler.draw(y, physics, n=500, seed=0)
    >>> out.x.shape
    torch.Size([500, 1, 1, 2, 2])
    >>> post = measurement_posterior(model, y, physics)  # exact
    >>> bool((out.mean() - post.mean()).abs().max() < 0.05)
    True
    >>> sampler.diagnostics.rho.shape  # one entry per sweep
    torch.Size([60])
    """

    def __init__(self, model, rhos=None, *, rho_max: float = 0.5, rho_min: float = 0.02, n_stages: int = 40,
                 sweeps: int = 1, x_step: str = "sample", x_levels: int = 2, x_ratio: float = 0.05,
                 cg_tol: float = 1e-6, cg_max_iter: int = 500, **kwargs):
        if rhos is None:
            rhos = geometric_schedule(rho_max, rho_min, check_number("n_stages", n_stages, integer=True, low=1))
        settings, plumbing = split_sampler_kwargs(kwargs, model)
        iterator = SplitGibbsIterator(rhos, sweeps=sweeps, x_step=x_step, x_levels=x_levels, x_ratio=x_ratio,
                                      cg_tol=cg_tol, cg_max_iter=cg_max_iter, **settings)
        super().__init__(model, iterator, **plumbing)

    @property
    def rhos(self) -> torch.Tensor:
        r"""The :math:`\rho` schedule (float64)."""
        return self.iterator.rhos
