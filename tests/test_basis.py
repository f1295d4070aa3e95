"""The basis registry, the one variance range, and the size-free energy network.

Closed forms: a stationary Gaussian prior (circulant covariance, diagonal in the Hartley basis
with a known power spectrum) written densely, against the size-free EnergyUNet whose network
term is zero (fresh initialization: its energy is then exactly the stationary diagonal Gaussian).
"""

import json
import math
import pathlib
import re

import deepinv as dinv
import pytest
import torch

from deepinv_energy import Covariance, EnergyUNet, GaussianEnergy
from deepinv_energy.covariance import (
    LAM_MAX,
    LAM_MIN,
    Basis,
    basis_names,
    get_basis,
    pixel_variance,
    register_basis,
    unregister_basis,
)
from deepinv_energy.problems import to_denoising_problem
from deepinv_energy.testing import measurement_posterior

DT = torch.float64
ROOT = pathlib.Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------ registry
def _orthogonal(n, seed):
    q, r = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=DT))
    return q * torch.sign(torch.diagonal(r))


def _matrix_basis(name, h, w, seed):
    """Register a basis given by a fixed random orthogonal matrix Q on the h*w pixels of each channel
    (not symmetric, not an involution, no closed-form pixel variance); returns Q."""
    q = _orthogonal(h * w, seed)

    def fwd(x):
        return (x.reshape(*x.shape[:-2], h * w) @ q.to(x)).reshape(x.shape)  # c = Q^T x, per channel

    def inv(c):
        return (c.reshape(*c.shape[:-2], h * w) @ q.T.to(c)).reshape(c.shape)

    register_basis(Basis(name, fwd, inv, description="random orthogonal (test)"))
    return q


@pytest.fixture
def dummy_basis():
    """A third basis registered at run time (removed afterwards)."""
    yield _matrix_basis("dummy", 3, 4, seed=5)
    unregister_basis("dummy")
    assert "dummy" not in basis_names()


def test_registry_refuses_unknown_and_duplicate_names():
    with pytest.raises(ValueError, match="registered|one of"):
        Covariance("fourier", torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="already registered"):
        register_basis(Basis("pixel", lambda x: x))
    assert basis_names()[:2] == ("pixel", "hartley")


def test_dummy_basis_covariance_and_energy_are_exact(dummy_basis):
    q = dummy_basis
    torch.manual_seed(0)
    y = torch.randn(2, 1, 3, 4, dtype=DT)
    lv = torch.randn(2, 1, 3, 4, dtype=DT)
    cov = Covariance("dummy", lv)
    assert torch.allclose(cov.from_basis(cov.to_basis(y)), y, atol=1e-12)
    dense = cov.dense()
    for i in range(2):
        assert torch.allclose(dense[i], q @ torch.diag(lv[i].exp().reshape(-1)) @ q.T, atol=1e-12)
    # dense fallback of the per-pixel variance
    assert torch.allclose(pixel_variance(lv.exp(), "dummy"), torch.diagonal(dense, dim1=1, dim2=2).reshape(lv.shape),
                          atol=1e-12)
    # a closed-form energy through the same interface: N(mu, C) seen through noise Sigma
    c = _orthogonal(12, seed=9) @ torch.diag(torch.linspace(0.1, 2.0, 12, dtype=DT)) @ _orthogonal(12, seed=9).T
    mu = torch.randn(1, 1, 3, 4, dtype=DT)
    model = GaussianEnergy(mu, c)
    u = model.energy(y, cov)
    for i in range(2):
        m = c + dense[i]
        r = (y[i] - mu[0]).reshape(-1)
        ref = 0.5 * r @ torch.linalg.solve(m, r) + 0.5 * torch.logdet(2 * math.pi * m)
        assert torch.allclose(u[i], ref, atol=1e-10)
    # Tweedie through the dummy basis equals the Wiener mean
    mean = model.denoise(y, cov)
    for i in range(2):
        m = c + dense[i]
        ref = mu[0].reshape(-1) + c @ torch.linalg.solve(m, (y[i] - mu[0]).reshape(-1))
        assert torch.allclose(mean[i].reshape(-1), ref, atol=1e-10)


def test_unet_with_a_third_basis():
    q = _matrix_basis("dummy4", 4, 4, seed=6)
    try:
        _check_unet_with_a_third_basis(q)
    finally:
        unregister_basis("dummy4")


def _check_unet_with_a_third_basis(q):
    model = EnergyUNet(channels=1, height=4, width_px=4, base_channels=8, mult=(1, 2), bases=("pixel", "hartley", "dummy4"),
                       attention=False).double()
    x = torch.rand(64, 1, 4, 4, dtype=DT)
    model.set_data_statistics(x)
    v = (((x - x.mean(0)).reshape(64, 16) @ q) ** 2).mean(0).reshape(1, 4, 4)
    v = torch.maximum(v, 0.1 * v.mean()).clamp_min(1e-4)  # the model's variance floors
    assert torch.allclose(model.data_log_var("dummy4").exp(), v, rtol=1e-5)
    y = torch.rand(2, 1, 4, 4, dtype=DT)
    lv = torch.randn(2, 1, 4, 4, dtype=DT)
    u = model.energy(y, Covariance("dummy4", lv))  # fresh network: exactly the diagonal Gaussian in the basis
    c = ((y - model.mean).reshape(2, 16) @ q).reshape(2, 1, 4, 4)
    s = v + lv.exp()
    ref = 0.5 * (c**2 / s).sum((1, 2, 3)) + 0.5 * torch.log(2 * math.pi * s).sum((1, 2, 3))
    assert torch.allclose(u, ref, atol=1e-10)
    with pytest.raises(ValueError, match="bases"):
        EnergyUNet(channels=1, height=4, width_px=4, base_channels=8, mult=(1, 2)).double().energy(y, Covariance("dummy4", lv))


def test_no_basis_name_compared_outside_the_registry():
    pat = re.compile(r"""([=!]=\s*["'](pixel|hartley)["'])|(["'](pixel|hartley)["']\s*[=!]=)|(in\s*\(\s*["'](pixel|hartley)["'])""")
    bad = []
    for p in sorted((ROOT / "deepinv_energy").rglob("*.py")):
        if p.name == "covariance.py":
            continue
        for i, line in enumerate(p.read_text().splitlines(), 1):
            if pat.search(line):
                bad.append(f"{p.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not bad, "basis names compared outside covariance.py:\n" + "\n".join(bad)


def test_variance_bounds_written_in_one_module():
    pat = re.compile(r"(?<![\w.])(1e-9|1e-09|1e3|1000\.0|1e\+03)(?![\w.])")
    hits = {}
    for p in sorted((ROOT / "deepinv_energy").rglob("*.py")):
        for line in p.read_text().splitlines():
            code = line.split("#")[0]
            if re.search(r"(lam_min|lam_max|LAM_MIN|LAM_MAX|var)\s*[:=][^=]", code) and pat.search(code):
                hits.setdefault(p.name, []).append(line.strip())
    assert set(hits) <= {"covariance.py"}, hits
    assert (LAM_MIN, LAM_MAX) == (1e-9, 1e3)


# ------------------------------------------------------------------------------ stored weights
def test_every_stored_weights_file_gives_the_recorded_energies():
    """Energies recorded with the code before the registry (tests/data/weights_energies.json)."""
    ref = json.loads((ROOT / "tests" / "data" / "weights_energies.json").read_text())
    for key, want in ref.items():
        path, basis = key.rsplit(":", 1)
        if not (ROOT / path).exists():
            pytest.skip(f"{path} not in this checkout")
        model = EnergyUNet.from_pretrained(str(ROOT / path)).double()
        g = torch.Generator().manual_seed(1)
        y = torch.rand(2, 1, 28, 28, generator=g, dtype=DT)
        lvs = {b: torch.randn(2, 1, 28, 28, generator=g, dtype=DT) * 3 - 4 for b in ("pixel", "hartley")}
        got = model.energy(y, Covariance(basis, lvs[basis]))
        assert torch.allclose(got, torch.tensor(want, dtype=DT), rtol=1e-9, atol=1e-7), (key, got, want)


# ------------------------------------------------------------------------------ size-free model
def _stationary_model(channels, white=False):
    """A size-free EnergyUNet with zero network term and a known power-law spectrum per channel."""
    model = EnergyUNet(channels=channels, height=64, width_px=64, base_channels=8, mult=(1, 2), attention=False,
                       size_free=True, v_floor=1e-12, v_floor_rel=0.0).double()
    lf = model.log_freq
    with torch.no_grad():
        for c in range(channels):
            slope = 0.0 if white else -(1.0 + 0.4 * c)
            model.log_psd[c] = math.log(0.02 * (c + 1)) + slope * (lf - math.log(0.1))
            model.mean[c] = 0.3 + 0.1 * c
    return model


def _power(model, h, w):
    r = torch.sqrt(torch.fft.fftfreq(h, dtype=DT).reshape(h, 1) ** 2 + torch.fft.fftfreq(w, dtype=DT).reshape(1, w) ** 2)
    r = r.clamp_min(0.5 / max(h, w))
    lf = model.log_freq
    slope = (model.log_psd[:, 1] - model.log_psd[:, 0]) / (lf[1] - lf[0])  # linear in log-log: exact
    return torch.exp(model.log_psd[:, :1, None] + slope[:, None, None] * (torch.log(r) - lf[0]))


def _dense_prior(model, h, w):
    """The stationary Gaussian prior written densely (pixel coordinates): mean and covariance."""
    C = model.config.channels
    p = _power(model, h, w)  # (C, h, w)
    v = Covariance("hartley", torch.zeros(1, 1, h, w, dtype=DT)).basis_matrix()  # (hw, hw), symmetric
    blocks = [v @ torch.diag(p[c].reshape(-1)) @ v.T for c in range(C)]
    return model.mean.expand(C, h, w)[None].clone(), torch.block_diag(*blocks)


@pytest.mark.parametrize("shape", [(1, 16, 16), (1, 28, 28), (1, 64, 48), (3, 16, 12)])
@pytest.mark.parametrize("basis", ["hartley", "pixel"])
def test_size_free_energy_is_exact_at_every_size(shape, basis):
    C, h, w = shape
    model = _stationary_model(C, white=(basis == "pixel"))  # diagonal in the pixel basis only if white
    mu, cmat = _dense_prior(model, h, w)
    exact = GaussianEnergy(mu, cmat)
    g = torch.Generator().manual_seed(h * w + C)
    y = mu + 0.3 * torch.randn(2, C, h, w, generator=g, dtype=DT)
    cov = Covariance(basis, torch.randn(2, C, h, w, generator=g, dtype=DT) - 4)
    assert torch.allclose(model.energy(y, cov), exact.energy(y, cov), rtol=1e-10, atol=1e-8)
    assert torch.allclose(model.denoise(y, cov), exact.denoise(y, cov), atol=1e-9)
    # per pixel, energies of different sizes are on one scale: the Gaussian limit's log-det term
    big = Covariance.isotropic(LAM_MAX, y, basis)
    per_pixel = model.energy(y, big) / (C * h * w)
    assert torch.allclose(per_pixel, exact.energy(y, big) / (C * h * w), rtol=1e-10)


@pytest.mark.parametrize("shape", [(1, 16, 16), (1, 12, 20), (3, 8, 8)])
def test_size_free_evidence_of_a_circular_blur_is_exact(shape):
    C, h, w = shape
    model = _stationary_model(C)
    mu, cmat = _dense_prior(model, h, w)
    exact = GaussianEnergy(mu, cmat)
    physics = dinv.physics.BlurFFT((C, h, w), filter=dinv.physics.functional.gaussian_blur(sigma=(0.4, 0.4)).to(DT),
                                   noise_model=dinv.physics.GaussianNoise(0.05))
    g = torch.Generator().manual_seed(3)
    x = exact.sample_prior(2, generator=g)
    torch.manual_seed(4)
    y = physics(x)
    # its per-pixel variance (the pixel basis' data variance) is the diagonal of the dense prior
    assert torch.allclose(model.data_log_var("pixel", (h, w)).exp().reshape(-1), torch.diagonal(cmat), rtol=1e-10)
    problem = to_denoising_problem(y, physics)
    assert bool(problem.observed.all()), "a mild blur observes every frequency: the evidence is exact"
    ref = measurement_posterior(exact, y, physics)
    assert torch.allclose(problem.log_evidence(model), ref.log_evidence, atol=1e-6)
    assert torch.allclose(model.denoise(problem.x_tilde, problem.cov).reshape(2, -1), ref.mean().reshape(2, -1), atol=1e-8)


def test_size_free_model_refuses_sizes_it_cannot_take():
    model = EnergyUNet(channels=1, height=16, width_px=16, base_channels=8, mult=(1, 2, 2), size_free=True)
    assert model.image_shape is None
    with pytest.raises(ValueError, match="multiples of 2\\*\\*depth = 4"):
        model.energy(torch.rand(1, 1, 18, 16), Covariance.isotropic(0.1, torch.rand(1, 1, 18, 16)))
    with pytest.raises(ValueError, match="\\(B, 1, H, W\\)"):
        model.energy(torch.rand(1, 3, 16, 16), Covariance.isotropic(0.1, torch.rand(1, 3, 16, 16)))
    with pytest.raises(ValueError, match="set_data_statistics"):
        EnergyUNet(channels=1, height=16, width_px=16, size_free=True, mean=torch.zeros(1, 16, 16))


def test_size_free_statistics_recover_a_stationary_spectrum_and_persist(tmp_path):
    """set_data_statistics on draws of the stationary prior recovers its spectrum (within sampling
    error), and a saved size-free model reloads with identical energies at another size."""
    ref = _stationary_model(1)
    mu, cmat = _dense_prior(ref, 16, 16)
    x = GaussianEnergy(mu, cmat).sample_prior(4000, generator=torch.Generator().manual_seed(0))
    model = EnergyUNet(channels=1, height=16, width_px=16, base_channels=8, mult=(1, 2), attention=False,
                       size_free=True, v_floor=1e-12, v_floor_rel=0.0).double()
    model.set_data_statistics(x.float())
    assert abs(float(model.mean) - 0.3) < 0.01
    got, want = model.data_log_var("hartley", (16, 16)), torch.log(_power(ref, 16, 16))
    assert (got - want).abs().median() < 0.1, (got - want).abs().median()
    model.float().save_pretrained(str(tmp_path), "sf")
    back = EnergyUNet.from_pretrained(str(tmp_path / "sf.json"))
    y = torch.rand(2, 1, 32, 24)
    cov = Covariance("hartley", torch.randn(2, 1, 32, 24))
    assert torch.equal(back.energy(y, cov), model.float().energy(y, cov))


# ------------------------------------------------------------------------- the model's variance range
def test_samplers_and_mmse_use_the_model_trained_range():
    from deepinv_energy import AdaptiveSampler, EnergyMMSE, MALASampler, PredictorCorrectorSampler, SplitGibbsSampler
    from deepinv_energy.models.base import trained_variance_range

    model = EnergyUNet(channels=1, height=8, width_px=8, base_channels=8, mult=(1, 2), lam_min=1e-6, lam_max=100.0)
    assert trained_variance_range(model) == (1e-6, 100.0)
    assert trained_variance_range(GaussianEnergy(torch.zeros(1, 1, 2, 2), torch.eye(4))) == (LAM_MIN, LAM_MAX)
    samplers = [PredictorCorrectorSampler(model, n_levels=4, sigma_max=5.0), MALASampler(model, n_levels=4, sigma_max=5.0),
                AdaptiveSampler(model, sigma_max=5.0), SplitGibbsSampler(model, n_stages=2), EnergyMMSE(model)]
    for s in samplers:
        holder = getattr(s, "iterator", s)
        assert (holder.lam_min, holder.lam_max) == (1e-6, 100.0), type(s).__name__
    # the unobserved pixels of an inpainting problem get the model's lam_max, the observed ones its floor
    mask = torch.ones(1, 1, 8, 8)
    mask[..., 2:5, 2:5] = 0
    physics = dinv.physics.Inpainting((1, 8, 8), mask=mask)
    y = physics(torch.rand(1, 1, 8, 8))
    for s in (samplers[0], samplers[-1]):
        problem = s.iterator.problem(model, y, physics) if hasattr(s, "iterator") else s.problem(y, physics)
        assert torch.allclose(problem.cov.variances.max(), torch.tensor(100.0))
        assert torch.allclose(problem.cov.variances.min(), torch.tensor(1e-6))
    # asked for a range the model was not trained on: it warns
    with pytest.warns(UserWarning, match="outside the variance range the model was trained on"):
        PredictorCorrectorSampler(model, n_levels=4, sigma_max=5.0, lam_max=LAM_MAX)
    with pytest.warns(UserWarning, match="outside the variance range"):
        EnergyMMSE(model, lam_max=LAM_MAX)
