r"""Covariances diagonal in a fixed orthonormal basis.

Every anisotropic quantity of the package (network conditioning, training noise, sampler
steps, physics translation) goes through :class:`Covariance`, so no other module does its
own FFT bookkeeping.
"""

from __future__ import annotations

import math
import warnings

import torch

__all__ = [
    "Covariance",
    "Basis",
    "register_basis",
    "unregister_basis",
    "get_basis",
    "basis_names",
    "hartley",
    "to_basis",
    "from_basis",
    "basis_transform",
    "pixel_variance",
    "check_image",
    "BASES",
    "LAM_MIN",
    "LAM_MAX",
]

#: The variance range of the package, the one place it is written: the smallest and largest noise
#: variance of the training distribution (for images in [0, 1]: input PSNR 90 dB and -30 dB).
#: Everything else (models' configs, the training distribution, the physics translation, the
#: normalization constant) takes its default from here; a trained model records its own range in
#: ``model.config.lam_min`` / ``lam_max``, which the samplers and ``EnergyMMSE`` follow.
LAM_MIN = 1e-9
LAM_MAX = 1e3

#: Largest dimension for which :meth:`Covariance.dense` builds a matrix.
MAX_DENSE_DIM = 4096


def _check_tensor(t, name: str, allow_empty: bool) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}.")
    if t.ndim != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(t.shape)}.")
    if not allow_empty and t.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(t.shape)}); give at least one image.")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got {t.dtype}.")


def check_image(y: torch.Tensor, name: str = "y") -> None:
    """Raise a clear error unless ``y`` is a finite floating (B, C, H, W) tensor with B >= 1."""
    _check_tensor(y, name, allow_empty=False)
    if not torch.isfinite(y.detach()).all():
        raise ValueError(f"{name} contains NaN or inf.")


def hartley(x: torch.Tensor) -> torch.Tensor:
    r"""Orthonormal 2-D discrete Hartley transform over the last two axes.

    .. math::

        \mathrm{DHT}(x) = \mathrm{Re}\,\mathcal{F}(x) - \mathrm{Im}\,\mathcal{F}(x),

    with :math:`\mathcal{F}` the orthonormal 2-D FFT. The transform is real, symmetric,
    orthogonal and its own inverse, and it diagonalizes every symmetric circulant matrix
    (e.g. :math:`A^\top A` for a circular convolution :math:`A`).

    :param torch.Tensor x: real tensor (..., H, W).
    :return: (torch.Tensor) the transform, same shape and dtype.

    :Examples:

    >>> import torch
    >>> from deepinv_energy.covariance import hartley
    >>> x = torch.randn(1, 1, 4, 5, dtype=torch.float64)
    >>> bool(torch.allclose(hartley(hartley(x)), x))
    True
    """
    f = torch.fft.fft2(x, norm="ortho")
    return f.real - f.imag


class Basis:
    r"""A fixed real orthonormal basis :math:`V` of images (B, C, H, W), acting on the last two axes.

    Every module asks the registry (:func:`get_basis`) instead of comparing basis names, so a new
    basis is one :func:`register_basis` call.

    :param str name: registry key (stored in :class:`Covariance` and in model files).
    :param callable forward: images -> coefficients, :math:`c = V^\top x`.
    :param callable inverse: coefficients -> images, :math:`x = V c` (``None``: ``forward``, for a
        symmetric involution such as the pixel and Hartley bases).
    :param callable pixel_variance: variances :math:`v` per coefficient (..., H, W) -> per-pixel
        variances :math:`\operatorname{diag}(V \operatorname{diag}(v) V^\top)`; ``None``: computed
        with a dense basis matrix (small images only).
    :param bool spatial: the coefficients are pixels (a map of them is an image a network can
        take as an input channel).
    :param callable stationary_variance: Hartley-basis variances :math:`P` (..., H, W) of a
        stationary (circulant-covariance) process -> its variances in this basis; ``None``: the
        basis cannot serve a size-free model.
    :param str description: one line for error messages and docs.

    :Examples:

    >>> import torch
    >>> from deepinv_energy.covariance import get_basis
    >>> b = get_basis("hartley")
    >>> x = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    >>> bool(torch.allclose(b.inverse(b.forward(x)), x))
    True
    """

    def __init__(self, name: str, forward, inverse=None, pixel_variance=None, spatial: bool = False,
                 stationary_variance=None, description: str = ""):
        if not isinstance(name, str) or not name:
            raise ValueError(f"a basis needs a non-empty string name, got {name!r}.")
        self.name = name
        self.forward = forward
        self.inverse = forward if inverse is None else inverse
        self._pixel_variance = pixel_variance
        self.spatial = bool(spatial)
        self._stationary_variance = stationary_variance
        self.description = description

    def stationary_variance(self, spectrum: torch.Tensor) -> torch.Tensor:
        r"""Variances in this basis of a stationary process whose Hartley-basis variances are
        ``spectrum`` (..., H, W) (a circulant covariance is diagonal in the Hartley basis).

        :raises ValueError: if the basis does not define it.
        """
        if self._stationary_variance is None:
            raise ValueError(f"basis {self.name!r} defines no variances of a stationary process.")
        return self._stationary_variance(spectrum)

    def pixel_variance(self, v: torch.Tensor) -> torch.Tensor:
        r"""Per-pixel variances :math:`\operatorname{diag}(V \operatorname{diag}(v) V^\top)`, shape of ``v``."""
        if self._pixel_variance is not None:
            return self._pixel_variance(v)
        shape = v.shape
        h, w = shape[-2:]
        if h * w > MAX_DENSE_DIM:
            raise ValueError(f"basis {self.name!r} has no closed-form pixel variance; dense fallback needs H*W <= {MAX_DENSE_DIM}.")
        eye = torch.eye(h * w, dtype=v.dtype, device=v.device).reshape(h * w, 1, h, w)
        cols = self.inverse(eye).reshape(h * w, h * w)  # row k = basis vector k
        return (v.reshape(-1, h * w) @ cols**2).reshape(shape)

    def __repr__(self) -> str:
        return f"Basis({self.name!r})"


_REGISTRY: dict = {}


def register_basis(basis: Basis, overwrite: bool = False) -> Basis:
    """Add a :class:`Basis` to the registry (``overwrite=True`` to replace one of the same name)."""
    if not isinstance(basis, Basis):
        raise TypeError(f"register_basis takes a Basis, got {type(basis).__name__}.")
    if basis.name in _REGISTRY and not overwrite:
        raise ValueError(f"a basis named {basis.name!r} is already registered.")
    _REGISTRY[basis.name] = basis
    return basis


def unregister_basis(name: str) -> None:
    """Remove a basis added with :func:`register_basis` (the built-in ones stay).

    :raises ValueError: for a built-in or unknown name.
    """
    if name in BASES or name not in _REGISTRY:
        raise ValueError(f"cannot unregister {name!r}: not a basis added with register_basis ({basis_names()}).")
    del _REGISTRY[name]


def basis_names() -> tuple:
    """Names of the registered bases, in registration order."""
    return tuple(_REGISTRY)


def get_basis(basis) -> Basis:
    """The registered :class:`Basis` of a name (a :class:`Basis` is returned as is).

    :raises ValueError: naming the registered bases.
    """
    if isinstance(basis, Basis):
        return basis
    try:
        return _REGISTRY[basis]
    except (KeyError, TypeError):
        raise ValueError(f"basis must be one of {basis_names()}, got {basis!r}.") from None


def to_basis(x: torch.Tensor, basis) -> torch.Tensor:
    r"""Coefficients :math:`V^\top x` of images in a basis."""
    return get_basis(basis).forward(x)


def from_basis(c: torch.Tensor, basis) -> torch.Tensor:
    r"""Images :math:`V c` from coefficients in a basis."""
    return get_basis(basis).inverse(c)


def basis_transform(x: torch.Tensor, basis) -> torch.Tensor:
    r"""Coefficients :math:`V^\top x` of images in a basis (:func:`to_basis`). The pixel and Hartley
    bases are symmetric involutions, so for them the same call also maps coefficients back to
    images; for any other basis use :func:`from_basis`."""
    return get_basis(basis).forward(x)


def pixel_variance(v: torch.Tensor, basis) -> torch.Tensor:
    r"""Per-pixel variances :math:`\operatorname{diag}(V \operatorname{diag}(v) V^\top)` of a covariance diagonal in ``basis``.

    For the Hartley basis, :math:`V_{pk}^2 = (1 + \sin 2\theta_{pk}) / (HW)` with
    :math:`\theta_{pk} = 2\pi(k_1 p_1 / H + k_2 p_2 / W)`, so the diagonal is
    :math:`(\sum_k v_k - \operatorname{Im}\,\hat v(2p)) / (HW)` with :math:`\hat v` the
    (unnormalized) 2-D DFT of :math:`v`: exact, one FFT.

    :param torch.Tensor v: (..., H, W) variances per coefficient.
    :param str basis: a registered basis name (:func:`basis_names`).
    """
    return get_basis(basis).pixel_variance(v)


def _hartley_pixel_variance(v: torch.Tensor) -> torch.Tensor:
    h, w = v.shape[-2:]
    f = torch.fft.fft2(v).imag
    i2 = (2 * torch.arange(h, device=v.device)) % h
    j2 = (2 * torch.arange(w, device=v.device)) % w
    f2 = f[..., i2, :][..., :, j2]
    return (v.sum(dim=(-2, -1), keepdim=True) - f2) / (h * w)


register_basis(Basis("pixel", lambda x: x, pixel_variance=lambda v: v, spatial=True,
                     stationary_variance=lambda p: _hartley_pixel_variance(p),
                     description="identity: masks, inpainting, spatially varying noise"))
register_basis(Basis("hartley", hartley, pixel_variance=_hartley_pixel_variance,
                     stationary_variance=lambda p: p,
                     description="orthonormal 2-D discrete Hartley transform per channel: circular blurs"))

#: Names of the built-in bases (the registry may hold more: :func:`basis_names`).
BASES = ("pixel", "hartley")


class Covariance:
    r"""Gaussian covariance :math:`\Sigma = V \operatorname{diag}(\lambda) V^\top` with a fixed basis.

    :math:`V` is the identity (``"pixel"``) or the orthonormal 2-D discrete Hartley
    transform per channel (``"hartley"``, see :func:`hartley`); the variances
    :math:`\lambda > 0` are stored as ``log_var``, one per coefficient, with the image's
    shape (B, C, H, W). A batch of images carries a batch of covariances.

    :param str basis: a registered basis name: ``"pixel"``, ``"hartley"`` or one added with
        :func:`register_basis`.
    :param torch.Tensor log_var: log-variances, shape (B, C, H, W), finite.

    :Examples:

    >>> import torch
    >>> from deepinv_energy import Covariance
    >>> cov = Covariance("hartley", torch.zeros(2, 1, 8, 8))
    >>> x = torch.randn(2, 1, 8, 8)
    >>> bool(torch.allclose(cov.apply(x), x, atol=1e-5))  # identity covariance
    True
    >>> cov.logdet().shape
    torch.Size([2])
    """

    def __init__(self, basis: str, log_var: torch.Tensor):
        get_basis(basis)  # raises naming the registered bases
        _check_tensor(log_var, "log_var", allow_empty=True)
        if not torch.isfinite(log_var.detach()).all():
            raise ValueError("log_var must be finite (no NaN or inf).")
        self.basis = basis
        self.log_var = log_var

    # ------------------------------------------------------------------ constructors
    @classmethod
    def trusted(cls, basis: str, log_var: torch.Tensor) -> "Covariance":
        """A covariance from already validated parts, without the checks (internal fast path:
        the samplers' inner loops and autograd re-wrapping; the caller guarantees what
        ``Covariance(basis, log_var)`` would check)."""
        cov = cls.__new__(cls)
        cov.basis, cov.log_var = basis, log_var
        return cov

    @classmethod
    def isotropic(cls, var, like: torch.Tensor, basis: str = "pixel") -> "Covariance":
        r"""Isotropic covariance :math:`\sigma^2 I`, shaped like an image batch.

        :param float | torch.Tensor var: variance, a float or a (B,) tensor, positive.
        :param torch.Tensor like: image batch (B, C, H, W) giving shape, dtype and device.
        :param str basis: basis the covariance is expressed in (it is diagonal in both).
        """
        var = torch.as_tensor(var, dtype=like.dtype, device=like.device)
        if var.ndim > 1 or (var.ndim == 1 and var.shape[0] not in (1, like.shape[0])):
            raise ValueError(
                f"var must be a float or a tensor of shape ({like.shape[0]},), got shape {tuple(var.shape)}."
            )
        if not (var > 0).all():
            raise ValueError("var must be positive.")
        log_var = torch.log(var).reshape(-1, 1, 1, 1).expand(like.shape)
        return cls(basis, log_var.contiguous())

    @classmethod
    def from_sigma(cls, sigma, like: torch.Tensor, lam_min: float | None = None,
                   basis: str = "pixel") -> "Covariance":
        r"""Isotropic covariance :math:`\sigma^2 I` from a noise standard deviation, as deepinv passes it.

        :param float | torch.Tensor sigma: a number or a (B,) tensor, finite and non-negative; a
            number is taken in ``like``'s dtype, a floating tensor keeps its own for the square.
        :param torch.Tensor like: image batch (B, C, H, W) giving shape, dtype and device.
        :param float lam_min: variances below it are raised to it, with a warning (``None``: no
            floor, and :math:`\sigma` must then be positive).
        :param str basis: basis the covariance is expressed in.
        :raises ValueError: naming ``sigma`` and the accepted values.
        """
        if not (isinstance(sigma, torch.Tensor) and sigma.is_floating_point()):
            sigma = torch.as_tensor(sigma, dtype=like.dtype)
        sigma = sigma.to(like.device).reshape(-1)
        if sigma.numel() not in (1, like.shape[0]):
            raise ValueError(
                f"sigma must be a float or a tensor of shape ({like.shape[0]},), got {sigma.numel()} values."
            )
        if not torch.isfinite(sigma).all() or (sigma < 0).any():
            raise ValueError("sigma must be finite and non-negative.")
        var = sigma.expand(like.shape[0]) ** 2
        if lam_min is not None and (var < lam_min).any():
            warnings.warn(f"sigma below sqrt(lam_min)={lam_min ** 0.5:.2g} is raised to it.", stacklevel=3)
            var = var.clamp(min=lam_min)
        return cls.isotropic(var, like, basis)

    # ------------------------------------------------------------------ properties
    @property
    def shape(self) -> torch.Size:
        return self.log_var.shape

    @property
    def variances(self) -> torch.Tensor:
        r"""The variances :math:`\lambda = \exp(\text{log\_var})`."""
        return self.log_var.exp()

    @property
    def dim(self) -> int:
        """Number of coefficients per image, :math:`d = C H W`."""
        return math.prod(self.log_var.shape[1:])

    def with_log_var(self, log_var: torch.Tensor) -> "Covariance":
        """The covariance with the same basis and new log-variances."""
        return Covariance(self.basis, log_var)

    def to(self, *args, **kwargs) -> "Covariance":
        """Move or cast the log-variances (same arguments as :meth:`torch.Tensor.to`); ``self`` when
        nothing changes (no new validation on the evaluation path)."""
        lv = self.log_var.to(*args, **kwargs)
        return self if lv is self.log_var else Covariance(self.basis, lv)

    def __repr__(self) -> str:
        return f"Covariance(basis={self.basis!r}, shape={tuple(self.shape)})"

    # ------------------------------------------------------------------ basis changes
    def to_basis(self, x: torch.Tensor) -> torch.Tensor:
        r"""Coefficients :math:`V^\top x` of images ``x`` in this covariance's basis."""
        return to_basis(x, self.basis)

    def from_basis(self, c: torch.Tensor) -> torch.Tensor:
        r"""Images :math:`V c` from coefficients ``c``."""
        return from_basis(c, self.basis)

    # ------------------------------------------------------------------ linear algebra
    def apply(self, x: torch.Tensor, power: float = 1.0) -> torch.Tensor:
        r""":math:`\Sigma^p x = V \operatorname{diag}(\lambda^p) V^\top x`."""
        return self.from_basis(torch.exp(power * self.log_var) * self.to_basis(x))

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        r"""A draw of :math:`\mathcal{N}(0, \Sigma)`, i.e. :math:`\Sigma^{1/2} z` with :math:`z \sim \mathcal{N}(0, I)`."""
        z = torch.randn(
            self.shape, generator=generator, dtype=self.log_var.dtype, device=self.log_var.device
        )
        return self.apply(z, 0.5)

    def logdet(self) -> torch.Tensor:
        r""":math:`\log\det\Sigma = \sum_i \log\lambda_i`, shape (B,), accumulated in float64."""
        return self.log_var.double().sum(dim=(1, 2, 3))

    def basis_matrix(self) -> torch.Tensor:
        r"""Dense :math:`V` (d, d) whose columns are the basis vectors (small images only)."""
        d = self.dim
        if d > MAX_DENSE_DIM:
            raise ValueError(f"dense matrices are limited to d <= {MAX_DENSE_DIM}, got d = {d}.")
        eye = torch.eye(d, dtype=self.log_var.dtype, device=self.log_var.device)
        cols = self.from_basis(eye.reshape(d, *self.shape[1:]))
        return cols.reshape(d, d).T

    def dense(self) -> torch.Tensor:
        r"""Dense :math:`\Sigma`, shape (B, d, d) (small images only)."""
        v = self.basis_matrix()
        lam = self.variances.reshape(self.shape[0], 1, -1)
        return (v * lam) @ v.T
