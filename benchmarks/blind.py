r"""Blind estimation of the degradation operator on Fashion-MNIST test images.

Writes ``benchmarks/results/blind.md`` and ``blind.png`` (evidence curves). For each model and
task, ``--n`` held-out test images (default 200; the first images of the test split) are
degraded with operator parameters drawn at random (fixed seeds), and the grid posterior of
:class:`~deepinv_energy.BlindEstimator` (uniform prior on the grid) gives the estimate (posterior
mean; MAP for positions) and a 90 % equal-tailed credible interval:

- ``blur 0.01`` / ``blur 0.05``: Gaussian blur width, true widths uniform in [0.5, 2.5] px,
  grid 0.3 .. 3.0 step 0.1, known noise 0.01 / 0.05 (:class:`~deepinv_energy.GaussianBlurFamily`);
- ``noise``: denoising with unknown noise level, true levels log-uniform in [0.02, 0.3], grid of
  30 log-spaced levels in [0.01, 0.5] (:class:`~deepinv_energy.DenoisingFamily`);
- ``box``: position of a missing 10x10 box (noise 0.01 outside, noise fill N(0, 0.5^2) inside),
  true corner uniform on the even positions, grid: the 10 x 10 even positions
  (:class:`~deepinv_energy.BoxInpaintingFamily`);
- ``motion``: straight motion blur, true length uniform in [2, 8] px and angle uniform in
  [0, 180), grid lengths 1 .. 9 step 1 x angles 0 .. 165 step 15, noise 0.01
  (:class:`~deepinv_energy.MotionBlurFamily`).
- ``noise 0.1-0.3``: the ``noise`` task for the levels where it fails, true levels log-uniform in
  [0.1, 0.3], with a grid that stops 2x below them (30 log-spaced levels in [0.05, 0.5]): the
  failure comes from evaluating the energy at variances far below the noise present.

Metrics: absolute and relative error of the estimate, fraction within 10 % (within 1 px for the
box, within 15 degrees for the angle), coverage of the 90 % interval (fraction of truths inside
it; on a grid the interval is conservative) and its mean width, time per estimate; for the
real-valued parameters, the same per quintile of the true value.

Models: the bundled model, and the pair ``w = 1`` / ``w = 0`` trained identically for 742 steps
(same seed, data order and noise; ``w = 0`` drops the covariance-score term) to test the paper's
claim that the covariance term is what makes evidences usable.

Run: ``python benchmarks/blind.py [--n 200] [--models bundled,w1-742,w0-742] [--threads 2]``. Results
are cached per model in ``raw/blind_<model>.json`` (keyed by the weights and ``--n``), so
``--tasks`` reruns some tasks and keeps the others.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import time

import torch

from deepinv_energy import BlindEstimator, BoxInpaintingFamily, DenoisingFamily, EnergyUNet, GaussianBlurFamily, MotionBlurFamily
from deepinv_energy.data import load_images
from restoration import net_id  # noqa: E402  (benchmarks/ is on the path when run as a script)

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
WEIGHTS = ROOT / "benchmarks" / "weights"
MODELS = {
    "bundled": "fashion-mnist-28",
    "w1-742": str(WEIGHTS / "energy-w1-742.json"),
    "w0-742": str(WEIGHTS / "energy-w0-742.json"),
}
SHAPE = (1, 28, 28)
F64 = torch.float64


def tasks(n: int) -> dict:
    """Task name -> (family, true parameters (n,) each, estimated parameter names)."""
    g = torch.Generator().manual_seed(123)
    u = lambda: torch.rand(n, generator=g, dtype=F64)  # noqa: E731
    out = {}
    for s in (0.01, 0.05):
        fam = GaussianBlurFamily(SHAPE, widths=torch.arange(3, 31, dtype=F64) / 10, noise=s)
        out[f"blur {s}"] = (fam, {"width": 0.5 + 2 * u(), "noise": torch.full((n,), s, dtype=F64)}, ["width"])
    fam = DenoisingFamily(SHAPE, noise=torch.logspace(math.log10(0.01), math.log10(0.5), 30, dtype=F64))
    out["noise"] = (fam, {"noise": 0.02 * 15 ** u()}, ["noise"])
    pos = torch.arange(0, 19, 2, dtype=F64)
    fam = BoxInpaintingFamily(SHAPE, sizes=[10], tops=pos, lefts=pos, noise=0.01)
    pick = lambda: pos[torch.randint(0, len(pos), (n,), generator=g)]  # noqa: E731
    out["box"] = (fam, {"size": torch.full((n,), 10.0, dtype=F64), "top": pick(), "left": pick(),
                        "noise": torch.full((n,), 0.01, dtype=F64)}, ["top", "left"])
    fam = MotionBlurFamily(SHAPE, lengths=torch.arange(1, 10, dtype=F64), angles=torch.arange(0, 180, 15, dtype=F64), noise=0.01)
    out["motion"] = (fam, {"length": 2 + 6 * u(), "angle": 180 * u(), "noise": torch.full((n,), 0.01, dtype=F64)},
                     ["length", "angle"])
    fam = DenoisingFamily(SHAPE, noise=torch.logspace(math.log10(0.05), math.log10(0.5), 30, dtype=F64))
    out["noise 0.1-0.3"] = (fam, {"noise": 0.1 * 3 ** u()}, ["noise"])
    return out


def run_task(model, family, truth, names, x, seed: int, batch: int = 128):
    y = family.measure(x, truth, generator=torch.Generator().manual_seed(seed)).float()
    est = BlindEstimator(model, family, batch_size=batch)
    t0 = time.perf_counter()
    post = est.posterior(y)
    secs = (time.perf_counter() - t0) / len(x)
    res = {"time": secs}
    for name in names:
        t = truth[name]
        if name in ("top", "left"):
            e = post.map()[name]
        else:
            e = post.mean(name)
        lo, hi = post.credible_interval(name, 0.9)
        if name == "angle":  # modulo 180; the mean of an angle is ill-defined: use the MAP
            e = post.map()[name]
            err = ((e - t + 90) % 180 - 90).abs()
            ok = err <= 15
            rel = err / 180
            cover = torch.full_like(err, float("nan"))
        else:
            err = (e - t).abs()
            rel = err / t.abs().clamp_min(1e-12)
            ok = err <= 1 if name in ("top", "left") else rel <= 0.1
            # grid cells: a grid value stands for the values closer to it than to its neighbours
            lo_edge, hi_edge = _cell_edges(post.theta[name], lo, hi)
            cover = ((t >= lo_edge) & (t <= hi_edge)).double()
        res[name] = {"abs": err.mean().item(), "rel": rel.mean().item(), "ok": ok.double().mean().item(),
                     "cover": cover.mean().item(), "width": (hi - lo).mean().item()}
        if name not in ("top", "left", "angle"):
            res[name]["bins"] = _by_truth(t, e, ok)
    return res, post, y


def _by_truth(t: torch.Tensor, e: torch.Tensor, ok: torch.Tensor, k: int = 5) -> list:
    """Per quintile of the true value: its range, the median of estimate / truth, the fraction within 10 %."""
    order = torch.argsort(t)
    out = []
    for idx in order.tensor_split(k):
        out.append({"lo": t[idx].min().item(), "hi": t[idx].max().item(),
                    "median_ratio": (e[idx] / t[idx]).median().item(), "ok": ok[idx].double().mean().item()})
    return out


def _cell_edges(values: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor):
    """Lower edge of the grid cell of ``lo`` and upper edge of the cell of ``hi`` (midpoints to the neighbours)."""
    v = torch.unique(values)
    mid = (v[1:] + v[:-1]) / 2
    lower = torch.cat([v[:1] - (mid[:1] - v[:1]), mid])
    upper = torch.cat([mid, v[-1:] + (v[-1:] - mid[-1:])])
    return lower[torch.searchsorted(v, lo)], upper[torch.searchsorted(v, hi)]


def figure(curves: dict, path: pathlib.Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(next(iter(curves.values()))["truth"])
    fig, axes = plt.subplots(1, k, figsize=(3.4 * k, 2.8), squeeze=False)
    for i, ax in enumerate(axes[0]):
        for name, c in curves.items():
            lp = c["log_post"][i]
            ax.plot(c["grid"], (lp - lp.max()).numpy(), "-", label=name)
        ax.axvline(next(iter(curves.values()))["truth"][i], color="k", ls="--", lw=0.8)
        ax.set_ylim(-300, 10)
        ax.set_xlabel("blur width (px)")
        ax.set_title(f"test image {i}")
    axes[0][0].set_ylabel("log evidence (max = 0)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle("Gaussian blur, noise 0.01: normalized evidences vs width (dashed: truth)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(results: dict, n: int, threads: int, meta: dict) -> str:
    L = ["# Blind estimation of the operator (Fashion-MNIST test split)", "",
         f"Generated by `python benchmarks/blind.py --n {n}` ({threads} CPU threads). {n} test images per task; "
         "see the script's docstring for the protocol. Estimate: posterior mean (MAP for box positions and "
         "angles). `within`: fraction of estimates within 10 % (1 px for positions, 15 degrees for angles). "
         "`coverage`: fraction of truths inside the 90 % credible interval (its end points read as grid cells, i.e. extended to the midpoints with their outer neighbours).", "",
         "Models: " + "; ".join(f"`{k}`: {v}" for k, v in meta.items()), "",
         "| task | parameter | model | abs error | rel error | within | 90 % coverage | interval width | s / estimate |",
         "|---|---|---|---|---|---|---|---|---|"]
    order = [t for t in tasks(1) if any(t in per for per in results.values())]
    for task in order:
        for mname, per in results.items():
            r = per.get(task)
            if r is None:
                continue
            for p, v in r.items():
                if p == "time":
                    continue
                cov = "n/a" if math.isnan(v["cover"]) else f"{v['cover']:.2f}"
                L.append(f"| {task} | {p} | {mname} | {v['abs']:.3g} | {v['rel']:.3f} | {v['ok']:.2f} | {cov} | "
                         f"{v['width']:.3g} | {r['time']:.2f} |")
    L += ["", "## By true value", "",
          "Real-valued parameters, per quintile of the true value (40 images each at the default `--n`): "
          "median of estimate / truth, and the fraction within 10 % (`within`).", "",
          "| task | parameter | model | " + " | ".join(f"quintile {i + 1}" for i in range(5)) + " |",
          "|---|---|---|" + "---|" * 5]
    for task in order:
        for mname, per in results.items():
            for p, v in (per.get(task) or {}).items():
                if p == "time" or "bins" not in v:
                    continue
                L.append(f"| {task} | {p} | {mname} | " + " | ".join(
                    f"{b['lo']:.3g}-{b['hi']:.3g}: {b['median_ratio']:.2f}, within {b['ok']:.2f}" for b in v["bins"]) + " |")
    L += ["", "![evidence curves](blind.png)", ""]
    return "\n".join(L)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--models", default="bundled,w1-742,w0-742")
    ap.add_argument("--tasks", default=",".join(tasks(1)))
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import json

    x = load_images("fashion-mnist", "test", limit=args.n)
    all_tasks = tasks(args.n)
    selected = [t for t in args.tasks.split(",") if t]
    raw = OUT / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for mname in args.models.split(","):  # each model's results are cached: run models in separate calls
        model = EnergyUNet.from_pretrained(MODELS[mname])
        path = MODELS[mname] if mname != "bundled" else ROOT / "deepinv_energy" / "weights" / "fashion-mnist-28.json"
        md = json.load(open(path))["metadata"]
        entry = {"meta": f"step {md.get('step')}, w = {md.get('train_config', {}).get('w_cov')}", "n": args.n,
                 "net": net_id({"energy": model}, "E"), "threads": torch.get_num_threads(), "results": {}, "curves": None}
        cache = raw / f"blind_{mname}.json"
        old = json.loads(cache.read_text()) if cache.exists() else {}
        if old.get("n") == entry["n"] and old.get("net") == entry["net"]:  # same weights and images: keep other tasks
            entry["results"], entry["curves"] = old["results"], old["curves"]
        for task in selected:
            family, truth, names = all_tasks[task]
            res, post, _ = run_task(model, family, truth, names, x, seed=1000 + list(all_tasks).index(task))
            entry["results"][task] = res
            print(mname, task, res, flush=True)
            if task == "blur 0.01":
                entry["curves"] = {"grid": post.theta["width"].tolist(), "log_post": post.log_evidence[:4].tolist(),
                                   "truth": truth["width"][:4].tolist()}
        cache.write_text(json.dumps(entry))
    entries = {m: json.loads((raw / f"blind_{m}.json").read_text()) for m in MODELS if (raw / f"blind_{m}.json").exists()}
    results = {m: e["results"] for m, e in entries.items()}
    meta = {m: e["meta"] for m, e in entries.items()}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "blind.md").write_text(report(results, args.n, torch.get_num_threads(), meta))
    curves = {m: {"grid": e["curves"]["grid"], "log_post": torch.tensor(e["curves"]["log_post"]), "truth": e["curves"]["truth"]}
              for m, e in entries.items() if e["curves"]}
    if curves:
        figure(curves, OUT / "blind.png")
    print((OUT / "blind.md").read_text())


if __name__ == "__main__":
    main()
