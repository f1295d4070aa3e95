import math

import deepinv as dinv
import pytest
import torch

from deepinv_energy import Covariance, hartley
from deepinv_energy.problems import physics_matrix

SHAPES = [(1, 4, 6), (2, 3, 5), (3, 4, 4)]


def rand_cov(basis, b, shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Covariance(basis, torch.randn(b, *shape, generator=g, dtype=torch.float64))


@pytest.mark.parametrize("shape", SHAPES)
def test_hartley_orthonormal_symmetric_involution(shape):
    v = rand_cov("hartley", 1, shape).basis_matrix()
    eye = torch.eye(v.shape[0], dtype=torch.float64)
    assert torch.allclose(v.T @ v, eye, atol=1e-12)
    assert torch.allclose(v, v.T, atol=1e-12)
    assert torch.allclose(v @ v, eye, atol=1e-12)
    x = torch.randn(2, *shape, dtype=torch.float64)
    assert torch.allclose(hartley(hartley(x)), x, atol=1e-12)


@pytest.mark.parametrize("basis", ["pixel", "hartley"])
@pytest.mark.parametrize("shape", SHAPES)
def test_apply_powers_compose(basis, shape):
    cov = rand_cov(basis, 2, shape)
    x = torch.randn(2, *shape, dtype=torch.float64)
    for a, b in [(1.0, 1.0), (0.5, -1.0), (-0.5, 2.0)]:
        assert torch.allclose(cov.apply(cov.apply(x, a), b), cov.apply(x, a + b), atol=1e-10)
    dense = cov.dense()
    assert torch.allclose(cov.apply(x).reshape(2, -1), (dense @ x.reshape(2, -1, 1)).squeeze(-1), atol=1e-10)


@pytest.mark.parametrize("basis", ["pixel", "hartley"])
def test_logdet_matches_slogdet(basis):
    cov = rand_cov(basis, 3, (2, 3, 4))
    sign, ref = torch.linalg.slogdet(cov.dense())
    assert (sign > 0).all()
    assert torch.allclose(cov.logdet(), ref, atol=1e-9)
    assert cov.logdet().dtype == torch.float64


@pytest.mark.parametrize("basis", ["pixel", "hartley"])
def test_sample_map_is_sqrt_sigma(basis):
    shape = (1, 4, 5)
    cov = rand_cov(basis, 2, shape)
    d = math.prod(shape)
    # the map z -> sample is z -> apply(z, 1/2); build it densely and compare to Sigma^(1/2)
    eye = torch.eye(d, dtype=torch.float64).reshape(d, *shape)
    maps = torch.stack([cov.with_log_var(cov.log_var[i : i + 1].expand(d, *shape)).apply(eye, 0.5).reshape(d, d).T
                        for i in range(2)])
    dense = cov.dense()
    assert torch.allclose(maps, maps.transpose(-1, -2), atol=1e-12)  # symmetric square root
    assert torch.allclose(maps @ maps, dense, atol=1e-10)
    # and sample() really uses that map on standard normal draws
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    s = cov.sample(generator=g1)
    z = torch.randn(cov.shape, generator=g2, dtype=torch.float64)
    assert torch.allclose(s.reshape(2, -1), (maps @ z.reshape(2, -1, 1)).squeeze(-1), atol=1e-12)


def _circular_physics(kind, kernel, shape):
    if kind == "fft":
        return dinv.physics.BlurFFT(shape, filter=kernel)
    return dinv.physics.Blur(filter=kernel, padding="circular")


@pytest.mark.parametrize("kind", ["fft", "conv"])
@pytest.mark.parametrize("shape,ksize", [((1, 6, 6), (3, 3)), ((2, 5, 6), (3, 2)), ((1, 7, 5), (2, 4))])
def test_hartley_diagonalizes_blur_normal_operator(kind, shape, ksize):
    g = torch.Generator().manual_seed(sum(shape) + sum(ksize))
    kernel = torch.rand(1, 1, *ksize, generator=g, dtype=torch.float64)  # not symmetric
    physics = _circular_physics(kind, kernel, shape)
    a = physics_matrix(physics, shape, 1)[0]
    v = Covariance("hartley", torch.zeros(1, *shape, dtype=torch.float64)).basis_matrix()
    m = v.T @ (a.T @ a) @ v
    off = m - torch.diag(torch.diagonal(m))
    assert off.abs().max() / m.abs().max() < 1e-10
    # the eigenvalues are the kernel's power spectrum
    delta = torch.zeros(1, *shape, dtype=torch.float64)
    delta[..., 0, 0] = 1
    power = torch.fft.fft2(physics.A(delta)).abs() ** 2
    assert torch.allclose(torch.diagonal(m), power.flatten(), atol=1e-12)


def test_isotropic_and_properties():
    like = torch.zeros(3, 2, 4, 4)
    cov = Covariance.isotropic(0.25, like)
    assert torch.allclose(cov.variances, torch.full_like(like, 0.25))
    cov = Covariance.isotropic(torch.tensor([1.0, 2.0, 4.0]), like, basis="hartley")
    assert torch.allclose(cov.logdet().float(), 32 * torch.log(torch.tensor([1.0, 2.0, 4.0])))
    x = torch.randn_like(like)
    assert torch.allclose(cov.apply(x), x * torch.tensor([1.0, 2.0, 4.0]).reshape(3, 1, 1, 1), atol=1e-5)
    assert cov.dim == 32 and cov.shape == like.shape
    # from a standard deviation as deepinv passes it (float or (B,)), floored at lam_min with a warning
    cov = Covariance.from_sigma(torch.tensor([0.5, 1.0, 2.0]), like, basis="hartley")
    assert cov.basis == "hartley" and torch.allclose(cov.variances[:, 0, 0, 0], torch.tensor([0.25, 1.0, 4.0]))
    with pytest.warns(UserWarning, match="lam_min"):
        cov = Covariance.from_sigma(0.0, like, lam_min=1e-4)
    assert torch.allclose(cov.variances, torch.full_like(like, 1e-4))
    with pytest.raises(ValueError, match="sigma"):
        Covariance.from_sigma(torch.ones(2), like)
    with pytest.raises(ValueError, match="sigma"):
        Covariance.from_sigma(float("nan"), like)


def test_bad_inputs():
    with pytest.raises(ValueError, match="basis"):
        Covariance("fourier", torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="finite"):
        Covariance("pixel", torch.full((1, 1, 2, 2), float("nan")))
    with pytest.raises(ValueError, match="shape"):
        Covariance("pixel", torch.zeros(2, 2))
    with pytest.raises(ValueError, match="positive"):
        Covariance.isotropic(-1.0, torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="var"):
        Covariance.isotropic(torch.ones(3), torch.zeros(2, 1, 2, 2))
    with pytest.raises(ValueError, match="d <="):
        Covariance("pixel", torch.zeros(1, 1, 80, 80)).dense()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    cov = rand_cov("hartley", 2, (1, 8, 8))
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    out = cov.to("cuda").apply(x.cuda(), -0.5).cpu()
    assert torch.allclose(out, cov.apply(x, -0.5), atol=1e-12)
