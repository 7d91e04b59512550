"""Fourier-series densities: identities, a numpy reference of the formulas, sampling,
gradients, fitting, quantised CDFs and bad input."""

from __future__ import annotations

import doctest
import multiprocessing as mp
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import probcraft
import probcraft.fourier
from probcraft import FourierDensity

RNG = np.random.default_rng(20240611)


def rand_coeffs(n: int, seed: int, channels: int | None = None) -> np.ndarray:
    g = np.random.default_rng(seed)
    shape = (n + 1,) if channels is None else (channels, n + 1)
    return g.normal(size=shape) + 1j * g.normal(size=shape)


# -- numpy reference of the paper's formulas (written independently of the Rust code) ------


def ref_autocorr(a: np.ndarray) -> np.ndarray:
    n1 = len(a)
    return np.array([np.sum(a[n:] * np.conj(a[: n1 - n])) for n in range(n1)])


def ref_pdf(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    c = ref_autocorr(a)
    n = np.arange(1, len(a))
    f = c[0].real + 2 * np.real(np.exp(1j * np.pi * np.outer(x, n)) @ c[1:])
    return f / (2 * c[0].real)


def ref_cdf(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    c = ref_autocorr(a)
    n = np.arange(1, len(a))
    terms = (np.exp(1j * np.pi * np.outer(x, n)) - (-1.0) ** n) / (1j * np.pi * n)
    return (x + 1) / 2 + np.real(terms @ c[1:]) / c[0].real


def ref_bin(a: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    c = ref_autocorr(a)
    n = np.arange(1, len(a))
    m, h = (hi + lo) / 2, (hi - lo) / 2
    s = np.real(np.exp(1j * np.pi * np.outer(m, n)) * c[1:]) * np.sin(np.pi * np.outer(h, n)) / n
    return h + 2 / (np.pi * c[0].real) * s.sum(axis=1)


@pytest.mark.parametrize("n", [0, 1, 2, 7, 32, 100, 256])
def test_matches_numpy_reference(n: int) -> None:
    a = rand_coeffs(n, n)
    d = FourierDensity(a)
    x = np.linspace(-1, 1, 1001)
    p = ref_pdf(a, x)
    np.testing.assert_allclose(d.pdf(x), p, rtol=1e-12, atol=1e-12 * p.max())
    np.testing.assert_allclose(d.cdf(x), np.clip(ref_cdf(a, x), 0, 1), rtol=0, atol=1e-12)
    lp = d.logpdf(x)
    big = p > 1e-6 * p.max()
    np.testing.assert_allclose(lp[big], np.log(p[big]), rtol=0, atol=1e-10)
    lo, hi = x[:-1], x[1:]
    np.testing.assert_allclose(d.bin_mass(lo, hi), ref_bin(a, lo, hi), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(
        d.autocorrelation, ref_autocorr(a) / ref_autocorr(a)[0], rtol=0, atol=1e-13
    )


@pytest.mark.parametrize("simd", ["scalar", None])
def test_simd_levels_agree(simd: str | None) -> None:
    before = probcraft.build_info()["simd"]
    a = rand_coeffs(40, 3, channels=2)
    x = RNG.uniform(-1, 1, size=(2, 5000))
    want = np.stack([ref_pdf(a[c], x[c]) for c in range(2)])
    try:
        if simd:
            probcraft.set_simd_level(simd)
        d = FourierDensity(a)
        np.testing.assert_allclose(d.pdf(x), want, rtol=1e-12, atol=1e-12 * want.max())
        q = RNG.uniform(0, 1, size=(2, 300))
        np.testing.assert_allclose(d.cdf(d.ppf(q)), q, atol=1e-12)
    finally:
        probcraft.set_simd_level(before)


def test_identities_interval() -> None:
    a = rand_coeffs(12, 1)
    d = FourierDensity(a)
    # The trapezoid rule is exact for trig polynomials of degree < number of nodes.
    nodes = np.linspace(-1, 1, 200, endpoint=False)
    assert abs(d.pdf(nodes).sum() * 2 / 200 - 1) < 1e-13
    assert d.cdf(-1.0) == 0.0 and d.cdf(1.0) == 1.0
    x = np.linspace(-1, 1, 20001)
    assert np.all(d.pdf(x) >= 0)
    assert np.all(np.diff(d.cdf(x)) >= -1e-16)
    assert abs(d.pdf(-1.0) - d.pdf(1.0)) < 1e-14
    # pdf is the derivative of cdf.
    h = 1e-6
    xm = x[1:-1:37]
    deriv = (d.cdf(xm + h) - d.cdf(xm - h)) / (2 * h)
    np.testing.assert_allclose(deriv, d.pdf(xm), atol=1e-7)
    # product-form bins equal the CDF difference.
    lo, hi = x[:-1:50], x[1::50]
    np.testing.assert_allclose(d.bin_mass(lo, hi), d.cdf(hi) - d.cdf(lo), atol=1e-15)
    assert abs(d.bin_mass(-1, 1) - 1) < 1e-15
    # ppf inverts cdf where the density is not tiny.
    keep = d.pdf(x) > 1e-4
    np.testing.assert_allclose(d.ppf(d.cdf(x[keep])), x[keep], atol=1e-11)
    # invariance to a -> λ e^{iφ} a
    d2 = FourierDensity(3.7 * np.exp(0.4j) * a)
    np.testing.assert_allclose(d2.pdf(x), d.pdf(x), rtol=1e-13)


def test_identities_real_line_and_tails() -> None:
    a = rand_coeffs(9, 2)
    s, t = 1.7, -0.4
    d = FourierDensity(a, domain="real", scale=s, offset=t)
    y = np.linspace(-30, 30, 4001)
    p = d.pdf(y)
    assert np.all(p >= 0)
    assert d.cdf(-np.inf) == 0.0 and d.cdf(np.inf) == 1.0
    assert abs(d.bin_mass(-np.inf, np.inf) - 1) < 1e-15
    np.testing.assert_allclose(d.logpdf(y[p > 0]), np.log(p[p > 0]), rtol=1e-12, atol=1e-12)
    # Stable log sech²: finite and exact out to |z| = 700 (the naive form dies near 19).
    z = np.array([-700.0, -300.0, -40.0, 19.0, 25.0, 100.0, 700.0])
    yy = t + s * z
    x = np.tanh(z)
    want = (
        np.log(ref_pdf(a, x))
        + 2 * (np.log(2) - np.abs(z) - np.log1p(np.exp(-2 * np.abs(z))))
        - np.log(s)
    )
    got = d.logpdf(yy)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # Integer bins deep in the tail keep their relative precision (no CDF cancellation).
    k = np.arange(40, 60)
    mass = d.bin_mass(k - 0.5, k + 0.5)
    mid = np.exp(d.logpdf(k.astype(float)))
    assert np.all(mass > 0)
    # The tail is exponential with rate 2/s, so a unit bin holds mid·sinh(λ/2)/(λ/2).
    lam = 2 / s
    np.testing.assert_allclose(mass, mid * np.sinh(lam / 2) / (lam / 2), rtol=1e-8)
    # ppf(cdf(y)) = y in the bulk.
    yb = np.linspace(-3, 3, 301)
    np.testing.assert_allclose(d.ppf(d.cdf(yb)), yb, atol=1e-9)
    assert d.ppf(0.0) == -np.inf and d.ppf(1.0) == np.inf


def test_channels_broadcasting_dtypes_and_threads() -> None:
    a = rand_coeffs(8, 5, channels=3)
    d = FourierDensity(a, domain="real", scale=[1.0, 2.0, 0.5], offset=[0.0, 1.0, -1.0])
    assert d.n_channels == 3 and d.degree == 8
    shared = np.linspace(-2, 2, 7)
    out = d.pdf(shared)
    assert out.shape == (3, 7)
    per = np.stack([shared, shared + 1, shared - 1])
    out2 = d.pdf(per)
    for c in range(3):
        single = FourierDensity(a[c], domain="real", scale=d.scale[c], offset=d.offset[c])
        np.testing.assert_allclose(out[c], single.pdf(shared), rtol=1e-15)
        np.testing.assert_allclose(out2[c], single.pdf(per[c]), rtol=1e-15)
    assert d.pdf(0.5).shape == (3,)
    assert d.pdf(np.zeros((3, 2, 4))).shape == (3, 2, 4)
    with pytest.raises(ValueError, match="broadcast"):
        d.pdf(np.zeros((2, 5)))
    # float32 and int inputs; float32 output on request; non-contiguous input.
    x32 = shared.astype(np.float32)
    np.testing.assert_allclose(d.pdf(x32), d.pdf(x32.astype(np.float64)), rtol=0)
    assert d.pdf(x32, dtype=np.float32).dtype == np.float32
    assert d.cdf(np.arange(3)).dtype == np.float64
    big = RNG.normal(size=(3, 40000))
    np.testing.assert_array_equal(d.cdf(big[:, ::2]), d.cdf(np.ascontiguousarray(big[:, ::2])))
    np.testing.assert_array_equal(d.logpdf(big, num_threads=1), d.logpdf(big, num_threads=2))
    np.testing.assert_array_equal(d.rvs(50000, seed=3, num_threads=1), d.rvs(50000, seed=3, num_threads=2))
    assert d.rvs((2, 5), seed=1).shape == (3, 2, 5)


def test_pickle_round_trip_is_deterministic() -> None:
    d = FourierDensity(rand_coeffs(5, 8, channels=2), domain="real", scale=[1.5, 2.0])
    b1, b2 = pickle.dumps(d), pickle.dumps(d)
    assert b1 == b2
    e = pickle.loads(b1)
    x = np.linspace(-3, 3, 11)
    np.testing.assert_array_equal(e.pdf(x), d.pdf(x))
    with pytest.raises(probcraft.ModelFormatError):
        probcraft._core.FourierModel._from_state(b"PCfd\x01\x00garbage")


@pytest.mark.parametrize("domain", ["interval", "real"])
def test_samples_pass_ks(domain: str) -> None:
    a = rand_coeffs(16, 11)
    d = FourierDensity(a, domain=domain, **({"scale": 2.0, "offset": 1.0} if domain == "real" else {}))
    s = d.rvs(20000, seed=5)
    res = stats.kstest(s, d.cdf)
    assert res.pvalue > 1e-3, res
    # A wrong distribution must fail (the test can fail).
    other = FourierDensity(rand_coeffs(16, 12), domain=domain,
                           **({"scale": 2.0, "offset": 1.0} if domain == "real" else {}))
    assert stats.kstest(s, other.cdf).pvalue < 1e-6
    assert np.array_equal(d.rvs(100, seed=9), d.rvs(100, seed=9))
    assert not np.array_equal(d.rvs(100, seed=9), d.rvs(100, seed=10))


@pytest.mark.parametrize("domain", ["interval", "real"])
@pytest.mark.parametrize("penalty", [0.0, ("density", 0.01), ("unnormalized", 0.003)])
def test_nll_grad_matches_finite_differences(domain: str, penalty: object) -> None:
    a = rand_coeffs(6, 21)
    g = np.random.default_rng(4)
    if domain == "interval":
        x, kw = np.tanh(g.normal(size=400)), {}
    else:
        x, kw = g.normal(1.0, 2.0, size=400), {"scale": 1.3, "offset": 0.4}
    w = g.uniform(0.1, 2.0, size=400)
    d = FourierDensity(a, domain=domain, **kw)
    r = d.nll_grad(x, weights=w, penalty=penalty)
    # mean NLL against the definition
    assert abs(d.nll(x, weights=w) - np.average(-d.logpdf(x), weights=w)) < 1e-12

    def f(a2: np.ndarray, s: float = 1.3, t: float = 0.4) -> float:
        kw2 = {} if domain == "interval" else {"scale": s, "offset": t}
        return FourierDensity(a2, domain=domain, **kw2).nll(x, weights=w, penalty=penalty)

    h = 1e-6
    for k in range(len(a)):
        for unit in (1, 1j):
            e = np.zeros_like(a)
            e[k] = unit * h
            fd = (f(a + e) - f(a - e)) / (2 * h)
            an = r.coeffs[k].real if unit == 1 else r.coeffs[k].imag
            assert abs(fd - an) < 1e-6 * (1 + abs(an)), (k, unit, fd, an)
    if domain == "real":
        fd_s = (f(a, 1.3 + h) - f(a, 1.3 - h)) / (2 * h)
        fd_t = (f(a, 1.3, 0.4 + h) - f(a, 1.3, 0.4 - h)) / (2 * h)
        assert abs(fd_s - r.scale) < 1e-6 and abs(fd_t - r.offset) < 1e-6
    else:
        assert r.scale == 0.0 and r.offset == 0.0


def _ten_gaussians() -> tuple[np.ndarray, np.ndarray]:
    # The demo target of codex's Fourier notebook: equal mixture of 10 Gaussians with
    # loc ~ U(-0.5, 0.3), scale ~ U(0.25, 0.35)·(10/60), loc and scale drawn from one uniform
    # per component (as the notebook does). Seed 12 gives entropy -0.4275 (reference -0.424).
    u = np.random.default_rng(12).uniform(size=10)
    return -0.5 + 0.8 * u, (10 / 60) * (0.25 + 0.1 * u)


def test_fit_reference_run() -> None:
    loc, sc = _ten_gaussians()
    g = np.random.default_rng(1)

    def draw(n: int) -> np.ndarray:
        c = g.integers(0, 10, n)
        return g.normal(loc[c], sc[c])

    train, test = draw(50000), draw(50000)
    target = np.logaddexp.reduce(stats.norm.logpdf(test[:, None], loc, sc), axis=1) - np.log(10)
    d = FourierDensity.fit(train, 14, domain="interval")
    held_out = d.nll(test)
    assert held_out <= -0.40, held_out
    kl = held_out - (-target.mean())
    assert kl < 0.01, kl
    assert d.fit_info is not None and d.fit_info["iterations"] > 0
    # Adam reaches the same region.
    da = FourierDensity.fit(train, 14, domain="interval", optimizer="adam", steps=1500, lr=0.02)
    assert da.nll(test) <= -0.39
    # Weighted histogram input gives the same model as the raw data.
    edges = np.linspace(-1, 1, 4097)
    counts, _ = np.histogram(train, edges)
    mids = (edges[:-1] + edges[1:]) / 2
    dh = FourierDensity.fit(mids, 14, domain="interval", weights=counts)
    assert abs(dh.nll(test) - held_out) < 5e-3


def test_fit_real_line_multichannel_and_penalty() -> None:
    g = np.random.default_rng(3)
    data = np.stack([g.normal(3.0, 0.5, 4000), g.laplace(-1.0, 2.0, 4000)])
    d = FourierDensity.fit(data, 8)
    assert d.n_channels == 2
    for c, truth in enumerate([stats.norm(3.0, 0.5), stats.laplace(-1.0, 2.0)]):
        single = FourierDensity(d.coeffs[c], domain="real", scale=d.scale[c], offset=d.offset[c])
        assert single.nll(data[c]) < -truth.logpdf(data[c]).mean() + 0.02
    smooth = FourierDensity.fit(data[0], 16, penalty=1.0)
    rough = FourierDensity.fit(data[0], 16)
    pen = lambda m: np.sum(np.arange(16) ** 2 * np.abs(m.autocorrelation) ** 2)  # noqa: E731
    assert pen(smooth) < pen(rough)


def test_fit_is_the_same_on_one_and_two_threads() -> None:
    # Large enough (> 4 chunks) for the compressed fit, whose sort runs in parallel on two
    # threads; tied values with different weights test the sort's total order.
    g = np.random.default_rng(8)
    y = np.round(g.normal(0.0, 0.3, 60000).clip(-0.99, 0.99), 3)
    w = g.integers(1, 4, y.size).astype(float)
    for kw in (dict(domain="interval"), dict(domain="real"), dict(domain="interval", weights=w)):
        one = FourierDensity.fit(y, 10, num_threads=1, **kw)
        two = FourierDensity.fit(y, 10, num_threads=2, **kw)
        np.testing.assert_array_equal(one.coeffs, two.coeffs)
        np.testing.assert_array_equal(one.scale, two.scale)
        np.testing.assert_array_equal(one.offset, two.offset)


def test_quantized_cdf_tables() -> None:
    d = FourierDensity(rand_coeffs(10, 4, channels=2), domain="real", scale=[3.0, 8.0], offset=[0.0, 2.5])
    t = d.quantized_cdf(16, tail_mass=1e-3)
    assert t.overflow and t.precision == 16
    for c in range(2):
        row = t.cdf[c, : t.cdf_length[c]]
        assert row[0] == 0 and row[-1] == 2**16
        assert np.all(np.diff(row) >= 1)
        assert np.all(t.cdf[c, t.cdf_length[c]:] == 2**16)
        # Ideal code length of the table is close to the model's own entropy of the bins.
        k = t.offset[c] + np.arange(t.cdf_length[c] - 2)
        single = FourierDensity(d.coeffs[c], domain="real", scale=d.scale[c], offset=d.offset[c])
        pmf = single.bin_mass(k - 0.5, k + 0.5)
        freq = np.diff(row)[:-1] / 2**16
        assert np.sum(pmf * -np.log2(freq)) < np.sum(pmf * -np.log2(pmf)) + 0.01
    ti = FourierDensity(rand_coeffs(4, 1)).quantized_cdf(8, num_bins=64)
    assert not ti.overflow and ti.cdf.shape == (1, 65) and ti.cdf[0, -1] == 256
    with pytest.raises(probcraft.LimitError):
        FourierDensity([1.0, 0.2], domain="real", scale=1e6).quantized_cdf(8)
    with pytest.raises(ValueError):
        d.quantized_cdf(0)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="not finite"):
        FourierDensity([1.0, np.nan])
    with pytest.raises(ValueError, match="zero"):
        FourierDensity(np.zeros(4))
    with pytest.raises(ValueError, match="channel 1"):
        FourierDensity(np.array([[1.0, 0.5], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="shape"):
        FourierDensity(np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="empty"):
        FourierDensity(np.zeros(0))
    with pytest.raises(TypeError):
        FourierDensity(["a", "b"])
    with pytest.raises(ValueError, match="scale"):
        FourierDensity([1.0, 0.3], domain="real", scale=0.0)
    with pytest.raises(ValueError, match="scale"):
        FourierDensity([1.0, 0.3], domain="real", scale=-2.0)
    with pytest.raises(ValueError, match="shape"):
        FourierDensity(np.ones((3, 2)), domain="real", scale=[1.0, 2.0])
    with pytest.raises(ValueError, match="only to domain='real'"):
        FourierDensity([1.0], scale=2.0)
    with pytest.raises(ValueError, match="domain"):
        FourierDensity([1.0], domain="circle")
    d = FourierDensity([1.0, 0.5j])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        d.ppf([0.5, 1.5])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        d.ppf(-0.1)
    assert np.isnan(d.ppf(np.nan))
    with pytest.raises(TypeError):
        d.pdf(np.array([1 + 1j]))
    with pytest.raises(TypeError):
        d.pdf(np.array(["x"]))
    with pytest.raises(ValueError, match="lower > upper"):
        d.bin_mass(0.5, 0.1)
    with pytest.raises(ValueError, match="support"):
        d.nll([0.0, 2.0])
    with pytest.raises(ValueError, match="num_threads"):
        d.pdf([0.1], num_threads=0)
    with pytest.raises(ValueError):
        d.rvs(-1)
    with pytest.raises(ValueError, match="not finite"):
        FourierDensity.fit([0.0, np.inf, 1.0], 3)
    with pytest.raises(ValueError, match="n_coeffs"):
        FourierDensity.fit([0.0, 1.0], 0)
    with pytest.raises(ValueError, match="optimizer"):
        FourierDensity.fit([0.0, 1.0], 3, optimizer="sgd")
    with pytest.raises(ValueError, match="weight"):
        FourierDensity.fit([0.0, 1.0], 3, weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="penalty"):
        d.nll([0.1], penalty=("wiggly", 1.0))
    with pytest.raises(ValueError, match="penalty"):
        d.nll([0.1], penalty=-1.0)
    with pytest.raises(probcraft.LimitError):
        FourierDensity(np.ones(5000))
    assert np.isnan(d.pdf(np.nan)) and np.isnan(d.cdf(np.nan))
    assert d.pdf(3.0) == 0.0 and d.logpdf(-3.0) == -np.inf


# -- robustness regressions (audit) ------------------------------------------------------

# Written by the version before fit_info was pickled: FourierDensity([1, 0.5-0.25j],
# domain="real", scale=2.0, offset=0.5).
OLD_PICKLE = (
    b"\x80\x04\x95\xe0\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x07getattr\x94\x93"
    b"\x94\x8c\x11probcraft.fourier\x94\x8c\x0eFourierDensity\x94\x93\x94\x8c\x05_wrap\x94\x86"
    b"\x94R\x94h\x02\x8c\x0fprobcraft._core\x94\x8c\x0cFourierModel\x94\x93\x94\x8c\x0b_from_stat"
    b"e\x94\x86\x94R\x94CRPCfd\x01\x00\x04\x00\x00\x00\x00\x00\x00\x00real\x01\x00\x00\x00\x00"
    b"\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00@\x00\x00\x00\x00"
    b"\x00\x00\xe0?\x00\x00\x00\x00\x00\x00\xf0?\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    b"\x00\x00\xe0?\x00\x00\x00\x00\x00\x00\xd0\xbf\x94\x85\x94R\x94\x88\x86\x94R\x94."
)


def test_quantized_cdf_rejects_huge_num_bins_up_front() -> None:
    import time

    d = FourierDensity([1.0, 0.5])
    # 2**40 aborted the process on allocation, 2**62 overflowed a capacity, 2**64 did not
    # convert, and 10**8 computed every bin mass (3.5 s) before the LimitError.
    for nb in (2**40, 2**62, 2**64, 10**8, 17):
        t0 = time.perf_counter()
        with pytest.raises(probcraft.LimitError, match="num_bins"):
            d.quantized_cdf(4, num_bins=nb)
        assert time.perf_counter() - t0 < 0.5
    assert d.quantized_cdf(4, num_bins=16).cdf.shape == (1, 17)
    # num_bins means nothing on the real line: neither the default nor a huge value is checked.
    r = FourierDensity([1.0, 0.5], domain="real", scale=0.5)
    assert r.quantized_cdf(4).overflow and r.quantized_cdf(4, num_bins=2**80).overflow


def test_quantized_cdf_tiny_tail_mass() -> None:
    # 1 - 1e-16/2 == 1.0: the upper quantile used to be +inf ("central range does not fit").
    d = FourierDensity([1.0, 0.5], domain="real")
    t = d.quantized_cdf(16, tail_mass=1e-16)
    lo, n = int(t.offset[0]), int(t.cdf_length[0]) - 2
    hi = lo + n - 1
    assert d.bin_mass(hi + 0.5, np.inf) <= 5e-17 < d.bin_mass(hi - 0.5, np.inf)
    assert d.bin_mass(-np.inf, lo - 0.5) <= 5e-17 < d.bin_mass(-np.inf, lo + 0.5)
    # Ordinary tail masses give the quantile bounds as before.
    for tm in (1e-3, 2.0**-8):
        t = d.quantized_cdf(16, tail_mass=tm)
        lo, hi = np.floor(d.ppf(tm / 2)), np.ceil(d.ppf(1 - tm / 2))
        assert t.offset[0] == lo and t.cdf_length[0] == hi - lo + 3


def test_adam_batch_size_is_capped_and_validated() -> None:
    y = np.random.default_rng(3).normal(size=200)
    kw = dict(optimizer="adam", steps=3, seed=1)
    # 2**40 draws per step aborted or exhausted memory; 2**80 did not convert to an integer.
    big = FourierDensity.fit(y, 3, batch_size=2**40, **kw)
    same = FourierDensity.fit(y, 3, batch_size=200, **kw)
    np.testing.assert_array_equal(big.coeffs, same.coeffs)
    np.testing.assert_array_equal(FourierDensity.fit(y, 3, batch_size=2**80, **kw).coeffs, same.coeffs)
    with pytest.raises(ValueError, match="batch_size"):
        FourierDensity.fit(y, 3, batch_size=0, **kw)
    with pytest.raises(TypeError, match="batch_size"):
        FourierDensity.fit(y, 3, batch_size=2.5, **kw)


def test_weights_scale_does_not_matter() -> None:
    d = FourierDensity([1.0, 0.5])
    x = [0.1, 0.2]
    base = d.nll(x)
    for w in (1e308, 1e-320, 5e-324):
        assert d.nll(x, weights=[w, w]) == pytest.approx(base, abs=1e-14)
    r = FourierDensity([1.0, 0.5 + 0.2j], domain="real", scale=1.5)
    g0 = r.nll_grad(x)
    for w in (1e308, 1e-320):
        g = r.nll_grad(x, weights=[w, w])
        assert g.nll == pytest.approx(g0.nll, abs=1e-14)
        np.testing.assert_allclose(g.coeffs, g0.coeffs, atol=1e-13)
        assert g.scale == pytest.approx(g0.scale, abs=1e-13)
        assert g.offset == pytest.approx(g0.offset, abs=1e-13)
    y = np.random.default_rng(5).normal(size=300)
    for kw in (dict(), dict(optimizer="adam", steps=40), dict(optimizer="adam", steps=40, batch_size=64)):
        want = FourierDensity.fit(y, 5, **kw).fit_info
        for w in (1e307, 1e-320):
            got = FourierDensity.fit(y, 5, weights=np.full(300, w), **kw).fit_info
            assert got["iterations"] > 0
            assert got["nll"] == pytest.approx(want["nll"], abs=1e-9), (kw, w)
    # Per channel: each row has its own scale.
    rows = np.stack([y, 0.5 * y + 1.0])
    w2 = np.stack([np.full(300, 1e307), np.full(300, 1e-320)])
    got = FourierDensity.fit(rows, 5, weights=w2).fit_info["nll"]
    want = FourierDensity.fit(rows, 5).fit_info["nll"]
    np.testing.assert_allclose(got, want, atol=1e-9)
    m = FourierDensity(np.array([[1.0, 0.5], [1.0, -0.3j]]), domain="real")
    np.testing.assert_allclose(m.nll(rows, weights=w2), m.nll(rows), atol=1e-13)


def test_scale_with_infinite_reciprocal_is_rejected() -> None:
    # Accepted before, and then pdf/cdf/nll were all NaN.
    with pytest.raises(ValueError, match="scale"):
        FourierDensity([1.0, 0.5], domain="real", scale=1e-310)
    assert np.isfinite(FourierDensity([1.0, 0.5], domain="real", scale=1e-300).pdf(0.0))


def test_rvs_size_past_the_limit() -> None:
    d = FourierDensity([1.0, 0.5])
    # np.prod in int64 wrapped: a reshape error and a negative-count OverflowError.
    for size in ((2**62 + 1, 4), (2**62, 2), 2**31 + 1, (2**16, 2**16)):
        with pytest.raises(probcraft.LimitError, match="size"):
            d.rvs(size, seed=0)
    two = FourierDensity(np.ones((2, 2)))
    with pytest.raises(probcraft.LimitError, match="size"):
        two.rvs(2**30 + 1, seed=0)
    assert d.rvs((0, 3), seed=0).shape == (0, 3)


def test_diverged_adam_fit_reports_divergence() -> None:
    y = np.random.default_rng(0).normal(size=300)
    # The scale exp(θ) underflowed to 0 and the constructor complained about "scale > 0".
    with pytest.raises(ValueError, match="diverged"):
        FourierDensity.fit(y, 5, optimizer="adam", lr=1e6, steps=50)


def test_pickle_keeps_fit_info_and_reads_old_states() -> None:
    y = np.random.default_rng(1).normal(size=100)
    d = FourierDensity.fit(y, 3)
    e = pickle.loads(pickle.dumps(d))
    assert e.fit_info == d.fit_info and e.fit_info is not None
    m = FourierDensity.fit(np.stack([y, y + 1]), 3)
    f = pickle.loads(pickle.dumps(m)).fit_info
    assert f is not None
    np.testing.assert_array_equal(f["nll"], m.fit_info["nll"])
    old = pickle.loads(OLD_PICKLE)
    assert old.fit_info is None and old.domain == "real" and old.scale == 2.0
    np.testing.assert_array_equal(old.coeffs, [1.0, 0.5 - 0.25j])
    # Unfitted densities pickle exactly as before.
    assert pickle.dumps(old, protocol=4) == OLD_PICKLE


@settings(max_examples=40, deadline=None)
@given(
    coeffs=st.lists(
        st.tuples(st.floats(-10, 10), st.floats(-10, 10)), min_size=1, max_size=12
    ).filter(lambda c: any(abs(r) + abs(i) > 1e-3 for r, i in c)),
    edges=st.lists(st.floats(-1.5, 1.5), min_size=2, max_size=30),
)
def test_property_bins_partition_unity(coeffs: list[tuple[float, float]], edges: list[float]) -> None:
    a = np.array([complex(r, i) for r, i in coeffs])
    d = FourierDensity(a)
    e = np.unique(np.concatenate([[-1.0, 1.0], np.clip(edges, -1, 1)]))
    m = d.bin_mass(e[:-1], e[1:])
    assert np.all(m >= 0)
    assert abs(m.sum() - 1) < 1e-12
    c = d.cdf(e)
    assert np.all(np.diff(c) >= -1e-15)


def _child_sample(q: "mp.Queue[float]") -> None:
    d = FourierDensity([1.0, 0.3j, 0.1])
    q.put(float(d.rvs(100000, seed=1, num_threads=2).mean()))


def test_fork_after_pool_use_does_not_deadlock() -> None:
    d = FourierDensity([1.0, 0.3j, 0.1])
    want = float(d.rvs(100000, seed=1, num_threads=2).mean())
    ctx = mp.get_context("fork")
    q: "mp.Queue[float]" = ctx.Queue()
    p = ctx.Process(target=_child_sample, args=(q,))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert q.get(timeout=5) == want


def test_doctests() -> None:
    res = doctest.testmod(probcraft.fourier, optionflags=doctest.ELLIPSIS)
    assert res.failed == 0 and res.attempted > 10
