"""
The training curve of the bundled model
=======================================

Every training run writes ``log.csv`` in its run directory: the loss and its two terms, the
learning rate, images per second, the gradient norm and the elapsed time, every ``--log-every``
steps. This example plots the logs of the CPU runs kept in the repository's ``training_state/``
(see ``training_state/README.md``): ``fmnist-28``, the run with the paper's loss whose step 2400
was the previous bundled model, and, on a second axis, the retraining warm-started from it (EDM
weighting, ``fmnist-28-edm``, then EDM weighting and Wiener input scaling, ``fmnist-28-wiener``),
whose end (step 10000) is the bundled model ``fashion-mnist-28``.

It reads files of a clone of the repository (``training_state/`` is not installed with the
package). Run the same on your own run with ``python plot_training_curve.py runs/myrun``.
"""

import csv
import pathlib
import sys

import matplotlib.pyplot as plt


def find_training_state() -> pathlib.Path:
    here = pathlib.Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d / "training_state").is_dir():
            return d / "training_state"
    raise FileNotFoundError("run this example from a clone of the deepinv-energy repository")


def read_log(run: pathlib.Path) -> dict:
    with open(run / "log.csv") as f:
        rows = list(csv.DictReader(f))
    return {k: [float(r[k]) for r in rows] for k in rows[0]}


if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
    runs = {pathlib.Path(p).name: read_log(pathlib.Path(p)) for p in sys.argv[1:]}
else:
    state = find_training_state()
    names = ("fmnist-28", "fmnist-28-edm", "fmnist-28-wiener")
    runs = {name: read_log(state / name) for name in names}

# %%
# Losses and time per step
# ------------------------
# The loss is :math:`L_\text{den} + w L_\text{cov}` (``w = 1``), drawn raw (light) and as a running
# mean over 10 logged points. The weighted runs
# (``--loss-weight edm``) train a differently scaled denoising term, so their losses are not
# comparable with the first run's; each is plotted against its own step count. The time per step
# is ``batch size / images per second`` from the log (batch 64, one CPU thread, with the cores
# shared by other jobs part of the time).

def smooth(values, k=10):
    """Running mean over k logged points (the raw loss is noisy: one batch per point)."""
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v - (values[i - k] if i >= k else 0.0)
        out.append(acc / min(i + 1, k))
    return out


fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
base = runs.get("fmnist-28", next(iter(runs.values())))
curves = (("loss", "k", "loss"), ("L_den", "C0", r"$L_\mathrm{den}$"), ("L_cov", "C1", r"$L_\mathrm{cov}$"))
for key, color, label in curves:
    axes[0].plot(base["step"], base[key], color=color, alpha=0.2, lw=0.6)
    axes[0].plot(base["step"], smooth(base[key]), color=color, label=label)
axes[0].axvline(2400, color="gray", ls=":", lw=1)
axes[0].text(2400, 0.02, " previous bundled\n weights", fontsize=7, color="gray")
axes[0].set_title("fmnist-28 (paper's loss)", fontsize=9)
axes[0].set_ylim(0, None)
for name, log in runs.items():
    if log is not base:
        axes[1].plot(log["step"], smooth(log["loss"]), label=name)
axes[1].set_yscale("log")
axes[1].set_title("retraining, loss (own step counts); bundled: end of fmnist-28-wiener", fontsize=9)
for name, log in runs.items():
    axes[2].plot(log["step"], [64 / v for v in log["imgs_per_s"]], ".", ms=2, label=name)
axes[2].set_ylim(0, 10)
axes[2].set_title("seconds per 64-image step (one CPU thread)", fontsize=9)
for ax in axes:
    ax.set_xlabel("step")
    ax.legend(fontsize=7, loc="upper right")
fig.tight_layout()

for name, log in runs.items():
    secs = sorted(64 / v for v in log["imgs_per_s"])
    print(f"{name:18s} steps {int(log['step'][0])}-{int(log['step'][-1])}: "
          f"median {secs[len(secs) // 2]:.1f} s per step (10-90 %: {secs[len(secs) // 10]:.1f}-"
          f"{secs[9 * len(secs) // 10]:.1f} s)")
