r"""deepinv physics as anisotropic denoising problems.

A linear inverse problem :math:`y = A x + \sigma n` whose operator is diagonal in one of our
bases (:math:`A = U_A \operatorname{diag}(s) V^\top`) is the denoising problem

.. math::

    \tilde x = x + \tilde n, \qquad \tilde n \sim \mathcal{N}\big(0,\, V \operatorname{diag}(\lambda) V^\top\big),
    \qquad \lambda_i = \sigma^2 / s_i^2

on the observed coefficients (:math:`\lambda_i < \lambda_{\max}`); the others are unobserved:
they get the variance :math:`\lambda_{\max}` and a fill value. The evidence of the measurement
follows from the energy of :math:`\tilde x` by a change of variables:

.. math::

    \log p(y) \approx -U(\tilde x, \Sigma) + \tfrac{k}{2}\log(2\pi\lambda_{\max})
    - \sum_{i\ \mathrm{obs}} \log s_i + \sum_{j\ \mathrm{pure\ noise}} \log\mathcal{N}\big((U_A^\top y)_j; 0, \sigma^2\big),

with :math:`k` the number of unobserved coefficients. The only approximation is the finite
:math:`\lambda_{\max}`: for masks and decimation the error lies in
:math:`[-\mathbb{E}[\|\tilde x_u - x_u\|^2 \mid y] / (2\lambda_{\max}),\, 0]` (``u``: unobserved
coefficients). For a blur, treating a frequency :math:`u` whose spectrum is small but not zero
(:math:`\sigma^2/|K_u|^2 > \lambda_{\max}`) as pure noise neglects the first-order term
:math:`-\sum_u \big(y_u K_u \mathbb{E}[x_u \mid y] - K_u^2 \mathbb{E}[x_u^2 \mid y]/2\big)/\sigma^2`,
which shrinks only like :math:`\lambda_{\max}^{-1/2}` and has either sign (measured on mixtures:
1e-2 nats for a width grid at :math:`\lambda_{\max} = 10^3`). ``lam_weak`` removes it: such
frequencies are kept as observed with their true variance :math:`\sigma^2/|K_u|^2` up to
``lam_weak`` (the evidence path of :class:`~deepinv_energy.BlindEstimator` uses
``lam_weak = 1e6``); only frequencies beyond it keep the first-order error (measured on a 6x6
mixture, where every nonzero frequency is within 1e6: 5e-12 nats instead of 3e-2).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from deepinv.physics import Blur, BlurFFT, Denoising, Downsampling, Inpainting, Upsampling
from deepinv.physics.functional import filter_fft
from deepinv.physics.noise import GaussianNoise, ZeroNoise

from ._checks import check_variance_range
from .covariance import LAM_MAX, LAM_MIN, Covariance, check_image, hartley

__all__ = [
    "DenoisingProblem",
    "UnsupportedPhysicsError",
    "to_denoising_problem",
    "check_supported",
    "noise_std",
    "physics_matrix",
    "blur_transfer",
    "blur_spectrum",
    "blur_variances",
    "simulate",
    "SUPPORTED_PHYSICS",
    "LAM_MIN",
    "LAM_MAX",
]

# LAM_MIN (variance floor of noise-free coefficients) and LAM_MAX (variance of unobserved ones):
# the package's one variance range, defined in covariance.py and re-exported here.

SUPPORTED_PHYSICS = (
    "deepinv.physics.Denoising",
    "deepinv.physics.Inpainting",
    "deepinv.physics.BlurFFT",
    "deepinv.physics.Blur(padding='circular')",
    "deepinv.physics.Downsampling(filter=None)",
)

LOG_2PI = math.log(2 * math.pi)


class UnsupportedPhysicsError(TypeError):
    """A physics that cannot be written as anisotropic denoising in our bases.

    :Examples:

    >>> import torch, deepinv as dinv
    >>> from deepinv_energy import UnsupportedPhysicsError, to_denoising_problem
    >>> physics = dinv.physics.Blur(filter=torch.ones(1, 1, 3, 3) / 9, padding="valid")
    >>> try:
    ...     to_denoising_problem(torch.zeros(1, 1, 8, 8), physics)
    ... except UnsupportedPhysicsError as err:
    ...     print(str(err)[:60])
    physics Blur (padding='valid'; only padding='circular') is n
    """

    def __init__(self, physics, reason: str = ""):
        name = type(physics).__name__
        msg = f"physics {name}{' (' + reason + ')' if reason else ''} is not supported; supported: " + ", ".join(
            SUPPORTED_PHYSICS
        )
        super().__init__(msg)


@dataclass
class DenoisingProblem:
    r"""A linear inverse problem rewritten as anisotropic Gaussian denoising.

    :param torch.Tensor x_tilde: (B, C, H, W) pseudo-inverse image, :math:`\tilde x = x + \tilde n`
        on observed coefficients, fill value elsewhere.
    :param Covariance cov: noise covariance of :math:`\tilde x`.
    :param torch.Tensor observed: (B, C, H, W) bool, observed coefficients in ``cov.basis``.
    :param torch.Tensor sigma: (B,) measurement noise standard deviation.
    :param torch.Tensor log_det_jacobian: (B,) float64, :math:`\log|\det|` of the map
        :math:`y \mapsto \tilde x` on the observed coefficients.
    :param torch.Tensor noise_log_density: (B,) float64, log-density of the measurement
        coefficients that carry no signal (pure noise).
    :param float lam_min: variance floor used.
    :param float lam_max: variance of unobserved coefficients.

    :Examples:

    >>> import torch, deepinv as dinv
    >>> from deepinv_energy import GaussianEnergy, to_denoising_problem
    >>> model = GaussianEnergy(torch.zeros(1, 1, 2, 2), torch.eye(4))
    >>> physics = dinv.physics.Denoising(dinv.physics.GaussianNoise(1.0))
    >>> problem = to_denoising_problem(torch.zeros(1, 1, 2, 2), physics)
    >>> round(float(problem.log_evidence(model)), 4)  # log N(0; 0, 2 I_4) = -2 log(4 pi)
    -5.062
    """

    x_tilde: torch.Tensor
    cov: Covariance
    observed: torch.Tensor
    sigma: torch.Tensor
    log_det_jacobian: torch.Tensor
    noise_log_density: torch.Tensor
    lam_min: float
    lam_max: float

    @property
    def n_unobserved(self) -> torch.Tensor:
        """(B,) number of unobserved coefficients."""
        return (~self.observed).flatten(1).sum(1)

    def evidence_offset(self) -> torch.Tensor:
        r"""(B,) float64: :math:`\log p(y) + U(\tilde x, \Sigma)`, the energy-independent terms."""
        k = self.n_unobserved.double()
        return 0.5 * k * math.log(2 * math.pi * self.lam_max) + self.log_det_jacobian + self.noise_log_density

    def log_evidence(self, model) -> torch.Tensor:
        r"""(B,) float64 log-evidence :math:`\log p(y)` of the measurement under an energy model."""
        return -model.energy(self.x_tilde, self.cov).double() + self.evidence_offset()


def noise_std(physics, batch_size: int, dtype=torch.float32, device="cpu") -> torch.Tensor:
    r"""(B,) standard deviation of a physics' Gaussian noise (zeros for :class:`ZeroNoise`).

    :raises ValueError: if the noise model is not Gaussian.
    """
    nm = getattr(physics, "noise_model", None)
    if nm is None or isinstance(nm, ZeroNoise):
        return torch.zeros(batch_size, dtype=dtype, device=device)
    if not isinstance(nm, GaussianNoise):
        raise ValueError(
            f"physics.noise_model must be deepinv.physics.GaussianNoise or ZeroNoise, got {type(nm).__name__}."
        )
    sigma = torch.as_tensor(nm.sigma).to(dtype=dtype, device=device).reshape(-1)
    if sigma.numel() == 1:
        sigma = sigma.expand(batch_size)
    if sigma.shape != (batch_size,):
        raise ValueError(
            f"physics.noise_model.sigma has {sigma.numel()} values for a batch of {batch_size} measurements."
        )
    if not torch.isfinite(sigma).all() or (sigma < 0).any():
        raise ValueError("physics.noise_model.sigma must be finite and non-negative.")
    return sigma


def check_supported(physics) -> None:
    """Raise :class:`UnsupportedPhysicsError` unless ``physics`` is one of :data:`SUPPORTED_PHYSICS`.

    Checked before the measurement, so that a measurement of an unsupported physics (e.g. the
    (B, m) vector of ``CompressedSensing``) is reported as such and not as a mis-shaped image.
    """
    if isinstance(physics, (Denoising, Inpainting, BlurFFT)):
        return
    if isinstance(physics, Downsampling) and not isinstance(physics, Upsampling):
        if physics.filter is not None:
            raise UnsupportedPhysicsError(physics, "with a filter; only pure decimation, filter=None")
        return
    if isinstance(physics, Blur):
        if getattr(physics, "padding", None) == "circular":
            return
        raise UnsupportedPhysicsError(physics, f"padding={physics.padding!r}; only padding='circular'")
    raise UnsupportedPhysicsError(physics)


def _per_image(v: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, 1, 1, 1)


def to_denoising_problem(
    y: torch.Tensor,
    physics,
    lam_min: float = LAM_MIN,
    lam_max: float = LAM_MAX,
    fill: float = 0.0,
    lam_weak: float | None = None,
) -> DenoisingProblem:
    r"""Rewrite a measurement of a deepinv physics as anisotropic denoising.

    ===========================================  =========  =====================================  =====================================
    physics                                      basis      :math:`\tilde x`                       :math:`\lambda`
    ===========================================  =========  =====================================  =====================================
    ``Denoising``                                pixel      :math:`y`                              :math:`\sigma^2`
    ``Inpainting`` (binary mask)                 pixel      :math:`y` where observed, fill else    :math:`\sigma^2`, :math:`\lambda_{\max}` off the mask
    ``BlurFFT``, ``Blur(padding="circular")``    hartley    :math:`F^{-1}[\bar K F y / |K|^2]`     :math:`\sigma^2/|K|^2`, :math:`\lambda_{\max}` where larger
    ``Downsampling(filter=None)``                pixel      :math:`y` on the grid, fill else       :math:`\sigma^2`, :math:`\lambda_{\max}` off the grid
    ===========================================  =========  =====================================  =====================================

    Observed variances below ``lam_min`` are raised to it (noise-free measurements use
    ``lam_min`` silently; a positive noise variance below it gives a warning).

    :param torch.Tensor y: measurements, (B, C, H, W) (decimation: (B, C, H/f, W/f)).
    :param deepinv.physics.Physics physics: the forward model, with a ``GaussianNoise`` or
        ``ZeroNoise`` noise model; batched masks, kernels and noise levels are supported.
    :param float lam_min: variance floor of observed coefficients.
    :param float lam_max: variance of unobserved coefficients.
    :param float fill: value of unobserved pixels in :math:`\tilde x` (pixel basis).
    :param float lam_weak: (noisy blurs only) keep frequencies with
        :math:`\lambda_{\max} < \sigma^2/|K|^2 \le` ``lam_weak`` observed with that variance
        instead of treating them as pure noise (see the module docstring: exact evidences need it;
        the variances then exceed ``lam_max``). ``None`` (default): they are unobserved.
    :return: (:class:`DenoisingProblem`)
    :raises UnsupportedPhysicsError: for physics outside the table.
    :raises ValueError: for non-finite or mis-shaped ``y``, or a non-Gaussian noise model
        (unsupported physics are reported first, whatever ``y``).

    :Examples:

    >>> import torch, deepinv as dinv
    >>> from deepinv_energy import to_denoising_problem
    >>> mask = torch.ones(1, 1, 8, 8); mask[..., 2:6, 2:6] = 0
    >>> physics = dinv.physics.Inpainting((1, 8, 8), mask=mask,
    ...                                   noise_model=dinv.physics.GaussianNoise(0.1))
    >>> problem = to_denoising_problem(physics(torch.rand(2, 1, 8, 8)), physics)
    >>> problem.cov.basis, int(problem.n_unobserved[0])
    ('pixel', 16)
    """
    check_supported(physics)
    check_image(y)
    check_variance_range(lam_min, lam_max)
    if lam_weak is not None and not (lam_max <= lam_weak < math.inf):
        raise ValueError(f"lam_weak must be None or a finite number >= lam_max={lam_max}, got {lam_weak}.")
    b = y.shape[0]
    sigma = noise_std(physics, b, dtype=y.dtype, device=y.device)
    var = sigma**2
    if ((var > 0) & (var < lam_min)).any():
        warnings.warn(
            f"noise variance {float(var[var > 0].min()):.3g} is below lam_min={lam_min:g}; "
            "observed coefficients use lam_min.",
            stacklevel=2,
        )
    lam_obs = _per_image(var.clamp(min=lam_min))
    zeros64 = torch.zeros(b, dtype=torch.float64, device=y.device)

    if isinstance(physics, Denoising):
        observed = torch.ones_like(y, dtype=torch.bool)
        return DenoisingProblem(
            y, Covariance.isotropic(lam_obs.reshape(-1), y), observed, sigma, zeros64, zeros64, lam_min, lam_max
        )

    if isinstance(physics, Inpainting):
        if physics.mask is None:
            raise ValueError("physics.mask is None: set the inpainting mask before converting.")
        try:
            mask = torch.broadcast_to(physics.mask.to(y), y.shape)
        except RuntimeError:
            raise ValueError(
                f"y has shape {tuple(y.shape)}, which does not match physics.mask of shape {tuple(physics.mask.shape)}."
            ) from None
        if not ((mask == 0) | (mask == 1)).all():
            raise ValueError("physics.mask must be binary (0/1) to be written as denoising.")
        observed = mask.bool()
        return _pixel_problem(y, observed, lam_obs, sigma, lam_min, lam_max, fill)

    if isinstance(physics, Downsampling) and not isinstance(physics, Upsampling):
        if physics.filter is not None:
            raise UnsupportedPhysicsError(physics, "with a filter; only pure decimation, filter=None")
        f = int(physics.factor)
        if physics.imsize is None:
            raise ValueError("Downsampling needs img_size to place y back on the image grid.")
        c, h, w = physics.imsize[-3:]
        expected = (c, -(-h // f), -(-w // f))
        if tuple(y.shape[1:]) != expected:
            raise ValueError(f"y must have shape (B, {expected[0]}, {expected[1]}, {expected[2]}) for this decimation, got {tuple(y.shape)}.")
        full = y.new_full((b, c, h, w), float(fill))
        full[..., ::f, ::f] = y
        observed = torch.zeros((b, c, h, w), dtype=torch.bool, device=y.device)
        observed[..., ::f, ::f] = True
        return _pixel_problem(full, observed, lam_obs, sigma, lam_min, lam_max, fill)

    if isinstance(physics, BlurFFT) or (isinstance(physics, Blur) and getattr(physics, "padding", None) == "circular"):
        if isinstance(physics, BlurFFT) and tuple(y.shape[1:]) != tuple(physics.img_size[-3:]):
            raise ValueError(f"y has shape {tuple(y.shape)}, physics.img_size is {tuple(physics.img_size)}.")
        return _blur_problem(y, physics, sigma, lam_min, lam_max, lam_weak)

    if isinstance(physics, Blur):
        raise UnsupportedPhysicsError(physics, f"padding={physics.padding!r}; only padding='circular'")
    raise UnsupportedPhysicsError(physics)


def _pixel_problem(x_tilde, observed, lam_obs, sigma, lam_min, lam_max, fill):
    x_tilde = torch.where(observed, x_tilde, torch.full_like(x_tilde, float(fill)))
    log_var = torch.where(observed, torch.log(lam_obs), math.log(lam_max))
    zeros64 = torch.zeros(x_tilde.shape[0], dtype=torch.float64, device=x_tilde.device)
    # Inpainting and decimation measure no pure-noise coefficients (deepinv masks the noise).
    return DenoisingProblem(x_tilde, Covariance("pixel", log_var), observed, sigma, zeros64, zeros64, lam_min, lam_max)


def _symmetric_part(p: torch.Tensor) -> torch.Tensor:
    """Average a spectrum with its reflection w -> -w (exact symmetry of |K|^2 for real kernels)."""
    reflected = torch.roll(torch.flip(p, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))
    return 0.5 * (p + reflected)


def blur_variances(power: torch.Tensor, noise_var: torch.Tensor, lam_min: float, lam_max: float,
                   lam_weak: float | None = None) -> tuple:
    r"""Hartley-basis variances of a circular blur measurement,
    :math:`\lambda = \sigma^2 / |K|^2` on observed frequencies, :math:`\lambda_\max` elsewhere
    (the covariance of :func:`to_denoising_problem` for ``BlurFFT``).

    :param torch.Tensor power: :math:`|K|^2`, (B, C, H, W) (symmetrized here over
        :math:`\omega \to -\omega`, exact for real kernels).
    :param torch.Tensor noise_var: :math:`\sigma^2` broadcastable to ``power`` (e.g. (B, 1, 1, 1)).
    :param float lam_weak: see :func:`to_denoising_problem` (``None``: :math:`\lambda_\max`).
    :return: ``(lam, observed, power)``: variances, the observed frequencies (those with
        :math:`\sigma^2 / |K|^2` below the cap) and the symmetrized power.

    >>> import torch
    >>> power = torch.tensor([1.0, 0.25, 1e-9, 0.25]).view(1, 1, 1, 4)  # |K|^2 of a 1 x 4 blur
    >>> lam, obs, _ = blur_variances(power, torch.tensor(0.01), 1e-9, 1e3)
    >>> [round(v, 6) for v in lam.flatten().tolist()], obs.flatten().tolist()
    ([0.01, 0.04, 1000.0, 0.04], [True, True, False, True])
    """
    power = _symmetric_part(power)
    # largest variance of an observed frequency: lam_weak where there is noise (noise-free
    # measurements keep lam_max: their tiny-|K| frequencies would be rounding noise divided by |K|)
    cap = torch.where(noise_var > 0, float(lam_weak or lam_max), lam_max).to(power.dtype)
    observed = power * cap > noise_var.clamp(min=lam_min)
    safe = torch.where(observed, power, torch.ones_like(power))
    lam = torch.where(observed, torch.minimum((noise_var / safe).clamp(min=lam_min), cap), lam_max)
    return lam, observed, power


def _blur_problem(y, physics, sigma, lam_min, lam_max, lam_weak=None):
    k = blur_transfer(physics, y)
    if not torch.isfinite(k).all():
        raise ValueError("the blur kernel (physics.filter) contains NaN or inf.")
    noise_var = _per_image(sigma**2)
    lam, observed, power = blur_variances(k.abs() ** 2, noise_var, lam_min, lam_max, lam_weak)
    safe = torch.where(observed, power, torch.ones_like(power))
    x_hat = torch.fft.fft2(y) * torch.where(observed, k.conj() / safe, 0)
    x_tilde = torch.fft.ifft2(x_hat).real
    log_det = -0.5 * torch.where(observed, torch.log(safe), 0).double().flatten(1).sum(1)
    # Hartley coefficients of y on unobserved frequencies carry pure noise N(0, sigma^2).
    hy = hartley(y).double()
    s2 = noise_var.double()
    noisy = (s2 > 0).expand_as(hy) & ~observed
    lp = -0.5 * (LOG_2PI + torch.log(s2.clamp(min=1e-300)) + hy**2 / s2.clamp(min=1e-300))
    noise_ld = torch.where(noisy, lp, 0).flatten(1).sum(1)
    return DenoisingProblem(
        x_tilde, Covariance("hartley", torch.log(lam)), observed, sigma, log_det, noise_ld, lam_min, lam_max
    )


# ---------------------------------------------------------------------------------------- operators
def physics_matrix(physics, image_shape, batch_size, dtype=torch.float64, device="cpu"):
    r"""Dense matrix of a linear deepinv physics' noiseless operator ``physics.A``.

    One column per input pixel, computed by applying ``A`` to the canonical basis images;
    batched physics (a mask or kernel per element) give one matrix per element.

    :return: (torch.Tensor) (B, m, d).
    """
    d = math.prod(image_shape)
    cols = []
    for j in range(d):
        e = torch.zeros(batch_size, d, dtype=dtype, device=device)
        e[:, j] = 1
        cols.append(physics.A(e.reshape(batch_size, *image_shape)).reshape(batch_size, -1))
    return torch.stack(cols, dim=-1)


def blur_transfer(physics, like: torch.Tensor) -> torch.Tensor:
    r"""Transfer function :math:`K = \mathcal{F}(A\delta)` of a circular blur physics, (B, C, H, W) complex.

    The (unnormalized) 2-D DFT of the response to a unit impulse at pixel (0, 0), i.e. the
    eigenvalues of the circular convolution :math:`A` (:math:`|K|^2` those of :math:`A^\top A`
    in the Hartley basis), whatever the physics' kernel layout and padding convention;
    differentiable in the kernel's parameters.

    :param deepinv.physics.Physics physics: ``BlurFFT`` or ``Blur(padding="circular")``.
    :param torch.Tensor like: (B, C, H, W) tensor giving shape, dtype and device.
    """
    delta = torch.zeros_like(like)
    delta[..., 0, 0] = 1
    return torch.fft.fft2(physics.A(delta))


def blur_spectrum(kernel: torch.Tensor, H: int, W: int) -> torch.Tensor:
    r"""Power spectrum :math:`|K|^2` of kernels (B, kh, kw) on an H x W circular grid.

    The kernel is zero-padded to (H, W) and rolled so that its centre sits at index (0, 0)
    (:func:`deepinv.physics.functional.filter_fft`, the layout of deepinv's ``BlurFFT``), so this
    is :math:`|K|^2` of :func:`blur_transfer` for ``BlurFFT(filter=kernel)`` without building the physics.

    :return: (torch.Tensor) (B, H, W), the eigenvalues of :math:`A^\top A` in the
        Hartley basis (same frequency layout as :func:`torch.fft.fft2`).
    """
    _, kh, kw = kernel.shape
    if kh > H or kw > W:
        raise ValueError(f"kernel ({kh}, {kw}) larger than the image ({H}, {W}).")
    return filter_fft(kernel, (H, W), real_fft=False, dims=(-2, -1)).abs() ** 2


# ---------------------------------------------------------------------------------------- measurements
def simulate(physics, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""A measurement :math:`y = A x + \sigma n` of clean images, with noise from ``generator``.

    :math:`\sigma` is the physics' Gaussian noise level (:func:`noise_std`, per element for batched
    physics; zero for ``ZeroNoise``); for ``Inpainting`` the noise is masked too, as deepinv does.
    Unlike ``physics(x)``, the randomness comes only from ``generator`` (same seed, same measurement).

    :param deepinv.physics.Physics physics: the forward model.
    :param torch.Tensor x: clean images (B, C, H, W).
    :param torch.Generator generator: source of the noise.
    """
    y = physics.A(x)
    sigma = _per_image(noise_std(physics, y.shape[0], dtype=y.dtype, device=y.device))
    y = y + sigma * torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
    return y * physics.mask if isinstance(physics, Inpainting) else y
