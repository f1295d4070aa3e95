r"""Registry of the bundled energy models (safetensors weights + JSON config).

Bundled files live in ``deepinv_energy/weights/`` as ``<name>.safetensors`` and
``<name>.json``. Nothing is downloaded at run time.
"""

from __future__ import annotations

import os

from ..covariance import LAM_MAX, LAM_MIN

__all__ = ["WEIGHTS_DIR", "REGISTRY", "list_pretrained", "resolve_pretrained"]

#: Directory of the bundled weights.
WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights")

#: Bundled model names -> file stem in :data:`WEIGHTS_DIR`, with a short description.
REGISTRY = {
    "fashion-mnist-28": {
        "stem": "fashion-mnist-28",
        "description": "EnergyUNet on Fashion-MNIST 28x28 grey, pixel + Hartley bases, "
        f"variances {LAM_MIN:g} .. {LAM_MAX:g}.",
    },
    "natural-gray": {
        "stem": "natural-gray",
        "description": "size-free EnergyUNet on gray natural photographs (any H, W divisible by 8), trained on "
        "32x32 patches of Debian wallpaper photos; an early CPU checkpoint (see its metadata), "
        f"variances {LAM_MIN:g} .. {LAM_MAX:g}.",
    },
}


def list_pretrained(available_only: bool = True) -> list:
    """Names of the bundled models.

    :param bool available_only: only the names whose files are present in this installation.
    :return: (list of str) sorted names, usable with ``EnergyUNet.from_pretrained(name)``.

    :Examples:

    >>> from deepinv_energy.models.pretrained import list_pretrained
    >>> isinstance(list_pretrained(), list)
    True
    """
    names = []
    for name, entry in REGISTRY.items():
        stem = os.path.join(WEIGHTS_DIR, entry["stem"])
        if not available_only or (os.path.isfile(stem + ".safetensors") and os.path.isfile(stem + ".json")):
            names.append(name)
    return sorted(names)


def resolve_pretrained(name_or_path: str) -> tuple:
    """Paths ``(weights.safetensors, config.json)`` of a bundled name or a user path.

    Accepts a registry name, a path to the ``.safetensors`` or the ``.json`` file (the other
    one must sit beside it with the same stem), or a directory holding exactly one pair.

    :raises FileNotFoundError: naming the bundled models when nothing matches.
    """
    name_or_path = os.fspath(name_or_path)
    if name_or_path in REGISTRY:
        stem = os.path.join(WEIGHTS_DIR, REGISTRY[name_or_path]["stem"])
    elif os.path.isdir(name_or_path):
        stems = sorted(f[: -len(".safetensors")] for f in os.listdir(name_or_path) if f.endswith(".safetensors"))
        stems = [s for s in stems if os.path.isfile(os.path.join(name_or_path, s + ".json"))]
        if len(stems) != 1:
            raise FileNotFoundError(
                f"directory {name_or_path!r} must hold exactly one <name>.safetensors + <name>.json pair, "
                f"found {len(stems)}."
            )
        stem = os.path.join(name_or_path, stems[0])
    elif name_or_path.endswith(".safetensors") or name_or_path.endswith(".json"):
        stem = os.path.splitext(name_or_path)[0]
    else:
        raise FileNotFoundError(
            f"unknown pretrained model {name_or_path!r}; bundled names: {sorted(REGISTRY)} "
            f"(available here: {list_pretrained()}), or give a path to a .safetensors/.json pair."
        )
    wpath, cpath = stem + ".safetensors", stem + ".json"
    for p in (wpath, cpath):
        if not os.path.isfile(p):
            raise FileNotFoundError(f"missing file {p!r} for pretrained model {name_or_path!r}.")
    return wpath, cpath
