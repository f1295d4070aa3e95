"""
Train a small energy model and resume from its checkpoint
=========================================================

Training uses only clean images and two losses: whitened denoising score matching and the
covariance score loss :math:`\\|h - \\tfrac12(1 - z^2)\\|^2`. Here a tiny model is trained for a few
steps on samples of a Gaussian mixture, interrupted, and resumed from its checkpoint; the
resumed run continues exactly where the first stopped. The same runs on Fashion-MNIST or your
own images with ``deepinv-energy train`` (see :doc:`/training`), or under ``torchrun`` for
several processes.
"""

import tempfile

from deepinv_energy.training import TrainConfig, Trainer

out = tempfile.mkdtemp()
config = TrainConfig(data="gmm:1,8,8,3,0,256", out=out, steps=6, batch_size=8, width=8,
                     ckpt_every=3, log_every=1, threads=1)

# %%
# A first run, stopped after 3 of its 6 steps (a checkpoint is written when it stops). The
# progress bar is off (``progress=False``) because a terminal bar does not render on a web page;
# the CSV log below has the same numbers.

first = Trainer(config)
first.fit(max_steps=3, progress=False)
print("stopped at step", first.step)

# %%
# A new trainer on the same run directory picks up the model, EMA, optimizer and RNG states and
# the step (``deepinv-energy train --resume`` does the same).

second = Trainer(config)
second.try_resume()
print("resumed at step", second.step)
second.fit(progress=False)
print("finished at step", second.step)

# %%
# The log: one row per step (``log_every=1``) across both runs, as a plain-text progress report.

with open(f"{out}/log.csv") as f:
    rows = [line.strip().split(",") for line in f]
header, rows = rows[0], rows[1:]
col = {name: i for i, name in enumerate(header)}
print(f"{'step':>4s} {'loss':>8s} {'L_den':>8s} {'L_cov':>8s} {'lr':>9s}")
for r in rows:
    print(f"{r[col['step']]:>4s} {float(r[col['loss']]):8.4f} {float(r[col['L_den']]):8.4f} "
          f"{float(r[col['L_cov']]):8.4f} {float(r[col['lr']]):9.2e}")
