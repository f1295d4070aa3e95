r"""The demo: restore bundled Fashion-MNIST test images with the bundled model."""

from __future__ import annotations

import time
from importlib import resources

import deepinv as dinv
import numpy as np
import torch

from .problems import simulate

__all__ = ["bundled_test_images", "demo_physics", "run_demo", "show_panel"]


def bundled_test_images(n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first Fashion-MNIST test image of each class, shipped with the package.

    :param int n: how many (at most 10).
    :return: ``(images (n, 1, 28, 28) in [0, 1], labels (n,))``.
    """
    with resources.files("deepinv_energy").joinpath("data/fashion_mnist_test_samples.npz").open("rb") as f:
        data = np.load(f)
        images, labels = data["images"], data["labels"]
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return (x, y) if n is None else (x[:n], y[:n])


def demo_physics(batch_size: int, img_size=(1, 28, 28), noise: float = 0.01, seed: int = 0) -> dict:
    """The three demo tasks as deepinv physics: box inpainting, random inpainting, Gaussian deblurring."""
    c, h, w = img_size
    box = torch.ones(batch_size, c, h, w)
    box[..., h // 2 - 6 : h // 2 + 6, w // 2 - 6 : w // 2 + 6] = 0
    g = torch.Generator().manual_seed(seed)
    random_mask = (torch.rand(batch_size, 1, h, w, generator=g) > 0.7).float().expand(-1, c, -1, -1)
    kernel = dinv.physics.functional.gaussian_blur(sigma=(1.0, 1.0))
    return {
        "box inpainting 12x12": dinv.physics.Inpainting(img_size, mask=box, noise_model=dinv.physics.GaussianNoise(noise)),
        "random inpainting 70%": dinv.physics.Inpainting(
            img_size, mask=random_mask.contiguous(), noise_model=dinv.physics.GaussianNoise(noise)
        ),
        "gaussian deblurring s=1": dinv.physics.BlurFFT(img_size, filter=kernel, noise_model=dinv.physics.GaussianNoise(noise)),
    }


def run_demo(model=None, n_images: int = 3, n_samples: int = 4, n_levels: int = 60, seed: int = 0,
             out: str | None = "demo.png", verbose: bool = True) -> dict:
    r"""Restore bundled test images on three tasks and save a figure.

    Each task runs the predictor-corrector sampler (:class:`deepinv_energy.sampling.PredictorCorrectorSampler`)
    with ``n_samples`` posterior draws per image; the restoration is their mean and the
    uncertainty their standard deviation. The table also gives the PSNR of the one-evaluation
    posterior mean (:class:`deepinv_energy.EnergyMMSE`, anisotropic Tweedie at the measurement's
    covariance) next to the sampler's.

    :param EnergyModel model: energy model (default: the bundled ``fashion-mnist-28``).
    :param int n_images: images per task (at most 10).
    :param int n_samples: posterior draws per image.
    :param int n_levels: levels of the noise schedule.
    :param int seed: seed of measurements and samplers.
    :param str out: PNG path of the figure (rows: tasks x images; columns: observation,
        restoration, posterior std, ground truth), or ``None``.
    :param bool verbose: print the PSNR table.
    :return: dict task -> ``{"psnr": float, "psnr_observation": float, "seconds": float,
        "psnr_mmse": float, "seconds_mmse": float}`` (``*_mmse``: the one-evaluation posterior mean).
    """
    from .mmse import EnergyMMSE
    from .models.unet import EnergyUNet
    from .sampling import PredictorCorrectorSampler

    if model is None:
        model = EnergyUNet.from_pretrained("fashion-mnist-28")
    model.eval()
    x, _ = bundled_test_images(n_images)
    psnr = dinv.metric.PSNR()
    sampler = PredictorCorrectorSampler(model, sigma_max=10.0, sigma_min=0.01, n_levels=n_levels, n_corrector=0,
                                        predictor="covariance", verbose=verbose)
    mmse = EnergyMMSE(model, lam_min=sampler.iterator.lam_min, lam_max=sampler.iterator.lam_max,
                      fill=sampler.iterator.fill)
    results, rows = {}, []
    tasks = demo_physics(n_images, seed=seed)
    if verbose:
        print(f"restoring {n_images} bundled test image(s) on {len(tasks)} tasks: {n_samples} posterior draws of "
              f"{n_levels} levels each, then one evaluation", flush=True)
    for t, (name, physics) in enumerate(tasks.items()):
        start = time.perf_counter()
        y = simulate(physics, x, torch.Generator().manual_seed(seed + t))
        draws = sampler.draw(y, physics, n=n_samples, seed=seed + t)
        mean, std = draws.x.mean(0), draws.x.std(0)
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        one_eval = mmse(y, physics)
        seconds_mmse = time.perf_counter() - start
        obs = y if y.shape == x.shape else physics.A_adjoint(y)
        results[name] = {
            "psnr": float(psnr(mean.clamp(0, 1), x).mean()),
            "psnr_observation": float(psnr(obs.clamp(0, 1), x).mean()),
            "seconds": seconds,
            "psnr_mmse": float(psnr(one_eval.clamp(0, 1), x).mean()),
            "seconds_mmse": seconds_mmse,
        }
        rows += [(name, obs[i], mean[i], std[i], x[i]) for i in range(n_images)]
        if verbose:
            print(f"  {name}: done in {seconds + seconds_mmse:.1f}s", flush=True)
    if verbose:
        print(f"PSNR: sampler = mean of {n_samples} predictor-corrector draws ({n_levels} levels); "
              "1-eval = EnergyMMSE, the posterior mean from one energy evaluation")
        print(f"{'task':26s} {'observation':>12s} {'sampler':>12s} {'time':>7s} {'1-eval':>12s} {'time':>7s}")
        for name, r in results.items():
            print(f"{name:26s} {r['psnr_observation']:10.2f}dB {r['psnr']:10.2f}dB {r['seconds']:6.1f}s"
                  f" {r['psnr_mmse']:10.2f}dB {r['seconds_mmse']:6.2f}s")
    if out is not None:
        _figure(rows, out)
        if verbose:
            print(f"figure written to {out}")
    return results


def show_panel(ax, img, std: bool = False):
    """Show one (C, H, W) or (H, W) image on a matplotlib axis: grey on [0, 1], or, for a standard
    deviation (``std=True``), the magma map on its own scale ``[0, max]`` with a colour bar (std maps of
    different tasks and images differ by orders of magnitude, so no scale is shared)."""
    import matplotlib.pyplot as plt

    a = img.detach().cpu().float().squeeze().numpy()
    if std:
        im = ax.imshow(a, cmap="magma", vmin=0, vmax=max(float(a.max()), 1e-12))
        bar = plt.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
        bar.ax.tick_params(labelsize=6)
    else:
        ax.imshow(a, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([]), ax.set_yticks([])


def _figure(rows, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = ["observation", "restoration (mean)", "posterior std\n(own scale per row)", "ground truth"]
    fig, axes = plt.subplots(len(rows), 4, figsize=(7.2, 1.7 * len(rows)), squeeze=False)
    for r, (name, *imgs) in enumerate(rows):
        for c, img in enumerate(imgs):
            ax = axes[r, c]
            show_panel(ax, img, std=c == 2)
            if r == 0:
                ax.set_title(titles[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(name, fontsize=6)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
