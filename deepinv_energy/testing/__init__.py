r"""The package's reference implementations (test oracles), public and documented.

Not used by the runtime code paths: closed-form posteriors and evidences of Gaussian-mixture priors
computed densely in measurement space (:func:`measurement_posterior`), the reference problems of
the exactness tests and benchmarks, and statistics comparing draws with an exact posterior.
"""

from .exactness import (
    ADAPTIVE_CASE,
    PHYSICS_CASES,
    SAMPLER_CASES,
    bimodal_problem,
    gaussian_kl,
    level_target,
    measurement_posterior,
    mixture_problem,
    mode_weights,
    moment_z,
    random_mixture,
    split_gibbs_target,
    tweedie_extra_var,
)

__all__ = [
    "measurement_posterior",
    "random_mixture",
    "mixture_problem",
    "bimodal_problem",
    "mode_weights",
    "level_target",
    "split_gibbs_target",
    "moment_z",
    "gaussian_kl",
    "tweedie_extra_var",
    "PHYSICS_CASES",
    "SAMPLER_CASES",
    "ADAPTIVE_CASE",
]
