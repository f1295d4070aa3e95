"""Energy models: the interface, closed-form energies and the learned network."""

from .base import EnergyModel
from .gaussian import GaussianEnergy, GaussianMixtureEnergy, MixturePosterior
from .pretrained import list_pretrained
from .unet import EnergyUNet, UNetConfig

__all__ = [
    "EnergyModel",
    "EnergyUNet",
    "GaussianEnergy",
    "GaussianMixtureEnergy",
    "MixturePosterior",
    "UNetConfig",
    "list_pretrained",
]
