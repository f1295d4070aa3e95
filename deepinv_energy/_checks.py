"""One range check for numbers, shared by the command line and the public API (no torch import)."""

from __future__ import annotations

import argparse
import math
from numbers import Integral, Real

__all__ = ["check_number", "arg_number", "check_variance_range", "warn_outside_training"]


def _describe(integer, low, high, low_open, high_open) -> str:
    kind = "an integer" if integer else "a finite number"
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return kind + (" " + " and ".join(parts) if parts else "")


def check_number(name: str, value, *, integer: bool = False, low=None, high=None,
                 low_open: bool = False, high_open: bool = False):
    """Return ``value`` (as int or float) if it is a finite number in the given range, else raise a
    ``ValueError`` naming ``name`` and the accepted values (NaN and inf are never accepted)."""
    ok = isinstance(value, Integral) if integer else isinstance(value, Real)
    ok = ok and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        raise ValueError(f"{name} must be {_describe(integer, low, high, low_open, high_open)}, got {value!r}.")
    return int(value) if integer else float(value)


def check_variance_range(lam_min, lam_max) -> None:
    """Raise a ``ValueError`` unless ``0 < lam_min < lam_max < inf`` (the variance range of a problem)."""
    if not (0 < lam_min < lam_max) or not math.isfinite(lam_max):
        raise ValueError(f"need 0 < lam_min < lam_max < inf, got lam_min={lam_min}, lam_max={lam_max}.")


def warn_outside_training(model, stacklevel: int = 3, **variances) -> None:
    """Warn when a variance (name=value) lies outside the range the model was trained on
    (``model.config.lam_min`` / ``lam_max``, for models that have a config): the energy there is an
    extrapolation."""
    import warnings

    config = getattr(model, "config", None)
    lo, hi = getattr(config, "lam_min", None), getattr(config, "lam_max", None)
    if lo is None or hi is None:
        return
    for name, v in variances.items():
        if not lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9):
            warnings.warn(f"{name}={v:g} is outside the variance range the model was trained on "
                          f"[{lo:g}, {hi:g}] (model.config): its energy there is an extrapolation and the estimate "
                          f"is usually worse; keep {name} within the trained range.", stacklevel=stacklevel)


def arg_number(integer: bool = False, **bounds):
    """An argparse ``type=`` that parses a number and applies :func:`check_number` to it."""

    def parse(text: str):
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {'an integer' if integer else 'a number'}, got {text!r}") from None
        try:
            return check_number("value", value, integer=integer, **bounds)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be {_describe(integer, bounds.get('low'), bounds.get('high'), bounds.get('low_open', False), bounds.get('high_open', False))}, got {text!r}"
            ) from None

    parse.__name__ = "integer" if integer else "number"
    return parse
