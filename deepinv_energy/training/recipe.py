r"""One-call training recipe for a machine lent for a fixed wall time (a GPU for a few minutes).

:func:`run_recipe` takes a :class:`~deepinv_energy.training.trainer.TrainConfig` (width, batch, lr,
warm start with ``init_from`` or a fresh model, data, ...) and a wall budget in seconds, and

1. probes: trains the first ``probe_steps`` steps of the run (inside the linear warmup, so they do
   not depend on the schedule's length) and times them (the first step, with any compilation,
   apart);
2. sizes the cosine schedule: ``steps`` = the steps that fit in what is left of the budget, with a
   safety margin for the export, and caps the warmup at a tenth of them (``cfg.steps`` and
   ``cfg.warmup`` are set before the first step after the probe);
3. trains until ``steps`` or the deadline (then it stops cleanly, with a checkpoint);
4. exports the EMA weights with their normalization constants (:meth:`Trainer.finalize`);
5. packs the export, the last checkpoint (if it fits), the CSV log and the configuration in one
   tar file cut into parts of at most ``part_mib`` MiB, beside ``summary.json`` (the numbers, the
   parts' sha256): at most ``max_files`` files in ``results``. Reassemble with
   ``cat recipe.tar.part* > recipe.tar && tar xf recipe.tar`` (``summary.json`` says how).

Command line (the device machine has no internet: ``scripts/device_recipe.py`` first installs
the carried wheels, then calls :func:`main`)::

    python -m deepinv_energy.training.recipe --budget 480 --width 96 --batch-size 512 \
        --lr 5e-4 --device cuda --results $OUT [any option of deepinv-energy train]
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import sys
import tarfile
import threading
import time
from dataclasses import asdict, replace

import torch

from .trainer import CKPT_NAME, CHANGES_NAME, LOG_NAME, TrainConfig, Trainer, build_parser, config_from_args

__all__ = ["run_recipe", "split_file", "main"]

TAR_NAME = "recipe.tar"
SUMMARY_NAME = "summary.json"


def split_file(path: str, part_bytes: int) -> list:
    """Cut ``path`` into ``path.part00``, ``path.part01``, ... of at most ``part_bytes`` bytes each
    (the original is removed); ``cat path.part* > path`` restores it. Returns the parts' paths."""
    parts = []
    with open(path, "rb") as fh:
        for i in range(10**6):
            chunk = fh.read(part_bytes)
            if not chunk and i > 0:
                break
            part = f"{path}.part{i:02d}"
            with open(part, "wb") as out:
                out.write(chunk)
            parts.append(part)
    os.remove(path)
    return parts


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_recipe(cfg: TrainConfig, budget_s: float, results: str, probe_steps: int = 5, name: str = "model",
               part_mib: float = 16.0, max_files: int = 8, margin: float = 0.1, images: torch.Tensor | None = None,
               progress: bool = False) -> dict:
    r"""Probe, size the cosine schedule to ``budget_s`` seconds, train, export and pack (module docstring).

    :param TrainConfig cfg: the run (``cfg.steps`` is replaced by the sized schedule; ``cfg.out`` is the
        run directory, which must not hold a checkpoint unless ``cfg.overwrite``).
    :param float budget_s: wall seconds for everything from the start of this call (training, export, packing).
    :param str results: directory receiving at most ``max_files`` files (created).
    :param int probe_steps: timed steps before the schedule is sized (at least 2: the first is not timed).
    :param str name: file name of the exported model (``name.safetensors`` / ``name.json``).
    :param float part_mib: largest file size in MiB.
    :param int max_files: most files written to ``results`` (``summary.json`` and the parts).
    :param float margin: fraction of the budget kept for the export and packing.
    :param torch.Tensor images: clean images instead of ``cfg.data``.
    :return: (dict) the summary also written to ``results/summary.json``.
    """
    t0 = time.time()
    if probe_steps < 2:
        raise ValueError(f"probe_steps must be >= 2 (the first step is not timed), got {probe_steps}.")
    if budget_s <= 0 or max_files < 2 or part_mib <= 0:
        raise ValueError(f"need budget_s > 0, max_files >= 2 and part_mib > 0, got {budget_s}, {max_files}, {part_mib}.")
    cfg = replace(cfg, warmup=max(cfg.warmup, probe_steps), steps=max(cfg.steps, probe_steps + 1))
    tr = Trainer(cfg, images=images)
    tr.start(resume=False)
    setup_s = time.time() - t0
    t1 = time.time()
    tr.fit(max_steps=1, progress=False)
    first_s = time.time() - t1
    t1 = time.time()
    tr.fit(max_steps=probe_steps - 1, progress=False)
    step_s = (time.time() - t1) / (probe_steps - 1)
    reserve = margin * budget_s
    left = budget_s - (time.time() - t0) - reserve
    steps = probe_steps + max(0, int(left / step_s))
    # the cosine schedule's length, and a warmup of at most a tenth of it (lr_factor reads cfg at every step)
    tr.cfg.steps, tr.cfg.warmup = steps, max(probe_steps, min(cfg.warmup, steps // 10))
    deadline = t0 + budget_s - reserve
    timer = threading.Timer(max(0.0, deadline - time.time()), lambda: setattr(tr, "_stop", True))
    timer.start()
    t1 = time.time()
    try:
        stats = tr.fit(progress=progress) if tr.step < steps else {}
    finally:
        timer.cancel()
    train_s = time.time() - t1
    t1 = time.time()
    export_dir = os.path.join(cfg.out, "export")
    tr.finalize(export_dir, name)
    export_s = time.time() - t1
    summary = {
        "device": torch.cuda.get_device_name(tr.device) if tr.device.type == "cuda" else "cpu",
        "config": asdict(tr.cfg),
        "budget_s": budget_s, "setup_s": round(setup_s, 2), "first_step_s": round(first_s, 3),
        "probe_step_s": round(step_s, 4), "probe_images_per_s": round(cfg.batch_size / step_s, 1),
        "scheduled_steps": steps, "trained_steps": tr.step, "stopped_early": tr.step < steps,
        "train_s": round(train_s, 1), "train_images_per_s": round(cfg.batch_size * (tr.step - probe_steps) / max(train_s, 1e-9), 1),
        "export_s": round(export_s, 1), "last": {k: float(v) for k, v in stats.items()},
    }
    summary.update(_pack(cfg.out, export_dir, name, results, summary, int(part_mib * 2**20), max_files))
    summary["total_s"] = round(time.time() - t0, 1)
    with open(os.path.join(results, SUMMARY_NAME), "w") as fh:
        json.dump(summary, fh, indent=2)
    return summary


def _pack(run_dir, export_dir, name, results, summary, part_bytes, max_files) -> dict:
    """Write ``recipe.tar`` parts to ``results``; drop the checkpoint if it would need too many parts."""
    os.makedirs(results, exist_ok=True)
    members = [(os.path.join(export_dir, f"{name}.{ext}"), f"export/{name}.{ext}") for ext in ("safetensors", "json")]
    members += [(os.path.join(run_dir, n), n) for n in (LOG_NAME, "config.json", CHANGES_NAME)
                if os.path.exists(os.path.join(run_dir, n))]
    ckpt = (os.path.join(run_dir, CKPT_NAME), CKPT_NAME)
    size = sum(os.path.getsize(p) for p, _ in members) + 64 * 1024  # tar headers and the recipe's JSON
    with_ckpt = math.ceil((size + os.path.getsize(ckpt[0])) / part_bytes) <= max_files - 1
    if with_ckpt:
        members.append(ckpt)
    if math.ceil(size / part_bytes) > max_files - 1:
        raise ValueError(f"the export alone ({size / 2**20:.1f} MiB) needs more than {max_files - 1} parts of "
                         f"{part_bytes / 2**20:g} MiB; raise max_files or part_mib.")
    tar_path = os.path.join(results, TAR_NAME)
    with tarfile.open(tar_path, "w") as tar:
        for path, arc in members:
            tar.add(path, arcname=arc)
        blob = json.dumps({k: v for k, v in summary.items() if k != "last"}, indent=2).encode()
        info = tarfile.TarInfo("recipe.json")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    sha = _sha256(tar_path)
    parts = split_file(tar_path, part_bytes)
    return {
        "files": [os.path.basename(p) for p in parts] + [SUMMARY_NAME],
        "tar_sha256": sha,
        "checkpoint_included": with_ckpt,
        "reassemble": f"cat {TAR_NAME}.part* > {TAR_NAME} && sha256sum {TAR_NAME} && tar xf {TAR_NAME}",
        "tar_members": [arc for _, arc in members] + ["recipe.json"],
    }


def build_recipe_parser():
    """The options of :func:`main`: those of ``deepinv-energy train`` plus the recipe's."""
    p = build_parser()
    p.prog, p.description = "python -m deepinv_energy.training.recipe", "Probe, size to a wall budget, train, export, pack."
    g = p.add_argument_group("recipe")
    g.add_argument("--budget", type=float, required=True, help="wall seconds for the whole recipe")
    g.add_argument("--results", default=os.environ.get("OUT", "recipe_out"), help="output directory (default $OUT)")
    g.add_argument("--probe-steps", type=int, default=5)
    g.add_argument("--name", default="model", help="name of the exported model files")
    g.add_argument("--part-mib", type=float, default=16.0)
    g.add_argument("--max-files", type=int, default=8)
    return p


def main(argv=None) -> int:
    """Entry point: ``python -m deepinv_energy.training.recipe --budget SECONDS [train options]``."""
    args = build_recipe_parser().parse_args(argv)
    cfg = config_from_args(args)
    summary = run_recipe(cfg, args.budget, args.results, probe_steps=args.probe_steps, name=args.name,
                         part_mib=args.part_mib, max_files=args.max_files, progress=True)
    print(json.dumps({k: summary[k] for k in ("device", "probe_images_per_s", "scheduled_steps", "trained_steps",
                                              "train_images_per_s", "files", "reassemble")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
