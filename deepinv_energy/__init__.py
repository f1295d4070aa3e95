"""Normalized energy models for linear inverse problems, as an extension of deepinv."""

__version__ = "0.1.0"

# The public names are imported on first use (PEP 562), so that ``import deepinv_energy`` (and the
# command line's ``--help``) does not pay for importing torch and deepinv.
_SOURCES = {
    ".blind": ("BlindEstimator", "BlindPosterior", "BoxInpaintingFamily", "DenoisingFamily", "GaussianBlurFamily",
               "MotionBlurFamily", "OperatorFamily"),
    ".covariance": ("BASES", "Covariance", "hartley"),
    ".models": ("EnergyModel", "EnergyUNet", "GaussianEnergy", "GaussianMixtureEnergy", "MixturePosterior",
                "UNetConfig", "list_pretrained"),
    ".denoiser": ("EnergyDenoiser", "UNetDenoiser"),
    ".mmse": ("EnergyMMSE", "MMSEOutput"),
    ".prior": ("EnergyPrior",),
    ".sampling": ("AdaptiveSampler", "MALASampler", "PredictorCorrectorSampler", "SplitGibbsSampler",
                  "geometric_schedule"),
    ".problems": ("LAM_MAX", "LAM_MIN", "SUPPORTED_PHYSICS", "DenoisingProblem", "UnsupportedPhysicsError",
                  "to_denoising_problem"),
}
_ORIGIN = {name: module for module, names in _SOURCES.items() for name in names}


def __getattr__(name):
    import importlib

    if name in _ORIGIN:
        value = getattr(importlib.import_module(_ORIGIN[name], __name__), name)
    else:
        try:  # a submodule, e.g. deepinv_energy.training
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_ORIGIN))


#: built from _SOURCES, the one place that lists the public names
__all__ = ["__version__", *_ORIGIN]
