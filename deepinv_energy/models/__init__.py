"""Energy models: the interface, closed-form energies and the learned network."""

from .base import EnergyModel
from .gaussian import GaussianEnergy, GaussianMixtureEnergy, MixturePosterior

__all__ = ["EnergyModel", "GaussianEnergy", "GaussianMixtureEnergy", "MixturePosterior"]
