"""The command line: every subcommand's help, the demo, and readable errors."""

import re
from pathlib import Path
import subprocess
import sys

import pytest
import torch

from deepinv_energy.cli import main


def test_help_and_version(capsys):
    assert main([]) == 0
    assert "demo" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0


@pytest.mark.parametrize("command", ["demo", "restore", "sample", "blind", "train", "evaluate"])
def test_subcommand_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0 and "usage" in capsys.readouterr().out


def test_demo_runs_and_writes_figure(tmp_path, capsys):
    out = tmp_path / "demo.png"
    assert main(["demo", "--out", str(out), "--images", "1", "--samples", "2", "--levels", "8"]) == 0
    text = capsys.readouterr().out
    assert out.stat().st_size > 1000
    assert "1-eval" in text  # the one-evaluation posterior mean (EnergyMMSE) column
    # PSNR (dB) of the printed table against the values measured on this setting (first bundled image, 2 draws of
    # 8 levels, seed 0): observation, sampler, 1-eval. The measurement is deterministic (pinned to 0.05 dB); the
    # restorations must stay within 2 dB below what they reach now and >= 5 dB above the observation (a restoration
    # with the wrong physics, or the observation itself, is within a dB or two of it); the one-evaluation mean
    # within 1.5 dB of its value and, on this model (benchmarks/results/mmse_wiener.md), >= 5 dB above the observation.
    measured = {"box inpainting": (9.47, 27.32, 23.91), "random inpainting": (6.56, 22.78, 22.97),
                "gaussian deblurring": (19.04, 27.15, 29.00)}
    rows = {line[:26].strip(): [float(v) for v in re.findall(r"(-?[0-9.]+)dB", line)] for line in text.splitlines()
            if "dB" in line}
    for task, (obs, sampler, one_eval) in measured.items():
        (row,) = [v for name, v in rows.items() if name.startswith(task)]
        assert abs(row[0] - obs) < 0.05, (task, row)
        assert row[1] > sampler - 2 and row[1] > row[0] + 5, (task, row)
        assert abs(row[2] - one_eval) < 1.5 and row[2] > row[0] + 5, (task, row)


def test_user_errors_have_no_traceback():
    res = subprocess.run([sys.executable, "-m", "deepinv_energy.cli", "demo", "--images", "0"],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr and "--images" in res.stderr
    res = subprocess.run([sys.executable, "-m", "deepinv_energy.cli", "demo", "--model", "/nonexistent/model"],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr


def _blur_png(path, width, index=0):
    """Bundled test image ``index`` blurred by deepinv's Gaussian kernel of std ``width`` (circular, no noise),
    saved as an 8-bit PNG; returns the clean image (1, 1, 28, 28)."""
    import deepinv as dinv
    import torchvision

    from deepinv_energy.demo import bundled_test_images

    x = bundled_test_images(index + 1)[0][index : index + 1]
    k = dinv.physics.functional.gaussian_blur(sigma=(width, width))
    torchvision.utils.save_image(dinv.physics.BlurFFT((1, 28, 28), filter=k).A(x).clamp(0, 1), path)
    return x


@pytest.fixture
def blurred_png(tmp_path):
    path = tmp_path / "blurred.png"
    _blur_png(path, 1.0)
    return path


@pytest.fixture
def figure_rows(monkeypatch):
    """The images restore/blind put in their figures (each call's list), captured as the figure is written."""
    import deepinv_energy.cli as cli

    rows, save = [], cli._save_row

    def spy(path, images, titles, cmap=None, **kwargs):
        rows.append([img.detach().clone() for img in images])
        return save(path, images, titles, cmap, **kwargs)

    monkeypatch.setattr(cli, "_save_row", spy)
    return rows


def _psnr(a, b):
    import deepinv as dinv

    return float(dinv.metric.PSNR()(a.clamp(0, 1), b).mean())


def _map_of(text, name):
    (value,) = re.findall(rf"^{name}: MAP ([-0-9.e]+),", text, flags=re.M)
    return float(value)


def test_restore_sample_blind(tmp_path, blurred_png, figure_rows, capsys):
    """restore: the posterior mean of the blurred bundled image (std 1, 8-bit PNG) is compared with the clean
    image: measured 28.5 dB (2 draws, 8 levels, seed 0) against 19.1 dB for the measurement; required >= 26 dB.
    blind: the MAP width of blurs of known width is within a grid step of the truth (measured: exact on the
    0.5-step grid for width 1, 1.5 on the 0.2-step grid for width 1.5)."""
    from deepinv_energy.cli import _read_image
    from deepinv_energy.demo import bundled_test_images

    x = bundled_test_images(1)[0]
    out = tmp_path / "r.png"
    assert main(["restore", str(blurred_png), "--task", "gaussian-blur", "--levels", "8", "--samples", "2",
                 "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
    (y, mean, std), = figure_rows
    assert torch.equal(y, _read_image(blurred_png))
    assert abs(_psnr(y, x) - 19.06) < 0.05  # the measurement as read
    assert _psnr(mean, x) > 26 and (std >= 0).all() and 0 < std.mean() < 0.1, (_psnr(mean, x), std.mean())
    out = tmp_path / "s.png"
    assert main(["sample", "--n", "2", "--levels", "4", "--out", str(out)]) == 0
    assert out.stat().st_size > 100
    prefix = tmp_path / "b"
    capsys.readouterr()
    assert main(["blind", str(blurred_png), "--widths", "0.5:1.5:3", "--samples", "0", "--out-prefix", str(prefix)]) == 0
    printed = capsys.readouterr().out
    assert _map_of(printed, "width") == 1.0 and "the truth may lie at or beyond" not in printed
    assert (tmp_path / "b_posterior.png").stat().st_size > 1000
    # a grid that stops below the true width 1: the posterior piles on its end, and the command says so
    assert main(["blind", str(blurred_png), "--widths", "0.3:0.6:4", "--samples", "0", "--out-prefix", str(prefix)]) == 0
    printed = capsys.readouterr().out
    assert _map_of(printed, "width") == 0.6 and "of the posterior of width is on the largest grid value" in printed
    _blur_png(tmp_path / "wide.png", 1.5, index=1)
    assert main(["blind", str(tmp_path / "wide.png"), "--widths", "0.5:2.5:11", "--samples", "0",
                 "--out-prefix", str(prefix)]) == 0
    assert abs(_map_of(capsys.readouterr().out, "width") - 1.5) <= 0.2 + 1e-9
    assert main(["blind", str(blurred_png), "--family", "motion-blur", "--lengths", "1:5:2", "--angles", "0:90:2",
                 "--noise", "0.01:0.05:2", "--samples", "0", "--out-prefix", str(prefix)]) == 0
    printed = capsys.readouterr().out
    assert "length: MAP" in printed and "angle: MAP" in printed and "noise: MAP" in printed


def test_restore_one_evaluation_mmse(tmp_path, blurred_png, figure_rows, capsys):
    """--method mmse shows EnergyMMSE's mean and std for the image, blur and noise given on the command line."""
    import deepinv as dinv

    from deepinv_energy import EnergyMMSE, EnergyUNet
    from deepinv_energy.cli import _read_image

    out = tmp_path / "m.png"
    assert main(["restore", str(blurred_png), "--task", "gaussian-blur", "--method", "mmse", "--noise", "0.02",
                 "--blur-std", "1.2", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000 and "restoration (mmse)" in capsys.readouterr().out
    y = _read_image(blurred_png)
    k = dinv.physics.functional.gaussian_blur(sigma=(1.2, 1.2))
    physics = dinv.physics.BlurFFT((1, 28, 28), filter=k, noise_model=dinv.physics.GaussianNoise(0.02))
    mean, std = EnergyMMSE(EnergyUNet.from_pretrained("fashion-mnist-28"))(y, physics, return_std=True)
    (shown_y, shown_mean, shown_std), = figure_rows
    assert torch.equal(shown_y, y)
    torch.testing.assert_close(shown_mean, mean)
    torch.testing.assert_close(shown_std, std)
    with pytest.raises(SystemExit) as info:
        main(["restore", str(blurred_png), "--task", "denoise", "--method", "nope"])
    assert info.value.code == 2


def test_bad_paths_and_arguments(tmp_path, blurred_png):
    assert main(["restore", str(tmp_path / "missing.png"), "--task", "denoise"]) == 2
    assert main(["restore", str(blurred_png), "--task", "inpaint"]) == 2  # no mask
    assert main(["blind", str(blurred_png), "--widths", "3:1:4"]) == 2
    assert main(["blind", str(blurred_png), "--family", "motion-blur", "--angles=-10:90:3"]) == 2


def test_train_and_resume(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", "gmm:1,8,8,2,0,64", "--out", str(out), "--steps", "2", "--batch-size", "4",
            "--width", "8", "--ckpt-every", "1", "--log-every", "1", "--threads", "1"]
    assert main(args) == 0
    assert (out / "checkpoint.pt").exists() and (out / "log.csv").exists()
    assert main(args) == 2  # the run holds a checkpoint: neither --resume nor --overwrite, refused
    more = args[:-8] + ["--steps", "3", "--batch-size", "4", "--width", "8", "--resume", "--threads", "1"]
    assert main(more) == 2  # more steps change the schedule: refused without --allow-config-change
    assert main(more + ["--allow-config-change"]) == 0
    steps = [line.split(",")[0] for line in (out / "log.csv").read_text().splitlines()[1:]]
    assert steps == ["1", "2", "3"]  # resumed at step 2, not restarted
    assert "steps: 2 -> 3" in (out / "changes.log").read_text()
    # the resumed run continued from step 2 with its weights, optimizer and EMA: it equals a 3-step run bit for bit
    # (the warmup of 500 steps makes the lr independent of --steps), and its log's rows are the 3-step run's
    # (a resume that loads the weights but counts from step 0, or drops the optimizer state, also ends with a
    # checkpoint of step 3 and log rows 1, 2, 3)
    from deepinv_energy.training import load_checkpoint

    full = tmp_path / "full"
    assert main(["train", "--data", "gmm:1,8,8,2,0,64", "--out", str(full), "--steps", "3"] + args[7:]) == 0
    resumed, straight = load_checkpoint(str(out / "checkpoint.pt")), load_checkpoint(str(full / "checkpoint.pt"))
    assert resumed["step"] == straight["step"] == 3
    for key in ("model", "ema"):
        for name, value in straight[key].items():
            assert torch.equal(resumed[key][name], value), (key, name)

    def losses(path):
        return [line.split(",")[:4] for line in (path / "log.csv").read_text().splitlines()[1:]]

    assert losses(out) == losses(full)


def test_evaluate_on_an_image_folder(tmp_path, capsys):
    import torchvision

    from deepinv_energy.demo import bundled_test_images

    x, _ = bundled_test_images(4)
    for i in range(4):
        torchvision.utils.save_image(x[i], tmp_path / f"{i}.png")
    assert main(["evaluate", "--data", f"folder:{tmp_path}", "--n", "4", "--noise", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "noise 0.1" in out and "bits/dim" in out
    assert "bits/dim in the pixel basis" in out and "in the Hartley basis" in out
    assert "disagree by" in out  # the bundled model's known gap at variance 1e-6 is flagged
    assert main(["evaluate", "--data", str(tmp_path / "nope"), "--n", "4"]) == 2


def _cli(*args):
    """Run the installed command in a fresh process: (exit status, stdout, stderr)."""
    res = subprocess.run([sys.executable, "-m", "deepinv_energy.cli", *map(str, args)], capture_output=True, text=True)
    return res.returncode, res.stdout, res.stderr


def _one_line_error(rc, err, *needles):
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for n in needles:
        assert n in err, (n, err)


@pytest.mark.parametrize("args, needle", [
    (["restore", "IMG", "--task", "denoise", "--noise", "-1"], "--noise: must be a finite number >= 0"),
    (["restore", "IMG", "--task", "denoise", "--noise", "nan"], "--noise"),
    (["restore", "IMG", "--task", "gaussian-blur", "--blur-std", "0"], "--blur-std: must be a finite number > 0"),
    (["restore", "IMG", "--task", "denoise", "--samples", "1"], "--samples: must be an integer >= 2"),
    (["blind", "IMG", "--samples", "1"], "--samples must be 0 or at least 2"),
    (["blind", "IMG", "--widths", "0.3:3:1e9"], "COUNT must be an integer from 2 to 4096"),
    (["blind", "IMG", "--family", "motion-blur", "--lengths", "1:9:100", "--angles", "0:90:100"], "grid has 10000 points"),
    (["blind", "IMG", "--noise", "-0.1"], "--noise must be > 0"),
    (["evaluate", "--noise", "0.1,nan"], "--noise levels must be finite and > 0"),
    (["sample", "--levels", "1"], "--levels: must be an integer >= 2"),
    (["train", "--batch-size", "0"], "--batch-size must be an integer >= 1"),
    (["train", "--ckpt-every", "0"], "--ckpt-every must be"),
    (["train", "--width", "0"], "--width must be"),
    (["train", "--lr", "nan"], "--lr must be a finite number > 0"),
    (["train", "--families", "box,nope"], "--families must be"),
    (["train", "--out", "FILE"], "is a file"),
])
def test_argument_ranges_one_line_errors(tmp_path, blurred_png, args, needle):
    """Every out-of-range argument is one line on stderr with exit status 2 (no traceback), before any
    work: --noise -1/nan used to run noise-free, --blur-std 0 gave NaN kernels, --samples 1 a NaN std,
    a 1e9-point grid was killed by the OOM killer."""
    (tmp_path / "file").write_text("x")
    args = [str(blurred_png) if a == "IMG" else str(tmp_path / "file") if a == "FILE" else a for a in args]
    if args[0] == "train" and "--out" not in args:
        args += ["--out", str(tmp_path / "run")]
    rc, _, err = _cli(*args)
    _one_line_error(rc, err, needle)
    assert not (tmp_path / "run").exists()


def test_library_errors_and_size_mismatch_are_one_line(tmp_path):
    """A library ValueError (empty .npy), an unreadable model and an image the model cannot take are
    one line each; the size error names the sizes the bundled model takes."""
    import numpy as np

    np.save(tmp_path / "big.npy", np.zeros((32, 32), dtype=np.float32))
    rc, _, err = _cli("restore", tmp_path / "big.npy", "--task", "denoise")
    _one_line_error(rc, err, "(1, 32, 32)", "grey 28x28")
    rc, _, err = _cli("blind", tmp_path / "big.npy")
    _one_line_error(rc, err, "grey 28x28")
    np.save(tmp_path / "nan.npy", np.full((28, 28), np.nan, dtype=np.float32))
    _one_line_error(*_cli("restore", tmp_path / "nan.npy", "--task", "denoise")[::2], "finite values")
    (tmp_path / "m.json").write_text("{not json")
    (tmp_path / "m.safetensors").write_bytes(b"")
    rc, _, err = _cli("sample", "--model", tmp_path / "m.json", "--levels", "2", "--n", "1")
    _one_line_error(rc, err, "m.json")
    from deepinv_energy.models.pretrained import resolve_pretrained

    (tmp_path / "m.json").write_text(open(resolve_pretrained("fashion-mnist-28")[1]).read())
    rc, _, err = _cli("sample", "--model", tmp_path / "m.json", "--levels", "2", "--n", "1")  # the library's ValueError
    _one_line_error(rc, err, "checksum mismatch", "m.safetensors")


def test_sixteen_bit_and_rgb_images(tmp_path):
    """16-bit PNGs are scaled by 65535 (not clipped by convert('L')); RGB is converted with a note."""
    import numpy as np
    from PIL import Image

    from deepinv_energy.cli import _read_image

    a = (np.linspace(0, 1, 28 * 28).reshape(28, 28) * 65535).astype(np.uint16)
    Image.fromarray(a).save(tmp_path / "g16.png")
    x = _read_image(tmp_path / "g16.png")
    assert torch.allclose(x[0, 0], torch.from_numpy(a.astype(np.float32) / 65535), atol=1e-6)
    rgb = np.zeros((28, 28, 3), dtype=np.uint8)
    rgb[..., 0] = 255
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    res = subprocess.run([sys.executable, "-c", f"from deepinv_energy.cli import _read_image; "
                          f"print(float(_read_image({str(tmp_path / 'rgb.png')!r}).mean()))"],
                         capture_output=True, text=True)
    assert "converted to grey" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert abs(float(res.stdout) - 76 / 255) < 1e-3  # ITU-R 601 luma of pure red


def test_help_does_not_import_torch():
    code = ("import sys; from deepinv_energy.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "try:\n    main(['restore', '--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules and 'deepinv' not in sys.modules, 'heavy import'")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_restore_physics_only_split_gibbs_takes(tmp_path, figure_rows, capsys):
    """bicubic-sr (Downsampling with a bicubic filter) runs the split Gibbs sampler by default; the posterior
    mean of the bundled image's 14x14 measurement (8-bit PNG, 2 draws, seed 0) is compared with the clean image:
    measured 26.5 dB against 18.5 dB for the bicubic-upsampled measurement (deepinv's A_adjoint x 4);
    required: 3 dB above it. Samplers that need a denoising form are refused with exit code 2."""
    import deepinv as dinv
    import torchvision

    from deepinv_energy.demo import bundled_test_images

    x = bundled_test_images(1)[0][:1]
    physics = dinv.physics.Downsampling((1, 28, 28), factor=2, filter="bicubic")
    path = tmp_path / "lr.png"
    torchvision.utils.save_image(physics.A(x).clamp(0, 1), path)
    assert main(["restore", str(path), "--task", "bicubic-sr", "--samples", "2", "--out", str(tmp_path / "r.png")]) == 0
    (y, mean, std), = figure_rows
    base = _psnr(4 * physics.A_adjoint(y), x)
    assert _psnr(mean, x) > base + 3 and (std >= 0).all()
    assert main(["restore", str(path), "--task", "bicubic-sr", "--sampler", "mala", "--out", str(tmp_path / "s.png")]) == 2
    torchvision.utils.save_image(x, tmp_path / "x.png")
    capsys.readouterr()
    assert main(["restore", str(tmp_path / "x.png"), "--task", "reflect-blur", "--method", "mmse",
                 "--out", str(tmp_path / "s.png")]) == 2
    assert "not supported" in capsys.readouterr().err


def test_restore_compressed_sensing_from_a_vector(tmp_path, figure_rows, capsys):
    """compressed-sensing reads y (m values) with the m, matrix seed and image shape that made it (.npz) and
    regenerates deepinv's Gaussian matrix from the recorded seed: the posterior mean of the bundled image from 235
    measurements (m/n = 0.3, noise 0.01, 2 draws) is compared with the clean image (measured 28.9 dB); required
    20 dB. A wrong --matrix-seed (4.4 dB in the issue, exit 0) is refused, the seed used is printed, and a bare
    vector (.npy) or too many measurements are user errors (exit code 2)."""
    import deepinv as dinv
    import numpy as np
    import torch

    from deepinv_energy.demo import bundled_test_images

    x = bundled_test_images(1)[0][:1]
    physics = dinv.physics.CompressedSensing(m=235, img_size=(1, 28, 28), rng=torch.Generator().manual_seed(3),
                                             noise_model=dinv.physics.GaussianNoise(0.01, rng=torch.Generator().manual_seed(4)))
    path = tmp_path / "y.npz"
    np.savez(path, y=physics(x).numpy().reshape(-1), m=235, seed=3, shape=[1, 28, 28])  # a hand-made measurement
    capsys.readouterr()
    assert main(["restore", str(path), "--task", "compressed-sensing", "--samples", "2", "--noise", "0.01",
                 "--out", str(tmp_path / "r.png")]) == 0
    printed = capsys.readouterr().out
    assert "m 235" in printed and "matrix-seed 3" in printed  # which m and seed it used
    (shown, mean, std), = figure_rows
    assert shown.shape == x.shape and (std >= 0).all()
    assert _psnr(mean, x) > 20
    assert main(["restore", str(path), "--task", "compressed-sensing", "--matrix-seed", "4"]) == 2
    np.savez(tmp_path / "long.npz", y=np.zeros(800, dtype=np.float32), m=800, seed=0, shape=[1, 28, 28])
    capsys.readouterr()
    assert main(["restore", str(tmp_path / "long.npz"), "--task", "compressed-sensing"]) == 2
    assert "at most 784" in capsys.readouterr().err
    np.save(tmp_path / "y.npy", physics(x).numpy())
    assert main(["restore", str(tmp_path / "y.npy"), "--task", "compressed-sensing"]) == 2
    assert "records its matrix" in capsys.readouterr().err


# ---------------------------------------------------------------- issue 31: bad input on the new surface
def test_split_gibbs_bad_input_is_clear():
    """Split Gibbs: a non-integer sweep count, a measurement of the wrong size and a wrong adjoint are named
    (they used to be "'float' object is not iterable", a torch shape error and "y contains NaN"); a CG
    capped before convergence warns."""
    import warnings

    import deepinv as dinv

    from deepinv_energy import GaussianEnergy
    from deepinv_energy.sampling import SplitGibbsSampler

    model = GaussianEnergy(torch.zeros(1, 1, 4, 4), torch.eye(16))
    physics = dinv.physics.Downsampling((1, 4, 4), factor=2, filter=None, noise_model=dinv.physics.GaussianNoise(0.1))
    y = physics.A(torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="sweeps must be an integer"):
        SplitGibbsSampler(model, sweeps=1.5)
    with pytest.raises(ValueError, match="not a measurement of this physics"):
        SplitGibbsSampler(model, n_stages=2).draw(torch.rand(1, 1, 3, 3), physics)

    class WrongAdjoint(dinv.physics.LinearPhysics):
        def A(self, x, **kwargs):
            return x[..., ::2, ::2]

        def A_adjoint(self, y, **kwargs):
            return y.repeat_interleave(2, -1).repeat_interleave(2, -2)

    with pytest.raises(ValueError, match="not the adjoint"):
        SplitGibbsSampler(model, n_stages=2).draw(y, WrongAdjoint())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        SplitGibbsSampler(model, n_stages=2).draw(y, physics)
        assert not [w for w in caught if "conjugate gradient" in str(w.message)]
        SplitGibbsSampler(model, n_stages=2, cg_max_iter=1).draw(y, physics)
    assert [w for w in caught if "cg_max_iter=1" in str(w.message)]


@pytest.mark.parametrize("args, needle", [
    (["train", "--stop-at", "-5"], "--stop-at must be >= 0"),
    (["train", "--data", "gmm:1,8,8,0"], "gmm:C,H,W,K"),
    (["train", "--data", "gmm:1,8,x,2"], "gmm:C,H,W,K"),
    (["train", "--init-from", "FILE"], "is not a training checkpoint"),
    (["evaluate", "--data", "gmm:0,8,8,2"], "gmm:C,H,W,K"),
    (["restore", "IMG", "--task", "reflect-blur", "--blur-std", "10"], "larger than the 28x28 image"),
    (["simulate", "bundled:0", "--task", "gaussian-blur", "--blur-std", "10", "--out", "OUT.png"], "--blur-std at most"),
    (["restore", "IMG", "--task", "compressed-sensing", "--matrix-seed", "1180591620717411303424"], "--matrix-seed"),
    (["restore", "NPY", "--task", "compressed-sensing"], "records its matrix"),
    (["simulate", "bundled:0", "--task", "compressed-sensing", "--out", "OUT.png"], "--out NAME.npz"),
    (["simulate", "bundled:11", "--task", "denoise", "--out", "OUT.png"], "bundled:K takes K from 0 to 9"),
    (["simulate", "bundled:0", "--task", "denoise", "--out", "OUT.jpg"], "--out must end in .png"),
    (["simulate", "bundled:0", "--task", "denoise", "--m", "10", "--out", "OUT.png"], "--m is the number"),
])
def test_issue_31_bad_input_one_line_errors(tmp_path, blurred_png, args, needle):
    """The issue's crashes and unclear errors are one line naming the option (exit status 2)."""
    import numpy as np

    (tmp_path / "file").write_text("not a checkpoint")
    np.save(tmp_path / "y.npy", np.zeros(235, dtype=np.float32))
    subs = {"IMG": str(blurred_png), "FILE": str(tmp_path / "file"), "NPY": str(tmp_path / "y.npy")}
    args = [subs.get(a, a.replace("OUT", str(tmp_path / "out"))) for a in args]
    if args[0] == "train":
        args += ["--out", str(tmp_path / "run")]
    rc, _, err = _cli(*args)
    _one_line_error(rc, err, needle)


def test_train_device_cuda_without_gpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    _one_line_error(*_cli("train", "--device", "cuda", "--out", tmp_path / "run")[::2], "no CUDA GPU")


def test_resume_from_a_checkpoint_missing_a_key(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    torch.save({"config": {}, "model": {}, "ema": {}, "step": 1, "rng": {}}, out / "checkpoint.pt")  # no optimizer
    _one_line_error(*_cli("train", "--data", "gmm:1,8,8,2,0,64", "--out", out, "--resume")[::2],
                    "lacks optimizer")


def _simulated(tmp_path, *args):
    out = tmp_path / args[-1]
    assert main(["simulate", "bundled:0", *args[:-1], "--out", str(out)]) == 0
    return out


def test_simulate_records_what_made_the_measurement(tmp_path, figure_rows, capsys):
    """simulate writes the forward model of each restore task with its settings; restore reads them, prints them,
    and refuses options that disagree (the issue: a wrong matrix seed restored at 4.4 dB with exit 0)."""
    import numpy as np

    from deepinv_energy.cli import _read_image, _read_meta

    y = _simulated(tmp_path, "--task", "gaussian-blur", "--blur-std", "1.5", "--noise", "0.02", "y.png")
    meta = _read_meta(y)
    assert meta["task"] == "gaussian-blur" and meta["blur_std"] == 1.5 and meta["noise"] == 0.02
    assert _read_image(y).shape == (1, 1, 28, 28)
    capsys.readouterr()
    assert main(["restore", str(y), "--task", "gaussian-blur", "--method", "mmse"]) == 0
    out = capsys.readouterr().out
    assert "noise 0.02, blur-std 1.5" in out and "read from" in out
    assert (tmp_path / "y_gaussian-blur_mmse.png").exists()  # beside the input, named after it and the task
    for bad in (["--blur-std", "1.0"], ["--noise", "0.01"]):
        assert main(["restore", str(y), "--task", "gaussian-blur", "--method", "mmse", *bad]) == 2
    assert main(["restore", str(y), "--task", "denoise", "--method", "mmse"]) == 2  # another task's measurement
    assert "gaussian-blur measurement" in capsys.readouterr().err
    cs = _simulated(tmp_path, "--task", "compressed-sensing", "--m", "200", "--matrix-seed", "3", "y.npz")
    with np.load(cs) as data:
        assert data["y"].shape == (200,) and int(data["m"]) == 200 and int(data["seed"]) == 3
        assert data["shape"].tolist() == [1, 28, 28]
        np.savez(tmp_path / "cut.npz", y=data["y"][:150], m=data["m"], seed=data["seed"], shape=data["shape"])
    assert main(["restore", str(cs), "--task", "compressed-sensing", "--matrix-seed", "1", "--method", "sample"]) == 2
    assert "disagrees" in capsys.readouterr().err
    assert main(["restore", str(tmp_path / "cut.npz"), "--task", "compressed-sensing"]) == 2
    assert "truncated" in capsys.readouterr().err
    for task, extra, shape in [("decimate", ["--factor", "4"], (1, 1, 7, 7)), ("motion-blur", ["--length", "4"], None),
                               ("denoise", [], None), ("reflect-blur", [], None), ("bicubic-sr", [], (1, 1, 14, 14))]:
        path = _simulated(tmp_path, "--task", task, *extra, f"{task}.npz")
        assert _read_image(path).shape == (shape or (1, 1, 28, 28)) and _read_meta(path)["task"] == task


def test_restore_and_blind_outputs_named_after_input(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _simulated(tmp_path, "--task", "gaussian-blur", "y.png")
    assert main(["restore", "y.png", "--task", "gaussian-blur", "--method", "mmse"]) == 0
    assert main(["blind", "y.png", "--widths", "0.5:1.5:3", "--samples", "0"]) == 0
    printed = capsys.readouterr().out
    assert (tmp_path / "y_gaussian-blur_mmse.png").exists() and (tmp_path / "y_blind_gaussian-blur_posterior.png").exists()
    assert "restoration.png" not in printed  # --samples 0: no restoration figure is claimed
    assert "at grid resolution" in printed and "--widths" in printed  # a zero-width interval is explained


def test_blind_angle_grid_through_180(tmp_path, capsys):
    """--angles 0:180:13 has 0 and 180, the same direction: merged with a warning, circular mean."""
    y = _simulated(tmp_path, "--task", "motion-blur", "--length", "5", "--angle", "0", "y.png")
    assert main(["blind", str(y), "--family", "motion-blur", "--lengths", "5", "--angles", "0:180:13",
                 "--samples", "0", "--out-prefix", str(tmp_path / "b")]) == 0
    printed = capsys.readouterr().out
    mean = float(re.findall(r"angle: MAP [-0-9.e]+, posterior mean ([-0-9.e]+)", printed)[0])
    assert min(mean, 180 - mean) < 10 and "circular mean" in printed, printed


def test_blind_warns_when_the_family_does_not_explain_the_measurement(tmp_path, capsys):
    """Noise 0.1 scored with a blur family whose noise is fixed at 0.01: the evidence of the best candidate is far
    below that of measurements that candidate makes, and blind says so; a matching measurement gets no warning."""
    y = _simulated(tmp_path, "--task", "gaussian-blur", "--noise", "0.1", "y.npz")
    assert main(["blind", str(y), "--widths", "0.5:2:4", "--samples", "0", "--out-prefix", str(tmp_path / "b")]) == 0
    assert "does not explain the measurement" in capsys.readouterr().out
    y = _simulated(tmp_path, "--task", "gaussian-blur", "--noise", "0.01", "z.npz")
    assert main(["blind", str(y), "--widths", "0.5:2:4", "--samples", "0", "--out-prefix", str(tmp_path / "b")]) == 0
    assert "does not explain" not in capsys.readouterr().out


def test_figures_give_std_panels_a_colour_bar(tmp_path, monkeypatch):
    """Every std panel has its own colour bar (restore, demo figure); samples.png is readable (>= 480 px wide)."""
    import matplotlib.figure
    from PIL import Image

    bars = []
    orig = matplotlib.figure.Figure.colorbar
    monkeypatch.setattr(matplotlib.figure.Figure, "colorbar", lambda self, *a, **k: bars.append(1) or orig(self, *a, **k))
    y = _simulated(tmp_path, "--task", "denoise", "y.png")
    assert main(["restore", str(y), "--task", "denoise", "--method", "mmse", "--out", str(tmp_path / "r.png")]) == 0
    assert len(bars) == 1
    from deepinv_energy.demo import _figure

    _figure([("t", torch.rand(1, 8, 8), torch.rand(1, 8, 8), torch.rand(1, 8, 8) * 1e-3, torch.rand(1, 8, 8))] * 2,
            tmp_path / "d.png")
    assert len(bars) == 3
    assert main(["sample", "--n", "4", "--levels", "2", "--out", str(tmp_path / "s.png")]) == 0
    assert Image.open(tmp_path / "s.png").width >= 480


#: options appended to each README command to keep the test fast (argparse keeps the last value given); the
#: command's own options, inputs and output names are used as written
_FAST = {"demo": ["--images", "1", "--samples", "2", "--levels", "4"],
         "restore": ["--samples", "2", "--levels", "4"],
         "sample": ["--n", "2", "--levels", "4"],
         "blind": ["--samples", "0"],
         "train": ["--steps", "2", "--width", "8", "--limit", "64", "--batch-size", "4", "--threads", "1"]}


@pytest.mark.slow
def test_readme_command_lines_run_in_sequence(tmp_path, monkeypatch):
    """Every line of README's Command line section runs as written, in order, from an empty directory (with the
    speed options of _FAST appended; train on Gaussian-mixture data where Fashion-MNIST is not installed), and no
    line overwrites a file an earlier line wrote."""
    import os
    import shlex

    from deepinv_energy.data import DEFAULT_FASHION_MNIST

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("## Command line", 1)[1].split("\n## ", 1)[0]
    lines = [line.strip() for line in section.splitlines() if line.startswith("    deepinv-energy ")]
    assert len(lines) >= 10 and any(" simulate " in line for line in lines)
    monkeypatch.chdir(tmp_path)

    def files():
        return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in tmp_path.rglob("*") if p.is_file()}

    for line in lines:
        args = shlex.split(line.split("#", 1)[0])[1:]
        args += _FAST.get(args[0], [])
        if args[0] == "train" and not os.path.isdir(DEFAULT_FASHION_MNIST):
            args += ["--data", "gmm:1,28,28,2,0,64"]
        before = files()
        assert main(args) == 0, line
        after = files()
        changed = [str(p) for p, stat in before.items() if after.get(p) != stat]
        assert not changed, (line, changed)
        assert len(after) > len(before), line  # it wrote something


@pytest.mark.parametrize("kwargs,match", [(dict(p_pixel=2), "p_pixel"), (dict(p_pixel=-0.1), "p_pixel"),
                                          (dict(p_useful=5), "p_useful"), (dict(weights={"foo": 1}), "foo"),
                                          (dict(weights={"box": -1}), "weights\\['box'\\]"),
                                          (dict(weights={"box": float("nan")}), "weights\\['box'\\]"),
                                          (dict(families=["box"], weights={"box": 0}), "positive weight")])
def test_covariance_distribution_refuses_bad_arguments(kwargs, match):
    """CovarianceDistribution (the training covariances): probabilities outside [0, 1], weights of unknown
    families, negative or NaN weights are refused (p_pixel=2 gave negative counts, weights={'foo': 1} was ignored,
    a negative weight crashed in sampling)."""
    from deepinv_energy.training.distribution import CovarianceDistribution

    with pytest.raises(ValueError, match=match):
        CovarianceDistribution(**kwargs)


def test_cli_with_a_nan_model_is_one_line(tmp_path, blurred_png):
    """A weights file whose values are NaN (the issue: an older JSON without checksums loads with a warning):
    restore --method mmse, blind and evaluate stop with FloatingPointError on one line (they printed
    'posterior mean nan' and 'nan dB' with exit 0)."""
    from deepinv_energy import EnergyUNet

    model = EnergyUNet.from_pretrained("fashion-mnist-28")
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    model.save_pretrained(str(tmp_path / "nan"), name="nan")
    path = next((tmp_path / "nan").glob("*.json"))
    for args in (["restore", blurred_png, "--task", "denoise", "--method", "mmse"],
                 ["blind", blurred_png, "--widths", "0.5:1:2", "--samples", "0", "--out-prefix", tmp_path / "b"],
                 ["evaluate", "--data", "gmm:1,28,28,2,0,8", "--n", "8", "--noise", "0.1"]):
        rc, _, err = _cli(*args, "--model", path)
        err = "\n".join(line for line in err.splitlines() if "it/s]" not in line)  # blind's progress bar
        _one_line_error(rc, err, "NaN")
