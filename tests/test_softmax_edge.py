"""The edge-case table of ``probcraft.softmax`` (module docstring), one row per case.

Each map is run in float32 and float64, on a contiguous row and along axis 0 of a transposed
copy (the strided path), and single-element (Python-level) expectations are checked exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

import probcraft

inf, nan = np.inf, np.nan

# (name, row, softmax, log_softmax, logsumexp)
TABLE = [
    ("some -inf", [0.0, -inf, 0.0], [0.5, 0.0, 0.5], [-np.log(2), -inf, -np.log(2)], np.log(2)),
    ("all -inf", [-inf, -inf], [nan, nan], [nan, nan], -inf),
    ("one +inf", [inf, 0.0, 3.0], [1.0, 0.0, 0.0], [0.0, -inf, -inf], inf),
    ("two +inf", [inf, -inf, inf], [0.5, 0.0, 0.5], [-np.log(2), -inf, -np.log(2)], inf),
    ("nan", [0.0, nan, 1.0], [nan, nan, nan], [nan, nan, nan], nan),
    ("nan and +inf", [inf, nan], [nan, nan], [nan, nan], nan),
    ("empty", [], [], [], -inf),
    ("+-1e30", [1e30, -1e30, 1e30], [0.5, 0.0, 0.5], [-np.log(2), -2e30, -np.log(2)], 1e30),
    ("length 1", [7.0], [1.0], [0.0], 7.0),
    ("length 1 -inf", [-inf], [nan], [nan], -inf),
    ("ties", [2.0, 2.0, 2.0, 2.0], [0.25] * 4, [-np.log(4)] * 4, 2 + np.log(4)),
]

# sparse maps share the special-value rules; their finite answers differ
SPARSE = {
    "some -inf": [0.5, 0.0, 0.5],
    "+-1e30": [0.5, 0.0, 0.5],
    "ties": [0.25] * 4,
}


def _variants(row, dtype):
    x = np.asarray(row, dtype=dtype)
    yield x, lambda f: f(x)
    # strided: the same row as a column of a Fortran-ordered 2-d array, mapped along axis 0
    col = np.asfortranarray(np.stack([x, x], axis=1))
    yield x, lambda f: f(col, axis=0)[:, 1] if col.size else f(col, axis=0)[:, 0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,row,sm,lsm,lse", TABLE, ids=[t[0] for t in TABLE])
def test_edge_table(name, row, sm, lsm, lse, dtype):
    x = np.asarray(row, dtype=dtype)
    want_sm = np.asarray(sm, dtype=np.float64)
    want_lsm = np.asarray(lsm, dtype=np.float64)
    if dtype == np.float32 and name == "+-1e30":
        want_lsm = np.array([-np.log(2), np.float32(-1e30) * 2, -np.log(2)])
    for _, run in _variants(row, dtype):
        p = run(probcraft.softmax)
        assert p.dtype == dtype
        np.testing.assert_allclose(p, want_sm, rtol=1e-6, equal_nan=True)
        np.testing.assert_allclose(run(probcraft.log_softmax), want_lsm, rtol=1e-6, equal_nan=True)
    got = probcraft.logsumexp(x)
    if np.isnan(lse):
        assert np.isnan(got)
    else:
        assert got == pytest.approx(lse, rel=1e-6) or got == lse
    sparse_maps = (probcraft.sparsemax, probcraft.entmax15, lambda a, **k: probcraft.entmax(a, 1.3, **k),
                   lambda a, **k: probcraft.topk_softmax(a, 4, **k))
    for f in sparse_maps:
        for _, run in _variants(row, dtype):
            got = run(f)
            assert got.shape == x.shape and got.dtype == dtype
            if name in SPARSE:
                np.testing.assert_allclose(got, SPARSE[name], rtol=1e-6)
            else:
                # every special row has the same answer as softmax
                np.testing.assert_allclose(got, want_sm, rtol=1e-6, equal_nan=True)


def test_topk_ties_and_inf_rules():
    np.testing.assert_array_equal(probcraft.topk_softmax(np.array([5.0, 5.0, 5.0]), 2), [0.5, 0.5, 0.0])
    np.testing.assert_array_equal(probcraft.topk_softmax(np.array([0.0, inf, inf, inf]), 2), [0, 0.5, 0.5, 0])
    assert np.isnan(probcraft.topk_softmax(np.array([0.0, nan, 1.0]), 1)).all()


def test_taylor_and_perturb_specials():
    np.testing.assert_array_equal(probcraft.taylor_softmax(np.array([-inf, 0.0, inf])), [0.5, 0.0, 0.5])
    assert np.isnan(probcraft.taylor_softmax(np.array([nan, 0.0]))).all()
    np.testing.assert_array_equal(probcraft.perturbmax(np.array([0.0, -inf])), [1.0, 0.0])
    np.testing.assert_array_equal(probcraft.perturbmax(np.array([inf, 0.0])), [1.0, 0.0])
    assert np.isnan(probcraft.perturbmax(np.array([-inf, -inf]))).all()
    assert probcraft.perturbmax(np.zeros((2, 0))).shape == (2, 0)


def test_losses_with_special_logits():
    from probcraft import losses

    x = np.array([[0.0, -inf, 1.0]])
    assert losses.cross_entropy(x, np.array([1])) == inf
    assert np.isfinite(losses.sparsemax_loss(x, np.array([2])))
    assert losses.sparsemax_loss(x, np.array([1])) == inf
    assert np.isnan(losses.cross_entropy(np.array([[nan, 0.0]]), np.array([1])))


# ------------------------------------------------------------------ robustness (audit fixes)
from numpy.lib.stride_tricks import as_strided  # noqa: E402

from probcraft import losses as L  # noqa: E402

MAPS_WITH_OUT = [
    probcraft.softmax,
    probcraft.log_softmax,
    probcraft.sparsemax,
    probcraft.entmax15,
    lambda x, **k: probcraft.entmax(x, 1.3, **k),
    lambda x, **k: probcraft.topk_softmax(x, 2, **k),
    probcraft.taylor_softmax,
    probcraft.perturbmax,
    lambda x, **k: probcraft.scaled_softmax(x, 64, **k),
]


def test_more_than_32_dimensions():
    # rust-numpy panicked beyond 32 dims; the rows are collapsed to outer × axis × inner.
    rng = np.random.default_rng(0)
    small = rng.standard_normal((2, 3, 4))
    big = small.reshape((2,) + (1,) * 15 + (3,) + (1,) * 16 + (4,))  # 34 dims, axis 16 is 3
    assert big.ndim == 34
    for ax_small, ax_big in [(1, 16), (-1, -1), (0, 0)]:
        for f in (probcraft.softmax, probcraft.log_softmax, probcraft.sparsemax):
            want = f(small, axis=ax_small)
            got = f(big, axis=ax_big)
            assert got.shape == big.shape
            np.testing.assert_array_equal(got.reshape(small.shape), want)
            o = np.empty_like(big)
            assert f(big, axis=ax_big, out=o) is o
            np.testing.assert_array_equal(o.reshape(small.shape), want)
        lse = probcraft.logsumexp(big, axis=ax_big, keepdims=True)
        np.testing.assert_array_equal(
            lse.reshape(-1), probcraft.logsumexp(small, axis=ax_small).reshape(-1)
        )
        y = probcraft.softmax(big, axis=ax_big)
        g = np.ones_like(big)
        np.testing.assert_array_equal(
            probcraft.softmax_vjp(y, g, axis=ax_big).reshape(small.shape),
            probcraft.softmax_vjp(y.reshape(small.shape), g.reshape(small.shape), axis=ax_small),
        )
        gx, ga = probcraft.entmax_vjp(y, g, axis=ax_big)
        assert gx.shape == big.shape and ga.shape[ax_big] == 1 and ga.ndim == 34
        np.testing.assert_array_equal(
            probcraft.sparsity(big, axis=ax_big).reshape(-1),
            probcraft.sparsity(small, axis=ax_small).reshape(-1),
        )
    # per-row parameters of the shape without the axis, and a non-collapsible (strided) view
    t = rng.uniform(0.5, 2.0, (2, 4))
    want = probcraft.softmax(small, axis=1, temperature=t)
    np.testing.assert_allclose(
        probcraft.softmax(big, axis=16, temperature=t.reshape(big.shape[:16] + big.shape[17:])).reshape(small.shape),
        want, rtol=1e-15,
    )
    view = np.swapaxes(big, 0, 33)
    np.testing.assert_array_equal(
        probcraft.softmax(view, axis=16), np.swapaxes(probcraft.softmax(big, axis=16), 0, 33)
    )
    tgt = np.zeros((1,) * 32, dtype=int)
    loss, grad = L.cross_entropy(np.zeros((1,) * 32 + (3,)), tgt, return_grad=True, reduction="none")
    assert loss.shape == (1,) * 32 and grad.shape == (1,) * 32 + (3,)
    np.testing.assert_allclose(grad.reshape(-1), [-2 / 3, 1 / 3, 1 / 3])
    with pytest.raises(ValueError, match="target has shape"):
        L.cross_entropy(np.zeros((1,) * 33), np.zeros((1,) * 31, dtype=int))


def test_huge_outputs_raise_memory_error():
    # The bindings sized results with `vec![...; n]` / `PyArrayDyn::new`, which abort or
    # panic when the allocation fails. 2**59 per-row results (4 EiB) exceed every address space, as does a
    # broadcast view of 2**59 float64.
    for f in (probcraft.logsumexp, probcraft.sparsity):
        with pytest.raises(MemoryError):
            f(np.empty((0, 2**59)), axis=0)
    with pytest.raises(MemoryError):
        probcraft.entmax_vjp(np.empty((0, 2**59)), np.empty((0, 2**59)), axis=0)
    huge = np.broadcast_to(np.float64(0), (2**59,))
    for call in (lambda: probcraft.softmax(huge), lambda: probcraft.softmax_vjp(huge, huge),
                 lambda: probcraft.sparsemax(huge)):
        with pytest.raises(MemoryError):
            call()
    with pytest.raises(MemoryError):
        L.cross_entropy(np.broadcast_to(np.float64(0), (2, 2**58)), np.zeros(2, int), return_grad=True)


def test_empty_axis_with_many_rows_returns_at_once():
    import time

    t0 = time.perf_counter()
    x = np.empty((10**12, 0))
    for f in MAPS_WITH_OUT:
        assert f(x).shape == x.shape
    for f in (probcraft.softmax_vjp, probcraft.log_softmax_vjp, probcraft.sparsemax_vjp,
              probcraft.entmax15_vjp, probcraft.topk_softmax_vjp, probcraft.taylor_softmax_vjp,
              probcraft.perturbmax_vjp):
        assert f(x, x).shape == x.shape
    assert probcraft.entmax_vjp(np.empty((0, 10**12)), np.empty((0, 10**12)))[0].shape == (0, 10**12)
    assert probcraft.logsumexp_vjp(np.empty((0, 10**12)), np.empty(0)).shape == (0, 10**12)
    assert time.perf_counter() - t0 < 5.0  # each took ~67 ns per empty row: 19 hours
    # logsumexp / sparsity of empty rows: a fill, not a loop over the rows
    t0 = time.perf_counter()
    lse = probcraft.logsumexp(np.empty((10**7, 0), np.float32))
    assert lse.dtype == np.float32 and lse.shape == (10**7,) and np.all(lse == -np.inf)
    assert np.isnan(probcraft.sparsity(np.empty((10**7, 0)))).all()
    assert time.perf_counter() - t0 < 2.0
    # still validated
    with pytest.raises(ValueError, match="temperature"):
        probcraft.softmax(x, temperature=-1.0)
    with pytest.raises(ValueError, match="num_threads"):
        probcraft.softmax(x, num_threads=0)
    with pytest.raises(ValueError, match="order"):
        probcraft.sparsity(np.empty((3, 0)), "renyi", order=-1.0)


def test_float32_temperature_whose_inverse_rounds_to_zero():
    x = np.array([0.0, -np.inf, 1.0])
    np.testing.assert_array_equal(probcraft.softmax(x, temperature=1e300), [0.5, 0.0, 0.5])
    x32 = x.astype(np.float32)
    for f in (probcraft.softmax, probcraft.log_softmax):
        with pytest.raises(ValueError, match="temperature 1e300 is too large for float32"):
            f(x32, temperature=1e300)
        with pytest.raises(ValueError, match="too large for float32"):
            f(x32.reshape(1, 3), temperature=[1e300])
        # a large temperature that 1/τ still represents is fine, and the limit is right
        np.testing.assert_array_equal(f(x32, temperature=1e40), f(x, temperature=1e40).astype(np.float32))
    y = probcraft.softmax(x32)
    for f in (probcraft.softmax_vjp, probcraft.log_softmax_vjp):
        with pytest.raises(ValueError, match="too large for float32"):
            f(y, np.ones(3, np.float32), temperature=1e300)
    # the tiny-temperature message prints the number in exponent form, not 300 digits
    with pytest.raises(ValueError, match=r"^temperature 1e-300 is too small for float32") as e:
        probcraft.softmax(x32, temperature=1e-300)
    assert len(str(e.value)) < 100
    with pytest.raises(ValueError, match=r"got -1e-300$"):
        probcraft.softmax(x32, temperature=-1e-300)


def test_scaled_softmax_scale_edge_cases():
    x = np.array([0.0, 1.0, 2.0])
    for n in (np.nan, 0.5, 1e309, -np.inf):
        with pytest.raises(ValueError, match="^n must be finite"):
            probcraft.scaled_softmax(x, 64, n=n)
        with pytest.raises(ValueError, match="^n must be finite"):
            probcraft.entropy_invariant_scale(n, 64)
    for d in (np.nan, 0.0, -1.0, np.inf):
        with pytest.raises(ValueError, match="^d must be positive"):
            probcraft.entropy_invariant_scale(512, d)
    with pytest.raises(ValueError, match="^base"):
        probcraft.entropy_invariant_scale(512, 64, base=np.nan)
    # λ = 0 (n = 1) is the limit τ → ∞, uniform over the unmasked entries, not τ = 1
    for dt in (np.float32, np.float64):
        xd = x.astype(dt)
        y = probcraft.scaled_softmax(xd, 64, n=1)
        assert y.dtype == dt
        np.testing.assert_allclose(y, [1 / 3] * 3, rtol=1e-7)
        masked = np.array([[0.0, 5.0, -np.inf], [3.0, -np.inf, -np.inf]], dtype=dt)
        np.testing.assert_array_equal(probcraft.scaled_softmax(masked, 64, n=[2, 1])[1], [1, 0, 0])
        np.testing.assert_array_equal(probcraft.scaled_softmax(masked, 64, n=1), [[0.5, 0.5, 0], [1, 0, 0]])
        np.testing.assert_array_equal(probcraft.scaled_softmax(np.array([np.inf, 0, np.inf], dt), 64, n=1), [0.5, 0, 0.5])
        o = np.empty((2, 3), dt)
        assert probcraft.scaled_softmax(masked, 64, n=1, out=o) is o
        np.testing.assert_array_equal(o, [[0.5, 0.5, 0], [1, 0, 0]])
    # rows with λ > 0 next to λ = 0 rows keep their own scale
    x2 = np.array([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]])
    lam = np.log(3) / np.log(512) / 8
    np.testing.assert_allclose(probcraft.scaled_softmax(x2, 64, n=[1, 3])[0], [1 / 3] * 3)
    np.testing.assert_allclose(probcraft.scaled_softmax(x2, 64, n=[1, 3])[1], probcraft.softmax(x * lam), rtol=1e-14)
    # an empty axis behaves like softmax on it
    for shape in ((2, 0), (0,)):
        assert probcraft.scaled_softmax(np.zeros(shape), 64).shape == shape
    with pytest.raises(ValueError, match="overflows float32"):
        probcraft.scaled_softmax(x.astype(np.float32), 1e-300)


def test_losses_reject_0d_logits():
    for f, extra in ((L.cross_entropy, {}), (L.sparsemax_loss, {}), (L.tailr_loss, {}),
                     (L.entmax_loss, {}), (L.topk_softmax_loss, {"k": 1})):
        with pytest.raises(ValueError, match="at least one dimension"):
            f(np.zeros(()), np.array(0), return_grad=True, reduction="none", **extra)
    loss, grad = L.cross_entropy(np.zeros(3), np.array(1), return_grad=True, reduction="none")
    assert loss.shape == () and grad.shape == (3,)


@pytest.mark.parametrize("f", MAPS_WITH_OUT)
def test_out_with_overlapping_elements_is_rejected(f):
    x = np.arange(24.0).reshape(4, 6) / 10
    want = f(x)
    o = as_strided(np.zeros(10), shape=(4, 6), strides=(8, 8))
    with pytest.raises(ValueError, match="^out has overlapping elements"):
        f(x, out=o)
    # a zero stride (as_strided makes it writable, unlike np.broadcast_to)
    zw = as_strided(np.zeros(6), shape=(4, 6), strides=(0, 8))
    with pytest.raises(ValueError, match="^out has overlapping elements"):
        f(x, out=zw)
    # strided but distinct outputs stay accepted: every third column (whose strides the plain
    # "stride ≥ previous stride × extent" test would refuse), a transpose, reversed strides
    for o in (np.zeros((4, 18))[:, ::3], np.zeros((6, 4)).T, np.zeros((8, 12))[::-2, ::-2]):
        assert f(x, out=o) is o
        np.testing.assert_allclose(o, want, rtol=1e-15)


def test_num_threads_validated_for_every_size():
    small = np.zeros((2, 3))
    t = np.array([0, 1])
    calls = [
        lambda n: probcraft.softmax(small, num_threads=n),
        lambda n: probcraft.sparsemax(small, num_threads=n),
        lambda n: probcraft.logsumexp(small, num_threads=n),
        lambda n: probcraft.sparsity(small, num_threads=n),
        lambda n: probcraft.softmax_vjp(small, small, num_threads=n),
        lambda n: L.cross_entropy(small, t, num_threads=n),
        lambda n: L.sparsemax_loss(small, t, num_threads=n),
    ]
    for call in calls:
        for n in (0, -1, 2**64, 10**6):
            with pytest.raises(ValueError, match=f"^num_threads must be between 1 and 1024 .*got {n}$"):
                call(n)
        call(1)
        call(None)
    # the binding checks too (small arrays never reach the pool, but the count is still bad)
    from probcraft import _core

    with pytest.raises(ValueError, match="num_threads"):
        _core._sm_softmax(small, 1, np.ones(1), None, 0)
    with pytest.raises(ValueError, match="num_threads"):
        _core._sm_logsumexp(small, 1, 0)


def test_argument_messages_name_argument_and_value():
    x = np.zeros(3)
    for k in (-1, 0, 2**64):
        with pytest.raises(ValueError, match=f"^n_points must be in .*got {k}$"):
            probcraft.perturbmax(x, n_points=k)
        with pytest.raises(ValueError, match=f"^n_points must be in .*got {k}$"):
            probcraft.perturbmax_vjp(x, x, n_points=k)
    for k in (-2, 0, 3, 66, 2**64):
        with pytest.raises(ValueError, match=f"^order must be an even integer.*got {k}$"):
            probcraft.taylor_softmax(x, order=k)
        with pytest.raises(ValueError, match=f"^order must be an even integer.*got {k}$"):
            probcraft.taylor_softmax_vjp(x, x, order=k)
    for ii in (2**63, -(2**63) - 1):
        with pytest.raises(ValueError, match=f"^ignore_index must fit in int64, got {ii}$"):
            L.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), ignore_index=ii)
    assert L.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), ignore_index=2**63 - 1) > 0
    # per-row parameter messages print extreme values in exponent form
    with pytest.raises(ValueError, match=r"^alpha must be in .*got 1e20$"):
        probcraft.entmax(x, alpha=1e20)
    with pytest.raises(ValueError, match=r"^temperature must be positive and finite, got -1e-300$"):
        probcraft.softmax(x, temperature=-1e-300)


def test_complex_parameters_are_type_errors():
    x = np.zeros((2, 3))
    calls = [
        lambda: probcraft.logsumexp_vjp(x, 1 + 1j),
        lambda: probcraft.logsumexp_vjp(x, np.ones(2) + 1j),
        lambda: probcraft.softmax(x, temperature=np.ones(2) + 1j),
        lambda: probcraft.entmax(x, alpha=np.array([1.5 + 0j])),
        lambda: probcraft.scaled_softmax(x, 64, n=np.array([2 + 1j, 3])),
        lambda: probcraft.entropy_invariant_scale(512, 64 + 0j),
        lambda: L.emo_loss(x, np.array([0, 1]), np.eye(3) + 1j),
        lambda: L.entmax_loss(x, np.array([0, 1]), alpha=np.array([1.5 + 0j])),
    ]
    import warnings

    for call in calls:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no ComplexWarning either
            with pytest.raises(TypeError, match="must be real"):
                call()


def test_renyi_sparsity_and_emo_norms_survive_extreme_scales():
    for v in (1e308, 1e-320, 1.0):
        assert probcraft.sparsity(np.array([v, v, 0, 0]), "renyi") == pytest.approx(np.log(2), rel=1e-15)
        for order in (0.0, 1.0, 0.5, np.inf):
            assert probcraft.sparsity(np.array([v, v, 0, 0]), "renyi", order=order) == pytest.approx(np.log(2), rel=1e-15)
    logits = np.array([[0.3, -1.0, 2.0], [1.0, 0.0, 0.5]])
    t = np.array([0, 2])
    emb = np.array([[1.0, 2.0], [-3.0, 0.5], [0.25, 0.25]])
    want = L.emo_loss(logits, t, emb, return_grad=True)
    for scale in (1e160, 1e300, 1e-200, 1e-310):
        got = L.emo_loss(logits, t, emb * scale, return_grad=True)
        assert got[0] == pytest.approx(want[0], rel=1e-12)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-12, atol=1e-15)
    for bad in (np.zeros((3, 2)), np.full((3, 2), np.inf), np.full((3, 2), np.nan)):
        with pytest.raises(ValueError, match="embedding row 0"):
            L.emo_loss(logits, t, bad)
