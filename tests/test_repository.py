"""Repository weight: a GPU run receives the working tree (at most 64 MiB), so the tracked tree
stays under 48 MB (finished runs' checkpoints live in git history; see training_state/README.md)."""

import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LIMIT = 48_000_000


def _tracked_files():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (an installed copy of the tests)")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / p for p in out.decode().split("\0") if p]


def test_tracked_tree_under_48_mb():
    files = _tracked_files()
    total = sum(p.stat().st_size for p in files if p.is_file())
    biggest = sorted(((p.stat().st_size, p) for p in files if p.is_file()), reverse=True)[:5]
    assert total < LIMIT, f"tracked tree is {total / 1e6:.1f} MB (limit 48 MB); biggest: {biggest}"


def test_no_training_checkpoint_tracked_but_the_active_one():
    ckpts = [p for p in _tracked_files() if p.name == "checkpoint.pt"]
    assert len(ckpts) <= 1, f"only the active run's latest checkpoint may be tracked, found {ckpts}"
