r"""Quality against network evaluations: the restoration benchmark at several budgets.

The methods of ``benchmarks/restoration.py`` (same tasks, test images, seeds, metrics and, for
deepinv's methods, the hyper-parameters tuned there at 20 evaluations: ``raw/tuned.json``) and three
ablations of ours (``PCcov-E``: ``MALA-E`` without the Metropolis step; ``AdaptiveCap-E``: the
adaptive schedule with ``max_decrease=0.3``) run with about 20, 50 and 100 network evaluations
per draw on the first ``--n`` test images; ``AdaptiveDefault-E`` is the adaptive schedule at its
defaults (it chooses its own evaluations, run once, the default marked in the tables). Writes
``benchmarks/results/nfe.md`` (PSNR of the mean of 2 draws, of one draw, classifier accuracy,
time per image) and ``nfe.png`` (PSNR of the mean against NFE, one panel per task). Each
(task, method, budget) is cached in ``raw/nfe_*.json``, so an interrupted run resumes.

Run: ``python benchmarks/nfe.py [--n 32] [--steps 20,50,100]``. With the defaults it also tabulates the
NFE the adaptive schedule needs at equal PSNR of the mean relative to the fixed schedules (PC-E, MALA-E,
PCcov-E). ``nfe_adaptive.md`` is a reduced configuration of that comparison:
``python benchmarks/nfe.py --n 8 --batch 8 --threads 1 --tasks box,gblur-0.05 --methods MMSE-E,PC-E,MALA-E,PCcov-E,Adaptive-E --out nfe_adaptive``.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from classifier import labels, load_classifier  # noqa: E402
from restoration import (ABLATIONS, METHODS, OUT, RAW, TASKS, UNSUPPORTED, read_json, cached_evaluate,  # noqa: E402
                         load_nets, method_param)

from deepinv_energy.data import load_images  # noqa: E402

#: methods whose cost does not depend on the budget: run once (in the figure: a horizontal line for
#: the one-evaluation mean, a point at its own NFE for a sampler at its defaults)
FIXED_NFE = ("MMSE-E", "AdaptiveDefault-E")
#: our samplers on fixed geometric schedules, against which the adaptive schedule's NFE is compared
FIXED_SCHEDULES = ("PC-E", "MALA-E", "PCcov-E")
DEFAULT_METHODS = ("MMSE-E", "PC-E", "MALA-E", "PCcov-E", "Adaptive-E", "AdaptiveCap-E", "AdaptiveDefault-E",
                   "DiffPIR-E", "DDRM-E", "PiGDM-E", "DDRM-P", "PiGDM-P")


def nfe_to_reach(points, target):
    """Smallest NFE at which a (nfe, psnr) curve first reaches ``target`` dB (linear in log NFE between
    budget points); ``(value, qualifier)``: ``"<="`` if already reached at the first point, ``None`` if never."""
    pts = sorted(points)
    if pts[0][1] >= target:
        return pts[0][0], "<="
    for (n0, p0), (n1, p1) in zip(pts[:-1], pts[1:]):
        if p0 < target <= p1:
            t = (target - p0) / (p1 - p0)
            return math.exp(math.log(n0) + t * (math.log(n1) - math.log(n0))), ""
    return None, None


def ratio_table(results, task, methods, budgets):
    """Markdown rows: for each adaptive budget point, the NFE the best fixed schedule needs for the same PSNR of the mean."""
    fixed = [m for m in methods if m in FIXED_SCHEDULES and results.get((task, m, budgets[0]))]
    rows = []
    for method in [m for m in methods if m.startswith("Adaptive")]:
        for steps in budgets:
            r = results.get((task, method, steps))
            if r is None:
                continue
            best = None
            for f in fixed:
                v, q = nfe_to_reach([(results[(task, f, s)]["nfe"], results[(task, f, s)]["psnr"]) for s in budgets], r["psnr"])
                if v is not None and (best is None or v < best[0]):
                    best = (v, q, f)
            if best is None:
                cell, ratio = "not reached", "-"
            else:
                cell = f"{best[1]}{best[0]:.0f} ({best[2]})"
                ratio = f"{'>=' if best[1] == '<=' else ''}{r['nfe'] / best[0]:.2f}"
            label = "default" if method in FIXED_NFE else steps
            rows.append(f"| {method} | {label} | {r['nfe']:.0f} | {r['psnr']:.2f} | {cell} | {ratio} |")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--draws", type=int, default=2)
    ap.add_argument("--steps", default="20,50,100")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tasks", default="box,gblur-0.05")
    ap.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default="nfe", help="results name: writes benchmarks/results/OUT.md and OUT.png")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    tasks, methods = args.tasks.split(","), args.methods.split(",")
    budgets = [int(s) for s in args.steps.split(",")]
    bad = [m for m in methods if m not in METHODS + ABLATIONS] + [t for t in tasks if t not in TASKS]
    if bad:
        raise SystemExit(f"unknown tasks/methods {bad}; tasks {TASKS}, methods {METHODS + ABLATIONS}")
    nets = load_nets(methods)
    classifier, tuned = load_classifier(), read_json(RAW / "tuned.json")
    x, lab = load_images("fashion-mnist", "test", limit=args.n), labels("test")[: args.n]
    results = {}
    for task in tasks:
        for method in methods:
            if (task, method) in UNSUPPORTED:
                continue
            param = method_param(tuned, task, method)
            for steps in budgets[:1] if method in FIXED_NFE else budgets:
                r = cached_evaluate(RAW / f"nfe_{task}_{method}_{steps}.json", method, nets, x, task, args.draws, steps,
                                    param, args.batch, classifier, lab)
                results[(task, method, steps)] = r
    L = ["# Quality against network evaluations", "",
         f"Generated by `python benchmarks/nfe.py`: the first {args.n} Fashion-MNIST test images of the restoration "
         f"benchmark, {args.draws} draws per image, about {', '.join(map(str, budgets))} network evaluations (NFE) per "
         "draw; deepinv's methods keep the hyper-parameters tuned at 20 NFE (`raw/tuned.json`). Each cell: PSNR of "
         "the mean (dB) / PSNR of one draw (dB) / classifier accuracy on the mean; last column: seconds per image "
         "(all draws) at the largest budget. The figure uses the NFE actually spent (the adaptive schedule chooses "
         "its own). Ablations: `PCcov-E` is `MALA-E` without the Metropolis step (covariance predictor, one "
         "unadjusted Langevin step per level), `AdaptiveCap-E` is `Adaptive-E` with its step capped "
         "(`max_decrease=0.3`, so at least about 46 evaluations). `MMSE-E` is the one-evaluation posterior "
         "mean (`EnergyMMSE`): its cost does not depend on the budget (dotted line in the figure). The adaptive "
         "schedule's tolerance at a budget of s evaluations is 3 / s (`restoration.py`), far above its default "
         "(0.00625); `AdaptiveDefault-E` is `AdaptiveSampler` at its defaults (the default tolerance and step "
         "cap): it chooses its own evaluations (its row's NFE; a star in the figure) and is marked `default` "
         "in the NFE-at-equal-error tables.", ""]
    if args.n < 32 or tuple(methods) != DEFAULT_METHODS or tasks != ["box", "gblur-0.05"] or args.out != "nfe":
        L[2:2] = [f"**Reduced configuration** (`python benchmarks/nfe.py {' '.join(argv if argv is not None else sys.argv[1:])}`): "
                  f"{args.n} images, methods {', '.join(methods)}; the full run (32 images, every method) is the default.", ""]
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        L += [f"## {task}", "", "| method | " + " | ".join(f"~{s} NFE" for s in budgets) + " | s/img at ~"
              f"{budgets[-1]} NFE |", "|---|" + "---|" * (len(budgets) + 1)]
        for method in methods:
            rs = [results.get((task, method, s)) for s in budgets]
            if rs[0] is None:
                continue
            if method in FIXED_NFE:
                r = rs[0]
                L.append(f"| {method} ({r['nfe']:.0f} NFE) | {r['psnr']:.2f} / {r['psnr1']:.2f} / {r['correct']:.2f} | "
                         + "- | " * (len(budgets) - 1) + f"{r['time']:.2f} |")
                if r["nfe"] > 1:  # a sampler at its defaults: one point at the evaluations it chose
                    ax.plot([r["nfe"]], [r["psnr"]], "*", ms=11, label=f"{method} (default, {r['nfe']:.0f} NFE)")
                else:
                    ax.axhline(r["psnr"], color="k", ls=":", lw=1.2, label=f"{method} ({r['nfe']:.0f} NFE)")
                continue
            L.append(f"| {method} | " + " | ".join(f"{r['psnr']:.2f} / {r['psnr1']:.2f} / {r['correct']:.2f}" for r in rs)
                     + f" | {rs[-1]['time']:.2f} |")
            ax.plot([r["nfe"] for r in rs], [r["psnr"] for r in rs], "o-" if method.endswith("-E") else "s--",
                    label=method)
        L.append("")
        rows = ratio_table(results, task, methods, budgets)
        if rows:
            L += [f"NFE at equal error ({task}): for each budget of the adaptive schedule, the NFE the best fixed schedule "
                  f"({', '.join(m for m in methods if m in FIXED_SCHEDULES)}) needs to reach the same PSNR of the mean "
                  "(linear in log NFE between its budgets; `<=`: already reached at its smallest budget, so the ratio is a "
                  "lower bound), and the ratio adaptive / fixed (below 1: the adaptive schedule needs fewer evaluations).", "",
                  "| method | budget | NFE | PSNR mean | fixed schedule NFE at equal PSNR | ratio |", "|---|---|---|---|---|---|"]
            L += rows + [""]
        ax.set(title=task, xlabel="network evaluations per draw", ylabel="PSNR of the mean (dB)", xscale="log")
        ax.set_xticks(budgets, [str(b) for b in budgets])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(OUT / f"{args.out}.png", dpi=110)
    L += [f"![PSNR against NFE]({args.out}.png)", ""]
    (OUT / f"{args.out}.md").write_text("\n".join(L))
    print("\n".join(L))


if __name__ == "__main__":
    main()
