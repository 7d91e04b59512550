"""SIMD paths against the scalar path (issue 8): every length 0..257, misaligned slices
(offsets of 1..3 elements and a 1-byte offset), random and adversarial values. The level is
switched with `probcraft.set_simd_level`; on a CPU with only the scalar level the comparison
is trivially true and the tests skip."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest

import probcraft

LEVELS = [lv for lv in probcraft.build_info()["simd_available"] if lv != "scalar"]
pytestmark = pytest.mark.skipif(not LEVELS, reason="no SIMD level besides scalar")

DENSITY = probcraft.FourierDensity(np.array([1.0, 0.4 + 0.2j, -0.1j, 0.05, 0.02 + 0.01j]))
DENSITY_REAL = probcraft.FourierDensity(np.array([1.0, 0.3j, -0.2]), domain="real", scale=2.0)

FUNCS: dict[str, Callable[[np.ndarray], Any]] = {
    "softmax": probcraft.softmax,
    "log_softmax": probcraft.log_softmax,
    "logsumexp": probcraft.logsumexp,
    "sparsemax": probcraft.sparsemax,
    "entmax15": probcraft.entmax15,
    "softmax_T": lambda x: probcraft.softmax(x, temperature=0.37),
    "topk_softmax_3": lambda x: probcraft.topk_softmax(x, 3),
    "topk_softmax_40": lambda x: probcraft.topk_softmax(x, 40),
    "entmax_1.25": lambda x: probcraft.entmax(x, alpha=1.25),
    "entmax_1.5_general": lambda x: probcraft.entmax(x, alpha=1.5000001),
    "entmax_3": lambda x: probcraft.entmax(x, alpha=3.0),
}
POINT_FUNCS: dict[str, Callable[[np.ndarray], Any]] = {
    "pdf": DENSITY.pdf,
    "cdf": DENSITY.cdf,
    "logpdf": DENSITY.logpdf,
    "pdf_real": DENSITY_REAL.pdf,
    "cdf_real": DENSITY_REAL.cdf,
}


@pytest.fixture()
def restore_level():
    before = probcraft.build_info()["simd"]
    yield
    probcraft.set_simd_level(before)


def adversarial(n: int, dtype: Any, rng: np.random.Generator) -> list[np.ndarray]:
    big = 88.0 if dtype == np.float32 else 709.0
    out = [
        rng.standard_normal(n) * 10,
        np.full(n, 3.0),  # ties
        rng.choice([-np.inf, 0.0, 1.0, big, -big, 1e30, -1e30], n),
        rng.standard_normal(n) * 1e-40,  # subnormals
    ]
    if n:
        x = rng.standard_normal(n)
        x[rng.integers(n)] = np.nan
        out.append(x)
        x = rng.standard_normal(n)
        x[rng.integers(n)] = np.inf
        out.append(x)
    return [v.astype(dtype) for v in out]


def same(a: Any, b: Any, dtype: Any, what: str) -> None:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, what
    assert np.array_equal(np.isnan(a), np.isnan(b)), what
    ok = ~np.isnan(a)
    rtol, atol = (2e-6, 1e-7) if dtype == np.float32 else (1e-13, 1e-15)
    np.testing.assert_allclose(b[ok], a[ok], rtol=rtol, atol=atol, err_msg=what)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_family_simd_matches_scalar(dtype: Any, restore_level: None) -> None:
    rng = np.random.default_rng(42)
    itemsize = np.dtype(dtype).itemsize
    for n in range(258):
        # One row per adversarial pattern; the kernels run row by row along the last axis.
        x = np.stack(adversarial(n, dtype, rng)) if n else np.zeros((4, 0), dtype)
        rows = x.shape[0]
        # The same rows at element offsets 1..3 of wider rows (alignment differs per row)
        # and at a 1-byte offset (not even naturally aligned).
        views = []
        for off in (1, 2, 3):
            buf = np.empty((rows, n + 4), dtype)
            buf[:, off : off + n] = x
            views.append(buf[:, off : off + n])
        raw = np.zeros(x.size * itemsize + 1, np.uint8)
        raw[1:] = x.reshape(-1).view(np.uint8)
        views.append(np.frombuffer(raw.data, dtype=dtype, count=x.size, offset=1).reshape(x.shape))
        for name, f in FUNCS.items():
            probcraft.set_simd_level("scalar")
            ref = f(x)
            for level in LEVELS:
                probcraft.set_simd_level(level)
                same(ref, f(x), dtype, f"{name} n={n} level={level}")
                for i, v in enumerate(views):
                    same(ref, f(v), dtype, f"{name} n={n} view={i} level={level}")


def test_fourier_simd_matches_scalar(restore_level: None) -> None:
    rng = np.random.default_rng(7)
    for n in range(258):
        xs = [
            rng.uniform(-1.2, 1.2, n),
            np.full(n, 0.5),
            rng.choice([np.nan, np.inf, -np.inf, -1.0, 1.0, 0.0, 1e-300], n),
        ]
        x = np.concatenate(xs)  # length 3n: every remainder modulo the vector width
        buf = np.empty(x.size + 3)
        buf[3:] = x
        view = buf[3:]  # 24-byte offset: misaligned for 32-byte vectors
        for name, f in POINT_FUNCS.items():
            probcraft.set_simd_level("scalar")
            ref = f(x)
            for level in LEVELS:
                probcraft.set_simd_level(level)
                same(ref, f(view), np.float64, f"{name} n={n} level={level}")
    q = np.concatenate([[0.0, 1.0, 1e-300, 1 - 1e-16], rng.uniform(0, 1, 253)])
    probcraft.set_simd_level("scalar")
    ref = DENSITY.ppf(q)
    for level in LEVELS:
        probcraft.set_simd_level(level)
        np.testing.assert_allclose(DENSITY.ppf(q), ref, rtol=0, atol=1e-11)
