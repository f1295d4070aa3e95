r"""Work counts of one sampler call on the bundled model (issue 15: before/after the redesign).

One ``PredictorCorrectorSampler.draw(n=2)`` on a 5-level geometric schedule (10 -> 0.01, one corrector step), for a Gaussian blur
(``deepinv.physics.BlurFFT``, kernel ``gaussian_blur(1.0)``, noise 0.02) of one 28x28 bundled
test image and the bundled ``fashion-mnist-28`` model, counting:

* network evaluations: forward calls of the U-Net backbone (``model.net``), next to the
  sampler's own ``diagnostics.nfe``;
* Hartley transforms: calls of ``deepinv_energy.covariance.hartley`` (every module's binding of it);
* ``Covariance`` constructions: validated ones (calls of ``Covariance.__init__``, each with a full
  ``isfinite`` scan) and, where it exists, unchecked ones (``Covariance.trusted``);
* ``check_image`` calls (every module's binding of it);
* ``to_denoising_problem`` calls, also for ``sample(n_samples=8, parallel=4)``;
* all ``torch.fft`` calls (including deepinv's and those inside the Hartley transform);

and the wall time of the sampler per network evaluation (median of 5 timed runs without
counters, one thread). The counters wrap module attributes at run time: this is a measurement
script, the package itself is untouched.

Run (the package imported is the one on ``PYTHONPATH``, printed in the output)::

    python benchmarks/redesign_counts.py [--runs 5] [--lines]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import Counter

import torch

import deepinv as dinv
import deepinv_energy
from deepinv_energy import EnergyUNet
from deepinv_energy.covariance import Covariance
from deepinv_energy.demo import bundled_test_images
from deepinv_energy.sampling import PredictorCorrectorSampler

FFT_NAMES = ("fft2", "ifft2", "rfft2", "irfft2", "fftn", "ifftn", "rfftn", "irfftn", "fft", "ifft")


def _modules():
    return [m for name, m in list(sys.modules.items())
            if m is not None and (name == "deepinv_energy" or name.startswith("deepinv_energy."))]


def _find(name: str):
    """The package's function ``name`` (the object every module binds)."""
    for m in _modules():
        f = getattr(m, name, None)
        if callable(f) and getattr(f, "__module__", "").startswith("deepinv_energy"):
            return f
    raise LookupError(name)


class Counting:
    """Context manager that counts calls by replacing every module binding of some functions."""

    def __init__(self, model):
        self.counts = Counter()
        self.model = model
        self._undo = []

    def _wrap_function(self, key, original):
        counts = self.counts

        def wrapper(*args, **kwargs):
            counts[key] += 1
            return original(*args, **kwargs)

        for m in _modules():
            for attr, value in list(vars(m).items()):
                if value is original:
                    setattr(m, attr, wrapper)
                    self._undo.append((m, attr, original))

    def __enter__(self):
        for key in ("hartley", "check_image", "to_denoising_problem"):
            self._wrap_function(key, _find(key))
        init = Covariance.__init__
        counts = self.counts

        def counted_init(obj, *args, **kwargs):
            counts["Covariance"] += 1
            init(obj, *args, **kwargs)

        Covariance.__init__ = counted_init
        self._undo.append((Covariance, "__init__", init))
        if "trusted" in vars(Covariance):  # the unchecked constructor, where it exists
            trusted = vars(Covariance)["trusted"]

            def counted_trusted(cls, *args, **kwargs):
                counts["Covariance.trusted"] += 1
                return trusted.__func__(cls, *args, **kwargs)

            Covariance.trusted = classmethod(counted_trusted)
            self._undo.append((Covariance, "trusted", trusted))
        for name in FFT_NAMES:
            original = getattr(torch.fft, name)

            def fft_wrapper(*args, _original=original, **kwargs):
                counts["torch.fft"] += 1
                return _original(*args, **kwargs)

            setattr(torch.fft, name, fft_wrapper)
            self._undo.append((torch.fft, name, original))
        self._hook = self.model.net.register_forward_hook(lambda *a: counts.update(["network"]))
        return self

    def __exit__(self, *exc):
        self._hook.remove()
        for obj, attr, original in reversed(self._undo):
            setattr(obj, attr, original)
        self._undo.clear()
        return False


def setup():
    model = EnergyUNet.from_pretrained("fashion-mnist-28").eval()
    x, _ = bundled_test_images(1)
    kernel = dinv.physics.functional.gaussian_blur(sigma=(1.0, 1.0))
    physics = dinv.physics.BlurFFT((1, 28, 28), filter=kernel, noise_model=dinv.physics.GaussianNoise(0.02))
    g = torch.Generator().manual_seed(0)
    y = physics.A(x) + 0.02 * torch.randn(x.shape, generator=g)
    sampler = PredictorCorrectorSampler(model, sigma_max=10.0, sigma_min=0.01, n_levels=5, n_corrector=1)
    return model, sampler, y, physics


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs (median reported)")
    parser.add_argument("--lines", action="store_true", help="also print the lines per file of the package")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, sampler, y, physics = setup()
    sampler.draw(y, physics, n=2, seed=0)  # warm-up

    with Counting(model) as c:
        sampler.draw(y, physics, n=2, seed=0)
    draw = dict(c.counts)
    nfe = sampler.diagnostics.nfe
    sampler_8x4 = PredictorCorrectorSampler(model, sigma_max=10.0, sigma_min=0.01, n_levels=5, n_corrector=1,
                                            parallel=4)
    with Counting(model) as c:
        sampler_8x4.sample(y, physics, n_samples=8, seed=0)
    sample = dict(c.counts)

    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        sampler.draw(y, physics, n=2, seed=0)
        times.append(time.perf_counter() - t0)
    wall = statistics.median(times)
    n_net = draw.get("network", 0)

    print(f"package: `{deepinv_energy.__file__}`\n")
    print("One `PredictorCorrectorSampler.draw(n=2)`, 5 levels (sigma 10 -> 0.01, 1 corrector step), "
          "BlurFFT gaussian_blur(1.0) + noise 0.02, one 28x28 bundled image, `fashion-mnist-28`.\n")
    print("| quantity | draw(n=2) | per network evaluation | sample(n_samples=8, parallel=4) |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| network evaluations (U-Net forward) | {n_net} | 1 | {sample.get('network', 0)} |")
    print(f"| sampler diagnostics.nfe | {nfe} | | |")
    for key, label in (("hartley", "Hartley transforms"), ("Covariance", "Covariance constructions (validated)"),
                       ("Covariance.trusted", "Covariance constructions (unchecked, Covariance.trusted)"),
                       ("check_image", "check_image calls"), ("to_denoising_problem", "to_denoising_problem calls"),
                       ("torch.fft", "torch.fft calls (all)")):
        v = draw.get(key, 0)
        per = f"{v / n_net:.2f}" if n_net else ""
        print(f"| {label} | {v} | {per} | {sample.get(key, 0)} |")
    print(f"| sampler wall time, median of {args.runs} (ms, 1 thread) | {1e3 * wall:.1f} | "
          f"{1e3 * wall / max(n_net, 1):.2f} | |")
    if args.lines:
        print()
        lines_table()


def lines_table():
    """Lines per ``.py`` file of the imported package (as ``wc -l``)."""
    root = os.path.dirname(deepinv_energy.__file__)
    rows = []
    for d, _, files in os.walk(root):
        for f in sorted(files):
            if f.endswith(".py"):
                path = os.path.join(d, f)
                with open(path, "rb") as fh:
                    rows.append((os.path.relpath(path, os.path.dirname(root)), fh.read().count(b"\n")))
    rows.sort()
    print("| file | lines |")
    print("| --- | ---: |")
    for path, n in rows:
        print(f"| {path} | {n} |")
    print(f"| total | {sum(n for _, n in rows)} |")


if __name__ == "__main__":
    main()
