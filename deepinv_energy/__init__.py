"""Normalized energy models for linear inverse problems, as an extension of deepinv."""

__version__ = "0.1.0"

from .blind import (
    BlindEstimator,
    BlindPosterior,
    BoxInpaintingFamily,
    DenoisingFamily,
    GaussianBlurFamily,
    MotionBlurFamily,
    OperatorFamily,
)
from .covariance import BASES, Covariance, hartley
from .models import EnergyModel, EnergyUNet, GaussianEnergy, GaussianMixtureEnergy, MixturePosterior, UNetConfig, list_pretrained
from .denoiser import EnergyDenoiser, UNetDenoiser
from .mmse import EnergyMMSE, MMSEOutput
from .prior import EnergyPrior
from .sampling import AdaptiveSampler, MALASampler, PredictorCorrectorSampler, geometric_schedule
from .problems import (
    LAM_MAX,
    LAM_MIN,
    SUPPORTED_PHYSICS,
    DenoisingProblem,
    UnsupportedPhysicsError,
    to_denoising_problem,
)

__all__ = [
    "__version__",
    "BASES",
    "Covariance",
    "hartley",
    "EnergyModel",
    "EnergyUNet",
    "UNetConfig",
    "list_pretrained",
    "GaussianEnergy",
    "GaussianMixtureEnergy",
    "MixturePosterior",
    "EnergyDenoiser",
    "UNetDenoiser",
    "EnergyMMSE",
    "MMSEOutput",
    "EnergyPrior",
    "AdaptiveSampler",
    "MALASampler",
    "PredictorCorrectorSampler",
    "geometric_schedule",
    "BlindEstimator",
    "BlindPosterior",
    "BoxInpaintingFamily",
    "DenoisingFamily",
    "GaussianBlurFamily",
    "MotionBlurFamily",
    "OperatorFamily",
    "LAM_MAX",
    "LAM_MIN",
    "SUPPORTED_PHYSICS",
    "DenoisingProblem",
    "UnsupportedPhysicsError",
    "to_denoising_problem",
]
