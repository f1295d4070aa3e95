r"""Is the learned model consistent across covariances? The anisotropic quantities, against exact answers.

The normalization benchmark checks energies; this one checks what restoration and uncertainty
use: the one-evaluation posterior mean (anisotropic Tweedie at the measurement's covariance,
:class:`~deepinv_energy.EnergyMMSE`), the posterior-variance identity and the energy, for
models trained on the known 1x16x16 Gaussian mixture of ``benchmarks/normalization.py``, with
two weightings of the denoising loss, two input scalings and two covariance distributions at equal steps (same seed, data
order and noise):

- ``none``: the paper's loss, the squared whitened residual
  :math:`|\sqrt\lambda V^\top g - z|^2`, which charges an error at :math:`\lambda` by
  :math:`1/\lambda`;
- ``edm``: the same times :math:`1 + \lambda_i / v_i` per coefficient (the squared error times
  EDM's :math:`(v+\lambda)/(v\lambda)`; see :mod:`deepinv_energy.training.loss`);
- ``edm+wiener``: ``edm`` with the network input scaled by :math:`\sqrt v/(v+\lambda)` instead
  of :math:`1/\sqrt{v+\lambda}` (``UNetConfig.input_scale``), which bounds how much the Tweedie
  mean amplifies the network's sensitivity to unobserved coefficients.
- ``edm+wiener+unobs``: ``edm+wiener`` with half of the box, mask and bands covariances given an
  unobserved inside (``p_unobserved=0.5``: inside level ``lam_max``, as ``Inpainting`` gives; with
  independent log-uniform levels a level within a decade of ``lam_max`` is drawn about 4 % of the time).

Tasks (deepinv physics on held-out draws of the mixture): a 6x6 box and a random 70 % mask
(``Inpainting``, noise 0.02), a Gaussian blur of width 1 (``BlurFFT``, noise 0.02), written as
denoising problems with unobserved variance ``lam_max`` in {1, 10, 100, 1000}. For each:

- PSNR of the model's one-evaluation mean, of the EXACT posterior mean of the same denoising
  problem (the mixture's Tweedie at the same covariance) and of the exact posterior mean of the
  inverse problem itself (computed densely in measurement space; the lam_max -> inf limit);
- ``excess``: the model's squared error to the exact mean of the same problem, over the exact
  mean's own squared error to the truth (0 for an exact model);
- posterior variances (in the problem's basis): fraction negative, and the ratio of the mean
  predicted to the mean exact variance, on unobserved and on observed coefficients.

Plus isotropic denoising at noise 0.1, 0.2, 0.4 (same metrics) and the energy error by decade
of the covariance's variance (from :func:`normalization.evaluate`).

Run: ``python benchmarks/consistency.py`` (trains the models into ``runs/consistency/`` if
needed, resumable, ~20 min per model on one CPU core at 1000 steps). Writes
``benchmarks/results/consistency.md`` and ``consistency.png``.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys

import deepinv as dinv
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from normalization import DATA, OUT, SPEC, config, evaluate, train_model  # noqa: E402

from deepinv_energy.testing import measurement_posterior
from deepinv_energy.data import load_images, mixture_energy  # noqa: E402
from deepinv_energy.problems import to_denoising_problem  # noqa: E402

LAM_MAXES = (1.0, 10.0, 100.0, 1000.0)
#: the models compared: name -> (loss_weight, input_scale, p_unobserved)
VARIANTS = {"none": ("none", "whiten", 0.0), "edm": ("edm", "whiten", 0.0), "edm+wiener": ("edm", "wiener", 0.0),
            "edm+wiener+unobs": ("edm", "wiener", 0.5)}


def tasks(shape, seed: int = 0) -> dict:
    """The restoration tasks: name -> deepinv physics in float64 (fixed masks, seeded)."""
    C, H, W = shape
    box = torch.ones(1, C, H, W, dtype=torch.float64)
    box[..., 5:11, 5:11] = 0
    g = torch.Generator().manual_seed(seed)
    rand = (torch.rand(1, C, H, W, generator=g) < 0.3).double()
    noise = dinv.physics.GaussianNoise(0.02)
    kernel = dinv.physics.functional.gaussian_blur(sigma=(1.0, 1.0)).double()
    return {
        "box": dinv.physics.Inpainting((C, H, W), mask=box, noise_model=noise),
        "random70": dinv.physics.Inpainting((C, H, W), mask=rand, noise_model=noise),
        "gblur": dinv.physics.BlurFFT((C, H, W), filter=kernel, noise_model=dinv.physics.GaussianNoise(0.02)),
    }


def psnr(est: torch.Tensor, x: torch.Tensor) -> float:
    """PSNR (dB) of the mean squared error over all images, peak 1 (the mixture's values are O(1))."""
    return (10 * torch.log10(1.0 / ((est.double() - x.double()) ** 2).mean())).item()


@torch.no_grad()
def one_problem(model, exact, x, y, physics, lam_max: float, inverse_mean=None) -> dict:
    """Metrics of the one-evaluation posterior mean and variances for one (task, lam_max)."""
    pb = to_denoising_problem(y, physics, lam_max=lam_max)
    mean, var = model.posterior_moments(pb.x_tilde.float(), pb.cov.to(dtype=torch.float32))
    cov64 = pb.cov.to(dtype=torch.float64)
    emean, evar = exact.posterior_moments(pb.x_tilde.double(), cov64)
    var, evar = var.double(), evar.double()
    obs = pb.observed.expand_as(var)
    err_model = ((mean.double() - emean) ** 2).sum()
    err_exact = ((emean - x.double()) ** 2).sum()
    out = {
        "psnr": psnr(mean, x), "psnr_exact": psnr(emean, x),
        "excess": (err_model / err_exact).item(),
        "neg": (var < 0).double().mean().item(),
        "ratio_obs": (var[obs].mean() / evar[obs].mean()).item() if obs.any() else float("nan"),
        "ratio_unobs": (var[~obs].mean() / evar[~obs].mean()).item() if (~obs).any() else float("nan"),
    }
    if inverse_mean is not None:
        out["psnr_inverse"] = psnr(inverse_mean, x)
    return out


@torch.no_grad()
def evaluate_model(model, exact, x, seed: int = 0) -> dict:
    res = {}
    g = torch.Generator().manual_seed(seed)
    for name, physics in tasks(tuple(x.shape[1:]), seed).items():
        ax = physics.A(x.double())
        y = ax + 0.02 * torch.randn(ax.shape, generator=g, dtype=torch.float64)
        if isinstance(physics, dinv.physics.Inpainting):
            y = y * physics.mask  # deepinv masks the noise of inpainting too
        inv = measurement_posterior(exact, y, physics).mean()
        for lam_max in LAM_MAXES:
            res[(name, lam_max)] = one_problem(model, exact, x, y, physics, lam_max, inv)
    for s in (0.1, 0.2, 0.4):
        physics = dinv.physics.Denoising(dinv.physics.GaussianNoise(s))
        y = x.double() + s * torch.randn(x.shape, generator=g, dtype=torch.float64)
        res[(f"denoise-{s:g}", None)] = one_problem(model, exact, x, y, physics, 1e3)
    return res


def energy_by_decade(model, exact, x) -> dict:
    """Mean |U - U*| / d (model's own constant) by decade of the mean log10 variance."""
    d = x[0].numel()
    rows = evaluate(model, exact, x)
    level = torch.cat([r["level"] for r in rows])
    err = torch.cat([(r["U"] - r["E"]).abs() / d for r in rows])
    out = {}
    for lo in range(-9, 3, 2):
        sel = (level >= lo) & (level < lo + 2)
        if sel.any():
            out[lo] = err[sel].mean().item()
    return out


def figure(results: dict, path: pathlib.Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["box", "random70", "gblur"]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    for ax, task in zip(axes, names):
        for wname, res in results.items():
            ax.plot(LAM_MAXES, [res[(task, L)]["psnr"] for L in LAM_MAXES], "o-", label=f"model: {wname}")
        any_res = next(iter(results.values()))
        ax.plot(LAM_MAXES, [any_res[(task, L)]["psnr_exact"] for L in LAM_MAXES], "k--", label="exact, same problem")
        ax.axhline(any_res[(task, LAM_MAXES[0])]["psnr_inverse"], color="gray", lw=0.8, label="exact inverse problem")
        ax.set_xscale("log")
        ax.set_title(task)
        ax.set_xlabel("variance of unobserved coefficients (lam_max)")
    axes[0].set_ylabel("PSNR of the one-evaluation mean (dB)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(results: dict, decades: dict, meta: dict, path: pathlib.Path):
    w = list(results)
    lines = [
        "# Consistency across covariances: one-evaluation posterior means and variances on a known mixture",
        "",
        "Generated by `python benchmarks/consistency.py` (protocol in its docstring).",
        "",
        f"Data `{DATA}` (d = {meta['d']}), {meta['n']} held-out draws per task. Models: EnergyUNet width 16, "
        f"depth 2, {meta['steps']} steps of batch 64, w_cov = 1, identical except the weighting of the denoising "
        f"term, the input scaling and the share of unobserved regions in the training covariances ({', '.join(w)}). "
        f"{meta['train']}.",
        "",
        "## One-evaluation posterior mean (PSNR, dB) against the unobserved variance lam_max",
        "",
        "`exact` is the mixture's own posterior mean of the same denoising problem; `inverse` the exact "
        "posterior mean of the inverse problem (lam_max -> inf). `excess`: model's squared error to the exact "
        "mean over the exact mean's squared error to the truth.",
        "",
        "| task | lam_max | exact | inverse | " + " | ".join(f"{n}: PSNR | {n}: excess" for n in w) + " |",
        "|---|---|---|---|" + "---|---|" * len(w),
    ]
    keys = list(results[w[0]])
    for k in keys:
        r0 = results[w[0]][k]
        lam = "-" if k[1] is None else f"{k[1]:g}"
        inv = f"{r0['psnr_inverse']:.2f}" if "psnr_inverse" in r0 else "-"
        cells = " | ".join(f"{results[n][k]['psnr']:.2f} | {results[n][k]['excess']:.3f}" for n in w)
        lines.append(f"| {k[0]} | {lam} | {r0['psnr_exact']:.2f} | {inv} | {cells} |")
    lines += [
        "",
        "## Posterior-variance identity",
        "",
        "Fraction of negative predicted variances, and mean predicted / mean exact variance on observed and "
        "unobserved coefficients (goal 1; `-` where there are none).",
        "",
        "| task | lam_max | " + " | ".join(f"{n}: negative | {n}: ratio obs | {n}: ratio unobs" for n in w) + " |",
        "|---|---|" + "---|---|---|" * len(w),
    ]
    fmt = lambda v: "-" if math.isnan(v) else f"{v:.2f}"  # noqa: E731
    for k in keys:
        lam = "-" if k[1] is None else f"{k[1]:g}"
        cells = " | ".join(
            f"{results[n][k]['neg']:.3f} | {fmt(results[n][k]['ratio_obs'])} | {fmt(results[n][k]['ratio_unobs'])}" for n in w
        )
        lines.append(f"| {k[0]} | {lam} | {cells} |")
    lines += [
        "",
        "## Energy error by decade of the covariance's mean variance",
        "",
        "Mean |U - U*| / d in nats per dimension (model's own normalization), all families of "
        "`normalization.py` pooled.",
        "",
        "| log10 variance | " + " | ".join(w) + " |",
        "|---|" + "---|" * len(w),
    ]
    for lo in decades[w[0]]:
        lines.append(f"| [{lo}, {lo + 2}) | " + " | ".join(f"{decades[n].get(lo, float('nan')):.3f}" for n in w) + " |")
    lines.append("")
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--runs", default=str(ROOT / "runs" / "consistency"))
    ap.add_argument("--n", type=int, default=128, help="held-out draws per task")
    args = ap.parse_args()
    exact = mixture_energy(*SPEC)
    x = load_images(DATA, "test", limit=args.n)
    results, decades, info = {}, {}, []
    for name, (lw, scale, unobs) in VARIANTS.items():
        cfg = config(1.0, args.steps, pathlib.Path(args.runs), loss_weight=lw, input_scale=scale, p_unobserved=unobs)
        tr, _ = train_model(cfg)
        model = tr.finalize().eval()
        results[name] = evaluate_model(model, exact, x)
        decades[name] = energy_by_decade(model, exact, x)
        with open(pathlib.Path(cfg.out) / "log.csv") as fh:
            last = fh.read().strip().splitlines()[-1].split(",")
        info.append(f"{name}: final L_den {float(last[2]):.3f}, L_cov {float(last[3]):.3f}")
    meta = {"d": x[0].numel(), "n": x.shape[0], "steps": args.steps, "train": "; ".join(info)}
    OUT.mkdir(parents=True, exist_ok=True)
    write_report(results, decades, meta, OUT / "consistency.md")
    figure(results, OUT / "consistency.png")
    print((OUT / "consistency.md").read_text())
