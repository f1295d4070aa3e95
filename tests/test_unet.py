"""Tests of the learned energy network EnergyUNet (parameterization, persistence)."""

import json
import math

import pytest
import torch

from deepinv_energy.covariance import Covariance
from deepinv_energy.models.pretrained import REGISTRY, list_pretrained, resolve_pretrained
from deepinv_energy.models.unet import EnergyUNet, UNetConfig



def _model(C=1, H=8, W=8, seed=0, perturb=False, dtype=torch.float32, **kw):
    torch.manual_seed(seed)
    cfg = dict(channels=C, height=H, width_px=W, base_channels=8, mult=(1, 2), emb_dim=16)
    cfg.update(kw)
    g = torch.Generator().manual_seed(seed + 1)
    mean = 0.5 + 0.1 * torch.randn(C, H, W, generator=g)
    var = {
        "pixel": 0.01 + 0.1 * torch.rand(C, H, W, generator=g),
        "hartley": 0.01 + 0.1 * torch.rand(C, H, W, generator=g),
    }
    m = EnergyUNet(UNetConfig(**cfg), mean=mean, var=var)
    if perturb:  # the zero-initialized layers make F = 0 and b = 0 at init
        with torch.no_grad():
            for p in m.parameters():
                if (p == 0).all():
                    p.normal_(0, 0.05, generator=g)
    return m.to(dtype)


def _cov(basis, B, C, H, W, seed=0, lo=-8.0, hi=2.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    lv = lo + (hi - lo) * torch.rand(B, C, H, W, generator=g, dtype=dtype)
    return Covariance(basis, lv)


def _dense_gaussian(model, y, cov):
    """-log N(y; mu, V diag(v + lam) V^T) with dense float64 linear algebra."""
    B = y.shape[0]
    V = cov.basis_matrix().double()
    v = model.data_log_var(cov.basis).double().exp().reshape(1, -1)
    lam = cov.variances.double().reshape(B, -1)
    K = (V.unsqueeze(0) * (v + lam).unsqueeze(1)) @ V.T
    r = (y.double() - model.mean.double()).reshape(B, -1)
    dist = torch.distributions.MultivariateNormal(torch.zeros_like(r), covariance_matrix=K)
    return -dist.log_prob(r)


@pytest.mark.parametrize("basis", ["pixel", "hartley"])
@pytest.mark.parametrize("C", [1, 2])
def test_shapes_and_dtypes(basis, C):
    m = _model(C=C, perturb=True)
    y = torch.rand(3, C, 8, 8)
    cov = _cov(basis, 3, C, 8, 8)
    u, g, h = m.energy_and_grads(y, cov)
    assert u.shape == (3,) and u.dtype == torch.float32
    assert g.shape == y.shape and h.shape == y.shape
    assert torch.isfinite(u).all() and torch.isfinite(g).all() and torch.isfinite(h).all()
    m64 = m.double()
    u64 = m64.energy(y.double(), cov.to(torch.float64))
    assert u64.dtype == torch.float64
    assert torch.allclose(u64.float(), u, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("basis", ["pixel", "hartley"])
def test_zero_network_is_diagonal_gaussian_float64(basis):
    """With F = 0 and b = 0 (the initialization) U is exactly the fitted Gaussian's energy."""
    m = _model(C=2, H=4, W=4, dtype=torch.float64)
    y = torch.rand(5, 2, 4, 4, dtype=torch.float64)
    cov = _cov(basis, 5, 2, 4, 4, lo=-20.0, hi=6.0, dtype=torch.float64)
    u = m.energy(y, cov)
    ref = _dense_gaussian(m, y, cov)
    assert torch.allclose(u, ref, rtol=1e-10, atol=1e-8)
    terms = m.energy_terms(y, cov)
    assert torch.equal(terms[1], torch.zeros(5, dtype=torch.float64))
    assert torch.equal(terms[2], torch.zeros(5, dtype=torch.float64))


@pytest.mark.parametrize("basis", ["pixel", "hartley"])
def test_gaussian_gradients_at_tiny_variance_float32(basis):
    """No catastrophic cancellation: float32 g and h at lam = 1e-9 match float64 closed forms."""
    m = _model(C=1, H=8, W=8)
    y = torch.rand(4, 1, 8, 8)
    lv = torch.full((4, 1, 8, 8), math.log(1e-9))
    lv[:, :, :4] = math.log(1e3)
    cov = Covariance(basis, lv)
    _, g, h = m.energy_and_grads(y, cov)
    v = m.data_log_var(basis).double().exp()
    lam = lv.double().exp()
    c = cov.to_basis(y.double() - m.mean.double())
    g_ref = cov.from_basis(c / (v + lam))
    h_ref = 0.5 * lam / (v + lam) - 0.5 * lam * c**2 / (v + lam) ** 2
    assert torch.allclose(g.double(), g_ref, rtol=1e-4, atol=1e-4)
    assert torch.allclose(h.double(), h_ref, rtol=1e-4, atol=1e-5)


def _net_ref(form, c, v, lam, fb, lam_amp):
    if form == "inner":
        a = torch.sqrt(v / ((lam + lam_amp) * (v + lam)))
        return -0.5 * (c * a * fb).sum((1, 2, 3))
    # residual: 1/2 sum rho^2 + 1/2 sum v c^2/(v+lam)^2 - 1/2 sum c^2/(v+lam), with
    # rho = (c - D)/sqrt(lam), D = c_skip c + c_out F the EDM-preconditioned denoiser
    c_skip, c_out = v / (v + lam), torch.sqrt(v * lam / (v + lam))
    rho = (c - c_skip * c - c_out * fb) / lam.sqrt()
    return (0.5 * rho**2 + 0.5 * v * c**2 / (v + lam) ** 2 - 0.5 * c**2 / (v + lam)).sum((1, 2, 3))


@pytest.mark.parametrize("form", ["residual", "inner"])
@pytest.mark.parametrize("basis", ["pixel", "hartley"])
def test_energy_form_exact(basis, form):
    """U = gauss + net(F) + b - kappa with the documented network term, for any output F (float64)."""
    m = _model(C=1, H=4, W=4, dtype=torch.float64, perturb=True, form=form)
    y = torch.rand(3, 1, 4, 4, dtype=torch.float64)
    cov = _cov(basis, 3, 1, 4, 4, dtype=torch.float64)
    G = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    m.net.forward = lambda x, emb: G.expand_as(x[:, :1]) * 1.0  # a fixed "network output"
    m.log_norm.fill_(0.25)
    gauss, net, b, kappa = m.energy_terms(y, cov)
    v = m.data_log_var(basis).exp()
    lam = cov.variances
    c = cov.to_basis(y - m.mean)
    net_ref = _net_ref(form, c, v, lam, cov.to_basis(G.expand_as(y)), m.config.lam_amp)
    assert torch.allclose(net, net_ref, rtol=1e-10, atol=1e-10)
    assert torch.allclose(m.energy(y, cov), gauss + net_ref + b - 0.25, rtol=1e-12, atol=1e-9)
    if form == "inner":  # affine in the network output
        m.net.forward = lambda x, emb: 2.0 * G.expand_as(x[:, :1])
        assert torch.allclose(m.energy_terms(y, cov)[1], 2 * net_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("form", ["residual", "inner"])
def test_bounded_at_tiny_variance(form):
    """With a nonzero network the energy and h stay bounded as lam -> 0 (no lam^-1/2 blow-up)."""
    m = _model(C=1, H=8, W=8, perturb=True, form=form)
    x = torch.rand(4, 1, 8, 8)
    hs = []
    for var in (1e-6, 1e-9):
        y = x + math.sqrt(var) * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
        _, _, h = m.energy_and_grads(y, Covariance.isotropic(var, y))
        hs.append(h.abs().max().item())
    assert hs[1] < 2 * hs[0] + 1.0


@pytest.mark.parametrize("form", ["residual", "inner"])
def test_network_term_vanishes_at_large_variance(form):
    m = _model(C=1, H=8, W=8, perturb=True, dtype=torch.float64, form=form)
    x = torch.rand(4, 1, 8, 8, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    nets = []
    for var in (1e2, 1e4, 1e6):
        y = x + math.sqrt(var) * torch.randn(x.shape, generator=g, dtype=torch.float64)
        nets.append(m.energy_terms(y, Covariance.isotropic(var, y))[1].abs().max().item())
    assert nets[1] < 0.2 * nets[0] and nets[2] < 0.2 * nets[1]


@pytest.mark.parametrize("basis", ["pixel", "hartley"])
@pytest.mark.parametrize("input_scale", ["whiten", "wiener"])
def test_coefficient_entry_point_equals_the_image_path(basis, input_scale):
    """The samplers' coefficient-space evaluation (no image round trip) is the image-space
    energy_and_grads with the gradient in the basis, to float64 rounding; and the default
    implementation of EnergyModel (a closed-form mixture) agrees too."""
    from deepinv_energy.covariance import basis_transform
    from deepinv_energy.testing import random_mixture

    g = torch.Generator().manual_seed(3)
    y = torch.rand(3, 1, 8, 8, generator=g, dtype=torch.float64)
    lv = -3 + 2 * torch.randn(3, 1, 8, 8, generator=g, dtype=torch.float64)
    for model in (_model(perturb=True, input_scale=input_scale).double(), random_mixture((1, 8, 8), k=2)):
        u, gy, h = model.energy_and_grads(y, Covariance(basis, lv))
        u2, gc, h2 = model.coefficient_energy_and_grads(basis_transform(y, basis), basis, lv)
        assert torch.allclose(u2, u, rtol=1e-12, atol=1e-9)
        assert torch.allclose(gc, basis_transform(gy, basis), rtol=1e-10, atol=1e-12)
        assert torch.allclose(h2, h, rtol=1e-10, atol=1e-12)


def test_per_sample_independence():
    """GroupNorm, never BatchNorm: one image's energy does not depend on the rest of the batch."""
    m = _model(C=1, perturb=True)
    y = torch.rand(4, 1, 8, 8)
    cov = _cov("pixel", 4, 1, 8, 8)
    u_all = m.energy(y, cov)
    u_one = torch.cat([m.energy(y[i : i + 1], Covariance("pixel", cov.log_var[i : i + 1])) for i in range(4)])
    assert torch.allclose(u_all, u_one, rtol=1e-5, atol=1e-4)
    assert not any(isinstance(mod, torch.nn.modules.batchnorm._BatchNorm) for mod in m.modules())


def test_input_validation():
    m = _model()
    with pytest.raises(ValueError, match="shape"):
        m.energy(torch.rand(2, 1, 6, 6), Covariance.isotropic(0.1, torch.rand(2, 1, 6, 6)))
    with pytest.raises(ValueError, match="divisible"):
        UNetConfig(height=10, width_px=10, mult=(1, 2, 2))
    y = torch.rand(2, 1, 8, 8)
    y[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        m.energy(y, Covariance.isotropic(0.1, torch.rand(2, 1, 8, 8)))
    # the samplers evaluate through the unchecked coefficient path: they check the size once, by name
    import deepinv as dinv
    from deepinv_energy.sampling import MALASampler

    assert m.image_shape == (1, 8, 8)
    with pytest.raises(ValueError, match=r"shape \(1, 8, 8\).*\(1, 6, 6\)"):
        MALASampler(m, n_levels=3).draw(torch.rand(1, 1, 6, 6), dinv.physics.Denoising(dinv.physics.GaussianNoise(0.1)))


def test_data_statistics():
    m = _model(C=1, H=4, W=4)
    x = torch.rand(100, 1, 4, 4)
    m.set_data_statistics(x)
    assert torch.allclose(m.mean, x.mean(0), atol=1e-6)
    v = x.var(0, unbiased=False)
    floor = torch.maximum(v.mean() * m.config.v_floor_rel, torch.tensor(m.config.v_floor))
    assert torch.allclose(m.log_v_pixel.exp(), v.clamp_min(floor), rtol=1e-4)
    # a nearly constant pixel is floored relative to the channel's mean variance
    x[:, :, 0, 0] = 0.5
    m.set_data_statistics(x)
    assert torch.isclose(m.log_v_pixel.exp()[0, 0, 0], m.config.v_floor_rel * x.var(0, unbiased=False).mean(), rtol=1e-4)


def test_save_load_round_trip(tmp_path):
    m = _model(C=2, perturb=True)
    m.log_norm.copy_(torch.tensor([1.5, -2.0]))
    w, c = m.save_pretrained(str(tmp_path), "tiny")
    y = torch.rand(2, 2, 8, 8)
    for basis in ("pixel", "hartley"):
        cov = _cov(basis, 2, 2, 8, 8)
        for src in (w, c, str(tmp_path)):
            m2 = EnergyUNet.from_pretrained(src)
            assert torch.equal(m2.energy(y, cov), m.eval().energy(y, cov))
    with open(w, "rb") as fh:  # safetensors, not a pickle
        assert fh.read(1) != b"\x80"
    import json

    meta = json.load(open(c))
    assert meta["normalization"] == {"pixel": 1.5, "hartley": -2.0}
    with pytest.raises(FileNotFoundError, match="fashion-mnist-28"):
        EnergyUNet.from_pretrained("no-such-model")
    # a file written before `base_channels` was called `width` (its checksums cover the stored config)
    from deepinv_energy.models.unet import checksums

    meta["config"]["width"] = meta["config"].pop("base_channels")
    meta["sha256"] = checksums(w, meta)
    json.dump(meta, open(c, "w"))
    old = EnergyUNet.from_pretrained(c)
    assert old.config == m.config and torch.equal(old.energy(y, cov), m.energy(y, cov))


def test_corrupted_or_edited_files_are_refused(tmp_path):
    """Checksums of the weights and config: a flipped byte of the right size, an edited lam_min,
    a truncated file, bad JSON, missing keys and wrong shapes all raise an error naming the file."""
    import json
    import shutil
    import warnings

    m = _model(perturb=True)
    w, c = m.save_pretrained(str(tmp_path / "ok"), "tiny")
    meta = json.load(open(c))
    assert set(meta["sha256"]) == {"weights", "config"}

    def variant(name, edit_weights=None, edit_json=None):
        d = tmp_path / name
        shutil.copytree(tmp_path / "ok", d)
        if edit_weights:
            (d / "tiny.safetensors").write_bytes(edit_weights((d / "tiny.safetensors").read_bytes()))
        if edit_json:
            (d / "tiny.json").write_text(edit_json((d / "tiny.json").read_text()))
        return str(d / "tiny.json")

    def flip(b):  # one byte of the tensor data, same size
        return b[:-5] + bytes([b[-5] ^ 0xFF]) + b[-4:]

    def lam_min(t):
        cfg = json.loads(t)
        cfg["config"]["lam_min"] = 1e-8
        return json.dumps(cfg)

    def no_sha(t):
        cfg = json.loads(t)
        del cfg["sha256"]
        return json.dumps(cfg)

    def no_config(t):
        cfg = json.loads(no_sha(t))
        del cfg["config"]
        return json.dumps(cfg)

    cases = [("flip", flip, None, "tiny.safetensors.*checksum|checksum.*tiny.safetensors"),
             ("lam", None, lam_min, "checksum.*tiny.json"),
             ("trunc", lambda b: b[: len(b) // 2], None, "checksum.*tiny.safetensors"),
             ("badjson", None, lambda t: t[:-10], "cannot read model config.*tiny.json"),
             ("noconfig", None, no_config, "tiny.json.*'config'")]
    for name, ew, ej, match in cases:
        with pytest.raises(ValueError, match=match):
            EnergyUNet.from_pretrained(variant(name, ew, ej))
    path = variant("old", None, no_sha)  # a file from before checksums: loads, with a warning
    with pytest.warns(UserWarning, match="no sha256"):
        EnergyUNet.from_pretrained(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="cannot load weights.*tiny.safetensors"):  # truncated, unverified
            EnergyUNet.from_pretrained(variant("trunc_old", lambda b: b[: len(b) // 2], no_sha))
        wide = _model(C=2).save_pretrained(str(tmp_path / "wide"), "tiny")[0]  # other shapes, old config

        def other_shapes(b):
            return open(wide, "rb").read()

        with pytest.raises(ValueError, match="cannot load weights.*tiny.safetensors"):
            EnergyUNet.from_pretrained(variant("shape", other_shapes, no_sha))


def test_registry():
    assert "fashion-mnist-28" in REGISTRY
    names = list_pretrained()
    assert isinstance(names, list)
    for name in names:
        w, c = resolve_pretrained(name)
        assert "sha256" in json.load(open(c))  # verified on load
        m = EnergyUNet.from_pretrained(name)
        y = torch.rand(2, m.config.channels, m.config.height, m.config.width_px)
        assert torch.isfinite(m.energy(y, Covariance.isotropic(0.01, y))).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda():
    m = _model(perturb=True).cuda()
    y = torch.rand(2, 1, 8, 8, device="cuda")
    u, g, h = m.energy_and_grads(y, Covariance.isotropic(0.1, y))
    assert u.device.type == "cuda" and g.device.type == "cuda" and h.device.type == "cuda"


@pytest.mark.parametrize("input_scale,max_growth", [("whiten", None), ("wiener", 2.0)])
def test_input_scale_bounds_the_tweedie_mean(input_scale, max_growth, tmp_path):
    """The network's part of the Tweedie mean at an unobserved pixel, D_i - (mu_i + v_i/(v_i+lam) c_i):
    with the default whitened input it contains sqrt(lam) times the network's sensitivity to that
    pixel (grows x~30 from lam = 1e2 to 1e5); with the Wiener input it stays bounded. float64,
    a perturbed (nonzero) network, the same y."""
    m = _model(perturb=True, dtype=torch.float64, input_scale=input_scale).eval()
    y = 0.5 + 0.1 * torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    part = {}
    for lam in (1e2, 1e5):
        lv = torch.full((1, 1, 8, 8), math.log(1e-2), dtype=torch.float64)
        lv[..., 2:6, 2:6] = math.log(lam)
        cov = Covariance("pixel", lv)
        v = torch.exp(m.data_log_var("pixel"))
        wiener = m.mean + v / (v + cov.variances) * (y - m.mean)
        part[lam] = (m.denoise(y, cov) - wiener)[..., 2:6, 2:6].abs().mean().item()
    growth = part[1e5] / part[1e2]
    if max_growth is None:
        assert growth > 10, part
    else:
        assert growth < max_growth, part
    w, _ = m.save_pretrained(str(tmp_path), "m")
    assert EnergyUNet.from_pretrained(w).config.input_scale == input_scale
    with pytest.raises(ValueError, match="input_scale"):
        _model(input_scale="whitened")
