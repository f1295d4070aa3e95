"""Tests of the dataset readers on tiny files written by the tests."""

import gzip
import os
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


# ---------------------------------------------------------------------------------------------
# data directories: documented defaults, overridden by environment variables or arguments
# ---------------------------------------------------------------------------------------------


def test_fashion_mnist_dir_env_and_argument(idx_dir, monkeypatch):
    from deepinv_energy.data import DEFAULT_FASHION_MNIST, fashion_mnist_dir

    d, _, test = idx_dir
    monkeypatch.delenv("DEEPINV_ENERGY_FASHION_MNIST", raising=False)
    assert fashion_mnist_dir() == DEFAULT_FASHION_MNIST == "/usr/share/datasets/fashion-mnist"
    monkeypatch.setenv("DEEPINV_ENERGY_FASHION_MNIST", str(d))
    assert fashion_mnist_dir() == str(d) and fashion_mnist_dir("/else") == "/else"
    x = load_images("fashion-mnist", "test")
    assert torch.allclose(x[:, 0], torch.from_numpy(test).float() / 255)
    assert torch.equal(load_idx_images(split="test"), x)


def test_natural_root_env_and_argument(monkeypatch):
    from deepinv_energy.data import DEFAULT_NATURAL_ROOT, natural_root

    monkeypatch.delenv("DEEPINV_ENERGY_NATURAL_DIR", raising=False)
    assert natural_root() == DEFAULT_NATURAL_ROOT == "/usr/share"
    monkeypatch.setenv("DEEPINV_ENERGY_NATURAL_DIR", "/photos")
    assert natural_root() == "/photos" and natural_root("/mine") == "/mine"


# ---------------------------------------------------------------------------------------------
# natural photographs: held-out exclusion, patch sampling (synthetic photos written here)
# ---------------------------------------------------------------------------------------------


def _smooth_photo(rng, h, w, c=3):
    """A random smooth uint8 image (distinct thumbnails for distinct seeds)."""
    z = torch.from_numpy(rng.random((1, c, h // 8 + 1, w // 8 + 1)))
    x = torch.nn.functional.interpolate(z, size=(h, w), mode="bicubic", align_corners=False)[0]
    x = x + 0.05 * torch.from_numpy(rng.random((c, h, w)))
    return (255 * (x - x.min()) / (x.max() - x.min())).round().byte().permute(1, 2, 0).squeeze(-1).numpy()


@pytest.fixture
def photo_root(tmp_path):
    """Three training photos, and copies of two held-out photos: renamed (PNG of a JPEG-free
    original), re-saved gray, resized, in a subfolder (the root holds none of the listed files,
    so every image under it is a candidate)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    train = {f"t{i}.png": _smooth_photo(rng, 48 + 8 * i, 64) for i in range(3)}
    secret = _smooth_photo(rng, 40, 56)  # held out, RGB
    secret_gray = _smooth_photo(rng, 44, 52, c=1)  # held out, gray
    (tmp_path / "sub").mkdir()
    for name, a in train.items():
        Image.fromarray(a).save(tmp_path / name)
    Image.fromarray(secret).save(tmp_path / "sub" / "holiday.png")  # renamed copy
    Image.fromarray(secret_gray).convert("RGB").save(tmp_path / "grey_as_rgb.bmp")  # same pixels, RGB file
    Image.fromarray(secret).resize((112, 80), Image.BICUBIC).save(tmp_path / "big.jpg", quality=90)  # near copy
    (tmp_path / "notes.txt").write_text("not an image")
    held_out = {"secret": secret, "secret_gray": secret_gray}
    return tmp_path, train, held_out


def test_photo_fingerprint_is_content_not_name(tmp_path):
    from PIL import Image

    from deepinv_energy.data import photo_fingerprint

    a = _smooth_photo(np.random.default_rng(1), 20, 30)
    Image.fromarray(a).save(tmp_path / "a.png")
    Image.fromarray(a).save(tmp_path / "b.bmp")
    Image.fromarray(a[..., 0]).save(tmp_path / "g.png")
    Image.fromarray(a[..., 0]).convert("RGB").save(tmp_path / "g_rgb.png")
    assert photo_fingerprint(str(tmp_path / "a.png")) == photo_fingerprint(str(tmp_path / "b.bmp"))
    assert photo_fingerprint(str(tmp_path / "g.png")) == photo_fingerprint(str(tmp_path / "g_rgb.png"))
    b = a.copy()
    b[3, 4, 1] ^= 1  # one bit of one pixel
    Image.fromarray(b).save(tmp_path / "b.png")
    assert photo_fingerprint(str(tmp_path / "b.png")) != photo_fingerprint(str(tmp_path / "a.png"))


def test_training_files_leave_out_held_out_copies(photo_root):
    from deepinv_energy.data import natural_training_files

    root, train, held_out = photo_root
    with pytest.warns(UserWarning, match="held-out test photo") as rec:
        files = natural_training_files(str(root), held_out=held_out)
    assert sorted(os.path.basename(f) for f in files) == sorted(train)
    assert len(rec) == 3 and all(str(root) in str(w.message) for w in rec)
    # without the held-out set the copies would be used: the check above can fail
    everything = natural_training_files(str(root), held_out={})
    assert {os.path.basename(f) for f in everything} == set(train) | {"holiday.png", "grey_as_rgb.bmp", "big.jpg"}


def test_stored_fingerprints_catch_exact_copies_without_the_packages(photo_root, monkeypatch):
    """Where scikit-image is missing, the fingerprints stored in the package still catch exact copies."""
    import deepinv_energy.data as D

    root, train, held_out = photo_root
    monkeypatch.setattr(D, "_held_out_arrays", lambda strict: {})
    monkeypatch.setattr(D, "_HELD_OUT_SHA256", {"secret": D._fingerprint(held_out["secret"])})
    with pytest.warns(UserWarning, match="'secret'"):
        files = D.natural_training_files(str(root))
    assert {os.path.basename(f) for f in files} == set(train) | {"grey_as_rgb.bmp", "big.jpg"}


def _all_crops(a, p):
    """Every p x p crop of a uint8 image under the eight flips / quarter turns, as float32 bytes."""
    x = torch.from_numpy(a).float() / 255
    x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)
    crops = x.unfold(1, p, 1).unfold(2, p, 1).permute(1, 2, 0, 3, 4).reshape(-1, x.shape[0], p, p)
    views = [torch.rot90(crops, k, dims=(-2, -1)) for k in range(4)]
    return {c.contiguous().numpy().tobytes() for v in views + [v.flip(-1) for v in views] for c in v}


def test_patches_contain_no_crop_of_a_held_out_photo(photo_root):
    from deepinv_energy.data import natural_patches

    root, _, held_out = photo_root
    crops = _all_crops(held_out["secret"], 8)
    with pytest.warns(UserWarning):
        x = natural_patches(8, 300, gray=False, root=str(root), held_out=held_out)
    assert not any(p.numpy().tobytes() in crops for p in x)
    # control: with the copies allowed, some patches (the undownscaled ones) are exact crops
    leaky = natural_patches(8, 300, gray=False, root=str(root), held_out={})
    assert sum(p.numpy().tobytes() in crops for p in leaky) > 0


def test_natural_patches_sampling(tmp_path):
    """A horizontal ramp of slope 1/255 per pixel: every patch is a ramp whose slope is 1/255 times
    a downscaling factor of NATURAL_SCALES, in all four directions (flips, quarter turns)."""
    from PIL import Image

    from deepinv_energy.data import NATURAL_SCALES, natural_patches

    ramp = np.tile(np.arange(250, dtype=np.uint8), (200, 1))
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    x = natural_patches(6, 400, root=str(tmp_path), held_out={}, seed=3)
    assert x.shape == (400, 1, 6, 6) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1
    assert torch.equal(x, natural_patches(6, 400, root=str(tmp_path), held_out={}, seed=3))
    assert not torch.equal(x, natural_patches(6, 400, root=str(tmp_path), held_out={}, seed=4))
    gx = (x[..., :, 1:] - x[..., :, :-1]).mean((1, 2, 3)) * 255
    gy = (x[..., 1:, :] - x[..., :-1, :]).mean((1, 2, 3)) * 255
    slope = torch.where(gx.abs() > gy.abs(), gx, gy).abs()
    scales = torch.tensor(NATURAL_SCALES)
    level = (slope[:, None] - scales).abs().argmin(1)
    interior = (x.flatten(1).min(1).values > 0.02) & (x.flatten(1).max(1).values < 0.97)
    assert (slope - scales[level]).abs()[interior].max() < 0.05
    assert set(level[interior].tolist()) == set(range(len(NATURAL_SCALES)))
    directions = {(int(torch.sign(a)), int(torch.sign(b))) for a, b in zip(gx[interior].round(), gy[interior].round())}
    assert directions == {(1, 0), (-1, 0), (0, 1), (0, -1)}


def test_natural_patches_gray_and_rgb(tmp_path):
    from PIL import Image

    from deepinv_energy.data import natural_patches

    color = np.zeros((30, 40, 3), np.uint8) + np.array([200, 100, 50], np.uint8)
    Image.fromarray(color).save(tmp_path / "c.png")
    Image.fromarray(np.full((30, 40), 77, np.uint8)).save(tmp_path / "g.png")
    x = natural_patches(5, 50, root=str(tmp_path), held_out={})  # BT.601 luminance; both photos
    lum = (0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255
    assert set(torch.round(x.flatten(1).mean(1) * 1e5).tolist()) == {round(lum * 1e5), round(77 / 255 * 1e5)}
    y = natural_patches(5, 50, gray=False, root=str(tmp_path), held_out={})  # the gray photo left out
    assert y.shape == (50, 3, 5, 5) and torch.allclose(y, torch.tensor([200, 100, 50.0])[:, None, None] / 255)


def test_natural_spec_and_errors(tmp_path, monkeypatch):
    from PIL import Image

    from deepinv_energy.data import natural_patches

    Image.fromarray(_smooth_photo(np.random.default_rng(2), 40, 50)).save(tmp_path / "p.png")
    monkeypatch.setenv("DEEPINV_ENERGY_NATURAL_DIR", str(tmp_path))
    x = load_images("natural-rgb:8,20,5")
    assert torch.equal(x, natural_patches(8, 20, gray=False, seed=5, root=str(tmp_path)))
    assert load_images("natural-gray:8", limit=7).shape == (7, 1, 8, 8)
    for bad in ("natural-gray:", "natural-gray:8,x", "natural-rgb:1,2,3,4"):
        with pytest.raises(ValueError, match="P\\[,N\\[,seed\\]\\]"):
            load_images(bad)
    with pytest.raises(ValueError, match="larger than the photo"):
        natural_patches(41, 3, root=str(tmp_path))
    with pytest.raises(ValueError, match="patch_size"):
        natural_patches(0, 3, root=str(tmp_path))
    with pytest.raises(ValueError, match="n must be"):
        natural_patches(8, 0, root=str(tmp_path))
    with pytest.raises(ValueError, match="split"):
        natural_patches(8, 3, split="valid", root=str(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="apt-get install .*mate-backgrounds"):
        natural_patches(8, 3, root=str(tmp_path / "empty"))


# ---------------------------------------------------------------------------------------------
# the real photos: held-out test photos (scikit-image, matplotlib), training photos (Debian)
# ---------------------------------------------------------------------------------------------


def test_natural_test_images():
    pytest.importorskip("skimage", reason="the held-out test photos are read from scikit-image's wheel")
    from deepinv_energy.data import (
        _HELD_OUT_SHA256,
        NATURAL_TEST_PHOTOS,
        _fingerprint,
        _held_out_arrays,
        natural_test_images,
    )

    gray = natural_test_images()
    assert list(gray) == list(NATURAL_TEST_PHOTOS)
    assert gray["camera"].shape == (1, 512, 512) and gray["chelsea"].shape == (1, 300, 451)
    rgb = natural_test_images(gray=False)
    assert "camera" not in rgb and rgb["astronaut"].shape == (3, 512, 512)
    for name, x in rgb.items():
        assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
        lum = torch.einsum("c,chw->hw", torch.tensor([0.299, 0.587, 0.114]), x)
        assert torch.allclose(gray[name][0], lum, atol=1e-6)
    assert list(natural_test_images(names=["rocket"])) == ["rocket"]
    with pytest.raises(ValueError, match="names"):
        natural_test_images(names=["lena"])
    # the stored fingerprints (used where the packages are missing) are those of the installed photos
    assert {n: _fingerprint(a) for n, a in _held_out_arrays(strict=True).items()} == _HELD_OUT_SHA256


def test_natural_test_split_crops_test_photos():
    pytest.importorskip("skimage", reason="the held-out test photos are read from scikit-image's wheel")
    from deepinv_energy.data import natural_test_images

    x = load_images("natural-gray:16,40,1", split="test")
    assert x.shape == (40, 1, 16, 16)
    photos = list(natural_test_images().values())
    means = [torch.nn.functional.avg_pool2d(a[None], 16, stride=1)[0, 0] for a in photos]

    def is_crop(p):  # candidates by the patch mean, then exact equality
        for a, m in zip(photos, means):
            for i, j in ((m - p.mean()).abs() < 1e-5).nonzero().tolist():
                if torch.equal(a[:, i : i + 16, j : j + 16], p):
                    return True
        return False

    assert all(is_crop(p) for p in x)
    assert not is_crop(x[0].flip(-1)) and not is_crop(x[0] + 1 / 255)


@pytest.mark.slow
def test_debian_training_photos_exclude_test_photos():
    """The installed Debian photos: all 38 found, none a held-out photo (decodes 38 JPEGs: ~20 s)."""
    from deepinv_energy.data import (
        _HELD_OUT_SHA256,
        DEFAULT_NATURAL_ROOT,
        NATURAL_TRAINING_PHOTOS,
        natural_training_files,
        photo_fingerprint,
    )

    paths = [os.path.join(DEFAULT_NATURAL_ROOT, rel) for rel, _, _ in NATURAL_TRAINING_PHOTOS]
    if not all(os.path.isfile(p) for p in paths):
        pytest.skip("the Debian wallpaper packages are not installed (apt-get install mate-backgrounds "
                    "plasma-workspace-wallpapers lomiri-wallpapers-16.04 lomiri-wallpapers-20.04)")
    assert len(paths) == 38
    files = natural_training_files(DEFAULT_NATURAL_ROOT)
    assert files == paths
    assert not {photo_fingerprint(p) for p in files} & set(_HELD_OUT_SHA256.values())
