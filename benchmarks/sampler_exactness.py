r"""Exactness of the energy samplers against closed-form Gaussian-mixture posteriors.

Writes ``benchmarks/results/sampler_exactness.md`` (and ``sampler_exactness.png``):

1. per physics (denoising, noisy / noise-free inpainting, circular blur, decimation; a batch of
   two measurements with per-element masks, kernels and noise levels), the errors of the
   posterior mean and covariance of n draws per measurement against the exact posterior, for
   each sampler configuration, next to exact posterior samples (the Monte-Carlo floor);
2. the value of the Metropolis-Hastings step: corrector only, at one level, over a sweep of step
   sizes, unadjusted Langevin vs MALA (and MALA without the proposal log-determinant, with the
   state-dependent snr step);
3. evaluations (NFE) against error for fixed geometric schedules and the adaptive schedules,
   and the NFE each needs at equal error (ratio adaptive / best fixed schedule);
4. bimodal posteriors with narrow, separated modes (the problems of the adaptive sampler's
   default-settings test): NFE each schedule needs to pass the test's criteria and to reach a
   given excess KL, adaptive (the default tolerance marked) vs fixed schedules, with and without
   Metropolis-adjusted correctors, and the path KL of the exact step weights.

Error metric: the KL divergence between the Gaussian fits
:math:`\mathrm{KL}(\mathcal{N}(\hat m, \hat C) \| \mathcal{N}(m, C))` of the draws and of the exact
posterior, minus the same quantity for exact draws (its Monte-Carlo floor, about
:math:`(d + d(d+1)/2) / (2n)`): the "excess KL", mean over the two measurements. Also the max
|z| of the mean and covariance entries, as in ``tests/test_sampling.py``. A sampler's covariance
estimate is the covariance of its Tweedie draws plus the diagonal of
:math:`\mathbb{E}[\operatorname{Cov}(x \mid y_K)]` it returns (law of total covariance).

The energy is the exact mixture energy (:class:`~deepinv_energy.GaussianMixtureEnergy`, closed-form
gradients, checked against autograd in the tests). Run: ``python benchmarks/sampler_exactness.py [--n 10000]``.
"""

from __future__ import annotations

import argparse
import inspect
import math
import pathlib
import time

import torch

from deepinv_energy import Covariance, to_denoising_problem
from deepinv_energy.testing import ADAPTIVE_CASE as ADAPTIVE_EXACT
from deepinv_energy.testing import SAMPLER_CASES as CASES
from deepinv_energy.testing import bimodal_problem, gaussian_kl, level_target, mode_weights, moment_z
from deepinv_energy.testing import mixture_problem as build
from deepinv_energy.testing import tweedie_extra_var as extra_var
from deepinv_energy.sampling import AdaptiveSampler, PredictorCorrectorSampler

ROOT = pathlib.Path(__file__).resolve().parents[1]
#: the adaptive sampler's default tolerance (marked in the tables)
DEFAULT_TOL = inspect.signature(AdaptiveSampler).parameters["tolerance"].default

DT = torch.float64
OUT = ROOT / "benchmarks" / "results"


# ---------------------------------------------------------------------------------------- metrics
def metrics(out, ref):
    """``out``: SamplerOutput, or exact draws (n, B, C, H, W). Mean over elements of the KL, max
    over elements of the rest. For a sampler the covariance estimate is the covariance of its
    Tweedie draws plus the diagonal of E[Cov(x | y_K)] (law of total covariance)."""
    x = out if isinstance(out, torch.Tensor) else out.x
    n, b = x.shape[:2]
    kls, zms, zcs, em, ec = [], [], [], [], []
    for i in range(b):
        xs = x[:, i].reshape(n, -1)
        m, c = ref.mean()[i].reshape(-1), ref.covariance()[i]
        extra = None if isinstance(out, torch.Tensor) else extra_var(out, i)
        kls.append(gaussian_kl(xs, m, c, extra))
        zm, zc = moment_z(xs, m, c, extra)
        zms.append(zm), zcs.append(zc)
        em.append(float((xs.mean(0) - m).abs().max()))
        c_hat = torch.cov(xs.T) + (0 if extra is None else torch.diag(extra))
        ec.append(float((c_hat - c).abs().max()))
    return {"kl": sum(kls) / b, "z_mean": max(zms), "z_cov": max(zcs), "err_mean": max(em), "err_cov": max(ec)}


def exact_draws(ref, n, seed):
    return ref.sample(n, generator=torch.Generator().manual_seed(seed))


def run(sampler, y, physics, n, seed=0):
    t = time.perf_counter()
    out = sampler.draw(y, physics, n=n, seed=seed)
    d = sampler.diagnostics
    acc = float(d.acceptance_rate.nanmean()) if not torch.isnan(d.acceptance_rate).all() else float("nan")
    return out, {"nfe": float(d.nfe_per_chain.double().mean()), "acc": acc, "time": time.perf_counter() - t}


def fmt(v, p=4):
    if isinstance(v, str):
        return v
    if v != v:
        return "-"
    return f"{v:.{p}g}"


# ---------------------------------------------------------------------------------------- sections
#: contrast configurations run on every physics besides the tested one
CONTRAST = [
    ("PC euler, 60 levels, no corrector", lambda m: PredictorCorrectorSampler(m, n_levels=60, n_corrector=0)),
    ("PC covariance predictor, 40 levels, ULA (snr 0.15)", lambda m: PredictorCorrectorSampler(m, n_levels=40, predictor="covariance")),
    (ADAPTIVE_EXACT[3], ADAPTIVE_EXACT[2]),
]


def section_physics(n, lines):
    lines += ["## 1. Posterior moments per physics", "",
              f"n = {n} draws per measurement, batch of 2 measurements with per-element parameters "
              "(noise 0.05 / 0.1; masks and kernels differ per element), float64, images 1x4x4 (blur: 2x4x4). "
              "`excess KL` = KL of the Gaussian fits minus that of exact draws (row `exact`); "
              "`max z` over all mean / covariance entries (the tests' statistic, tolerance 4.5). "
              "Rows marked (test) are the configurations of `tests/test_sampling.py` (run there with n = 2000).", "",
              "| physics | sampler | NFE | accept | excess KL | max z mean | max z cov | max abs err mean | max abs err cov |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, shape, factory, label in CASES:
        model, physics, y, ref = build(name, shape)
        floor = metrics(exact_draws(ref, n, 1).reshape(n, 2, *shape), ref)
        lines.append(f"| {name} | exact | - | - | ({fmt(floor['kl'])}) | {fmt(floor['z_mean'], 3)} | {fmt(floor['z_cov'], 3)} "
                     f"| {fmt(floor['err_mean'], 3)} | {fmt(floor['err_cov'], 3)} |")
        configs = [(label + " (test)", factory)] + [
            (lab + (" (test)" if name == ADAPTIVE_EXACT[0] and lab == ADAPTIVE_EXACT[3] else ""), fac) for lab, fac in CONTRAST]
        for label, factory in configs:
            out, info = run(factory(model), y, physics, n)
            m = metrics(out, ref)
            lines.append(f"| {name} | {label} | {fmt(info['nfe'], 3)} | {fmt(info['acc'], 2)} | {fmt(m['kl'] - floor['kl'], 2)} "
                         f"| {fmt(m['z_mean'], 3)} | {fmt(m['z_cov'], 3)} | {fmt(m['err_mean'], 3)} | {fmt(m['err_cov'], 3)} |")
            print(name, label, info, m, flush=True)
    lines.append("")


def mala_without_logdet(model, y, physics, s_lvl, n, n_steps=50, snr=0.3, seed=2):
    r"""The pitfall: MALA at one level with the snr step rule, but proposal densities WITHOUT their
    log-determinant :math:`-\tfrac{d}{2}\log\eta` (the step depends on the state, so forward and
    backward proposals have different variances). Written here from the public API for a denoising
    problem whose coefficients are all free (pixel basis, :math:`\Lambda = \sigma^2 <
    \lambda^{\mathrm{obs}}`); otherwise the same steps, preconditioner and random stream as the
    sampler's corrector, which keeps the log-determinant.

    :return: ``(draws (n, B, C, H, W), mean acceptance probability)``.
    """
    problem = to_denoising_problem(y, physics)
    xc = problem.x_tilde.double().repeat(n, 1, 1, 1)
    lam_obs = problem.cov.variances.double().repeat(n, 1, 1, 1)
    lam = torch.clamp(lam_obs, max=s_lvl**2)
    if not bool((lam < lam_obs).all()):
        raise ValueError("every coefficient must be free at the level")
    inv_lik = 1.0 / (lam_obs - lam)
    p = lam * (lam_obs - lam) / lam_obs  # harmonic preconditioner (1/lam + 1/(lam_obs - lam))^-1
    d = xc[0].numel()
    gen = torch.Generator(device=y.device).manual_seed(seed)
    cov = Covariance("pixel", torch.log(lam).to(y.dtype))

    def evaluate(c):
        u, g, _ = model.energy_and_grads(c.to(y.dtype), cov)
        return u.double(), g.double()

    def log_pi(c, u):
        return -u - 0.5 * (inv_lik * (xc - c) ** 2).flatten(1).sum(1)

    def grad_log_pi(c, g):
        return -g + inv_lik * (xc - c)

    def eta_of(grad):
        return 2 * snr**2 * d / (p * grad**2).flatten(1).sum(1).clamp(min=1e-300)

    def log_q(to, mean, eta):  # no log-determinant: the pitfall
        return -0.5 * ((to - mean) ** 2 / (2 * eta.view(-1, 1, 1, 1) * p)).flatten(1).sum(1)

    randn = lambda: torch.randn(xc.shape, generator=gen, dtype=torch.float64, device=xc.device)  # noqa: E731
    c = xc + torch.sqrt(p) * randn()
    u, g = evaluate(c)
    probs = []
    for _ in range(n_steps):
        g_cur = grad_log_pi(c, g)
        eta = eta_of(g_cur)
        mean_fwd = c + eta.view(-1, 1, 1, 1) * p * g_cur
        prop = mean_fwd + torch.sqrt(2 * eta.view(-1, 1, 1, 1) * p) * randn()
        u_p, g_p = evaluate(prop)
        g_prop = grad_log_pi(prop, g_p)
        mean_bwd = prop + eta_of(g_prop).view(-1, 1, 1, 1) * p * g_prop
        log_a = log_pi(prop, u_p) - log_pi(c, u) + log_q(c, mean_bwd, eta_of(g_prop)) - log_q(prop, mean_fwd, eta)
        log_a = torch.where(torch.isnan(log_a), -math.inf, log_a)
        probs.append(torch.exp(log_a.clamp(max=0)))
        take = torch.log(torch.rand(log_a.shape, generator=gen, dtype=torch.float64, device=log_a.device)) < log_a
        t4 = take.view(-1, 1, 1, 1)
        c, u, g = torch.where(t4, prop, c), torch.where(take, u_p, u), torch.where(t4, g_p, g)
    return c.reshape(n, -1, *c.shape[1:]), float(torch.stack(probs).mean())


def section_mh(n, lines):
    s_obs, s_lvl = 0.3, 0.2
    model, physics, y, s_lvl, target = level_target(s_obs=s_obs, s_lvl=s_lvl)
    t_mean, t_cov = target.mean().reshape(-1), target.covariance()[0]
    ex = target.sample(n, generator=torch.Generator().manual_seed(1))[:, 0].reshape(n, -1)
    floor = gaussian_kl(ex, t_mean, t_cov)
    lines += ["## 2. Value of the Metropolis-Hastings step", "",
              f"Corrector only, at one level: denoising sigma_obs = {s_obs}, level sigma = {s_lvl} (every coefficient free), "
              "target p(y_level | x_tilde) exact (mixture with covariances C_k + 0.04 I observed with variance 0.05). "
              f"50 corrector steps from the sampler's start, n = {n} chains. `var ratio` = tr(sample cov) / tr(exact cov).", "",
              "| corrector | step | accept | var ratio | excess KL | max z mean | max z cov |", "|---|---|---|---|---|---|---|"]

    def row(label, step, sampler=None, draws=None):
        if sampler is not None:
            out, info = run(sampler, y, physics, n, seed=2)
            draws = out.y, info["acc"]
        ys = draws[0][:, 0].reshape(n, -1)
        acc = draws[1]
        zm, zc = moment_z(ys, t_mean, t_cov)
        ratio = float(torch.trace(torch.cov(ys.T)) / torch.trace(t_cov))
        lines.append(f"| {label} | {step} | {fmt(acc, 2)} | {fmt(ratio, 3)} | {fmt(gaussian_kl(ys, t_mean, t_cov) - floor, 2)} "
                     f"| {fmt(zm, 3)} | {fmt(zc, 3)} |")
        print(label, step, acc, ratio, zm, zc, flush=True)

    for eta in (0.1, 0.25, 0.5, 1.0):
        for mh in (False, True):
            row("MALA" if mh else "unadjusted (ULA)", f"eta = {eta}",
                PredictorCorrectorSampler(model, sigmas=[s_lvl], n_corrector=50, step_size=eta, mh=mh))
    for snr in (0.3, 0.6):
        row("unadjusted (ULA)", f"snr = {snr} (state-dependent)",
            PredictorCorrectorSampler(model, sigmas=[s_lvl], n_corrector=50, snr=snr, mh=False))
        row("MALA", f"snr = {snr} (state-dependent)",
            PredictorCorrectorSampler(model, sigmas=[s_lvl], n_corrector=50, snr=snr, mh=True))
        row("MALA without proposal log-det (pitfall)", f"snr = {snr} (state-dependent)",
            draws=mala_without_logdet(model, y, physics, s_lvl, n, n_steps=50, snr=snr, seed=2))
    lines.append("")


SWEEPS = {
    "fixed, euler": [(L, lambda m, L=L: PredictorCorrectorSampler(m, n_levels=L, n_corrector=0)) for L in (10, 20, 40, 80, 160)],
    "fixed, covariance predictor": [(L, lambda m, L=L: PredictorCorrectorSampler(m, n_levels=L, n_corrector=0, predictor="covariance"))
                                    for L in (5, 10, 20, 40)],
    "adaptive error rule, euler": [(e, lambda m, e=e: AdaptiveSampler(m, tolerance=e, predictor="euler")) for e in (0.2, 0.1, 0.05, 0.025)],
    "adaptive error rule, covariance predictor": [(e, lambda m, e=e: AdaptiveSampler(m, tolerance=e, predictor="covariance"))
                                                  for e in (0.4, 0.2, 0.1, 0.05, DEFAULT_TOL)],
    "adaptive paper rule gamma|h|, euler": [(g, lambda m, g=g: AdaptiveSampler(m, rule="covariance_score", gamma=g, min_decrease=0.05, predictor="euler"))
                                            for g in (2.0, 1.0, 0.5)],
}


def nfe_at(points, target):
    """NFE at which a (nfe, excess KL) curve reaches ``target`` (log-log interpolation)."""
    pts = sorted(points)
    for (n0, e0), (n1, e1) in zip(pts[:-1], pts[1:]):
        if e0 > target >= e1:
            e0, e1 = max(e0, 1e-6), max(e1, 1e-6)
            t = (math.log(target) - math.log(e0)) / (math.log(e1) - math.log(e0))
            return math.exp(math.log(n0) + t * (math.log(n1) - math.log(n0)))
    if pts and pts[0][1] <= target:
        return pts[0][0]
    return float("nan")


def section_nfe(n, lines, figure):
    lines += ["## 3. Evaluations (NFE) against error: fixed vs adaptive schedules", "",
              f"n = {n} draws per measurement (2 measurements), predictor only (no corrector). NFE = mean evaluations per chain "
              "(the adaptive sampler stops a measurement when all its coefficients reach their floor; one pilot chain per measurement chooses its path). "
              "Parameter: levels (fixed), tolerance (error rule; step bounds 0.05 r to 2 r, r = min(1, tolerance / 0.05)), gamma (paper rule, min decrease 0.05, max 2 min(1, gamma)).", ""]
    curves = {}
    for name, shape in [("inpainting", (1, 4, 4)), ("decimation", (1, 4, 4))]:
        model, physics, y, ref = build(name, shape)
        floor = metrics(exact_draws(ref, n, 1).reshape(n, 2, *shape), ref)["kl"]
        lines += [f"### {name}", "", "| schedule | parameter | NFE | excess KL | max z mean | max z cov |", "|---|---|---|---|---|---|"]
        for label, runs in SWEEPS.items():
            pts = []
            for param, factory in runs:
                out, info = run(factory(model), y, physics, n)
                m = metrics(out, ref)
                pts.append((info["nfe"], m["kl"] - floor))
                mark = " (default)" if label.startswith("adaptive error rule, cov") and param == DEFAULT_TOL else ""
                lines.append(f"| {label} | {param}{mark} | {fmt(info['nfe'], 3)} | {fmt(m['kl'] - floor, 2)} | {fmt(m['z_mean'], 3)} "
                             f"| {fmt(m['z_cov'], 3)} |")
                print(name, label, param, info, m, flush=True)
            curves[(name, label)] = pts
        lines.append("")
    lines += ["### NFE needed for a given excess KL (log-log interpolation; `-` = not reached in the sweep)", "",
              "`ratio` = NFE of the schedule / NFE of the best fixed schedule at the same excess KL (below 1: the adaptive "
              "schedule needs fewer evaluations).", "",
              "| physics | schedule | excess KL 0.02 | ratio | excess KL 0.01 | ratio |", "|---|---|---|---|---|---|"]
    for (name, label), pts in curves.items():
        cells = []
        for target in (0.02, 0.01):
            best = min((nfe_at(p, target) for (nm, lb), p in curves.items() if nm == name and lb.startswith("fixed")
                        and nfe_at(p, target) == nfe_at(p, target)), default=float("nan"))
            v = nfe_at(pts, target)
            cells += [fmt(v, 3), fmt(v / best, 2) if not label.startswith("fixed") else "-"]
        lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    lines.append("")
    if figure:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            fig, axes = plt.subplots(1, 2, figsize=(10, 4))
            for ax, name in zip(axes, ("inpainting", "decimation")):
                for (nm, label), pts in curves.items():
                    if nm == name:
                        pts = sorted(pts)
                        ax.loglog([p[0] for p in pts], [max(p[1], 1e-4) for p in pts], "o-", label=label)
                ax.set_title(name), ax.set_xlabel("NFE per draw"), ax.set_ylabel("excess KL (Gaussian fits)")
                ax.grid(True, which="both", alpha=0.3)
            axes[0].legend(fontsize=7)
            fig.tight_layout()
            fig.savefig(OUT / "sampler_exactness.png", dpi=120)
            lines += ["![NFE vs error](sampler_exactness.png)", ""]
        except Exception as err:  # the figure is optional
            print("figure skipped:", err)


#: the problems of tests/test_sampling.py::test_adaptive_default_is_exact_on_bimodal_posteriors
BIMODAL_CASES = [("denoising", 0.15), ("inpainting", 0.15), ("blur", 0.05)]
BIMODAL_SWEEPS = {
    "fixed, covariance predictor": [(k, lambda m, k=k: PredictorCorrectorSampler(m, n_levels=k, n_corrector=0, predictor="covariance"))
                                    for k in (20, 40, 80, 160, 320)],
    "fixed, covariance predictor + MALA corrector": [(k, lambda m, k=k: PredictorCorrectorSampler(m, n_levels=k, n_corrector=1, mh=True, predictor="covariance"))
                                                     for k in (20, 40, 80)],
    "adaptive, covariance predictor": [(t, lambda m, t=t: AdaptiveSampler(m, tolerance=t)) for t in (0.05, 0.025, 0.0125, DEFAULT_TOL)],
    "adaptive, covariance predictor + MALA corrector": [(t, lambda m, t=t: AdaptiveSampler(m, tolerance=t, n_corrector=1, mh=True))
                                                        for t in (0.025, 0.0125)],
}


def section_bimodal(n, lines):
    lines += ["## 4. Bimodal posteriors with separated modes: NFE at equal error, adaptive vs fixed", "",
              f"The problems of the adaptive sampler's default-settings test (`tests/test_sampling.py`): the measurement of the "
              f"midpoint of two components of a 1x5x5 mixture with narrow modes (`deepinv_energy.testing.bimodal_problem(physics, "
              f"noise, seed=1, scale=0.02)`; denoising and inpainting at noise 0.15, blur at 0.05). n = {n} draws of ONE measurement "
              "(the adaptive sampler's draws share one path), seed 0. `max z` of the mean, `var err` = max per-pixel relative error of "
              "the variance, `mode z` = max |z| of the fractions of draws per component (binomial standard error): the test "
              "requires < 4, < 10 %, < 4 (`pass`). `excess KL`: Gaussian-fit KL minus that of exact draws. `path KL`: mean over the "
              "draws of -sum log w of the exact step weights (`SamplerDiagnostics.path_kl`), an estimate of the KL divergence of the "
              "sampler's path from the exact reverse diffusion (it bounds the error of the draws; it leaves out corrector steps).", ""]
    summary = []
    for physics, noise in BIMODAL_CASES:
        model, op, y, ref = bimodal_problem(physics, noise, seed=1, scale=0.02)
        w = ref.log_weights.exp()[0]
        mean, cov = ref.mean()[0].reshape(-1), ref.covariance()[0]
        var_exact = torch.diagonal(cov)
        floor = gaussian_kl(exact_draws(ref, n, 1).reshape(n, -1), mean, cov)
        lines += [f"### {physics} (exact component weights {', '.join(f'{float(v):.3f}' for v in w)})", "",
                  "| schedule | parameter | NFE | max z mean | var err | mode z | pass | excess KL | path KL |",
                  "|---|---|---|---|---|---|---|---|---|"]
        curves = {}
        for label, runs in BIMODAL_SWEEPS.items():
            pts = []
            for param, factory in runs:
                sampler = factory(model)
                out, info = run(sampler, y, op, n)
                xs = out.x[:, 0].reshape(n, -1)
                ev = out.variance[:, 0].reshape(n, -1).mean(0)
                kl = gaussian_kl(xs, mean, cov, ev) - floor
                zm = float(((xs.mean(0) - mean) / torch.sqrt(var_exact / n)).abs().max())
                verr = float(((out.var()[0].reshape(-1) - var_exact).abs() / var_exact).max())
                zw = float(((mode_weights(ref, xs) - w) / torch.sqrt(w * (1 - w) / n)).abs().max())
                ok = zm < 4 and verr < 0.1 and zw < 4
                pkl = float(sampler.diagnostics.path_kl.mean())
                mark = " (default)" if label == "adaptive, covariance predictor" and param == DEFAULT_TOL else ""
                lines.append(f"| {label} | {param}{mark} | {fmt(info['nfe'], 3)} | {fmt(zm, 3)} | {100 * verr:.1f} % | {fmt(zw, 3)} "
                             f"| {'yes' if ok else 'no'} | {fmt(kl, 2)} | {fmt(pkl, 2)} |")
                print("bimodal", physics, label, param, info, zm, verr, zw, kl, pkl, flush=True)
                pts.append((info["nfe"], kl, ok, pkl))
            curves[label] = pts
        lines.append("")
        for label, pts in curves.items():
            passing = [p[0] for p in pts if p[2]]
            path = [(p[0], p[3]) for p in pts] if "MALA" not in label else []  # path KL leaves correctors out
            summary.append((physics, label, min(passing) if passing else float("nan"),
                            nfe_at([p[:2] for p in pts], 0.02), nfe_at(path, 0.1), nfe_at(path, 0.03)))
    lines += ["### NFE at equal error", "",
              "`NFE to pass`: the smallest NFE of the sweep whose run passes the test's three criteria (sweep points only: an "
              "upper bound); `excess KL 0.02`, `path KL 0.1 / 0.03`: NFE at which the sweep reaches that error (log-log "
              "interpolation; `-`: not reached, or path KL of a sampler with correctors, which it does not measure). The excess KL "
              "has a Monte-Carlo noise of about 0.005 at this n; the path KL has none of that floor. `ratio` = NFE / that of the "
              "best fixed schedule (with or without corrector) on the same problem: below 1 the adaptive schedule needs fewer "
              "evaluations.", "",
              "| physics | schedule | NFE to pass | ratio | excess KL 0.02 | ratio | path KL 0.1 | ratio | path KL 0.03 | ratio |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for physics, label, *vals in summary:
        cells = []
        for j, v in enumerate(vals):
            best = min((r[2 + j] for r in summary if r[0] == physics and r[1].startswith("fixed") and r[2 + j] == r[2 + j]),
                       default=float("nan"))
            cells += [fmt(v, 3), "-" if label.startswith("fixed") else fmt(v / best, 2)]
        lines.append(f"| {physics} | {label} | " + " | ".join(cells) + " |")
    lines.append("")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10000, help="draws per measurement")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-figure", action="store_true")
    parser.add_argument("--n-bimodal", type=int, default=4000, help="draws of the one measurement of section 4")
    parser.add_argument("--only", default="1,2,3,4",
                        help="sections to run; the others are kept from the existing results file (a partial regeneration)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    only = {int(v) for v in args.only.split(",")}
    t0 = time.perf_counter()
    path = OUT / "sampler_exactness.md"
    kept = {}
    if only != {1, 2, 3, 4} and path.exists():  # "## k. ..." blocks of the previous run
        for block in path.read_text().split("\n## ")[1:]:
            kept[int(block.split(".")[0])] = ["## " + block.split("\nTotal time")[0].rstrip("\n"), ""]
    lines = ["# Sampler exactness on Gaussian-mixture posteriors", "",
             "Generated by `benchmarks/sampler_exactness.py`; exact reference: "
             "`deepinv_energy.testing.measurement_posterior`. Mixture: 3 components, non-diagonal covariances "
             "(`deepinv_energy.testing.random_mixture`). Defaults: sigma_max 10, sigma_min 0.01, geometric schedules.", ""]
    sections = {1: lambda: section_physics(args.n, lines), 2: lambda: section_mh(args.n, lines),
                3: lambda: section_nfe(args.n, lines, not args.no_figure), 4: lambda: section_bimodal(args.n_bimodal, lines)}
    for k, fn in sections.items():
        if k in only or k not in kept:
            fn()
        else:
            lines += kept[k]
    note = "" if only == {1, 2, 3, 4} else f" (this run: sections {args.only}; the others kept from the previous run)"
    lines += [f"Total time {time.perf_counter() - t0:.0f} s on {args.threads} CPU thread(s), torch {torch.__version__}{note}.", ""]
    OUT.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
