r"""Evaluation of the bundled energy model on the Fashion-MNIST TEST split.

Writes ``benchmarks/results/model.md``:

1. **Denoising** PSNR at input noise 0.05, 0.1, 0.2, 0.4 of the energy's Tweedie denoiser
   (:class:`~deepinv_energy.EnergyDenoiser`), of a plain denoiser of the same backbone trained
   with the same budget (same steps, batch, data order, schedule; isotropic noise only, no energy:
   :class:`~deepinv_energy.UNetDenoiser`), and of the diagonal-Gaussian (Wiener) denoiser built
   into the energy, with time per image.
2. **Likelihood**: negative log-likelihood in bits per dimension of uniformly dequantized test
   images :math:`x + u/256` (pixel values in [0, 1]), as :math:`-\log_2 p_\sigma(x_\text{deq})/d + 8`
   (the +8 turns the density on [0, 1] into the probability of a 256-level bin) with the smoothing
   :math:`\sigma = 10^{-3}` (the energy at :math:`\Sigma = 10^{-6} I`), against a full-covariance
   Gaussian fitted to the dequantized training split (same convention, its covariance + 1e-6 I).
3. **Consistency across bases**: on isotropic noise the pixel and Hartley bases describe the same
   density, so the energies (each normalized by its own constant) and the Tweedie estimates must
   agree: mean |U_pixel - U_hartley| / d and the RMS difference of the two denoisers relative to
   their error.
4. **Posterior variance calibration**: the covariance score's prediction
   :math:`\lambda(1 - 2h) - (\lambda V^\top g)^2` (identity 3) against the measured squared error
   of the Tweedie estimate, overall and in five bins of predicted variance (isotropic noise, a
   14x14 box with noise 0.05 outside, and a Gaussian blur spectrum in the Hartley basis).
5. **Generalization to held-out covariance families**: the test losses :math:`L_\text{den}`,
   :math:`L_\text{cov}` per family, for the training families and the held-out ones (``bands``,
   ``motion_blur``), for the bundled model and (``--extra``) the ``w = 1`` / ``w = 0`` pair trained
   identically for 742 steps.

Run: ``python benchmarks/model_eval.py [--n 1000] [--plain benchmarks/weights/plain-denoiser-28]
[--extra "w=1 step 742=benchmarks/weights/energy-w1-742.json,w=0 step 742=benchmarks/weights/energy-w0-742.json"]``.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import time

import deepinv as dinv
import torch

from deepinv_energy import Covariance, EnergyDenoiser, EnergyUNet, UNetDenoiser
from deepinv_energy.data import load_images
from deepinv_energy.models.base import bits_per_dim
from deepinv_energy.training import CovarianceDistribution
from deepinv_energy.training.distribution import ALL_FAMILIES, DEFAULT_HOLDOUT, HARTLEY_FAMILIES, PIXEL_FAMILIES
from deepinv_energy.training.loss import covariance_score_matching_loss

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
NOISES = (0.05, 0.1, 0.2, 0.4)


def psnr(a, b):
    """Mean over images of the per-image PSNR (peak 1)."""
    return dinv.metric.PSNR(reduction="mean")(a, b).item()


def batched(fn, *tensors, batch=250):
    return torch.cat([fn(*parts) for parts in zip(*(t.split(batch) for t in tensors))])


def denoising(x, denoisers: dict, seed=0):
    rows = []
    for s in NOISES:
        y = x + s * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed + int(1e3 * s)))
        row = {"noise": s, "input": psnr(y, x)}
        for name, den in denoisers.items():
            t0 = time.perf_counter()
            out = batched(lambda yb: den(yb, s).detach(), y)
            row[name] = psnr(out.clamp(0, 1), x)
            row[name + " ms"] = 1e3 * (time.perf_counter() - t0) / len(x)
        rows.append(row)
    return rows


def gaussian_nll_bits(train, test_deq, smoothing_var=1e-6, seed=1):
    """Full-covariance Gaussian fitted to the dequantized training split (float64)."""
    g = torch.Generator().manual_seed(seed)
    xt = (train + torch.rand(train.shape, generator=g) / 256).double().flatten(1)
    mu = xt.mean(0)
    c = torch.cov(xt.T) + smoothing_var * torch.eye(xt.shape[1], dtype=torch.float64)
    dist = torch.distributions.MultivariateNormal(mu, covariance_matrix=c)
    d = xt.shape[1]
    return bits_per_dim(-dist.log_prob(test_deq.double().flatten(1)), d)


def model_nll_bits(model, deq, var=1e-6):
    d = deq[0].numel()
    with torch.no_grad():
        u = batched(lambda b: model.energy(b, Covariance.isotropic(var, b)).double(), deq)
    return bits_per_dim(u, d)


def _energy_and_tweedie(model, y, cov):
    """(B, 1 + d) float64: the energy and the flattened Tweedie estimate, from one evaluation."""
    u, g, _ = model.energy_and_grads(y, cov, wrt_log_var=False)
    return torch.cat([u[:, None], (y - cov.apply(g)).flatten(1)], 1).double()


def basis_consistency(model, x, seed=2):
    rows = []
    for s in (0.05, 0.2, 1.0):
        y = x + s * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
        res = {}
        for basis in ("pixel", "hartley"):
            res[basis] = batched(lambda b: _energy_and_tweedie(model, b, Covariance.isotropic(s**2, b, basis=basis)), y)
        d = x[0].numel()
        du = (res["pixel"][:, 0] - res["hartley"][:, 0]).abs().mean().item() / d
        dp, dh = res["pixel"][:, 1:], res["hartley"][:, 1:]
        err = (dp - x.flatten(1).double()).pow(2).mean().sqrt().item()
        rows.append({"noise": s, "dU": du, "rel": (dp - dh).pow(2).mean().sqrt().item() / err,
                     "psnr_p": psnr(dp.float().view_as(x), x), "psnr_h": psnr(dh.float().view_as(x), x)})
    return rows


def calibration(model, x, seed=3):
    from deepinv_energy import to_denoising_problem

    H, W = x.shape[-2:]
    mask = torch.ones(1, H, W)
    mask[:, 7:21, 7:21] = 0
    cases = [(f"denoising, noise {s}", dinv.physics.Denoising(dinv.physics.GaussianNoise(s))) for s in (0.1, 0.2, 0.4)]
    cases += [("14x14 box inpainting, noise 0.05", dinv.physics.Inpainting(mask=mask, img_size=(1, H, W),
                                                                             noise_model=dinv.physics.GaussianNoise(0.05))),
              ("Gaussian blur std 1, noise 0.02 (Hartley)", dinv.physics.BlurFFT(
                  img_size=(1, H, W), filter=dinv.physics.blur.gaussian_blur(1.0), noise_model=dinv.physics.GaussianNoise(0.02)))]
    rows = []
    for name, physics in cases:
        torch.manual_seed(seed)
        prob = to_denoising_problem(physics(x), physics)
        cov = prob.cov
        moments = [model.posterior_moments(b, Covariance(cov.basis, lvb))
                   for b, lvb in zip(prob.x_tilde.split(250), cov.log_var.split(250))]
        den, pred = (torch.cat(m) for m in zip(*moments))
        keep = (cov.variances <= 1.0).flatten()  # see the report: unobserved coefficients excluded
        p, m = pred.flatten()[keep], (cov.to_basis(den - x) ** 2).flatten()[keep]
        bins = [(p[idx].mean().item(), m[idx].mean().item()) for idx in p.argsort().chunk(5)]
        rows.append({"case": name, "pred": p.mean().item(), "meas": m.mean().item(),
                     "neg": (p < 0).float().mean().item(), "bins": bins})
    return rows


def family_losses(models: dict, x, n_per=256, seed=4):
    rows = []
    xs = x[:n_per]
    for basis in ("pixel", "hartley"):
        for fam in ALL_FAMILIES:
            if fam not in (PIXEL_FAMILIES if basis == "pixel" else HARTLEY_FAMILIES):
                continue
            cov = CovarianceDistribution(families=[fam]).sample_basis(basis, len(xs), xs.shape[1:], torch.Generator().manual_seed(seed))
            row = {"family": fam, "basis": basis}
            for name, model in models.items():
                out = covariance_score_matching_loss(model, xs, cov, torch.Generator().manual_seed(seed + 1))
                row[name] = (out["den"].item(), out["cov"].item())
            rows.append(row)
    return rows


def report(args, den_rows, nll, base_rows, cal_rows, fam_rows, meta) -> str:
    names = [k for k in den_rows[0] if k not in ("noise", "input") and not k.endswith(" ms")]
    cmd = f"python benchmarks/model_eval.py --n {args.n}" + (
        "" if args.out == "model.md" else f" --model {args.model} --label '{args.label}' --out {args.out}") + (
        f' --extra "{args.extra}"' if args.extra else "")
    L = [f"# Energy model `{args.label}` on the Fashion-MNIST test split", "",
         f"Generated by `{cmd}` on {meta['machine']}. "
         f"Energy model: {meta['energy']}. Plain denoiser: {meta['plain']}.", "",
         "## Denoising (PSNR in dB, mean over images; time per image, batches of 250)", "",
         "| noise | input | " + " | ".join(names) + " | " + " | ".join(f"{n} ms/img" for n in names) + " |",
         "|---|---|" + "---|" * (2 * len(names))]
    for r in den_rows:
        L.append(f"| {r['noise']} | {r['input']:.2f} | " + " | ".join(f"{r[n]:.2f}" for n in names) + " | "
                 + " | ".join(f"{r[n + ' ms']:.1f}" for n in names) + " |")
    L += ["", "## Negative log-likelihood (bits/dim)", "",
          "Uniformly dequantized test images, pixel values in [0, 1], density smoothed by sigma = 1e-3 "
          "(the energy at Sigma = 1e-6 I; the Gaussian's covariance + 1e-6 I), +8 bits for the 256 levels. "
          "Mean ± standard error over images.", "", "| model | bits/dim |", "|---|---|"]
    for k, v in nll.items():
        L.append(f"| {k} | {v.mean():.3f} ± {v.std() / math.sqrt(len(v)):.3f} |")
    L += ["", "## Consistency of the pixel and Hartley bases on isotropic noise", "",
          "| noise | mean abs(U_pixel - U_hartley) / d (nats) | RMS(D_pixel - D_hartley) / RMS error | PSNR pixel | PSNR Hartley |",
          "|---|---|---|---|---|"]
    for r in base_rows:
        L.append(f"| {r['noise']} | {r['dU']:.4f} | {r['rel']:.3f} | {r['psnr_p']:.2f} | {r['psnr_h']:.2f} |")
    L += ["", "## Posterior variance: predicted (identity 3) vs measured squared error", "",
          "Per coefficient of the covariance's basis, over coefficients with noise variance <= 1; bins: quintiles "
          "of the predicted variance (predicted / measured). Unobserved coefficients (variance 1e3) are left out: "
          "there lambda (1 - 2h) - (lambda g)^2 is a difference of numbers of order 1e3 whose result is of order 0.1, "
          "so h would have to be accurate to 1e-5 in float32.", "",
          "| case | mean predicted | mean measured | ratio | negative predictions | bins (pred / meas) |", "|---|---|---|---|---|---|"]
    for r in cal_rows:
        bins = "; ".join(f"{p:.2g} / {m:.2g}" for p, m in r["bins"])
        L.append(f"| {r['case']} | {r['pred']:.4g} | {r['meas']:.4g} | {r['pred'] / r['meas']:.2f} | {100 * r['neg']:.1f} % | {bins} |")
    mnames = [k for k in fam_rows[0] if k not in ("family", "basis")]
    L += ["", "## Test losses per covariance family (L_den / L_cov; * = held out of training)", "",
          "| family | basis | " + " | ".join(mnames) + " |", "|---|---|" + "---|" * len(mnames)]
    for r in fam_rows:
        star = "*" if r["family"] in DEFAULT_HOLDOUT else ""
        L.append(f"| {r['family']}{star} | {r['basis']} | " + " | ".join(f"{r[n][0]:.3f} / {r[n][1]:.3f}" for n in mnames) + " |")
    return "\n".join(L) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="fashion-mnist-28")
    ap.add_argument("--plain", default=str(ROOT / "benchmarks" / "weights" / "plain-denoiser-28.json"))
    ap.add_argument("--extra", default="", help="comma-separated NAME=PATH energy models added to the family-loss "
                    "table (e.g. the w = 1 / w = 0 pair of benchmarks/weights)")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--label", default="bundled", help="name of --model in the tables")
    ap.add_argument("--out", default="model.md", help="report file name in benchmarks/results/")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import json
    import platform

    model = EnergyUNet.from_pretrained(args.model)
    plain = EnergyUNet.from_pretrained(args.plain)
    meta_e = json.load(open(str(pathlib.Path(args.model).with_suffix(".json")) if args.model.endswith(("json", "safetensors")) else
                            ROOT / "deepinv_energy" / "weights" / f"{args.model}.json"))["metadata"]
    meta_p = json.load(open(pathlib.Path(args.plain).with_suffix(".json")))["metadata"]
    x = load_images("fashion-mnist", "test", limit=args.n)
    denoisers = {"energy (Tweedie)": EnergyDenoiser(model), "plain denoiser": UNetDenoiser(plain),
                 "diagonal Gaussian": lambda y, s: _wiener(model, y, s)}
    den_rows = denoising(x, denoisers)
    deq = x + torch.rand(x.shape, generator=torch.Generator().manual_seed(5)) / 256
    nll = {f"energy model ({args.label})": model_nll_bits(model, deq),
           "full-covariance Gaussian (train split)": gaussian_nll_bits(load_images("fashion-mnist", "train"), deq)}
    base_rows = basis_consistency(model, x[:500])
    cal_rows = calibration(model, x[:500])
    models = {args.label: model}
    for item in filter(None, args.extra.split(",")):
        name, path = item.rsplit("=", 1)
        models[name] = EnergyUNet.from_pretrained(path)
    fam_rows = family_losses(models, x)
    meta = {"machine": f"{platform.machine()} CPU, {torch.get_num_threads()} threads",
            "energy": f"step {meta_e.get('step')}", "plain": f"step {meta_p.get('step')} of its last stage (the energy's training chain: same stages, "
                                                     "schedules, seeds, batches and weighting, --objective denoiser)"}
    text = report(args, den_rows, nll, base_rows, cal_rows, fam_rows, meta)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / args.out).write_text(text)
    print(text)


def _wiener(model, y, s):
    """The energy's built-in diagonal Gaussian (pixel basis) as a denoiser."""
    v = model.data_log_var("pixel").exp()
    return model.mean + v / (v + s**2) * (y - model.mean)


if __name__ == "__main__":
    main()
