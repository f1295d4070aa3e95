"""The bundled natural-image model on a held-out photo of any size (Python API).

The photo is a crop of scikit-image's ``camera``, never used in training (tests/test_data.py checks
the exclusion). What the model achieves is measured in benchmarks/results/natural.md; here: it loads,
takes several sizes, and a 256x256 restoration improves on its measurement.
"""

import deepinv as dinv
import pytest
import torch

from deepinv_energy import Covariance, EnergyMMSE, EnergyUNet

pytest.importorskip("skimage", reason="the held-out test photos come from scikit-image's wheel")
from deepinv_energy.data import natural_test_images  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return EnergyUNet.from_pretrained("natural-gray")


@pytest.fixture(scope="module")
def photo():
    return natural_test_images(names=["camera"])["camera"][None, :, 128:384, 128:384].contiguous()


def test_natural_model_is_size_free(model):
    assert model.image_shape is None and model.config.size_free
    for h, w in ((32, 32), (64, 48), (256, 256)):
        y = torch.rand(1, 1, h, w)
        for basis in ("pixel", "hartley"):
            u = model.energy(y, Covariance.isotropic(0.01, y, basis))
            assert u.shape == (1,) and torch.isfinite(u).all()
    with pytest.raises(ValueError, match="multiples of 2\\*\\*depth"):
        model.energy(torch.rand(1, 1, 30, 32), Covariance.isotropic(0.01, torch.rand(1, 1, 30, 32)))


def test_natural_model_restores_a_held_out_256_photo(model, photo):
    physics = dinv.physics.Inpainting(photo.shape[1:], mask=0.5, noise_model=dinv.physics.GaussianNoise(0.01),
                                      rng=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    y = physics(photo)
    x_hat, std = EnergyMMSE(model)(y, physics, return_std=True)
    assert x_hat.shape == photo.shape and torch.isfinite(x_hat).all() and torch.isfinite(std).all()
    psnr = dinv.metric.PSNR()
    assert float(psnr(x_hat, photo)) > float(psnr(y, photo)) + 3.0


def test_cli_restores_a_held_out_256_photo_with_natural_gray(photo, tmp_path, capsys):
    import torchvision
    from PIL import Image

    from deepinv_energy.cli import main

    torchvision.utils.save_image(photo, tmp_path / "photo.png")
    y = tmp_path / "y.png"
    assert main(["simulate", str(tmp_path / "photo.png"), "--task", "gaussian-blur", "--blur-std", "1.5",
                 "--noise", "0.01", "--model", "natural-gray", "--out", str(y)]) == 0
    out = tmp_path / "restored.png"
    assert main(["restore", str(y), "--task", "gaussian-blur", "--model", "natural-gray", "--method", "mmse",
                 "--out", str(out)]) == 0
    assert Image.open(out).size[0] > 256  # the figure: measurement, mean, std
    # any size divisible by 8 is taken; other sizes are refused, naming the crop to make
    torchvision.utils.save_image(photo[..., :60, :64], tmp_path / "odd.png")
    assert main(["simulate", str(tmp_path / "odd.png"), "--task", "denoise", "--model", "natural-gray",
                 "--out", str(tmp_path / "odd_y.png")]) == 2
    assert "multiples of 8" in capsys.readouterr().err


def test_training_refuses_the_held_out_photos(tmp_path):
    from deepinv_energy.training import TrainConfig, Trainer

    with pytest.raises(ValueError, match="held-out natural test photos"):
        Trainer(TrainConfig(data="natural-gray:32,8", split="test", out=str(tmp_path / "run")))


@pytest.mark.parametrize("between, known", [(1.0, 0.0), (0.0, 1.0), (1.0, 1.0)])
def test_benchmark_coverage_is_calibrated_for_exact_draws(between, known):
    """benchmarks/natural.py's 90 % intervals from K = 4 Tweedie draws m_k ~ N(0, a) with known
    Var[x | y_K] = b, for a truth x ~ N(0, a + b) independent of the draws: 0.9 of the truth inside
    when only the draws vary (Student t, 3 dof), when only the Tweedie variance counts (Gaussian),
    and within 0.01 in between (Welch-Satterthwaite)."""
    pytest.importorskip("scipy")
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
    from natural import coverage

    g = torch.Generator().manual_seed(0)
    n, k = 200_000, 4
    m = between**0.5 * torch.randn(k, n, generator=g, dtype=torch.float64)
    x = (between + known) ** 0.5 * torch.randn(n, generator=g, dtype=torch.float64)
    var = torch.full((k, n), known, dtype=torch.float64)
    assert abs(coverage(m, x, var) - 0.9) < 0.01
