r"""Training loop for :class:`~deepinv_energy.models.unet.EnergyUNet`.

Adam (fused), gradient clipping, linear warmup + cosine (or constant) learning rate
(:class:`torch.optim.lr_scheduler.LambdaLR`), EMA weights (one ``torch._foreach_lerp_`` per step),
a data order and noise that are pure functions of ``(seed, step, rank)``, atomic
checkpoints (written to a temporary file, then ``os.replace``) every ``ckpt_every`` steps and
on SIGTERM/SIGINT, bit-for-bit resume, a tqdm progress bar and a CSV log. Multi-process
training with ``torchrun`` (gloo on CPU, nccl on CUDA): each rank takes a seeded shard of
every global batch and the gradients are averaged with ``all_reduce`` (no DDP wrapper, so
double backpropagation needs nothing special).

Dispatch. A step reads nothing back from the device except on log steps (the statistics stay
tensors until then). On CUDA the covariances are drawn on the CPU (a CPU generator seeded like
the device one, so the draws differ from a CPU run's) and copied asynchronously, the images live
on the device, and ``TrainConfig.precision="tf32"`` allows TF32 matrix products. ``compile=True``
traces the loss with :func:`~deepinv_energy.training.loss.coefficient_score_matching_loss`
(``torch.func.grad`` inside :func:`torch.compile`): about 5x fewer dispatched operations per step,
minutes of compilation first (``benchmarks/results/training_speed.md``).

Command line (wired to ``deepinv-energy train``)::

    python -m deepinv_energy.training.trainer --data fashion-mnist --out runs/fmnist \
        --steps 20000 --batch-size 64 --width 24 --depth 2 --resume
    torchrun --nproc_per_node 2 -m deepinv_energy.training.trainer ...   # multi-process
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import re
import signal
import sys
import time
from dataclasses import asdict, dataclass, field, fields

import torch

from .._checks import check_number
from ..covariance import LAM_MAX, LAM_MIN, Covariance
from ..data import load_images
from ..models.unet import EnergyUNet, UNetConfig
from .distribution import DEFAULT_FAMILIES, CovarianceDistribution
from .loss import (
    coefficient_score_matching_loss,
    covariance_score_matching_loss,
    direct_denoising_loss,
    draw_noise,
    normalization_constant,
)

__all__ = [
    "TrainConfig",
    "Trainer",
    "train",
    "main_train",
    "run_from_args",
    "build_parser",
    "config_from_args",
    "load_checkpoint",
    "normalize_model",
]

CKPT_NAME = "checkpoint.pt"
PREV_NAME = "checkpoint_prev.pt"
LOG_NAME = "log.csv"
CHANGES_NAME = "changes.log"

#: Fields a resumed run must share with its checkpoint (architecture, data, seed, objective).
FIXED_FIELDS = ("width", "depth", "num_res", "attention", "form", "input_scale", "lam_min", "lam_max", "size_free", "v_floor_rel", "batch_size",
                "seed", "data", "split", "limit", "objective", "loss_weight", "init_from")
#: Fields of the optimization a resumed run may change only with ``allow_config_change`` (then logged).
SCHEDULE_FIELDS = ("steps", "lr", "warmup", "schedule", "min_lr_ratio", "grad_clip", "ema_decay", "w_cov",
                   "families", "p_pixel", "p_unobserved")


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved in every checkpoint).

    :param str data: data specification: 'fashion-mnist', a directory of idx files or images,
        'folder:PATH' or 'gmm:C,H,W,K[,seed[,n]]' (see :func:`deepinv_energy.data.load_images`).
    :param str split: ``"train"`` or ``"test"`` images of the dataset.
    :param int limit: use the first N images (0: all).
    :param str out: run directory (checkpoints, CSV log, config).
    :param int steps: total optimizer steps.
    :param int batch_size: global batch size (split evenly across ranks).
    :param float lr: peak learning rate.
    :param int warmup: linear warmup steps.
    :param str schedule: ``"cosine"`` (to ``min_lr_ratio * lr`` at ``steps``) or ``"constant"``.
    :param float min_lr_ratio: final learning rate of the cosine schedule, relative to ``lr``.
    :param float grad_clip: max global gradient norm (0 disables).
    :param float ema_decay: EMA decay (warmed up as ``min(decay, (1+t)/(10+t))``).
    :param float w_cov: weight of the covariance-score term.
    :param str loss_weight: per-coefficient weighting of the denoising term, ``"none"`` (the
        paper's) or ``"edm"`` (see :func:`~deepinv_energy.training.loss.denoising_weight`).
    :param str init_from: warm start: a training checkpoint whose model and EMA weights
        initialize this run (same architecture; optimizer, step and schedule start afresh).
    :param str objective: ``"energy"`` (the two losses of the method) or ``"denoiser"``: the same
        network trained as a plain isotropic denoiser (pixel basis, isotropic noise only, loss
        :func:`~deepinv_energy.training.loss.direct_denoising_loss`; the baseline of the
        benchmarks, used through :class:`~deepinv_energy.denoiser.UNetDenoiser`).
    :param int width: channels of the first UNet level (:attr:`UNetConfig.base_channels`).
    :param int depth: number of downsamplings (image sizes divisible by ``2**depth``).
    :param int num_res: residual blocks per UNet level.
    :param bool attention: self-attention at the coarsest level.
    :param str form: energy parameterization, ``"residual"`` or ``"inner"``.
    :param str input_scale: network input scaling, ``"whiten"`` c/sqrt(v+lam) or ``"wiener"``
        sqrt(v) c/(v+lam), see :class:`~deepinv_energy.models.unet.UNetConfig`.
    :param list families: covariance families of the training distribution
        (:data:`~deepinv_energy.training.distribution.DEFAULT_FAMILIES`; comma-separated on the command line).
    :param float p_pixel: probability of drawing a pixel-basis covariance.
    :param float p_unobserved: probability that the inside level of a box, mask or bands covariance
        is ``lam_max`` (an unobserved region, as inpainting gives; 0: levels drawn independently).
    :param float lam_min: smallest noise variance trained for.
    :param float lam_max: largest noise variance (that of unobserved coefficients).
    :param bool size_free: train a size-free (fully convolutional, stationary statistics) model
        that takes any image size (see :class:`~deepinv_energy.models.unet.UNetConfig`).
    :param float v_floor_rel: relative floor of the data variances (``UNetConfig.v_floor_rel``; 0.1 suits
        Fashion-MNIST's near-constant border pixels, natural images' stationary spectra need far less).
    :param int ckpt_every: checkpoint period in steps.
    :param int log_every: CSV log period in steps.
    :param int seed: seed of initialization, data order and noise.
    :param str device: ``"cpu"`` or ``"cuda"`` (``"cuda"`` uses ``cuda:LOCAL_RANK``).
    :param int threads: torch intra-op threads (0: leave torch's default).
    :param int norm_images: images used to estimate the normalization constant after training.
    :param bool overwrite: start afresh even if ``out`` holds a checkpoint (which is then replaced);
        without it (and without ``resume``) such a run directory is refused.
    :param bool allow_config_change: on resume, accept a checkpoint whose schedule fields
        (:data:`SCHEDULE_FIELDS`: lr, steps, w_cov, families, ema_decay, ...) differ from this run's;
        the changes are appended to ``out/changes.log``. Without it such a resume is refused.
    :param bool compile: compute the energy loss with ``torch.compile`` (the ``torch.func`` form
        :func:`~deepinv_energy.training.loss.coefficient_score_matching_loss`, same loss to round-off;
        objective ``"energy"`` only). Minutes of compilation before the first step.
    :param str precision: ``"float32"``, ``"bf16"`` (the loss under ``torch.autocast`` in bfloat16; energies and
        losses still summed in float32) or ``"tf32"`` (TF32 matrix products on CUDA; float32 on CPU).
    """

    data: str = "fashion-mnist"
    split: str = "train"
    limit: int = 0
    out: str = "runs/energy"
    steps: int = 20000
    batch_size: int = 64
    lr: float = 2e-4
    warmup: int = 500
    schedule: str = "cosine"
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    w_cov: float = 1.0
    loss_weight: str = "none"
    init_from: str = ""
    objective: str = "energy"
    width: int = 24
    depth: int = 2
    num_res: int = 1
    attention: bool = True
    form: str = "residual"
    input_scale: str = "whiten"
    families: list = field(default_factory=lambda: list(DEFAULT_FAMILIES))
    p_pixel: float = 0.5
    p_unobserved: float = 0.0
    lam_min: float = LAM_MIN
    lam_max: float = LAM_MAX
    size_free: bool = False
    v_floor_rel: float = 0.1
    ckpt_every: int = 200
    log_every: int = 10
    seed: int = 0
    device: str = "cpu"
    threads: int = 0
    norm_images: int = 2000
    overwrite: bool = False
    allow_config_change: bool = False
    compile: bool = False
    precision: str = "float32"

    def model_config(self, shape) -> UNetConfig:
        C, H, W = shape
        return UNetConfig(
            channels=C,
            height=H,
            width_px=W,
            base_channels=self.width,
            mult=(1,) + (2,) * self.depth,
            num_res=self.num_res,
            attention=self.attention,
            form=self.form,
            input_scale=self.input_scale,
            lam_min=self.lam_min,
            lam_max=self.lam_max,
            size_free=self.size_free,
            v_floor_rel=self.v_floor_rel,
        )


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """Learning rate of ``step`` relative to ``cfg.lr``: linear warmup over ``cfg.warmup`` steps,
    then constant or cosine down to ``cfg.min_lr_ratio`` at ``cfg.steps`` (the ``lr_lambda`` of the
    trainer's :class:`~torch.optim.lr_scheduler.LambdaLR`)."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    if cfg.schedule == "constant":
        return 1.0
    t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def _step_seed(seed: int, step: int, rank: int) -> int:
    return ((seed * 1_000_003 + step) * 1_009 + rank) % (2**62)


def check_config(cfg: TrainConfig) -> None:
    """Raise a ``ValueError`` naming the field and its accepted values for an invalid configuration."""
    from .distribution import ALL_FAMILIES

    ints = {"steps": 1, "batch_size": 1, "warmup": 0, "width": 1, "depth": 0, "num_res": 1, "ckpt_every": 1,
            "log_every": 1, "limit": 0, "threads": 0, "norm_images": 1}
    for key, low in ints.items():
        check_number(key, getattr(cfg, key), integer=True, low=low)
    check_number("lr", cfg.lr, low=0, low_open=True)
    check_number("min_lr_ratio", cfg.min_lr_ratio, low=0, high=1)
    check_number("grad_clip", cfg.grad_clip, low=0)
    check_number("ema_decay", cfg.ema_decay, low=0, high=1, high_open=True)
    check_number("w_cov", cfg.w_cov, low=0)
    check_number("p_pixel", cfg.p_pixel, low=0, high=1)
    check_number("p_unobserved", cfg.p_unobserved, low=0, high=1)
    check_number("lam_min", cfg.lam_min, low=0, low_open=True)
    check_number("lam_max", cfg.lam_max, low=cfg.lam_min, low_open=True)
    check_number("v_floor_rel", cfg.v_floor_rel, low=0, high=1)
    for key, allowed in _CHOICES.items():
        if getattr(cfg, key) not in allowed:
            raise ValueError(f"{key} must be one of {list(allowed)}, got {getattr(cfg, key)!r}.")
    if cfg.compile and cfg.objective != "energy":
        raise ValueError(f"compile=True is implemented for objective='energy', got objective={cfg.objective!r}.")
    unknown = [f for f in cfg.families if f not in ALL_FAMILIES]
    if unknown or not cfg.families:
        raise ValueError(f"families must be a non-empty list of {list(ALL_FAMILIES)}, got {list(cfg.families)!r}.")
    if os.path.exists(cfg.out) and not os.path.isdir(cfg.out):
        raise ValueError(f"out {cfg.out!r} is a file; it must be a run directory (new or existing).")
    if str(cfg.data).startswith(("natural-gray:", "natural-rgb:")) and cfg.split == "test":
        raise ValueError(f"split 'test' of data {cfg.data!r} is the held-out natural test photos: never trained on.")


def load_checkpoint(path: str, map_location="cpu") -> dict:
    """Load a training checkpoint (``weights_only=True``: no arbitrary pickles)."""
    return torch.load(path, map_location=map_location, weights_only=True)


class Trainer:
    """Stateful trainer; see :func:`train` for the one-call interface."""

    def __init__(self, cfg: TrainConfig, images: torch.Tensor | None = None):
        check_config(cfg)
        self.cfg = cfg
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        if cfg.device.startswith("cuda"):
            self.device = torch.device(f"cuda:{self.local_rank}" if cfg.device == "cuda" else cfg.device)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device(cfg.device)
        self.distributed = self.world > 1
        if self.distributed and not torch.distributed.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            torch.distributed.init_process_group(backend=backend)
        if cfg.batch_size % self.world:
            raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the number of processes {self.world}.")
        self.local_batch = cfg.batch_size // self.world
        self.images = images if images is not None else load_images(cfg.data, cfg.split, cfg.limit or None)
        self.images = self.images.float().contiguous()
        if self.images.shape[0] < cfg.batch_size:
            raise ValueError(f"only {self.images.shape[0]} images for a batch of {cfg.batch_size}.")
        self.shape = tuple(self.images.shape[1:])
        torch.manual_seed(cfg.seed)
        self.model = EnergyUNet(cfg.model_config(self.shape))
        self.model.set_data_statistics(self.images)
        self.model.to(self.device)
        #: the EMA model (an :class:`EnergyUNet`; what :meth:`finalize` exports); its buffers are the
        #: model's (data statistics, fixed during training)
        self.ema = copy.deepcopy(self.model).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self._params = list(self.model.parameters())
        self._ema_params = list(self.ema.parameters())
        self.opt = torch.optim.Adam(self._params, lr=cfg.lr, fused=True)
        if self.device.type == "cuda":
            # the images live on the device (no copy per step) unless they exceed a quarter of its memory
            if self.images.numel() * 4 < torch.cuda.get_device_properties(self.device).total_memory // 4:
                self.images = self.images.to(self.device)
            if cfg.precision == "tf32":
                torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        self._loss_fn = None
        if cfg.compile:
            with torch.no_grad():  # fill the model's lazy caches (ring masks) with real tensors, not traced ones
                x1 = self.images[:1].to(self.device)
                self.model.energy(x1, Covariance.isotropic(1.0, x1))
            self._loss_fn = torch.compile(coefficient_score_matching_loss)
        self._perm = (None, None)  # (epoch, permutation) of the last batch_indices call
        self.scheduler = self._scheduler(0)
        plain = cfg.objective == "denoiser"
        self.dist = CovarianceDistribution(
            families=("isotropic",) if plain else cfg.families, p_pixel=1.0 if plain else cfg.p_pixel,
            lam_min=cfg.lam_min, lam_max=cfg.lam_max, p_unobserved=cfg.p_unobserved,
        )
        self.step = 0
        self._stop = False
        self._started = False  # start() has resumed or checked that nothing gets overwritten
        os.makedirs(cfg.out, exist_ok=True)

    def warm_start(self, path: str) -> None:
        """Initialize the model and EMA weights from the training checkpoint ``path`` (the data
        statistics and normalization buffers included); optimizer and step stay fresh. The
        architecture must match; the loss, schedule and ``input_scale`` may differ."""
        ck = load_checkpoint(path, map_location=self.device)
        old = ck["config"]
        for key in ("width", "depth", "num_res", "attention", "form", "lam_min", "lam_max"):  # input_scale may change
            if key in old and old[key] != getattr(self.cfg, key):
                raise ValueError(f"cannot warm start from {path}: it has {key}={old[key]!r}, this run {getattr(self.cfg, key)!r}.")
        self.model.load_state_dict(ck["model"])
        self.ema.load_state_dict(ck["ema"])

    # ------------------------------------------------------------------ data
    def batch_indices(self, step: int) -> torch.Tensor:
        """This rank's image indices at ``step`` (a function of seed and step only)."""
        n, bg = self.images.shape[0], self.cfg.batch_size
        per_epoch = n // bg
        epoch, pos = divmod(step, per_epoch)
        if self._perm[0] != epoch:
            g = torch.Generator().manual_seed(_step_seed(self.cfg.seed, epoch, 10_007))
            self._perm = (epoch, torch.randperm(n, generator=g))
        return self._perm[1][pos * bg : (pos + 1) * bg][self.rank :: self.world]

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.opt.state_dict(),
            "config": asdict(self.cfg),
            "model_config": self.model.config_dict(),
            "rng": rng,
            "world_size": self.world,
        }

    def save_checkpoint(self) -> str | None:
        """Atomically write ``out/checkpoint.pt`` (the previous one kept as ``checkpoint_prev.pt``)."""
        if self.rank != 0:
            return None
        path = os.path.join(self.cfg.out, CKPT_NAME)
        tmp = path + ".tmp"
        torch.save(self.state(), tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        if os.path.exists(path):
            os.replace(path, os.path.join(self.cfg.out, PREV_NAME))
        os.replace(tmp, path)
        return path

    def load_state(self, ck: dict) -> None:
        self.model.load_state_dict(ck["model"])
        self.ema.load_state_dict(ck["ema"])
        self.opt.load_state_dict(ck["optimizer"])
        self.step = int(ck["step"])
        self.scheduler = self._scheduler(self.step)
        torch.set_rng_state(ck["rng"]["torch"])
        if "cuda" in ck["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(ck["rng"]["cuda"], self.device)

    def start(self, resume: bool = False) -> None:
        """Resume from ``out`` if asked and a checkpoint is there, else warm start from
        ``cfg.init_from`` if set (else keep the fresh initialization).

        :raises FileExistsError: when not resuming and ``out`` holds a checkpoint (unless
            ``cfg.overwrite``), so that a run is never overwritten by mistake.
        """
        if resume and self.try_resume():
            self._started = True
            return
        self._check_no_overwrite()
        if self.cfg.init_from:
            # checked only here: a resumed run never reads it (its source may be gone)
            if not os.path.isfile(self.cfg.init_from):
                raise ValueError(f"init_from {self.cfg.init_from!r} is not a file; give a training checkpoint (checkpoint.pt).")
            self.warm_start(self.cfg.init_from)
        self._started = True

    def _check_no_overwrite(self) -> None:
        found = [os.path.join(self.cfg.out, n) for n in (CKPT_NAME, PREV_NAME) if os.path.exists(os.path.join(self.cfg.out, n))]
        if found and not self.cfg.overwrite:
            raise FileExistsError(
                f"run directory {self.cfg.out!r} holds {', '.join(found)}: pass --resume (resume=True) to continue it, "
                f"--overwrite (overwrite=True) to start afresh and replace it, or another --out."
            )

    def try_resume(self) -> bool:
        """Resume from the latest readable checkpoint of ``out`` (falls back to the previous one).

        :return: ``False`` if ``out`` holds no checkpoint (a fresh run).
        :raises ValueError: if checkpoints exist but none can be read, or the run's configuration
            differs from the checkpoint's (see :meth:`_check_compatible`).
        """
        errors = []
        for name in (CKPT_NAME, PREV_NAME):
            path = os.path.join(self.cfg.out, name)
            if not os.path.exists(path):
                continue
            try:
                ck = load_checkpoint(path, map_location=self.device)
            except Exception as err:  # truncated or corrupt file: try the older one
                print(f"[deepinv-energy] cannot read {path}: {err}; trying an older checkpoint", file=sys.stderr)
                errors.append(f"{path} ({type(err).__name__})")
                continue
            self._check_compatible(ck)
            self.load_state(ck)
            self._started = True  # resumed: continuing this run is what overwrites its checkpoints
            if self.rank == 0:
                print(f"[deepinv-energy] resumed from {path} at step {self.step}", file=sys.stderr, flush=True)
            return True
        if errors:
            raise ValueError(
                f"cannot resume: no readable checkpoint in {self.cfg.out!r}: {'; '.join(errors)}. Nothing was "
                f"overwritten; move the files away or pass --overwrite (without --resume) to start afresh."
            )
        return False

    def _check_compatible(self, ck):
        """Refuse a checkpoint of another architecture, data, seed or objective (:data:`FIXED_FIELDS`),
        and one whose schedule (:data:`SCHEDULE_FIELDS`) differs unless ``cfg.allow_config_change``
        (then each change is appended to ``out/changes.log``)."""
        old = {"objective": "energy", **ck["config"]}  # checkpoints before `objective` existed
        old = {"loss_weight": "none", "init_from": "", "input_scale": "whiten", **old}  # checkpoints before these existed
        for key in FIXED_FIELDS:
            if key in old and old[key] != getattr(self.cfg, key):
                raise ValueError(
                    f"cannot resume: checkpoint has {key}={old.get(key)!r}, this run {getattr(self.cfg, key)!r}."
                )
        changes = [(key, old[key], getattr(self.cfg, key)) for key in SCHEDULE_FIELDS
                   if key in old and old[key] != getattr(self.cfg, key)]
        if not changes:
            return
        text = ", ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in changes)
        if not self.cfg.allow_config_change:
            raise ValueError(
                f"cannot resume: the run's configuration changed ({text}); pass --allow-config-change "
                f"(allow_config_change=True) to continue with the new values (recorded in {CHANGES_NAME}), "
                f"or the checkpoint's values."
            )
        if self.rank == 0:
            with open(os.path.join(self.cfg.out, CHANGES_NAME), "a") as fh:
                fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} step {int(ck['step'])}: {text}\n")
            print(f"[deepinv-energy] configuration changed at step {int(ck['step'])}: {text} "
                  f"(recorded in {CHANGES_NAME})", file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ logging
    def _open_log(self):
        path = os.path.join(self.cfg.out, LOG_NAME)
        header = ["step", "loss", "L_den", "L_cov", "lr", "imgs_per_s", "grad_norm", "time"]
        rows = []
        if os.path.exists(path):
            with open(path) as fh:
                rows = [r for r in csv.reader(fh)][1:]
            rows = [r for r in rows if r and r[0].isdigit() and int(r[0]) <= self.step]
        fh = open(path, "w", newline="")
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
        fh.flush()
        return fh, w

    def _handle_signal(self, signum, frame):
        self._stop = True

    # ------------------------------------------------------------------ training
    @torch.no_grad()
    def _update_ema(self) -> None:
        """EMA of the weights, decay warmed up as ``min(ema_decay, (1 + t) / (10 + t))`` at step ``t``
        (counted after the update that produced the current weights): one foreach lerp."""
        t = self.step
        torch._foreach_lerp_(self._ema_params, self._params, 1 - min(self.cfg.ema_decay, (1 + t) / (10 + t)))

    def _scheduler(self, step: int):
        """The learning-rate schedule (:func:`lr_factor` of ``cfg``) positioned at ``step``."""
        for grp in self.opt.param_groups:
            grp["initial_lr"] = self.cfg.lr  # the base of the schedule is this run's lr (it may change on resume)
        return torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: lr_factor(self.cfg, s), last_epoch=step - 1)

    def _batch(self):
        """This step's images, covariances (a list per basis) and generator of the noise ``z``."""
        cfg = self.cfg
        seed = _step_seed(cfg.seed, self.step, self.rank)
        idx = self.batch_indices(self.step)
        gen = torch.Generator(device=self.device).manual_seed(seed)
        if self.device.type == "cpu":  # one generator for covariances and noise (runs before 2026-12-04 reproduced)
            return self.images[idx], self.dist.sample(idx.numel(), self.shape, generator=gen), gen
        # CUDA: draw the covariances on the CPU and copy them asynchronously (no synchronization)
        covs = self.dist.sample(idx.numel(), self.shape, generator=torch.Generator().manual_seed(seed))
        covs = [Covariance.trusted(c.basis, c.log_var.pin_memory().to(self.device, non_blocking=True)) for c in covs]
        if self.images.device != self.device:
            return self.images[idx].pin_memory().to(self.device, non_blocking=True), covs, gen
        return self.images[idx.pin_memory().to(self.device, non_blocking=True)], covs, gen

    def _loss(self, x, covs, gen) -> dict:
        cfg = self.cfg
        if cfg.objective == "denoiser":
            return direct_denoising_loss(self.model, x, covs, generator=gen, weighting=cfg.loss_weight)
        if self._loss_fn is not None:
            return self._loss_fn(self.model, x, covs, draw_noise(x, covs, gen), w_cov=cfg.w_cov, weighting=cfg.loss_weight)
        return covariance_score_matching_loss(self.model, x, covs, generator=gen, w_cov=cfg.w_cov, weighting=cfg.loss_weight)

    def train_step(self) -> dict:
        """One optimizer step. Returns ``loss``, ``den``, ``cov`` and ``grad_norm`` as 0-d tensors on the
        device (read them with ``float()`` only when needed: that synchronizes) and ``lr`` (float)."""
        cfg = self.cfg
        lr = self.opt.param_groups[0]["lr"]
        x, covs, gen = self._batch()
        self.model.train()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
            out = self._loss(x, covs, gen)
        self.opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        params = [p for p in self._params if p.grad is not None]
        stats = torch.stack([out["loss"].detach(), out["den"].detach(), out["cov"].detach()]).float()
        if self.distributed:
            flat = torch.cat([p.grad.reshape(-1) for p in params])
            torch.distributed.all_reduce(flat)
            flat /= self.world
            i = 0
            for p in params:
                p.grad.copy_(flat[i : i + p.numel()].view_as(p))
                i += p.numel()
            torch.distributed.all_reduce(stats)
            stats /= self.world
        if cfg.grad_clip > 0:
            gn = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        else:
            gn = torch.linalg.vector_norm(torch.stack(torch._foreach_norm([p.grad for p in params])))
        self.opt.step()
        self.scheduler.step()
        self.step += 1
        self._update_ema()
        return {"loss": stats[0], "den": stats[1], "cov": stats[2], "lr": lr, "grad_norm": gn.detach()}

    def _agree_stop(self) -> bool:
        if not self.distributed:
            return self._stop
        flag = torch.tensor([1.0 if self._stop else 0.0], device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item() > 0)

    def fit(self, max_steps: int | None = None, progress: bool = True) -> dict:
        """Train up to ``cfg.steps`` (or ``max_steps`` more steps); returns the last stats."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        if not self._started:  # fit() without start(): still never overwrite a run by mistake
            self._check_no_overwrite()
            self._started = True
        end = cfg.steps if max_steps is None else min(cfg.steps, self.step + max_steps)
        old_handlers = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                old_handlers[sig] = signal.signal(sig, self._handle_signal)
            except ValueError:  # not in the main thread
                pass
        fh = writer = None
        if self.rank == 0:
            fh, writer = self._open_log()
            with open(os.path.join(cfg.out, "config.json"), "w") as cf:
                json.dump(asdict(cfg), cf, indent=2)
        tty = sys.stderr.isatty()
        bar = tqdm(
            total=cfg.steps, initial=self.step, disable=(self.rank != 0) or not progress,
            mininterval=1.0 if tty else 60.0, dynamic_ncols=True,
        )
        stats = {}
        t_last, n_last = time.time(), 0
        t0 = time.time()
        try:
            while self.step < end:
                stats = self.train_step()
                n_last += cfg.batch_size
                bar.update(1)
                if self.rank == 0 and (self.step % cfg.log_every == 0 or self.step == end):
                    stats = {k: float(v) for k, v in stats.items()}  # the only read-back of a step
                    now = time.time()
                    ips = n_last / max(now - t_last, 1e-9)
                    t_last, n_last = now, 0
                    writer.writerow([self.step, f"{stats['loss']:.6g}", f"{stats['den']:.6g}", f"{stats['cov']:.6g}",
                                     f"{stats['lr']:.4g}", f"{ips:.2f}", f"{stats['grad_norm']:.4g}", f"{now - t0:.1f}"])
                    fh.flush()
                    bar.set_postfix(loss=f"{stats['loss']:.4f}", den=f"{stats['den']:.4f}", cov=f"{stats['cov']:.4f}", refresh=tty)
                stop = self._agree_stop()
                if self.step % cfg.ckpt_every == 0 or self.step == end or stop:
                    self.save_checkpoint()
                if stop:
                    if self.rank == 0:
                        print(f"\n[deepinv-energy] stopped by signal at step {self.step}; checkpoint saved.",
                              file=sys.stderr, flush=True)
                    break
        finally:
            bar.close()
            if fh is not None:
                fh.close()
            for sig, h in old_handlers.items():
                signal.signal(sig, h)
        return {k: float(v) for k, v in stats.items()}

    def finalize(self, path_dir: str | None = None, name: str = "model") -> EnergyUNet:
        """Normalize the EMA model (one constant per basis, at ``lam_max``) and save it.

        A plain denoiser (``objective="denoiser"``) has no energy to normalize and is saved as is."""
        model = self.ema
        if self.cfg.objective == "energy":
            model = normalize_model(model, self.images[: self.cfg.norm_images].to(self.device), self.cfg.lam_max)
        if self.rank == 0 and path_dir is not None:
            model.save_pretrained(path_dir, name, metadata={"step": self.step, "train_config": asdict(self.cfg)})
        return model


def normalize_model(model: EnergyUNet, images: torch.Tensor, var: float = LAM_MAX, seed: int = 0) -> EnergyUNet:
    """Set the model's normalization constants (one per basis of ``model.config.bases``) from clean images."""
    for basis in model.config.bases:
        const = normalization_constant(model, images, var=var, basis=basis, seed=seed)
        model.set_normalization(basis, const, images[0].numel())
    return model


def train(config: TrainConfig | None = None, resume: bool = False, images: torch.Tensor | None = None,
          max_steps: int | None = None, progress: bool = True, **kwargs) -> Trainer:
    """Train an :class:`EnergyUNet`; returns the :class:`Trainer` (``.model``, ``.ema``, ``.step``).

    :param TrainConfig config: the configuration (keyword arguments override it).
    :param bool resume: continue from ``out/checkpoint.pt`` if it exists (bit-for-bit).
    :param torch.Tensor images: clean images (N, C, H, W) instead of ``config.data``.
    :param int max_steps: stop after this many more steps (still bounded by ``config.steps``).
    """
    cfg = config or TrainConfig()
    if kwargs:
        cfg = TrainConfig(**{**asdict(cfg), **kwargs})
    tr = Trainer(cfg, images=images)
    tr.start(resume)
    tr.fit(max_steps=max_steps, progress=progress)
    return tr


#: choices of the string options of :class:`TrainConfig` on the command line.
_CHOICES = {"split": ("train", "test"), "schedule": ("cosine", "constant"), "loss_weight": ("none", "edm"),
            "objective": ("energy", "denoiser"), "form": ("residual", "inner"), "input_scale": ("whiten", "wiener"),
            "precision": ("float32", "bf16", "tf32")}


def _field_help() -> dict:
    """Help text of every :class:`TrainConfig` field, from its docstring (one source)."""
    doc = TrainConfig.__doc__
    out = {}
    for m in re.finditer(r":param \w+ (\w+): (.*?)(?=\n\s*:param|\Z)", doc, flags=re.S):
        text = re.sub(r":\w+:`~?([^`]+)`", lambda r: r.group(1).split(".")[-1], m.group(2))
        out[m.group(1)] = " ".join(re.sub(r"``(.*?)``", r"\1", text).split())
    return out


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Options of ``deepinv-energy train`` (adds them to ``parser`` if given): one per
    :class:`TrainConfig` field (generated from the dataclass and its docstring), plus ``--resume``,
    ``--stop-at`` and ``--export``."""
    p = parser or argparse.ArgumentParser(prog="deepinv-energy train", description="Train an EnergyUNet.")
    helps = _field_help()
    for f in fields(TrainConfig):
        d = getattr(TrainConfig(), f.name)
        flag = "--" + f.name.replace("_", "-")
        h = helps.get(f.name, "")
        if isinstance(d, bool):
            if d:  # on by default: a --no-X switch
                p.add_argument("--no-" + f.name.replace("_", "-"), dest=f.name, action="store_false",
                               help=f"disable: {h}")
            else:
                p.add_argument(flag, action="store_true", help=h)
        elif isinstance(d, list):
            p.add_argument(flag, default=",".join(d), type=lambda v: [x for x in v.split(",") if x],
                           help=h + " (default: %(default)s)")
        else:
            p.add_argument(flag, type=type(d), default=d, choices=_CHOICES.get(f.name),
                           help=h + " (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt if present")
    p.add_argument("--stop-at", type=int, default=0,
                   help="stop (with a checkpoint) once this step is reached, without changing the schedule of --steps")
    p.add_argument("--export", default="", help="after training, save the normalized EMA model in this directory")
    return p


def config_from_args(args) -> TrainConfig:
    """The :class:`TrainConfig` of parsed :func:`build_parser` options."""
    kw = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    if isinstance(kw.get("families"), str):
        kw["families"] = [x for x in kw["families"].split(",") if x]
    return TrainConfig(**kw)


def main_train(argv=None) -> int:
    """Entry point of ``deepinv-energy train`` / ``python -m deepinv_energy.training.trainer``.

    :param list argv: command-line arguments (default ``sys.argv[1:]``), see :func:`build_parser`.
    :return: (int) exit status.
    """
    args = build_parser().parse_args(argv)
    try:
        from ..cli import check_train_args  # the command line's checks (--stop-at, --data gmm:..., --device, checkpoints)

        check_train_args(args)
        return run_from_args(args)
    except (ValueError, OSError) as err:  # configuration and file errors: one line, no traceback
        print(f"deepinv-energy train: error: {err}", file=sys.stderr)
        return 2


def run_from_args(args: argparse.Namespace) -> int:
    """Run a training from parsed :func:`build_parser` options (for CLI subcommands)."""
    cfg = config_from_args(args)
    tr = Trainer(cfg)
    tr.start(args.resume)
    stop_at = getattr(args, "stop_at", 0)
    tr.fit(max_steps=max(0, stop_at - tr.step) if stop_at > 0 else None)
    if args.export and tr.step >= cfg.steps:
        tr.finalize(args.export)
    if tr.distributed:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main_train())
