r"""Posterior samplers for energy models: reverse diffusion in covariance space.

Predictor-corrector (:class:`PredictorCorrectorSampler`), Metropolis-adjusted corrector
(:class:`MALASampler`) and energy-guided adaptive schedules (:class:`AdaptiveSampler`), as
deepinv :class:`~deepinv.sampling.BaseSampling` samplers taking ``(y, physics)``.
"""

from .engine import Chains, SamplerDiagnostics, SamplerOutput, pixel_variance
from .samplers import (
    ADAPTIVE_RULES,
    PREDICTORS,
    AdaptiveIterator,
    AdaptiveSampler,
    EnergySamplingIterator,
    MALASampler,
    PredictorCorrectorIterator,
    PredictorCorrectorSampler,
)
from .schedules import check_schedule, geometric_schedule

__all__ = [
    "ADAPTIVE_RULES",
    "PREDICTORS",
    "AdaptiveIterator",
    "AdaptiveSampler",
    "Chains",
    "EnergySamplingIterator",
    "MALASampler",
    "PredictorCorrectorIterator",
    "PredictorCorrectorSampler",
    "SamplerDiagnostics",
    "SamplerOutput",
    "check_schedule",
    "geometric_schedule",
    "pixel_variance",
]
