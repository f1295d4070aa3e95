"""Small helpers shared by benchmark scripts: summary statistics, formatting, JSON caches, crops."""

from __future__ import annotations

import json
import math
import os
import pathlib
import time

import torch


def mean_se(values) -> tuple[float, float]:
    """Mean and standard error of the mean (sample standard deviation / sqrt(n); 0 for n = 1)."""
    v = torch.as_tensor(list(values), dtype=torch.float64)
    v = v[~torch.isnan(v)]
    if v.numel() == 0:
        return float("nan"), float("nan")
    se = float(v.std(unbiased=True) / math.sqrt(v.numel())) if v.numel() > 1 else 0.0
    return float(v.mean()), se


def fmt_mean_se(values, digits: int = 2) -> str:
    """``"mean ± se"`` of ``values`` with ``digits`` decimals (``"-"`` when empty)."""
    m, s = mean_se(values)
    return "-" if math.isnan(m) else f"{m:.{digits}f} ± {s:.{digits}f}"


def read_json(path: pathlib.Path, tries: int = 20) -> dict:
    """The JSON object stored at ``path``, or ``{}`` when the file does not exist (retries while a
    parallel writer that does not use :func:`write_json` leaves it incomplete)."""
    for k in range(tries):
        try:
            return json.loads(path.read_text()) if path.exists() else {}
        except json.JSONDecodeError:
            if k == tries - 1:
                raise
            time.sleep(0.25)


def write_json(path: pathlib.Path, obj, **kwargs) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (a temporary file renamed over it)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, **kwargs))
    os.replace(tmp, path)


def center_crop(x: torch.Tensor, h: int, w: int | None = None) -> torch.Tensor:
    """Centre ``h`` x ``w`` crop of the last two dimensions of ``x`` (``w = h`` by default)."""
    w = h if w is None else w
    H, W = x.shape[-2:]
    if h > H or w > W:
        raise ValueError(f"crop {h}x{w} larger than the image {H}x{W}.")
    i, j = (H - h) // 2, (W - w) // 2
    return x[..., i : i + h, j : j + w]
