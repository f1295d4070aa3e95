import math


import torch

from deepinv_energy import GaussianMixtureEnergy


def random_mixture(shape=(1, 6, 6), k=3, seed=0, dtype=torch.float64, scale=0.05):
    """A Gaussian mixture with distinct means in [0.2, 0.8] and non-diagonal covariances."""
    g = torch.Generator().manual_seed(seed)
    d = math.prod(shape)
    means = 0.2 + 0.6 * torch.rand(k, *shape, generator=g, dtype=dtype)
    q = torch.randn(k, d, d, generator=g, dtype=dtype)
    covs = scale * q @ q.transpose(-1, -2) / d + 0.01 * torch.eye(d, dtype=dtype)
    weights = 0.5 + torch.rand(k, generator=g, dtype=dtype)
    return GaussianMixtureEnergy(means, covs, weights)


