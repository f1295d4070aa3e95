"""Training of learned energy models: covariance distribution, loss, trainer."""

from .distribution import (
    ALL_FAMILIES,
    BLUR_FAMILIES,
    DEFAULT_FAMILIES,
    DEFAULT_HOLDOUT,
    HARTLEY_FAMILIES,
    PIXEL_FAMILIES,
    CovarianceDistribution,
    blur_spectrum,
)
from .loss import covariance_score_matching_loss, denoising_weight, normalization_constant
from .trainer import (
    TrainConfig,
    Trainer,
    build_parser,
    config_from_args,
    load_checkpoint,
    main_train,
    normalize_model,
    run_from_args,
    train,
)

__all__ = [
    "ALL_FAMILIES",
    "BLUR_FAMILIES",
    "DEFAULT_FAMILIES",
    "DEFAULT_HOLDOUT",
    "HARTLEY_FAMILIES",
    "PIXEL_FAMILIES",
    "CovarianceDistribution",
    "blur_spectrum",
    "covariance_score_matching_loss",
    "denoising_weight",
    "normalization_constant",
    "TrainConfig",
    "Trainer",
    "build_parser",
    "config_from_args",
    "run_from_args",
    "load_checkpoint",
    "main_train",
    "normalize_model",
    "train",
]
