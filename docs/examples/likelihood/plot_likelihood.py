"""
Log-likelihoods of images and out-of-distribution scores
========================================================

The energy at a small noise level is a normalized negative log-density, so it gives
likelihoods in bits per dimension. Convention used here: images in :math:`[0, 1]`, uniformly
dequantized (:math:`x + u/256`), density of :math:`x + \\sigma n` with :math:`\\sigma = 10^{-3}`,
plus 8 bits for the 256 grey levels:
:math:`\\mathrm{bpd} = U(x, \\sigma^2 I) / (d \\ln 2) + 8`.
Images unlike the training data (flipped, inverted, noise) get much higher values.
"""

import matplotlib.pyplot as plt
import torch

from deepinv_energy import Covariance, EnergyUNet
from deepinv_energy.demo import bundled_test_images

torch.manual_seed(0)  # all draws below also go through the seeded generator g
model = EnergyUNet.from_pretrained("fashion-mnist-28")
x, _ = bundled_test_images(10)
g = torch.Generator().manual_seed(0)
sets = {
    "test images": x,
    "upside down": x.flip(-2),
    "inverted": 1 - x,
    "uniform noise": torch.rand(x.shape, generator=g),
}


def bits_per_dim(images):
    deq = images + torch.rand(images.shape, generator=g) / 256
    energy = model.energy(deq, Covariance.isotropic(1e-6, deq)).detach()
    return energy / (images[0].numel() * torch.log(torch.tensor(2.0))) + 8


scores = {name: bits_per_dim(images) for name, images in sets.items()}
for name, s in scores.items():
    print(f"{name:14s} {s.mean():7.2f} bits/dim")

fig, ax = plt.subplots(figsize=(6, 2.8))
ax.boxplot(list(scores.values()), tick_labels=list(scores))
ax.set_ylabel("bits / dim")
fig.tight_layout()
