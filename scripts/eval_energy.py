#!/usr/bin/env python
"""Quick evaluation of an EnergyUNet (bundled name, weights path, or training checkpoint).

Prints, per basis and isotropic noise level, the two loss terms (whitened denoising L_den and
covariance L_cov, lower is better; the diagonal Gaussian gives L_den ~ 1 at tiny noise) and the
PSNR of the Tweedie denoiser next to the diagonal-Gaussian (Wiener) baseline, on test images.

Usage::

    python scripts/eval_energy.py [--model fashion-mnist-28 | --ckpt /work/runs/fmnist/checkpoint.pt]
"""

from __future__ import annotations

import argparse
import math

import deepinv as dinv
import torch

from deepinv_energy.covariance import Covariance
from deepinv_energy.data import load_images
from deepinv_energy.models.unet import EnergyUNet, UNetConfig
from deepinv_energy.training.loss import covariance_score_matching_loss
from deepinv_energy.training.trainer import load_checkpoint


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="fashion-mnist-28")
    p.add_argument("--ckpt", default="")
    p.add_argument("--which", default="ema", choices=["ema", "model"])
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.ckpt:
        ck = load_checkpoint(args.ckpt)
        model = EnergyUNet(UNetConfig.from_dict(ck["model_config"]))
        model.load_state_dict(ck[args.which])
        print(f"checkpoint step {ck['step']} ({args.which})")
    else:
        model = EnergyUNet.from_pretrained(args.model)
    model.eval()
    psnr = lambda a, b: dinv.metric.PSNR(reduction="mean")(a, b).item()  # noqa: E731  (peak 1, mean over images)
    x = load_images(args.data, "test", limit=args.n)
    g = torch.Generator().manual_seed(0)
    print(f"{'basis':8s} {'log10 var':>9s} {'L_den':>7s} {'L_cov':>7s} {'PSNR in':>8s} {'Gauss':>7s} {'model':>7s}")
    for basis in ("pixel", "hartley"):
        for lv10 in (-8, -5, -4, -3, -2, -1, 0, 2):
            var = 10.0**lv10
            cov = Covariance.isotropic(var, x, basis=basis)
            out = covariance_score_matching_loss(model, x, cov, torch.Generator().manual_seed(1))
            y = x + math.sqrt(var) * torch.randn(x.shape, generator=g)
            den = model.denoise(y, cov)
            v = model.data_log_var(basis).exp()
            c = cov.to_basis(y - model.mean)
            wiener = model.mean + cov.from_basis(c * v / (v + var))
            print(f"{basis:8s} {lv10:9d} {out['den'].item():7.4f} {out['cov'].item():7.4f} "
                  f"{psnr(y, x):8.2f} {psnr(wiener, x):7.2f} {psnr(den, x):7.2f}")


if __name__ == "__main__":
    main()
