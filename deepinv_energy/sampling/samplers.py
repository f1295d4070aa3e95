r"""Posterior samplers driven by an energy model, as deepinv samplers.

Which deepinv interface, and why
--------------------------------
The samplers subclass :class:`deepinv.sampling.BaseSampling` (a
:class:`deepinv.models.Reconstructor`) with a :class:`deepinv.sampling.SamplingIterator` as
kernel, the pattern deepinv itself uses to turn a diffusion method into a Monte Carlo sampler
(:class:`deepinv.sampling.DiffusionSampler`). One "iteration" of the deepinv chain is one
independent posterior draw (a whole reverse diffusion, computed ``parallel`` at a time); deepinv's
machinery then gives ``sampler(y, physics)`` (posterior mean), ``sampler.sample(y, physics)``
(mean and variance by Welford's algorithm, ``g_statistics``), ``callback``, ``history_size`` /
``get_chain``, ``verbose`` (tqdm) and ``seed``.

:class:`deepinv.sampling.BaseSDESolver` was not chosen: its ``step(sde, t0, t1, x)`` integrates a
:class:`deepinv.sampling.BaseSDE` on one scalar time grid with drift and diffusion functions of
``(x, t)``. Our reverse process lives in covariance space: the variance is per coefficient, depends
on the measurement (observed coefficients stop moving at their noise level), is chosen on the fly
by the adaptive sampler, and the corrector needs energies (Metropolis-Hastings). None of that fits a
scalar-time SDE, and :class:`deepinv.sampling.PosteriorDiffusion` would add a likelihood
approximation (``NoisyDataFidelity``) that the exact translation of the physics makes unnecessary.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, fields
from numbers import Integral, Real
from typing import Callable

import torch
from deepinv.sampling import BaseSampling, SamplingIterator

from .._checks import check_variance_range, warn_outside_training
from ..covariance import Covariance
from ..models.base import check_model_shape, trained_variance_range, work_dtype
from ..problems import LAM_MAX, LAM_MIN, DenoisingProblem, to_denoising_problem
from .engine import Chains, SamplerDiagnostics, SamplerOutput, run
from .schedules import AdaptiveSchedule, FixedSchedule, check_schedule, geometric_schedule

__all__ = [
    "SamplerSettings",
    "EnergySamplingIterator",
    "PredictorCorrectorIterator",
    "AdaptiveIterator",
    "PredictorCorrectorSampler",
    "MALASampler",
    "AdaptiveSampler",
    "PREDICTORS",
    "ADAPTIVE_RULES",
]

#: Predictor variants: ``"euler"`` uses the variance :math:`D`; ``"covariance"`` uses
#: :math:`D - D^2 \hat H` with the diagonal Hessian from the covariance score (see the samplers).
PREDICTORS = ("euler", "covariance")
#: Adaptive schedule rules of :class:`AdaptiveSampler`.
ADAPTIVE_RULES = ("error", "covariance_score")


# ---------------------------------------------------------------------------------------- checks
def _positive(name, v, allow_none=False, integer=False, zero_ok=False):
    if v is None and allow_none:
        return None
    if integer:
        if not isinstance(v, Integral) or isinstance(v, bool) or v < (0 if zero_ok else 1):
            raise ValueError(f"{name} must be an integer >= {0 if zero_ok else 1}, got {v!r}.")
        return int(v)
    if not isinstance(v, Real) or isinstance(v, bool) or not math.isfinite(v) or v < 0 or (v == 0 and not zero_ok):
        raise ValueError(f"{name} must be a {'non-negative' if zero_ok else 'positive'} finite number, got {v!r}.")
    return float(v)


def _generator(seed, generator, device) -> torch.Generator:
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}.")
        return generator
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)))  # follows torch.manual_seed
    elif not isinstance(seed, Integral) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer or None, got {seed!r}.")
    return torch.Generator(device=device).manual_seed(int(seed))


def split_sampler_kwargs(kwargs: dict, model=None):
    """Sampler keyword arguments -> (:class:`SamplerSettings` fields, deepinv plumbing of :class:`EnergySampler`).

    ``lam_min`` / ``lam_max`` not given default to the range ``model`` was trained on
    (:func:`~deepinv_energy.models.base.trained_variance_range`); given ones outside it warn.
    """
    plumbing_keys = ("n_samples", "callback", "history_size", "level_callback", "verbose")
    unknown = sorted(set(kwargs) - set(_SETTINGS) - set(plumbing_keys))
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {unknown}; accepted: {sorted(_SETTINGS + plumbing_keys)}.")
    settings = {k: v for k, v in kwargs.items() if k in _SETTINGS}
    if model is not None:
        lo, hi = trained_variance_range(model)
        settings.setdefault("lam_min", lo)
        settings.setdefault("lam_max", hi)
        given = {k: settings[k] for k in ("lam_min", "lam_max") if k in kwargs and isinstance(kwargs[k], Real)}
        warn_outside_training(model, stacklevel=4, **given)
    return settings, {k: v for k, v in kwargs.items() if k in plumbing_keys}


# ---------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class SamplerSettings:
    r"""Settings shared by every energy sampler, validated once (the schedule is separate).

    :param int n_corrector: Langevin corrector steps per level (0: predictor only).
    :param float snr: target signal-to-noise ratio of the corrector's step rule.
    :param float step_size: fixed corrector step :math:`\eta > 0` instead of the snr rule.
    :param float temperature: :math:`T > 0` of the corrector's target :math:`\pi^{1/T}`.
    :param bool mh: Metropolis-adjusted corrector.
    :param str predictor: ``"euler"`` or ``"covariance"`` (see :data:`PREDICTORS`).
    :param int parallel: draws per batched run.
    :param float lam_min: variance floor (see :func:`deepinv_energy.to_denoising_problem`); the samplers
        default it to their model's trained range (:func:`split_sampler_kwargs`).
    :param float lam_max: variance of unobserved coefficients (likewise).
    :param float fill: start value of unobserved pixels.

    :Examples:

    >>> from deepinv_energy.sampling import SamplerSettings
    >>> SamplerSettings(n_corrector=2, mh=True).corrector_kwargs()["n_corrector"]
    2
    """

    n_corrector: int = 1
    snr: float = 0.15
    step_size: float | None = None
    temperature: float = 1.0
    mh: bool = False
    predictor: str = "euler"
    parallel: int = 8
    lam_min: float = LAM_MIN
    lam_max: float = LAM_MAX
    fill: float = 0.5

    def __post_init__(self):
        def put(name, v):
            object.__setattr__(self, name, v)

        put("n_corrector", _positive("n_corrector", self.n_corrector, integer=True, zero_ok=True))
        put("snr", _positive("snr", self.snr))
        put("step_size", _positive("step_size", self.step_size, allow_none=True))
        if self.step_size is not None and self.step_size > 1 and not self.mh:
            warnings.warn(
                f"step_size={self.step_size:g} > 1 without the Metropolis step (mh=False): the preconditioned "
                "Langevin corrector is unstable beyond about 1 (it diverges from 2 on a Gaussian); use "
                "step_size <= 1, the snr rule (step_size=None) or mh=True.", stacklevel=5)
        put("temperature", _positive("temperature", self.temperature))
        if not isinstance(self.mh, bool):
            raise ValueError(f"mh must be True or False, got {self.mh!r}.")
        if self.predictor not in PREDICTORS:
            raise ValueError(f"predictor must be one of {PREDICTORS}, got {self.predictor!r}.")
        put("parallel", _positive("parallel", self.parallel, integer=True))
        lo, hi = self.lam_min, self.lam_max
        if not all(isinstance(v, Real) and not isinstance(v, bool) for v in (lo, hi)):
            raise ValueError(f"lam_min and lam_max must be numbers, got lam_min={lo!r}, lam_max={hi!r}.")
        check_variance_range(lo, hi)
        put("lam_min", float(lo)), put("lam_max", float(hi))
        if not isinstance(self.fill, Real) or isinstance(self.fill, bool) or not math.isfinite(self.fill):
            raise ValueError(f"fill must be a finite number, got {self.fill!r}.")
        put("fill", float(self.fill))

    def corrector_kwargs(self) -> dict:
        """Keyword arguments of the sampling loop (:func:`deepinv_energy.sampling.engine.run`)."""
        return dict(n_corrector=self.n_corrector, mh=self.mh, snr=self.snr, step_size=self.step_size,
                    temperature=self.temperature)


_SETTINGS = tuple(f.name for f in fields(SamplerSettings))


# ---------------------------------------------------------------------------------------- iterators
class EnergySamplingIterator(SamplingIterator):
    r"""deepinv :class:`~deepinv.sampling.SamplingIterator` whose every step is one independent
    posterior draw of a reverse diffusion in covariance space along ``schedule``.

    Draws are computed ``parallel`` at a time (one batched run of
    :func:`deepinv_energy.sampling.engine.run`) and handed out one per deepinv iteration. The
    state dict is ``{"x": draw, "var": Var[x | y_K], "y": y_K}`` (see :class:`SamplerOutput`),
    plus ``"problem"`` (the :class:`DenoisingProblem`, converted once per :meth:`sample`) and
    ``"pending"`` (the draws of the current batch not yet handed out). The energy model is the
    ``prior`` argument of deepinv's calls (as for :class:`deepinv.sampling.DiffusionIterator`).

    :param schedule: :class:`FixedSchedule` or :class:`AdaptiveSchedule`.
    :param SamplerSettings settings: shared settings (default: ``SamplerSettings(**kwargs)``).
    :param kwargs: fields of :class:`SamplerSettings`, if ``settings`` is not given.
    """

    def __init__(self, schedule, settings: SamplerSettings | None = None, **kwargs):
        super().__init__({})
        if settings is None:
            settings = SamplerSettings(**kwargs)
        elif kwargs:
            raise TypeError(f"give either settings or keyword settings, not both (got {sorted(kwargs)}).")
        self.settings = settings
        self.schedule = schedule
        self._diagnostics: list[SamplerDiagnostics] = []
        self._generator: torch.Generator | None = None
        self._remaining = None
        self._level_callback = None

    # settings read by users and examples
    lam_min = property(lambda self: self.settings.lam_min)
    lam_max = property(lambda self: self.settings.lam_max)
    fill = property(lambda self: self.settings.fill)
    parallel = property(lambda self: self.settings.parallel)
    n_corrector = property(lambda self: self.settings.n_corrector)
    mh = property(lambda self: self.settings.mh)
    predictor = property(lambda self: self.settings.predictor)

    @property
    def pilots(self) -> int:
        """Extra (pilot) chains per measurement that the schedule runs and the output drops."""
        return self.schedule.pilots

    # ------------------------------------------------------------------ problems
    def problem(self, model, y: torch.Tensor, physics) -> DenoisingProblem:
        """Validated :class:`DenoisingProblem` for ``(y, physics)`` (no network evaluation)."""
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}.")
        if not y.is_floating_point():
            raise TypeError(f"y must be a floating tensor, got {y.dtype}.")
        st = self.settings
        work = work_dtype(model, y)
        problem = to_denoising_problem(y.to(work), physics, lam_min=st.lam_min, lam_max=st.lam_max, fill=st.fill)
        check_model_shape(model, problem.x_tilde.shape)
        return problem

    def unconditional_problem(self, model, image_shape) -> DenoisingProblem:
        """Every coefficient unobserved (variance ``lam_max``, value ``fill``): sampling the prior."""
        shape = tuple(image_shape)
        if len(shape) != 3 or not all(isinstance(s, Integral) and not isinstance(s, bool) and s > 0 for s in shape):
            raise ValueError(f"image_shape must be (C, H, W) with positive integers, got {image_shape!r}.")
        check_model_shape(model, (1, *shape))
        tensors = [t for t in list(model.parameters()) + list(model.buffers()) if t.is_floating_point()]
        dt = tensors[0].dtype if tensors else torch.get_default_dtype()
        dev = tensors[0].device if tensors else torch.device("cpu")
        st = self.settings
        x_tilde = torch.full((1, *shape), st.fill, dtype=dt, device=dev)
        log_var = torch.full_like(x_tilde, math.log(st.lam_max))
        zeros = torch.zeros(1, dtype=torch.float64, device=dev)
        return DenoisingProblem(
            x_tilde, Covariance("pixel", log_var), torch.zeros_like(x_tilde, dtype=torch.bool),
            torch.zeros(1, dtype=dt, device=dev), zeros, zeros, st.lam_min, st.lam_max,
        )

    # ------------------------------------------------------------------ runs
    def draw_problem(self, model, problem: DenoisingProblem, n: int, generator, out_dtype,
                     level_callback=None, verbose=False) -> SamplerOutput:
        """``n`` draws for every element of a :class:`DenoisingProblem`."""
        n = _positive("n", n, integer=True)
        chains = Chains(model, problem, n + self.pilots, generator, problem.x_tilde.dtype)
        chains.second_order = self.settings.predictor == "covariance"
        with torch.no_grad():
            return run(chains, self.schedule, n, out_dtype, level_callback=level_callback, verbose=verbose,
                       **self.settings.corrector_kwargs())

    # ------------------------------------------------------------------ deepinv protocol
    def initialize_latent_variables(self, x_init, y, physics, cur_data_fidelity, cur_prior):
        self._diagnostics = []
        return self._next({"problem": self.problem(cur_prior, y, physics), "pending": []}, y, cur_prior)

    def forward(self, X, y, physics, cur_data_fidelity, cur_prior, iteration, *args, **kwargs):
        return self._next(X, y, cur_prior)

    def _next(self, X, y, model):
        pending = X["pending"]
        if not pending:
            n = self.parallel if self._remaining is None else max(1, min(self.parallel, self._remaining))
            gen = self._generator if self._generator is not None else _generator(None, None, y.device)
            out = self.draw_problem(model, X["problem"], n, gen, y.dtype, level_callback=self._level_callback)
            self._diagnostics.append(out.diagnostics)
            pending = [{"x": out.x[i], "var": out.variance[i], "y": out.y[i]} for i in range(n)]
            if self._remaining is not None:
                self._remaining -= n
        return {**pending[0], "problem": X["problem"], "pending": pending[1:]}


class PredictorCorrectorIterator(EnergySamplingIterator):
    r"""Kernel of :class:`PredictorCorrectorSampler`: one posterior draw per deepinv iteration, by
    reverse diffusion along the fixed schedule :math:`\Lambda_k = \min(\lambda^{\mathrm{obs}}, \sigma_k^2)`,

    .. math::

        c \leftarrow c - D_k\, V^\top g + \sqrt{v_k}\,\xi, \qquad D_k = \Lambda_k - \Lambda_{k+1},

    (:math:`v_k = D_k`, or :math:`D_k - D_k^2 \hat H` with ``predictor="covariance"``) followed by
    ``n_corrector`` (Metropolis-adjusted if ``mh``) Langevin steps on the level target
    :math:`\pi_{k+1}`, and the Tweedie step :math:`x = y_K - \Lambda_K g` (full description at
    :class:`PredictorCorrectorSampler`).

    :param sigmas: strictly decreasing standard deviations (:func:`check_schedule`).
    :param SamplerSettings settings: shared settings (or their fields as keyword arguments).
    """

    def __init__(self, sigmas, settings: SamplerSettings | None = None, **kwargs):
        if settings is None:
            settings = SamplerSettings(**kwargs)
            kwargs = {}
        sigmas = check_schedule(sigmas, lam_min=settings.lam_min, lam_max=settings.lam_max)
        super().__init__(FixedSchedule(sigmas), settings, **kwargs)

    @property
    def sigmas(self) -> torch.Tensor:
        """The schedule (float64)."""
        return self.schedule.sigmas


class AdaptiveIterator(EnergySamplingIterator):
    r"""Kernel of :class:`AdaptiveSampler`: one posterior draw per deepinv iteration, by reverse
    diffusion along an energy-guided path chosen by ``pilots`` discarded chains per measurement,

    .. math::

        \log\lambda_i \leftarrow \max(\log\lambda_i - \delta_i, \log\lambda^{\mathrm{floor}}_i),

        c \leftarrow c - D\, V^\top g + \sqrt{v}\,\xi, \quad D = \lambda^{\mathrm{old}} - \lambda^{\mathrm{new}},

    with :math:`\delta_i = \operatorname{clip}(\varepsilon / (|s_i| \sqrt{1 - s_i}), \delta_{\min}, \delta_{\max})`
    (``rule="error"``, :math:`s_i` the pilots' mean of :math:`1 - \operatorname{Var}[\varepsilon_i \mid y]`) or
    :math:`\operatorname{clip}(\gamma |h_i|, \cdot)` (``rule="covariance_score"``); full description at
    :class:`AdaptiveSampler`.

    :param float sigma_max: start level.
    :param float sigma_min: floor.
    :param str rule: ``"error"`` or ``"covariance_score"``.
    :param float tolerance: :math:`\varepsilon > 0`.
    :param float gamma: :math:`\gamma > 0`.
    :param float min_decrease: :math:`\delta_{\min}` (default :math:`0.05 r`, :math:`r = \min(1, \varepsilon / 0.05)` or :math:`\min(1, \gamma)`).
    :param float max_decrease: :math:`\delta_{\max}` (default :math:`2 r`).
    :param int max_steps: error if the path has not reached its floor after this many steps.
    :param int pilots: pilot chains per measurement.
    :param SamplerSettings settings: shared settings (or their fields as keyword arguments;
        ``n_corrector`` defaults to 0 here).
    """

    def __init__(
        self,
        sigma_max: float = 10.0,
        sigma_min: float = 0.01,
        rule: str = "error",
        tolerance: float = 0.00625,
        gamma: float = 1.0,
        min_decrease: float | None = None,
        max_decrease: float | None = None,
        max_steps: int = 2000,
        pilots: int = 1,
        settings: SamplerSettings | None = None,
        **kwargs,
    ):
        if settings is None:
            settings = SamplerSettings(**{"n_corrector": 0, **kwargs})
            kwargs = {}
        for name, v in (("sigma_max", sigma_max), ("sigma_min", sigma_min)):
            if not isinstance(v, Real) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be a positive finite number, got {v!r}.")
        if sigma_min > sigma_max:
            raise ValueError(
                f"the schedule must decrease: need sigma_min <= sigma_max, got sigma_max={sigma_max}, sigma_min={sigma_min}."
            )
        check_schedule([sigma_max, sigma_min] if sigma_max > sigma_min else [sigma_max],
                       lam_min=settings.lam_min, lam_max=settings.lam_max)
        if rule not in ADAPTIVE_RULES:
            raise ValueError(f"rule must be one of {ADAPTIVE_RULES}, got {rule!r}.")
        tolerance = _positive("tolerance", tolerance)
        gamma = _positive("gamma", gamma)
        # below the default step parameter, the step bounds shrink with it, so that every step goes to zero with it
        scale = min(1.0, tolerance / 0.05 if rule == "error" else gamma)
        min_decrease = 0.05 * scale if min_decrease is None else _positive("min_decrease", min_decrease)
        max_decrease = 2.0 * scale if max_decrease is None else _positive("max_decrease", max_decrease)
        if min_decrease > max_decrease:
            raise ValueError(
                f"need min_decrease <= max_decrease, got min_decrease={min_decrease:g}, max_decrease={max_decrease:g}."
            )
        schedule = AdaptiveSchedule(float(sigma_max), float(sigma_min), rule, tolerance, gamma, min_decrease,
                                    max_decrease, _positive("max_steps", max_steps, integer=True),
                                    _positive("pilots", pilots, integer=True))
        super().__init__(schedule, settings, **kwargs)


# ---------------------------------------------------------------------------------------- samplers
class EnergySampler(BaseSampling):
    """Shared deepinv plumbing of the energy samplers."""

    def __init__(self, model, iterator: EnergySamplingIterator, n_samples: int = 16,
                 callback: Callable = lambda X, **kwargs: None, history_size: int | bool = 5,
                 level_callback: Callable | None = None, verbose: bool = False):
        if not hasattr(model, "energy_and_grads"):
            raise TypeError(
                f"model must be a deepinv_energy.EnergyModel (with energy_and_grads), got {type(model).__name__}."
            )
        n_samples = _positive("n_samples", n_samples, integer=True)
        if n_samples < 2:
            raise ValueError(f"n_samples must be >= 2 (a variance needs two draws), got {n_samples}.")
        if level_callback is not None and not callable(level_callback):
            raise TypeError("level_callback must be callable or None.")
        super().__init__(iterator, data_fidelity=None, prior=model, max_iter=n_samples - 1, callback=callback,
                         burnin_ratio=0.0, thinning=1, history_size=history_size, verbose=verbose)
        self.n_samples = n_samples
        self.level_callback = level_callback
        #: :class:`SamplerDiagnostics` of the last :meth:`sample` or :meth:`draw` call.
        self.diagnostics: SamplerDiagnostics | None = None

    @property
    def model(self):
        """The energy model (deepinv's ``prior`` slot)."""
        return self.prior

    def draw(self, y: torch.Tensor, physics, n: int = 1, seed: int | None = None,
             generator: torch.Generator | None = None) -> SamplerOutput:
        r"""``n`` independent posterior draws for each measurement of the batch, in one batched run.

        :param torch.Tensor y: measurements (B, ...), as for ``physics``.
        :param deepinv.physics.Physics physics: any physics :func:`deepinv_energy.to_denoising_problem`
            supports (per-element masks, kernels, noise levels).
        :param int n: draws per measurement.
        :param int seed: seed of a fresh generator (ignored if ``generator`` is given).
        :param torch.Generator generator: source of randomness.
        :return: :class:`SamplerOutput`, ``x`` of shape (n, B, C, H, W).
        """
        n = _positive("n", n, integer=True)
        problem = self.iterator.problem(self.model, y, physics)
        gen = _generator(seed, generator, y.device)
        out = self.iterator.draw_problem(self.model, problem, n, gen, y.dtype, self.level_callback, self.verbose)
        self.diagnostics = out.diagnostics
        return out

    def generate(self, n: int, image_shape, seed: int | None = None,
                 generator: torch.Generator | None = None) -> SamplerOutput:
        r"""Unconditional generation (every coefficient unobserved): ``n`` draws of the prior.

        :param int n: number of images.
        :param tuple image_shape: (C, H, W).
        :return: :class:`SamplerOutput` with ``x`` of shape (n, 1, C, H, W).
        """
        n = _positive("n", n, integer=True)
        problem = self.iterator.unconditional_problem(self.model, image_shape)
        gen = _generator(seed, generator, problem.x_tilde.device)
        out = self.iterator.draw_problem(self.model, problem, n, gen, problem.x_tilde.dtype,
                                         self.level_callback, self.verbose)
        self.diagnostics = out.diagnostics
        return out

    def sample(self, y: torch.Tensor, physics, x_init=None, seed: int | None = None,
               g_statistics=(lambda d: d["x"],), n_samples: int | None = None, **kwargs):
        r"""Posterior mean and variance over ``n_samples`` independent draws (deepinv's Welford loop).

        Each deepinv iteration is one draw; the state dict holds ``"x"`` (the Tweedie draw),
        ``"var"`` (per-pixel :math:`\operatorname{Var}[x \mid y_K]`) and ``"y"``. The default
        statistic is ``x``: its variance is the posterior variance up to the mean of ``"var"``
        (at most :math:`\sigma_{\min}^2`; :meth:`SamplerOutput.var` adds it).

        :param torch.Tensor y: measurements.
        :param deepinv.physics.Physics physics: forward model.
        :param x_init: must be ``None`` (draws are independent; there is no chain to initialize).
        :param int seed: seed of the sampler's generator (the global torch RNG is left untouched).
        :param g_statistics: deepinv statistics of the state dict.
        :param int n_samples: number of draws (default: the constructor's).
        :return: ``(mean, var)`` as :meth:`deepinv.sampling.BaseSampling.sample`.
        """
        if x_init is not None:
            raise ValueError("x_init must be None: every draw is an independent reverse diffusion.")
        n = self.n_samples if n_samples is None else _positive("n_samples", n_samples, integer=True)
        if n < 2:
            raise ValueError(f"n_samples must be >= 2, got {n}.")
        it = self.iterator  # its initialize_latent_variables converts (and validates) the problem once
        it._generator = _generator(seed, None, y.device)
        it._remaining = n
        it._level_callback = self.level_callback
        old = self.max_iter
        self.max_iter = n - 1
        try:
            out = super().sample(y, physics, x_init=None, seed=None, g_statistics=g_statistics, **kwargs)
        finally:
            self.max_iter = old
            it._generator, it._remaining, it._level_callback = None, None, None
        self.diagnostics = type(it._diagnostics[0]).concat(it._diagnostics)
        return out


class PredictorCorrectorSampler(EnergySampler):
    r"""Posterior sampling by reverse diffusion in covariance space, with a Langevin corrector.

    The measurement :math:`y` of a deepinv physics is first rewritten as anisotropic denoising,
    :math:`\tilde x = x + \mathcal{N}(0, \Sigma_{\mathrm{obs}})` with
    :math:`\Sigma_{\mathrm{obs}} = V \operatorname{diag}(\lambda^{\mathrm{obs}}) V^\top`
    (:func:`deepinv_energy.to_denoising_problem`; ``lam_max`` on unobserved coefficients). Along a
    decreasing schedule :math:`\sigma_0 > \dots > \sigma_K`, the level covariances are
    :math:`\Lambda_k = \min(\lambda^{\mathrm{obs}}, \sigma_k^2)` (coefficient-wise, in the basis).
    Adding Gaussian noise progressively, :math:`x \to y_K \to \dots \to y_0 \to \tilde x` is a
    Markov chain, so :math:`p(y_{k+1} \mid y_k, \tilde x) = p(y_{k+1} \mid y_k)`: the reverse step
    needs only the unconditional energy, and the measurement enters through the start and the
    corrector (no likelihood approximation).

    * Start: :math:`y_0 = \tilde x` on coefficients with :math:`\lambda^{\mathrm{obs}} \le \sigma_0^2`
      (pinned), fill + :math:`\sigma_0` noise on unobserved ones.
    * Predictor, :math:`D_k = \Lambda_k - \Lambda_{k+1}` (zero on pinned coefficients),
      :math:`g = \nabla_y U(y, \Lambda_k)`:

      .. math::

          y \leftarrow y - V (D_k \odot V^\top g) + V(\sqrt{v_k} \odot \xi),

      with :math:`v_k = D_k` (``predictor="euler"``, exact as the steps go to 0) or
      :math:`v_k = D_k - D_k^2 \hat H` (``predictor="covariance"``), where
      :math:`\hat H_i = (\lambda_i - \operatorname{Var}[x_i \mid y]) / \lambda_i^2` is the diagonal of
      :math:`\nabla^2_y U` in the basis, given by the covariance score
      :math:`\operatorname{Var}[x_i \mid y] = \lambda_i(1 - 2h_i) - (\lambda_i (V^\top g)_i)^2` from the
      same evaluation: the exact variance of :math:`p(y_{k+1} \mid y_k)` up to its off-diagonal
      terms, which removes most of the discretization bias at no cost.
    * Corrector at level :math:`k`: preconditioned Langevin on

      .. math::

          \pi_k(y) \propto \exp(-U(y, \Lambda_k))\; \mathcal{N}(\tilde x;\, y,\, \Sigma_{\mathrm{obs}} - \Lambda_k)

      over the free coefficients (the likelihood only where observed and not pinned),
      :math:`y \leftarrow y + \eta P \nabla \log\pi_k + \sqrt{2 \eta T P}\,\xi`, with
      :math:`P = (\Lambda_k^{-1} + (\Sigma_{\mathrm{obs}} - \Lambda_k)^{-1})^{-1}` on free coefficients
      (:math:`= \Lambda_k` where unobserved; the harmonic form keeps the step stable when a
      coefficient is about to be pinned), temperature :math:`T` (target :math:`\pi_k^{1/T}`) and
      :math:`\eta = 2\,\mathrm{snr}^2\, d_{\mathrm{free}} / \|P^{1/2} \nabla\log\pi_k\|^2`
      (or a fixed ``step_size``).
    * ``mh=True``: Metropolis-Hastings acceptance (MALA) with
      :math:`\log a = [\log\pi(y') - \log\pi(y)]/T + \log q(y \mid y') - \log q(y' \mid y)`,
      full Gaussian proposal densities including the log-determinant
      :math:`-\tfrac{d_{\mathrm{free}}}{2}\log\eta`, since :math:`\eta` depends on the current state;
      accumulated in float64. This is exact for any step size, which a score model cannot do.
    * Output: the Tweedie step :math:`x = y_K - \Lambda_K g` and per-pixel
      :math:`\operatorname{Var}[x \mid y_K]` (see :class:`SamplerOutput`).

    Cost: at most :math:`(K+1)(1 + n_{\mathrm{corrector}})` evaluations of ``model.energy_and_grads``
    (levels where every coefficient is still pinned cost nothing).

    .. note::

        The defaults are the paper's (Euler predictor, one unadjusted Langevin step per level,
        snr 0.15). The snr step :math:`\eta \propto 1/\|P^{1/2}\nabla\log\pi\|^2` is computed per
        chain (chains must stay independent), and with few free coefficients this ratio has a
        heavy tail, so the unadjusted corrector is measurably biased on small images (see
        ``benchmarks/results/sampler_exactness.md``). ``mh=True`` (:class:`MALASampler`) removes
        the bias at the same cost; ``predictor="covariance"`` removes most of the discretization
        bias of the predictor at no cost.

    :param deepinv_energy.EnergyModel model: any energy model (closed-form or learned), used only
        through ``energy_and_grads``.
    :param sigmas: explicit strictly decreasing schedule of standard deviations (overrides
        ``sigma_max``, ``sigma_min``, ``n_levels``).
    :param float sigma_max: first level (:math:`\sigma_{\max}^2 <` ``lam_max``).
    :param float sigma_min: last level (:math:`\sigma_{\min}^2 \ge` ``lam_min``).
    :param int n_levels: number of levels of the geometric schedule (:func:`geometric_schedule`).
    :param int n_corrector: Langevin steps per level (0: predictor only).
    :param float snr: target signal-to-noise ratio of the corrector (paper: 0.13 to 0.2).
    :param float step_size: fixed corrector step :math:`\eta > 0` instead of the snr rule.
    :param float temperature: :math:`T > 0` (1: exact posterior; paper used 0.8).
    :param bool mh: Metropolis-adjusted corrector (see :class:`MALASampler`).
    :param str predictor: ``"euler"`` or ``"covariance"``.
    :param int n_samples: draws used by :meth:`sample` / ``forward`` (deepinv's ``max_iter`` + 1).
    :param int parallel: draws computed together in one batched run by :meth:`sample`.
    :param float lam_min: variance floor of observed coefficients.
    :param float lam_max: variance of unobserved coefficients.
    :param float fill: start value of unobserved pixels.
    :param Callable callback: deepinv callback, called on every draw.
    :param Callable level_callback: called after every level with a dict (``level``, ``y``, ``lam``,
        ``energy``, ``acceptance``, ``nfe``).
    :param int history_size: deepinv history of draws kept in memory.
    :param bool verbose: tqdm progress bars.

    :Examples:

    >>> import torch, deepinv as dinv
    >>> from deepinv_energy import GaussianEnergy
    >>> from deepinv_energy.sampling import PredictorCorrectorSampler
    >>> model = GaussianEnergy(torch.zeros(1, 1, 2, 2, dtype=torch.float64), torch.eye(4, dtype=torch.float64))
    >>> physics = dinv.physics.Denoising(dinv.physics.GaussianNoise(0.5))
    >>> y = torch.ones(1, 1, 2, 2, dtype=torch.float64)
    >>> sampler = PredictorCorrectorSampler(model, sigma_max=5.0, sigma_min=0.01, n_levels=30,
    ...                                     n_corrector=1, mh=True, predictor="covariance")
    >>> out = sampler.draw(y, physics, n=1000, seed=0)
    >>> out.x.shape  # (n, B, C, H, W)
    torch.Size([1000, 1, 1, 2, 2])
    >>> bool((out.mean() - 0.8).abs().max() < 0.05)  # exact posterior mean: y / (1 + 0.25)
    True
    >>> bool((out.var() - 0.2).abs().max() < 0.03)  # exact posterior variance: 0.25 / 1.25
    True
    >>> sampler.diagnostics.nfe  # 1 + (1 + n_corrector) per level with sigma_k^2 < 0.25 (19 levels)
    39
    >>> mean, var = sampler.sample(y, physics, n_samples=4, seed=0)  # deepinv's interface
    """

    def __init__(self, model, sigmas=None, *, sigma_max: float = 10.0, sigma_min: float = 0.01,
                 n_levels: int = 100, **kwargs):
        if sigmas is None:
            sigmas = geometric_schedule(sigma_max, sigma_min, n_levels)
        settings, plumbing = split_sampler_kwargs(kwargs, model)
        super().__init__(model, PredictorCorrectorIterator(sigmas, **settings), **plumbing)

    @property
    def sigmas(self) -> torch.Tensor:
        """The schedule (float64)."""
        return self.iterator.sigmas


class MALASampler(PredictorCorrectorSampler):
    r"""Predictor-corrector sampler with a Metropolis-adjusted Langevin (MALA) corrector.

    Same algorithm and parameters as :class:`PredictorCorrectorSampler` with ``mh=True``: each
    Langevin proposal :math:`y'` is accepted with probability :math:`\min(1, a)`,

    .. math::

        \log a = \frac{\log\pi_k(y') - \log\pi_k(y)}{T} + \log q(y \mid y') - \log q(y' \mid y),

    .. math::

        q(y' \mid y) = \mathcal{N}\big(y';\, y + \eta(y) P \nabla\log\pi_k(y),\, 2\eta(y) T P\big),

    where :math:`\log\pi_k(y) = -U(y, \Lambda_k) - \tfrac12 \sum_{i\ \mathrm{free,\ obs}}
    (\tilde x - y)_i^2 / (\lambda^{\mathrm{obs}}_i - \Lambda_{k,i})` uses the energy *values*
    (normalized across covariances), and the Gaussian densities keep their log-determinant because
    the snr rule makes :math:`\eta(y) \neq \eta(y')`. The corrector's stationary law is then
    exactly :math:`\pi_k^{1/T}` for any step size; the acceptance rate per level is in
    :attr:`diagnostics`.

    :Examples:

    >>> import torch, deepinv as dinv
    >>> from deepinv_energy import GaussianEnergy
    >>> from deepinv_energy.sampling import MALASampler
    >>> f64 = torch.float64
    >>> model = GaussianEnergy(torch.zeros(1, 1, 2, 2, dtype=f64), torch.eye(4, dtype=f64))
    >>> mask = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]], dtype=f64)
    >>> noise = dinv.physics.GaussianNoise(0.1)
    >>> physics = dinv.physics.Inpainting((1, 2, 2), mask=mask, noise_model=noise)
    >>> sampler = MALASampler(model, n_levels=20, n_corrector=2, snr=0.3)
    >>> y = torch.ones(1, 1, 2, 2, dtype=f64) * mask
    >>> out = sampler.draw(y, physics, n=500, seed=1)
    >>> float(sampler.diagnostics.acceptance_rate.mean()) > 0.5
    True
    """

    def __init__(self, model, sigmas=None, *, n_corrector: int = 1, **kwargs):
        if "mh" in kwargs:
            raise TypeError("MALASampler is always Metropolis-adjusted; use PredictorCorrectorSampler(mh=...).")
        super().__init__(model, sigmas, n_corrector=n_corrector, mh=True, **kwargs)


class AdaptiveSampler(EnergySampler):
    r"""Energy-guided adaptive schedule: every coefficient lowers its own variance at its own rate.

    The state carries one variance :math:`\lambda_i` per coefficient, from
    :math:`\min(\lambda^{\mathrm{obs}}_i, \sigma_{\max}^2)` down to the floor
    :math:`\min(\lambda^{\mathrm{obs}}_i, \sigma_{\min}^2)`. Each step evaluates
    :math:`(U, g, h)` once, lowers

    .. math::

        \log\lambda_i \leftarrow \max\big(\log\lambda_i - \delta_i,\ \log\lambda^{\mathrm{floor}}_i\big),

        \delta_i = \operatorname{clip}(\cdot, \delta_{\min}, \delta_{\max}),

    and takes the reverse step of :class:`PredictorCorrectorSampler` with
    :math:`D = \lambda^{\mathrm{old}} - \lambda^{\mathrm{new}}`. The run stops when every coefficient
    is at its floor; the number of evaluations (NFE) is in :attr:`diagnostics`.

    **One path per measurement, from pilot chains.** A decreasing path of covariances that is fixed
    in advance is exact in the small-step limit, but a path chosen from a chain's *own* state is
    not: the state given the path chosen so far is no longer distributed as the level's target,
    and the draws can be biased even for small steps (a held-out check found the weights of two
    modes off with such a path, whatever the tolerance; on the mixtures of this package's tests
    the bias stayed within Monte Carlo error). So the
    decrements are computed from ``pilots`` extra chains per measurement, run in the same batch
    with their own noise and discarded, and every returned chain of that measurement follows their
    path (the mean of their statistics below). Given the path, each returned chain is a reverse
    diffusion along a path independent of it: exact as the steps go to zero. The price is
    ``pilots`` extra chains per batched run, and that the ``n`` draws of one measurement share one
    path: their discretization errors are correlated (averages over the draws converge to the
    posterior as the tolerance goes to zero, not as ``n`` grows at fixed tolerance; a new path is
    drawn for every batch of ``parallel`` draws in :meth:`sample`).

    By default the bounds are :math:`\delta_{\min} = 0.05\,r` and :math:`\delta_{\max} = 2\,r` with
    :math:`r = \min(1, \varepsilon / 0.05)` (:math:`r = \min(1, \gamma)` for the paper's rule): the
    fixed bounds 0.05 and 2 at and above a tolerance of 0.05, proportional to it below, so every
    step goes to zero with the tolerance and the
    error falls with the tolerance like a fixed schedule's falls with the number of levels
    (``tests/test_sampling.py`` checks it on a bimodal mixture posterior).

    Two rules for :math:`\delta_i`, both from the covariance score :math:`h` of the same evaluation:

    * ``rule="covariance_score"`` (the paper's): :math:`\delta_i = \gamma |h_i|`.
    * ``rule="error"`` (default): :math:`\delta_i = \varepsilon / (s_i \sqrt{1 - s_i})` with
      :math:`s_i = 1 - \operatorname{Var}[\varepsilon_i \mid y] = 2h_i + \lambda_i (V^\top g)_i^2`
      (identity 3), averaged over the pilots (:math:`|s_i|` is used: between modes of a posterior
      :math:`s_i < 0` is legitimate, and the step must not jump to :math:`\delta_{\max}` there). For a Gaussian coefficient with prior variance :math:`c`,
      :math:`s = \lambda / (\lambda + c)`; the Euler step's excess variance, propagated to the
      final draw, is :math:`\delta^2 s^2 (1 - s)` relative to :math:`c`, so this rule equalizes the
      error per step (tolerance :math:`\varepsilon^2`) and minimizes the total error at a given
      NFE: large steps where the noise is far above or below the signal, small ones where they
      are comparable. :math:`\gamma|h| \approx \gamma s |1 - z^2| / 2` does the opposite at low
      noise (tiny steps where large ones are safe), which costs evaluations; the benchmark
      ``benchmarks/sampler_exactness.py`` measures both against fixed schedules.

    The error rule trusts the model's posterior variance :math:`1 - s_i`. Where a learned energy
    puts :math:`s_i` near 0 or above 1 (a negative variance), the clipped :math:`s_i` makes the step
    jump to :math:`\delta_{\max}`; with the bundled model this happens for part of the coefficients
    at every step. ``benchmarks/results/restoration_adaptive.md`` measures it on Fashion-MNIST
    test images against the same sampler with Euler steps and against :class:`MALASampler` at 20
    evaluations: with the bundled model it spends more evaluations per draw than
    :class:`MALASampler` for a PSNR level with or below it, so with learned models prefer
    :class:`MALASampler`. At its default tolerance (below) it spends about 1000 evaluations per
    draw on Fashion-MNIST box inpainting and Gaussian deblurring, for a PSNR of the mean that
    :class:`MALASampler` reaches with 20 (``benchmarks/results/nfe_adaptive.md``).

    **Exactness at the default tolerance, and why the reverse step has no Metropolis-Hastings
    step.** The default :math:`\varepsilon = 0.00625` is chosen so that 4000 draws of one
    measurement match the exact posterior of bimodal 1x5x5 mixture posteriors (denoising,
    inpainting, blur; ``tests/test_sampling.py``): max :math:`|z|` of the mean below 4, per-pixel
    variances within 10 %, mode weights within 4 standard errors, at 112 to 344 evaluations per
    draw. At the former default 0.05 the denoising and inpainting problems of that test fail (mode
    weights 5.8 to 8.4 standard errors off, variances 12 to 16 % off; section 4 of
    ``benchmarks/results/sampler_exactness.md``, which also compares the evaluations adaptive and
    fixed schedules need at equal error: on those problems the adaptive schedule does not need fewer). The reverse step cannot be made exact by a Metropolis-Hastings accept/reject:
    it carries the state from the target :math:`\pi_{\mathrm{old}}` of one level to the target
    :math:`\pi_{\mathrm{new}}` of the next, whereas a Metropolis-Hastings kernel leaves one target
    invariant and needs a state already distributed as that target (a rejected step would leave a
    draw of :math:`\pi_{\mathrm{old}}` labelled as one of :math:`\pi_{\mathrm{new}}`). What the
    normalized energies do give, at no extra evaluation, is the exact importance weight of each
    step (:meth:`~deepinv_energy.sampling.engine.Chains.step_log_weight`, the full forward and
    reverse Gaussian densities with their log-determinants): ``diagnostics.path_kl`` estimates the
    KL divergence of the sampler's path from the exact reverse diffusion, a bound on the error of
    the draws. The Metropolis-adjusted Langevin corrector (``n_corrector > 0``, Metropolis-adjusted
    unless ``mh=False``) does fit: since the path does not depend on the returned chains, it leaves
    each level's target :math:`\pi_\Lambda` invariant; it is off by default because on the test's
    problems the schedule with one such step per level needs 2 to 3.7 times the evaluations of the
    schedule without it to pass the test (``benchmarks/results/sampler_exactness.md``, section 4).

    :param deepinv_energy.EnergyModel model: energy model.
    :param float sigma_max: start level of the unobserved coefficients.
    :param float sigma_min: floor (observed coefficients stop at their own variance if larger).
    :param str rule: ``"error"`` or ``"covariance_score"``.
    :param float tolerance: :math:`\varepsilon > 0` of ``rule="error"``.
    :param float gamma: :math:`\gamma > 0` of ``rule="covariance_score"``.
    :param float min_decrease: :math:`\delta_{\min} > 0` (guarantees termination); default
        :math:`0.05 \min(1, \varepsilon / 0.05)` (or :math:`0.05 \min(1, \gamma)`).
    :param float max_decrease: :math:`\delta_{\max} \geq \delta_{\min}`; default
        :math:`2 \min(1, \varepsilon / 0.05)` (or :math:`2 \min(1, \gamma)`).
    :param int max_steps: error if the path has not reached its floor after this many steps.
    :param int pilots: pilot chains per measurement that choose the path (discarded).
    :param str predictor: ``"covariance"`` (default) or ``"euler"``, as in
        :class:`PredictorCorrectorSampler` (whose default is the paper's ``"euler"``): on the
        exactness benchmark's mixtures the covariance predictor reaches the error of Euler steps with
        several times fewer evaluations (``benchmarks/results/sampler_exactness.md``, section 3).
    :param kwargs: ``n_corrector``, ``snr``, ``step_size``, ``temperature``, ``mh``,
        ``n_samples``, ``parallel``, ``lam_min``, ``lam_max``, ``fill``, ``callback``,
        ``level_callback``, ``history_size``, ``verbose`` as in :class:`PredictorCorrectorSampler`.

    :Examples:

    >>> import torch, deepinv as dinv
    >>> from deepinv_energy import GaussianEnergy
    >>> from deepinv_energy.sampling import AdaptiveSampler
    >>> model = GaussianEnergy(torch.zeros(1, 1, 2, 2, dtype=torch.float64), torch.eye(4, dtype=torch.float64))
    >>> physics = dinv.physics.Denoising(dinv.physics.GaussianNoise(0.5))
    >>> sampler = AdaptiveSampler(model, sigma_max=5.0, tolerance=0.1)
    >>> out = sampler.draw(torch.ones(1, 1, 2, 2, dtype=torch.float64), physics, n=1000, seed=0)
    >>> bool((out.mean() - 0.8).abs().max() < 0.05)
    True
    >>> int(sampler.diagnostics.nfe_per_chain.max()) < 40
    True
    """

    def __init__(self, model, *, sigma_max: float = 10.0, sigma_min: float = 0.01, rule: str = "error",
                 tolerance: float = 0.00625, gamma: float = 1.0, min_decrease: float | None = None,
                 max_decrease: float | None = None, max_steps: int = 2000, pilots: int = 1, n_corrector: int = 0,
                 mh: bool = True, predictor: str = "covariance", **kwargs):
        settings, plumbing = split_sampler_kwargs({"predictor": predictor, **kwargs}, model)
        iterator = AdaptiveIterator(
            sigma_max=sigma_max, sigma_min=sigma_min, rule=rule, tolerance=tolerance, gamma=gamma,
            min_decrease=min_decrease, max_decrease=max_decrease, max_steps=max_steps, pilots=pilots,
            n_corrector=n_corrector, mh=mh, **settings,
        )
        super().__init__(model, iterator, **plumbing)
