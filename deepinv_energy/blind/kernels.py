r"""Parametric blur kernels on the full image grid, in the layout of :class:`deepinv.physics.BlurFFT`.

They stay hand-written: deepinv's :func:`deepinv.physics.functional.gaussian_blur` on a full
even-sized grid centres the kernel between pixels (at :math:`(H-1)/2`), while ``BlurFFT`` (and
:func:`deepinv.physics.functional.filter_fft`) puts the centre of a full-size filter at pixel
:math:`(H/2, W/2)`; the two agree to 1e-17 on odd grids only.
"""

from __future__ import annotations

import torch

__all__ = ["gaussian_kernel", "line_kernel"]


def gaussian_kernel(width: torch.Tensor, img_size) -> torch.Tensor:
    r"""Isotropic Gaussian blur kernels on the full image grid, centred at ``(H//2, W//2)``.

    :math:`k(i, j) \propto \exp(-(i^2 + j^2) / (2 w^2))` with circular distances, normalized to
    sum 1; differentiable in the widths. The layout is the one
    :class:`deepinv.physics.BlurFFT` expects for a full-size filter.

    :param torch.Tensor width: (N,) positive widths in pixels.
    :param tuple img_size: (C, H, W).
    :return: (torch.Tensor) (N, 1, H, W) kernels.
    """
    h, w = img_size[-2:]
    width = torch.as_tensor(width).reshape(-1, 1, 1, 1)
    i = torch.arange(h, dtype=width.dtype, device=width.device) - h // 2
    j = torch.arange(w, dtype=width.dtype, device=width.device) - w // 2
    r2 = i.reshape(-1, 1) ** 2 + j.reshape(1, -1) ** 2
    k = torch.exp(-r2 / (2 * width**2))
    return k / k.sum(dim=(-2, -1), keepdim=True)


def line_kernel(length: torch.Tensor, angle: torch.Tensor, img_size, n_points: int = 41,
                spread: float = 0.5) -> torch.Tensor:
    r"""Linear motion-blur kernels on the full image grid, centred at ``(H//2, W//2)``.

    A segment of ``length`` pixels through the centre at ``angle`` degrees (counter-clockwise
    from the horizontal axis, rows pointing down), rasterized as the sum of ``n_points``
    Gaussian spots of standard deviation ``spread`` pixels placed uniformly along it, then
    normalized to sum 1. Smooth (differentiable) in the length and the angle; ``length = 0``
    is a Gaussian spot of width ``spread``; angles are defined modulo 180.

    :param torch.Tensor length: (N,) lengths in pixels (>= 0).
    :param torch.Tensor angle: (N,) angles in degrees.
    :param tuple img_size: (C, H, W).
    :return: (torch.Tensor) (N, 1, H, W) kernels.
    """
    h, w = img_size[-2:]
    length = torch.as_tensor(length).reshape(-1, 1)
    rad = torch.deg2rad(torch.as_tensor(angle, dtype=length.dtype, device=length.device).reshape(-1, 1))
    t = torch.linspace(-0.5, 0.5, n_points, dtype=length.dtype, device=length.device).reshape(1, -1) * length
    dy, dx = -t * torch.sin(rad), t * torch.cos(rad)  # (N, P)
    i = torch.arange(h, dtype=length.dtype, device=length.device) - h // 2
    j = torch.arange(w, dtype=length.dtype, device=length.device) - w // 2
    ry = (i.reshape(1, 1, -1, 1) - dy[..., None, None]) ** 2
    rx = (j.reshape(1, 1, 1, -1) - dx[..., None, None]) ** 2
    k = torch.exp(-(ry + rx) / (2 * spread**2)).sum(1, keepdim=True)
    return k / k.sum(dim=(-2, -1), keepdim=True)
