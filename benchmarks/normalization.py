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
- ``diff``: mean :math:`|\Delta U - \Delta U^\star| / d` for energy DIFFERENCES between two
  covariances of the same family at the same :math:`y` (what blind estimation uses).

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

from deepinv_energy.data import load_images, mixture_energy
from deepinv_energy.training import CovarianceDistribution
from deepinv_energy.training.distribution import ALL_FAMILIES, DEFAULT_HOLDOUT
from deepinv_energy.training.trainer import TrainConfig, Trainer

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
SPEC = (1, 16, 16, 4, 0)  # C, H, W, K, seed
DATA = "gmm:" + ",".join(map(str, SPEC)) + ",20000"


def config(w_cov: float, steps: int, run_dir: pathlib.Path) -> TrainConfig:
    return TrainConfig(
        data=DATA, out=str(run_dir / f"w{w_cov:g}"), steps=steps, batch_size=64, lr=5e-4, warmup=200,
        schedule="cosine", width=16, depth=2, w_cov=w_cov, ckpt_every=100, log_every=20, seed=0,
        threads=1, norm_images=2000,
    )


def train_model(cfg: TrainConfig, progress: bool = True):
    tr = Trainer(cfg)
    tr.try_resume()
    t0 = time.time()
    tr.fit(progress=progress)
    return tr, time.time() - t0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=2500)
    ap.add_argument("--runs", default=str(ROOT / "runs" / "normalization"))
    ap.add_argument("--train-only", action="store_true")
    args = ap.parse_args()
    for w in (1.0, 0.0):
        train_model(config(w, args.steps, pathlib.Path(args.runs)))
