r"""Datasets of clean images in [0, 1], shape (N, C, H, W): idx files, image folders, mixtures,
patches of natural photographs.

Nothing is downloaded. Fashion-MNIST on Debian/Ubuntu: ``apt-get install dataset-fashion-mnist``
puts the four standard idx files in ``/usr/share/datasets/fashion-mnist/``
(:data:`DEFAULT_FASHION_MNIST`, overridden by the environment variable
``DEEPINV_ENERGY_FASHION_MNIST`` or a ``directory`` argument); any directory holding the standard
files (gzipped or not, e.g. torchvision's ``raw/`` folder) works.

Natural photographs: the training photos are the photographs among Debian's wallpaper packages
(:data:`NATURAL_TRAINING_PHOTOS`, under :data:`DEFAULT_NATURAL_ROOT`, overridden by
``DEEPINV_ENERGY_NATURAL_DIR`` or a ``root`` argument); the held-out test photos are scikit-image's
and matplotlib's classic photos (:data:`NATURAL_TEST_PHOTOS`, read from the installed packages) and
are never used for training: :func:`natural_training_files` leaves out any file whose decoded
pixels are those of a held-out photo.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import struct
import warnings

import numpy as np
import torch

__all__ = [
    "read_idx",
    "load_idx_images",
    "load_image_folder",
    "gaussian_mixture_images",
    "mixture_parameters",
    "mixture_energy",
    "load_images",
    "DEFAULT_FASHION_MNIST",
    "fashion_mnist_dir",
    "DEFAULT_NATURAL_ROOT",
    "NATURAL_TRAINING_PHOTOS",
    "NATURAL_TEST_PHOTOS",
    "NATURAL_SCALES",
    "natural_root",
    "natural_training_files",
    "natural_test_images",
    "natural_patches",
    "photo_fingerprint",
    "ImageTensorDataset",
]

#: Where ``dataset-fashion-mnist`` installs the idx files (the default of :func:`fashion_mnist_dir`).
DEFAULT_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
_FASHION_MNIST_ENV = "DEEPINV_ENERGY_FASHION_MNIST"


def fashion_mnist_dir(directory: str | None = None) -> str:
    """The Fashion-MNIST directory: ``directory`` if given, else the environment variable
    ``DEEPINV_ENERGY_FASHION_MNIST`` if set, else :data:`DEFAULT_FASHION_MNIST`."""
    return directory or os.environ.get(_FASHION_MNIST_ENV) or DEFAULT_FASHION_MNIST

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
}


def read_idx(path: str) -> np.ndarray:
    """Read an idx file (gzipped if the name ends with ``.gz``) into a (writable) numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path!r} is not an idx file (bad magic number).")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path!r}: unknown idx data type 0x{code:02x}.")
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(dims)) * dtype.itemsize
    body = data[4 + 4 * ndim :]
    if len(body) != expected:
        raise ValueError(f"{path!r}: expected {expected} bytes of data for shape {dims}, got {len(body)}.")
    return np.frombuffer(body, dtype=dtype).reshape(dims).copy()  # writable (torch warns otherwise)


def _find_idx(directory: str, split: str) -> str:
    if split not in _IDX_NAMES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    for stem in _IDX_NAMES[split]:
        for ext in (".gz", ""):
            p = os.path.join(directory, stem + ext)
            if os.path.isfile(p):
                return p
    raise FileNotFoundError(
        f"no {split} images in {directory!r}: expected one of "
        f"{[s + e for s in _IDX_NAMES[split] for e in ('.gz', '')]} (MNIST / Fashion-MNIST idx format)."
    )


def load_idx_images(directory: str | None = None, split: str = "train", limit: int | None = None) -> torch.Tensor:
    """MNIST-format images from ``directory`` as float32 (N, 1, H, W) in [0, 1].

    :param str | None directory: directory holding the standard idx files
        (``train-images-idx3-ubyte[.gz]``, ``t10k-images-idx3-ubyte[.gz]``); ``None``: the
        Fashion-MNIST directory of :func:`fashion_mnist_dir`.
    :param str split: ``"train"`` or ``"test"``.
    :param int | None limit: keep the first ``limit`` images.
    """
    arr = read_idx(_find_idx(fashion_mnist_dir(directory), split))
    if arr.ndim != 3:
        raise ValueError(f"expected an idx3 image file (N, H, W), got shape {arr.shape}.")
    if limit is not None:
        arr = arr[:limit]
    x = torch.from_numpy(np.array(arr)).float()
    if arr.dtype == np.uint8:
        x = x / 255.0
    return x.unsqueeze(1)


def load_image_folder(directory: str, size: tuple | None = None, grayscale: bool = False, limit: int | None = None) -> torch.Tensor:
    """Images (png, jpg, ...) of a folder (sorted by name) as float32 (N, C, H, W) in [0, 1].

    :param tuple | None size: (H, W) to resize to (bilinear); required if sizes differ.
    :param bool grayscale: convert to one channel (otherwise RGB).
    """
    from PIL import Image

    exts = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
    files = sorted(f for f in os.listdir(directory) if f.lower().endswith(exts))
    if limit is not None:
        files = files[:limit]
    if not files:
        raise FileNotFoundError(f"no image files {exts} in {directory!r}.")
    out = []
    for f in files:
        img = Image.open(os.path.join(directory, f)).convert("L" if grayscale else "RGB")
        if size is not None:
            img = img.resize((size[1], size[0]), Image.BILINEAR)
        a = np.asarray(img, dtype=np.float32) / 255.0
        out.append(torch.from_numpy(a.copy()).reshape(a.shape[0], a.shape[1], -1).permute(2, 0, 1))
    shapes = {tuple(t.shape) for t in out}
    if len(shapes) > 1:
        raise ValueError(f"images in {directory!r} have different sizes {sorted(shapes)}; pass size=(H, W).")
    return torch.stack(out)


def gaussian_mixture_images(model, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` clean samples of a closed-form mixture (anything with ``sample_prior(n, generator)``)."""
    g = torch.Generator().manual_seed(seed)
    return model.sample_prior(n, generator=g).float()


def load_images(spec: str, split: str = "train", limit: int | None = None) -> torch.Tensor:
    """Images from a data specification string (used by the training CLI).

    - ``"fashion-mnist"`` (the directory of :func:`fashion_mnist_dir`) or any directory with idx
      files;
    - ``"folder:PATH"`` or a directory of image files;
    - ``"natural-gray:P[,N[,seed]]"`` / ``"natural-rgb:P[,N[,seed]]"``: ``N`` random P x P patches
      of the natural training photos, gray or RGB (:func:`natural_patches`; the test split crops
      the held-out test photos; the photos' root is :func:`natural_root`);
    - ``"gmm:C,H,W,K[,seed[,n]]"``: ``n`` (default 10000) samples of a random Gaussian mixture
      with ``K`` components (see :func:`mixture_parameters`; the test split holds other draws of
      the same mixture, whose exact energy is :func:`mixture_energy`).
    """
    if spec in ("fashion-mnist", "fmnist"):
        return load_idx_images(None, split, limit)
    if spec.startswith(("natural-gray:", "natural-rgb:")):
        kind, _, args = spec.partition(":")
        try:
            parts = [int(p) for p in args.split(",")]
        except ValueError:
            parts = []
        if not 1 <= len(parts) <= 3:
            raise ValueError(f"data {spec!r}: expected '{kind}:P[,N[,seed]]' with integers P, N, seed.")
        n = parts[1] if len(parts) > 1 else None
        if limit is not None:
            n = min(n or _default_patch_count(parts[0], kind == "natural-gray"), limit)
        seed = parts[2] if len(parts) > 2 else 0
        return natural_patches(parts[0], n, gray=kind == "natural-gray", seed=seed, split=split)
    if spec.startswith("gmm:"):
        parts = [int(p) for p in spec[4:].split(",")]
        C, H, W, K = parts[:4]
        seed = parts[4] if len(parts) > 4 else 0
        n = parts[5] if len(parts) > 5 else 10000
        if limit is not None:
            n = min(n, limit)
        return _simple_mixture(C, H, W, K, seed, n, split)
    if spec.startswith("folder:"):
        return load_image_folder(spec[7:], limit=limit)
    if os.path.isdir(spec):
        try:
            return load_idx_images(spec, split, limit)
        except FileNotFoundError:
            return load_image_folder(spec, limit=limit)
    raise FileNotFoundError(
        f"data {spec!r} is neither 'fashion-mnist', 'natural-gray:P[,N[,seed]]', 'natural-rgb:P[,N[,seed]]', "
        "'gmm:C,H,W,K[,seed[,n]]', 'folder:PATH' nor a directory."
    )


def mixture_parameters(C: int, H: int, W: int, K: int, seed: int = 0):
    r"""Parameters of the mixture behind ``"gmm:C,H,W,K,seed"`` data.

    Uniform weights, means uniform in [0.2, 0.8], covariances
    :math:`C_k = F_k F_k^\top + 0.02^2 I` with :math:`F_k` (d x 2) of standard deviation 0.1
    (non-diagonal, rank two plus a floor).

    :return: ``(means (K, C, H, W), factors (K, d, 2), floor_std)``, float32.
    """
    g = torch.Generator().manual_seed(seed)
    d = C * H * W
    means = 0.2 + 0.6 * torch.rand(K, d, generator=g)
    factors = 0.1 * torch.randn(K, d, 2, generator=g)
    return means.reshape(K, C, H, W), factors, 0.02


def mixture_energy(C: int, H: int, W: int, K: int, seed: int = 0, dtype=torch.float64):
    """The exact :class:`~deepinv_energy.models.gaussian.GaussianMixtureEnergy` of ``"gmm:C,H,W,K,seed"`` data."""
    from .models.gaussian import GaussianMixtureEnergy

    means, factors, s = mixture_parameters(C, H, W, K, seed)
    f = factors.to(dtype)
    covs = f @ f.transpose(1, 2) + s**2 * torch.eye(C * H * W, dtype=dtype)
    return GaussianMixtureEnergy(means.to(dtype), covs)


def _simple_mixture(C, H, W, K, seed, n, split="train"):
    """Samples of :func:`mixture_parameters` (train and test splits: same mixture, other draws)."""
    means, factors, s = mixture_parameters(C, H, W, K, seed)
    g = torch.Generator().manual_seed(2 * seed + (0 if split == "train" else 1) + 7919)
    d = C * H * W
    comp = torch.randint(0, K, (n,), generator=g)
    z = torch.randn(n, 2, generator=g)
    e = s * torch.randn(n, d, generator=g)
    x = means.reshape(K, d)[comp] + torch.einsum("ndk,nk->nd", factors[comp], z) + e
    return x.reshape(n, C, H, W)


# --------------------------------------------------------------------------------------------
# Natural photographs
# --------------------------------------------------------------------------------------------

#: Root of the training photos' paths (the default of :func:`natural_root`).
DEFAULT_NATURAL_ROOT = "/usr/share"
_NATURAL_ENV = "DEEPINV_ENERGY_NATURAL_DIR"


def _photos(pattern, package, items):
    return tuple((pattern.format(name), package, licence) for name, licence in items)


#: The training photographs: ``(path relative to the root, Debian package, licence)``, 38 photos
#: (the photographs among the packages' wallpapers; renders, paintings and composites left out).
NATURAL_TRAINING_PHOTOS = (
    _photos(
        "backgrounds/mate/nature/{}.jpg",
        "mate-backgrounds",
        [(n, "GPL-2+") for n in ("Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow",
                                 "LadyBird", "RainDrops", "Storm", "TwoWings", "Wood", "YellowFlower")],
    )
    + _photos(
        "wallpapers/{}/contents/images/2560x1600.jpg",
        "plasma-workspace-wallpapers",
        [
            (n, "LGPL-3 (metadata.json); GPL-2+ (debian/copyright)")
            for n in ("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf",
                      "Grey", "Kite", "OneStandsOut", "Path", "summer_1am")
        ],
    )
    + _photos(
        "backgrounds/{}.jpg",
        "lomiri-wallpapers-16.04",
        [
            ("Bridge_by_Sander_Klootwijk", "CC-BY-SA-4.0"),
            ("Dragonfly_by_Bolly", "CC-BY-SA-4.0"),
            ("Picture_0B_by_freespace", "CC-BY-4.0"),
            ("Picture_1A_by_freespace", "CC-BY-4.0"),
            ("Wine_by_Jakkub_Mede", "CC-BY-4.0"),
            ("aitzgorri_by_Aitzol_Berasategi", "CC-BY-4.0"),
            ("analogpattern_by_Peter_Nerlich", "CC-BY-SA-4.0"),
            ("free_by_Peter_Nerlich", "CC-BY-SA-4.0"),
            ("friends_by_Aitzol_Berasategi", "CC-BY-4.0"),
            ("greentock_by_Peter_Nerlich", "CC-BY-SA-4.0"),
            ("life_by_Aitzol_Berasategi", "CC-BY-4.0"),
            ("picosdeeuropa_by_Aitzol_Berasategi", "CC-BY-4.0"),
            ("seeding_by_Clements_Engelhardt", "CC0-1.0"),
            ("sunset_by_Aitzol_Berasategi", "CC-BY-4.0"),
        ],
    )
    + _photos("backgrounds/{}.jpg", "lomiri-wallpapers-20.04", [("Kleiber_by_Lukas_Baubkus", "CC-BY-SA-3.0")])
)

#: The held-out test photographs: ``name -> (Python package, file inside the installed package)``.
NATURAL_TEST_PHOTOS = {
    "astronaut": ("skimage", "data/astronaut.png"),
    "camera": ("skimage", "data/camera.png"),
    "chelsea": ("skimage", "data/chelsea.png"),
    "coffee": ("skimage", "data/coffee.png"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    "motorcycle": ("skimage", "data/motorcycle_left.png"),
    "rocket": ("skimage", "data/rocket.jpg"),
}
# held out from training too (the other view of the motorcycle stereo pair), but not a test photo
_HELD_OUT_ONLY = {"motorcycle_right": ("skimage", "data/motorcycle_right.png")}
# photo_fingerprint of the held-out photos of scikit-image 0.26 / matplotlib 3.11: an exact copy
# is caught even where the packages are not installed
_HELD_OUT_SHA256 = {
    "astronaut": "7605af19ba2b975845037d479d9429d3fbc334ff78c7b51f67f112d50f85ed65",
    "camera": "4c25d57d0fcec8b28b0931b30543360fe332ee044bb5f3d461cc6325af018ed9",
    "chelsea": "2a48da897e30584d1ae09abf8802730963e97735ab7f4ccede25b412ab11e5dd",
    "coffee": "013a8175a6f60538e29aa8bee676f3e4b4c9a4388defc9a81368b20fc7b3fe9c",
    "grace_hopper": "b4fd8aa4629cf804f0d60036a2b41c75c63faa3c504a2b7234798e72bdc651c2",
    "motorcycle": "6a51b16e82babbafbffdff644108b2085a8ee609f08cfdc0d60bff950e42b6fc",
    "rocket": "9d55b6a566c73f3c20e2e36b81acc5d14fddc66453247ba544eced175a87cf54",
    "motorcycle_right": "2d3f65989e244a9e92bbc2209fcd7b8337d4ead9ed45a4b4f03d1652cf6ed600",
}

#: Downscaling factors of the training patches (relative to the photo scaled to a shorter side
#: of at most ``_BASE_SIDE`` pixels), drawn uniformly: log-uniform from 1 to 4.
NATURAL_SCALES = (1.0, 2**0.5, 2.0, 2**1.5, 4.0)
_BASE_SIDE = 1080
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as PIL's "L" conversion
_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def natural_root(root: str | None = None) -> str:
    """The root of the natural training photos: ``root`` if given, else the environment variable
    ``DEEPINV_ENERGY_NATURAL_DIR`` if set, else :data:`DEFAULT_NATURAL_ROOT`."""
    return root or os.environ.get(_NATURAL_ENV) or DEFAULT_NATURAL_ROOT


def _read_photo(path: str, min_side: int | None = None) -> np.ndarray:
    """Decoded uint8 pixels: (H, W) for a gray photo (or RGB with equal channels), else (H, W, 3).

    ``min_side``: a JPEG may be decoded at a reduced scale (1/2, 1/4, 1/8: libjpeg's DCT scaling)
    whose shorter side stays at least ``min_side``.
    """
    from PIL import Image

    with Image.open(path) as img:
        if min_side is not None and img.format == "JPEG":
            f = min(1.0, min_side / min(img.size))
            img.draft("RGB", (int(np.ceil(img.size[0] * f)), int(np.ceil(img.size[1] * f))))
        a = np.array(img.convert("RGB"))
    if (a[..., 0] == a[..., 1]).all() and (a[..., 0] == a[..., 2]).all():
        a = a[..., 0]
    return np.ascontiguousarray(a)


def _fingerprint(a: np.ndarray) -> str:
    h = hashlib.sha256(repr(a.shape).encode())
    h.update(a.tobytes())
    return h.hexdigest()


def photo_fingerprint(path: str) -> str:
    """SHA-256 of a photo's decoded pixels (uint8, gray if its channels are equal) and shape.

    Independent of the file's name and of a lossless re-encoding (JPEG to PNG, RGB to gray of a
    gray photo): the key by which held-out photos are kept out of training.
    """
    return _fingerprint(_read_photo(path))


def _to_tensor(a: np.ndarray, gray: bool) -> torch.Tensor:
    """uint8 (H, W[, 3]) -> float32 (C, H, W) in [0, 1]; gray: BT.601 luminance of RGB."""
    x = torch.from_numpy(a).movedim(-1, 0) if a.ndim == 3 else torch.from_numpy(a)[None]
    if gray and len(x) == 3:
        return sum(w / 255 * c.float() for w, c in zip(_LUMA, x))[None]
    x = x.float() / 255
    return x.expand(3, -1, -1).contiguous() if not gray and len(x) == 1 else x.contiguous()


def _thumbnail(a: np.ndarray) -> torch.Tensor:
    """Standardized 32 x 32 gray thumbnail (for near-copies: resized or re-encoded)."""
    t = torch.nn.functional.adaptive_avg_pool2d(_to_tensor(a, gray=True)[None], 32).flatten().double()
    t = t - t.mean()
    return t / t.norm().clamp_min(1e-12)


def _package_file(package: str, relative: str) -> str:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the held-out test photos need the Python package {package!r} "
            f"(pip install {'scikit-image' if package == 'skimage' else package})."
        )
    return os.path.join(spec.submodule_search_locations[0], relative)


def _held_out_arrays(strict: bool) -> dict:
    """The held-out photos (test photos and ``_HELD_OUT_ONLY``) as uint8 arrays; missing packages
    raise if ``strict``, else are skipped."""
    out = {}
    for name, (package, relative) in {**NATURAL_TEST_PHOTOS, **_HELD_OUT_ONLY}.items():
        try:
            out[name] = _read_photo(_package_file(package, relative))
        except (ModuleNotFoundError, FileNotFoundError):
            if strict:
                raise
    return out


def natural_test_images(gray: bool = True, names=None) -> dict:
    """The held-out test photos as float32 (C, H, W) tensors in [0, 1], at their own sizes.

    Read from the installed scikit-image and matplotlib packages (files inside the wheels; nothing
    is downloaded): ``astronaut``, ``camera``, ``chelsea``, ``coffee``, ``grace_hopper``,
    ``motorcycle`` (the left view of scikit-image's stereo pair), ``rocket``
    (:data:`NATURAL_TEST_PHOTOS`). Never used for training.

    :param bool gray: one channel, the BT.601 luminance :math:`0.299R + 0.587G + 0.114B`
        (``camera`` is gray already); otherwise RGB, leaving out the gray ``camera``.
    :param names: a subset of the names (default: all).
    :return: ``dict`` name -> tensor, in the order of :data:`NATURAL_TEST_PHOTOS`.

    :Examples:

    >>> from deepinv_energy.data import natural_test_images
    >>> x = natural_test_images(names=["camera"])["camera"]
    >>> tuple(x.shape), x.dtype
    ((1, 512, 512), torch.float32)
    """
    names = list(NATURAL_TEST_PHOTOS) if names is None else list(names)
    unknown = [n for n in names if n not in NATURAL_TEST_PHOTOS]
    if unknown:
        raise ValueError(f"names: unknown test photos {unknown}; known: {list(NATURAL_TEST_PHOTOS)}.")
    out = {}
    for name in names:
        a = _read_photo(_package_file(*NATURAL_TEST_PHOTOS[name]))
        if gray or a.ndim == 3:
            out[name] = _to_tensor(a, gray)
    return out


def _candidate_files(root: str | None) -> list:
    root = natural_root(root)
    listed = [(os.path.join(root, rel), package) for rel, package, _ in NATURAL_TRAINING_PHOTOS]
    present = [p for p, _ in listed if os.path.isfile(p)]
    if present:
        missing = sorted({pkg for p, pkg in listed if not os.path.isfile(p)})
        if missing:
            warnings.warn(
                f"natural photos: {len(listed) - len(present)} of {len(listed)} training photos are missing "
                f"under {root!r} (packages {missing}); training on the {len(present)} found.",
                stacklevel=3,
            )
        return present
    found = []
    if root != DEFAULT_NATURAL_ROOT and os.path.isdir(root):
        for dirpath, _, files in os.walk(root):
            found += [os.path.join(dirpath, f) for f in files if f.lower().endswith(_IMAGE_EXTS)]
    if not found:
        packages = sorted({pkg for _, pkg, _ in NATURAL_TRAINING_PHOTOS})
        raise FileNotFoundError(
            f"no natural training photos under {root!r}: install them (apt-get install {' '.join(packages)}) "
            f"or point {_NATURAL_ENV} (or root=) to a directory of photos."
        )
    return sorted(found)


def _iter_training_photos(root, held_out):
    """(path, uint8 array) of the training photos, the held-out photos left out (with a warning)."""
    if held_out is None:
        held_out = _held_out_arrays(strict=False)
        stored = dict(_HELD_OUT_SHA256)
    else:
        stored = {}
    refs = {**{h: n for n, h in stored.items()}, **{_fingerprint(a): n for n, a in held_out.items()}}
    thumbs = {n: (a.shape[0] / a.shape[1], _thumbnail(a)) for n, a in held_out.items()}
    for path in _candidate_files(root):
        a = _read_photo(path)
        name = refs.get(_fingerprint(a))
        if name is None:  # a resized or re-encoded copy: same aspect, same 32 x 32 thumbnail
            aspect, t = a.shape[0] / a.shape[1], _thumbnail(a)
            same = (n for n, (r, u) in thumbs.items() if abs(aspect / r - 1) < 0.02 and float(t @ u) > 0.98)
            name = next(same, None)
        if name is not None:
            msg = f"natural photos: {path!r} is the held-out test photo {name!r}; left out of training."
            warnings.warn(msg, stacklevel=3)
            continue
        yield path, a


def natural_training_files(root: str | None = None, held_out: dict | None = None) -> list:
    """The training photos' paths, every held-out photo left out.

    The candidates are the files of :data:`NATURAL_TRAINING_PHOTOS` under the root
    (:func:`natural_root`) that exist; if the root holds none of them (and is not the default),
    every image file under it, recursively, sorted. A candidate is left out (with a warning) when
    its decoded pixels are those of a held-out photo (:func:`photo_fingerprint`, whatever the file's
    name or format) or when it is a near copy of one (same aspect ratio within 2 % and a
    correlation above 0.98 of the 32 x 32 gray thumbnails: a resized or re-encoded copy).

    :param str | None root: root directory (default: :func:`natural_root`).
    :param dict | None held_out: name -> uint8 array (H, W) or (H, W, 3) of the photos to keep out;
        default: :func:`natural_test_images`'s photos and the other view of the motorcycle stereo
        pair, read from the installed packages (where they are missing, exact copies are still
        recognized by their stored fingerprints).
    """
    return [path for path, _ in _iter_training_photos(root, held_out)]


def _default_patch_count(patch_size: int, gray: bool) -> int:
    """50000 patches, fewer where the float32 tensor would pass 512 MiB."""
    return min(50000, 2**29 // (4 * (1 if gray else 3) * patch_size**2))


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    y = torch.nn.functional.interpolate(x[None], size=size, mode="bilinear", antialias=True, align_corners=False)
    return y[0].clamp(0, 1)


def natural_patches(
    patch_size: int,
    n: int | None = None,
    gray: bool = True,
    seed: int = 0,
    split: str = "train",
    root: str | None = None,
    held_out: dict | None = None,
) -> torch.Tensor:
    r"""A fixed, seeded set of random patches of natural photographs, float32 (N, C, P, P) in [0, 1].

    ``split="train"``: from the training photos only (:func:`natural_training_files`). Each photo is
    first scaled down (antialiased bilinear) to a shorter side of at most 1080 pixels; each patch
    picks a photo uniformly, a further downscaling factor uniformly among :data:`NATURAL_SCALES`
    (1 to 4, log-spaced: the held-out photos are 300 to 600 pixels high, so patches see objects at
    the scales of 270 to 1080 pixel high photos), a uniform position, and one of the eight flips
    and 90-degree rotations. ``split="test"``: crops of the held-out test photos
    (:func:`natural_test_images`) at their own scale, without flips or rotations.

    :param int patch_size: P.
    :param int | None n: number of patches; default 50000, fewer where the tensor would pass
        512 MiB (P = 64: 32768 gray, 10922 RGB).
    :param bool gray: one channel (BT.601 luminance), otherwise RGB (gray photos left out).
    :param int seed: seed of the draws (the same seed and photos give the same tensor).
    :param str split: ``"train"`` or ``"test"``.
    :param str | None root: root of the training photos (:func:`natural_root`).
    :param dict | None held_out: photos to keep out of training (see :func:`natural_training_files`).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    if int(patch_size) != patch_size or patch_size < 1:
        raise ValueError(f"patch_size must be a positive integer, got {patch_size!r}.")
    n = _default_patch_count(patch_size, gray) if n is None else int(n)
    if n < 1:
        raise ValueError(f"n must be a positive number of patches, got {n}.")
    if split == "train":  # a first pass checks every photo, the second decodes one at a time again
        paths = [p for p, a in _iter_training_photos(root, held_out) if gray or a.ndim == 3]
        scales, test_images = NATURAL_SCALES, None
    else:
        test_images = natural_test_images(gray)
        paths, scales = list(test_images), (1.0,)
    if not paths:
        raise FileNotFoundError("natural photos: no photo left to draw patches from.")
    g = torch.Generator().manual_seed(seed)
    photo = torch.randint(len(paths), (n,), generator=g)
    level = torch.randint(len(scales), (n,), generator=g)
    pos = torch.rand(n, 2, generator=g, dtype=torch.float64)
    mode = torch.randint(8, (n,), generator=g) if split == "train" else torch.zeros(n, dtype=torch.long)
    out = torch.empty(n, 1 if gray else 3, patch_size, patch_size)
    for k, path in enumerate(paths):
        mine = (photo == k).nonzero().flatten()
        if len(mine) == 0:
            continue
        if split == "train":
            x = _to_tensor(_read_photo(path, _BASE_SIDE), gray)
            H, W = x.shape[-2:]
            f = min(1.0, _BASE_SIDE / min(H, W))
            x = _resize(x, (round(H * f), round(W * f)))
        else:
            x = test_images[path]
        H, W = x.shape[-2:]
        if min(H, W) < patch_size:
            raise ValueError(f"patch_size {patch_size} is larger than the photo {path!r} ({H} x {W}).")
        for j, s in enumerate(scales):
            sel = mine[level[mine] == j]
            if len(sel) == 0:
                continue
            s = min(s, min(H, W) / patch_size)  # the largest factor that still fits the patch
            xs = _resize(x, (max(patch_size, round(H / s)), max(patch_size, round(W / s))))
            top = (pos[sel, 0] * (xs.shape[-2] - patch_size + 1)).long()
            left = (pos[sel, 1] * (xs.shape[-1] - patch_size + 1)).long()
            for i, t, l in zip(sel.tolist(), top.tolist(), left.tolist()):
                out[i] = xs[:, t : t + patch_size, l : l + patch_size]
    for m in range(1, 8):  # the dihedral group: m % 4 quarter turns, then a flip if m >= 4
        sel = (mode == m).nonzero().flatten()
        if len(sel):
            y = torch.rot90(out[sel], m % 4, dims=(-2, -1))
            out[sel] = y.flip(-1) if m >= 4 else y
    return out


class ImageTensorDataset(torch.utils.data.Dataset):
    """A :class:`torch.utils.data.Dataset` over an (N, C, H, W) tensor (returns images only)."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self):
        return self.images.shape[0]

    def __getitem__(self, i):
        return self.images[i]
