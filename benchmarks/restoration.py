r"""Posterior sampling on Fashion-MNIST test images: our samplers against deepinv's, same network.

Writes ``benchmarks/results/restoration[_quick].md`` (tables), ``restoration_<task>[_quick].png``
(figure grids, :func:`deepinv.utils.plot`) and caches every (task, method) result in
``benchmarks/results/raw/`` so that an interrupted run resumes where it stopped.

Tasks (deepinv physics, noise levels are standard deviations for images in [0, 1]):
``box`` (centred 14x14 box missing, noise 0.01), ``random70`` (70 % of pixels missing, noise
0.01), ``gblur-0.01`` / ``gblur-0.05`` (Gaussian blur std 1 px,
:class:`~deepinv.physics.BlurFFT`), ``motion`` (kernels of deepinv's
:class:`~deepinv.physics.generator.MotionBlurGenerator`, 11x11, noise 0.01), ``denoise``
(noise 0.2), ``sr2`` (2x decimation, :class:`~deepinv.physics.Downsampling` without filter,
noise 0.01). Outside ``SUPPORTED_PHYSICS`` (:data:`GENERAL_TASKS`, noise 0.01): ``sr2-bicubic``
(:class:`~deepinv.physics.Downsampling` with deepinv's bicubic filter), ``cs30``
(:class:`~deepinv.physics.CompressedSensing`, m/n = 0.3, one Gaussian matrix per batch) and
``gblur-reflect`` (:class:`~deepinv.physics.Blur` with a Gaussian kernel of std 1 px and reflect
padding); only ``SplitGibbs-E`` / ``SplitGibbsMean-E`` (ours,
:class:`~deepinv_energy.SplitGibbsSampler` with ``x_step="sample"`` / ``"mean"``) and DPS, DiffPIR,
PiGDM run them. Random masks and motion kernels are drawn once per batch of ``--batch`` images
(deepinv's DDRM takes one operator per batch), so 256 images see 16 masks / kernels.

Methods, all with the bundled network (``-E``: through :class:`~deepinv_energy.EnergyDenoiser`,
the Tweedie denoiser of the energy) or with a plain denoiser of the same backbone trained with
the same budget (``-P``: :class:`~deepinv_energy.UNetDenoiser`, ``benchmarks/weights``):

- ours: ``MMSE`` (:class:`~deepinv_energy.EnergyMMSE`, the one-evaluation posterior mean at its
  default ``lam_max``; NFE 1, its "draws" are all that mean), ``PC`` (:class:`~deepinv_energy.PredictorCorrectorSampler`, the paper's settings: Euler
  predictor, one unadjusted Langevin step per level), ``MALA`` (:class:`~deepinv_energy.MALASampler`:
  covariance predictor, one Metropolis-adjusted step per level), ``Adaptive``
  (:class:`~deepinv_energy.AdaptiveSampler`, defaults);
- deepinv's: ``DPS``, ``DiffPIR``, ``DDRM``, ``PiGDM`` (:class:`~deepinv.sampling.PosteriorDiffusion`
  with :class:`~deepinv.sampling.PiGDMDataFidelity`, VE SDE, Euler), ``ULA``
  (:class:`~deepinv.sampling.ULA` with :class:`~deepinv.optim.ScorePrior`; its output is the
  chain mean, so it has no single-sample metrics).

Every method gets about the same number of network evaluations per draw (``--steps``, 20 by
default; ``benchmarks/nfe.py`` runs a subset at 20, 50 and 100); each
deepinv method's main hyper-parameter is tuned per task on 8 TRAINING images (``--tune``, grid in
:data:`TUNE`, extended when the best value is at its end; best PSNR of the mean; stored in
``raw/tuned.json``, every score in ``raw/tune_scores.json``, both committed: delete them to tune
from scratch); ours run with their defaults.

Metrics: PSNR and SSIM (:mod:`deepinv.metric`) of the mean of ``--draws`` draws and of the first
draw, accuracy of a small classifier (``benchmarks/classifier.py``, trained on the training split)
on the mean, network evaluations per draw, wall time per image (all draws) and its ratio to DPS
(same run, same machine).

Run: ``python benchmarks/restoration.py --quick`` (8 images, a few minutes) or
``python benchmarks/restoration.py --tune`` (256 images; about 2.5 hours on 2 CPU cores as two
processes with ``--tasks`` split between them, which share the caches). The general tasks:
``python benchmarks/restoration.py --tune --n 64 --batch 16 --tasks sr2-bicubic,cs30,gblur-reflect
--methods SplitGibbs-E,SplitGibbsMean-E,DPS-E,DiffPIR-E,PiGDM-E --suffix _general`` (about 25 minutes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import pathlib
import sys
import time
import types

import deepinv as dinv
import torch

from deepinv_energy import (
    AdaptiveSampler,
    EnergyDenoiser,
    EnergyMMSE,
    EnergyUNet,
    MALASampler,
    PredictorCorrectorSampler,
    SplitGibbsSampler,
    UNetDenoiser,
    to_denoising_problem,
)
from deepinv_energy.data import load_images

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from classifier import labels, load_classifier  # noqa: E402

OUT = ROOT / "benchmarks" / "results"
RAW = OUT / "raw"
PLAIN = ROOT / "benchmarks" / "weights" / "plain-denoiser-28.json"
SHAPE = (1, 28, 28)
TASKS = ("box", "random70", "gblur-0.01", "gblur-0.05", "motion", "denoise", "sr2")
#: tasks outside ``SUPPORTED_PHYSICS``: only the split Gibbs sampler (ours) and DPS, DiffPIR, PiGDM run them
GENERAL_TASKS = ("sr2-bicubic", "cs30", "gblur-reflect")
OURS = ("MMSE-E", "PC-E", "MALA-E", "Adaptive-E", "SplitGibbs-E", "SplitGibbsMean-E")
DEEPINV = ("DPS", "DiffPIR", "DDRM", "PiGDM", "ULA")
METHODS = OURS + tuple(f"{m}-{n}" for n in ("E", "P") for m in DEEPINV)
#: ablations of ours (run by ``benchmarks/nfe.py``, or here by name): MALA without the Metropolis step, the
#: adaptive schedule with its step capped at 0.3, and with Euler steps, its default before 2026-12-02
#: (see :class:`~deepinv_energy.AdaptiveSampler`); the split Gibbs sampler with its defaults before
#: 2026-12-02 (8 values of rho, ten-level x-steps); the adaptive schedule at its defaults (tolerance
#: and step cap of the class: it ignores the budget)
ABLATIONS = ("PCcov-E", "AdaptiveCap-E", "AdaptiveEuler-E", "SplitGibbs8-E", "AdaptiveDefault-E")
#: our samplers and ablations: class and settings (levels or tolerance come from the budget)
OUR_SAMPLERS = {
    "PC": (PredictorCorrectorSampler, {"n_corrector": 1, "predictor": "euler"}),
    "PCcov": (PredictorCorrectorSampler, {"n_corrector": 1, "predictor": "covariance"}),
    "MALA": (MALASampler, {"n_corrector": 1, "predictor": "covariance"}),
    "Adaptive": (AdaptiveSampler, {"max_decrease": 2.0}),
    "AdaptiveCap": (AdaptiveSampler, {"max_decrease": 0.3}),
    "AdaptiveEuler": (AdaptiveSampler, {"max_decrease": 2.0, "predictor": "euler"}),
    "AdaptiveDefault": (AdaptiveSampler, {}),
}
#: samplers run at their class defaults whatever the budget
BUDGET_FREE = ("AdaptiveDefault",)
#: hyper-parameter grids of deepinv's methods (tuned per task on training images)
TUNE = {
    "DPS": ("weight", (0.3, 1.0, 3.0)),
    "DiffPIR": ("lambda_", (1.0, 7.0, 30.0)),
    "DDRM": ("eta", (0.5, 0.85, 1.0)),
    "PiGDM": ("sigma_max", (1.0, 5.0, 20.0)),
    "ULA": ("step", (0.3, 1.0, 3.0)),
}
#: admissible ranges when a grid is extended (DDRM's eta interpolates between 0 and 1)
BOUNDS = {"DDRM": (0.0, 1.0)}
#: combinations that cannot run: DDRM needs a DecomposablePhysics (an SVD), Downsampling is not one; our
#: exact samplers need a physics written as denoising; the split Gibbs sampler runs everywhere but is only
#: benchmarked where the exact samplers cannot go
UNSUPPORTED = ({("sr2", "DDRM-E"), ("sr2", "DDRM-P")}
               | {(t, m) for t in GENERAL_TASKS for m in ("MMSE-E", "PC-E", "MALA-E", "Adaptive-E", "AdaptiveDefault-E", "DDRM-E", "DDRM-P",
                                                 "ULA-E", "ULA-P")}
               | {(t, m) for t in TASKS for m in ("SplitGibbs-E", "SplitGibbsMean-E", "SplitGibbs8-E")})
DEFAULTS = {"DPS": 1.0, "DiffPIR": 7.0, "DDRM": 0.85, "PiGDM": 5.0, "ULA": 1.0}


# ---------------------------------------------------------------------------------------- tasks
def make_task(name: str, x: torch.Tensor, seed: int):
    """``(physics, y, noise)`` for clean images ``x`` (seeded). Random masks and motion kernels are
    drawn once per call (one per batch): deepinv's DDRM supports a single operator per batch."""
    g = torch.Generator().manual_seed(seed)
    noise = {"gblur-0.05": 0.05, "denoise": 0.2}.get(name, 0.01)
    nm = dinv.physics.GaussianNoise(sigma=noise, rng=torch.Generator().manual_seed(seed + 1))
    if name == "box":
        mask = torch.ones(1, *SHAPE[1:])
        mask[:, 7:21, 7:21] = 0
        physics = dinv.physics.Inpainting(SHAPE, mask=mask, noise_model=nm)
    elif name == "random70":
        mask = (torch.rand(1, *SHAPE, generator=g) < 0.3).float()
        physics = dinv.physics.Inpainting(SHAPE, mask=mask, noise_model=nm)
    elif name.startswith("gblur"):
        physics = dinv.physics.BlurFFT(SHAPE, filter=dinv.physics.functional.gaussian_blur(sigma=(1.0, 1.0)),
                                       noise_model=nm)
    elif name == "motion":
        gen = dinv.physics.generator.MotionBlurGenerator((11, 11), rng=g)
        physics = dinv.physics.BlurFFT(SHAPE, filter=gen.step(batch_size=1)["filter"], noise_model=nm)
    elif name == "denoise":
        physics = dinv.physics.Denoising(noise_model=nm)
    elif name == "sr2-bicubic":
        physics = dinv.physics.Downsampling(img_size=SHAPE, factor=2, filter="bicubic", noise_model=nm)
    elif name == "cs30":
        physics = dinv.physics.CompressedSensing(m=int(0.3 * math.prod(SHAPE)), img_size=SHAPE, rng=g, noise_model=nm)
    elif name == "gblur-reflect":
        physics = dinv.physics.Blur(filter=dinv.physics.functional.gaussian_blur(sigma=(1.0, 1.0)), padding="reflect",
                                    noise_model=nm)
    elif name == "sr2":
        physics = dinv.physics.Downsampling(img_size=SHAPE, factor=2, filter=None, noise_model=nm)
        # deepinv 0.5.0's Downsampling.prox_l2 needs a filter (Fh is None without one; DiffPIR
        # calls it): use the generic conjugate-gradient prox of LinearPhysics instead
        physics.prox_l2 = types.MethodType(dinv.physics.LinearPhysics.prox_l2, physics)
    else:
        raise ValueError(f"unknown task {name!r}; choose among {TASKS + GENERAL_TASKS}.")
    return physics, physics(x), noise


# ---------------------------------------------------------------------------------------- methods
def run_method(method: str, nets: dict, y, physics, noise: float, draws: int, steps: int, param, seed: int):
    r"""``(draws (K, B, C, H, W), network evaluations per draw, variance)``: ``variance`` is ``None``
    when the draws are posterior samples, or (K, B, C, H, W) per-pixel :math:`\operatorname{Var}[x \mid y_K]`
    when each draw is a Tweedie estimate :math:`\mathbb{E}[x \mid y_K]` of ours
    (:class:`~deepinv_energy.sampling.SamplerOutput`): the part of the posterior variance it does not carry."""
    base, kind = method.rsplit("-", 1)
    model = nets["energy"]
    den = EnergyDenoiser(model) if kind == "E" else UNetDenoiser(nets["plain"])
    if base == "MMSE":  # deterministic: every "draw" is the one-evaluation posterior mean
        mean = EnergyMMSE(model)(y, physics)
        return mean.unsqueeze(0).expand(draws, *mean.shape), 1.0, None
    if base.startswith("SplitGibbs"):  # defaults; the mean variant spends one evaluation per sweep
        mean = base == "SplitGibbsMean"
        old = {"n_stages": 8, "x_levels": 10} if base == "SplitGibbs8" else {}
        sampler = SplitGibbsSampler(model, **({"n_stages": steps, "x_step": "mean"} if mean else old))
        out = sampler.draw(y, physics, n=draws, seed=seed)
        return out.x, float(out.diagnostics.nfe_per_chain.double().mean()), out.variance
    if base in OUR_SAMPLERS:
        cls, settings = OUR_SAMPLERS[base]
        if base in BUDGET_FREE:
            budget = {}
        elif cls is AdaptiveSampler:
            budget = {"tolerance": _adaptive_tolerance(steps)}
        else:
            budget = {"n_levels": steps // 2}
        sampler = cls(model, sigma_max=_sigma_max(y, physics), **budget, **settings)
        out = sampler.draw(y, physics, n=draws, seed=seed)
        return out.x, float(out.diagnostics.nfe_per_chain.double().mean()), out.variance
    xs = []
    for k in range(draws):
        s = seed + 1 + k
        torch.manual_seed(s)
        if base == "DPS":
            algo = dinv.sampling.DPS(den, num_steps=steps, weight=param, rng=torch.Generator().manual_seed(s),
                                     dtype=torch.float32)
            xk = algo(y, physics, seed=s)
        elif base == "DiffPIR":
            algo = dinv.sampling.DiffPIR(den, dinv.optim.data_fidelity.L2(), sigma=max(noise, 1e-3), max_iter=steps,
                                         lambda_=param)
            xk = algo(y, physics, seed=s)
        elif base == "DDRM":
            algo = dinv.sampling.DDRM(den, sigmas=torch.linspace(1, 0.01, steps).numpy(), eta=param)
            xk = algo(y, physics, seed=s)
        elif base == "PiGDM":
            algo = dinv.sampling.PosteriorDiffusion(
                data_fidelity=dinv.sampling.PiGDMDataFidelity(denoiser=den),
                sde=dinv.sampling.VarianceExplodingDiffusion(sigma_max=param, sigma_min=0.01),
                denoiser=den, minus_one_one=False,
                solver=dinv.sampling.EulerSolver(timesteps=torch.linspace(1, 0.001, steps),
                                                 rng=torch.Generator().manual_seed(s)),
            )
            xk = algo(y, physics, seed=s)
        elif base == "ULA":
            sig = 0.05
            algo = dinv.sampling.ULA(dinv.optim.ScorePrior(den), dinv.optim.data_fidelity.L2(sigma=noise),
                                     step_size=param * 0.5 / (1 / noise**2 + 1 / sig**2), sigma=sig, max_iter=steps,
                                     thinning=1, burnin_ratio=0.5, verbose=False)
            xk = algo(y, physics, seed=s)[0]
            xs = [xk] * draws  # the chain mean: one "draw"
            break
        xs.append(xk.detach().float())
    return torch.stack(xs), float(steps), None


def _sigma_max(y, physics, top: float = 10.0) -> float:
    """First level of our schedules: 10, or just above the largest noise when every coefficient is
    observed (levels above it would cost nothing and waste the budget)."""
    prob = to_denoising_problem(y, physics)
    if not prob.observed.all():
        return top
    return min(top, 1.05 * float(prob.cov.variances.max()) ** 0.5)


def _adaptive_tolerance(steps: int) -> float:
    # the error rule's NFE scales like 1 / tolerance; 0.05 gives about 60 evaluations on Fashion-MNIST
    return 0.05 * 60 / steps


# ---------------------------------------------------------------------------------------- evaluation
def evaluate(method, nets, x, task, draws, steps, param, seed, batch, classifier, lab):
    psnr, ssim = dinv.metric.PSNR(), dinv.metric.SSIM()
    res = {k: [] for k in ("psnr", "ssim", "psnr1", "ssim1", "correct")}
    nfe, t0, means = [], time.perf_counter(), []
    for i in range(0, x.shape[0], batch):
        xb = x[i : i + batch]
        physics, y, noise = make_task(task, xb, seed + i)
        with torch.set_grad_enabled(method.split("-")[0] in ("DPS", "PiGDM")):
            xs, n, _ = run_method(method, nets, y, physics, noise, draws, steps, param, seed + i)
        xs = xs.detach().float().clamp(0, 1)
        mean = xs.mean(0)
        means.append(mean)
        nfe.append(n)
        res["psnr"].append(psnr(mean, xb))
        res["ssim"].append(ssim(mean, xb))
        res["psnr1"].append(psnr(xs[0], xb))
        res["ssim1"].append(ssim(xs[0], xb))
        with torch.no_grad():
            res["correct"].append((classifier(mean).argmax(1) == lab[i : i + batch]).float())
    secs = (time.perf_counter() - t0) / x.shape[0]
    out = {k: torch.cat(v).mean().item() for k, v in res.items()}
    out.update({"nfe": sum(nfe) / len(nfe), "time": secs, "param": param, "n": x.shape[0], "draws": draws,
                "steps": steps})
    if method.startswith("ULA"):
        out["psnr1"] = out["ssim1"] = float("nan")
    return out, torch.cat(means)


def load_nets(methods, plain=PLAIN) -> dict:
    """The bundled energy and, if a ``-P`` method is asked for, the plain denoiser."""
    return {"energy": EnergyUNet.from_pretrained("fashion-mnist-28"),
            "plain": EnergyUNet.from_pretrained(str(plain)) if any(m.endswith("-P") for m in methods) else None}


def net_id(nets: dict, method: str) -> str:
    """Short fingerprint of the weights ``method`` runs with (the plain denoiser for ``-P``, else the
    energy), part of every cache key: a retrained network never reuses another one's results."""
    net = nets["plain" if method.endswith("-P") else "energy"]
    h = hashlib.sha256()
    for k, v in net.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def method_param(tuned: dict, task: str, method: str):
    """The tuned parameter of a deepinv method (its default if untuned; None for ours)."""
    return tuned.get(f"{task}/{method}", DEFAULTS.get(method.rsplit("-", 1)[0]))


def cached_evaluate(cache: pathlib.Path, method, nets, x, task, draws, steps, param, batch, classifier, lab) -> dict:
    """:func:`evaluate` (seed 0), or the result stored at ``cache`` if it was computed with the same
    parameter, number of images and budget; keeps the first 4 means for the figures."""
    r = read_json(cache)
    net = net_id(nets, method)
    if (r.get("param"), r.get("n"), r.get("steps"), r.get("net")) != (param, x.shape[0], steps, net):
        r, means = evaluate(method, nets, x, task, draws, steps, param, 0, batch, classifier, lab)
        r["shown"], r["net"] = means[:4].tolist(), net
        RAW.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(r))
        print(f"{task:10s} {method:13s} {steps:4d} steps: PSNR {r['psnr']:.2f} / {r['psnr1']:.2f}  "
              f"acc {r['correct']:.2f}  NFE {r['nfe']:.0f}  {r['time']:.2f} s/img", flush=True)
    return r


def tune(nets, tasks, methods, steps, draws, batch, classifier, widen: int = 4):
    """Tune the parameter of :data:`TUNE` of each deepinv method per task on 8 training images
    (best PSNR of the mean). When the best value is the end of the values tried, the grid is
    extended geometrically while it gains more than 0.01 dB (at most ``widen`` times, within
    :data:`BOUNDS`). Results go to ``raw/tuned.json`` (values) and ``raw/tune_scores.json`` (every
    score), merged with what parallel processes write, so a second call only extends what is
    missing."""
    tpath, spath = RAW / "tuned.json", RAW / "tune_scores.json"
    x = load_images("fashion-mnist", "train", limit=8)
    lab = labels("train")[:8]
    tuned = read_json(tpath)
    for task in tasks:
        for method in methods:
            base = method.rsplit("-", 1)[0]
            if base not in TUNE or (task, method) in UNSUPPORTED:
                continue
            key = f"{task}/{method}"
            name, grid = TUNE[base]
            lo, hi = BOUNDS.get(base, (0.0, math.inf))
            scores = {float(v): s for v, s in read_json(spath).get(key, {}).items()}
            n_known = len(scores)

            def score(v):
                if v not in scores:
                    s = evaluate(method, nets, x, task, draws, steps, v, 777, batch, classifier, lab)[0]["psnr"]
                    scores[v] = -math.inf if math.isnan(s) else s
                return scores[v]

            best = tuned[key] if key in tuned else max(grid, key=score)
            for _ in range(widen):
                tried = sorted(set(grid) | set(scores))
                if best == tried[-1] and best * grid[-1] / grid[-2] <= hi:
                    nxt = best * grid[-1] / grid[-2]
                elif best == tried[0] and best * grid[0] / grid[1] >= lo:
                    nxt = best * grid[0] / grid[1]
                else:
                    break
                if score(nxt) <= score(best) + 0.01:  # flat: stop
                    break
                best = nxt
            if len(scores) == n_known and key in tuned:
                continue
            tuned[key] = best
            print(f"tuned {task} {method}: {name} = {best:.4g} ({scores})", flush=True)
            RAW.mkdir(parents=True, exist_ok=True)
            # merge with what parallel processes (other tasks) wrote meanwhile
            tpath.write_text(json.dumps({**read_json(tpath), key: best}, indent=1))
            spath.write_text(json.dumps({**read_json(spath), key: scores}, indent=1))
    return {**read_json(tpath), **tuned}


def read_json(path: pathlib.Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def report(results: dict, tasks, methods, args, suffix: str) -> str:
    L = [f"# Posterior sampling benchmark{' (quick mode)' if args.quick else ''}", "",
         f"Generated by `python benchmarks/restoration.py {args.cmd}`: {args.n} Fashion-MNIST "
         f"test images per task, {args.draws} draws per image, about {args.steps} network evaluations per draw, "
         f"{torch.get_num_threads()} CPU threads. `mean`: metrics of the mean of the draws; `sample`: of the first draw; "
         "`acc`: classifier accuracy on the mean (clean test images: see the classifier's JSON); `NFE`: network "
         "evaluations per draw; `time`: seconds per image for all draws, and its ratio to DPS-E (same run). "
         "`-E`: the energy's Tweedie denoiser; `-P`: the plain denoiser of the same backbone and budget. "
         "Protocol in the script's docstring. `param`: the main hyper-parameter of deepinv's methods (see `TUNE`); "
         + ("tuned per task on training images (`--tune`)." if (RAW / "tuned.json").exists() else
            "deepinv's defaults: NOT tuned in this run (`--tune` tunes them on training images).")
         + (" The tasks outside `SUPPORTED_PHYSICS` (sr2-bicubic, cs30, gblur-reflect) have no tuned values: deepinv's "
            "methods run there with their defaults, our split Gibbs sampler with its defaults (`SplitGibbs`: 40 values "
            "of rho from 0.5 to 0.02, one sweep each, two-level Metropolis-adjusted x-steps; `SplitGibbsMean`: `--steps` sweeps with the "
            "Tweedie mean as x-step, one evaluation each)." if set(tasks) & set(GENERAL_TASKS) else "")
         + " Times come from one process among several sharing 2 cores: compare ratios within a table only. "
         "PSNR favours the posterior mean: for exact posterior draws the expected squared error of one draw is 2x "
         "the minimum mean squared error (MMSE) and that of the mean of two 1.5x, so `PSNR sample` should sit "
         "1.25 dB below `PSNR mean`, and `PSNR mean` 1.8 dB below the MMSE estimate; a smaller gap means "
         "under-dispersed (near-deterministic) draws, a larger one over-dispersed draws.", ""]
    for task in tasks:
        L += [f"## {task}", "", "| method | PSNR mean | SSIM mean | PSNR sample | SSIM sample | acc | NFE | time (s) | time / DPS-E | param |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        ref = results.get((task, "DPS-E"), {}).get("time")
        best = max((r["psnr"] for (t, m), r in results.items() if t == task), default=None)
        for m in methods:
            r = results.get((task, m))
            if (task, m) in UNSUPPORTED:
                L.append(f"| {m} | n/a: deepinv's DDRM needs a DecomposablePhysics (an SVD); Downsampling is not one |" + " |" * 8)
            if r is None:
                continue
            ratio = f"{r['time'] / ref:.2f}" if ref else "n/a"
            par = "-" if r["param"] is None else f"{r['param']:.3g}"
            p = f"**{r['psnr']:.2f}**" if best is not None and r["psnr"] == best else f"{r['psnr']:.2f}"
            L.append(f"| {m} | {p} | {r['ssim']:.3f} | {r['psnr1']:.2f} | {r['ssim1']:.3f} | {r['correct']:.2f} | "
                     f"{r['nfe']:.0f} | {r['time']:.2f} | {ratio} | {par} |")
        L += ["", f"![{task}](restoration_{task}{suffix}.png)", ""]
    return "\n".join(L)


def summary_table(results: dict, tasks, methods) -> str:
    """PSNR of the mean per task (rows) and method (columns): the README table."""
    L = ["| task | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for t in tasks:
        vals = [results.get((t, m), {}).get("psnr") for m in methods]
        best = max(v for v in vals if v is not None)
        L.append(f"| {t} | " + " | ".join("-" if v is None else (f"**{v:.1f}**" if v == best else f"{v:.1f}") for v in vals) + " |")
    return "\n".join(L)


def winners_table(results: dict, tasks, methods) -> str:
    """Per task, the best method on each metric (ties listed), with its value and NFE."""
    cols = (("psnr", "PSNR mean", "{:.2f}"), ("ssim", "SSIM mean", "{:.3f}"), ("psnr1", "PSNR one draw", "{:.2f}"),
            ("correct", "classifier accuracy", "{:.3f}"))
    L = ["| task | " + " | ".join(c[1] for c in cols) + " |", "|---|" + "---|" * len(cols)]
    for t in tasks:
        row = []
        for key, _, fmt in cols:
            vals = {m: results[(t, m)][key] for m in methods if (t, m) in results and not math.isnan(results[(t, m)][key])}
            best = max(vals.values())
            row.append(", ".join(f"{m} (NFE {results[(t, m)]['nfe']:.0f})" for m, v in vals.items() if v == best)
                       + ": " + fmt.format(best))
        L.append(f"| {t} | " + " | ".join(row) + " |")
    return "\n".join(L)


def summary_rst(results: dict, tasks, methods, caption: str) -> str:
    """The same table as :func:`summary_table` as a reST list-table (included by the docs)."""
    L = [f".. list-table:: {caption}", "   :header-rows: 1", "", "   * - task"] + [f"     - {m}" for m in methods]
    for t in tasks:
        vals = [results.get((t, m), {}).get("psnr") for m in methods]
        best = max(v for v in vals if v is not None)
        L.append(f"   * - {t}")
        L += [f"     - {'-' if v is None else (f'**{v:.1f}**' if v == best else f'{v:.1f}')}" for v in vals]
    return "\n".join(L) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="8 images, 20 steps, 2 draws (a few minutes)")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--draws", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16, help="images per batch (one random mask / motion kernel each)")
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--tune", action="store_true", help="tune deepinv's methods on training images first")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--plain", default=str(PLAIN), help="weights of the plain denoiser")
    ap.add_argument("--suffix", default=None, help="suffix of the result files (default: '_quick' with --quick, else '')")
    args = ap.parse_args(argv)
    args.cmd = " ".join(sys.argv[1:] if argv is None else argv)
    if args.quick:
        args.n, args.steps, args.draws, args.batch = 8, 20, 2, 8
    if args.threads:
        torch.set_num_threads(args.threads)
    tasks = [t for t in args.tasks.split(",") if t]
    methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in methods if m not in METHODS + ABLATIONS] + [t for t in tasks if t not in TASKS + GENERAL_TASKS]
    if bad:
        raise SystemExit(f"unknown tasks/methods {bad}; tasks {TASKS + GENERAL_TASKS}, methods {METHODS + ABLATIONS}")
    nets = load_nets(methods, args.plain)
    classifier = load_classifier()
    suffix = ("_quick" if args.quick else "") if args.suffix is None else args.suffix
    tuned = tune(nets, tasks, methods, args.steps, args.draws, args.batch, classifier) if args.tune else read_json(RAW / "tuned.json")
    x = load_images("fashion-mnist", "test", limit=args.n)
    lab = labels("test")[: args.n]
    results = {}
    for task in tasks:
        shown = {}
        for method in methods:
            if (task, method) in UNSUPPORTED:
                continue
            r = cached_evaluate(RAW / f"{task}_{method}{suffix}.json", method, nets, x, task, args.draws, args.steps,
                                method_param(tuned, task, method), args.batch, classifier, lab)
            results[(task, method)] = r
            shown[method] = torch.tensor(r["shown"])
        physics, y, _ = make_task(task, x[:4], 0)
        shown_y = physics.A_adjoint(y) if y.shape != x[:4].shape else y
        dinv.utils.plot([x[:4], shown_y] + list(shown.values()), titles=["truth", "measurement"] + list(shown),
                        save_fn=str(OUT / f"restoration_{task}{suffix}.png"), show=False, close=True, dpi=100,
                        rescale_mode="clip", fontsize=7)
    text = report(results, tasks, methods, args, suffix)
    text += "\n## Summary: PSNR (dB) of the posterior mean\n\n" + summary_table(results, tasks, methods) + "\n"
    text += "\n## Winners per task\n\n" + winners_table(results, tasks, methods) + "\n"
    (OUT / f"restoration{suffix}.md").write_text(text)
    caption = (f"PSNR (dB) of the posterior mean ({args.draws} draws), {args.n} Fashion-MNIST test images, "
               f"about {args.steps} network evaluations per draw")
    (OUT / f"restoration_summary{suffix}.rst").write_text(summary_rst(results, tasks, methods, caption))
    print(text)


if __name__ == "__main__":
    main()
