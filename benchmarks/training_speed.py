r"""Training throughput: images/s, ms/step and operations dispatched per step, before and after.

Each row trains a fresh :class:`~deepinv_energy.models.unet.EnergyUNet` for a few steps on random
28x28 images with the configuration of the bundled model's fine-tunes (``loss_weight="edm"``,
``input_scale="wiener"``, ``p_unobserved=0.9``, the default families) and reports

- ``ms/step`` and ``images/s``: the fastest of ``--steps`` timed steps (after one untimed step; on
  CUDA each step is synchronized) over ``--rounds`` runs of ``before`` and ``after``, alternately
  (on a shared machine other jobs only slow steps down);
- ``aten ops``: the number of ``aten::`` events of one step in :mod:`torch.profiler` (every
  operator the dispatcher ran, nested calls included: what a CPU profile shows), and ``top ops``:
  the events called directly from Python or the autograd engine.

Variants, side by side in one run (each row in its own process, one intra-op thread on CPU):

- ``before``: the trainer at ``--before`` (a git revision, default the commit before the throughput
  work), checked out with ``git worktree`` into a temporary directory;
- ``after``: this checkout's trainer (fused Adam, foreach EMA, no read-back except on log steps);
- ``after+bf16``: the same under ``torch.autocast(bfloat16)`` (``TrainConfig.precision="bf16"``);
- ``after+compile`` (``--compile 24x64``: for the listed width x batch): ``TrainConfig.compile=True``; its first step (compilation
  included) is reported in the notes. Compiling the double backward takes minutes on a CPU
  (inductor's cache in ``/tmp/torchinductor_$USER`` makes a second run fast).

Run: ``python benchmarks/training_speed.py`` (CPU, ~10 min on one core) or, on a GPU machine,
``python benchmarks/training_speed.py --devices cuda --widths 24,96 --batches 64,512,2048``.
Writes ``benchmarks/results/training_speed.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_BEFORE = "185ed9e"  # the trainer before the throughput work (issue 29)

#: run inside a subprocess: argv[1] is a JSON dict of the row; prints one JSON line
WORKER = r"""
import json, sys, tempfile, time
import torch
row = json.loads(sys.argv[1])
dev = row["device"]
if dev == "cpu":
    torch.set_num_threads(1)
from deepinv_energy.training import TrainConfig, Trainer
extra = {k: v for k, v in row["extra"].items()}
cfg = TrainConfig(out=tempfile.mkdtemp(), steps=10**6, batch_size=row["batch"], width=row["width"], depth=2,
                  loss_weight="edm", input_scale="wiener", p_unobserved=0.9, warmup=10, ckpt_every=10**9,
                  device=dev, seed=0, **extra)
images = torch.rand(max(4 * row["batch"], 512), 1, 28, 28, generator=torch.Generator().manual_seed(0))
tr = Trainer(cfg, images=images)
tr.start()
sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
t0 = time.perf_counter(); tr.train_step(); sync(); first = time.perf_counter() - t0
times = []
for _ in range(row["steps"]):
    t0 = time.perf_counter(); out = tr.train_step(); sync(); times.append(time.perf_counter() - t0)
loss = float(out["loss"])
from torch.profiler import profile, ProfilerActivity
acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.startswith("cuda") else [])
with profile(activities=acts) as prof:
    tr.train_step(); sync()
ev = prof.events()
aten = sum(1 for e in ev if e.name.startswith("aten::"))
top = sum(1 for e in ev if e.cpu_parent is None and e.device_type.name == "CPU")
print(json.dumps({"first_s": first, "step_s": min(times), "aten": aten, "top": top, "loss": loss}))
"""

VARIANTS = {"before": {}, "after": {}, "after+bf16": {"precision": "bf16"}, "after+compile": {"compile": True}}


def worktree(rev: str) -> pathlib.Path:
    """A detached checkout of ``rev`` in a temporary directory (removed at exit by :func:`main`)."""
    path = pathlib.Path(tempfile.mkdtemp(prefix="training_speed_")) / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(path), rev], check=True)
    return path


def run_row(tree: pathlib.Path, row: dict) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    if row["device"] == "cpu":
        env["OMP_NUM_THREADS"] = "1"
    res = subprocess.run([sys.executable, "-c", WORKER, json.dumps(row)], capture_output=True, text=True, env=env, cwd=tree)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode != 0 or not lines:
        return {"error": (res.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(lines[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", default="cpu", help="comma-separated: cpu, cuda")
    ap.add_argument("--widths", default="24,48,96")
    ap.add_argument("--batches", default="8,64")
    ap.add_argument("--steps", type=int, default=2, help="timed steps per row (the fastest is reported)")
    ap.add_argument("--rounds", type=int, default=2,
                    help="before/after rows are run this many times, alternately (the fastest step of all is reported)")
    ap.add_argument("--before", default=DEFAULT_BEFORE, help="git revision of the 'before' trainer ('' to skip)")
    ap.add_argument("--after", default="", help="git revision of the 'after' trainer (default: this checkout)")
    ap.add_argument("--compile", default="", help="add after+compile rows for these WIDTHxBATCH (e.g. 24x64,24x8; "
                    "minutes of compilation each)")
    ap.add_argument("--no-bf16", action="store_true", help="skip the after+bf16 rows")
    ap.add_argument("--max-step-s", type=float, default=30.0,
                    help="skip the larger batches of a width whose smaller batch already took longer than this per step")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "training_speed.md"))
    ap.add_argument("--from-log", default="", help="only write the table from the JSON lines that earlier runs printed "
                    "(comma-separated files; e.g. a main run and a --compile run, merged)")
    args = ap.parse_args(argv)
    if args.from_log:
        raw = [json.loads(ln) for f in args.from_log.split(",") for ln in open(f) if ln.startswith("{")]
        write(best_rows(raw), args, None)
        return 0

    variants = ["before"] * bool(args.before) + ["after"] + ["after+bf16"] * (not args.no_bf16) + ["after+compile"]
    compiled = {tuple(int(v) for v in key.split("x")) for key in args.compile.split(",") if key}
    old = worktree(args.before) if args.before else None
    new = worktree(args.after) if args.after else ROOT
    rows = []
    t_start = time.time()
    try:
        for dev in args.devices.split(","):
            for width in [int(w) for w in args.widths.split(",")]:
                slow = False
                for batch in [int(b) for b in args.batches.split(",")]:
                    if slow:
                        rows.append({"device": dev, "width": width, "batch": batch, "variant": "(all)", "skipped": True})
                        continue
                    for rnd in range(args.rounds):
                        for variant in variants:
                            if (variant == "after+compile" and (width, batch) not in compiled) or \
                                    (rnd > 0 and variant not in ("before", "after")):
                                continue
                            tree = old if variant == "before" else new
                            row = {"device": dev, "width": width, "batch": batch, "steps": args.steps,
                                   "extra": VARIANTS[variant]}
                            res = {**row, "variant": variant, **run_row(tree, row)}
                            print(json.dumps(res), flush=True)
                            rows.append(res)
                    if min((r.get("step_s", 0) for r in rows if r["variant"] == "after" and r["width"] == width), default=0) > args.max_step_s:
                        slow = True
    finally:
        for tree in (old, new):
            if tree is not None and tree != ROOT:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    write(best_rows(rows), args, time.time() - t_start)
    return 0


def best_rows(raw: list) -> list:
    """One row per (device, width, batch, variant), in order of appearance: the fastest step of its runs."""
    best = {}
    for r in raw:
        key = (r["device"], r["width"], r["batch"], r["variant"])
        if key not in best or r.get("step_s", 1e9) < best[key].get("step_s", 1e9):
            best[key] = r
    return list(best.values())


def write(rows, args, wall) -> None:
    import torch

    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [
        "# Training throughput (`benchmarks/training_speed.py`)",
        "",
        f"Generated by `python benchmarks/training_speed.py {' '.join(sys.argv[1:])}` at {rev} "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}{'' if wall is None else f', {wall / 60:.1f} min'}), torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}, one intra-op thread on CPU. `before` = the trainer at "
        f"`{args.before}`, `after` = {('the trainer at `' + args.after + '`') if args.after else 'this checkout'}. Configuration: edm weighting, wiener input, p_unobserved 0.9, default families, depth 2, "
        f"28x28 images. ms/step: the fastest of {args.steps} steps (after one untimed step) over {args.rounds} runs of before and after, alternately (one run of the other variants): the CPU was shared with other jobs, which only slow steps down. aten ops: `aten::` events of one "
        "step in torch.profiler (nested included); top ops: events called from Python or the autograd engine. loss: of the last timed step (step 3 of a fresh model, whose network output starts at zero: it says nothing yet of the quality bf16 trains to; since the batched covariance draws of b14f9bb the same seed draws other covariances of the same distribution, so `before` and `after` losses differ by the draw).",
        "",
        "| device | width | batch | variant | ms/step | images/s | x before | aten ops | top ops | loss |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = {(r["device"], r["width"], r["batch"]): r for r in rows if r.get("variant") == "before" and "step_s" in r}
    notes = []
    for r in rows:
        key = (r["device"], r["width"], r["batch"])
        if r.get("skipped"):
            lines.append(f"| {key[0]} | {key[1]} | {key[2]} | (skipped: the smaller batch took > {args.max_step_s:g} s/step) | | | | | | |")
            continue
        if "error" in r:
            lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {r['variant']} | error: {r['error']} | | | | | |")
            continue
        ref = base.get(key)
        speed = f"{ref['step_s'] / r['step_s']:.2f}" if ref else ""
        ops = f"{r['aten']}" + (f" ({ref['aten'] / r['aten']:.1f}x fewer)" if ref and r["variant"] != "before" else "")
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {r['variant']} | {1e3 * r['step_s']:.0f} | "
                     f"{key[2] / r['step_s']:.1f} | {speed} | {ops} | {r['top']} | {r['loss']:.4f} |")
        if ref and r["variant"] != "before":
            notes.append(f"- {key[0]} width {key[1]} batch {key[2]}, {r['variant']}: {ref['aten'] / r['aten']:.1f}x fewer aten ops, "
                         f"{ref['step_s'] / r['step_s']:.2f}x the images/s of before, loss of the last timed step "
                         f"{r['loss'] - ref['loss']:+.1e} from before's.")
        if r["variant"] == "after+compile":
            notes.append(f"- after+compile, {key[0]} width {key[1]} batch {key[2]}: first step (compilation included) "
                         f"{r['first_s']:.0f} s.")
    lines += ["", *notes]
    pathlib.Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
