"""The command line: every subcommand's help, the demo, and readable errors."""

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
    assert main(args) == 2  # the run holds a checkpoint: neither --resume nor --overwrite, refused
    more = args[:-8] + ["--steps", "3", "--batch-size", "4", "--width", "8", "--resume", "--threads", "1"]
    assert main(more) == 2  # more steps change the schedule: refused without --allow-config-change
    assert main(more + ["--allow-config-change"]) == 0
    steps = [line.split(",")[0] for line in (out / "log.csv").read_text().splitlines()[1:]]
    assert steps == ["1", "2", "3"]  # resumed at step 2, not restarted
    assert "steps: 2 -> 3" in (out / "changes.log").read_text()


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
