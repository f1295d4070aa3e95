"""Small helpers shared by benchmark scripts: summary statistics, formatting, JSON caches, crops."""

from __future__ import annotations

import json
import math
import pathlib

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


def read_json(path: pathlib.Path) -> dict:
    """The JSON object stored at ``path``, or ``{}`` when the file does not exist."""
    return json.loads(path.read_text()) if path.exists() else {}


def center_crop(x: torch.Tensor, h: int, w: int | None = None) -> torch.Tensor:
    """Centre ``h`` x ``w`` crop of the last two dimensions of ``x`` (``w = h`` by default)."""
    w = h if w is None else w
    H, W = x.shape[-2:]
    if h > H or w > W:
        raise ValueError(f"crop {h}x{w} larger than the image {H}x{W}.")
    i, j = (H - h) // 2, (W - w) // 2
    return x[..., i : i + h, j : j + w]
