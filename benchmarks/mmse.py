r"""The one-evaluation posterior mean (:class:`~deepinv_energy.EnergyMMSE`) on Fashion-MNIST.

For an exact energy, Tweedie's formula at the measurement's covariance is :math:`\mathbb{E}[x \mid y]`
of the inverse problem: the MSE-optimal restoration from ONE network evaluation, and it only
improves as the variance ``lam_max`` given to unobserved coefficients grows. This script measures,
for each model, on the first ``--n`` test images and the tasks of ``benchmarks/restoration.py``
(same seeds; with ``--batch 16`` the same measurements, since random masks and motion kernels
are drawn per batch of images):

- PSNR of the one-evaluation mean for ``lam_max`` in {1, 10, 100, 1000} (1000 is the default);
- the fraction of negative predicted posterior variances (at the default ``lam_max``), overall and
  split by site: unobserved coefficients, and (pixel basis) observed background / object pixels;
- the PSNR of DDRM driven by the same network's Tweedie denoiser (``EnergyDenoiser``), 20 steps,
  mean of 2 draws, its ``eta`` tuned per task as in ``restoration.md`` (DDRM cannot run ``sr2``).

Run: ``python benchmarks/mmse.py [--n 64] [--models "NAME=PATH,..."]`` (the bundled model is always
included). Writes ``benchmarks/results/mmse.md`` and ``mmse.png``.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from classifier import labels, load_classifier  # noqa: E402
from restoration import OUT, RAW, TASKS, UNSUPPORTED, read_json, evaluate, make_task, method_param  # noqa: E402

from deepinv_energy import EnergyMMSE, EnergyUNet  # noqa: E402
from deepinv_energy.data import load_images  # noqa: E402

LAM_MAXES = (1.0, 10.0, 100.0, 1000.0)
SITES = ("unobserved", "background", "object")  # where negative variances are counted separately
BACKGROUND = 0.02  # an observed pixel whose clean value is below this is background


@torch.no_grad()
def one_evaluation(model, x, task: str, lam_max: float, batch: int, seed: int = 0) -> dict:
    """PSNR of the one-evaluation mean (mean over images of per-image PSNR, as ``restoration.py``)
    and the fraction of negative predicted variances."""
    import deepinv as dinv

    psnr = dinv.metric.PSNR()
    mmse = EnergyMMSE(model, lam_max=lam_max)
    vals, neg, total = [], 0, 0
    sites = {k: [0, 0] for k in SITES}  # negative count, coefficient count
    for i in range(0, x.shape[0], batch):
        xb = x[i : i + batch]
        physics, y, _ = make_task(task, xb, seed + i)
        m = mmse.moments(y, physics)
        vals.append(psnr(m.mean.clamp(0, 1), xb))
        neg += int(m.negative.sum())
        total += m.coef_variance.numel()
        lam = mmse.problem(y, physics).cov.variances.to(m.coef_variance).expand_as(m.coef_variance)
        unobserved = lam >= 0.5 * lam_max
        masks = {"unobserved": unobserved}
        if m.basis == "pixel":  # split the observed pixels by the clean image: background or not
            masks["background"] = ~unobserved & (xb < BACKGROUND)
            masks["object"] = ~unobserved & (xb >= BACKGROUND)
        for k, mask in masks.items():
            sites[k][0] += int((m.coef_variance[mask] < 0).sum())
            sites[k][1] += int(mask.sum())
    out = {"psnr": torch.cat(vals).mean().item(), "neg": neg / total}
    out.update({f"neg_{k}": (n / t if t else None) for k, (n, t) in sites.items()})
    return out


def figure(results: dict, ddrm: dict, tasks, path: pathlib.Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(2.6 * len(tasks), 3.0), sharex=True)
    for ax, task in zip(axes, tasks):
        for k, (name, res) in enumerate(results.items()):
            line, = ax.plot(LAM_MAXES, [res[(task, L)]["psnr"] for L in LAM_MAXES], "o-", label=f"{name}: one evaluation")
            if (name, task) in ddrm:
                ax.axhline(ddrm[(name, task)], color=line.get_color(), ls="--", lw=1, label=f"{name}: DDRM-E (40 evals)")
        ax.set_xscale("log")
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("lam_max")
    axes[0].set_ylabel("PSNR (dB)")
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64,
                    help="images per measurement batch; random masks and motion kernels are drawn per batch, so "
                         "--batch 16 gives the measurements of restoration.md (the default, 64, those of mmse.md)")
    ap.add_argument("--models", default="", help="comma-separated NAME=PATH energy models besides the bundled one")
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--no-ddrm", action="store_true", help="skip the DDRM-E reference")
    ap.add_argument("--no-bundled", action="store_true", help="only the --models")
    ap.add_argument("--out", default="mmse", help="report name in benchmarks/results/ (NAME.md, NAME.png)")
    args = ap.parse_args(argv)
    paths = dict(([] if args.no_bundled else [("bundled", "fashion-mnist-28")])
                 + [tuple(m.split("=", 1)) for m in filter(None, args.models.split(","))])
    models = {name: EnergyUNet.from_pretrained(path) for name, path in paths.items()}
    tasks = args.tasks.split(",")
    x = load_images("fashion-mnist", "test", limit=args.n)
    classifier, lab = load_classifier(), labels("test")[: args.n]
    tuned = read_json(RAW / "tuned.json")
    results, ddrm = {}, {}
    for name, model in models.items():
        model.eval()
        results[name] = {}
        for task in tasks:
            for lam_max in LAM_MAXES:
                results[name][(task, lam_max)] = r = one_evaluation(model, x, task, lam_max, args.batch)
                print(f"{name:10s} {task:10s} lam_max {lam_max:6g}: {r['psnr']:.2f} dB, negative {r['neg']:.3f}", flush=True)
            if not args.no_ddrm and (task, "DDRM-E") not in UNSUPPORTED:
                r, _ = evaluate("DDRM-E", {"energy": model, "plain": None}, x, task, 2, 20,
                                method_param(tuned, task, "DDRM-E"), 0, args.batch, classifier, lab)
                ddrm[(name, task)] = r["psnr"]
                print(f"{name:10s} {task:10s} DDRM-E: {r['psnr']:.2f} dB", flush=True)
    lines = [
        "# The one-evaluation posterior mean (EnergyMMSE) against lam_max, and DDRM with the same network",
        "",
        f"Generated by `{' '.join(['python benchmarks/mmse.py'] + list(argv if argv is not None else sys.argv[1:]))}` (protocol in its docstring). {args.n} Fashion-MNIST test images, "
        "the tasks and measurements of `restoration.py`. PSNR in dB (mean over images); `negative`: fraction of "
        "negative predicted posterior variances at lam_max = 1000, then the same fraction among the unobserved "
        f"coefficients (variance lam_max) and, in the pixel basis, among the observed pixels whose clean value is "
        f"below {BACKGROUND} (`bg`) or not (`obj`); DDRM-E: 20 steps, mean of 2 draws, the same network's Tweedie denoiser.",
        "",
        "| model | task | " + " | ".join(f"lam_max {L:g}" for L in LAM_MAXES)
        + " | negative | unobserved / bg / obj | DDRM-E | one eval - DDRM-E |",
        "|---|---|" + "---|" * len(LAM_MAXES) + "---|---|---|---|",
    ]
    for name, res in results.items():
        for task in tasks:
            cells = " | ".join(f"{res[(task, L)]['psnr']:.2f}" for L in LAM_MAXES)
            d = ddrm.get((name, task))
            gap = f"{res[(task, 1000.0)]['psnr'] - d:+.2f}" if d is not None else "-"
            dd = f"{d:.2f}" if d is not None else "-"
            r = res[(task, 1000.0)]
            split = " / ".join("-" if r[f"neg_{k}"] is None else f"{r[f'neg_{k}']:.2f}" for k in SITES)
            lines.append(f"| {name} | {task} | {cells} | {r['neg']:.3f} | {split} | {dd} | {gap} |")
    lines += ["", "Models: " + "; ".join(f"`{n}` = `{p}`" for n, p in paths.items()) + ".", ""]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{args.out}.md").write_text("\n".join(lines))
    figure(results, ddrm, tasks, OUT / f"{args.out}.png")
    print((OUT / f"{args.out}.md").read_text())


if __name__ == "__main__":
    main()
