r"""Learned energy network: a small conditional UNet with the Gaussian limit built in.

With :math:`\mu` the data mean image, :math:`v` the data variance of every coefficient in the
covariance's basis (both fixed buffers computed from training data),
:math:`c = V^\top (y - \mu)`, :math:`\lambda` the noise variances and
:math:`F = F_\theta\big(V(c_\text{in} c), \log\lambda, \text{basis}\big)` a UNet
(:math:`c_\text{in} = 1/\sqrt{v + \lambda}` by default, see ``UNetConfig.input_scale``)
(image in, image out; :math:`\hat F = V^\top F`),

.. math::

    U(y, \Sigma) = \underbrace{\frac12 \sum_i \frac{c_i^2}{v_i + \lambda_i}
                 + \frac12 \sum_i \log\big(2\pi (v_i + \lambda_i)\big)}_{\text{diagonal Gaussian}}
                 + N_\theta(y, \Sigma) + b_\theta(\log\lambda) - \kappa_{\text{basis}},

where :math:`b` is a learned scalar function of the covariance and :math:`\kappa` the
normalization constant of each basis (computed after training, see
:func:`deepinv_energy.training.loss.normalization_constant`). Two network terms
:math:`N_\theta` are implemented (``UNetConfig.form``); both vanish for :math:`F = 0` (the
model is then exactly the diagonal Gaussian fitted to the data) and as
:math:`\lambda \to \infty` (so identity 4 of the method holds by construction):

``"residual"`` (default)
    With the EDM-preconditioned denoiser :math:`D = c_\text{skip} c + c_\text{out} \hat F`,
    :math:`c_\text{skip} = v/(v+\lambda)`, :math:`c_\text{out} = \sqrt{v\lambda/(v+\lambda)}`,
    the energy is :math:`\tfrac12 \sum_i (c_i - D_i)^2/\lambda_i + \tfrac12 \sum_i v_i c_i^2/(v_i+\lambda_i)^2`
    plus the log-determinant, i.e.

    .. math::

        N_\theta = \sum_i \tfrac12 q_i^2 - \rho_i q_i, \qquad
        q_i = \sqrt{\tfrac{v_i}{v_i+\lambda_i}}\, \hat F_i, \quad
        \rho_i = \frac{\sqrt{\lambda_i}\, c_i}{v_i + \lambda_i}.

    Every factor is bounded for all :math:`\lambda`, so :math:`U`, :math:`h` and
    :math:`\sqrt\lambda\, g` stay bounded for bounded :math:`F` down to :math:`\lambda = 10^{-9}`,
    while :math:`g` keeps the :math:`\lambda^{-1/2}` scale of a score wherever the network
    resolves the noise (as an EDM denoiser does).
``"inner"``
    The inner-product form of dual score matching,
    :math:`N_\theta = -\tfrac12 \sum_i c_i a_i \hat F_i` with
    :math:`a_i = \sqrt{v_i / ((\lambda_i + \lambda_\text{amp})(v_i + \lambda_i))}` (for
    :math:`\lambda \gg \lambda_\text{amp}` the :math:`c_\text{out}/\lambda` of EDM). Its
    energy contains :math:`\langle c, \hat F\rangle / \sqrt\lambda`, so any nonzero output at
    small variances makes :math:`U` and :math:`h` grow like :math:`\lambda^{-1/2}`: measured on
    Fashion-MNIST with :math:`\lambda_\text{amp} = 0`, :math:`L_\text{cov} = 20` at
    :math:`\lambda = 2\cdot 10^{-9}` after 120 steps and gradient norms of 1e4-1e5; the cap
    :math:`\lambda_\text{amp}` (default 1e-5) bounds it but the form still trains worse
    (see the comparison in the training notes).

All sums are computed without cancellation at :math:`\lambda = 10^{-9}` in float32
(:math:`\log(v+\lambda)` by ``logaddexp``, never :math:`(1 - c_\text{skip})/\lambda`).
The energy has the dtype of ``y``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import numpy as np
import torch.nn.functional as Fn

from ..covariance import LAM_MAX, LAM_MIN, BASES, Covariance, get_basis, hartley
from .base import EnergyModel, check_image

__all__ = ["EnergyUNet", "UNetConfig"]


def _ring_masks(H: int, W: int, n: int, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """(n, H, W) averaging masks over rings of radial frequency (relative to Nyquist: any size)."""
    fy = torch.fft.fftfreq(H).abs().reshape(H, 1)
    fx = torch.fft.fftfreq(W).abs().reshape(1, W)
    r = torch.sqrt(fy**2 + fx**2) / math.sqrt(0.5)  # in [0, 1]
    idx = (r * n).long().clamp(max=n - 1)
    masks = torch.stack([(idx == k).float() for k in range(n)])  # float32 as stored models were trained
    return (masks / masks.sum(dim=(1, 2), keepdim=True).clamp_min(1.0)).to(dtype=dtype, device=device)


def _radial_frequency(H: int, W: int, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """(H, W) radial frequency (cycles per pixel) of each Hartley coefficient; the DC coefficient
    gets half the lowest nonzero frequency of the larger side, ``0.5 / max(H, W)``."""
    fy = torch.fft.fftfreq(H, dtype=dtype, device=device).reshape(H, 1)
    fx = torch.fft.fftfreq(W, dtype=dtype, device=device).reshape(1, W)
    r = torch.sqrt(fy**2 + fx**2)
    return r.clamp_min(0.5 / max(H, W))


@dataclass
class UNetConfig:
    r"""Architecture of :class:`EnergyUNet` (everything needed to rebuild it).

    :param int channels: image channels :math:`C`.
    :param int height: image height (divisible by ``2**depth``); for a ``size_free`` model, the
        height of the training patches (the model takes any size divisible by ``2**depth``).
    :param int width_px: image width, likewise.
    :param int base_channels: channels of the first UNet level (``width_px`` is the image width).
    :param tuple mult: channel multiplier of each level (``len(mult) = depth + 1``).
    :param int num_res: residual blocks per level (encoder; the decoder has one more).
    :param bool attention: self-attention at the coarsest level.
    :param int emb_dim: size of the conditioning embedding (default ``4 * base_channels``).
    :param int n_rings: radial frequency bins of the conditioning summary.
    :param int pool: side of the coarse spatial pooling of the conditioning summary.
    :param float lam_min: smallest training variance (input normalization; the samplers and
        :class:`~deepinv_energy.EnergyMMSE` follow the model's range).
    :param float lam_max: largest training variance, likewise.
    :param float v_floor: absolute floor of the data variances :math:`v`.
    :param float v_floor_rel: relative floor: :math:`v_i \ge` ``v_floor_rel`` times the mean
        variance of the channel. Coefficients that are almost constant in the data but have rare
        outliers (Fashion-MNIST's border pixels: variance down to 1e-7, kurtosis 2e4) otherwise
        make the Gaussian part, and so :math:`h`, explode on those outliers (measured: one
        sample with :math:`L_\text{cov} = 233` in a batch whose median is 0.4).
    :param str form: ``"residual"`` (default) or ``"inner"``, the two parameterizations of the
        network term described in the module docstring.
    :param str input_scale: how the noisy coefficients are scaled at the network's input:
        ``"whiten"`` (default), :math:`c / \sqrt{v + \lambda}` (EDM's :math:`c_\text{in}`, unit
        variance at every level), or ``"wiener"``, :math:`\sqrt{v}\, c / (v + \lambda)` (the same
        for :math:`\lambda \ll v`, vanishing like :math:`\lambda^{-1/2}` for :math:`\lambda \gg v`).
        With ``"whiten"`` the Tweedie mean :math:`y - \Sigma g` multiplies the network's sensitivity
        to an unobserved coefficient by :math:`\lambda / \sqrt{v+\lambda} \approx \sqrt\lambda`;
        with ``"wiener"`` by :math:`\sqrt v\,\lambda / (v + \lambda) \le \sqrt v`, bounded.
    :param tuple bases: the bases the model is conditioned on (one flag, one data variance map and
        one normalization constant each): registered names
        (:func:`~deepinv_energy.covariance.basis_names`), in the order of its one-hot flag.
    :param bool size_free: a fully convolutional model for any image size (same channel count):
        data statistics are stationary (a mean per channel and a radial power spectrum from which
        :math:`v` of every coefficient follows at any size), and the normalization constant and the
        scalar term :math:`b` are per pixel, so energies of different sizes compare per pixel.
        ``False`` (the Fashion-MNIST model): statistics per coefficient, one image size.
    :param int n_radial: knots of the radial power spectrum of a ``size_free`` model.
    :param float lam_amp: (``"inner"`` form only) variance below which the network term stops being amplified
        (:math:`a_i = \sqrt{v_i / ((\lambda_i + \lambda_\text{amp})(v_i + \lambda_i))}`): keeps
        :math:`h` and :math:`g` bounded at tiny variances (see the module docstring).
    """

    channels: int = 1
    height: int = 28
    width_px: int = 28
    base_channels: int = 32
    mult: tuple = (1, 2, 2)
    num_res: int = 1
    attention: bool = True
    emb_dim: int = 0
    n_rings: int = 8
    pool: int = 4
    lam_min: float = LAM_MIN
    lam_max: float = LAM_MAX
    v_floor: float = 1e-4
    v_floor_rel: float = 0.1
    lam_amp: float = 1e-5
    form: str = "residual"
    input_scale: str = "whiten"
    bases: tuple = BASES
    size_free: bool = False
    n_radial: int = 24
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> "UNetConfig":
        """The config of a stored dict (a model JSON's ``config``, a checkpoint's ``model_config``);
        reads files written before ``base_channels`` was called ``width``."""
        d = dict(d)
        if "width" in d:
            d.setdefault("base_channels", d.pop("width"))
        return cls(**d)

    def __post_init__(self):
        self.mult = tuple(int(m) for m in self.mult)
        self.bases = tuple(self.bases)
        for b in self.bases:
            get_basis(b)  # raises naming the registered bases
        if len(set(self.bases)) != len(self.bases) or not self.bases:
            raise ValueError(f"bases must be distinct registered names, got {self.bases!r}.")
        if self.emb_dim <= 0:
            self.emb_dim = 4 * self.base_channels
        f = 2 ** (len(self.mult) - 1)
        if self.form not in ("residual", "inner"):
            raise ValueError(f"form must be 'residual' or 'inner', got {self.form!r}.")
        if self.input_scale not in ("whiten", "wiener"):
            raise ValueError(f"input_scale must be 'whiten' or 'wiener', got {self.input_scale!r}.")
        if self.height % f or self.width_px % f:
            raise ValueError(
                f"image size ({self.height}, {self.width_px}) must be divisible by 2**depth = {f} "
                f"(depth = len(mult) - 1 = {len(self.mult) - 1})."
            )

    @property
    def depth(self) -> int:
        return len(self.mult) - 1


def _groups(ch: int) -> int:
    for g in (8, 4, 2, 1):
        if ch % g == 0:
            return g
    return 1


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(Fn.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(Fn.silu(h))
        return (self.skip(x) + h) / math.sqrt(2)


class _Attention(nn.Module):
    def __init__(self, ch: int, heads: int = 1):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(ch), ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.heads = heads

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3 * self.heads, c // self.heads, h * w).chunk(3, dim=1)
        att = torch.softmax(torch.einsum("bnci,bncj->bnij", q, k) / math.sqrt(c // self.heads), dim=-1)
        out = torch.einsum("bnij,bncj->bnci", att, v).reshape(b, c, h, w)
        return (x + self.proj(out)) / math.sqrt(2)


class _UNet(nn.Module):
    """Image-to-image UNet with an additive (scale/shift) conditioning embedding."""

    def __init__(self, cin: int, cout: int, cfg: UNetConfig):
        super().__init__()
        chs = [cfg.base_channels * m for m in cfg.mult]
        e = cfg.emb_dim
        self.inp = nn.Conv2d(cin, chs[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips = [chs[0]]
        ch = chs[0]
        for lvl, c in enumerate(chs):
            blocks = nn.ModuleList()
            for _ in range(cfg.num_res):
                blocks.append(_ResBlock(ch, c, e))
                ch = c
                skips.append(ch)
            self.down.append(blocks)
            if lvl < len(chs) - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
        self.mid1 = _ResBlock(ch, ch, e)
        self.attn = _Attention(ch) if cfg.attention else None
        self.mid2 = _ResBlock(ch, ch, e)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for lvl in reversed(range(len(chs))):
            blocks = nn.ModuleList()
            for _ in range(cfg.num_res + 1):
                blocks.append(_ResBlock(ch + skips.pop(), chs[lvl], e))
                ch = chs[lvl]
            self.up.append(blocks)
            if lvl > 0:
                self.upsample.append(nn.Conv2d(ch, ch, 3, padding=1))
        self.out_norm = nn.GroupNorm(_groups(ch), ch)
        self.out = nn.Conv2d(ch, cout, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x, emb):
        h = self.inp(x)
        hs = [h]
        for lvl, blocks in enumerate(self.down):
            for blk in blocks:
                h = blk(h, emb)
                hs.append(h)
            if lvl < len(self.downsample):
                h = self.downsample[lvl](h)
                hs.append(h)
        h = self.mid1(h, emb)
        if self.attn is not None:
            h = self.attn(h)
        h = self.mid2(h, emb)
        for i, blocks in enumerate(self.up):
            for blk in blocks:
                h = blk(torch.cat([h, hs.pop()], dim=1), emb)
            if i < len(self.upsample):
                h = self.upsample[i](Fn.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(Fn.silu(self.out_norm(h)))


class EnergyUNet(EnergyModel):
    r"""Learned normalized energy :math:`U(y, \Sigma)` (see the module docstring for the form).

    Conditioning on the covariance: in the pixel basis the normalized log-variance map is an
    extra input channel (per image channel); for both bases a global embedding (an MLP of
    summary statistics of the log-variances: per-channel mean, standard deviation, soft
    minimum and maximum, averages over rings of frequency radius and over a coarse spatial
    grid, and a basis flag) modulates every residual block like a diffusion time embedding.
    GroupNorm (never BatchNorm, so per-sample gradients never mix across a batch) and SiLU
    activations (smooth, so the double backpropagation of training is well behaved).

    Image sizes must be divisible by ``2**depth`` (``depth = len(mult) - 1``; 28x28 works
    with depth 2). Per-channel log-variances, any number of channels. A model built with
    ``size_free=True`` takes any size divisible by ``2**depth`` (see :class:`UNetConfig`); the
    others take their one size.

    :param UNetConfig | None config: architecture (keyword arguments override/define it).
    :param torch.Tensor | None mean: data mean image (C, H, W); zeros by default.
    :param dict | None var: data variances per basis, ``{"pixel": (C,H,W), "hartley": (C,H,W)}``
        (one entry per name of ``config.bases``); ones by default. A ``size_free`` model takes its
        statistics from :meth:`set_data_statistics` only.

    :Examples:

    >>> import torch
    >>> from deepinv_energy import Covariance
    >>> from deepinv_energy.models.unet import EnergyUNet
    >>> model = EnergyUNet(channels=1, height=8, width_px=8, base_channels=8, mult=(1, 2))
    >>> y = torch.rand(2, 1, 8, 8)
    >>> cov = Covariance.isotropic(0.1, y)
    >>> model.energy(y, cov).shape
    torch.Size([2])
    """

    def __init__(self, config: UNetConfig | None = None, mean=None, var=None, **kwargs):
        super().__init__()
        if config is None:
            config = UNetConfig(**kwargs)
        elif kwargs:
            config = UNetConfig(**{**asdict(config), **kwargs})
        self.config = config
        C, H, W = config.channels, config.height, config.width_px
        nb = len(config.bases)
        if config.size_free:
            if var is not None or mean is not None:
                raise ValueError("a size_free model takes its data statistics from set_data_statistics(images).")
            self.register_buffer("mean", torch.zeros(C, 1, 1))
            #: knots (log radial frequency, cycles per pixel) and log Hartley variances (C, n) there
            knots = torch.linspace(math.log(0.5 / max(H, W)), math.log(math.sqrt(0.5)), config.n_radial)
            self.register_buffer("log_freq", knots)
            self.register_buffer("log_psd", torch.zeros(C, config.n_radial))
        else:
            self.register_buffer("mean", torch.zeros(C, H, W) if mean is None else mean.detach().float().clone())
            for b in config.bases:
                v = torch.ones(C, H, W) if var is None else var[b].detach().float()
                self.register_buffer(f"log_v_{b}", torch.log(self._floor(v)))
        #: normalization constants kappa, one per basis (index as in config.bases); per pixel for
        #: a size_free model, per image otherwise
        self.register_buffer("log_norm", torch.zeros(nb))
        self._basis_index = {b: i for i, b in enumerate(config.bases)}
        self._log_lam_amp = math.log(config.lam_amp) if config.lam_amp > 0 else -math.inf
        self._lv_center = 0.5 * (math.log(config.lam_min) + math.log(config.lam_max))
        self._lv_scale = 0.5 * (math.log(config.lam_max) - math.log(config.lam_min))
        self._rings_cache = {}
        n_feat = C * (4 + config.n_rings + config.pool**2) + nb
        e = config.emb_dim
        self.emb = nn.Sequential(nn.Linear(n_feat, e), nn.SiLU(), nn.Linear(e, e), nn.SiLU())
        self.net = _UNet(2 * C, C, config)
        self.b_head = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, 1))
        nn.init.zeros_(self.b_head[-1].weight)
        nn.init.zeros_(self.b_head[-1].bias)

    # ------------------------------------------------------------------ helpers
    def _floor(self, v: torch.Tensor) -> torch.Tensor:
        rel = self.config.v_floor_rel * v.mean(dim=(-2, -1), keepdim=True)
        return torch.maximum(v, rel).clamp_min(self.config.v_floor)

    def _rings(self, H: int, W: int, like: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():  # never cache a tensor made while tracing
            return _ring_masks(H, W, self.config.n_rings, like.dtype, like.device)
        key = (H, W, like.dtype, like.device)
        if key not in self._rings_cache:
            self._rings_cache[key] = _ring_masks(H, W, self.config.n_rings, like.dtype, like.device)
        return self._rings_cache[key]

    @property
    def image_shape(self) -> tuple | None:
        """(C, H, W) of the images this model takes; ``None`` for a ``size_free`` model (any size
        that :meth:`accepts_shape` accepts)."""
        cfg = self.config
        return None if cfg.size_free else (cfg.channels, cfg.height, cfg.width_px)

    def accepts_shape(self, shape) -> None:
        """Raise a clear ``ValueError`` unless the model takes images of shape ``shape`` (C, H, W)."""
        cfg = self.config
        shape = tuple(shape)
        if not cfg.size_free:
            if shape != (cfg.channels, cfg.height, cfg.width_px):
                raise ValueError(f"y must have shape (B, {cfg.channels}, {cfg.height}, {cfg.width_px}) for this "
                                 f"model, got (B, {', '.join(map(str, shape))}).")
            return
        f = 2**cfg.depth
        if len(shape) != 3 or shape[0] != cfg.channels or shape[1] % f or shape[2] % f or min(shape[1:]) < f:
            raise ValueError(f"this size-free model takes images (B, {cfg.channels}, H, W) with H and W positive "
                             f"multiples of 2**depth = {f}, got (B, {', '.join(map(str, shape))}); crop or pad the image.")

    def _spectrum(self, H: int, W: int) -> torch.Tensor:
        """(C, H, W) data variances of the Hartley coefficients of a ``size_free`` model at size (H, W):
        the radial spectrum interpolated linearly in log-log, constant beyond its knots."""
        lf = self.log_freq.double()
        lr = torch.log(_radial_frequency(H, W, device=lf.device)).clamp(float(lf[0]), float(lf[-1]))
        i0 = (torch.searchsorted(lf, lr.reshape(-1), right=True) - 1).clamp(0, lf.numel() - 2).reshape(lr.shape)
        t = ((lr - lf[i0]) / (lf[i0 + 1] - lf[i0])).clamp(0, 1)
        lp = self.log_psd.double()
        return torch.exp(lp[:, i0] * (1 - t) + lp[:, i0 + 1] * t)

    def data_log_var(self, basis: str, size: tuple | None = None) -> torch.Tensor:
        """Log of the data variances :math:`v` in ``basis``, shape (C, H, W) (``size`` = (H, W): the
        image size, needed by a ``size_free`` model, ignored otherwise)."""
        if basis not in self._basis_index:
            raise ValueError(f"this model is conditioned on the bases {self.config.bases}, got {basis!r}.")
        if not self.config.size_free:
            return getattr(self, f"log_v_{basis}")
        if size is None:
            raise ValueError("a size_free model needs the image size (H, W) for its data variances.")
        v = get_basis(basis).stationary_variance(self._spectrum(*size))
        return torch.log(self._floor(v.clamp_min(0))).to(self.log_psd.dtype)

    def data_mean(self, size: tuple) -> torch.Tensor:
        r"""The data mean image :math:`\mu`, shape (C, H, W) at image size ``size`` = (H, W)."""
        return self.mean.expand(self.mean.shape[0], *size)

    def set_normalization(self, basis: str, constant: float, dim: int) -> None:
        r"""Store the normalization constant :math:`\kappa` of ``basis``, measured as a mean per image
        of ``dim`` = C*H*W values (per pixel for a ``size_free`` model)."""
        self.log_norm[self._basis_index[basis]] = constant / dim if self.config.size_free else constant

    def _features(self, u: torch.Tensor, basis: str) -> torch.Tensor:
        B = u.shape[0]
        k = 4.0
        flat = u.flatten(2)
        n = flat.shape[-1]
        lse = lambda t: (torch.logsumexp(k * t, dim=-1) - math.log(n)) / k  # noqa: E731
        stats = [flat.mean(-1), torch.sqrt(flat.var(-1, unbiased=False) + 1e-3), -lse(-flat), lse(flat)]
        rings = torch.einsum("bchw,rhw->bcr", u, self._rings(*u.shape[-2:], u))
        pooled = Fn.adaptive_avg_pool2d(u, self.config.pool).flatten(2)
        onehot = torch.zeros(B, len(self.config.bases), dtype=u.dtype, device=u.device)
        onehot[:, self._basis_index[basis]] = 1.0
        return torch.cat([torch.stack(stats, -1).flatten(1), rings.flatten(1), pooled.flatten(1), onehot], 1)

    def _check(self, y: torch.Tensor, cov: Covariance):
        check_image(y)
        self.accepts_shape(y.shape[1:])
        if cov.shape != y.shape:
            raise ValueError(f"cov has shape {tuple(cov.shape)}, expected the shape of y {tuple(y.shape)}.")

    # ------------------------------------------------------------------ energy
    def _network(self, y: torch.Tensor, cov: Covariance):
        """Coefficients ``c``, log-variances (data ``log_v``, noise ``lv``, ``log_s = log(v+lam)``),
        the network output in the basis ``fb`` and the conditioning embedding."""
        self._check(y, cov)
        y, cov = y.to(self.mean.dtype), cov.to(self.mean.dtype)  # float64/float16 inputs: the model's dtype
        return self._core(cov.to_basis(y - self.mean.to(y.dtype)), cov.basis, cov.log_var)  # mean broadcasts

    def _core(self, c: torch.Tensor, basis: str, lv: torch.Tensor):
        r""":meth:`_network` from the centred coefficients ``c`` = :math:`V^\top (y - \mu)` (unchecked)."""
        dt = c.dtype
        lv = lv.to(dt)
        log_v = self.data_log_var(basis, c.shape[-2:]).to(dt)
        log_s = torch.logaddexp(log_v, lv)  # log(v + lam), no cancellation
        # conditioning (clamped a little beyond the training range; smooth inside it)
        u = (lv - self._lv_center) / self._lv_scale
        u = u.clamp(-1.5, 1.5)
        emb = self.emb(self._features(u, basis))
        c_in = torch.exp(-0.5 * log_s) if self.config.input_scale == "whiten" else torch.exp(0.5 * log_v - log_s)
        V = get_basis(basis)
        x_in = V.inverse(c * c_in)
        lv_map = u if V.spatial else torch.zeros_like(u)  # a log-variance map is an image only in a spatial basis
        fb = V.forward(self.net(torch.cat([x_in, lv_map], dim=1), emb))
        return c, log_v, lv, log_s, fb, emb

    def energy_terms(self, y: torch.Tensor, cov: Covariance):
        r"""The terms of the energy, each (B,): ``(gauss, net, b, kappa)``.

        ``energy = gauss + net + b - kappa``; ``gauss`` is the diagonal-Gaussian energy.
        """
        return self._terms(*self._network(y, cov), cov.basis, y.dtype)

    def _terms(self, c, log_v, lv, log_s, fb, emb, basis: str, out_dtype):
        gauss = 0.5 * (c**2 * torch.exp(-log_s)).sum((1, 2, 3)) + 0.5 * (log_s + math.log(2 * math.pi)).sum((1, 2, 3))
        if self.config.form == "inner":
            a = torch.exp(0.5 * (log_v - torch.logaddexp(lv, lv.new_tensor(self._log_lam_amp)) - log_s))
            net = -0.5 * (c * a * fb).sum((1, 2, 3))
        else:  # residual: 1/2 sum q^2 - sum rho0 q
            q = torch.exp(0.5 * (log_v - log_s)) * fb
            rho0 = c * torch.exp(0.5 * lv - log_s)
            net = (0.5 * q**2 - rho0 * q).sum((1, 2, 3))
        d = c[0].numel()
        b = d * self.b_head(emb).squeeze(-1)
        kappa = self.log_norm[self._basis_index[basis]].to(c.dtype) * (d if self.config.size_free else 1)
        kappa = kappa.expand(c.shape[0])
        return tuple(t.to(out_dtype) for t in (gauss, net, b, kappa))  # back to the input's dtype

    def direct_denoise(self, y: torch.Tensor, cov: Covariance) -> torch.Tensor:
        r"""The network read as an EDM-preconditioned denoiser, without differentiating the energy:

        .. math::

            D(y) = \mu + V\big(c_\text{skip}\, c + c_\text{out} \hat F\big), \qquad
            c_\text{skip} = \frac{v}{v+\lambda},\; c_\text{out} = \sqrt{\frac{v\lambda}{v+\lambda}}.

        This is the denoiser of a model trained with ``TrainConfig(objective="denoiser")`` (a
        plain denoiser of the same backbone, the baseline of the benchmarks). For an energy-trained
        model it is NOT the Tweedie denoiser (use :meth:`denoise`).
        """
        c, log_v, lv, log_s, fb, _ = self._network(y, cov)
        d = torch.exp(log_v - log_s) * c + torch.exp(0.5 * (log_v + lv - log_s)) * fb
        return (self.mean + cov.to(self.mean.dtype).from_basis(d)).to(y.dtype)  # mean broadcasts

    def coefficient_energy_and_grads(self, c: torch.Tensor, basis: str, log_var: torch.Tensor):
        r"""The samplers' entry point, in coefficients (see :meth:`EnergyModel.coefficient_energy_and_grads`):
        the network takes its input from and returns its output to the basis, so the energy is a
        function of :math:`c = V^\top y` directly and autograd gives :math:`V^\top g` without
        going through the image (no validation, no image-space round trip)."""
        dt = self.mean.dtype
        with torch.enable_grad():
            c_in = c.detach().to(dt).requires_grad_(True)
            lv = log_var.detach().to(dt).requires_grad_(True)
            mean_c = get_basis(basis).forward(self.data_mean(c.shape[-2:]).to(dt)[None])
            terms = self._terms(*self._core(c_in - mean_c, basis, lv), basis, dt)
            u = terms[0] + terms[1] + terms[2] - terms[3]
            gc, h = torch.autograd.grad(u.sum(), [c_in, lv])
        return u.detach().to(c.dtype), gc.to(c.dtype), h.to(c.dtype)

    def energy(self, y: torch.Tensor, cov: Covariance) -> torch.Tensor:
        r"""Energy :math:`U(y, \Sigma)` in nats, shape (B,), dtype of ``y``."""
        gauss, net, b, kappa = self.energy_terms(y, cov)
        return gauss + net + b - kappa

    def gaussian_energy(self, y: torch.Tensor, cov: Covariance) -> torch.Tensor:
        """Energy of the diagonal Gaussian fitted to the data (the model with F = 0, b = 0)."""
        return self.energy_terms(y, cov)[0]

    # ------------------------------------------------------------------ data statistics
    @torch.no_grad()
    def set_data_statistics(self, images: torch.Tensor, batch: int = 4096) -> None:
        r"""Set :math:`\mu` and the data variances :math:`v` from clean images (N, C, H, W).

        Per coefficient and per basis of ``config.bases`` for a fixed-size model. For a
        ``size_free`` model: the mean per channel and the radial power spectrum (the variances of
        the Hartley coefficients of the centred images, averaged over the rings of the knots of
        ``log_freq``; knots without a coefficient at this size are interpolated in log-log).
        """
        n = images.shape[0]
        C = images.shape[1]
        if self.config.size_free:
            mean = images.double().mean(dim=(0, 2, 3)).reshape(C, 1, 1)
            H, W = images.shape[-2:]
            p = torch.zeros(C, H, W, dtype=torch.float64)
            for i in range(0, n, batch):
                p += (hartley(images[i : i + batch].double() - mean) ** 2).sum(0)
            p /= n
            lf = self.log_freq.double()
            lr = torch.log(_radial_frequency(H, W)).clamp(float(lf[0]), float(lf[-1]))
            k = torch.round((lr - lf[0]) / (lf[1] - lf[0])).long().reshape(-1)  # nearest knot
            sums = torch.zeros(C, lf.numel(), dtype=torch.float64).index_add_(1, k, p.reshape(C, -1))
            cnt = torch.zeros(lf.numel(), dtype=torch.float64).index_add_(0, k, torch.ones_like(k, dtype=torch.float64))
            have = cnt > 0
            lp = torch.log(sums[:, have] / cnt[have])
            xs = lf[have]
            out = torch.empty(C, lf.numel(), dtype=torch.float64)
            for c in range(C):  # log-log interpolation between filled knots, constant beyond them
                out[c] = torch.from_numpy(np.interp(lf.numpy(), xs.numpy(), lp[c].numpy()))
            self.mean.copy_(mean.float())
            self.log_psd.copy_(out.float())
            return
        mean = torch.zeros_like(self.mean, dtype=torch.float64)
        for i in range(0, n, batch):
            mean += images[i : i + batch].double().sum(0)
        mean /= n
        acc = {b: torch.zeros_like(mean) for b in self.config.bases}
        for i in range(0, n, batch):
            xc = images[i : i + batch].double() - mean
            for b in self.config.bases:
                acc[b] += (get_basis(b).forward(xc) ** 2).sum(0)
        self.mean.copy_(mean.float())
        for b in self.config.bases:
            getattr(self, f"log_v_{b}").copy_(torch.log(self._floor(acc[b] / n)).float())

    # ------------------------------------------------------------------ persistence
    def config_dict(self) -> dict:
        d = asdict(self.config)
        d["mult"] = list(d["mult"])
        d["bases"] = list(d["bases"])
        return d

    def save_pretrained(self, directory: str, name: str = "model", metadata: dict | None = None) -> tuple:
        """Write ``{name}.safetensors`` (weights and buffers) and ``{name}.json`` (config).

        :return: the two paths.
        """
        from safetensors.torch import save_file

        os.makedirs(directory, exist_ok=True)
        wpath = os.path.join(directory, f"{name}.safetensors")
        cpath = os.path.join(directory, f"{name}.json")
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, wpath + ".tmp")
        os.chmod(wpath + ".tmp", 0o644)
        os.replace(wpath + ".tmp", wpath)
        cfg = {
            "class": "EnergyUNet",
            "config": self.config_dict(),
            "normalization": {b: float(self.log_norm[i]) for i, b in enumerate(self.config.bases)},
            "metadata": metadata or {},
        }
        cfg["sha256"] = checksums(wpath, cfg)
        with open(cpath + ".tmp", "w") as fh:
            json.dump(cfg, fh, indent=2)
        os.replace(cpath + ".tmp", cpath)
        return wpath, cpath

    @classmethod
    def from_pretrained(cls, name_or_path: str, map_location: str | torch.device = "cpu") -> "EnergyUNet":
        """Load a bundled model by name (see :func:`deepinv_energy.models.pretrained.list_pretrained`)
        or from a ``.safetensors``/``.json`` pair (path to either file, or a directory holding
        exactly one pair). Weights are read with safetensors (no pickle).

        The JSON records the sha256 of the weights file and of its own ``class``/``config``/
        ``normalization`` entries (written by :meth:`save_pretrained`); both are verified, so a
        corrupted or edited file is refused. A JSON without checksums (written before they existed)
        loads with a warning.

        :raises FileNotFoundError: if nothing matches ``name_or_path``.
        :raises ValueError: naming the file, for a corrupted, truncated, edited or mismatched file.
        """
        from safetensors.torch import load_file

        from .pretrained import resolve_pretrained

        wpath, cpath = resolve_pretrained(name_or_path)
        try:
            with open(cpath) as fh:
                cfg = json.load(fh)
            if not isinstance(cfg, dict) or not isinstance(cfg.get("config"), dict):
                raise ValueError("no 'config' entry (is it a model config written by save_pretrained?)")
            config = UNetConfig.from_dict(cfg["config"])
        except (ValueError, TypeError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
            raise ValueError(f"cannot read model config {cpath!r}: {err}") from None
        expected = cfg.get("sha256")
        if expected is None:
            warnings.warn(f"{cpath!r} records no sha256 checksums, so the weights cannot be verified; "
                          "re-save the model with save_pretrained to add them.", stacklevel=2)
        else:
            actual = checksums(wpath, cfg)
            recorded = expected if isinstance(expected, dict) else {}
            for key, path in (("config", cpath), ("weights", wpath)):
                if recorded.get(key) != actual[key]:
                    raise ValueError(
                        f"checksum mismatch: {path!r} is not the {key} {cpath!r} was saved with (sha256 "
                        f"{actual[key][:12]}..., recorded {str(recorded.get(key))[:12]}...): corrupted or edited."
                    )
        model = cls(config)
        try:
            state = load_file(wpath, device="cpu")
            model.load_state_dict(state)
        except Exception as err:  # safetensors' errors (truncated header...) and key/shape mismatches
            raise ValueError(f"cannot load weights {wpath!r} with config {cpath!r}: {err}") from None
        model.eval()
        return model.to(map_location)


def checksums(weights_path: str, cfg: dict) -> dict:
    """sha256 of a weights file and of the entries of its JSON config that define the model
    (``class``, ``config``, ``normalization``; not ``metadata`` nor the checksums themselves)."""
    h = hashlib.sha256()
    with open(weights_path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    core = {k: cfg.get(k) for k in ("class", "config", "normalization")}
    return {"weights": h.hexdigest(),
            "config": hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()}
