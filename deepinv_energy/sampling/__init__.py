r"""Posterior samplers for energy models: reverse diffusion in covariance space.

Predictor-corrector (:class:`PredictorCorrectorSampler`), Metropolis-adjusted corrector
(:class:`MALASampler`) and energy-guided adaptive schedules (:class:`AdaptiveSampler`) for the physics written as denoising, split Gibbs sampling
(:class:`SplitGibbsSampler`) for any linear physics with Gaussian noise, as
deepinv :class:`~deepinv.sampling.BaseSampling` samplers taking ``(y, physics)``.
"""

from .engine import Chains, Evaluation, SamplerDiagnostics, SamplerOutput, pixel_variance, posterior_variance, run
from .samplers import (
    ADAPTIVE_RULES,
    PREDICTORS,
    AdaptiveIterator,
    AdaptiveSampler,
    EnergySampler,
    EnergySamplingIterator,
    MALASampler,
    PredictorCorrectorIterator,
    PredictorCorrectorSampler,
    SamplerSettings,
    split_sampler_kwargs,
)
from .split_gibbs import X_STEPS, SplitGibbsDiagnostics, SplitGibbsIterator, SplitGibbsSampler
from .schedules import AdaptiveSchedule, FixedSchedule, check_schedule, geometric_schedule

__all__ = [
    "ADAPTIVE_RULES",
    "PREDICTORS",
    "AdaptiveIterator",
    "AdaptiveSchedule",
    "AdaptiveSampler",
    "Chains",
    "EnergySampler",
    "EnergySamplingIterator",
    "Evaluation",
    "FixedSchedule",
    "MALASampler",
    "PredictorCorrectorIterator",
    "PredictorCorrectorSampler",
    "SamplerDiagnostics",
    "SamplerOutput",
    "SamplerSettings",
    "SplitGibbsDiagnostics",
    "SplitGibbsIterator",
    "SplitGibbsSampler",
    "X_STEPS",
    "check_schedule",
    "geometric_schedule",
    "pixel_variance",
    "posterior_variance",
    "run",
    "split_sampler_kwargs",
]
