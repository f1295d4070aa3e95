r"""The interface every energy model implements, closed-form or learned."""

from __future__ import annotations

import math

import torch

from ..covariance import LAM_MAX, LAM_MIN, Covariance, check_image, from_basis, to_basis  # check_image: re-exported (its home is covariance.py)

__all__ = ["EnergyModel", "bits_per_dim", "check_image", "check_model_shape", "posterior_variance", "trained_variance_range",
           "work_dtype"]


def posterior_variance(lam: torch.Tensor, gc: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    r"""Identity 3 of the method, per coefficient of the basis (unclipped):
    :math:`\operatorname{Var}[(V^\top x)_i \mid y] = \lambda_i (1 - 2h_i) - (\lambda_i (V^\top g)_i)^2`.

    The one implementation, used by :meth:`EnergyModel.posterior_moments` and the samplers.

    :param torch.Tensor lam: variances :math:`\lambda` of the covariance.
    :param torch.Tensor gc: :math:`V^\top \nabla_y U`.
    :param torch.Tensor h: :math:`\partial U / \partial \log\lambda`.
    """
    return lam * (1 - 2 * h) - (lam * gc) ** 2


def bits_per_dim(nll: torch.Tensor, dim: int, levels: int = 256) -> torch.Tensor:
    r"""Negative log-likelihood of dequantized images in bits per dimension.

    .. math::

        \text{bits/dim} = \frac{\mathrm{NLL}}{d \log 2} + \log_2(\text{levels}),

    for images in [0, 1] with ``levels`` quantization levels, dequantized by uniform noise of
    width ``1 / levels`` (the density of the [0, 1] images is ``levels**d`` times that of the
    integer images).

    :param torch.Tensor nll: (B,) negative log-densities in nats (e.g. energies).
    :param int dim: dimension :math:`d = CHW`.
    :param int levels: quantization levels (256 for 8-bit images).
    """
    return nll / (dim * math.log(2)) + math.log2(levels)


def work_dtype(model, like: torch.Tensor) -> torch.dtype:
    """The floating dtype of ``model``'s parameters/buffers (inputs are cast to it), else ``like``'s."""
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return like.dtype


def trained_variance_range(model) -> tuple:
    """``(lam_min, lam_max)`` a model was trained on: ``model.config.lam_min`` / ``lam_max`` when the
    model has a config (a learned :class:`~deepinv_energy.EnergyUNet`), else the package's range
    (:data:`~deepinv_energy.covariance.LAM_MIN`, :data:`~deepinv_energy.covariance.LAM_MAX`; the
    closed-form models are exact at every variance). The samplers and
    :class:`~deepinv_energy.EnergyMMSE` default to it.
    """
    config = getattr(model, "config", None)
    lo, hi = getattr(config, "lam_min", None), getattr(config, "lam_max", None)
    return (float(lo), float(hi)) if lo is not None and hi is not None else (LAM_MIN, LAM_MAX)


def check_model_shape(model, shape) -> None:
    """Raise a clear error unless images of batch shape ``shape`` (B, C, H, W) suit ``model``.

    A model with a fixed ``image_shape`` (C, H, W) takes only that; a size-free model
    (``image_shape`` None, e.g. a fully convolutional :class:`~deepinv_energy.EnergyUNet`) takes
    any height and width its ``accepts_shape`` allows.
    """
    expected = getattr(model, "image_shape", None)
    if expected is not None and tuple(expected) != tuple(shape[1:]):
        raise ValueError(
            f"the energy model works on images of shape {tuple(expected)}, but the problem's images have "
            f"shape {tuple(shape[1:])}."
        )
    accepts = getattr(model, "accepts_shape", None)
    if expected is None and accepts is not None:
        accepts(tuple(shape[1:]))


def _finite_energy(energy):
    """Wrap a subclass's ``energy`` so that a NaN/inf energy raises ``FloatingPointError`` (as the
    samplers do) instead of flowing silently into denoisers, evidences and metrics."""
    import functools

    @functools.wraps(energy)
    def checked(self, y, cov, *args, **kwargs):
        u = energy(self, y, cov, *args, **kwargs)
        if not torch.isfinite(u.detach()).all():
            bad = int((~torch.isfinite(u.detach())).sum())
            raise FloatingPointError(
                f"{type(self).__name__}.energy returned NaN/inf for {bad} of {u.numel()} images: the weights may be "
                "corrupt (reload them from a file with checksums) or the input is far outside the model's range.")
        return u

    return checked


class EnergyModel(torch.nn.Module):
    r"""Energy :math:`U(y, \Sigma) \approx -\log p_\Sigma(y)` of noisy images.

    :math:`p_\Sigma(y) = \int \mathcal{N}(y; x, \Sigma)\, p(x)\, dx` is the density of a clean
    image :math:`x \sim p` observed through Gaussian noise of covariance :math:`\Sigma`
    (a :class:`deepinv_energy.Covariance`). Subclasses implement :meth:`energy`; everything
    else follows from it by autograd and the identities

    .. math::

        \nabla_y \log p_\Sigma(y) = -g, \qquad
        \mathbb{E}[x \mid y] = y - \Sigma g, \qquad
        h_i = \tfrac12\left(1 - \mathbb{E}[\varepsilon_i^2 \mid y]\right),

    with :math:`g = \nabla_y U`, :math:`h = \partial U / \partial \log\lambda` and
    :math:`\varepsilon = V^\top (y - x) / \sqrt{\lambda}` the whitened noise.

    Energies are in nats, one per image, shape (B,).

    :Examples:

    >>> import torch
    >>> from deepinv_energy import Covariance, GaussianEnergy
    >>> model = GaussianEnergy(torch.zeros(1, 1, 2, 2), torch.eye(4))
    >>> y = torch.randn(3, 1, 2, 2)
    >>> cov = Covariance.isotropic(0.5, y)
    >>> g, h = model.grads(y, cov)
    >>> bool(torch.allclose(model.denoise(y, cov), y / 1.5, atol=1e-6))
    True
    """

    def energy(self, y: torch.Tensor, cov: Covariance) -> torch.Tensor:
        """Energy :math:`U(y, \\Sigma)` in nats, shape (B,)."""
        raise NotImplementedError

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "energy" in cls.__dict__:  # every implementation raises FloatingPointError on a non-finite energy
            cls.energy = _finite_energy(cls.__dict__["energy"])

    def forward(self, y: torch.Tensor, cov: Covariance) -> torch.Tensor:
        return self.energy(y, cov)

    def log_prob(self, y: torch.Tensor, cov: Covariance) -> torch.Tensor:
        r""":math:`\log p_\Sigma(y) = -U(y, \Sigma)`, shape (B,)."""
        return -self.energy(y, cov)

    def energy_and_grads(
        self,
        y: torch.Tensor,
        cov: Covariance,
        create_graph: bool = False,
        wrt_log_var: bool = True,
    ):
        r"""Energy and its gradients from one autograd call.

        :param torch.Tensor y: noisy images (B, C, H, W).
        :param Covariance cov: noise covariance.
        :param bool create_graph: keep the graph of the gradients (training losses, or
            differentiating a denoiser as DPS does). When ``False`` the outputs are detached.
        :param bool wrt_log_var: also return :math:`h = \partial U / \partial \log\lambda`
            (``None`` otherwise).
        :return: ``(U, g, h)``: energies (B,), :math:`g = \nabla_y U` (image shape) and
            :math:`h` (log-variance shape, or ``None``).
        """
        with torch.enable_grad():
            y_in = y if (create_graph and y.requires_grad) else y.detach().requires_grad_(True)
            lv = cov.log_var
            if wrt_log_var:
                lv = lv if (create_graph and lv.requires_grad) else lv.detach().requires_grad_(True)
            u = self.energy(y_in, Covariance.trusted(cov.basis, lv))
            inputs = [y_in, lv] if wrt_log_var else [y_in]
            grads = torch.autograd.grad(u.sum(), inputs, create_graph=create_graph)
        g = grads[0]
        h = grads[1] if wrt_log_var else None
        if not create_graph:
            u = u.detach()
        return u, g, h

    def coefficient_energy_and_grads(self, c: torch.Tensor, basis: str, log_var: torch.Tensor):
        r"""Energy and gradients in the coefficients of ``basis``: the samplers' entry point.

        :math:`c = V^\top y` and :math:`\log\lambda` are trusted (no validation: the samplers check
        their problem once, at their public entry points). Returns :math:`(U, V^\top g, h)`,
        detached. The default goes through :meth:`energy_and_grads` on the image :math:`Vc`;
        models that work in coefficients anyway override it (:class:`~deepinv_energy.EnergyUNet`).

        :param torch.Tensor c: (B, C, H, W) coefficients.
        :param str basis: a registered basis name (see :func:`deepinv_energy.covariance.basis_names`).
        :param torch.Tensor log_var: (B, C, H, W) log-variances of the covariance, same basis.
        """
        u, g, h = self.energy_and_grads(from_basis(c, basis), Covariance.trusted(basis, log_var))
        return u, to_basis(g, basis), h

    def grads(self, y: torch.Tensor, cov: Covariance, create_graph: bool = False):
        r""":math:`(g, h) = (\nabla_y U, \partial U/\partial \log\lambda)`."""
        _, g, h = self.energy_and_grads(y, cov, create_graph=create_graph)
        return g, h

    def score(self, y: torch.Tensor, cov: Covariance, create_graph: bool = False) -> torch.Tensor:
        r"""Score :math:`\nabla_y \log p_\Sigma(y) = -g`."""
        _, g, _ = self.energy_and_grads(y, cov, create_graph=create_graph, wrt_log_var=False)
        return -g

    def denoise(self, y: torch.Tensor, cov: Covariance, create_graph: bool = False) -> torch.Tensor:
        r"""Anisotropic Tweedie estimate :math:`\mathbb{E}[x \mid y] = y - \Sigma g`."""
        return y + cov.apply(self.score(y, cov, create_graph=create_graph))

    def posterior_moments(self, y: torch.Tensor, cov: Covariance):
        r"""Tweedie mean :math:`y - \Sigma g` (image) and per-coefficient posterior variance (in the
        covariance's basis, see :meth:`posterior_variance`) from ONE gradient evaluation.

        :return: ``(mean, variance)``.
        """
        _, g, h = self.energy_and_grads(y, cov)
        return y - cov.apply(g), posterior_variance(cov.variances, cov.to_basis(g), h)

    def posterior_variance(self, y: torch.Tensor, cov: Covariance) -> torch.Tensor:
        r"""Posterior variance of each coefficient of :math:`x` in the covariance's basis.

        .. math::

            \operatorname{Var}[(V^\top x)_i \mid y] = \lambda_i (1 - 2 h_i) - (\lambda_i (V^\top g)_i)^2,

        from one gradient evaluation (identity 3 of the method). In the pixel basis this is a
        per-pixel uncertainty map; in the Hartley basis a per-frequency one.
        """
        return self.posterior_moments(y, cov)[1]
