r"""Operator families: parameter grids of a deepinv physics, the object of blind estimation.

Each family is a :class:`deepinv.physics.generator.PhysicsGenerator`: :meth:`OperatorFamily.step`
draws parameters from its grid and returns them in deepinv's form (``filter``, ``mask``, ``sigma``),
so that ``physics.update(**family.step(batch_size))`` works as with deepinv's own generators.
"""

from __future__ import annotations

import itertools
import math
import warnings

import deepinv as dinv
import torch

from deepinv.physics.generator import PhysicsGenerator

from ..problems import simulate
from .kernels import gaussian_kernel, line_kernel

__all__ = ["OperatorFamily", "GaussianBlurFamily", "MotionBlurFamily", "BoxInpaintingFamily", "DenoisingFamily"]

LOG_2PI = math.log(2 * math.pi)


def _grid_values(name, values, period=None) -> torch.Tensor:
    """The sorted distinct values of a parameter's grid; duplicates (for a circular parameter of
    ``period``: values equal modulo the period) are merged with a warning, since a value listed
    k times would get k times the prior weight of the others."""
    v = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    if v.numel() == 0:
        raise ValueError(f"the grid of {name!r} is empty.")
    if not torch.isfinite(v).all():
        raise ValueError(f"the grid of {name!r} has non-finite values.")
    if period is not None:
        v = torch.remainder(v, period)
        v = torch.where(v > period - 1e-9 * period, torch.zeros_like(v), v)  # 179.9999999999 -> 0
    u = torch.unique(v)  # sorted
    if u.numel() < v.numel():
        same = " (the same direction modulo {:g})".format(period) if period is not None else ""
        warnings.warn(f"the grid of {name!r} lists {v.numel()} values but only {u.numel()} distinct ones{same}: "
                      f"duplicates merged (each value counts once in the prior).", stacklevel=3)
    return u


class OperatorFamily(PhysicsGenerator):
    r"""A parametric family of deepinv physics, the object of blind estimation.

    A family has named parameters :math:`\theta`, each with a grid of candidate values (the joint
    grid is their Cartesian product, restricted by :meth:`valid`), and builds a batched deepinv
    physics for a batch of parameter values. Subclasses implement :meth:`physics_params` (the
    deepinv parameters of :math:`\theta`: ``filter``, ``mask``, ``sigma``) and :meth:`build` (the
    physics with those parameters); those whose measurement has entries that the physics does not
    model (e.g. the fill of an inpainted region) add their density in :meth:`extra_log_density` and
    their values in :meth:`measure`.

    As a :class:`deepinv.physics.generator.PhysicsGenerator`, :meth:`step` draws :math:`\theta`
    uniformly from the admissible grid with the generator's ``rng``.

    :param tuple img_size: (C, H, W).
    :param dict grid: parameter name -> candidate values.
    :param tuple continuous: names of real-valued parameters that :meth:`BlindEstimator.refine`
        may optimize by gradient.
    :param torch.Generator rng: random number generator of :meth:`step` (deepinv's default if ``None``).
    :param torch.dtype dtype: dtype of the parameters :meth:`step` returns.
    :param dict periods: name -> period of circular parameters (values equal modulo the period are
        the same candidate; :class:`BlindPosterior` uses circular statistics for them).

    Each parameter's grid is sorted and its duplicates are merged (with a warning).

    :Examples:

    >>> import torch, deepinv as dinv
    >>> from deepinv_energy import GaussianBlurFamily
    >>> family = GaussianBlurFamily((1, 16, 16), widths=[0.5, 1.0, 2.0], noise=0.05)
    >>> params = family.step(batch_size=4, seed=0)
    >>> sorted(params), params["filter"].shape, params["theta"]["width"].shape
    (['filter', 'sigma', 'theta'], torch.Size([4, 1, 16, 16]), torch.Size([4]))
    >>> physics = family.physics({"width": torch.tensor([1.0]), "noise": torch.tensor([0.05])})
    >>> physics.update(**params)  # deepinv's way of moving a physics to new parameters
    >>> x = torch.rand(4, 1, 16, 16)
    >>> bool(torch.allclose(physics.A(x), family.physics(params["theta"]).A(x), atol=1e-6))
    True
    """

    def __init__(self, img_size, grid: dict, continuous=(), rng: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32, periods: dict | None = None):
        super().__init__(rng=rng, device="cpu" if rng is None else rng.device, dtype=dtype)
        if len(img_size) != 3:
            raise ValueError(f"img_size must be (C, H, W), got {img_size}.")
        self.img_size = tuple(int(s) for s in img_size)
        self.periods = dict(periods or {})
        self.grid = {k: _grid_values(k, v, self.periods.get(k)) for k, v in grid.items()}
        self.continuous = tuple(continuous)

    @property
    def names(self) -> tuple:
        return tuple(self.grid)

    def valid(self, theta: dict) -> torch.Tensor:
        """(N,) bool: which parameter combinations are admissible (all by default)."""
        return torch.ones(next(iter(theta.values())).shape[0], dtype=torch.bool)

    def grid_product(self) -> dict:
        """The Cartesian product of the grids (admissible or not): parameter name -> (N,) values."""
        combos = torch.tensor(list(itertools.product(*[v.tolist() for v in self.grid.values()])), dtype=torch.float64)
        return {k: combos[:, i] for i, k in enumerate(self.grid)}

    def candidates(self) -> dict:
        """The joint grid: parameter name -> (N,) values."""
        theta = self.grid_product()
        keep = self.valid(theta)
        if not keep.any():
            raise ValueError("no admissible parameter combination in the grid.")
        return {k: v[keep] for k, v in theta.items()}

    def physics_params(self, theta: dict) -> dict:
        """The deepinv parameters (``filter``, ``mask``, ``sigma``, ...) of a batch of parameter values
        (each entry (n,)): what ``physics.update`` takes."""
        raise NotImplementedError

    def build(self, params: dict):
        """A deepinv physics with the parameters ``params`` of :meth:`physics_params`."""
        raise NotImplementedError

    def physics(self, theta: dict):
        """A deepinv physics for a batch of parameter values (each entry (n,))."""
        return self.build(self.physics_params(theta))

    def step(self, batch_size: int = 1, seed: int | None = None, **kwargs) -> dict:
        r"""``batch_size`` parameter values drawn uniformly from the admissible grid (with ``rng``,
        reseeded by ``seed``): their :meth:`physics_params`, and the values themselves under ``"theta"``
        (a dict, which ``physics.update`` ignores)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
        self.rng_manual_seed(seed)
        cand = self.candidates()
        n = next(iter(cand.values())).shape[0]
        idx = torch.randint(n, (batch_size,), generator=self.rng, device=self.rng.device).cpu()
        theta = {k: v[idx].to(**self.factory_kwargs) for k, v in cand.items()}
        return {**self.physics_params(theta), "theta": theta}

    def extra_log_density(self, y: torch.Tensor, theta: dict) -> torch.Tensor:
        """(n,) float64 log-density of measurement entries that :meth:`physics` does not model."""
        return torch.zeros(y.shape[0], dtype=torch.float64, device=y.device)

    def measure(self, x: torch.Tensor, theta: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        """Simulate measurements of clean images ``x`` (n, C, H, W) with parameters ``theta``."""
        return simulate(self.physics({k: v.to(x) for k, v in theta.items()}), x, generator)

    @staticmethod
    def _noise(sigma: torch.Tensor):
        return dinv.physics.GaussianNoise(sigma=sigma)


class GaussianBlurFamily(OperatorFamily):
    r"""Circular Gaussian blur of unknown width (and optionally unknown noise level).

    Parameters ``width`` (pixels, see :func:`gaussian_kernel`) and ``noise`` (standard
    deviation); a float fixes a parameter. Physics: :class:`deepinv.physics.BlurFFT`.

    :param tuple img_size: (C, H, W).
    :param widths: candidate widths.
    :param noise: known noise level (float) or candidate levels.
    :param kwargs: ``rng``, ``dtype`` of :class:`OperatorFamily` (its :meth:`~OperatorFamily.step`).
    """

    def __init__(self, img_size, widths, noise=0.01, **kwargs):
        super().__init__(img_size, {"width": widths, "noise": noise}, continuous=("width", "noise"), **kwargs)
        if (self.grid["width"] <= 0).any() or (self.grid["noise"] <= 0).any():
            raise ValueError("widths and noise levels must be positive.")

    def physics_params(self, theta):
        return {"filter": gaussian_kernel(theta["width"], self.img_size), "sigma": theta["noise"]}

    def build(self, params):
        k = params["filter"]
        return dinv.physics.BlurFFT(self.img_size, filter=k, noise_model=self._noise(params["sigma"]), device=k.device)


class MotionBlurFamily(OperatorFamily):
    r"""Circular linear motion blur of unknown length and angle (and optionally noise level).

    Parameters ``length`` (pixels), ``angle`` (degrees, modulo 180: a direction, so the angles
    are reduced to [0, 180) and, e.g., 0 and 180 are merged into one candidate with a warning)
    and ``noise`` (standard deviation); a float fixes a parameter. Kernels: :func:`line_kernel`. Physics:
    :class:`deepinv.physics.BlurFFT`. (deepinv's ``MotionBlurGenerator`` draws random
    trajectories, which have no low-dimensional parameters to estimate; a straight-line blur
    is the parametric model of camera shake used here.)

    :param tuple img_size: (C, H, W).
    :param lengths: candidate lengths.
    :param angles: candidate angles (degrees).
    :param noise: known noise level (float) or candidate levels.
    :param kwargs: ``rng``, ``dtype`` of :class:`OperatorFamily` (its :meth:`~OperatorFamily.step`).
    """

    def __init__(self, img_size, lengths, angles, noise=0.01, **kwargs):
        super().__init__(img_size, {"length": lengths, "angle": angles, "noise": noise}, continuous=("length", "noise"),
                         periods={"angle": 180.0}, **kwargs)
        if (self.grid["length"] <= 0).any() or (self.grid["noise"] <= 0).any():
            raise ValueError("lengths and noise levels must be positive.")

    def physics_params(self, theta):
        return {"filter": line_kernel(theta["length"], theta["angle"], self.img_size), "sigma": theta["noise"]}

    build = GaussianBlurFamily.build  # a full-size circular filter and Gaussian noise


class DenoisingFamily(OperatorFamily):
    r"""Denoising with an unknown noise level (parameter ``noise``).

    :param tuple img_size: (C, H, W).
    :param noise: candidate noise standard deviations.
    :param kwargs: ``rng``, ``dtype`` of :class:`OperatorFamily` (its :meth:`~OperatorFamily.step`).
    """

    def __init__(self, img_size, noise, **kwargs):
        super().__init__(img_size, {"noise": noise}, continuous=("noise",), **kwargs)
        if (self.grid["noise"] <= 0).any():
            raise ValueError("noise levels must be positive.")

    def physics_params(self, theta):
        return {"sigma": theta["noise"]}

    def build(self, params):
        return dinv.physics.Denoising(noise_model=self._noise(params["sigma"]))


class BoxInpaintingFamily(OperatorFamily):
    r"""A missing square box of unknown size and position, filled with noise.

    Measurement model: :math:`y = m \odot (x + \sigma n) + (1 - m) \odot f`, with :math:`m` zero on
    the box (side ``size``, top-left corner ``(top, left)``) and the fill
    :math:`f \sim \mathcal{N}(\mu_f, s_f^2)` i.i.d. Its density enters the evidence, so boxes
    of different sizes are compared on the same :math:`d`-dimensional measurement. With
    ``fill_std=0`` (a constant fill, "noise-free fill") the measurement has a density only on
    the set where the box equals :math:`\mu_f`; evidences are then comparable only between
    boxes of one size, so a single size is required (position estimation).

    :param tuple img_size: (C, H, W).
    :param sizes: candidate box sides.
    :param tops: candidate top rows (all admissible ones if ``None``).
    :param lefts: candidate left columns (all admissible ones if ``None``).
    :param float noise: noise level of the observed pixels (known) or candidate levels.
    :param float fill_mean: mean of the fill.
    :param float fill_std: standard deviation of the fill (0: constant fill).
    :param kwargs: ``rng``, ``dtype`` of :class:`OperatorFamily` (its :meth:`~OperatorFamily.step`).
    """

    def __init__(self, img_size, sizes, tops=None, lefts=None, noise=0.0, fill_mean=0.0, fill_std=0.5, **kwargs):
        _, h, w = img_size
        tops = range(h) if tops is None else tops
        lefts = range(w) if lefts is None else lefts
        super().__init__(img_size, {"size": sizes, "top": tops, "left": lefts, "noise": noise}, **kwargs)
        for name, low in (("size", 1), ("top", 0), ("left", 0)):
            v = self.grid[name]
            if (v != v.round()).any() or (v < low).any():
                raise ValueError(f"box {name}s must be integers >= {low}, got {v.tolist()}.")
        if (self.grid["noise"] < 0).any():
            raise ValueError("noise levels must be >= 0.")
        if fill_std < 0:
            raise ValueError("fill_std must be >= 0.")
        if not self.valid(self.grid_product()).any():
            raise ValueError(f"no box of sizes {self.grid['size'].tolist()} at the given tops/lefts fits the "
                             f"{h}x{w} image.")
        if fill_std == 0 and self.grid["size"].numel() > 1:
            raise ValueError("with a constant fill (fill_std=0), give a single box size: evidences of different "
                             "sizes would be densities of different dimensions.")
        self.fill_mean, self.fill_std = float(fill_mean), float(fill_std)

    def valid(self, theta):
        _, h, w = self.img_size
        return (theta["top"] + theta["size"] <= h) & (theta["left"] + theta["size"] <= w)

    def box(self, theta, like: torch.Tensor) -> torch.Tensor:
        """(n, 1, H, W) bool, True inside each candidate box."""
        _, h, w = self.img_size
        rows = torch.arange(h, device=like.device).reshape(1, h, 1)
        cols = torch.arange(w, device=like.device).reshape(1, 1, w)
        t, l, s = (theta[k].to(like.device).reshape(-1, 1, 1) for k in ("top", "left", "size"))
        inside = (rows >= t) & (rows < t + s) & (cols >= l) & (cols < l + s)
        return inside.unsqueeze(1)

    def physics_params(self, theta):
        like = theta["size"]
        mask = (~self.box(theta, like)).to(like.dtype).expand(-1, self.img_size[0], -1, -1)
        return {"mask": mask, "sigma": theta["noise"]}

    def build(self, params):
        mask, noise = params["mask"], params["sigma"]
        nm = dinv.physics.ZeroNoise() if (noise == 0).all() else self._noise(noise)
        return dinv.physics.Inpainting(self.img_size, mask=mask, noise_model=nm, device=mask.device)

    def extra_log_density(self, y, theta):
        box = self.box(theta, y).expand_as(y)
        r = (y.double() - self.fill_mean) * box
        if self.fill_std == 0:
            ok = (r.abs() <= 1e-6).flatten(1).all(1)
            return torch.where(ok, 0.0, -math.inf).to(torch.float64)
        n = box.flatten(1).sum(1).double()
        return -0.5 * (r**2).flatten(1).sum(1) / self.fill_std**2 - n * (0.5 * LOG_2PI + math.log(self.fill_std))

    def measure(self, x, theta, generator=None):
        y = super().measure(x, theta, generator)
        box = self.box(theta, x).expand_as(x)
        fill = self.fill_mean + self.fill_std * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return torch.where(box, fill, y)
