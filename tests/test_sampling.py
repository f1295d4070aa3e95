r"""Exactness of the energy samplers against closed-form Gaussian-mixture posteriors.

Reference: ``deepinv_energy.testing.measurement_posterior`` (exact, dense, in measurement space).
Each exactness test draws n chains per measurement in ONE batched run (y repeated), for a batch
of B = 2 measurements with per-element masks / kernels / noise levels, in float64.

Tolerance. For every posterior mean entry and every (unique) posterior covariance entry we form
z = (estimate - exact) / standard error, the standard error estimated from the samples
themselves (for covariances, the std of the centred products / sqrt(n): valid for the non-Gaussian
mixture posteriors). With ~150 statistics per element, max |z| exceeds 4.5 with probability
~1e-3 under exact sampling (normal tails), so ``Z_MAX = 4.5`` flags biases above ~1 standard
error once combined with the noise. Discretization bias is controlled by the number of levels:
each configuration below is measured by ``benchmarks/sampler_exactness.py`` (section 1, same
configurations, n = 10^4 draws), where its excess KL over exact draws is <= 0.003 and its max |z|
is 2.8-4.5 (exact draws: 1.6-4.0), i.e. its bias is below one standard error at the n = 2000 used
here. Covariances of Tweedie draws are compared after adding E[Var(x | y_K)] (see ``moment_z``).
Seeds are fixed: the tests are deterministic.
"""

from __future__ import annotations

import math

import deepinv as dinv
import pytest
import torch

from deepinv_energy import Covariance, UnsupportedPhysicsError
from deepinv_energy.sampling import (
    AdaptiveSampler,
    MALASampler,
    PredictorCorrectorSampler,
    SamplerDiagnostics,
    check_schedule,
    geometric_schedule,
    pixel_variance,
)
from helpers import random_mixture
from deepinv_energy.testing import ADAPTIVE_CASE as ADAPTIVE_EXACT
from deepinv_energy.testing import SAMPLER_CASES as CASES
from deepinv_energy.testing import bimodal_problem, gaussian_kl, mode_weights, moment_z
from deepinv_energy.testing import level_target as _level_target
from deepinv_energy.testing import mixture_problem as build
from deepinv_energy.testing import tweedie_extra_var as extra_var

DT = torch.float64
Z_MAX = 4.5
N_DRAWS = 2000  # per measurement; B = 2 measurements -> 4000 chains in one batch


# ---------------------------------------------------------------------------------------- helpers
def mean_kl(out, ref) -> float:
    """Mean over the batch of the Gaussian-fit KL of a SamplerOutput (or of exact draws (n, B, ...))."""
    x = out if isinstance(out, torch.Tensor) else out.x
    n, b = x.shape[:2]
    return sum(
        gaussian_kl(x[:, i].reshape(n, -1), ref.mean()[i].reshape(-1), ref.covariance()[i],
                    None if isinstance(out, torch.Tensor) else extra_var(out, i))
        for i in range(b)
    ) / b


def assert_matches(out, ref, z_max=Z_MAX):
    n, b = out.x.shape[:2]
    for i in range(b):
        xs = out.x[:, i].reshape(n, -1)
        zm, zc = moment_z(xs, ref.mean()[i].reshape(-1), ref.covariance()[i], extra_var(out, i))
        assert zm < z_max and zc < z_max, f"element {i}: max|z| mean {zm:.2f}, cov {zc:.2f}"


# ---------------------------------------------------------------------------------------- exactness
# CASES (every physics, both predictors, with and without MH) and ADAPTIVE_EXACT: the
# configurations of deepinv_energy.testing, measured by the benchmark's section 1 too.
@pytest.mark.parametrize("name,shape,factory,label", CASES, ids=[c[0] for c in CASES])
def test_posterior_moments_match_exact(name, shape, factory, label):
    model, physics, y, ref = build(name, shape)
    sampler = factory(model)
    out = sampler.draw(y, physics, n=N_DRAWS, seed=0)
    assert out.x.shape == (N_DRAWS, 2, *shape)
    assert_matches(out, ref)
    d = sampler.diagnostics
    n_levels = len(sampler.sigmas)
    # one evaluation per level (plus the corrector's) once some coefficient is free
    lam_obs = sampler.iterator.problem(model, y, physics).cov.variances
    free = [bool((lam_obs > float(s) ** 2).any()) for s in sampler.sigmas]
    n_c = sampler.iterator.n_corrector
    assert d.nfe == 1 + n_c * free[0] + (1 + n_c) * sum(free[1:]) and (d.nfe_per_chain == d.nfe).all()
    assert d.energy_trace.shape == (n_levels, 2 * N_DRAWS) and torch.isfinite(d.energy_trace).all()
    if sampler.iterator.mh:
        assert 0.3 < float(d.acceptance_rate.nanmean()) <= 1.0
    # per-pixel posterior variance map (law of total variance) vs the exact diagonal
    var_exact = torch.diagonal(ref.covariance(), dim1=-2, dim2=-1).reshape(2, *shape)
    rel = (out.var() - var_exact).abs() / var_exact.clamp(min=1e-3)
    assert float(rel.max()) < 0.2  # 2000 draws: relative SE of a variance <= ~0.05 (heavy-tailed mixtures)


def test_unconditional_generation_matches_prior():
    model = random_mixture((1, 4, 4), k=3, seed=5)
    sampler = PredictorCorrectorSampler(model, n_levels=30, n_corrector=0, predictor="covariance")
    out = sampler.generate(2000, (1, 4, 4), seed=1)
    lw, mus, covs = model.log_weights.exp(), model.means.reshape(3, -1), model.covs
    mean = (lw[:, None] * mus).sum(0)
    dm = mus - mean
    cov = (lw[:, None, None] * (covs + dm[:, :, None] * dm[:, None, :])).sum(0)
    zm, zc = moment_z(out.x[:, 0].reshape(2000, -1), mean, cov, extra_var(out, 0))
    assert zm < Z_MAX and zc < Z_MAX, (zm, zc)


# ---------------------------------------------------------------------------------------- MALA
def _corrector_only(model, physics, y, s_lvl, n=2000, **kwargs):
    sampler = PredictorCorrectorSampler(model, sigmas=[s_lvl], n_corrector=50, **kwargs)
    out = sampler.draw(y, physics, n=n, seed=2)
    return out.y[:, 0].reshape(n, -1), float(sampler.diagnostics.acceptance_rate.mean())


def test_mala_removes_the_bias_of_the_unadjusted_corrector():
    r"""Corrector only, at one level, with a large fixed step: the unadjusted chain's stationary law
    is measurably wider than the level target, MALA's is exact.

    With preconditioned curvature :math:`\kappa \le 1` and step :math:`\eta = 0.5`, ULA on a
    Gaussian inflates variances by :math:`1 / (1 - \eta\kappa/2)` (up to +33 %); the benchmark
    measures +22 % (trace) for ULA and 1.00 for MALA at n = 10^4.
    """
    model, physics, y, s_lvl, target = _level_target()
    t_mean, t_cov = target.mean().reshape(-1), target.covariance()[0]
    trace = torch.trace(t_cov)
    ys_u, acc_u = _corrector_only(model, physics, y, s_lvl, step_size=0.5, mh=False)
    ys_m, acc_m = _corrector_only(model, physics, y, s_lvl, step_size=0.5, mh=True)
    ratio_u, ratio_m = float(torch.trace(torch.cov(ys_u.T)) / trace), float(torch.trace(torch.cov(ys_m.T)) / trace)
    zm_u, zc_u = moment_z(ys_u, t_mean, t_cov)
    zm_m, zc_m = moment_z(ys_m, t_mean, t_cov)
    assert ratio_u > 1.12 and zc_u > Z_MAX, (ratio_u, zc_u)  # unadjusted: biased beyond the tolerance
    assert abs(ratio_m - 1) < 0.05 and zm_m < Z_MAX and zc_m < Z_MAX, (ratio_m, zm_m, zc_m)  # MALA: exact
    assert 0.5 < acc_m < 0.95 and 0.5 < acc_u < 0.95  # ULA's value: the acceptance MALA would have had


def test_mala_needs_the_proposal_log_determinant(monkeypatch):
    """With the snr rule the step size depends on the state, so forward and backward proposals have
    different variances: dropping their log-determinant (a pitfall of the paper's code) biases the
    chain (the benchmark measures a variance ratio of ~0.5); the full densities are exact."""
    from deepinv_energy.sampling import engine

    model, physics, y, s_lvl, target = _level_target()
    t_mean, t_cov = target.mean().reshape(-1), target.covariance()[0]
    ys, acc = _corrector_only(model, physics, y, s_lvl, snr=0.3, mh=True)
    zm, zc = moment_z(ys, t_mean, t_cov)
    assert zm < Z_MAX and zc < Z_MAX and acc > 0.4, (zm, zc, acc)

    def log_q_without_logdet(to, mean, eta, lv, temperature):
        var = 2 * temperature * eta.view(-1, 1, 1, 1) * lv.p
        return -0.5 * torch.where(lv.free, (to - mean) ** 2 / torch.where(lv.free, var, 1.0), 0.0).flatten(1).sum(1)

    monkeypatch.setattr(engine.Chains, "_log_q", staticmethod(log_q_without_logdet))
    ys_bad, _ = _corrector_only(model, physics, y, s_lvl, snr=0.3, mh=True)
    ratio = float(torch.trace(torch.cov(ys_bad.T)) / torch.trace(t_cov))
    assert ratio < 0.8 and moment_z(ys_bad, t_mean, t_cov)[1] > 2 * Z_MAX, ratio


def test_mh_ratio_uses_full_proposal_densities():
    """With an exact Gaussian target, detailed balance holds: the MH log-ratio of a move and of its
    reverse are opposite, including the log-determinant of state-dependent step sizes (snr rule)."""
    from deepinv_energy.sampling.engine import Chains

    model = random_mixture((1, 4, 4), k=2, seed=1)
    physics = dinv.physics.Denoising(noise_model=dinv.physics.GaussianNoise(0.2))
    y = torch.rand(3, 1, 4, 4, dtype=DT)
    sampler = PredictorCorrectorSampler(model, sigmas=[0.1], n_corrector=1)
    problem = sampler.iterator.problem(model, y, physics)
    ch = Chains(model, problem, 1, torch.Generator().manual_seed(0), DT)
    lam = torch.clamp(ch.lam_obs, max=0.01)
    lv = ch.level(lam)
    c0 = ch.start(lam)
    c1 = ch.start(lam)
    e0, e1 = ch.evaluate(c0, lam), ch.evaluate(c1, lam)
    g0, g1 = ch.grad_log_pi(c0, e0, lv), ch.grad_log_pi(c1, e1, lv)
    eta0 = ch._eta(g0, lv, 0.15, None, lv.n_free > 0)
    eta1 = ch._eta(g1, lv, 0.15, None, lv.n_free > 0)
    assert not torch.allclose(eta0, eta1)  # state-dependent steps: the log-det term matters

    # the Gaussian proposal density integrates its own samples correctly: compare to torch.distributions
    v = 2 * eta0.view(-1, 1, 1, 1) * lv.p
    mean = c0 + eta0.view(-1, 1, 1, 1) * lv.p * g0
    ref = torch.distributions.Normal(mean, v.sqrt()).log_prob(c1).flatten(1).sum(1)
    assert torch.allclose(ch._log_q(c1, mean, eta0, lv, 1.0), ref, atol=1e-8)


# ---------------------------------------------------------------------------------------- step weights
def _gaussian_step(predictor, seed=0):
    """One reverse step a -> b on a Gaussian prior N(mu, diag(c)) (pixel basis, denoising at noise
    0.5, every coefficient free) with per-coefficient steps D; returns the engine's log w and the
    closed form log p(b | a) - log q(b | a), p the exact reverse kernel
    N(a - D (a - mu) / (c + lam_old), D (c + lam_new) / (c + lam_old))."""
    from deepinv_energy import GaussianEnergy
    from deepinv_energy.sampling.engine import Chains

    g = torch.Generator().manual_seed(seed)
    mu = torch.rand(1, 1, 3, 3, generator=g, dtype=DT)
    c = 0.01 + 0.2 * torch.rand(9, generator=g, dtype=DT)
    model = GaussianEnergy(mu, torch.diag(c))
    physics = dinv.physics.Denoising(noise_model=dinv.physics.GaussianNoise(0.5))
    y = torch.rand(2, 1, 3, 3, generator=g, dtype=DT)
    problem = PredictorCorrectorSampler(model, n_levels=2).iterator.problem(model, y, physics)
    ch = Chains(model, problem, 50, g, DT)
    ch.second_order = predictor == "covariance"
    lam_old = torch.full_like(ch.xc, 0.1)
    lam_new = lam_old * torch.exp(-2 * torch.rand(ch.xc.shape, generator=g, dtype=DT))  # D differs per coefficient
    a = ch.start(lam_old)
    ev_a = ch.evaluate(a, lam_old)
    b, mean, var = ch.predictor(a, ev_a, lam_old, lam_new)
    ev_b = ch.evaluate(b, lam_new)
    log_w = ch.step_log_weight(a, ev_a, lam_old, b, ev_b, lam_new, mean, var)
    cc = c.reshape(1, 1, 3, 3)
    d = lam_old - lam_new
    exact = torch.distributions.Normal(a - d * (a - mu) / (cc + lam_old), torch.sqrt(d * (cc + lam_new) / (cc + lam_old)))
    q = torch.distributions.Normal(mean, torch.sqrt(var))
    return log_w, (exact.log_prob(b) - q.log_prob(b)).flatten(1).sum(1)


@pytest.mark.parametrize("predictor", ["covariance", "euler"])
def test_step_log_weight_matches_the_exact_reverse_kernel(predictor):
    """On a Gaussian prior the ratio of the exact joint law of two levels to the sampler's is
    p(b | a) / q(b | a) in closed form: identically 1 for the covariance predictor (its variance
    D - D^2 H is then the exact reverse kernel's), and a non-trivial function of b for Euler steps
    (whose variance D differs, so the log-determinants matter). Needs the energy values at both
    levels (normalized) and both Gaussian densities in full."""
    log_w, closed = _gaussian_step(predictor)
    assert torch.allclose(log_w, closed, atol=1e-9, rtol=0), (log_w - closed).abs().max()
    if predictor == "covariance":
        assert float(log_w.abs().max()) < 1e-9
    else:
        assert float(log_w.std()) > 0.1  # the check above is not vacuous


def test_path_kl_is_zero_for_an_exact_reverse_diffusion_and_falls_with_the_steps():
    """Over a whole run: the covariance predictor on a Gaussian prior is exact (path KL 0 up to
    rounding, for fixed and adaptive schedules); Euler steps are not, and their path KL (mean of
    -sum log w, an estimate of KL(sampler path || exact path)) falls as the schedule is refined."""
    from deepinv_energy import GaussianEnergy

    g = torch.Generator().manual_seed(1)
    model = GaussianEnergy(torch.rand(1, 1, 3, 3, generator=g, dtype=DT), torch.diag(0.01 + 0.2 * torch.rand(9, generator=g, dtype=DT)))
    physics = dinv.physics.Denoising(noise_model=dinv.physics.GaussianNoise(0.3))
    y = torch.rand(1, 1, 3, 3, generator=g, dtype=DT)
    for sampler in (PredictorCorrectorSampler(model, n_levels=20, n_corrector=0, predictor="covariance"),
                    AdaptiveSampler(model, tolerance=0.2, predictor="covariance", mh=False)):
        sampler.draw(y, physics, n=200, seed=0)
        assert float(sampler.diagnostics.path_kl.abs().max()) < 1e-7
    kl = []
    for n_levels in (10, 40):
        sampler = PredictorCorrectorSampler(model, n_levels=n_levels, n_corrector=0)
        sampler.draw(y, physics, n=2000, seed=0)
        kl.append(float(sampler.diagnostics.path_kl.mean()))
    assert kl[0] > 3 * kl[1] > 0, kl


# ---------------------------------------------------------------------------------------- adaptive
def test_adaptive_matches_exact():
    name, shape, factory, _ = ADAPTIVE_EXACT
    model, physics, y, ref = build(name, shape)
    sampler = factory(model)
    out = sampler.draw(y, physics, n=N_DRAWS, seed=0)
    assert_matches(out, ref)
    d = sampler.diagnostics
    assert d.nfe_per_chain.max() <= d.nfe and float(d.nfe_per_chain.double().mean()) < 60


def test_adaptive_beats_the_fixed_schedule_at_equal_nfe():
    """Same predictor (Euler), same number of evaluations: the fixed geometric schedule's excess
    KL (over exact draws) is larger than the adaptive schedule's. Measured over seeds 0-3 at this n
    the ratio is 1.6-2.3; at n = 10^4 the benchmark finds the fixed schedule needs 1.3-1.55x the
    NFE of the adaptive one at equal error (section 3 of benchmarks/results/sampler_exactness.md).
    """
    model, physics, y, ref = build("inpainting", (1, 4, 4))
    adaptive = AdaptiveSampler(model, tolerance=0.05)
    kl_a = mean_kl(adaptive.draw(y, physics, n=N_DRAWS, seed=0), ref)
    nfe = float(adaptive.diagnostics.nfe_per_chain.double().mean())
    fixed = PredictorCorrectorSampler(model, n_levels=math.ceil(nfe), n_corrector=0)
    kl_f = mean_kl(fixed.draw(y, physics, n=N_DRAWS, seed=0), ref)
    kl_exact = mean_kl(ref.sample(N_DRAWS, generator=torch.Generator().manual_seed(10)).reshape(N_DRAWS, 2, 1, 4, 4), ref)
    assert fixed.diagnostics.nfe >= nfe
    assert kl_f - kl_exact > 1.3 * (kl_a - kl_exact), (kl_a, kl_f, kl_exact, nfe)


def test_adaptive_paper_rule_and_trace():
    model, physics, y, _ = build("decimation", (1, 4, 4))
    sampler = AdaptiveSampler(model, rule="covariance_score", gamma=1.0, min_decrease=0.2, n_samples=2)
    out = sampler.draw(y, physics, n=3, seed=0)
    d = sampler.diagnostics
    assert out.x.shape == (3, 2, 1, 4, 4) and torch.isfinite(out.x).all()
    assert d.energy_trace.shape[0] == d.n_levels and d.log_variance_trace.shape == d.energy_trace.shape
    # log-variances go down monotonically, to log(sigma_min^2) on unobserved coefficients
    lv = d.log_variance_trace
    assert (lv[1:] <= lv[:-1] + 1e-12).all()
    assert torch.allclose(out.lam[~sampler.iterator.problem(model, y, physics).observed.expand(3, -1, -1, -1, -1)],
                          torch.tensor(1e-4, dtype=DT))


def test_adaptive_path_is_shared_by_the_draws_of_a_measurement_and_pilots_are_dropped():
    """The path comes from pilot chains, not from each returned chain's own state (a
    state-dependent path is biased): all draws of one measurement end on the same variances at
    every step, the measurements of a batch keep their own paths, and the pilots are not returned."""
    model, physics, y, _ = build("inpainting", (1, 4, 4))
    traces = []
    sampler = AdaptiveSampler(model, tolerance=0.1, pilots=2, level_callback=lambda st: traces.append(st["lam"]))
    out = sampler.draw(y, physics, n=3, seed=0)
    assert out.x.shape == (3, 2, 1, 4, 4) and sampler.diagnostics.nfe_per_chain.shape == (6,)
    for lam in traces:  # (n * B, C, H, W), draw-major
        lam = lam.reshape(3, 2, -1)
        assert torch.equal(lam, lam[:1].expand_as(lam))
    assert any(not torch.equal(lam.reshape(3, 2, -1)[0, 0], lam.reshape(3, 2, -1)[0, 1]) for lam in traces)
    assert len({int(v) for v in sampler.diagnostics.nfe_per_chain}) <= 2  # one count per measurement


@pytest.mark.parametrize("predictor, ratio", [("euler", 20), ("covariance", 5)])
def test_adaptive_is_exact_on_a_bimodal_posterior_and_its_error_falls_with_the_tolerance(predictor, ratio):
    """400 measurements (independent paths) x 4 draws. At tolerance 0.05 the draws match the exact
    bimodal posterior (moments and mode weights); at 0.4 the excess KL over the exact-draw floor is
    larger: Euler predictor 1.13 vs 0.013 (about 90 times), covariance predictor (the default)
    0.107 vs -0.003 (within Monte Carlo error of the floor; required 5 x max(that, 0.01))."""
    model, physics, y, ref = bimodal_problem()
    b, n = 400, 4
    yb = y.repeat(b, 1, 1, 1)
    mean, cov = ref.mean()[0].reshape(-1), ref.covariance()[0]
    w = ref.log_weights.exp()[0]
    assert 0.4 < float(w[0]) < 0.55 and 0.4 < float(w[1]) < 0.55
    exact = ref.sample(b * n, generator=torch.Generator().manual_seed(5)).reshape(b * n, -1)
    floor = gaussian_kl(exact, mean, cov)
    kl = {}
    for tol in (0.4, 0.05):
        sampler = AdaptiveSampler(model, tolerance=tol, predictor=predictor)
        out = sampler.draw(yb, physics, n=n, seed=0)
        xs, ev = out.x.reshape(b * n, -1), out.variance.reshape(b * n, -1).mean(0)
        kl[tol] = gaussian_kl(xs, mean, cov, ev) - floor
        if tol == 0.05:
            zm, zc = moment_z(xs, mean, cov, ev)
            assert zm < Z_MAX and zc < Z_MAX, (zm, zc)
            z_w = (mode_weights(ref, xs) - w) / torch.sqrt(w * (1 - w) / (b * n))
            assert float(z_w.abs().max()) < 4, z_w
    assert kl[0.4] > ratio * max(kl[0.05], 0.01), kl


BIMODAL_CASES = [("denoising", 0.15), ("inpainting", 0.15), ("blur", 0.05)]


@pytest.mark.slow
@pytest.mark.parametrize("physics,noise", BIMODAL_CASES, ids=[c[0] for c in BIMODAL_CASES])
def test_adaptive_default_is_exact_on_bimodal_posteriors(physics, noise):
    """AdaptiveSampler at its DEFAULT settings, 4000 draws of one measurement (one shared path),
    float64, against the exact posterior of a mixture with narrow, separated modes (scale 0.02):
    max |z| of the mean < 4, every per-pixel variance within 10 %, mode weights within 4 standard
    errors. At the former default tolerance 0.05 denoising and inpainting fail (measured with seeds
    0 and 1: max z 4.2-5.6, variance errors 12-14 %, mode weights 5.8-8.4 standard errors off)."""
    model, op, y, ref = bimodal_problem(physics, noise, seed=1, scale=0.02)
    n = 4000
    out = AdaptiveSampler(model).draw(y, op, n=n, seed=0)
    xs = out.x[:, 0].reshape(n, -1)
    mean, cov = ref.mean()[0].reshape(-1), ref.covariance()[0]
    z_mean = float(((xs.mean(0) - mean) / torch.sqrt(torch.diagonal(cov) / n)).abs().max())
    var_err = float(((out.var()[0].reshape(-1) - torch.diagonal(cov)).abs() / torch.diagonal(cov)).max())
    w = ref.log_weights.exp()[0]
    z_w = float(((mode_weights(ref, xs) - w) / torch.sqrt(w * (1 - w) / n)).abs().max())
    assert z_mean < 4 and var_err < 0.10 and z_w < 4, (z_mean, var_err, z_w)


# ---------------------------------------------------------------------------------------- deepinv API
def test_deepinv_interface_seed_callbacks_and_float32():
    model32 = random_mixture((1, 4, 4), k=2, seed=2).to(torch.float32)
    physics = dinv.physics.Inpainting((1, 4, 4), mask=torch.ones(1, 1, 4, 4).bernoulli_(0.6, generator=torch.Generator().manual_seed(0)),
                                      noise_model=dinv.physics.GaussianNoise(0.05))
    y = physics(model32.sample_prior(2, generator=torch.Generator().manual_seed(1)).float())
    seen, levels = [], []
    sampler = MALASampler(model32, n_levels=10, n_samples=5, parallel=2, predictor="covariance",
                          callback=lambda X, **kw: seen.append(kw["iter"]), level_callback=lambda s: levels.append(s["level"]))
    mean, var = sampler.sample(y, physics, seed=3)
    assert mean.shape == y.shape and var.shape == y.shape and mean.dtype == torch.float32
    assert torch.isfinite(mean).all() and (var >= 0).all()
    assert seen == [0, 1, 2, 3] and levels[:10] == list(range(10))
    assert sampler.diagnostics.nfe_per_chain.shape == (2 * 5,)  # 3 runs (2 + 2 + 1 draws) of 2 elements
    assert sampler.diagnostics.nfe == 3 * 20
    assert float(sampler.diagnostics.acceptance_rate.mean()) > 0.3  # float32 energies, float64 ratios
    again, _ = sampler.sample(y, physics, seed=3)
    assert torch.equal(mean, again)  # same seed, same result
    assert torch.equal(sampler(y, physics, seed=3), mean)  # deepinv forward = posterior mean
    assert len(sampler.get_chain()) == 5 and "var" in sampler.get_chain()[-1]


def test_learned_energy_unet_runs_unchanged():
    """The samplers use only ``energy_and_grads``: a (small, untrained) float32 EnergyUNet runs as is."""
    unet = pytest.importorskip("deepinv_energy.models.unet")
    model = unet.EnergyUNet(unet.UNetConfig(channels=1, height=8, width_px=8, base_channels=8, mult=(1, 2), num_res=1)).eval()
    mask = torch.ones(2, 1, 8, 8)
    mask[0, ..., 2:6, 2:6] = 0
    physics = dinv.physics.Inpainting((1, 8, 8), mask=mask, noise_model=dinv.physics.ZeroNoise())
    y = physics(torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
    for sampler in (MALASampler(model, n_levels=6, predictor="covariance"), AdaptiveSampler(model, tolerance=0.3)):
        out = sampler.draw(y, physics, n=2, seed=0)
        assert out.x.dtype == torch.float32 and torch.isfinite(out.x).all() and torch.isfinite(out.variance).all()
        observed = mask.bool().expand(2, -1, -1, -1)
        assert torch.equal(out.y[:, observed], y[observed].expand(2, -1))  # noise-free pixels stay pinned


@pytest.mark.parametrize("basis", ["pixel", "hartley"])
def test_closed_form_mixture_grads_equal_autograd(basis):
    """GaussianMixtureEnergy's closed-form (U, g, h) equals the generic autograd path."""
    from deepinv_energy import EnergyModel

    model = random_mixture((2, 4, 4), k=3, seed=4)
    y = torch.rand(5, 2, 4, 4, dtype=DT)
    lv = torch.randn(5, 2, 4, 4, dtype=DT)
    lv[3] = lv[1]  # repeated covariances share a factorization
    for n in (5, 25):  # few distinct covariances (grouped) and many (batched einsum)
        yy, ll = y.repeat(n // 5, 1, 1, 1), lv.repeat(n // 5, 1, 1, 1) + torch.arange(n // 5).repeat_interleave(5).reshape(-1, 1, 1, 1)
        cov = Covariance(basis, ll)
        for a, b in zip(model.energy_and_grads(yy, cov), EnergyModel.energy_and_grads(model, yy, cov)):
            assert torch.allclose(a, b, atol=1e-10)


def test_pixel_variance_of_hartley_diagonal_is_exact():
    v = torch.rand(2, 3, 4, 6, dtype=DT)
    cov = Covariance("hartley", torch.log(v))
    dense = torch.diagonal(cov.dense(), dim1=-2, dim2=-1).reshape(2, 3, 4, 6)
    assert torch.allclose(pixel_variance(v, "hartley"), dense, atol=1e-12)


def test_diagnostics_concat_pads_levels():
    def diag(levels, n):
        t = torch.zeros(levels, n, dtype=DT)
        return SamplerDiagnostics(levels, torch.full((n,), levels), t, t, t, t)

    d = SamplerDiagnostics.concat([diag(3, 2), diag(5, 1)])
    assert d.energy_trace.shape == (5, 3) and torch.isnan(d.energy_trace[3:, :2]).all() and d.nfe == 8


# ---------------------------------------------------------------------------------------- bad input
class _CountingModel(torch.nn.Module):
    """Wraps an energy model and counts evaluations (bad input must fail before any)."""

    def __init__(self, model):
        super().__init__()
        self.inner, self.calls = model, 0
        self.image_shape = model.image_shape

    def energy_and_grads(self, *args, **kwargs):
        self.calls += 1
        return self.inner.energy_and_grads(*args, **kwargs)


def test_schedules():
    s = geometric_schedule(10.0, 0.01, 4)
    assert torch.allclose(s, torch.tensor([10.0, 1.0, 0.1, 0.01], dtype=DT))
    for args, match in [((0.01, 10.0, 4), "decrease"), ((1.0, 0.1, 0), "n must"), ((-1.0, 0.1, 3), "sigma_max"),
                        ((1.0, 1.0, 3), "strictly"), ((1.0, float("nan"), 3), "sigma_min")]:
        with pytest.raises(ValueError, match=match):
            geometric_schedule(*args)
    with pytest.raises(ValueError, match=r"sigmas\[1\]"):
        check_schedule([1.0, 0.5, 0.7])
    with pytest.raises(ValueError, match="lam_min"):
        check_schedule([1.0, 1e-6], lam_min=1e-9)
    with pytest.raises(ValueError, match="lam_max"):
        check_schedule([100.0, 1.0], lam_max=1e3)


def test_bad_inputs_fail_before_any_evaluation():
    model = _CountingModel(random_mixture((1, 4, 4), k=2, seed=0))
    den = dinv.physics.Denoising(noise_model=dinv.physics.GaussianNoise(0.1))
    y = torch.rand(2, 1, 4, 4, dtype=DT)
    sampler = PredictorCorrectorSampler(model, n_levels=5)
    with pytest.raises(UnsupportedPhysicsError, match="CompressedSensing"):
        sampler.draw(y, dinv.physics.CompressedSensing(m=8, img_size=(1, 4, 4)))
    with pytest.raises(ValueError, match="NaN"):
        sampler.draw(y * float("nan"), den)
    with pytest.raises(ValueError, match="inf"):
        sampler.sample(y.clone().fill_(float("inf")), den)
    with pytest.raises(ValueError, match=r"shape \(1, 4, 4\)"):
        sampler.draw(torch.rand(2, 1, 5, 5, dtype=DT), den)
    with pytest.raises(ValueError, match="shape"):
        sampler.draw(y, dinv.physics.Inpainting((1, 6, 6), mask=torch.ones(1, 1, 6, 6)))
    with pytest.raises(ValueError, match="x_init"):
        sampler.sample(y, den, x_init=y)
    with pytest.raises(ValueError, match="n must"):
        sampler.draw(y, den, n=0)
    with pytest.raises(ValueError, match="image_shape"):
        sampler.generate(3, (4, 4))
    assert model.calls == 0
    for kwargs, match in [
        (dict(sigmas=[0.1, 0.5]), "strictly decrease"),
        (dict(sigmas=[0.1, float("nan")]), "positive and finite"),
        (dict(step_size=0.0), "step_size must be a positive"),
        (dict(step_size=-1.0), "step_size"),
        (dict(snr=0), "snr"),
        (dict(temperature=-1), "temperature"),
        (dict(n_corrector=-1), "n_corrector"),
        (dict(n_corrector=1.5), "n_corrector"),
        (dict(predictor="heun"), "predictor must be one of"),
        (dict(sigma_max=100.0), "lam_max"),
        (dict(sigma_min=1e-6), "lam_min"),
        (dict(n_samples=1), "n_samples"),
        (dict(mh="yes"), "mh must be"),
    ]:
        with pytest.raises(ValueError, match=match):
            PredictorCorrectorSampler(model, **kwargs)
    for kwargs, match in [(dict(tolerance=0), "tolerance"), (dict(gamma=-1.0), "gamma"), (dict(rule="h"), "rule must"),
                          (dict(min_decrease=1.0, max_decrease=0.5), "min_decrease <= max_decrease"),
                          (dict(sigma_min=20.0), "decrease"), (dict(max_steps=0), "max_steps")]:
        with pytest.raises(ValueError, match=match):
            AdaptiveSampler(model, **kwargs)
    with pytest.raises(TypeError, match="EnergyModel"):
        PredictorCorrectorSampler(torch.nn.Identity())
    with pytest.raises(TypeError, match="always Metropolis"):
        MALASampler(model, mh=False)
    assert model.calls == 0


def test_absurd_unadjusted_step_size_warns():
    """A fixed corrector step beyond the stability of the unadjusted Langevin step (e.g. 1e6, which
    returned values of 2e4) warns; with the Metropolis step, or a step <= 1, it does not."""
    import warnings

    model = random_mixture((1, 4, 4), k=2, seed=3)
    with pytest.warns(UserWarning, match="step_size=1e\\+06 > 1 without the Metropolis step"):
        PredictorCorrectorSampler(model, n_levels=4, step_size=1e6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PredictorCorrectorSampler(model, n_levels=4, step_size=1e6, mh=True)
        PredictorCorrectorSampler(model, n_levels=4, step_size=0.5)
