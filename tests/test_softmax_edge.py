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
