r"""The decisive experiment: is the learned energy normalized for every covariance?

Trains two small :class:`~deepinv_energy.models.unet.EnergyUNet` on samples of a known
1x16x16 Gaussian mixture (``"gmm:1,16,16,4"``: four components with rank-two-plus-floor,
non-diagonal covariances, see :func:`deepinv_energy.data.mixture_parameters`), one with the
covariance-score term (``w = 1``) and one without (``w = 0``), identical otherwise (same
seed, data order, noise, steps). Both are normalized the same way (identity 4: one constant per
basis from the large-noise limit). Then, on held-out draws of the mixture and covariances drawn
from every family (the training families AND the held-out ``motion_blur`` and ``bands``), it
compares the learned energy with the exact one, :math:`U^\star(y, \Sigma) = -\log
\sum_k w_k \mathcal{N}(y; \mu_k, C_k + \Sigma)`, in nats per dimension:

- ``abs``: mean :math:`|U - U^\star| / d` with the model's own normalization (no fitting);
- ``offset-fixed``: the same after subtracting the single best constant (the median of
  :math:`U - U^\star` over everything), i.e. the error that no choice of constant removes;
- ``diff``: mean :math:`|\Delta U - \Delta U^\star| / d` for energy DIFFERENCES at the same
  :math:`y` between the covariance that generated it and the same covariance with every variance
  scaled by :math:`e^\delta`, :math:`\delta \sim U[-1, 1]` (noise level x0.6 .. x1.65): what blind
  estimation compares. (Differences to an unrelated covariance of the family are useless as a
  test: with variances down to 1e-9 the exact energy of a mismatched covariance reaches 1e9 nats.)

Noisy inputs :math:`y = x + \Sigma^{1/2} z` use the covariance being evaluated. Levels are drawn
as in training (log-uniform over 1e-9..1e3, half of them in the useful range).

Run: ``python benchmarks/normalization.py`` (trains into ``runs/normalization/`` if needed,
resumable, ~20 min per model on one CPU core; ``--steps`` to change). Writes
``benchmarks/results/normalization.md``.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import time

import torch

from deepinv_energy import Covariance
from deepinv_energy.data import load_images, mixture_energy
from deepinv_energy.training import CovarianceDistribution
from deepinv_energy.training.distribution import ALL_FAMILIES, DEFAULT_HOLDOUT, HARTLEY_FAMILIES, PIXEL_FAMILIES
from deepinv_energy.training.trainer import TrainConfig, Trainer

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
SPEC = (1, 16, 16, 4, 0)  # C, H, W, K, seed
DATA = "gmm:" + ",".join(map(str, SPEC)) + ",20000"


def config(w_cov: float, steps: int, run_dir: pathlib.Path, loss_weight: str = "none",
           input_scale: str = "whiten", p_unobserved: float = 0.0) -> TrainConfig:
    name = f"w{w_cov:g}" + ("" if loss_weight == "none" else f"-{loss_weight}") + (
        "" if input_scale == "whiten" else f"-{input_scale}") + ("" if not p_unobserved else f"-unobs{p_unobserved:g}")
    return TrainConfig(
        data=DATA, out=str(run_dir / name), steps=steps, batch_size=64, lr=5e-4, warmup=200,
        schedule="cosine", width=16, depth=2, w_cov=w_cov, loss_weight=loss_weight, input_scale=input_scale,
        p_unobserved=p_unobserved, ckpt_every=100, log_every=20,
        seed=0, threads=1, norm_images=2000,
    )


def train_model(cfg: TrainConfig, progress: bool = True):
    tr = Trainer(cfg)
    tr.try_resume()
    t0 = time.time()
    tr.fit(progress=progress)
    return tr, time.time() - t0


FAMILY_BASES = [(f, b) for b in ("pixel", "hartley") for f in ALL_FAMILIES
                if f in (PIXEL_FAMILIES if b == "pixel" else HARTLEY_FAMILIES)]


@torch.no_grad()
def evaluate(model, exact, x, seed: int = 1, shift: float = 1.0) -> list:
    """Per (family, basis): learned and exact energies (float64 for the exact one) at noisy ``x``.

    Returns rows with ``U``/``E`` at ``(y, cov)`` and ``U2``/``E2`` at ``(y, cov * e^delta)``,
    ``delta ~ U[-shift, shift]``, and the mean log10-level of ``cov``.
    """
    rows = []
    dist_seed = seed
    for fam, basis in FAMILY_BASES:
        dist = CovarianceDistribution(families=[fam])
        g = torch.Generator().manual_seed(dist_seed)
        dist_seed += 1
        n = x.shape[0]
        cov = dist.sample_basis(basis, n, x.shape[1:], g)
        delta = shift * (2 * torch.rand(n, 1, 1, 1, generator=g) - 1)
        cov2 = Covariance(basis, cov.log_var + delta)
        y = x + cov.sample(g)
        out = {"family": fam, "basis": basis, "level": cov.log_var.mean((1, 2, 3)) / math.log(10)}
        for key, c in (("", cov), ("2", cov2)):
            out["U" + key] = model.energy(y, c).double()
            out["E" + key] = exact.energy(y.double(), c.to(torch.float64))
        rows.append(out)
    return rows


@torch.no_grad()
def mismatch(model, exact, x, deltas=(-4.6, -2.3, 2.3, 4.6), seed: int = 3) -> dict:
    """Signed error (nats/dim) of U(y, S) - U(y, S e^delta) for y drawn with S: evaluations far
    from the training distribution (y much noisier, or much cleaner, than the covariance says)."""
    out = {}
    d = x[0].numel()
    for delta in deltas:
        errs = []
        for fam, basis in (("isotropic", "pixel"), ("box", "pixel"), ("gaussian_blur", "hartley")):
            g = torch.Generator().manual_seed(seed)
            cov = CovarianceDistribution(families=[fam], p_useful=1.0).sample_basis(basis, x.shape[0], x.shape[1:], g)
            cov2 = Covariance(basis, cov.log_var + delta)
            y = x + cov.sample(g)
            du = model.energy(y, cov).double() - model.energy(y, cov2).double()
            de = exact.energy(y.double(), cov.to(torch.float64)) - exact.energy(y.double(), cov2.to(torch.float64))
            errs.append((du - de) / d)
        out[delta] = torch.cat(errs).mean().item()
    return out


def summarize(rows, d: int) -> dict:
    """Errors in nats per dimension, per (family, basis) and overall (see the module docstring)."""
    offset = {b: torch.cat([r["U"] - r["E"] for r in rows if r["basis"] == b]).median() for b in ("pixel", "hartley")}
    table = {}
    for r in rows:
        e = r["U"] - r["E"]
        table[(r["family"], r["basis"])] = {
            "abs": (e.abs().mean() / d).item(),
            "fixed": ((e - offset[r["basis"]]).abs().mean() / d).item(),
            "diff": (((r["U"] - r["U2"]) - (r["E"] - r["E2"])).abs().mean() / d).item(),
        }
    return {"table": table, "offset": {b: (v / d).item() for b, v in offset.items()}}


def figure(results: dict, rows: dict, d: int, path: pathlib.Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, (name, rs) in zip(axes, rows.items()):
        for r in rs:
            held = r["family"] in DEFAULT_HOLDOUT
            ax.scatter(r["level"], (r["U"] - r["E"]) / d, s=4, alpha=0.5,
                       marker="x" if held else "o", label=f"{r['family']} ({r['basis'][0]})")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(f"{name}: learned - exact energy")
        ax.set_xlabel("mean log10 variance of the covariance")
    axes[0].set_ylabel("nats / dimension (model's own constant)")
    axes[1].legend(fontsize=6, ncol=2, markerscale=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(results: dict, meta: dict, path: pathlib.Path):
    names = list(results)
    fams = list(results[names[0]]["table"])
    lines = [
        "# Normalization of the learned energy against a known Gaussian mixture",
        "",
        "Generated by `python benchmarks/normalization.py` (see its docstring for the protocol).",
        "",
        f"Data: `{DATA}` (1x16x16, 4 components, non-diagonal covariances), d = {meta['d']}. "
        f"Models: EnergyUNet width 16, depth 2 ({meta['params']} parameters), {meta['steps']} steps of "
        f"batch 64, identical except the covariance-score weight w. Evaluation: {meta['n']} held-out "
        f"draws per (family, basis), levels drawn as in training. Held-out families (never trained on): "
        f"{', '.join(DEFAULT_HOLDOUT)} (marked *).",
        "",
        "Errors in nats per dimension (mean absolute):",
        "",
        "- `abs`: |U - U*| with the model's own normalization (identity 4, no fitting);",
        "- `fixed`: the same after removing the best single constant per basis (the median offset);",
        f"- `diff`: error of the energy difference, at the same y, between the covariance that generated y and "
        f"the same covariance with all variances scaled by e^delta, delta ~ U[-{meta['shift']}, {meta['shift']}].",
        "",
        "| family | basis | " + " | ".join(f"{n}: {k}" for n in names for k in ("abs", "fixed", "diff")) + " |",
        "|---|---|" + "---|" * (3 * len(names)),
    ]
    for fam in fams:
        star = "*" if fam[0] in DEFAULT_HOLDOUT else ""
        cells = [f"{results[n]['table'][fam][k]:.4f}" for n in names for k in ("abs", "fixed", "diff")]
        lines.append(f"| {fam[0]}{star} | {fam[1]} | " + " | ".join(cells) + " |")
    for group, sel in (("trained families", lambda f: f[0] not in DEFAULT_HOLDOUT),
                       ("held-out families", lambda f: f[0] in DEFAULT_HOLDOUT)):
        cells = []
        for n in names:
            for k in ("abs", "fixed", "diff"):
                vals = [v[k] for f, v in results[n]["table"].items() if sel(f)]
                cells.append(f"**{sum(vals) / len(vals):.4f}**")
        lines.append(f"| mean, {group} | | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Signed error (U - U*) / d by decade of the covariance's mean variance, all families pooled "
        "(mean ± standard deviation; the model's own normalization):",
        "",
        "| log10 variance | n | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for lo in range(-9, 3):
        cells, count = [], 0
        for n in names:
            lv = torch.cat([r["level"] for r in meta["rows"][n]])
            e = torch.cat([(r["U"] - r["E"]) / meta["d"] for r in meta["rows"][n]])
            m = (lv >= lo) & (lv < lo + 1)
            count = int(m.sum())
            cells.append(f"{e[m].mean():+.3f} ± {e[m].std():.3f}" if count > 1 else "-")
        if count:
            lines.append(f"| [{lo}, {lo + 1}) | {count} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Far from the training distribution: signed error of U(y, S) - U(y, S e^delta) (nats/dim) for y drawn "
        "with S (isotropic, box and Gaussian-blur covariances, useful levels). delta < 0 evaluates y under variances "
        "far SMALLER than its actual noise: the network was never trained on such inputs and underestimates the "
        "energy, so evidences favour too-small noise levels (see `blind.md`, noise-level estimation).",
        "",
        "| delta | variance ratio | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for delta in meta["mismatch"][names[0]]:
        lines.append(f"| {delta:+.1f} | {math.exp(delta):.3g} | "
                     + " | ".join(f"{meta['mismatch'][n][delta]:+.3f}" for n in names) + " |")
    lines += [
        "",
        "Offsets removed in `fixed` (nats/dim): "
        + "; ".join(f"{n}: " + ", ".join(f"{b} {v:+.4f}" for b, v in results[n]["offset"].items()) for n in names),
        "",
        f"Training: {meta['train']}",
        "",
        "![learned minus exact energy](normalization.png)",
        "",
    ]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=2500)
    ap.add_argument("--runs", default=str(ROOT / "runs" / "normalization"))
    ap.add_argument("--n", type=int, default=256, help="test draws per (family, basis)")
    ap.add_argument("--train-only", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    trainers = {}
    for w in (1.0, 0.0):
        cfg = config(w, args.steps, pathlib.Path(args.runs))
        tr, secs = train_model(cfg)
        trainers[f"w={w:g}"] = (tr, cfg)
    if args.train_only:
        raise SystemExit(0)
    exact = mixture_energy(*SPEC)
    x = load_images(DATA, "test", limit=args.n)
    d = x[0].numel()
    results, rows, train_info, far = {}, {}, [], {}
    for name, (tr, cfg) in trainers.items():
        model = tr.finalize().eval()
        rows[name] = evaluate(model, exact, x)
        results[name] = summarize(rows[name], d)
        far[name] = mismatch(model, exact, x[:64])
        with open(pathlib.Path(cfg.out) / "log.csv") as fh:
            last = fh.read().strip().splitlines()[-1].split(",")
        train_info.append(f"{name}: final L_den {float(last[2]):.3f}, L_cov {float(last[3]):.3f}, "
                          f"{float(last[5]):.0f} images/s on one shared core, {float(last[7]) / 60:.0f} min")
    meta = {"d": d, "n": x.shape[0], "steps": args.steps, "shift": 1.0, "train": "; ".join(train_info), "rows": rows, "mismatch": far,
            "params": sum(p.numel() for p in trainers["w=1"][0].model.parameters())}
    OUT.mkdir(parents=True, exist_ok=True)
    write_report(results, meta, OUT / "normalization.md")
    figure(results, rows, d, OUT / "normalization.png")
    print((OUT / "normalization.md").read_text())
