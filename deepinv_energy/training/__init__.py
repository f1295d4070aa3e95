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
from .loss import (
    coefficient_score_matching_loss,
    covariance_score_matching_loss,
    denoising_weight,
    draw_noise,
    normalization_constant,
)
from .recipe import run_recipe
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
    "coefficient_score_matching_loss",
    "draw_noise",
    "run_recipe",
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
