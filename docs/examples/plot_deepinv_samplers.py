"""
Drop the energy model into deepinv's DiffPIR and DPS
=====================================================

:class:`deepinv_energy.EnergyDenoiser` is a :class:`deepinv.models.Denoiser`: its output is the
Tweedie posterior mean :math:`x - \\sigma^2 \\nabla_x U(x, \\sigma^2 I)`. Any deepinv algorithm
that takes a denoiser runs with it unchanged. Here: Gaussian deblurring of a Fashion-MNIST test
image with deepinv's DiffPIR and DPS, next to our own predictor-corrector sampler.
"""

import deepinv as dinv
import torch

from deepinv_energy import EnergyDenoiser, EnergyUNet
from deepinv_energy.demo import bundled_test_images
from deepinv_energy.sampling import PredictorCorrectorSampler

torch.manual_seed(0)
model = EnergyUNet.from_pretrained("fashion-mnist-28")
denoiser = EnergyDenoiser(model)

x, _ = bundled_test_images(1)
physics = dinv.physics.BlurFFT(
    (1, 28, 28),
    filter=dinv.physics.functional.gaussian_blur(sigma=(1.0, 1.0)),
    noise_model=dinv.physics.GaussianNoise(0.02),
)
y = physics(x)

# %%
# deepinv's samplers, driven by the energy denoiser
diffpir = dinv.sampling.DiffPIR(denoiser, dinv.optim.data_fidelity.L2(), sigma=0.02, max_iter=20)
dps = dinv.sampling.DPS(denoiser, num_steps=50, rng=torch.Generator().manual_seed(0))
with torch.no_grad():
    x_diffpir = diffpir(y, physics)
x_dps = dps(y, physics, seed=0).float()

# %%
# our sampler: exact posterior score of the anisotropic denoising problem, no likelihood approximation
ours = PredictorCorrectorSampler(model, n_levels=40, n_corrector=0, predictor="covariance")
x_ours = ours.draw(y, physics, n=4, seed=0).x.mean(0)

psnr = dinv.metric.PSNR()
dinv.utils.plot(
    [y, x_diffpir, x_dps, x_ours, x],
    titles=[
        "measurement",
        f"DiffPIR {psnr(x_diffpir, x).item():.1f} dB",
        f"DPS {psnr(x_dps.clamp(0, 1), x).item():.1f} dB",
        f"ours (mean of 4) {psnr(x_ours, x).item():.1f} dB",
        "ground truth",
    ],
    figsize=(10, 2.5),
)
