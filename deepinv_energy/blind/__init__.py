r"""Blind estimation of the degradation operator by Bayes' rule on normalized evidences.

For a parametric family of deepinv physics :math:`A_\theta` (with noise level
:math:`\sigma_\theta`), the energy model gives the normalized evidence of a measurement,

.. math::

    \log p(y \mid \theta) = -U(\tilde x_\theta, \Sigma_\theta) + c_\theta(y),

(see :mod:`deepinv_energy.problems`), and so the posterior over the operator

.. math::

    \log p(\theta \mid y) = \log p(y \mid \theta) + \log \pi(\theta)
    - \operatorname{logsumexp}_{\theta'} \big(\log p(y \mid \theta') + \log \pi(\theta')\big),

on a grid, with nuisance parameters marginalized by ``logsumexp``. Only a *normalized*
energy makes evidences of different operators comparable: a score model cannot do this.

The package is split by job: :mod:`~deepinv_energy.blind.kernels` (parametric blur kernels),
:mod:`~deepinv_energy.blind.families` (operator families: parameter grids -> deepinv physics, and
their measurements), :mod:`~deepinv_energy.blind.posterior` (the grid posterior) and
:mod:`~deepinv_energy.blind.estimator` (evidences, posterior, joint restoration, refinement).
"""

from .estimator import BlindEstimator
from .families import BoxInpaintingFamily, DenoisingFamily, GaussianBlurFamily, MotionBlurFamily, OperatorFamily
from .kernels import gaussian_kernel, line_kernel
from .posterior import BlindPosterior

__all__ = [
    "OperatorFamily",
    "GaussianBlurFamily",
    "MotionBlurFamily",
    "BoxInpaintingFamily",
    "DenoisingFamily",
    "BlindEstimator",
    "BlindPosterior",
    "gaussian_kernel",
    "line_kernel",
]
