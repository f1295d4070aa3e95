r"""Training distribution over covariances :math:`\Sigma = V \operatorname{diag}(\lambda) V^\top`.

Each family draws log-variance maps (B, C, H, W) in one basis:

pixel basis (:math:`V = I`)
    ``"isotropic"`` (shared with the Hartley basis), ``"box"`` (a box of any size anywhere,
    independent inside/outside levels), ``"mask"`` (a random Bernoulli mask of random
    density, two levels), ``"bands"`` (a band of consecutive rows or columns, independent
    inside/outside levels; includes "top r rows"), ``"box_grid"`` (an n x n grid of boxes,
    each with its own level), ``"decimation"`` (a sampling grid of stride s and random
    offset: low level on the grid, high level off it).
Hartley basis (:math:`V` = DHT)
    ``"isotropic"``, ``"gaussian_blur"`` (random widths and orientations), ``"box_blur"`` (uniform
    rectangles), ``"defocus_blur"`` (uniform disks), ``"motion_blur"``
    (:class:`deepinv.physics.generator.MotionBlurGenerator`), ``"lowpass"`` (an ideal
    low-pass spectrum, independent inside/outside levels). A blur family draws a batch of
    kernels :math:`k` and noise variances :math:`s^2` as a deepinv
    ``BlurFFT(filter=k, noise_model=GaussianNoise(s))`` (:meth:`CovarianceDistribution.blur_physics`;
    Gaussian kernels from :func:`deepinv.physics.functional.gaussian_blur`, motion kernels
    from :class:`~deepinv.physics.generator.MotionBlurGenerator`); its covariance is the one
    :func:`~deepinv_energy.to_denoising_problem` gives for these physics, the route every
    restoration takes (:func:`~deepinv_energy.problems.blur_variances` of the kernels' spectra,
    computed without building the physics):
    :math:`\lambda = s^2 / |K|^2` where that is below :math:`\lambda_\max`, :math:`\lambda_\max`
    elsewhere (:math:`|K|^2`: the eigenvalues of :math:`A^\top A`).

Drawing is batched: every family of a basis is drawn for the whole batch and one is picked per
sample, a fixed number of tensor operations per batch with no per-sample Python loop and no
read-back to the host (except ``"motion_blur"``, whose deepinv generator takes a Python seed),
so the draws can stay on the training device.

The pixel families are heteroscedastic denoising with two (or more) free levels, a superset of
what ``Inpainting`` and ``Downsampling`` give (noise level where observed, :math:`\lambda_\max`
elsewhere): they are drawn as maps, not as physics.
With ``p_unobserved > 0``, the inside level of a two-level family (``box``, ``mask``, ``bands``) is
:math:`\lambda_\max` with that probability: exactly what ``Inpainting`` gives for its missing
pixels. With independent log-uniform levels alone, a level within a decade of :math:`\lambda_\max`
is drawn about 4 % of the time (``decimation`` sets its off-grid level to :math:`\lambda_\max`
70 % of the time, and blurs reach it where their spectrum vanishes).

Levels: log-uniform in ``[lam_min, lam_max]`` (default :data:`~deepinv_energy.covariance.LAM_MIN` .. ``LAM_MAX``); with probability
``p_useful`` (default 0.5) a level is drawn log-uniform in the "useful" range
``useful`` (default 1e-4 .. 10, input PSNR 40 .. -10 dB) instead, which puts more mass where
restorations are neither trivial nor hopeless. All variances are finally clamped to
``[lam_min, lam_max]``.

Held-out families: by default ``"motion_blur"`` and ``"bands"`` are NOT used for training
(:data:`DEFAULT_HOLDOUT`), so generalization to unseen operators can be measured on them.
Pass ``families=ALL_FAMILIES`` to train on everything.
"""

from __future__ import annotations

import math

import torch
from deepinv.physics import BlurFFT
from deepinv.physics.functional import gaussian_blur
from deepinv.physics.generator import MotionBlurGenerator
from deepinv.physics.noise import GaussianNoise

from .._checks import check_number, check_variance_range
from ..covariance import LAM_MAX, LAM_MIN, Covariance
from ..problems import blur_spectrum  # re-exported: its home is problems.py, beside the other spectra of physics
from ..problems import blur_variances

__all__ = [
    "CovarianceDistribution",
    "PIXEL_FAMILIES",
    "HARTLEY_FAMILIES",
    "ALL_FAMILIES",
    "DEFAULT_HOLDOUT",
    "DEFAULT_FAMILIES",
    "BLUR_FAMILIES",
    "blur_spectrum",
]

PIXEL_FAMILIES = ("isotropic", "box", "mask", "bands", "box_grid", "decimation")
HARTLEY_FAMILIES = ("isotropic", "gaussian_blur", "box_blur", "defocus_blur", "motion_blur", "lowpass")
#: the Hartley families drawn as deepinv blur physics (:meth:`CovarianceDistribution.blur_physics`)
BLUR_FAMILIES = ("gaussian_blur", "box_blur", "defocus_blur", "motion_blur")
#: the families of each basis (a new basis of the registry gets its families here)
BASIS_FAMILIES = {"pixel": PIXEL_FAMILIES, "hartley": HARTLEY_FAMILIES}
ALL_FAMILIES = tuple(dict.fromkeys(f for fams in BASIS_FAMILIES.values() for f in fams))
DEFAULT_HOLDOUT = ("motion_blur", "bands")
DEFAULT_FAMILIES = tuple(f for f in ALL_FAMILIES if f not in DEFAULT_HOLDOUT)


def _odd(k: int) -> int:
    return k if k % 2 == 1 else k - 1


class CovarianceDistribution:
    r"""Configurable distribution of covariance batches (see the module docstring).

    :param tuple families: families to draw from (default :data:`DEFAULT_FAMILIES`,
        i.e. everything except :data:`DEFAULT_HOLDOUT`).
    :param dict | None weights: relative weight of each family within its basis (default 1).
    :param float p_pixel: fraction of each batch in the pixel basis (the rest is Hartley);
        ignored when only one basis has families.
    :param float lam_min: smallest variance.
    :param float lam_max: largest variance (unobserved coefficients).
    :param float p_useful: probability of drawing a level in the ``useful`` range.
    :param tuple useful: (low, high) variances of the useful range.
    :param float p_channel_independent: probability that each channel of a multi-channel
        image gets its own independent draw (otherwise one map is shared by all channels).
    :param float p_unobserved: probability that the inside level of a ``box``, ``mask`` or
        ``bands`` covariance is ``lam_max`` (an unobserved region, as ``Inpainting`` gives);
        0 (the default) draws no extra random numbers, so earlier runs are reproduced exactly.

    :Examples:

    >>> import torch
    >>> from deepinv_energy.training.distribution import CovarianceDistribution
    >>> dist = CovarianceDistribution()
    >>> covs = dist.sample(8, (1, 16, 16), generator=torch.Generator().manual_seed(0))
    >>> sum(c.shape[0] for c in covs), sorted(c.basis for c in covs)
    (8, ['hartley', 'pixel'])
    """

    def __init__(
        self,
        families=DEFAULT_FAMILIES,
        weights: dict | None = None,
        p_pixel: float = 0.5,
        lam_min: float = LAM_MIN,
        lam_max: float = LAM_MAX,
        p_useful: float = 0.5,
        useful: tuple = (1e-4, 10.0),
        p_channel_independent: float = 0.5,
        p_unobserved: float = 0.0,
    ):
        families = tuple(families)
        unknown = [f for f in families if f not in ALL_FAMILIES]
        if unknown or not families:
            raise ValueError(f"unknown families {unknown}; choose among {ALL_FAMILIES}.")
        check_variance_range(lam_min, lam_max)
        self.families = families
        weights = dict(weights or {})
        stray = [k for k in weights if k not in families]
        if stray:
            raise ValueError(f"weights has keys {stray} that are not among the families {families}.")
        for k, v in weights.items():
            check_number(f"weights[{k!r}]", v, low=0)
        if weights and not any(weights.get(f, 1.0) > 0 for f in families):
            raise ValueError("weights must give at least one family a positive weight.")
        for name, v in (("p_pixel", p_pixel), ("p_useful", p_useful), ("p_channel_independent", p_channel_independent)):
            check_number(name, v, low=0, high=1)
        self.weights = {f: float(weights.get(f, 1.0)) for f in families}
        #: the families of this distribution in each basis that has some
        self.basis_families = {b: [f for f in families if f in fams] for b, fams in BASIS_FAMILIES.items()}
        self.basis_families = {b: fams for b, fams in self.basis_families.items() if fams}
        self.pixel_families = self.basis_families.get("pixel", [])
        self.hartley_families = self.basis_families.get("hartley", [])
        self.p_pixel = p_pixel
        self.lam_min, self.lam_max = lam_min, lam_max
        self.p_useful = p_useful
        self.useful = (max(useful[0], lam_min), min(useful[1], lam_max))
        self.p_channel_independent = p_channel_independent
        if not 0.0 <= p_unobserved <= 1.0:
            raise ValueError(f"p_unobserved must be in [0, 1], got {p_unobserved!r}.")
        self.p_unobserved = p_unobserved
        self._motion = {}

    def __repr__(self):
        return (
            f"CovarianceDistribution(families={self.families}, p_pixel={self.p_pixel}, "
            f"lam=[{self.lam_min:g}, {self.lam_max:g}], p_useful={self.p_useful}, p_unobserved={self.p_unobserved})"
        )

    # ------------------------------------------------------------------ random helpers
    @staticmethod
    def _u(shape, g, device):
        return torch.rand(shape, generator=g, device=device)

    def _levels(self, shape, g, device):
        """Log-variances, log-uniform on the full range or (w.p. p_useful) the useful range."""
        lo, hi = math.log(self.lam_min), math.log(self.lam_max)
        ulo, uhi = math.log(self.useful[0]), math.log(self.useful[1])
        full = lo + (hi - lo) * self._u(shape, g, device)
        useful = ulo + (uhi - ulo) * self._u(shape, g, device)
        return torch.where(self._u(shape, g, device) < self.p_useful, useful, full)

    def _randint(self, low, high, n, g, device):
        """Integers in [low, high] inclusive, (n,)."""
        return low + (self._u((n,), g, device) * (high - low + 1)).long().clamp(max=high - low)

    # ------------------------------------------------------------------ pixel families
    def _isotropic(self, n, H, W, g, dev):
        return self._levels((n, 1, 1), g, dev).expand(n, H, W)

    def _two_levels(self, inside, n, g, dev):
        a = self._levels((n, 1, 1), g, dev)
        b = self._levels((n, 1, 1), g, dev)
        if self.p_unobserved > 0:  # an unobserved region (no extra draws otherwise: old runs unchanged)
            a = torch.where(self._u((n, 1, 1), g, dev) < self.p_unobserved, math.log(self.lam_max), a)
        return torch.where(inside, a, b)

    def _box(self, n, H, W, g, dev):
        h = self._randint(1, H, n, g, dev)
        w = self._randint(1, W, n, g, dev)
        top = (self._u((n,), g, dev) * (H - h + 1)).long()
        left = (self._u((n,), g, dev) * (W - w + 1)).long()
        ii = torch.arange(H, device=dev).view(1, H, 1)
        jj = torch.arange(W, device=dev).view(1, 1, W)
        inside = (
            (ii >= top.view(-1, 1, 1))
            & (ii < (top + h).view(-1, 1, 1))
            & (jj >= left.view(-1, 1, 1))
            & (jj < (left + w).view(-1, 1, 1))
        )
        return self._two_levels(inside, n, g, dev)

    def _mask(self, n, H, W, g, dev):
        density = self._u((n, 1, 1), g, dev)
        inside = self._u((n, H, W), g, dev) < density
        return self._two_levels(inside, n, g, dev)

    def _bands(self, n, H, W, g, dev):
        rows = self._u((n,), g, dev) < 0.5
        L = torch.where(rows, torch.full((n,), H, device=dev), torch.full((n,), W, device=dev))
        width = (1 + self._u((n,), g, dev) * L).long().clamp(max=L)
        start = (self._u((n,), g, dev) * (L - width + 1)).long()
        ii = torch.arange(H, device=dev).view(1, H, 1).expand(n, H, W)
        jj = torch.arange(W, device=dev).view(1, 1, W).expand(n, H, W)
        pos = torch.where(rows.view(-1, 1, 1), ii, jj)
        inside = (pos >= start.view(-1, 1, 1)) & (pos < (start + width).view(-1, 1, 1))
        return self._two_levels(inside, n, g, dev)

    def _box_grid(self, n, H, W, g, dev):
        kmax = max(2, min(8, H, W))
        k = self._randint(2, kmax, n, g, dev).view(n, 1)
        lv = self._levels((n, kmax * kmax), g, dev)  # a kmax x kmax grid of levels, the top-left k x k used
        ri = torch.div(torch.arange(H, device=dev) * k, H, rounding_mode="floor")  # (n, H): row of the grid
        ci = torch.div(torch.arange(W, device=dev) * k, W, rounding_mode="floor")
        return lv.gather(1, (ri.unsqueeze(2) * kmax + ci.unsqueeze(1)).view(n, H * W)).view(n, H, W)

    def _decimation(self, n, H, W, g, dev):
        s = self._randint(2, 4, n, g, dev).view(-1, 1, 1)
        oy = (self._u((n, 1, 1), g, dev) * s).long()
        ox = (self._u((n, 1, 1), g, dev) * s).long()
        ii = torch.arange(H, device=dev).view(1, H, 1)
        jj = torch.arange(W, device=dev).view(1, 1, W)
        on = ((ii - oy) % s == 0) & ((jj - ox) % s == 0)
        low = self._levels((n, 1, 1), g, dev)
        # off-grid: unobserved most of the time, otherwise any level above the grid's
        high = torch.where(
            self._u((n, 1, 1), g, dev) < 0.7,
            torch.full_like(low, math.log(self.lam_max)),
            torch.maximum(low, self._levels((n, 1, 1), g, dev)),
        )
        return torch.where(on, low, high)

    # ------------------------------------------------------------------ Hartley families
    def _motion_generator(self, ks: int) -> MotionBlurGenerator:
        """deepinv's motion-blur generator for ks x ks kernels, built once per size (seeded from
        the distribution's generator at every draw)."""
        if ks not in self._motion:
            self._motion[ks] = MotionBlurGenerator((ks, ks), rng=torch.Generator(), n_steps=200)
        return self._motion[ks]

    def _kernels(self, family, n, H, W, g, dev) -> torch.Tensor:
        """(n, kh, kw) kernels of a blur family, each summing to 1."""
        if family == "gaussian_blur":
            std = 0.3 + 2.7 * self._u((n, 1), g, dev)
            aniso = torch.where(self._u((n, 1), g, dev) < 0.3, 0.5 + self._u((n, 1), g, dev), torch.ones(n, 1, device=dev))
            angle = 180.0 * self._u((n,), g, dev)
            ks = _odd(min(H, W, 19))
            return gaussian_blur((ks, ks), sigma=torch.cat([std, std * aniso], 1), angle=angle, device=dev)[:, 0]
        if family == "box_blur":
            kmax = max(2, min(7, H, W))
            h = self._randint(1, kmax, n, g, dev)
            w = torch.where(self._u((n,), g, dev) < 0.5, h, self._randint(1, kmax, n, g, dev))
            r = torch.arange(kmax, device=dev)
            k = ((r.view(1, -1, 1) < h.view(-1, 1, 1)) & (r.view(1, 1, -1) < w.view(-1, 1, 1))).float()
        elif family == "defocus_blur":
            rad = 0.5 + 3.5 * self._u((n, 1, 1), g, dev)
            ks = _odd(min(H, W, 9))
            r = torch.arange(ks, device=dev, dtype=torch.float32) - ks // 2
            k = (r.view(1, -1, 1) ** 2 + r.view(1, 1, -1) ** 2 <= rad**2).float()
        else:  # motion_blur
            gen = self._motion_generator(_odd(min(H, W, 15)))
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g, device=g.device if g is not None else "cpu"))
            length = float(0.1 + 0.5 * self._u((1,), g, dev))
            k = gen.step(n, l=length, sigma=0.25, seed=seed)["filter"][:, 0].to(dev)
        return k / k.sum(dim=(1, 2), keepdim=True)

    def blur_physics(self, family: str, n: int, H: int, W: int, generator=None, device="cpu") -> BlurFFT:
        r"""A batch of ``n`` single-channel H x W deepinv ``BlurFFT`` physics of a blur family
        (:data:`BLUR_FAMILIES`): its kernels, and Gaussian noise whose variance is a level
        (log-uniform, or in the useful range). The family's covariances are those of
        :func:`~deepinv_energy.to_denoising_problem` for these physics.

        >>> import torch
        >>> from deepinv_energy.training.distribution import CovarianceDistribution
        >>> p = CovarianceDistribution().blur_physics("gaussian_blur", 3, 16, 16, torch.Generator().manual_seed(0))
        >>> tuple(p.filter.shape), tuple(p.noise_model.sigma.shape)
        ((3, 1, 15, 15), (3,))
        """
        if family not in BLUR_FAMILIES:
            raise ValueError(f"family must be one of {BLUR_FAMILIES}, got {family!r}.")
        dev = torch.device(device)
        k = self._kernels(family, n, H, W, generator, dev)
        noise_log_var = self._levels((n,), generator, dev)
        return BlurFFT(img_size=(1, H, W), filter=k.unsqueeze(1), device=dev,
                       noise_model=GaussianNoise(sigma=torch.exp(0.5 * noise_log_var)))

    def _blur(self, family, n, H, W, g, dev):
        # the covariance of to_denoising_problem for blur_physics(family, ...) (same draws, tested),
        # computed from the kernels without building the physics
        k = self._kernels(family, n, H, W, g, dev)
        noise_var = torch.exp(self._levels((n, 1, 1), g, dev))
        lam, _, _ = blur_variances(blur_spectrum(k, H, W), noise_var, self.lam_min, self.lam_max)
        return torch.log(lam)

    def _lowpass(self, n, H, W, g, dev):
        fy = torch.fft.fftfreq(H, device=dev).abs().view(1, H, 1)
        fx = torch.fft.fftfreq(W, device=dev).abs().view(1, 1, W)
        rad = torch.sqrt(fy**2 + fx**2)
        cut = 0.05 + 0.65 * self._u((n, 1, 1), g, dev)
        return self._two_levels(rad <= cut, n, g, dev)

    # ------------------------------------------------------------------ sampling
    def _draw(self, family, n, H, W, g, dev):
        if family in BLUR_FAMILIES:
            return self._blur(family, n, H, W, g, dev).float().contiguous()
        fn = {
            "isotropic": self._isotropic,
            "box": self._box,
            "mask": self._mask,
            "bands": self._bands,
            "box_grid": self._box_grid,
            "decimation": self._decimation,
            "lowpass": self._lowpass,
        }[family]
        return fn(n, H, W, g, dev).float().contiguous()

    def sample_basis(self, basis: str, n: int, shape, generator=None, device="cpu") -> Covariance:
        """``n`` covariances in one basis, families drawn per sample by their weights (each
        family with a positive weight is computed for all ``n`` samples, then one is picked per sample).

        :param str basis: a basis with families (:data:`BASIS_FAMILIES`).
        :param int n: batch size.
        :param tuple shape: image shape (C, H, W).
        :param torch.Generator generator: source of randomness (on ``device``).
        """
        fams = [f for f in self.basis_families.get(basis, ()) if self.weights[f] > 0]
        if not fams:
            raise ValueError(f"no family of basis {basis!r} with a positive weight among {self.families}.")
        C, H, W = shape
        dev = torch.device(device)
        w = torch.tensor([self.weights[f] for f in fams], device=dev)
        choice = torch.multinomial(w.expand(n, -1), 1, generator=generator).view(1, n, 1, 1, 1)
        # every family drawn for every sample, then one picked per sample: a fixed number of
        # batched operations, no per-sample Python and no read-back of the choice to the host
        maps = torch.stack([self._draw(f, n * C, H, W, generator, dev).view(n, C, H, W) for f in fams])
        out = maps.gather(0, choice.expand(1, n, C, H, W))[0]
        if C > 1:  # one map shared by all channels unless the sample is channel-independent
            indep = self._u((n, 1, 1, 1), generator, dev) < self.p_channel_independent
            out = torch.where(indep, out, out[:, :1].expand(n, C, H, W))
        out = out.clamp(math.log(self.lam_min), math.log(self.lam_max))
        return Covariance(basis, out)

    def counts(self, n: int) -> dict:
        """How many of ``n`` samples go to each basis (deterministic)."""
        bases = list(self.basis_families)
        if len(bases) == 1:
            return {bases[0]: n}
        # p_pixel to the pixel basis (when it has families), the rest shared evenly by the others
        out = {"pixel": int(round(n * self.p_pixel))} if self.pixel_families else {}
        others = [b for b in bases if b not in out]
        rest = n - sum(out.values())
        for i, b in enumerate(others):
            out[b] = rest // len(others) + (1 if i < rest % len(others) else 0)
        return out

    def sample(self, n: int, shape, generator=None, device="cpu") -> list:
        """A batch of ``n`` covariances as a list of :class:`Covariance` (one per basis,
        pixel first), sizes given by :meth:`counts` (empty groups omitted)."""
        return [
            self.sample_basis(b, k, shape, generator, device) for b, k in self.counts(n).items() if k > 0
        ]
