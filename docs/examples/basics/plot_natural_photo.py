"""
A natural photograph: the size-free gray model
==============================================

The bundled ``natural-gray`` model is a size-free :class:`~deepinv_energy.EnergyUNet`: fully
convolutional, with stationary data statistics, so it takes a gray image of any height and width
divisible by 8. It was trained on 32x32 patches of photographs of Debian's wallpaper packages and
never saw scikit-image's classic test photos, which serve as its test set
(:func:`deepinv_energy.data.natural_test_images`). It is an early CPU checkpoint: its step and what
it achieves are in ``benchmarks/results/natural.md``.

Here it restores a 128x128 crop of ``chelsea`` (gray) seen through 50 % random inpainting with
noise 0.01, with the one-evaluation posterior mean of :class:`~deepinv_energy.EnergyMMSE` and with
deepinv's DDRM driven by :class:`~deepinv_energy.EnergyDenoiser`, and denoises it with the
model's Tweedie denoiser.
"""

# %%
# Load the model and a held-out photo
# -----------------------------------

import json

import torch

torch.manual_seed(0)

import deepinv as dinv  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

from deepinv_energy import EnergyDenoiser, EnergyMMSE, EnergyUNet  # noqa: E402
from deepinv_energy.data import natural_test_images  # noqa: E402
from deepinv_energy.demo import show_panel  # noqa: E402
from deepinv_energy.models.pretrained import resolve_pretrained  # noqa: E402

model = EnergyUNet.from_pretrained("natural-gray")  # bundled, no download
with open(resolve_pretrained("natural-gray")[1]) as fh:
    print("natural-gray: trained steps", json.load(fh)["metadata"].get("step"))
photo = natural_test_images(names=["chelsea"])["chelsea"]  # (1, 300, 451), never used in training
x = photo[None, :, 80:208, 150:278].contiguous()  # a 128x128 crop around the cat's face

# %%
# Inpainting: one evaluation, and DDRM with the energy's denoiser
# ---------------------------------------------------------------

physics = dinv.physics.Inpainting(x.shape[1:], mask=0.5, noise_model=dinv.physics.GaussianNoise(0.01),
                                  rng=torch.Generator().manual_seed(1))
y = physics(x)
x_mmse, std_mmse = EnergyMMSE(model)(y, physics, return_std=True)
x_ddrm = dinv.sampling.DDRM(EnergyDenoiser(model), sigmas=torch.linspace(1, 0, 10)[:-1].tolist(), eta=0.85)(y, physics)

# %%
# Denoising with the Tweedie denoiser of the energy
# -------------------------------------------------

sigma = 0.1
y_noisy = x + sigma * torch.randn_like(x)
with torch.no_grad():
    x_den = EnergyDenoiser(model)(y_noisy, sigma)

psnr = dinv.metric.PSNR()
for name, est, ref in [("inpainting: measurement", y, x), ("inpainting: EnergyMMSE", x_mmse, x),
                       ("inpainting: DDRM + EnergyDenoiser", x_ddrm, x), ("denoising: noisy", y_noisy, x),
                       ("denoising: Tweedie", x_den, x)]:
    print(f"{name:36s} PSNR {float(psnr(est.clamp(0, 1), ref)):5.2f} dB")

fig, axes = plt.subplots(1, 7, figsize=(14, 2.6))
panels = [("measurement", y), ("EnergyMMSE", x_mmse), ("DDRM-E", x_ddrm), ("truth", x),
          ("noisy (0.1)", y_noisy), ("Tweedie", x_den)]
for ax, (name, img) in zip(axes, panels):
    ax.imshow(img[0, 0].detach().clamp(0, 1), cmap="gray", vmin=0, vmax=1)
    ax.set_title(name, fontsize=9)
    ax.set_axis_off()
show_panel(axes[-1], std_mmse[0], std=True)
axes[-1].set_title("EnergyMMSE std", fontsize=9)
fig.tight_layout()
plt.show()
