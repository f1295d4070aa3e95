"""
Quickstart: the energy model in a deepinv pipeline
==================================================

The quickstart of the README, as it is (``tests/test_readme.py`` runs the same code): the bundled
model restores Fashion-MNIST test images seen through 70 % random inpainting (30 % of the
pixels observed, ``mask=0.3``) with noise 0.01,

* with deepinv's DiffPIR driven by :class:`deepinv_energy.EnergyDenoiser` (a
  :class:`deepinv.models.Denoiser`),
* with posterior draws of our :class:`~deepinv_energy.PredictorCorrectorSampler` (mean and
  per-pixel standard deviation of 4 draws),
* with the one-evaluation posterior mean and standard deviation of
  :class:`deepinv_energy.EnergyMMSE`.

:class:`~deepinv_energy.BlindEstimator` and :class:`~deepinv_energy.GaussianBlurFamily` are
imported for the blind examples of the README; they are used in
:ref:`sphx_glr_auto_examples_blind_plot_blind_blur.py`.
"""

# %%
# The README's code
# -----------------
# (seeded first: the measurement noise and DiffPIR draw from torch's global generator)

import torch  # noqa: E402

torch.manual_seed(0)

import deepinv as dinv
from deepinv_energy import EnergyUNet, EnergyDenoiser, EnergyMMSE, BlindEstimator, GaussianBlurFamily
from deepinv_energy.demo import bundled_test_images
from deepinv_energy.sampling import PredictorCorrectorSampler

model = EnergyUNet.from_pretrained("fashion-mnist-28")              # bundled, no download
x, _ = bundled_test_images(4)
physics = dinv.physics.Inpainting((1, 28, 28), mask=0.3, noise_model=dinv.physics.GaussianNoise(0.01))
y = physics(x)
x_diffpir = dinv.sampling.DiffPIR(EnergyDenoiser(model), dinv.optim.data_fidelity.L2(), sigma=0.01, max_iter=30)(y, physics)
draws = PredictorCorrectorSampler(model, n_levels=40, predictor="covariance").draw(y, physics, n=4, seed=0)
mean, std = draws.mean(), draws.x.std(0)
x_mmse, std_mmse = EnergyMMSE(model)(y, physics, return_std=True)     # one network evaluation

# %%
# What it returns
# ---------------
#
# PSNRs on these 4 images only; the measured comparison on 64 images is on the
# :doc:`/benchmarks` page. One of the three answers is poor here, for a known reason:
#
# * DiffPIR runs with the README's untuned settings (``max_iter=30``, deepinv's default
#   ``lambda_``). Tuned on training images it reaches 15.5 dB on 70 % random inpainting with this
#   model (``DiffPIR-E``, ``benchmarks/results/restoration.md``), where deepinv's DDRM and DPS reach
#   22.2 and 22.1 dB: :doc:`/deepinv_pipeline` lists the settings that work.
# * :class:`~deepinv_energy.EnergyMMSE` gives the posterior mean from ONE evaluation at the
#   measurement's covariance, so it is only as good as the model's anisotropic part. It is not
#   poor here: the bundled model (the edm + wiener retraining) gets 21.37 dB on random inpainting
#   with it (``MMSE-E`` in ``benchmarks/results/restoration.md``, 64 test images), against 22.22 dB
#   for DDRM with 40 evaluations of the same network (2 draws of 20). The model trained with the
#   paper's loss got 6.33 dB (row ``paper-loss-2400`` of ``benchmarks/results/mmse.md``).

import matplotlib.pyplot as plt  # noqa: E402

psnr = dinv.metric.PSNR()
rows = [
    ("measurement", y, None),
    ("DiffPIR + EnergyDenoiser", x_diffpir, psnr(x_diffpir.clamp(0, 1), x)),
    ("mean of 4 draws (PC sampler)", mean, psnr(mean.clamp(0, 1), x)),
    ("EnergyMMSE (one evaluation)", x_mmse, psnr(x_mmse.clamp(0, 1), x)),
    ("ground truth", x, None),
]
for name, _, p in rows:
    if p is not None:
        per_image = ", ".join(f"{v:.1f}" for v in p.tolist())
        print(f"{name:30s} PSNR {p.mean():5.2f} dB (per image: {per_image})")

fig, axes = plt.subplots(2, 5, figsize=(10, 4.4))
for j, (name, img, _) in enumerate(rows):
    for i in range(2):
        axes[i, j].imshow(img[i, 0].detach().clamp(0, 1), cmap="gray", vmin=0, vmax=1)
        axes[i, j].set_axis_off()
    axes[0, j].set_title(name, fontsize=8)
fig.tight_layout()

# %%
# The two uncertainty maps: the standard deviation over the 4 posterior draws and the
# one-evaluation posterior standard deviation of :class:`~deepinv_energy.EnergyMMSE`. Each panel
# has its own scale (its colour bar): the two estimates differ in magnitude, and a shared scale
# would show the smaller one as black.

from deepinv_energy.demo import show_panel  # noqa: E402

fig, axes = plt.subplots(1, 4, figsize=(9.2, 2.4))
for i in range(2):
    for j, (name, s) in enumerate([("std of 4 draws", std), ("EnergyMMSE std", std_mmse)]):
        ax = axes[2 * i + j]
        show_panel(ax, s[i], std=True)
        ax.set_title(f"image {i + 1}: {name}", fontsize=8)
fig.tight_layout()
