"""
Posterior samples and uncertainty maps
======================================

The predictor-corrector sampler (:class:`deepinv_energy.sampling.PredictorCorrectorSampler`)
takes ``(y, physics)`` like deepinv's samplers. Several draws give the posterior mean and a
per-pixel standard deviation: high where the measurement leaves the image undetermined (inside
the missing box; on edges after blurring).
"""

import deepinv as dinv
import torch

from deepinv_energy import EnergyUNet
from deepinv_energy.demo import bundled_test_images
from deepinv_energy.sampling import PredictorCorrectorSampler

model = EnergyUNet.from_pretrained("fashion-mnist-28")
x, _ = bundled_test_images(2)
x = x[1:2]

mask = torch.ones(1, 1, 28, 28)
mask[..., 8:20, 8:20] = 0
problems = {
    "box inpainting": dinv.physics.Inpainting((1, 28, 28), mask=mask, noise_model=dinv.physics.GaussianNoise(0.01)),
    "deblurring": dinv.physics.BlurFFT(
        (1, 28, 28),
        filter=dinv.physics.functional.gaussian_blur(sigma=(1.5, 1.5)),
        noise_model=dinv.physics.GaussianNoise(0.01),
    ),
}
sampler = PredictorCorrectorSampler(model, n_levels=40, n_corrector=0, predictor="covariance")

torch.manual_seed(0)
for name, physics in problems.items():
    y = physics(x)
    draws = sampler.draw(y, physics, n=6, seed=0).x[:, 0]  # (n, C, H, W)
    dinv.utils.plot(
        [y, draws[0:1], draws[1:2], draws.mean(0, keepdim=True), draws.std(0, keepdim=True), x],
        titles=[name, "sample 1", "sample 2", "mean", "std", "truth"],
        figsize=(12, 2.4),
    )
