"""
Posterior samples and uncertainty maps
======================================

The predictor-corrector sampler (:class:`deepinv_energy.PredictorCorrectorSampler`) takes
``(y, physics)`` like deepinv's samplers. Several draws give the posterior mean and a per-pixel
standard deviation: high where the measurement leaves the image undetermined (inside the missing
box; on edges after blurring). The error of the mean is shown next to it, on the same colour
scale, to see where the uncertainty map is right.
"""

import deepinv as dinv
import matplotlib.pyplot as plt
import torch

from deepinv_energy import EnergyUNet, PredictorCorrectorSampler
from deepinv_energy.demo import bundled_test_images

model = EnergyUNet.from_pretrained("fashion-mnist-28")
x, _ = bundled_test_images(2)
x = x[1:2]

mask = torch.ones(1, 1, 28, 28)
mask[..., 8:20, 8:20] = 0
problems = {
    "box inpainting": dinv.physics.Inpainting(
        (1, 28, 28), mask=mask, noise_model=dinv.physics.GaussianNoise(0.01)
    ),
    "deblurring": dinv.physics.BlurFFT(
        (1, 28, 28),
        filter=dinv.physics.functional.gaussian_blur(sigma=(1.5, 1.5)),
        noise_model=dinv.physics.GaussianNoise(0.01),
    ),
}
# covariance predictor, no corrector: 40 network evaluations per draw
sampler = PredictorCorrectorSampler(model, n_levels=40, n_corrector=0, predictor="covariance")

# %%
# Six draws per problem, one row each. Images share the grey scale [0, 1]; the standard deviation
# and the absolute error of the mean share one colour scale per row (the colour bars).

torch.manual_seed(0)
fig, axes = plt.subplots(len(problems), 7, figsize=(13, 2.2 * len(problems)))
for row, (name, physics) in zip(axes, problems.items()):
    y = physics(x)
    draws = sampler.draw(y, physics, n=6, seed=0).x[:, 0].clamp(0, 1)  # (n, C, H, W)
    mean, std = draws.mean(0), draws.std(0)
    error = (mean - x[0]).abs()
    vmax = float(torch.maximum(std.max(), error.max()))

    panels = [(y[0], name), (draws[0], "sample 1"), (draws[1], "sample 2"), (mean, "mean of 6"),
              (x[0], "truth")]
    for ax, (img, title) in zip(row[[0, 1, 2, 3, 6]], panels):
        ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
    for ax, (img, title) in zip(row[[4, 5]], [(std, "posterior std"), (error, "|mean - truth|")]):
        im = ax.imshow(img[0], cmap="magma", vmin=0, vmax=vmax)
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    for ax in row:
        ax.set_axis_off()
    inside = std[0, 8:20, 8:20].mean() if name == "box inpainting" else None
    msg = f", inside the box {inside:.3f}" if inside is not None else ""
    print(f"{name}: mean posterior std {std.mean():.3f}{msg}; "
          f"mean absolute error {error.mean():.3f}")
fig.tight_layout()
