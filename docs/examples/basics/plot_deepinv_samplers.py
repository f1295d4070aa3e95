"""
The energy model inside deepinv's DPS, DiffPIR and DDRM
=======================================================

:class:`deepinv_energy.EnergyDenoiser` is a :class:`deepinv.models.Denoiser`: its output is the
Tweedie posterior mean :math:`x - \\sigma^2 \\nabla_x U(x, \\sigma^2 I)`, so every deepinv algorithm
that takes a denoiser runs with it unchanged. Here: Gaussian deblurring (blur std 1 pixel, noise
0.01, the ``gblur-0.01`` task of the benchmark) of Fashion-MNIST test images with deepinv's DPS,
DiffPIR and DDRM, next to our :class:`~deepinv_energy.MALASampler`.

The settings are those of ``benchmarks/restoration.py``, which produced
``benchmarks/results/restoration.md``: 20 network evaluations per draw for every method, the mean
of 2 draws, and deepinv's main hyper-parameter tuned for this task on training images
(``benchmarks/results/raw/tuned.json``): DPS ``weight=81``, DiffPIR ``lambda_=30``, DDRM
``eta=0.85``. With deepinv's defaults (DPS ``weight=1``, DiffPIR ``lambda_=7``) DPS gets 14.51 dB
instead of 21.09 and DiffPIR 21.69 dB instead of 22.81 on the 8 tuning images
(``benchmarks/results/raw/tune_scores.json``); see :doc:`/deepinv_pipeline` for the settings of
the other tasks.
"""

import deepinv as dinv
import torch

from deepinv_energy import EnergyDenoiser, EnergyUNet, MALASampler
from deepinv_energy.demo import bundled_test_images

torch.manual_seed(0)  # everything below is seeded: the same figure and numbers at every build
model = EnergyUNet.from_pretrained("fashion-mnist-28")
denoiser = EnergyDenoiser(model)

x, _ = bundled_test_images(4)
physics = dinv.physics.BlurFFT(
    (1, 28, 28),
    filter=dinv.physics.functional.gaussian_blur(sigma=(1.0, 1.0)),
    noise_model=dinv.physics.GaussianNoise(0.01, rng=torch.Generator().manual_seed(1)),
)
y = physics(x)

STEPS, DRAWS = 20, 2  # network evaluations per draw, draws per image


def mean_of_draws(run):
    """Mean of DRAWS draws; draw k is seeded with k (global RNG and generator)."""
    draws = []
    for k in range(DRAWS):
        torch.manual_seed(k)
        draws.append(run(k).detach().float().clamp(0, 1))
    return torch.stack(draws).mean(0)


# %%
# deepinv's samplers, driven by the energy's denoiser
# ---------------------------------------------------
# DPS differentiates through the denoiser (it needs autograd); DiffPIR and DDRM run without.


def diffpir(k):
    data_fidelity = dinv.optim.data_fidelity.L2()
    algo = dinv.sampling.DiffPIR(denoiser, data_fidelity, sigma=0.01, max_iter=STEPS,
                                 lambda_=30.0)
    return algo(y, physics, seed=k)


def ddrm(k):
    sigmas = torch.linspace(1, 0.01, STEPS).numpy()
    return dinv.sampling.DDRM(denoiser, sigmas=sigmas, eta=0.85)(y, physics, seed=k)


def dps(k):
    algo = dinv.sampling.DPS(denoiser, num_steps=STEPS, weight=81.0, dtype=torch.float32,
                             rng=torch.Generator().manual_seed(k))
    return algo(y, physics, seed=k)


with torch.no_grad():
    x_diffpir = mean_of_draws(diffpir)
    x_ddrm = mean_of_draws(ddrm)
x_dps = mean_of_draws(dps)

# %%
# Our sampler
# -----------
# Covariance predictor and one Metropolis-adjusted corrector step per level: 10 levels, 20
# network evaluations per draw (the benchmark's ``MALA-E``). It uses the exact posterior score of
# the anisotropic denoising problem the blur becomes in the Hartley basis: no likelihood
# approximation, no hyper-parameter tuned per task.

ours = MALASampler(model, sigma_max=10.0, n_levels=STEPS // 2, n_corrector=1,
                   predictor="covariance")
x_mala = ours.draw(y, physics, n=DRAWS, seed=0).x.float().clamp(0, 1).mean(0)

# %%
# Results
# -------
# PSNR of the mean of 2 draws on these 4 images. The same methods on 64 test images
# (``benchmarks/results/restoration.md``, table ``gblur-0.01``): DPS-E 21.27, DiffPIR-E 23.20,
# DDRM-E 27.31 and MALA-E 26.59 dB. Four images vary by a few dB around those; the ranking of the
# benchmark is what to rely on. With a plain denoiser of the same backbone and training budget
# (``-P`` in the benchmark) deepinv's methods get 21.60, 24.17 and 27.65 dB there.

psnr = dinv.metric.PSNR()
results = {"DPS": x_dps, "DiffPIR": x_diffpir, "DDRM": x_ddrm, "MALA (ours)": x_mala}
print(f"{'method':12s} {'PSNR here (4 images)':>20s}")
for name, est in results.items():
    print(f"{name:12s} {psnr(est, x).mean().item():17.2f} dB")

dinv.utils.plot(
    [y, x_dps, x_diffpir, x_ddrm, x_mala, x],
    titles=["measurement", "DPS", "DiffPIR", "DDRM", "MALA (ours)", "ground truth"],
    figsize=(12, 8),
)
