r"""What a posterior sampler is for: point estimates at equal cost, calibration, realism of draws.

``benchmarks/restoration.py`` ranks methods by the PSNR of the mean of two draws, which rewards
near-deterministic methods. This script measures, on the SAME Fashion-MNIST test images and the
SAME measurements for every method (the tasks, seeds, batches and tuned hyper-parameters of
``restoration.py``: :func:`restoration.make_task`, :func:`restoration.run_method`,
``raw/tuned.json``), the three things a posterior sampler is used for.

Methods: ours, ``MALA-E``, ``PCcov-E`` (MALA without the Metropolis step) and ``Adaptive-E``
(settings of ``restoration.OUR_SAMPLERS``); ``MMSE-E``, the one-evaluation posterior mean and
per-pixel standard deviation of :class:`~deepinv_energy.EnergyMMSE` (``lam_max`` = ``--mmse-lam-max``,
EnergyMMSE's default 1000); deepinv's
``DPS``, ``DiffPIR``, ``DDRM`` and ``PiGDM`` with the energy's Tweedie denoiser (``-E``,
:class:`~deepinv_energy.EnergyDenoiser`) and with the plain denoiser of the same backbone (``-P``),
their parameter tuned per task in ``restoration.py``. Every draw costs about ``--steps`` (20) network
evaluations (the adaptive sampler chooses its own; the tables give the NFE actually spent). DDRM
cannot run ``sr2`` (deepinv's DDRM needs an SVD).

Images: test images ``[0, --n)`` in batches of ``--batch`` (one random mask / motion kernel per
batch, as ``restoration.py``); the first ``--n-cal`` of them get ``--draws`` draws each (parts 1 and
2), the others one draw (part 3). All draws are clamped to [0, 1], as in ``restoration.py``.

1. **Point estimate at equal cost.** A budget of B network evaluations per image: ``MMSE-E``
   spends 1 (its value is the same at every budget: it cannot use more); a sampler spends it as
   k = B // 20 draws of 20 evaluations and returns their mean (budgets below 20: ``MMSE-E`` only).
   The k draws are the first k of the ``--draws`` draws of the calibration images. PSNR and SSIM
   (:mod:`deepinv.metric`), mean over the ``--n-cal`` images and its standard error.
2. **Calibration** from the ``--draws`` draws of each calibration image: ``coverage``, the fraction
   of pixels whose true value lies in the per-pixel empirical 90 % interval of the draws
   (``torch.quantile`` 0.05 / 0.95); ``z2``, the mean and the median over pixels of
   :math:`(x - \bar x)^2 / s^2` (:math:`s^2` the draws' unbiased variance floored at 1e-8; the
   median because near-zero variances make the mean explode). Overall and inside the unobserved
   region (inpainting: the mask == 0 pixels; decimation: the off-grid pixels; blur and denoising
   have none). ``MMSE-E``: the interval mean +- 1.645 std and :math:`(x - \text{mean})^2 / \text{var}` from its
   one-evaluation moments. The goals, 0.9 and 1, hold for a Gaussian posterior known exactly; with
   K draws the same estimators applied to EXACT draws give less (the empirical interval of K draws is
   too short, the sample variance too noisy): the row ``exact K draws`` gives these references
   (Monte Carlo, the truth and the K draws i.i.d. from the same Gaussian; for 16 draws about 0.79
   and 1.23).
3. **Realism of single draws.** Fréchet distance (float64, eigen-decomposition; bootstrap standard
   error over the draws) between the penultimate features (the 32-d ReLU output before the last
   Linear) of the bundled classifier ``benchmarks/classifier.py`` for the first draw of each of the
   ``--n`` images and for the clean test images ``[5000, 10000)``; noise floor: the same distance
   for the ``--n`` clean images themselves (same sample sizes), and between the two halves
   ``[0, 5000)`` / ``[5000, 10000)`` of the test set. ``MMSE-E`` enters with its mean (not a draw).
   Classifier accuracy of single draws; ``spread``: the per-pixel std of the draws averaged inside
   the unobserved region (calibration images; ``MMSE-E``: its predicted std).

Every per-batch result is cached in ``benchmarks/results/raw/posterior/<task>_<method>[_quick]/``
(keyed by the parameter, steps, draws, batch and a fingerprint of the weights: a changed setting
or a retrained network recomputes), so an interrupted
run resumes, and two processes with disjoint ``--tasks`` can share the work.

Writes ``benchmarks/results/posterior.md`` (a summary first), ``posterior_summary.rst`` (the summary
for the docs), ``posterior_budget.png``, ``posterior_draws_box.png``
and ``posterior_draws_sr2.png`` (``--quick``: the same names with ``_quick``, never the full results).

Run: ``python benchmarks/posterior.py``: the full run, sized to fit 3 hours on 2 cores. 1000 images
per task for the Fréchet distance, the first 32 of them with 16 draws (1480 draws per task and
method), the methods of :data:`FULL` (``MMSE-E``, ``MALA-E``, ``DDRM-E``, ``DiffPIR-E``, ``DDRM-P``,
``DiffPIR-P``; the slower ``DPS``, ``PiGDM`` and ``Adaptive-E`` rows by ``--methods``, 3 to 5x the
time each). Measured on 2026-12-02: about 13 minutes per task for the three ``-E`` samplers and 5 for
the two ``-P`` ones on one core, 2.1 core-hours in all, i.e. about 1.1 hours as two processes sharing
the caches (e.g. ``--methods MMSE-E,MALA-E,DDRM-E,DiffPIR-E --no-report`` and
``--methods DDRM-P,DiffPIR-P --no-report``, then one call without ``--no-report`` that only reads
them). ``python benchmarks/posterior.py --quick``: 8 images, tasks box and sr2, methods MALA-E,
MMSE-E, DDRM-E, DPS-P, 4 draws, budgets 1, 20, 40:
a few minutes on one core (options given explicitly, e.g. ``--n 32``, override these).
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time

import deepinv as dinv
import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from classifier import labels, load_classifier  # noqa: E402
from restoration import (OUT, RAW, TASKS, UNSUPPORTED, read_json, load_nets, make_task, method_param,  # noqa: E402
                         net_id, run_method)

from deepinv_energy import EnergyMMSE, to_denoising_problem  # noqa: E402
from deepinv_energy.data import load_images  # noqa: E402

CACHE = RAW / "posterior"
SAMPLERS = ("MALA-E", "PCcov-E", "Adaptive-E") + tuple(f"{m}-{n}" for n in ("E", "P")
                                                       for m in ("DPS", "DiffPIR", "DDRM", "PiGDM"))
METHODS = ("MMSE-E",) + SAMPLERS
#: the full run's methods, sized to fit 3 hours on 2 cores (docstring); the others by ``--methods``
FULL = ("MMSE-E", "MALA-E", "DDRM-E", "DiffPIR-E", "DDRM-P", "DiffPIR-P")
QUICK = {"n": 8, "n_cal": 8, "draws": 4, "batch": 8, "budgets": "1,20,40", "tasks": "box,sr2",
         "methods": "MALA-E,MMSE-E,DDRM-E,DPS-P"}
#: clean test images used as the reference set of the Fréchet distance (disjoint from those restored)
REF = (5000, 10000)
Z90 = 1.6448536269514722


# ---------------------------------------------------------------------------------------- features
def features(classifier: torch.nn.Module, x: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """(N, 32) penultimate features of the bundled classifier: its ``Sequential`` without the last
    Linear (so the output of the last ReLU)."""
    body = classifier[:-1]
    with torch.no_grad():
        return torch.cat([body(b) for b in x.split(batch)]).double()


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    r"""Fréchet distance between Gaussians fitted to the rows of ``a`` and ``b`` (float64):
    :math:`\|\mu_a - \mu_b\|^2 + \operatorname{tr}(S_a + S_b) - 2 \operatorname{tr}(S_a^{1/2} S_b S_a^{1/2})^{1/2}`
    with symmetric eigen-decompositions (no ``sqrtm``)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu = a.mean(0) - b.mean(0)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(sa)
    ra = (v * np.sqrt(w.clip(min=0))) @ v.T
    m = ra @ sb @ ra
    cross = np.sqrt(np.linalg.eigvalsh((m + m.T) / 2).clip(min=0)).sum()
    return float(mu @ mu + np.trace(sa) + np.trace(sb) - 2 * cross)


def frechet_se(a: np.ndarray, b: np.ndarray, n_boot: int = 100, seed: int = 0) -> float:
    """Bootstrap standard error of :func:`frechet` over the rows of ``a`` (``b`` fixed)."""
    rng = np.random.default_rng(seed)
    return float(np.std([frechet(a[rng.integers(0, len(a), len(a))], b) for _ in range(n_boot)], ddof=1))


# ---------------------------------------------------------------------------------------- one batch
def unobserved(y, physics) -> torch.Tensor | None:
    """(B, C, H, W) bool: pixels the measurement carries no information about (pixel-basis
    problems: inpainting's mask == 0, decimation's off-grid pixels), or None (blur, denoising)."""
    prob = to_denoising_problem(y, physics)
    if prob.cov.basis != "pixel" or prob.observed.all():
        return None
    return ~prob.observed


def _region_stats(v: torch.Tensor, region: torch.Tensor | None) -> tuple[list, list]:
    """Per-image mean and median of ``v`` (B, C, H, W) over all pixels and over ``region``."""
    flat = v.flatten(1)
    allm, allmed = flat.mean(1).tolist(), flat.median(1).values.tolist()
    if region is None:
        return [allm, allmed], [[math.nan] * len(allm), [math.nan] * len(allm)]
    rm, rmed = [], []
    for vi, ri in zip(flat, region.flatten(1)):
        sel = vi[ri]
        rm.append(sel.mean().item() if sel.numel() else math.nan)
        rmed.append(sel.median().item() if sel.numel() else math.nan)
    return [allm, allmed], [rm, rmed]


def run_batch(method, nets, xb, task, start, draws, steps, param, classifier, lab) -> dict:
    """Everything the report needs from one batch of images ``xb`` (test images from ``start``),
    measured with ``make_task(task, xb, start)`` (the measurements of ``restoration.py``).
    ``draws`` > 1: budget and calibration metrics too (the mean of the first k draws for every k)."""
    psnr, ssim = dinv.metric.PSNR(), dinv.metric.SSIM()
    physics, y, noise = make_task(task, xb, start)
    t0 = time.perf_counter()
    if method == "MMSE-E":
        m = EnergyMMSE(nets["energy"], lam_max=param).moments(y, physics)
        mean, var, nfe = m.mean.float().clamp(0, 1), m.variance.float(), 1.0
        xs = mean[None]
        lo, hi, std = mean - Z90 * var.sqrt(), mean + Z90 * var.sqrt(), var.sqrt()
    else:
        with torch.set_grad_enabled(method.split("-")[0] in ("DPS", "PiGDM")):
            xs, nfe, _ = run_method(method, nets, y, physics, noise, draws, steps, param, start)
        xs = xs.detach().float().clamp(0, 1)
    secs = time.perf_counter() - t0
    region = unobserved(y, physics)
    d0 = xs[0]
    with torch.no_grad():
        pred = classifier(d0).argmax(1)
    out = {"n": xb.shape[0], "nfe": nfe, "secs": secs, "draws": xs.shape[0],
           "feat": features(classifier, d0).tolist(), "correct": (pred == lab).float().tolist(),
           "psnr1": psnr(d0, xb).tolist()}
    if draws < 2:  # an image of part 3 only
        return out
    if method != "MMSE-E":
        mean = xs.mean(0)
        var = xs.var(0, unbiased=True)
        lo, hi = torch.quantile(xs, torch.tensor([0.05, 0.95]), dim=0)
        std = xs.std(0, unbiased=True)
        out["budget"] = {str(k): {"psnr": psnr(xs[:k].mean(0), xb).tolist(), "ssim": ssim(xs[:k].mean(0), xb).tolist()}
                         for k in range(1, xs.shape[0] + 1)}
    else:
        out["budget"] = {"0": {"psnr": psnr(mean, xb).tolist(), "ssim": ssim(mean, xb).tolist()}}
    cover = ((xb >= lo) & (xb <= hi)).float()
    z2 = (xb - mean) ** 2 / var.clamp(min=1e-8)
    (out["cover"], _), (out["cover_u"], _) = _region_stats(cover, region)
    (out["z2"], out["z2_med"]), (out["z2_u"], out["z2_med_u"]) = _region_stats(z2, region)
    (out["spread"], _), (out["spread_u"], _) = _region_stats(std, region)
    if start == 0:  # for the figures: 4 draws (MMSE-E: mean and std) of the first two images
        out["shown"] = (torch.stack([mean, std]) if method == "MMSE-E" else xs[:4])[:, :2].tolist()
    return out


def cached_run(task, method, nets, x, lab, args, tuned, classifier, suffix) -> list[dict]:
    """:func:`run_batch` over every batch of ``x``, each read from its cache file when it was
    computed with the same settings."""
    param = args.mmse_lam_max if method == "MMSE-E" else method_param(tuned, task, method)
    folder = CACHE / f"{task}_{method}{suffix}"
    net = net_id(nets, method)
    res = []
    for start in range(0, x.shape[0], args.batch):
        xb = x[start : start + args.batch]
        draws = args.draws if start < args.n_cal else 1
        key = {"param": param, "steps": args.steps, "draws": draws, "batch": args.batch, "n": xb.shape[0],
               "net": net}
        path = folder / f"{start:05d}.json"
        r = read_json(path)
        if r.get("key") != key:
            r = run_batch(method, nets, xb, task, start, draws, args.steps, param, classifier,
                          lab[start : start + args.batch])
            r["key"] = key
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(r))
            print(f"{task:10s} {method:11s} images {start:4d}-{start + xb.shape[0] - 1:4d} x {r['draws']:2d} draws: "
                  f"{r['secs']:.1f} s", flush=True)
        res.append(r)
    return res


# ---------------------------------------------------------------------------------------- aggregation
def _ms(vals) -> tuple[float, float, int]:
    """Mean, standard error and count of the finite values."""
    v = np.asarray([u for u in vals if u is not None and math.isfinite(u)], np.float64)
    if v.size == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan, int(v.size)


def summarize(batches: list[dict], ref_feat: np.ndarray, method: str) -> dict:
    cal = [b for b in batches if "cover" in b]
    cat = lambda k, bs: [v for b in bs for v in b[k]]  # noqa: E731
    s = {"n": sum(b["n"] for b in batches), "n_cal": sum(b["n"] for b in cal),
         "draws": cal[0]["draws"] if cal else 1,
         "nfe": float(np.average([b["nfe"] for b in batches], weights=[b["n"] for b in batches])),
         "secs_per_draw": sum(b["secs"] for b in batches) / sum(b["n"] * b["draws"] for b in batches)}
    for k in ("cover", "cover_u", "z2", "z2_u", "z2_med", "z2_med_u", "spread", "spread_u"):
        s[k] = _ms(cat(k, cal))
    s["budget"] = {}
    for k in (cal[0]["budget"] if cal else {}):
        s["budget"][int(k)] = {m: _ms([v for b in cal for v in b["budget"][k][m]]) for m in ("psnr", "ssim")}
    s["correct"], s["psnr1"] = _ms(cat("correct", batches)), _ms(cat("psnr1", batches))
    feat = np.asarray(cat("feat", batches), np.float64)
    s["fd"], s["fd_se"] = frechet(feat, ref_feat), frechet_se(feat, ref_feat)
    s["shown"] = batches[0].get("shown")
    return s


def exact_reference(k: int, n: int = 200_000, seed: int = 0) -> dict:
    """The calibration estimators applied to EXACT draws: truth and ``k`` draws i.i.d. N(0, 1)
    (Monte Carlo, seeded); ``k = 0``: the exact posterior itself (interval +- 1.645, variance 1)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g, dtype=torch.float64)
    if k == 0:
        return {"cover": float((x.abs() <= Z90).double().mean()), "z2": float((x**2).mean()), "z2_med": float((x**2).median())}
    d = torch.randn(k, n, generator=g, dtype=torch.float64)
    lo, hi = torch.quantile(d, torch.tensor([0.05, 0.95], dtype=torch.float64), dim=0)
    z2 = (x - d.mean(0)) ** 2 / d.var(0, unbiased=True).clamp(min=1e-8)
    return {"cover": float(((x >= lo) & (x <= hi)).double().mean()), "z2": float(z2.mean()), "z2_med": float(z2.median())}


# ---------------------------------------------------------------------------------------- output
def _f(t, fmt="{:.2f}", se=True) -> str:
    m, e, _ = t
    if not math.isfinite(m):
        return "-"
    return fmt.format(m) + (f" ± {fmt.format(e)}" if se and math.isfinite(e) else "")


def summary_rows(S: dict, tasks, methods, args, budgets) -> list[dict]:
    """One row per task and method: the PSNR of the mean of 2 draws (``restoration.py``'s metric;
    ``MMSE-E``: its mean), the best PSNR within the largest budget, the 90 % coverage and its
    distance to what exact draws would give (``exact K draws``; ``MMSE-E``: the exact posterior's
    0.9), and the Fréchet distance of single draws."""
    ref_k, ref_0 = exact_reference(args.draws)["cover"], exact_reference(0)["cover"]
    kmax = max(budgets) // args.steps
    rows = []
    for task in tasks:
        for m in methods:
            s = S.get((task, m))
            if s is None:
                continue
            k2, kb = (0, 0) if m == "MMSE-E" else (2, kmax)
            ref = ref_0 if m == "MMSE-E" else ref_k
            rows.append({"task": task, "method": m, "n_cal": s["n_cal"], "n": s["n"],
                         "psnr2": s["budget"].get(k2, {}).get("psnr"), "psnr_b": s["budget"].get(kb, {}).get("psnr"),
                         "cover": s["cover"], "cover_err": abs(s["cover"][0] - ref), "fd": (s["fd"], s["fd_se"], s["n"])})
    return rows


def _cell(t, fmt) -> str:
    return "-" if t is None else _f(t, fmt)


def summary_markdown(rows, budgets) -> str:
    """The summary table and, per task, the winner of each of the three questions."""
    b = max(budgets)
    L = [f"| task | method | PSNR mean of 2 draws | PSNR at B = {b} | coverage 90 % (all) | FD of single draws |",
         "|---|---|---|---|---|---|"]
    for r in rows:
        L.append(f"| {r['task']} | {r['method']} | {_cell(r['psnr2'], '{:.2f}')} | {_cell(r['psnr_b'], '{:.2f}')} | "
                 f"{_f(r['cover'], '{:.3f}')} | {r['fd'][0]:.4f} ± {r['fd'][1]:.4f} |")
    L += ["", f"Winners (best PSNR at B = {b}; coverage closest to its exact reference; lowest FD):", "",
          f"| task | point estimate at B = {b} | calibration | realism |", "|---|---|---|---|"]
    for task in dict.fromkeys(r["task"] for r in rows):
        rs = [r for r in rows if r["task"] == task]
        best_p = max((r for r in rs if r["psnr_b"]), key=lambda r: r["psnr_b"][0])
        best_c = min(rs, key=lambda r: r["cover_err"])
        best_f = min((r for r in rs if r["method"] != "MMSE-E"), key=lambda r: r["fd"][0])
        L.append(f"| {task} | {best_p['method']} ({best_p['psnr_b'][0]:.2f} dB) | {best_c['method']} "
                 f"({best_c['cover'][0]:.3f}) | {best_f['method']} ({best_f['fd'][0]:.4f}) |")
    return "\n".join(L)


def summary_rst(rows, budgets, caption: str) -> str:
    """The summary table as a reST list-table (included by the docs' benchmark page)."""
    head = ["task", "method", "PSNR mean of 2 draws", f"PSNR at B = {max(budgets)}", "coverage 90 %", "FD"]
    L = [f".. list-table:: {caption}", "   :header-rows: 1", "   :class: compact-table", "",
         "   * - " + head[0]] + [f"     - {h}" for h in head[1:]]
    for r in rows:
        cells = [r["task"], r["method"], _cell(r["psnr2"], "{:.2f}"), _cell(r["psnr_b"], "{:.2f}"),
                 _f(r["cover"], "{:.3f}"), f"{r['fd'][0]:.4f} ± {r['fd'][1]:.4f}"]
        # "-" alone would read as a bullet list inside a list-table
        L += ["   * - " + cells[0]] + [f"     - {'n/a' if c == '-' else c}" for c in cells[1:]]
    return "\n".join(L) + "\n"


def report(S: dict, tasks, methods, args, budgets, floors, halves, cmd) -> str:
    quick = " (quick mode)" if args.quick else ""
    L = [f"# What a posterior sampler is for: estimates at equal cost, calibration, realism{quick}", "",
         f"Generated by `{cmd}` (protocol in the script's docstring). Fashion-MNIST test images, the tasks, "
         "measurements, seeds and tuned hyper-parameters of `restoration.py`, the same images and measurements for "
         f"every method; {args.n} images per task and method (Fréchet distance, accuracy of single draws), the first "
         f"{args.n_cal} of them with {args.draws} draws each (budget and calibration tables), about {args.steps} "
         f"network evaluations (NFE) per draw, {torch.get_num_threads()} CPU thread(s). Every value: mean over "
         "images ± its standard error (Fréchet distance: ± bootstrap standard error over the draws). `-E`: the "
         "energy's Tweedie denoiser; `-P`: the plain denoiser of the same backbone; `MMSE-E`: EnergyMMSE with "
         f"lam_max = {args.mmse_lam_max:g}. DDRM cannot run sr2.", ""]
    if args.quick or args.n < 1000:
        L += [f"**Warning: {args.n} images only.** The Fréchet distance is biased upwards at small n (compare it "
              "with its floor at the same n, not across runs), and with "
              f"{args.draws} draws the calibration references below are far from 0.9 and 1: "
              "these numbers exercise the script, they are not results.", ""]
    rows = summary_rows(S, tasks, methods, args, budgets)
    L += ["## Summary", "",
          f"PSNR (dB) and coverage on the {args.n_cal} calibration images ({args.draws} draws each), FD on {args.n} "
          "images (one draw each), ± standard errors; `PSNR mean of 2 draws` is the metric of `restoration.py`; "
          "`MMSE-E` spends one evaluation in every column. Details in sections 1-3.", "",
          summary_markdown(rows, budgets), ""]
    # 1. budget
    L += ["## 1. Point estimate at equal cost", "",
          f"PSNR (dB) / SSIM of the estimate spending B network evaluations per image, on {args.n_cal} images: "
          "`MMSE-E` spends 1 evaluation at every budget (the one-evaluation posterior mean; it cannot use more); a "
          f"sampler spends B as k = B // {args.steps} draws of {args.steps} evaluations and returns their mean "
          f"(budgets below {args.steps}: `MMSE-E` only). `NFE/draw`: evaluations actually spent per draw "
          "(the adaptive sampler chooses its own); `s/draw`: seconds per image and draw (one process among several "
          "sharing the cores: compare within a table).", ""]
    for task in tasks:
        L += [f"### {task}", "", "| method | " + " | ".join(f"B = {b}" for b in budgets) + " | NFE/draw | s/draw |",
              "|---|" + "---|" * (len(budgets) + 2)]
        for m in methods:
            s = S.get((task, m))
            if s is None:
                continue
            cells = []
            for b in budgets:
                k = 0 if m == "MMSE-E" else b // args.steps
                r = s["budget"].get(k)
                cells.append("-" if r is None else f"{_f(r['psnr'])} / {_f(r['ssim'], '{:.3f}', se=False)}")
            L.append(f"| {m} | " + " | ".join(cells) + f" | {s['nfe']:.0f} | {s['secs_per_draw']:.3f} |")
        L.append("")
    L += ["![PSNR against budget](posterior_budget" + ("_quick" if args.quick else "") + ".png)", ""]
    # 2. calibration
    ref_k, ref_0 = exact_reference(args.draws), exact_reference(0)
    L += ["## 2. Calibration", "",
          f"From the {args.draws} draws of each of {args.n_cal} images (`MMSE-E`: its one-evaluation mean and std). "
          "`coverage`: fraction of pixels whose true value lies in the per-pixel 90 % interval (draws: "
          "empirical 5 % and 95 % quantiles; `MMSE-E`: mean ± 1.645 std); `z2`: mean / median over pixels of "
          "(x - mean)^2 / var (var: the draws' unbiased variance, floored at 1e-8). `all`: every pixel; `unobs`: "
          "the unobserved pixels (inpainting mask == 0, decimation off-grid; none for blur and denoising). "
          f"Goals for an exact Gaussian posterior: coverage 0.9, mean z2 1, median z2 {ref_0['z2_med']:.3f}; the same "
          f"estimators on {args.draws} EXACT draws give coverage {ref_k['cover']:.3f}, mean z2 {ref_k['z2']:.3f}, "
          f"median z2 {ref_k['z2_med']:.3f} (row `exact {args.draws} draws`, Monte Carlo): compare sampler rows with "
          "it, `MMSE-E` with the goals. Coverage far below and z2 far above the reference: over-confident "
          "(under-dispersed) draws. `spread unobs`: per-pixel std of the draws (`MMSE-E`: predicted std) averaged "
          "over the unobserved pixels.", ""]
    for task in tasks:
        L += [f"### {task}", "",
              "| method | coverage all | coverage unobs | z2 mean all | z2 median all | z2 mean unobs | z2 median unobs | spread unobs |",
              "|---|---|---|---|---|---|---|---|",
              f"| exact {args.draws} draws | {ref_k['cover']:.3f} | {ref_k['cover']:.3f} | {ref_k['z2']:.2f} | "
              f"{ref_k['z2_med']:.3f} | {ref_k['z2']:.2f} | {ref_k['z2_med']:.3f} | - |",
              f"| exact posterior (goal) | {ref_0['cover']:.3f} | {ref_0['cover']:.3f} | {ref_0['z2']:.2f} | "
              f"{ref_0['z2_med']:.3f} | {ref_0['z2']:.2f} | {ref_0['z2_med']:.3f} | - |"]
        for m in methods:
            s = S.get((task, m))
            if s is None:
                continue
            f3 = "{:.3f}"
            g3 = "{:.3g}"
            L.append(f"| {m} | {_f(s['cover'], f3)} | {_f(s['cover_u'], f3)} | {_f(s['z2'], g3)} | "
                     f"{_f(s['z2_med'], g3)} | {_f(s['z2_u'], g3)} | {_f(s['z2_med_u'], g3)} | "
                     f"{_f(s['spread_u'], f3)} |")
        L.append("")
    # 3. realism
    L += ["## 3. Realism of single draws", "",
          f"Fréchet distance (FD) between the bundled classifier's 32-d penultimate features of ONE draw per image "
          f"({args.n} images per method and task) and of the clean test images {REF[0]}-{REF[1] - 1}; `floor`: the same "
          f"distance for the {args.n} clean images themselves (what exact posterior draws would get, up to noise); "
          f"the two halves of the test set (5000 images each) are at FD {halves:.4f}. `MMSE-E` enters with its "
          "posterior mean (not a draw: the FD of a mean shows its blur). `acc`: classifier accuracy of the single "
          f"draws (clean images: {floors['acc']:.3f}); `PSNR 1 draw`: PSNR of the same draws (dB); `spread unobs`: as in "
          "part 2.", ""]
    for task in tasks:
        L += [f"### {task}", "", f"| method | FD (n = {args.n}) | floor | acc | PSNR 1 draw | spread unobs |",
              "|---|---|---|---|---|---|"]
        for m in methods:
            s = S.get((task, m))
            if s is None:
                continue
            L.append(f"| {m} | {s['fd']:.4f} ± {s['fd_se']:.4f} | {floors['fd']:.4f} | {_f(s['correct'], '{:.3f}')} | "
                     f"{_f(s['psnr1'])} | {_f(s['spread_u'], '{:.3f}')} |")
        L.append("")
    for task in ("box", "sr2"):
        if task in tasks:
            L += [f"![draws on {task}](posterior_draws_{task}{'_quick' if args.quick else ''}.png)", ""]
    return "\n".join(L)


def budget_figure(S, tasks, methods, budgets, steps, path):
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for m in methods:
            s = S.get((task, m))
            if s is None:
                continue
            if m == "MMSE-E":
                v = s["budget"][0]["psnr"][0]
                line, = ax.plot([1], [v], "k*", ms=10, label=m)
                ax.axhline(v, color="k", ls="--", lw=0.8)
            else:
                bs = [b for b in budgets if b // steps in s["budget"]]
                ax.plot(bs, [s["budget"][b // steps]["psnr"][0] for b in bs], "o-" if m.endswith("-E") else "s--", ms=3,
                        label=m, color=plt.cm.tab20(METHODS.index(m) % 20))
        ax.set_xscale("log")
        ax.set_xlabel("network evaluations per image")
        ax.set_title(task, fontsize=9)
    axes[0][0].set_ylabel("PSNR (dB)")
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draws_figure(S, task, methods, x, batch, path):
    physics, y, _ = make_task(task, x[:batch], 0)
    shown_y = (physics.A_adjoint(y) if task == "sr2" else y)[:2]
    rows = [m for m in methods if (task, m) in S and S[(task, m)]["shown"] is not None]
    fig, axes = plt.subplots(len(rows), 12, figsize=(12 * 0.9, len(rows) * 1.0 + 0.3), squeeze=False)
    for r, m in enumerate(rows):
        shown = torch.tensor(S[(task, m)]["shown"])  # (4 or 2, 2, C, H, W)
        for img in range(2):
            cols = [x[img], shown_y[img]] + list(shown[:, img])
            names = ["truth", "measured"] + (["mean", "std (x4)"] if m == "MMSE-E" else [f"draw {i + 1}" for i in range(4)])
            for c in range(6):
                ax = axes[r][6 * img + c]
                ax.axis("off")
                if c < len(cols):
                    im = cols[c][0].clamp(0, 1) if not (m == "MMSE-E" and c == 3) else (4 * cols[c][0]).clamp(0, 1)
                    ax.imshow(im.numpy(), cmap="gray", vmin=0, vmax=1)
                    if r == 0 or m == "MMSE-E":
                        ax.set_title(names[c], fontsize=6)
        axes[r][0].text(-4, 14, m, fontsize=7, ha="right", va="center")
    fig.suptitle(f"{task}: four draws per method (two images)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="8 images, tasks box and sr2, 4 methods, 4 draws")
    ap.add_argument("--n", type=int, default=1000, help="images per task and method (Fréchet distance)")
    ap.add_argument("--n-cal", type=int, default=32, help="first images that get --draws draws (budget, calibration)")
    ap.add_argument("--draws", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20, help="network evaluations per draw")
    ap.add_argument("--budgets", default="1,20,40,100,320")
    ap.add_argument("--batch", type=int, default=16, help="images per batch (one random mask / motion kernel each)")
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--methods", default=",".join(FULL), help=f"any of {', '.join(METHODS)}")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--mmse-lam-max", type=float, default=1000.0,
                    help="lam_max of MMSE-E (EnergyMMSE's default; benchmarks/mmse.py compares values)")
    ap.add_argument("--no-report", action="store_true", help="only fill the caches (for parallel processes)")
    args = ap.parse_args(argv)
    if args.quick:  # quick defaults, except for the options given on the command line
        given = {a.dest for a in ap._actions for o in a.option_strings for u in argv if u == o or u.startswith(o + "=")}
        for k, v in QUICK.items():
            if k not in given:
                setattr(args, k, v)
        args.n_cal = min(args.n_cal, args.n)
    if args.threads:
        torch.set_num_threads(args.threads)
    tasks = [t for t in args.tasks.split(",") if t]
    methods = [m for m in args.methods.split(",") if m]
    budgets = sorted({int(b) for b in args.budgets.split(",")})
    bad = [m for m in methods if m not in METHODS] + [t for t in tasks if t not in TASKS]
    if bad:
        raise SystemExit(f"unknown tasks/methods {bad}; tasks {TASKS}, methods {METHODS}")
    if not (0 < args.n_cal <= args.n <= REF[0]) or args.n_cal % args.batch:
        raise SystemExit(f"need 0 < --n-cal <= --n <= {REF[0]} and --n-cal a multiple of --batch")
    ks = sorted({b // args.steps for b in budgets if b >= args.steps})
    if args.draws < max(ks + [2]):
        raise SystemExit(f"--draws must be at least 2 and at least the largest budget // steps ({max(ks)})")
    suffix = "_quick" if args.quick else ""
    nets, classifier, tuned = load_nets(methods), load_classifier(), read_json(RAW / "tuned.json")
    nets["energy"].eval()
    xall, laball = load_images("fashion-mnist", "test"), labels("test")
    x, lab = xall[: args.n], laball[: args.n]
    t0 = time.perf_counter()
    raw = {}
    for task in tasks:
        for m in methods:
            if (task, m) not in UNSUPPORTED:
                raw[(task, m)] = cached_run(task, m, nets, x, lab, args, tuned, classifier, suffix)
    print(f"all draws: {time.perf_counter() - t0:.0f} s", flush=True)
    if args.no_report:
        return
    fall = features(classifier, xall).numpy()
    ref = fall[REF[0] : REF[1]]
    with torch.no_grad():
        acc_clean = (classifier(x).argmax(1) == lab).double().mean().item()
    floors = {"fd": frechet(fall[: args.n], ref), "acc": acc_clean}
    halves = frechet(fall[: REF[0]], ref)
    S = {key: summarize(b, ref, key[1]) for key, b in raw.items()}
    cmd = "python benchmarks/posterior.py" + ("" if not argv else " " + " ".join(argv))
    text = report(S, tasks, methods, args, budgets, floors, halves, cmd)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"posterior{suffix}.md").write_text(text)
    (OUT / f"posterior_summary{suffix}.rst").write_text(summary_rst(
        summary_rows(S, tasks, methods, args, budgets), budgets,
        f"PSNR (dB) and 90 % coverage on {args.n_cal} images, FD of single draws on {args.n} images per task"))
    budget_figure(S, tasks, methods, budgets, args.steps, OUT / f"posterior_budget{suffix}.png")
    for task in ("box", "sr2"):
        if task in tasks:
            draws_figure(S, task, methods, x, args.batch, OUT / f"posterior_draws_{task}{suffix}.png")
    print(text)
    print(f"total: {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
