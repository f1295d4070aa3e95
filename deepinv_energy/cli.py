"""The ``deepinv-energy`` command line."""

from __future__ import annotations

import argparse
import math
import sys

from . import __version__
from ._checks import arg_number

#: The largest operator grid ``blind`` evaluates (each point is one batch of network evaluations).
MAX_GRID = 4096
#: restore tasks outside SUPPORTED_PHYSICS, for the split Gibbs sampler
GENERAL_TASKS = ("bicubic-sr", "reflect-blur", "compressed-sensing")

_POS = arg_number(low=0, low_open=True)  # finite > 0
_NONNEG = arg_number(low=0)  # finite >= 0
_INT1 = arg_number(integer=True, low=1)
_INT0 = arg_number(integer=True, low=0)
_INT2 = arg_number(integer=True, low=2)


class UserError(Exception):
    """A mistake in the command line: printed without a traceback."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``prog: error: ...``, exit status 2) instead of the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _model_shape(name) -> tuple:
    """(C, H, W) the model ``name`` takes, read from its JSON config only (no weights, no torch)."""
    import json

    from .models.pretrained import resolve_pretrained

    _, cpath = resolve_pretrained(name)
    try:
        with open(cpath) as fh:
            c = json.load(fh)["config"]
        return int(c["channels"]), int(c["height"]), int(c["width_px"])
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"cannot read model config {cpath!r}: {err}") from None


def _check_fits(name, shape, what="image"):
    """Refuse, before anything heavy is loaded, an image the model ``name`` cannot take."""
    expected = _model_shape(name)
    if tuple(shape) != expected:
        c, h, w = expected
        raise UserError(f"the {what} is {tuple(shape)} (channels, height, width) but model {name!r} takes "
                        f"{'grey' if c == 1 else str(c) + '-channel'} {h}x{w} images only {expected}; "
                        f"resize the image or give --model a model of that size")


def _evaluate(args) -> int:
    import math

    import deepinv as dinv
    import torch

    from .covariance import Covariance
    from .data import load_images
    from .models.base import bits_per_dim

    try:
        noises = [float(v) for v in args.noise.split(",")]
    except ValueError:
        raise UserError(f"--noise must be comma-separated numbers, got {args.noise!r}") from None
    if not noises or not all(math.isfinite(s) and s > 0 for s in noises):
        raise UserError(f"--noise levels must be finite and > 0, got {args.noise!r}")
    try:
        x = load_images(args.data, split=args.split, limit=args.n)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot load --data {args.data!r}: {err}") from None
    channels = _model_shape(args.model)[0]
    if x.shape[1] == 3 and channels == 1:
        x = x.mean(1, keepdim=True)  # grey model, colour files
        print("note: colour images converted to grey (channel mean) for a grey model", file=sys.stderr)
    _check_fits(args.model, x.shape[1:], "data's image shape")
    model = _load_model(args.model)
    g = torch.Generator().manual_seed(args.seed)
    d = x[0].numel()
    psnr = dinv.metric.PSNR(reduction="sum")  # peak 1; summed over images, averaged below
    print(f"{len(x)} images from {args.data} ({args.split}), model {args.model}")
    for s in noises:
        out_db, in_db = 0.0, 0.0
        for xb in x.split(args.batch_size):
            y = xb + s * torch.randn(xb.shape, generator=g)
            den = model.denoise(y, Covariance.isotropic(s**2, y)).clamp(0, 1)
            out_db += psnr(den, xb).item()
            in_db += psnr(y, xb).item()
        print(f"denoising  noise {s:<6g} input {in_db / len(x):6.2f} dB  output {out_db / len(x):6.2f} dB")
    bits = {"pixel": [], "hartley": []}
    for xb in x.split(args.batch_size):
        deq = xb + torch.rand(xb.shape, generator=g) / 256  # uniform dequantization
        with torch.no_grad():
            for basis, out in bits.items():
                u = model.energy(deq, Covariance.isotropic(1e-6, deq, basis=basis)).double()
                out.append(bits_per_dim(u, d))
    nll = {basis: torch.cat(v).mean().item() for basis, v in bits.items()}
    print(f"NLL {nll['pixel']:.3f} bits/dim in the pixel basis, {nll['hartley']:.3f} in the Hartley basis "
          f"(isotropic variance 1e-6, i.e. sigma=1e-3 smoothing; uniform dequantization; +8 bits for 256 levels)")
    gap = abs(nll["pixel"] - nll["hartley"])
    if gap > 0.01:
        print(f"warning: the two bases of the same isotropic covariance disagree by {gap:.3f} bits/dim at this "
              f"variance (a known consistency gap of the learned energy): the likelihood depends on the basis, so "
              f"compare bits/dim only within one basis")
    return 0


def _train(args) -> int:
    from dataclasses import fields

    from .training import TrainConfig, run_from_args

    try:
        return run_from_args(args)
    except ValueError as err:  # name the option, not the TrainConfig field ("batch_size must ..." -> "--batch-size must ...")
        key, _, rest = str(err).partition(" ")
        if key in {f.name for f in fields(TrainConfig)}:
            raise UserError(f"--{key.replace('_', '-')} {rest}") from None
        raise


def _demo(args) -> int:
    import torch

    from .demo import run_demo

    if not 1 <= args.images <= 10:
        raise UserError("--images must be between 1 and 10")
    torch.set_num_threads(args.threads) if args.threads else None
    model = None
    if args.model != "fashion-mnist-28":
        from .models.unet import EnergyUNet

        _check_fits(args.model, (1, 28, 28), "demo's Fashion-MNIST image")
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
        try:
            a = np.load(path, allow_pickle=False).astype(np.float32)
        except (OSError, ValueError) as err:
            raise UserError(f"cannot read array {path!r}: {err}") from None
        if a.size == 0 or not np.isfinite(a).all() or a.min() < 0 or a.max() > 255:
            raise UserError(f"{path!r} must hold finite values in [0, 1] or [0, 255]")
        a = a / 255.0 if a.max() > 1.5 else a
    else:
        from PIL import Image

        try:
            img = Image.open(path)
            img.load()
        except OSError as err:
            raise UserError(f"cannot read image {path!r}: {err}") from None
        if img.mode.startswith("I;16") or img.mode == "I":  # 16-bit grey (PIL opens 16-bit PNGs as I;16 or I)
            a = np.asarray(img, dtype=np.float32) / 65535.0
            if a.max() > 1:
                raise UserError(f"{path!r} is a {img.mode} image with values above 65535; give an 8- or 16-bit image")
        elif img.mode == "F":
            a = np.asarray(img, dtype=np.float32)
        else:
            if img.mode not in ("L", "1"):
                rgb = np.asarray(img.convert("RGB"))
                if not ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()):  # colour, not grey
                    print(f"note: {path} is a colour {img.mode} image; converted to grey (ITU-R 601 luma)",
                          file=sys.stderr)
            a = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    if a.ndim != 2:
        raise UserError(f"{path!r} must be a single grey image, got an array of shape {a.shape}")
    return torch.from_numpy(np.ascontiguousarray(a))[None, None]


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


def _physics_from_args(args, y, image_shape=None):
    """The deepinv physics of a measurement described on the command line (``image_shape``: the
    image's ``(C, H, W)`` where the measurement does not tell it, i.e. compressed sensing)."""
    import deepinv as dinv

    if args.task != "compressed-sensing":
        _, c, h, w = y.shape
    noise = dinv.physics.GaussianNoise(args.noise) if args.noise > 0 else dinv.physics.ZeroNoise()  # >= 0: parser
    if args.task == "denoise":
        return dinv.physics.Denoising(noise_model=noise)
    if args.task == "gaussian-blur":
        k = dinv.physics.functional.gaussian_blur(sigma=(args.blur_std, args.blur_std))
        return dinv.physics.BlurFFT((c, h, w), filter=k, noise_model=noise)
    if args.task in ("decimate", "bicubic-sr"):
        return dinv.physics.Downsampling((c, h * args.factor, w * args.factor), factor=args.factor, noise_model=noise,
                                         filter=None if args.task == "decimate" else "bicubic")
    if args.task == "reflect-blur":
        k = dinv.physics.functional.gaussian_blur(sigma=(args.blur_std, args.blur_std))
        return dinv.physics.Blur(filter=k, padding="reflect", noise_model=noise)
    if args.task == "compressed-sensing":  # y: (1, m); the matrix is deepinv's, regenerated from its seed
        import torch

        return dinv.physics.CompressedSensing(m=y.shape[-1], img_size=image_shape,
                                              rng=torch.Generator().manual_seed(args.matrix_seed), noise_model=noise)
    if args.task == "inpaint":
        if args.mask is None:
            raise UserError("--task inpaint needs --mask MASK (an image, white = observed)")
        mask = (_read_image(args.mask) > 0.5).float()
        if mask.shape[-2:] != (h, w):
            raise UserError(f"mask is {tuple(mask.shape[-2:])}, image is {(h, w)}")
        return dinv.physics.Inpainting((c, h, w), mask=mask, noise_model=noise)
    raise UserError(f"unknown task {args.task!r}")


def _sampler(args, model):
    from .sampling import AdaptiveSampler, MALASampler, PredictorCorrectorSampler, SplitGibbsSampler

    if args.sampler == "split-gibbs":
        return SplitGibbsSampler(model, verbose=True)
    common = dict(sigma_max=10.0, sigma_min=0.01, verbose=True)
    if args.sampler == "pc":
        return PredictorCorrectorSampler(model, n_levels=args.levels, n_corrector=0, predictor="covariance", **common)
    if args.sampler == "mala":
        return MALASampler(model, n_levels=args.levels, **common)
    return AdaptiveSampler(model, **common)


def _read_vector(path):
    """A measurement vector (.npy, any shape, read in C order) as a (1, m) float tensor."""
    import numpy as np
    import torch

    if not str(path).endswith(".npy"):
        raise UserError(f"--task compressed-sensing reads its measurement vector from a .npy file, got {path!r}")
    try:
        a = np.load(path, allow_pickle=False).astype(np.float32).reshape(1, -1)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read array {path!r}: {err}") from None
    if a.size == 0 or not np.isfinite(a).all():
        raise UserError(f"{path!r} must hold a non-empty vector of finite values")
    return torch.from_numpy(a)


def _restore(args) -> int:
    if args.task in GENERAL_TASKS and args.method == "sample" and args.sampler != "split-gibbs":
        if args.sampler_given:
            raise UserError(f"--task {args.task} is not written as denoising: only --sampler split-gibbs can take it")
        args.sampler = "split-gibbs"
    if args.task == "compressed-sensing":  # the image is the model's size; the measurement is a vector
        y = _read_vector(args.image)
        shape = _model_shape(args.model)
        if y.shape[-1] > math.prod(shape):
            raise UserError(f"{y.shape[-1]} measurements for a {'x'.join(map(str, shape))} image: at most "
                            f"{math.prod(shape)} (compressed sensing measures fewer values than pixels)")
    else:
        y = _read_image(args.image)
        c, h, w = y.shape[1:]
        f = args.factor if args.task in ("decimate", "bicubic-sr") else 1
        _check_fits(args.model, (c, h * f, w * f), "image" if f == 1 else f"decimated image x{f}")
        shape = None
    physics = _physics_from_args(args, y, shape)
    model = _load_model(args.model)
    if args.method == "mmse":
        from .mmse import EnergyMMSE

        mean, std = EnergyMMSE(model)(y, physics, return_std=True)
        titles = ["measurement", "posterior mean (1 evaluation)", "posterior std (1 evaluation)"]
    else:
        out = _sampler(args, model).draw(y, physics, n=args.samples, seed=args.seed)
        mean, std = out.x.mean(0), out.x.std(0)
        titles = ["measurement", "posterior mean", "posterior std"]
    if args.task == "compressed-sensing":  # the figure shows the adjoint A^T y, rescaled to [0, 1], for the vector y
        y = physics.A_adjoint(y)
        y, titles[0] = (y - y.min()) / (y.max() - y.min()).clamp(min=1e-12), "A^T y (rescaled)"
    _save_row(args.out, [y, mean, std], titles)
    print(f"restoration ({args.method}) written to {args.out}")
    return 0


def _sample(args) -> int:
    _model_shape(args.model)  # a readable config before anything heavy
    model = _load_model(args.model)
    shape = (model.config.channels, model.config.height, model.config.width_px)
    out = _sampler(args, model).generate(args.n, shape, seed=args.seed)
    x = out.x.reshape(-1, *shape)
    import torchvision

    torchvision.utils.save_image(x.clamp(0, 1), args.out, nrow=int(len(x) ** 0.5 + 0.999), padding=1)
    print(f"{len(x)} samples written to {args.out}")
    return 0


def _parse_grid(text, name, allow_zero=False):
    import math

    import torch

    try:
        parts = [float(v) for v in text.split(":")]
    except ValueError:
        raise UserError(f"{name} must be START:STOP:COUNT or a single value, got {text!r}") from None
    lower = "0 <= START" if allow_zero else "0 < START"
    if not all(math.isfinite(v) for v in parts):
        raise UserError(f"{name} must hold finite numbers, got {text!r}")
    if len(parts) == 1:
        if parts[0] < 0 or (parts[0] == 0 and not allow_zero):
            raise UserError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {text!r}")
        return parts[0]
    if len(parts) != 3 or parts[0] < 0 or (parts[0] == 0 and not allow_zero) or parts[1] <= parts[0]:
        raise UserError(f"{name} must be START:STOP:COUNT with {lower} < STOP, got {text!r}")
    if parts[2] != int(parts[2]) or not 2 <= parts[2] <= MAX_GRID:
        raise UserError(f"{name}: COUNT must be an integer from 2 to {MAX_GRID}, got {text!r}")
    return torch.linspace(parts[0], parts[1], int(parts[2]))


def _blind(args) -> int:
    import math

    from .blind import BlindEstimator, DenoisingFamily, GaussianBlurFamily, MotionBlurFamily

    y = _read_image(args.image)
    img_size = tuple(y.shape[1:])
    _check_fits(args.model, img_size)
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
    size = math.prod(len(v) for v in family.grid.values())
    if size > MAX_GRID:
        raise UserError(f"the parameter grid has {size} points (the product of the COUNTs), more than {MAX_GRID}; "
                        f"use coarser grids")
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
        if name in family.continuous:
            for mass, end in zip(post.edge_mass(name), ("smallest", "largest")):
                if mass.item() > 0.5:
                    print(f"note: {mass.item():.0%} of the posterior of {name} is on the {end} grid value: the truth "
                          f"may lie at or beyond it; extend the grid to check"
                          + (" (a noise level piled on the smallest value can also be the model's failure at variances "
                             "far below the noise present: start the grid closer to the plausible levels)"
                             if name == "noise" and end == "smallest" else ""))
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


def build_parser(with_train: bool = True) -> argparse.ArgumentParser:
    """The ``deepinv-energy`` parser; ``with_train=False`` leaves out the options of ``train``
    (they need torch to build, so ``--help`` of everything else stays fast)."""
    parser = _Parser(
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
    p.add_argument("--samples", type=_INT2, default=4, help="posterior draws per image (>= 2, default 4)")
    p.add_argument("--levels", type=_INT2, default=60, help="noise levels of the sampler (>= 2, default 60)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=_INT0, default=0, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=_demo)

    def model_and_sampler(q, levels=100):
        q.add_argument("--model", default="fashion-mnist-28", help="bundled model name or a path")
        q.add_argument("--sampler", default=None, choices=["pc", "mala", "adaptive", "split-gibbs"],
                       help="predictor-corrector (default), Metropolis-adjusted, energy-guided adaptive, or split "
                            "Gibbs (any linear physics; the default for bicubic-sr and reflect-blur)")
        q.add_argument("--levels", type=_INT2, default=levels, help="noise levels (pc, mala; >= 2)")
        q.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("restore", help="posterior mean and std for a measured image (sampling or one evaluation)",
                       description="Treats IMAGE as the measurement y of the given physics and writes the "
                                   "posterior mean and standard deviation: over posterior draws (--method "
                                   "sample), or from one energy evaluation (--method mmse: anisotropic Tweedie "
                                   "mean and the covariance-score variance; --sampler, --levels, --samples "
                                   "and --seed are then unused).")
    p.add_argument("image", help="measurement (grey PNG/JPEG or .npy, values in [0, 1] or [0, 255]; for "
                                 "compressed-sensing a .npy vector of m real values)")
    p.add_argument("--task", required=True, choices=["denoise", "gaussian-blur", "inpaint", "decimate", *GENERAL_TASKS],
                   help="bicubic-sr (Downsampling with a bicubic filter), reflect-blur (Gaussian blur, reflect "
                        "padding) and compressed-sensing (deepinv's CompressedSensing, an image of the model's "
                        "size, m = the vector's length) are not written as denoising: they use --sampler split-gibbs")
    p.add_argument("--matrix-seed", type=int, default=0,
                   help="compressed-sensing: seed of deepinv's Gaussian matrix, i.e. the measurement was "
                        "CompressedSensing(m, img_size, rng=torch.Generator().manual_seed(SEED))(x)")
    p.add_argument("--noise", type=_NONNEG, default=0.01, help="measurement noise standard deviation (>= 0)")
    p.add_argument("--blur-std", type=_POS, default=1.0, help="Gaussian blur width in pixels (> 0)")
    p.add_argument("--mask", help="inpainting mask image (white = observed)")
    p.add_argument("--factor", type=_INT1, default=2, help="decimation factor (decimate, bicubic-sr)")
    p.add_argument("--samples", type=_INT2, default=8, help="posterior draws (>= 2: the std needs two)")
    p.add_argument("--method", default="sample", choices=["sample", "mmse"],
                   help="sample: mean and std of posterior draws (default); mmse: one-evaluation posterior "
                        "mean and std (EnergyMMSE)")
    p.add_argument("--out", default="restoration.png")
    model_and_sampler(p)
    p.set_defaults(func=_restore)

    p = sub.add_parser("sample", help="unconditional samples of the model")
    p.add_argument("--n", type=_INT1, default=16, help="number of samples")
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
    p.add_argument("--level", type=arg_number(low=0, high=1, low_open=True, high_open=True), default=0.9,
                   help="credible level, in (0, 1)")
    p.add_argument("--samples", type=_INT0, default=4, help="posterior draws of the restoration (0: none; else >= 2)")
    p.add_argument("--model", default="fashion-mnist-28")
    p.add_argument("--out-prefix", default="blind")
    p.set_defaults(func=_blind)

    p = sub.add_parser("evaluate", help="denoising PSNR and bits/dim of a model on a data split")
    p.add_argument("--data", default="fashion-mnist", help="'fashion-mnist', an idx directory or 'folder:PATH'")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--n", type=_INT1, default=512, help="number of images")
    p.add_argument("--noise", default="0.05,0.1,0.2,0.4", help="comma-separated noise levels")
    p.add_argument("--batch-size", type=_INT1, default=64)
    p.add_argument("--model", default="fashion-mnist-28")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("train", help="train an energy model (single process, or multi-process under torchrun)",
                       description="Anisotropic covariance score matching; resumable checkpoints (--resume), "
                                   "EMA, CSV log. Multi-process: torchrun --nproc_per_node=N -m deepinv_energy.cli train ...")
    if with_train:
        from .training import build_parser as train_options

        train_options(p)
    p.set_defaults(func=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(with_train="train" in argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if hasattr(args, "sampler"):
        args.sampler_given, args.sampler = args.sampler is not None, args.sampler or "pc"
    if args.command == "blind" and args.samples == 1:
        parser.exit(2, "deepinv-energy blind: error: --samples must be 0 or at least 2 (the std needs two draws)\n")
    try:
        return args.func(args)
    except (UserError, ValueError, TypeError, OSError, FloatingPointError, NotImplementedError) as err:
        # user errors and the library's checks (ValueError, UnsupportedPhysicsError (a TypeError), missing or
        # unreadable files, a diverging sampler): one line on stderr, no traceback
        msg = " ".join(str(err).split()) or type(err).__name__
        print(f"deepinv-energy {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
