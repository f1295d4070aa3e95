r"""Datasets of clean images in [0, 1], shape (N, C, H, W): idx files, image folders, mixtures.

Nothing is downloaded. Fashion-MNIST on Debian/Ubuntu: ``apt-get install dataset-fashion-mnist``
puts the four standard idx files in ``/usr/share/datasets/fashion-mnist/``; any directory
holding the standard files (gzipped or not, e.g. torchvision's ``raw/`` folder) works.
"""

from __future__ import annotations

import gzip
import os
import struct

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
    "ImageTensorDataset",
]

#: Where ``dataset-fashion-mnist`` installs the idx files.
DEFAULT_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"

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


def load_idx_images(directory: str = DEFAULT_FASHION_MNIST, split: str = "train", limit: int | None = None) -> torch.Tensor:
    """MNIST-format images from ``directory`` as float32 (N, 1, H, W) in [0, 1].

    :param str directory: directory holding the standard idx files (``train-images-idx3-ubyte[.gz]``,
        ``t10k-images-idx3-ubyte[.gz]``).
    :param str split: ``"train"`` or ``"test"``.
    :param int | None limit: keep the first ``limit`` images.
    """
    arr = read_idx(_find_idx(directory, split))
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

    - ``"fashion-mnist"`` (the default system directory) or any directory with idx files;
    - ``"folder:PATH"`` or a directory of image files;
    - ``"gmm:C,H,W,K[,seed[,n]]"``: ``n`` (default 10000) samples of a random Gaussian mixture
      with ``K`` components (see :func:`mixture_parameters`; the test split holds other draws of
      the same mixture, whose exact energy is :func:`mixture_energy`).
    """
    if spec in ("fashion-mnist", "fmnist"):
        return load_idx_images(DEFAULT_FASHION_MNIST, split, limit)
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
        f"data {spec!r} is neither 'fashion-mnist', 'gmm:C,H,W,K[,seed[,n]]', 'folder:PATH' nor a directory."
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


class ImageTensorDataset(torch.utils.data.Dataset):
    """A :class:`torch.utils.data.Dataset` over an (N, C, H, W) tensor (returns images only)."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self):
        return self.images.shape[0]

    def __getitem__(self, i):
        return self.images[i]
