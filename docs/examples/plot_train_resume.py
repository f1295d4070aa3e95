"""
Train a small energy model and resume from its checkpoint
=========================================================

Training uses only clean images and two losses: whitened denoising score matching and the
covariance score loss :math:`\\|h - \\tfrac12(1 - z^2)\\|^2`. Here a tiny model is trained for a few
steps on samples of a Gaussian mixture, interrupted, and resumed from its checkpoint; the
resumed run continues exactly where the first stopped. The same runs on Fashion-MNIST with
``deepinv-energy train --data fashion-mnist`` (or under ``torchrun`` for several processes).
"""

import tempfile

from deepinv_energy.training import TrainConfig, Trainer

out = tempfile.mkdtemp()
config = TrainConfig(data="gmm:1,8,8,3,0,256", out=out, steps=6, batch_size=8, width=8,
                     ckpt_every=3, log_every=1, threads=1)

first = Trainer(config)
first.fit(max_steps=3)  # stops after 3 steps, a checkpoint is written
print("stopped at step", first.step)

second = Trainer(config)
second.try_resume()  # picks up model, EMA, optimizer, RNG states and step
print("resumed at step", second.step)
second.fit()
print("finished at step", second.step)
with open(f"{out}/log.csv") as f:
    print(f.read())
