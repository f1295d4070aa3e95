"""Tests of the dataset readers on tiny files written by the tests."""

import gzip
import struct

import numpy as np
import pytest
import torch

from deepinv_energy.data import (
    ImageTensorDataset,
    load_idx_images,
    load_image_folder,
    load_images,
    read_idx,
)


def _write_idx(path, arr, gz):
    arr = np.asarray(arr, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    data = header + arr.tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


@pytest.fixture
def idx_dir(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, size=(5, 6, 7))
    test = rng.integers(0, 256, size=(3, 6, 7))
    _write_idx(tmp_path / "train-images-idx3-ubyte", train, gz=True)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", test, gz=False)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(5), gz=True)
    return tmp_path, train, test


def test_idx_reader(idx_dir):
    d, train, test = idx_dir
    x = load_idx_images(str(d), "train")
    assert x.shape == (5, 1, 6, 7) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0], torch.from_numpy(train).float() / 255)
    xt = load_idx_images(str(d), "test", limit=2)
    assert xt.shape == (2, 1, 6, 7)
    assert torch.allclose(xt[:, 0], torch.from_numpy(test[:2]).float() / 255)
    assert 0 <= x.min() and x.max() <= 1
    labels = read_idx(str(d / "train-labels-idx1-ubyte.gz"))
    assert labels.tolist() == list(range(5))
    # the generic dispatcher finds idx files in a directory
    assert torch.equal(load_images(str(d), "test"), load_idx_images(str(d), "test"))


def test_idx_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="train"):
        load_idx_images(str(tmp_path), "train")
    with pytest.raises(ValueError, match="split"):
        load_idx_images(str(tmp_path), "valid")
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="magic"):
        load_idx_images(str(tmp_path), "train")
    bad.write_bytes(struct.pack(">BBBBIII", 0, 0, 8, 3, 2, 2, 2) + b"\x00" * 5)
    with pytest.raises(ValueError, match="bytes"):
        read_idx(str(bad))


def test_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    arrs = [rng.integers(0, 256, size=(4, 5, 3), dtype=np.uint8) for _ in range(3)]
    for i, a in enumerate(arrs):
        Image.fromarray(a).save(tmp_path / f"img{i}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    x = load_image_folder(str(tmp_path))
    assert x.shape == (3, 3, 4, 5)
    assert torch.allclose(x[1], torch.from_numpy(arrs[1]).permute(2, 0, 1).float() / 255)
    xg = load_image_folder(str(tmp_path), grayscale=True, size=(8, 10))
    assert xg.shape == (3, 1, 8, 10)
    assert torch.equal(load_images("folder:" + str(tmp_path)), x)
    assert torch.equal(load_images(str(tmp_path)), x)
    Image.fromarray(arrs[0][:2]).save(tmp_path / "small.png")
    with pytest.raises(ValueError, match="different sizes"):
        load_image_folder(str(tmp_path))


def test_mixture_and_errors():
    x = load_images("gmm:2,4,4,3,0,100")
    assert x.shape == (100, 2, 4, 4)
    assert torch.equal(x, load_images("gmm:2,4,4,3,0,100"))
    assert not torch.equal(x, load_images("gmm:2,4,4,3,0,100", split="test"))
    with pytest.raises(FileNotFoundError, match="gmm"):
        load_images("/no/such/dir")
    ds = ImageTensorDataset(x)
    assert len(ds) == 100 and ds[3].shape == (2, 4, 4)


def test_gaussian_mixture_images():
    from deepinv_energy.data import gaussian_mixture_images

    class Prior:
        def sample_prior(self, n, generator=None):
            return torch.rand(n, 1, 2, 2, generator=generator, dtype=torch.float64)

    x = gaussian_mixture_images(Prior(), 4, seed=1)
    assert x.shape == (4, 1, 2, 2) and x.dtype == torch.float32
    assert torch.equal(x, gaussian_mixture_images(Prior(), 4, seed=1))


def test_mixture_splits_share_the_exact_distribution():
    """Both splits are draws of ``mixture_energy``: moments match the closed form (float64)."""
    from deepinv_energy.data import mixture_energy

    exact = mixture_energy(1, 3, 3, 2, seed=5)
    mean = exact.means.mean(0).flatten()
    dm = exact.means.flatten(1) - mean
    cov = exact.covs.mean(0) + dm.T @ dm / 2
    for split in ("train", "test"):
        x = load_images("gmm:1,3,3,2,5,40000", split=split).double().flatten(1)
        assert (x.mean(0) - mean).abs().max() < 0.01
        assert (torch.cov(x.T) - cov).abs().max() < 0.004
