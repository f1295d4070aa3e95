"""The ``deepinv-energy`` command line."""

from __future__ import annotations

import argparse
import math
import sys

from . import __version__
from ._checks import arg_number

#: The largest operator grid ``blind`` evaluates (each point is one batch of network evaluations).
MAX_GRID = 4096
#: blind warns when the measurement's evidence is this many nats per pixel below that of re-simulated
#: measurements of the best candidate (see BlindEstimator.fit_check)
FIT_DEFICIT = 0.25  # measured: |deficit| <= 0.24 when the family made the measurement, 0.28-0.43 for noise 0.05 scored at 0.01
_GRID_OPTION = {"width": "--widths", "length": "--lengths", "angle": "--angles", "noise": "--noise"}
#: restore tasks outside SUPPORTED_PHYSICS, for the split Gibbs sampler
GENERAL_TASKS = ("bicubic-sr", "reflect-blur", "compressed-sensing")

_POS = arg_number(low=0, low_open=True)  # finite > 0
_NONNEG = arg_number(low=0)  # finite >= 0
_INT1 = arg_number(integer=True, low=1)
_INT0 = arg_number(integer=True, low=0)
_INT2 = arg_number(integer=True, low=2)


class UserError(ValueError):
    """A mistake in the command line: printed without a traceback."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``prog: error: ...``, exit status 2) instead of the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _model_config(name) -> dict:
    """The JSON config of the model ``name`` (no weights, no torch)."""
    import json

    from .models.pretrained import resolve_pretrained

    _, cpath = resolve_pretrained(name)
    try:
        with open(cpath) as fh:
            c = json.load(fh)["config"]
        int(c["channels"]), int(c["height"]), int(c["width_px"]), len(c.get("mult", (1, 2, 2)))
        return c
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"cannot read model config {cpath!r}: {err}") from None


def _model_shape(name) -> tuple:
    """(C, H, W) the model ``name`` takes (for a size-free model: the size of its training patches)."""
    c = _model_config(name)
    return int(c["channels"]), int(c["height"]), int(c["width_px"])


def _check_fits(name, shape, what="image"):
    """Refuse, before anything heavy is loaded, an image the model ``name`` cannot take."""
    cfg = _model_config(name)
    expected = _model_shape(name)
    c, h, w = expected
    if cfg.get("size_free"):
        f = 2 ** (len(cfg.get("mult", (1, 2, 2))) - 1)
        if len(shape) != 3 or shape[0] != c or shape[1] % f or shape[2] % f:
            raise UserError(f"the {what} is {tuple(shape)} (channels, height, width) but model {name!r} takes "
                            f"{'grey' if c == 1 else str(c) + '-channel'} images whose height and width are "
                            f"multiples of {f}; crop the image (e.g. to {shape[1] // f * f}x{shape[2] // f * f})")
        return
    if tuple(shape) != expected:
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
    _check_data_spec(args.data)
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


def _check_data_spec(spec) -> None:
    """Refuse a malformed ``gmm:C,H,W,K[,seed[,n]]`` data specification before any work."""
    if not str(spec).startswith("gmm:"):
        return
    try:
        parts = [int(v) for v in spec[4:].split(",")]
    except ValueError:
        parts = []
    if not 4 <= len(parts) <= 6 or min(parts[:4]) < 1 or (len(parts) > 4 and parts[4] < 0) or (len(parts) > 5 and parts[5] < 1):
        raise UserError(f"--data {spec!r}: gmm:C,H,W,K[,seed[,n]] takes integers C, H, W, K >= 1 (channels, height, "
                        f"width, mixture components), seed >= 0 and n >= 1 (images)")


def _check_checkpoint(path, what, keys) -> None:
    """Refuse, before training starts, a file that is not a readable training checkpoint with ``keys``."""
    from .training import load_checkpoint

    try:
        ck = load_checkpoint(path)
    except Exception as err:  # torch raises many types for a file that is not a checkpoint
        raise UserError(f"{what} {path!r} is not a training checkpoint (checkpoint.pt): cannot load it "
                        f"({type(err).__name__}: {' '.join(str(err).split())[:200]})") from None
    missing = [k for k in keys if not isinstance(ck, dict) or k not in ck]
    if missing:
        raise UserError(f"{what} {path!r} is not a complete training checkpoint: it lacks {', '.join(missing)}")


def check_train_args(args) -> None:
    """Refuse, with one line naming the option, a ``train`` command that would fail or mislead
    (``--stop-at`` < 0, a malformed ``gmm:`` spec, training on the held-out natural test photos,
    ``--device cuda`` without a GPU, a checkpoint that is not one)."""
    import os

    if str(args.data).startswith(("natural-gray:", "natural-rgb:")) and args.split == "test":
        raise UserError(f"--data {args.data} --split test would train on the held-out natural test photos; "
                        f"use --split train (the test photos are the benchmark's)")

    if args.stop_at < 0:
        raise UserError(f"--stop-at must be >= 0 (0: run the whole schedule of --steps), got {args.stop_at}")
    _check_data_spec(args.data)
    if str(args.device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"--device {args.device}: no CUDA GPU is available to torch here "
                            f"(torch {torch.__version__}); use --device cpu")
    from .training.trainer import CKPT_NAME, PREV_NAME, load_checkpoint

    found = [os.path.join(args.out, n) for n in (CKPT_NAME, PREV_NAME) if os.path.exists(os.path.join(args.out, n))]
    if args.resume and found:
        for path in found:  # the trainer resumes from the first readable one (an unreadable one it reports itself)
            try:
                load_checkpoint(path)
            except Exception:
                continue
            _check_checkpoint(path, "--resume: the run's checkpoint", ("config", "model", "ema", "optimizer", "step", "rng"))
            break
    elif args.init_from:
        _check_checkpoint(args.init_from, "--init-from", ("config", "model", "ema"))


def _train(args) -> int:
    from dataclasses import fields

    from .training import TrainConfig, run_from_args

    check_train_args(args)
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

    if str(path).endswith((".npy", ".npz")):
        try:
            a = np.load(path, allow_pickle=False)
            if str(path).endswith(".npz"):
                with a:
                    if "y" not in a:
                        raise ValueError(f"it has no array 'y' (it has {', '.join(a.files) or 'nothing'})")
                    a = a["y"]
            a = a.astype(np.float32)
        except (OSError, ValueError) as err:
            raise UserError(f"cannot read array {path!r}: {err}") from None
        if a.size == 0 or not np.isfinite(a).all():
            raise UserError(f"{path!r} must hold finite values")
        if str(path).endswith(".npy"):  # an image array: [0, 1] or [0, 255] (an .npz measurement is exact: any values)
            if a.min() < 0 or a.max() > 255:
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


def _save_row(path, images, titles, cmap=None, note=None):
    """A row of panels; std panels (title containing "std") get their own colour scale and a colour bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .demo import show_panel

    fig, axes = plt.subplots(1, len(images), figsize=(2.4 * len(images), 2.6 + 0.3 * bool(note)), squeeze=False)
    for ax, img, title in zip(axes[0], images, titles):
        show_panel(ax, img, std="std" in title)
        ax.set_title(title, fontsize=8)
    if note:
        fig.text(0.5, 0.01, note, ha="center", va="bottom", fontsize=7, wrap=True)
    fig.tight_layout(rect=(0, 0.1 if note else 0, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _physics_from_args(args, image_shape):
    """The deepinv physics of a task described on the command line, for clean images of shape
    ``image_shape`` (C, H, W) (the measurement of decimation is smaller, of compressed sensing a vector)."""
    import deepinv as dinv

    c, h, w = image_shape
    noise = dinv.physics.GaussianNoise(args.noise) if args.noise > 0 else dinv.physics.ZeroNoise()  # >= 0: parser
    if args.task == "denoise":
        return dinv.physics.Denoising(noise_model=noise)
    if args.task in ("gaussian-blur", "reflect-blur"):
        k = dinv.physics.functional.gaussian_blur(sigma=(args.blur_std, args.blur_std))
        if k.shape[-2] > h or k.shape[-1] > w:
            lo, hi = 0.01, args.blur_std  # the largest width (to 0.01 px) whose deepinv kernel fits the image
            while hi - lo > 0.01:
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if dinv.physics.functional.gaussian_blur(sigma=(mid, mid)).shape[-1] <= min(h, w) else (lo, mid)
            raise UserError(f"--blur-std {args.blur_std:g} gives a {k.shape[-2]}x{k.shape[-1]} kernel, larger than the "
                            f"{h}x{w} image; give --blur-std at most {math.floor(lo * 100) / 100:g}")
        if args.task == "gaussian-blur":
            return dinv.physics.BlurFFT((c, h, w), filter=k, noise_model=noise)
        return dinv.physics.Blur(filter=k, padding="reflect", noise_model=noise)
    if args.task == "motion-blur":  # a straight-line blur, the kernel of MotionBlurFamily (circular)
        import torch

        from .blind.kernels import line_kernel

        k = line_kernel(torch.tensor([args.length]), torch.tensor([args.angle]), (c, h, w))
        return dinv.physics.BlurFFT((c, h, w), filter=k, noise_model=noise)
    if args.task in ("decimate", "bicubic-sr"):
        if h % args.factor or w % args.factor:
            raise UserError(f"--factor {args.factor} does not divide the {h}x{w} image")
        return dinv.physics.Downsampling((c, h, w), factor=args.factor, noise_model=noise,
                                         filter=None if args.task == "decimate" else "bicubic")
    if args.task == "compressed-sensing":  # the matrix is deepinv's, regenerated from its seed
        import torch

        return dinv.physics.CompressedSensing(m=args.m, img_size=tuple(image_shape),
                                              rng=torch.Generator().manual_seed(args.matrix_seed), noise_model=noise)
    if args.task == "inpaint":
        if args.mask is None:
            raise UserError("--task inpaint needs --mask MASK (an image, white = observed)")
        mask = _read_mask(args.mask)
        if mask.shape[-2:] != (h, w):
            raise UserError(f"mask is {tuple(mask.shape[-2:])}, image is {(h, w)}")
        return dinv.physics.Inpainting((c, h, w), mask=mask, noise_model=noise)
    raise UserError(f"unknown task {args.task!r}")


def _read_mask(path):
    return (_read_image(path) > 0.5).float()


def _mask_digest(path) -> str:
    import hashlib

    return hashlib.sha256(_read_mask(path).numpy().astype("uint8").tobytes()).hexdigest()[:16]


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


#: restore's tasks; the options each reads besides --noise (None: its value is taken from the measurement
#: file when the file records it, else the default of _DEFAULTS)
TASKS = {"denoise": (), "gaussian-blur": ("blur_std",), "motion-blur": ("length", "angle"), "inpaint": (),
         "decimate": ("factor",), "bicubic-sr": ("factor",), "reflect-blur": ("blur_std",),
         "compressed-sensing": ("matrix_seed",)}
_DEFAULTS = {"noise": 0.01, "blur_std": 1.0, "length": 5.0, "angle": 30.0, "factor": 2, "matrix_seed": 0}
#: the PNG text chunk / .npz entry holding what made a measurement (JSON)
META_KEY = "deepinv-energy"


def _option(key):
    return "--" + key.replace("_", "-")


def _read_meta(path) -> dict:
    """What made a measurement file, as ``deepinv-energy simulate`` records it ({} if nothing is recorded):
    a PNG text chunk, or the entries of an .npz (``meta`` JSON, and ``m``, ``seed``, ``shape``)."""
    import json

    import numpy as np

    try:
        if str(path).endswith(".npz"):
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"])) if "meta" in data else {}
                for key, name in (("m", "m"), ("seed", "matrix_seed")):
                    if key in data:
                        meta[name] = int(data[key])
                if "shape" in data:
                    meta["shape"] = [int(v) for v in np.asarray(data["shape"]).reshape(-1)]
                return meta
        if str(path).endswith(".npy"):
            return {}
        from PIL import Image

        with Image.open(path) as img:
            text = getattr(img, "text", {}).get(META_KEY)
        return json.loads(text) if text else {}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"cannot read what made {path!r}: {err}") from None


def _resolve(args, meta, path, keys) -> list:
    """Fill the options ``keys`` left unset (None) from the file's record ``meta``, else from _DEFAULTS; refuse
    an option given on the command line that disagrees with the record. Returns the keys taken from the file."""
    from_file = []
    for key in keys:
        given, recorded = getattr(args, key, None), meta.get(key)
        if recorded is not None:
            if given is None:
                setattr(args, key, recorded)
                from_file.append(key)
            elif not math.isclose(float(given), float(recorded), rel_tol=1e-9, abs_tol=1e-12):
                raise UserError(f"{_option(key)} {given:g} disagrees with {path}, which was made with {_option(key)} "
                                f"{recorded:g} ({meta.get('command', 'recorded in the file')}); drop {_option(key)} to "
                                f"use the recorded value")
        elif given is None:
            setattr(args, key, _DEFAULTS[key])
    return from_file


def _describe_task(args) -> str:
    parts = [args.task, f"noise {args.noise:g}"] + [f"{_option(k)[2:]} {getattr(args, k):g}" for k in TASKS[args.task]]
    if args.task == "compressed-sensing":
        parts.insert(1, f"m {args.m}")
    return ", ".join(parts)


def _read_measurement(args):
    """restore's measurement, its physics' settings resolved against the file's record; returns
    ``(y, image_shape)``."""
    path = args.image
    meta = _read_meta(path)
    if meta.get("task") not in (None, args.task):
        raise UserError(f"{path} is a {meta['task']} measurement ({meta.get('command', 'recorded in the file')}), "
                        f"not --task {args.task}")
    from_file = _resolve(args, meta, path, ("noise", *TASKS[args.task]))
    if args.task == "compressed-sensing":
        y, shape = _read_cs_measurement(args, meta)
    else:
        y = _read_image(path)
        c, h, w = y.shape[1:]
        f = args.factor if args.task in ("decimate", "bicubic-sr") else 1
        shape = (c, h * f, w * f)
        _check_fits(args.model, shape, "image" if f == 1 else f"decimated image x{f}")
        if args.task == "inpaint" and args.mask is not None and meta.get("mask_sha256") not in (None, _mask_digest(args.mask)):
            raise UserError(f"--mask {args.mask} is not the mask {path} was made with "
                            f"({meta.get('command', 'recorded in the file')})")
    source = (f"{', '.join(_option(k) for k in from_file)} read from {path} (made by "
              f"{meta.get('command', 'a file that records them')})" if from_file
              else "as given on the command line (or defaults)" if not meta else f"as recorded in {path}")
    print(f"measurement {path}: {_describe_task(args)}; {source}")
    return y, shape


def _read_cs_measurement(args, meta):
    """A compressed-sensing measurement: an .npz holding ``y`` (m values), ``m``, ``seed`` (deepinv's matrix
    seed) and ``shape`` (C, H, W), as ``simulate`` writes it. A bare vector is refused: nothing would tell
    a wrong matrix seed or a truncated vector (both restore to a wrong image that fits the data)."""
    import numpy as np
    import torch

    path = args.image
    need = ("y", "m", "seed", "shape")
    if not str(path).endswith(".npz"):
        raise UserError(f"--task compressed-sensing reads an .npz that records its matrix ({', '.join(need)}), got "
                        f"{path!r}: make it with `deepinv-energy simulate IMAGE --task compressed-sensing --out y.npz`, "
                        f"or wrap a vector y measured with CompressedSensing(m, (C, H, W), rng=seeded(SEED)) as "
                        f"numpy.savez('y.npz', y=y, m=len(y), seed=SEED, shape=[C, H, W])")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in need if k not in data]
            y = np.asarray(data["y"], dtype=np.float32).reshape(1, -1) if "y" in data else None
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path!r}: {err}") from None
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}: a compressed-sensing measurement records "
                        f"{', '.join(need)} (see `deepinv-energy simulate --help`)")
    if y.size == 0 or not np.isfinite(y).all():
        raise UserError(f"{path!r} must hold a non-empty vector y of finite values")
    m, shape = meta["m"], tuple(meta["shape"])
    if y.shape[1] != m:
        raise UserError(f"{path} holds {y.shape[1]} values but records m = {m}: the vector was truncated or edited")
    if len(shape) != 3 or m > math.prod(shape):
        raise UserError(f"{path} records m = {m} measurements of a {shape} image: at most "
                        f"{math.prod(shape) if len(shape) == 3 else '?'} (and shape must be (C, H, W))")
    _check_fits(args.model, shape, "recorded image shape")
    args.m = m
    return torch.from_numpy(y), shape


def _read_clean(image):
    """simulate's clean image: a file, ``bundled:K`` (the K-th bundled Fashion-MNIST test image, K in 0-9)
    or ``photo:NAME[:S]`` (the centre S x S crop, default 256, of a held-out natural test photo, gray)."""
    if str(image).startswith("photo:"):
        from .data import NATURAL_TEST_PHOTOS, natural_test_images

        _, name, *size = str(image).split(":")
        if name not in NATURAL_TEST_PHOTOS or len(size) > 1 or (size and not size[0].isdigit()):
            raise UserError(f"photo:NAME[:S] takes NAME among {', '.join(NATURAL_TEST_PHOTOS)} and a crop size S, "
                            f"got {image!r}")
        try:
            x = natural_test_images(gray=True, names=[name])[name]
        except (OSError, ImportError) as err:
            raise UserError(f"{image}: the held-out test photos come from scikit-image and matplotlib ({err})") from None
        s = int(size[0]) if size else 256
        h, w = x.shape[-2:]
        if not 1 <= s <= min(h, w):
            raise UserError(f"{image}: the crop size must be from 1 to {min(h, w)} for this {h}x{w} photo")
        top, left = (h - s) // 2, (w - s) // 2
        return x[None, :, top : top + s, left : left + s].contiguous()
    if str(image).startswith("bundled:"):
        from .demo import bundled_test_images

        k = image.split(":", 1)[1]
        if not k.isdigit() or not 0 <= int(k) <= 9:
            raise UserError(f"bundled:K takes K from 0 to 9 (ten bundled test images), got {image!r}")
        return bundled_test_images(int(k) + 1)[0][int(k) :]
    return _read_image(image)


def _simulate(args) -> int:
    import json
    from pathlib import Path

    import numpy as np
    import torch

    from .problems import simulate

    out = Path(args.out)
    if out.suffix not in (".png", ".npz"):
        raise UserError(f"--out must end in .png (16-bit grey, values clipped to [0, 1]) or .npz (exact values), "
                        f"got {args.out!r}")
    if args.task == "compressed-sensing" and out.suffix != ".npz":
        raise UserError("--task compressed-sensing writes a vector and its matrix seed: give --out NAME.npz")
    x = _read_clean(args.image)
    shape = tuple(x.shape[1:])
    _check_fits(args.model, shape, "clean image")  # restore would refuse its measurement otherwise
    for key in ("noise", *TASKS[args.task]):
        if getattr(args, key, None) is None:
            setattr(args, key, _DEFAULTS[key])
    if args.task == "compressed-sensing":
        d = math.prod(shape)
        args.m = round(0.3 * d) if args.m is None else args.m
        if not 1 <= args.m <= d:
            raise UserError(f"--m must be from 1 to {d} (the image's pixels), got {args.m}")
    elif args.m is not None:
        raise UserError("--m is the number of compressed-sensing measurements: only for --task compressed-sensing")
    physics = _physics_from_args(args, shape)
    y = simulate(physics, x, torch.Generator().manual_seed(args.seed))
    meta = {"command": "deepinv-energy " + " ".join(args.argv), "version": __version__, "task": args.task,
            "noise": args.noise, "seed": args.seed, "source": str(args.image), "shape": list(shape),
            **{k: getattr(args, k) for k in TASKS[args.task]}}
    if args.task == "inpaint":
        meta["mask_sha256"] = _mask_digest(args.mask)
    a = y.detach().cpu().numpy()
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npz":
        extra = ({"m": np.int64(args.m), "seed": np.int64(args.matrix_seed), "y": a.reshape(-1)}
                 if args.task == "compressed-sensing" else {"y": a[0, 0]})
        np.savez(out, meta=np.array(json.dumps(meta)), shape=np.array(shape, dtype=np.int64), **extra)
    else:
        from PIL import Image
        from PIL.PngImagePlugin import PngInfo

        clipped = int(((a < 0) | (a > 1)).sum())
        info = PngInfo()
        info.add_text(META_KEY, json.dumps(meta))
        Image.fromarray(np.round(np.clip(a[0, 0], 0, 1) * 65535).astype(np.uint16)).save(out, pnginfo=info)
        if clipped:
            print(f"note: {clipped} of {a.size} values outside [0, 1] were clipped in the PNG (the noise of dark and "
                  f"bright pixels); --out NAME.npz keeps them exact", file=sys.stderr)
    what = (f"{args.m} values" if args.task == "compressed-sensing" else "x".join(map(str, a.shape[-2:])) + " image")
    print(f"{_describe_task(args)} measurement of {args.image}, noise seed {args.seed}: {what} written to {out} "
          f"(with what made it; restore reads it from there)")
    return 0


def _default_out(args, kind) -> str:
    """An output name from the input's name and the task, beside the input (so consecutive commands do not
    overwrite each other)."""
    from pathlib import Path

    path = Path(args.image)
    return str(path.with_name(f"{path.stem}_{kind}"))


def _restore(args) -> int:
    if args.task in GENERAL_TASKS and args.method == "sample" and args.sampler != "split-gibbs":
        if args.sampler_given:
            raise UserError(f"--task {args.task} is not written as denoising: only --sampler split-gibbs can take it")
        args.sampler = "split-gibbs"
    y, shape = _read_measurement(args)
    physics = _physics_from_args(args, shape)
    model = _load_model(args.model)
    note = None
    if args.method == "mmse":
        from .mmse import EnergyMMSE

        mean, std = EnergyMMSE(model)(y, physics, return_std=True)
        titles = ["measurement", "posterior mean (1 evaluation)", "posterior std (1 evaluation)"]
        if args.task in ("gaussian-blur", "motion-blur"):  # Hartley basis: the per-pixel map is not localized
            titles[2] = "posterior std (1 evaluation,\nper-frequency average)"
            note = ("blur: the one-evaluation std is predicted per frequency; its per-pixel map spreads each "
                    "frequency's variance over the image (near-uniform), so it does not locate the uncertainty: "
                    "use --method sample for a per-pixel std")
    else:
        out = _sampler(args, model).draw(y, physics, n=args.samples, seed=args.seed)
        mean, std = out.x.mean(0), out.x.std(0)
        titles = ["measurement", "posterior mean", "posterior std"]
    if args.task == "compressed-sensing":  # the figure shows the adjoint A^T y, rescaled to [0, 1], for the vector y
        y = physics.A_adjoint(y)
        y, titles[0] = (y - y.min()) / (y.max() - y.min()).clamp(min=1e-12), "A^T y (rescaled)"
    out = args.out or _default_out(args, f"{args.task}_{args.method}.png")
    _save_row(out, [y, mean, std], titles, note=note)
    print(f"restoration ({args.method}) written to {out}")
    return 0


def _sample(args) -> int:
    _model_shape(args.model)  # a readable config before anything heavy
    model = _load_model(args.model)
    shape = (model.config.channels, model.config.height, model.config.width_px)
    out = _sampler(args, model).generate(args.n, shape, seed=args.seed)
    x = out.x.reshape(-1, *shape)
    import torch
    import torchvision

    nrow = int(len(x) ** 0.5 + 0.999)
    scale = max(1, math.ceil(480 / (nrow * (shape[-1] + 1))))  # nearest-neighbour upscaling to a readable width
    x = torch.nn.functional.interpolate(x.clamp(0, 1), scale_factor=scale, mode="nearest")
    torchvision.utils.save_image(x, args.out, nrow=nrow, padding=scale)
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

    prefix = args.out_prefix or _default_out(args, f"blind_{args.family}")
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 2.6), squeeze=False)
    for name, ax in zip(names, axes[0]):
        lo, hi = post.credible_interval(name, args.level)
        values = family.grid[name]
        circular = f" (a direction modulo {family.periods[name]:g}: circular mean)" if name in family.periods else ""
        print(f"{name}: MAP {best[name].item():.4g}, posterior mean {post.mean(name).item():.4g}{circular}, "
              f"{args.level:.0%} interval [{lo.item():.4g}, {hi.item():.4g}]"
              + (" (at grid resolution)" if lo.item() == hi.item() else ""))
        if lo.item() == hi.item() and values.numel() > 1:
            i = int((values - lo).abs().argmin())
            step = float((values[1:] - values[:-1]).min())
            a, b = max(float(values[max(i - 1, 0)]), 1e-3 if name != "angle" else 0.0), float(values[min(i + 1, len(values) - 1)])
            print(f"note: the {args.level:.0%} interval of {name} is a single grid value: the posterior is narrower "
                  f"than the grid spacing ({step:.3g}), so the interval only says 'at grid resolution'; a finer grid "
                  f"around it resolves it, e.g. {_GRID_OPTION[name]} {a:.4g}:{b:.4g}:21")
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
    fig.savefig(f"{prefix}_posterior.png", dpi=120)
    plt.close(fig)
    fit = est.fit_check(y, post)
    if fit["deficit"].item() > FIT_DEFICIT:
        print(f"warning: the measurement's evidence under the best {args.family} candidate is "
              f"{fit['deficit'].item():.3g} nats per pixel below that of measurements the same operator makes of "
              f"plausible images (re-simulated from the restoration): the {args.family} family (with this noise "
              f"grid) does not explain the measurement, so the estimates above are not meaningful; try another "
              f"family or noise level")
    written = [f"{prefix}_posterior.png"]
    if args.samples > 0:  # restoration with operators drawn from the posterior
        args.levels, args.sampler = 60, "pc"
        x, _ = est.restore(y, _sampler(args, model), n=args.samples, posterior=post)
        _save_row(f"{prefix}_restoration.png", [y, x.mean(0), x.std(0)],
                  ["measurement", "restoration", "posterior std (incl. operator)"])
        written.append(f"{prefix}_restoration.png")
    print(f"figure{'s' if len(written) > 1 else ''} written to {' and '.join(written)}")
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

    def physics_options(q, simulating=False):
        rec = "" if simulating else "; default: the value recorded in the measurement file (simulate writes it), else "
        q.add_argument("--task", required=True, choices=list(TASKS),
                       help="bicubic-sr (Downsampling with a bicubic filter), reflect-blur (Gaussian blur, reflect "
                            "padding) and compressed-sensing (deepinv's CompressedSensing of an image of the model's "
                            "size) are not written as denoising: restore uses --sampler split-gibbs for them")
        q.add_argument("--noise", type=_NONNEG, default=None,
                       help=f"measurement noise standard deviation (>= 0{rec or '; default '}{_DEFAULTS['noise']})")
        q.add_argument("--blur-std", type=_POS, default=None,
                       help=f"Gaussian blur width in pixels (> 0{rec or '; default '}{_DEFAULTS['blur_std']})")
        q.add_argument("--length", type=_POS, default=None,
                       help=f"motion-blur length in pixels (> 0{rec or '; default '}{_DEFAULTS['length']:g})")
        q.add_argument("--angle", type=arg_number(), default=None,
                       help=f"motion-blur angle in degrees, modulo 180{rec or '; default '}{_DEFAULTS['angle']:g}")
        q.add_argument("--mask", help="inpainting mask image (white = observed)")
        q.add_argument("--factor", type=_INT1, default=None,
                       help=f"decimation factor (decimate, bicubic-sr{rec or '; default '}{_DEFAULTS['factor']})")
        q.add_argument("--matrix-seed", type=arg_number(integer=True, low=0, high=2**63 - 1), default=None,
                       help="compressed-sensing: seed of deepinv's Gaussian matrix, "
                            "CompressedSensing(m, img_size, rng=torch.Generator().manual_seed(SEED))"
                            f"{rec or '; default '}{_DEFAULTS['matrix_seed']}")

    p = sub.add_parser("simulate", help="make a measurement of a clean image for restore/blind (any restore task)",
                       description="Applies the forward model of a restore task to a clean image and writes the "
                                   "measurement with what made it (task, noise, blur, factor, matrix seed, ...): "
                                   "restore reads these settings back from the file and refuses options that "
                                   "disagree with them.")
    p.add_argument("image", help="clean image (grey PNG/JPEG or .npy, the model's size), or bundled:K for the K-th "
                                 "bundled Fashion-MNIST test image (K from 0 to 9), or photo:NAME[:S] for the centre SxS crop (default 256) of a held-out natural test photo (camera, chelsea, ...)")
    physics_options(p, simulating=True)
    p.add_argument("--m", type=_INT1, default=None,
                   help="compressed-sensing: number of measurements (default: 30%% of the pixels)")
    p.add_argument("--seed", type=_INT0, default=0, help="seed of the measurement noise")
    p.add_argument("--model", default="fashion-mnist-28", help="the model restore will use (checks the image's size)")
    p.add_argument("--out", required=True,
                   help="NAME.png (16-bit grey, values clipped to [0, 1]) or NAME.npz (exact values; "
                        "compressed-sensing: y, m, seed, shape)")
    p.set_defaults(func=_simulate)

    p = sub.add_parser("restore", help="posterior mean and std for a measured image (sampling or one evaluation)",
                       description="Treats IMAGE as the measurement y of the given physics and writes the "
                                   "posterior mean and standard deviation: over posterior draws (--method "
                                   "sample), or from one energy evaluation (--method mmse: anisotropic Tweedie "
                                   "mean and the covariance-score variance; --sampler, --levels, --samples "
                                   "and --seed are then unused). Settings the file records (deepinv-energy "
                                   "simulate writes them) are used and printed; options that disagree with "
                                   "them are refused.")
    p.add_argument("image", help="measurement (grey PNG/JPEG, .npy with values in [0, 1] or [0, 255], or an .npz "
                                 "written by simulate; compressed-sensing: an .npz with y, m, seed, shape)")
    physics_options(p)
    p.add_argument("--samples", type=_INT2, default=8, help="posterior draws (>= 2: the std needs two)")
    p.add_argument("--method", default="sample", choices=["sample", "mmse"],
                   help="sample: mean and std of posterior draws (default); mmse: one-evaluation posterior "
                        "mean and std (EnergyMMSE)")
    p.add_argument("--out", default=None, help="PNG figure (default: beside IMAGE, its name + _TASK_METHOD.png)")
    model_and_sampler(p)
    p.set_defaults(func=_restore)

    p = sub.add_parser("sample", help="unconditional samples of the model")
    p.add_argument("--n", type=_INT1, default=16, help="number of samples")
    p.add_argument("--out", default="samples.png", help="PNG grid of the samples (default: samples.png)")
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
    p.add_argument("--out-prefix", default=None, help="figure names PREFIX_posterior.png and PREFIX_restoration.png "
                                                        "(default: beside IMAGE, its name + _blind_FAMILY)")
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
    args.argv = argv
    import warnings

    formatwarning = warnings.formatwarning
    warnings.formatwarning = lambda message, category, *rest: f"deepinv-energy {args.command}: warning: {message}\n"
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
    finally:
        warnings.formatwarning = formatwarning


if __name__ == "__main__":
    sys.exit(main())
