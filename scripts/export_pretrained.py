#!/usr/bin/env python
"""Export the EMA weights of a training checkpoint as a bundled, normalized EnergyUNet.

Usage::

    python scripts/export_pretrained.py [--ckpt /work/runs/fmnist/checkpoint.pt] \
        [--out deepinv_energy/weights] [--name fashion-mnist-28] [--n-images 2000]

For an energy model the normalization constants (one per basis) are computed on clean training images at the
largest training variance (identity 4 of the method; see
``deepinv_energy.training.loss.normalization_constant``) and stored in the weights and the JSON.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from deepinv_energy.data import load_images
from deepinv_energy.models.unet import EnergyUNet, UNetConfig
from deepinv_energy.training.loss import normalization_constant
from deepinv_energy.training.trainer import PREV_NAME, load_checkpoint

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", default="/work/runs/fmnist/checkpoint.pt")
    p.add_argument("--out", default=os.path.normpath(os.path.join(HERE, "..", "deepinv_energy", "weights")))
    p.add_argument("--name", default="fashion-mnist-28")
    p.add_argument("--n-images", type=int, default=2000)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        ck = load_checkpoint(args.ckpt)
    except Exception as err:  # the latest file may be mid-write: fall back to the previous one
        prev = os.path.join(os.path.dirname(args.ckpt), PREV_NAME)
        print(f"cannot read {args.ckpt} ({err}); using {prev}", file=sys.stderr)
        ck = load_checkpoint(prev)
    model = EnergyUNet(UNetConfig.from_dict(ck["model_config"]))
    model.load_state_dict(ck["ema"])
    model.eval()
    cfg = ck["config"]
    images = load_images(cfg["data"], "train", limit=args.n_images)
    consts, far = {}, {}
    plain = cfg.get("objective", "energy") == "denoiser"  # a plain denoiser has no energy to normalize
    for basis in (model.config.bases if not plain else ()):
        consts[basis] = normalization_constant(model, images, var=cfg["lam_max"], basis=basis)
        model.set_normalization(basis, consts[basis], images[0].numel())
    # diagnostic: the same constant measured far beyond the training range
    far = {b: normalization_constant(model, images[:500], var=1e6, basis=b) - consts[b] for b in consts}
    meta = {
        "step": int(ck["step"]),
        "checkpoint": os.path.abspath(args.ckpt),
        "normalization_var": cfg["lam_max"],
        "normalization_drift_at_1e6": far,
        "train_config": cfg,
    }
    w, c = model.save_pretrained(args.out, args.name, metadata=meta)
    print(f"exported step {ck['step']} to {w} and {c}; constants {consts}; drift at 1e6 {far}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
