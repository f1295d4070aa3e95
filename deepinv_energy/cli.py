"""The ``deepinv-energy`` command line."""

from __future__ import annotations

import argparse
import sys

from . import __version__


class UserError(Exception):
    """A mistake in the command line: printed without a traceback."""


def _evaluate(args) -> int:
    import math

    import torch

    from .covariance import Covariance
    from .data import load_images

    try:
        noises = [float(v) for v in args.noise.split(",")]
    except ValueError:
        raise UserError(f"--noise must be comma-separated numbers, got {args.noise!r}") from None
    try:
        x = load_images(args.data, split=args.split, limit=args.n)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot load --data {args.data!r}: {err}") from None
    model = _load_model(args.model)
    if x.shape[1] == 3 and model.config.channels == 1:
        x = x.mean(1, keepdim=True)  # grey model, colour files
    if tuple(x.shape[1:]) != (model.config.channels, model.config.height, model.config.width_px):
        raise UserError(f"images of shape {tuple(x.shape[1:])} do not fit the model's "
                        f"{(model.config.channels, model.config.height, model.config.width_px)}")
    g = torch.Generator().manual_seed(args.seed)
    d = x[0].numel()
    print(f"{len(x)} images from {args.data} ({args.split}), model {args.model}")
    for s in noises:
        if s <= 0:
            raise UserError("--noise levels must be positive")
        se, se_in = 0.0, 0.0
        for xb in x.split(args.batch_size):
            y = xb + s * torch.randn(xb.shape, generator=g)
            den = model.denoise(y, Covariance.isotropic(s**2, y)).clamp(0, 1)
            se += ((den - xb) ** 2).flatten(1).mean(1).log10().sum().item()
            se_in += ((y - xb) ** 2).flatten(1).mean(1).log10().sum().item()
        print(f"denoising  noise {s:<6g} input {-10 * se_in / len(x):6.2f} dB  output {-10 * se / len(x):6.2f} dB")
    bits = []
    for xb in x.split(args.batch_size):
        deq = xb + torch.rand(xb.shape, generator=g) / 256  # uniform dequantization
        with torch.no_grad():
            u = model.energy(deq, Covariance.isotropic(1e-6, deq)).double()
        bits.append(u / (d * math.log(2)) + 8)
    print(f"NLL {torch.cat(bits).mean():.3f} bits/dim (uniform dequantization, sigma=1e-3 smoothing, +8 bits for 256 levels)")
    return 0


def _train(args) -> int:
    from .training import run_from_args

    return run_from_args(args)


def _demo(args) -> int:
    import torch

    from .demo import run_demo

    if not 1 <= args.images <= 10:
        raise UserError("--images must be between 1 and 10")
    if args.samples < 2 or args.levels < 2:
        raise UserError("--samples and --levels must be at least 2")
    torch.set_num_threads(args.threads) if args.threads else None
    model = None
    if args.model != "fashion-mnist-28":
        from .models.unet import EnergyUNet

        model = EnergyUNet.from_pretrained(args.model)
    run_demo(model, n_images=args.images, n_samples=args.samples, n_levels=args.levels, seed=args.seed, out=args.out)
    return 0


def _load_model(name):
    from .models.unet import EnergyUNet

    return EnergyUNet.from_pretrained(name).eval()


def _read_image(path):
    """A grey image file (PNG/JPEG/...) or a .npy array as a (1, 1, H, W) float tensor in [0, 1]."""
    import numpy as np
    import torch

    if str(path).endswith(".npy"):
        a = np.load(path).astype(np.float32)
        a = a / 255.0 if a.max() > 1.5 else a
    else:
        from PIL import Image

        try:
            a = np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255.0
        except OSError as err:
            raise UserError(f"cannot read image {path!r}: {err}") from None
    if a.ndim != 2:
        raise UserError(f"{path!r} must be a single grey image, got an array of shape {a.shape}")
    return torch.from_numpy(a)[None, None]


def _save_row(path, images, titles, cmap=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(images), figsize=(2.0 * len(images), 2.3), squeeze=False)
    for ax, img, title in zip(axes[0], images, titles):
        ax.imshow(img.detach().cpu().squeeze().numpy(), cmap=("magma" if "std" in title else "gray"),
                  vmin=0, vmax=None if "std" in title else 1)
        ax.set_title(title, fontsize=8), ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _physics_from_args(args, y):
    """The deepinv physics of a measurement described on the command line."""
    import deepinv as dinv

    _, c, h, w = y.shape
    noise = dinv.physics.GaussianNoise(args.noise) if args.noise > 0 else dinv.physics.ZeroNoise()
    if args.task == "denoise":
        return dinv.physics.Denoising(noise_model=noise)
    if args.task == "gaussian-blur":
        k = dinv.physics.functional.gaussian_blur(sigma=(args.blur_std, args.blur_std))
        return dinv.physics.BlurFFT((c, h, w), filter=k, noise_model=noise)
    if args.task == "decimate":
        return dinv.physics.Downsampling((c, h * args.factor, w * args.factor), filter=None, factor=args.factor,
                                         noise_model=noise)
    if args.task == "inpaint":
        if args.mask is None:
            raise UserError("--task inpaint needs --mask MASK (an image, white = observed)")
        mask = (_read_image(args.mask) > 0.5).float()
        if mask.shape[-2:] != (h, w):
            raise UserError(f"mask is {tuple(mask.shape[-2:])}, image is {(h, w)}")
        return dinv.physics.Inpainting((c, h, w), mask=mask, noise_model=noise)
    raise UserError(f"unknown task {args.task!r}")


def _sampler(args, model):
    from .sampling import AdaptiveSampler, MALASampler, PredictorCorrectorSampler

    if args.levels < 2:
        raise UserError("--levels must be at least 2")
    common = dict(sigma_max=10.0, sigma_min=0.01, verbose=True)
    if args.sampler == "pc":
        return PredictorCorrectorSampler(model, n_levels=args.levels, n_corrector=0, predictor="covariance", **common)
    if args.sampler == "mala":
        return MALASampler(model, n_levels=args.levels, **common)
    return AdaptiveSampler(model, **common)


def _restore(args) -> int:
    y = _read_image(args.image)
    physics = _physics_from_args(args, y)
    model = _load_model(args.model)
    if args.method == "mmse":
        from .mmse import EnergyMMSE

        mean, std = EnergyMMSE(model)(y, physics, return_std=True)
        titles = ["measurement", "posterior mean (1 evaluation)", "posterior std (1 evaluation)"]
    else:
        out = _sampler(args, model).draw(y, physics, n=args.samples, seed=args.seed)
        mean, std = out.x.mean(0), out.x.std(0)
        titles = ["measurement", "posterior mean", "posterior std"]
    _save_row(args.out, [y, mean, std], titles)
    print(f"restoration ({args.method}) written to {args.out}")
    return 0


def _sample(args) -> int:
    model = _load_model(args.model)
    shape = (model.config.channels, model.config.height, model.config.width_px)
    out = _sampler(args, model).generate(args.n, shape, seed=args.seed)
    x = out.x.reshape(-1, *shape)
    import torchvision

    torchvision.utils.save_image(x.clamp(0, 1), args.out, nrow=int(len(x) ** 0.5 + 0.999), padding=1)
    print(f"{len(x)} samples written to {args.out}")
    return 0


def _parse_grid(text, name, allow_zero=False):
    import torch

    try:
        parts = [float(v) for v in text.split(":")]
    except ValueError:
        raise UserError(f"{name} must be START:STOP:COUNT or a single value, got {text!r}") from None
    if len(parts) == 1:
        return parts[0]
    if len(parts) != 3 or parts[2] < 1 or parts[0] < 0 or (parts[0] == 0 and not allow_zero) or parts[1] <= parts[0]:
        lower = "0 <= START" if allow_zero else "0 < START"
        raise UserError(f"{name} must be START:STOP:COUNT with {lower} < STOP, got {text!r}")
    return torch.linspace(parts[0], parts[1], int(parts[2]))


def _blind(args) -> int:
    from .blind import BlindEstimator, DenoisingFamily, GaussianBlurFamily, MotionBlurFamily

    y = _read_image(args.image)
    img_size = tuple(y.shape[1:])
    noise = _parse_grid(args.noise, "--noise")
    if args.family == "gaussian-blur":
        family = GaussianBlurFamily(img_size, widths=_parse_grid(args.widths, "--widths"), noise=noise)
        names = ["width"]
    elif args.family == "motion-blur":
        family = MotionBlurFamily(img_size, lengths=_parse_grid(args.lengths, "--lengths"),
                                  angles=_parse_grid(args.angles, "--angles", allow_zero=True), noise=noise)
        names = ["length", "angle"]
    else:
        family = DenoisingFamily(img_size, noise=noise)
        names = ["noise"]
    if args.family != "noise" and not isinstance(noise, float):
        names.append("noise")
    model = _load_model(args.model)
    est = BlindEstimator(model, family, verbose=True)
    post = est.posterior(y)
    best = post.map()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 2.6), squeeze=False)
    for name, ax in zip(names, axes[0]):
        lo, hi = post.credible_interval(name, args.level)
        print(f"{name}: MAP {best[name].item():.4g}, posterior mean {post.mean(name).item():.4g}, "
              f"{args.level:.0%} interval [{lo.item():.4g}, {hi.item():.4g}]")
        values, logp = post.marginal(name)
        ax.plot(values.numpy(), logp[0].exp().numpy(), "o-")
        ax.axvspan(lo.item(), hi.item(), alpha=0.2)
        ax.set_xlabel(name), ax.set_ylabel("posterior probability")
    fig.tight_layout()
    fig.savefig(f"{args.out_prefix}_posterior.png", dpi=120)
    plt.close(fig)
    if args.samples > 0:  # restoration with operators drawn from the posterior
        args.levels, args.sampler = 60, "pc"
        x, _ = est.restore(y, _sampler(args, model), n=args.samples, posterior=post)
        _save_row(f"{args.out_prefix}_restoration.png", [y, x.mean(0), x.std(0)],
                  ["measurement", "restoration", "posterior std (incl. operator)"])
    print(f"figures written to {args.out_prefix}_posterior.png and {args.out_prefix}_restoration.png")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepinv-energy",
        description="Normalized energy models for linear inverse problems (a deepinv extension).",
    )
    parser.add_argument("--version", action="version", version=f"deepinv-energy {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="restore bundled Fashion-MNIST test images with the bundled model",
                       description="Box inpainting, random inpainting and Gaussian deblurring of bundled test "
                                   "images: prints PSNR per task and writes a PNG figure.")
    p.add_argument("--out", default="demo.png", help="PNG figure path (default: demo.png)")
    p.add_argument("--model", default="fashion-mnist-28", help="bundled model name or a directory/JSON path")
    p.add_argument("--images", type=int, default=3, help="images per task (1-10, default 3)")
    p.add_argument("--samples", type=int, default=4, help="posterior draws per image (default 4)")
    p.add_argument("--levels", type=int, default=60, help="noise levels of the sampler (default 60)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=_demo)

    def model_and_sampler(q, levels=100):
        q.add_argument("--model", default="fashion-mnist-28", help="bundled model name or a path")
        q.add_argument("--sampler", default="pc", choices=["pc", "mala", "adaptive"],
                       help="predictor-corrector, Metropolis-adjusted, or energy-guided adaptive")
        q.add_argument("--levels", type=int, default=levels, help="noise levels (pc, mala)")
        q.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("restore", help="posterior mean and std for a measured image (sampling or one evaluation)",
                       description="Treats IMAGE as the measurement y of the given physics and writes the "
                                   "posterior mean and standard deviation: over posterior draws (--method "
                                   "sample), or from one energy evaluation (--method mmse: anisotropic Tweedie "
                                   "mean and the covariance-score variance; --sampler, --levels, --samples "
                                   "and --seed are then unused).")
    p.add_argument("image", help="measurement (grey PNG/JPEG or .npy, values in [0, 1] or [0, 255])")
    p.add_argument("--task", required=True, choices=["denoise", "gaussian-blur", "inpaint", "decimate"])
    p.add_argument("--noise", type=float, default=0.01, help="measurement noise standard deviation")
    p.add_argument("--blur-std", type=float, default=1.0, help="Gaussian blur width in pixels")
    p.add_argument("--mask", help="inpainting mask image (white = observed)")
    p.add_argument("--factor", type=int, default=2, help="decimation factor")
    p.add_argument("--samples", type=int, default=8, help="posterior draws")
    p.add_argument("--method", default="sample", choices=["sample", "mmse"],
                   help="sample: mean and std of posterior draws (default); mmse: one-evaluation posterior "
                        "mean and std (EnergyMMSE)")
    p.add_argument("--out", default="restoration.png")
    model_and_sampler(p)
    p.set_defaults(func=_restore)

    p = sub.add_parser("sample", help="unconditional samples of the model")
    p.add_argument("--n", type=int, default=16, help="number of samples")
    p.add_argument("--out", default="samples.png")
    model_and_sampler(p, levels=200)
    p.set_defaults(func=_sample)

    p = sub.add_parser("blind", help="estimate the degradation operator of an image by Bayes' rule",
                       description="Posterior over a family's parameters from normalized evidences; prints "
                                   "MAP, posterior mean and credible interval, saves the posterior plot and a "
                                   "restoration with the MAP operator.")
    p.add_argument("image", help="measurement (grey image or .npy)")
    p.add_argument("--family", default="gaussian-blur", choices=["gaussian-blur", "motion-blur", "noise"])
    p.add_argument("--widths", default="0.3:3:28", help="Gaussian blur widths START:STOP:COUNT (pixels)")
    p.add_argument("--lengths", default="1:9:9", help="motion blur lengths START:STOP:COUNT (pixels)")
    p.add_argument("--angles", default="0:165:12", help="motion blur angles START:STOP:COUNT (degrees)")
    p.add_argument("--noise", default="0.01", help="noise level, or a grid START:STOP:COUNT to estimate it")
    p.add_argument("--level", type=float, default=0.9, help="credible level")
    p.add_argument("--samples", type=int, default=4, help="posterior draws of the restoration (0: none)")
    p.add_argument("--model", default="fashion-mnist-28")
    p.add_argument("--out-prefix", default="blind")
    p.set_defaults(func=_blind)

    p = sub.add_parser("evaluate", help="denoising PSNR and bits/dim of a model on a data split")
    p.add_argument("--data", default="fashion-mnist", help="'fashion-mnist', an idx directory or 'folder:PATH'")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--n", type=int, default=512, help="number of images")
    p.add_argument("--noise", default="0.05,0.1,0.2,0.4", help="comma-separated noise levels")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--model", default="fashion-mnist-28")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_evaluate)

    from .training import build_parser as train_options

    p = sub.add_parser("train", help="train an energy model (single process, or multi-process under torchrun)",
                       description="Anisotropic covariance score matching; resumable checkpoints (--resume), "
                                   "EMA, CSV log. Multi-process: torchrun --nproc_per_node=N -m deepinv_energy.cli train ...")
    train_options(p)
    p.set_defaults(func=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except (UserError, FileNotFoundError) as err:
        print(f"deepinv-energy {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
