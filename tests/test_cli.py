"""The command line: every subcommand's help, the demo, and readable errors."""

import subprocess
import sys

import pytest

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
    for task in ["box inpainting", "random inpainting", "gaussian deblurring"]:
        assert task in text
    assert "1-eval" in text  # the one-evaluation posterior mean (EnergyMMSE) column


def test_user_errors_have_no_traceback():
    res = subprocess.run([sys.executable, "-m", "deepinv_energy.cli", "demo", "--images", "0"],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr and "--images" in res.stderr
    res = subprocess.run([sys.executable, "-m", "deepinv_energy.cli", "demo", "--model", "/nonexistent/model"],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr


@pytest.fixture
def blurred_png(tmp_path):
    import deepinv as dinv
    import torchvision

    from deepinv_energy.demo import bundled_test_images

    x, _ = bundled_test_images(1)
    k = dinv.physics.functional.gaussian_blur(sigma=(1.0, 1.0))
    y = dinv.physics.BlurFFT((1, 28, 28), filter=k).A(x)
    path = tmp_path / "blurred.png"
    torchvision.utils.save_image(y.clamp(0, 1), path)
    return path


def test_restore_sample_blind(tmp_path, blurred_png, capsys):
    out = tmp_path / "r.png"
    assert main(["restore", str(blurred_png), "--task", "gaussian-blur", "--levels", "4", "--samples", "2",
                 "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
    out = tmp_path / "s.png"
    assert main(["sample", "--n", "2", "--levels", "4", "--out", str(out)]) == 0
    assert out.stat().st_size > 100
    prefix = tmp_path / "b"
    assert main(["blind", str(blurred_png), "--widths", "0.5:1.5:3", "--samples", "0", "--out-prefix", str(prefix)]) == 0
    assert "width: MAP" in capsys.readouterr().out
    assert (tmp_path / "b_posterior.png").stat().st_size > 1000
    assert main(["blind", str(blurred_png), "--family", "motion-blur", "--lengths", "1:5:2", "--angles", "0:90:2",
                 "--noise", "0.01:0.05:2", "--samples", "0", "--out-prefix", str(prefix)]) == 0
    printed = capsys.readouterr().out
    assert "length: MAP" in printed and "angle: MAP" in printed and "noise: MAP" in printed


def test_restore_one_evaluation_mmse(tmp_path, blurred_png, capsys):
    out = tmp_path / "m.png"
    assert main(["restore", str(blurred_png), "--task", "gaussian-blur", "--method", "mmse", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000 and "restoration (mmse)" in capsys.readouterr().out
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
    assert main(args[:-8] + ["--steps", "3", "--batch-size", "4", "--width", "8", "--resume", "--threads", "1"]) == 0


def test_evaluate_on_an_image_folder(tmp_path, capsys):
    import torchvision

    from deepinv_energy.demo import bundled_test_images

    x, _ = bundled_test_images(4)
    for i in range(4):
        torchvision.utils.save_image(x[i], tmp_path / f"{i}.png")
    assert main(["evaluate", "--data", f"folder:{tmp_path}", "--n", "4", "--noise", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "noise 0.1" in out and "bits/dim" in out
    assert main(["evaluate", "--data", str(tmp_path / "nope"), "--n", "4"]) == 2
