r"""Blind estimation: evidences of an operator family's candidates, their posterior, joint restoration."""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from ..covariance import check_image
from ..models.base import EnergyModel, work_dtype
from ..problems import LAM_MAX, LAM_MIN, to_denoising_problem
from .families import OperatorFamily
from .posterior import BlindPosterior

__all__ = ["BlindEstimator"]


class BlindEstimator:
    r"""Posterior over the parameters of a deepinv physics family from normalized evidences.

    Evidences are evaluated on the family's grid, many candidates per model call, nuisance
    parameters are marginalized by ``logsumexp`` (:meth:`BlindPosterior.marginal`), and
    real-valued parameters can be refined by gradient ascent of the log-posterior through
    autograd (:meth:`refine`).

    :param EnergyModel model: the (normalized) energy.
    :param OperatorFamily family: the operator family.
    :param callable log_prior: ``theta dict -> (N,)`` log prior (unnormalized); uniform on the
        grid if ``None``.
    :param int batch_size: candidates evaluated per model call.
    :param float lam_min: see :func:`deepinv_energy.to_denoising_problem`.
    :param float lam_max: see :func:`deepinv_energy.to_denoising_problem`.
    :param float lam_weak: blur frequencies with :math:`\lambda_{\max} < \sigma^2/|K|^2 \le`
        ``lam_weak`` count as observed with their true variance (see
        :func:`deepinv_energy.to_denoising_problem`); with the default 1e6, blur evidences on a
        6x6 mixture at the default ``lam_max`` are exact to 5e-12 nats, against 3e-2 when they are
        treated as pure noise (``None``). A learned model is then evaluated at variances above its
        training range; ``benchmarks/blind.py`` measures what the setting does to its estimates
        (``benchmarks/results/blind.md`` uses the default).
    :param bool verbose: progress bar.

    :Examples:

    >>> import torch
    >>> from deepinv_energy import BlindEstimator, DenoisingFamily, GaussianEnergy
    >>> model = GaussianEnergy(torch.full((1, 1, 4, 4), 0.5), 0.05 * torch.eye(16))
    >>> x = 0.5 + 0.05 ** 0.5 * torch.randn(64, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    >>> y = x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    >>> est = BlindEstimator(model, DenoisingFamily((1, 4, 4), noise=torch.linspace(0.1, 0.5, 9)))
    >>> post = est.posterior(y)
    >>> bool((post.map()["noise"] - 0.3).abs().median() <= 0.1)
    True
    """

    def __init__(self, model: EnergyModel, family: OperatorFamily, log_prior=None, batch_size: int = 64,
                 lam_min: float = LAM_MIN, lam_max: float = LAM_MAX, lam_weak: float | None = 1e6,
                 verbose: bool = False):
        if not isinstance(model, EnergyModel):
            raise TypeError(f"model must be an EnergyModel, got {type(model).__name__}.")
        if not isinstance(family, OperatorFamily):
            raise TypeError(f"family must be an OperatorFamily, got {type(family).__name__}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.model, self.family, self.log_prior_fn = model, family, log_prior
        self.batch_size, self.lam_min, self.lam_max, self.verbose = batch_size, lam_min, lam_max, verbose
        self.lam_weak = None if lam_weak is None else max(lam_weak, lam_max)
        theta = family.candidates()
        # fail early: the family must be convertible (no model call happens here)
        probe = {k: v[:1] for k, v in theta.items()}
        y0 = torch.zeros(1, *family.img_size, dtype=torch.float64)
        to_denoising_problem(family.physics(probe).A(y0), family.physics(probe), lam_min=lam_min, lam_max=lam_max,
                             lam_weak=self.lam_weak)
        self.theta = theta
        self.log_prior = self._log_prior(theta)

    def _log_prior(self, theta):
        n = next(iter(theta.values())).shape[0]
        if self.log_prior_fn is None:
            return torch.zeros(n, dtype=torch.float64)
        lp = torch.as_tensor(self.log_prior_fn(theta), dtype=torch.float64).reshape(-1)
        if lp.shape != (n,) or torch.isnan(lp).any() or (lp == math.inf).any():
            raise ValueError(f"log_prior must return {n} values that are finite or -inf.")
        if not torch.isfinite(lp).any():
            raise ValueError("the prior is zero on the whole grid.")
        return lp

    def _log_evidence(self, y: torch.Tensor, theta: dict) -> torch.Tensor:
        """(n,) log p(y_i | theta_i) for paired measurements and parameters (differentiable)."""
        theta = {k: v.to(device=y.device, dtype=y.dtype) for k, v in theta.items()}
        physics = self.family.physics(theta)
        problem = to_denoising_problem(y, physics, lam_min=self.lam_min, lam_max=self.lam_max, lam_weak=self.lam_weak)
        return problem.log_evidence(self.model) + self.family.extra_log_density(y, theta)

    @torch.no_grad()
    def log_evidence(self, y: torch.Tensor) -> torch.Tensor:
        """(B, N) float64 log-evidence of each measurement under each grid candidate."""
        check_image(y)
        y = y.to(work_dtype(self.model, y))  # float64/float16 input: computed in the model's dtype
        b, n = y.shape[0], next(iter(self.theta.values())).shape[0]
        pairs_y = torch.arange(b).repeat_interleave(n)
        pairs_t = torch.arange(n).repeat(b)
        out = torch.empty(b * n, dtype=torch.float64)
        starts = range(0, b * n, self.batch_size)
        for s in tqdm(starts, disable=not self.verbose, desc="evidences"):
            iy, it = pairs_y[s : s + self.batch_size], pairs_t[s : s + self.batch_size]
            out[s : s + len(iy)] = self._log_evidence(y[iy], {k: v[it] for k, v in self.theta.items()}).cpu()
        return out.reshape(b, n)

    def posterior(self, y: torch.Tensor) -> BlindPosterior:
        """Grid posterior :math:`p(\\theta \\mid y)` for each measurement of the batch."""
        log_ev = self.log_evidence(y)
        joint = log_ev + self.log_prior
        return BlindPosterior(self.theta, log_ev, joint - torch.logsumexp(joint, dim=1, keepdim=True),
                              periods=dict(self.family.periods))

    def fit_check(self, y: torch.Tensor, posterior: BlindPosterior | None = None, n: int = 4, seed: int = 0) -> dict:
        r"""Does the family explain the measurement at all? A posterior over a grid always has a
        maximum, even when no candidate fits; this compares the measurement's log-evidence under its
        MAP candidate :math:`	heta^*` with the log-evidence of ``n`` measurements that :math:`	heta^*`
        makes of the restoration :math:`\hat x = \mathbb{E}[x \mid y, 	heta^*]` (``family.measure`` of
        the one-evaluation posterior mean, fresh noise): a measurement the family explains scores like
        them, one it does not (e.g. noise of 0.05 scored by a family whose noise is fixed at 0.01)
        far below. A family that can mimic the true operator (a short motion blur for a narrow
        Gaussian blur) is not detected: its best candidate does explain the measurement.
        ``deepinv-energy blind`` warns above 0.25 nats per pixel (``tests/test_cli.py`` checks one
        case on each side).

        :param torch.Tensor y: measurements (B, C, H, W).
        :param BlindPosterior posterior: the posterior of ``y`` (computed if ``None``).
        :param int n: re-simulated measurements per element.
        :param int seed: seed of their noise.
        :return: dict of (B,) float64 tensors: ``"log_evidence"`` of ``y`` at :math:`	heta^*`,
            ``"reference"`` (the mean over the re-simulated measurements) and ``"deficit"``
            = (reference - log_evidence) / (C H W), in nats per pixel.
        """
        check_image(y)
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}.")
        post = self.posterior(y) if posterior is None else posterior
        idx = post.log_posterior.argmax(1)
        y_w = y.to(work_dtype(self.model, y))
        theta = {k: v[idx].to(device=y.device, dtype=y_w.dtype) for k, v in post.theta.items()}
        problem = to_denoising_problem(y_w, self.family.physics(theta), lam_min=self.lam_min, lam_max=self.lam_max,
                                       lam_weak=self.lam_weak)
        x_hat = self.model.denoise(problem.x_tilde, problem.cov).detach().clamp(0, 1)
        b = y.shape[0]
        rep = {k: v.repeat(n) for k, v in theta.items()}  # (n * B,), element j of each block is y[j]'s
        y_ref = self.family.measure(x_hat.repeat(n, 1, 1, 1), rep, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            ref = self._log_evidence(y_ref.to(y_w.dtype), rep).reshape(n, b).mean(0).cpu()
            own = self._log_evidence(y_w, theta).cpu()
        return {"log_evidence": own, "reference": ref, "deficit": (ref - own) / y[0].numel()}

    def restore(self, y: torch.Tensor, sampler, n: int = 8, mode: str = "posterior", seed: int = 0,
                posterior: BlindPosterior | None = None):
        r"""Joint restoration: posterior draws of the image with the operator unknown.

        ``mode="posterior"`` draws :math:`\theta_j \sim p(\theta \mid y)` and then
        :math:`x_j \sim p(x \mid y, \theta_j)`, i.e. samples of :math:`p(x \mid y)` with the operator
        marginalized, so the spread of the draws includes the operator's uncertainty;
        ``mode="map"`` uses the MAP operator for every draw.

        :param torch.Tensor y: measurements (B, C, H, W).
        :param sampler: a sampler of :mod:`deepinv_energy.sampling` (anything with
            ``draw(y, physics, n, seed)``).
        :param int n: draws per measurement.
        :param str mode: ``"posterior"`` or ``"map"``.
        :param int seed: seed of the operator draws and of the sampler.
        :param BlindPosterior posterior: a posterior already computed for ``y`` (else computed).
        :return: ``(x, theta)``: draws (n, B, C, H, W) and the operator parameters used, name -> (n, B).
        """
        if mode not in ("posterior", "map"):
            raise ValueError(f"mode must be 'posterior' or 'map', got {mode!r}.")
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}.")
        check_image(y)
        post = self.posterior(y) if posterior is None else posterior
        b = y.shape[0]
        if mode == "map":
            idx = post.log_posterior.argmax(1).repeat_interleave(n)
        else:
            g = torch.Generator().manual_seed(seed)
            idx = torch.multinomial(post.log_posterior.exp().float(), n, replacement=True, generator=g).reshape(-1)
        theta = {k: v[idx] for k, v in post.theta.items()}  # (B * n,), element-major
        yy = y.repeat_interleave(n, dim=0)
        physics = self.family.physics({k: v.to(device=y.device, dtype=y.dtype) for k, v in theta.items()})
        x = sampler.draw(yy, physics, n=1, seed=seed).x[0]
        x = x.reshape(b, n, *y.shape[1:]).transpose(0, 1)
        return x, {k: v.reshape(b, n).T for k, v in theta.items()}

    def refine(self, y: torch.Tensor, init: dict, params=None, steps: int = 100, lr: float = 0.05) -> dict:
        r"""Refine real-valued parameters by gradient ascent on the log-posterior.

        Optimizes :math:`\log\theta` (the parameters are positive) with Adam, through autograd
        of the energy and of the physics construction. The prior is the callable ``log_prior``
        evaluated at the continuous value (uniform if ``None``).

        :param torch.Tensor y: measurements (B, C, H, W).
        :param dict init: name -> (B,) starting values for every parameter (e.g. ``posterior(y).map()``).
        :param params: names to optimize (default: all of the family's continuous parameters).
        :return: (dict) name -> (B,) refined values (the others copied from ``init``).
        """
        check_image(y)
        params = self.family.continuous if params is None else tuple(params)
        bad = [p for p in params if p not in self.family.continuous]
        if bad:
            raise ValueError(f"parameters {bad} are not continuous; refinable: {self.family.continuous}.")
        if steps < 1 or not lr > 0:
            raise ValueError("steps must be >= 1 and lr > 0.")
        missing = [k for k in self.family.names if k not in init]
        if missing:
            raise ValueError(f"init lacks {missing}; it needs a value for each of {self.family.names}.")
        in_dtype, y = y.dtype, y.to(work_dtype(self.model, y))
        fixed = {k: torch.as_tensor(v, dtype=y.dtype, device=y.device).reshape(-1).expand(y.shape[0])
                 for k, v in init.items()}
        for p in params:
            if not (torch.isfinite(fixed[p]).all() and (fixed[p] > 0).all()):
                raise ValueError(f"init[{p!r}] must be positive and finite (refine optimizes log {p}), "
                                 f"got {fixed[p].tolist()}.")
        logs = {p: fixed[p].log().clone().requires_grad_(True) for p in params}
        opt = torch.optim.Adam(list(logs.values()), lr=lr)
        for _ in tqdm(range(steps), disable=not self.verbose, desc="refine"):
            theta = dict(fixed, **{p: v.exp() for p, v in logs.items()})
            obj = self._log_evidence(y, theta)
            if self.log_prior_fn is not None:
                obj = obj + torch.as_tensor(self.log_prior_fn(theta), dtype=torch.float64)
            opt.zero_grad()
            (-obj.sum()).backward()
            opt.step()
        return {k: v.to(in_dtype) for k, v in dict(fixed, **{p: v.detach().exp() for p, v in logs.items()}).items()}
