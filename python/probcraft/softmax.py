"""The softmax family: maps from R^n to the probability simplex, their VJPs, and helpers.

Every map works along one ``axis`` of an array of any rank (``axis=None``: the whole array as
one row, as in scipy). float32 and float64 are preserved, integers and bools are promoted to
float64, float16 to float32; views with any strides and any number of dimensions are
accepted. ``out=`` may alias the input but not itself (an ``as_strided`` view whose elements
share memory is refused). ``num_threads`` (1 to 1024, checked at every call) splits rows
across a private pool (``None``: the default thread count); small arrays stay on the calling
thread. Per-row parameters (``temperature``, ``alpha``, ``k``) broadcast: a scalar, an array
shaped like ``x`` with the axis of length 1 (``keepdims``), or an array of the shape of ``x``
without the axis.

Every map ``f`` has ``f_vjp(y, grad, ...)``, the vector-Jacobian product computed from the
map's output ``y`` without forming the Jacobian. Three maps' outputs do not determine their
Jacobian, and their VJPs take the input instead: ``logsumexp_vjp(x, ...)``,
``taylor_softmax_vjp(x, ...)`` and ``perturbmax_vjp(x, ...)`` (Gaussian / logistic noise).

Special values (the same rule for every map, tested in ``tests/test_softmax_edge.py``):

===================  ==============================  =====================  ===============
row                  softmax / sparsemax / entmax    log_softmax            logsumexp
===================  ==============================  =====================  ===============
some ``-inf``        0 at those entries              ``-inf`` there         finite
all ``-inf``         NaN (as scipy and torch)        NaN                    ``-inf``
some ``+inf``        ``1/c`` on the ``c`` infinities ``-log c`` / ``-inf``  ``+inf``
any NaN              NaN row                         NaN row                NaN
empty axis           empty result                    empty result           ``-inf``
``+-1e30``           exact (computed from the max)   exact                  exact
length 1             1 (NaN for ``-inf``/NaN)        0                      the entry
===================  ==============================  =====================  ===============

(scipy returns NaN for rows with ``+inf``; the equal split is the limit of softmax as those
entries grow together.) Taylor softmax is not shift invariant: ``f_k(+-inf) = inf``, so both
infinities share the mass there. Exponentials below about the smallest normal number are
flushed to zero by the vectorised ``exp`` (float32: ``exp(x - max) < exp(-87) ~ 1.6e-38``;
float64: below 2.2e-308).

Gaussian perturb-max (``perturbmax(x, "gaussian")``) is computed by quadrature with
``n_points`` Gauss-Legendre nodes over the range of the maximum (see ``rust/simplex/
perturb.rs``); against the closed form for two entries the maximum absolute error is 2e-15
with the default 128 nodes (64 nodes: 8e-11). Logistic noise has heavier tails: 1.4e-11 with
its default of 256 nodes, 1e-15 with 512.

>>> import numpy as np, probcraft
>>> probcraft.softmax(np.array([1.0, 2.0, 3.0])).round(4)
array([0.09  , 0.2447, 0.6652])
>>> probcraft.sparsemax(np.array([1.0, 2.0, 3.5]))
array([0., 0., 1.])
>>> probcraft.entmax(np.array([0.0, 0.5, 1.0]), alpha=2.0)
array([0.  , 0.25, 0.75])
"""

from __future__ import annotations

import math
import operator
from typing import Any, Optional, Union

import numpy as np
import numpy.typing as npt

from . import _core

__all__ = [
    "entmax",
    "entmax15",
    "entmax15_vjp",
    "entmax_vjp",
    "entropy_invariant_scale",
    "log_softmax",
    "log_softmax_vjp",
    "logsumexp",
    "logsumexp_vjp",
    "perturbmax",
    "perturbmax_vjp",
    "scaled_softmax",
    "softmax",
    "softmax_vjp",
    "sparsemax",
    "sparsemax_vjp",
    "sparsity",
    "taylor_softmax",
    "taylor_softmax_vjp",
    "topk_softmax",
    "topk_softmax_vjp",
]

ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.floating[Any]]
Axis = Optional[int]


# The dtypes the kernels take as they are. Built-in descriptors are singletons, so an
# identity test settles the common case without numpy's slower dtype comparison.
_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _as_float(x: ArrayLike, name: str = "x") -> FloatArray:
    if type(x) is np.ndarray:
        dt = x.dtype
        if dt is _KERNEL_DTYPES[0] or dt is _KERNEL_DTYPES[1]:
            return x
    a = np.asarray(x)
    dt = a.dtype
    if dt.kind == "f":
        if dt.itemsize < 4:
            return a.astype(np.float32)
        if dt.itemsize > 8:
            raise TypeError(f"{name}: {dt} is not supported; use float32 or float64")
        if not dt.isnative:
            return a.astype(dt.newbyteorder("="))
        return a
    if dt.kind in "biu":
        return a.astype(np.float64)
    raise TypeError(f"{name} must be a real (float, int or bool) array, got dtype {dt}")


def _unit() -> npt.NDArray[np.float64]:
    one = np.ones(1)
    one.flags.writeable = False  # shared by every call: nobody may change it
    return one


# The default of every scalar parameter that defaults to 1 (temperature, scale), made once:
# building a one-element array costs about as much as a small softmax.
_ONE = _unit()


def _real(value: Any, name: str) -> npt.NDArray[np.float64]:
    """A parameter as float64; complex values are a TypeError (``np.asarray(..., float64)``
    would drop the imaginary part with only a ComplexWarning)."""
    if isinstance(value, (float, int)):  # the usual scalar: no dtype to inspect
        return np.asarray(value, dtype=np.float64)
    v = np.asarray(value)
    if v.dtype.kind == "c":
        raise TypeError(f"{name} must be real, got dtype {v.dtype}")
    return v.astype(np.float64, copy=False)


# rust-numpy's arrays have at most 32 dimensions (it panics on more; numpy 2 allows 64).
_KERNEL_MAX_NDIM = 32


def _axis(a: np.ndarray, axis: Axis) -> int:
    nd = a.ndim
    if nd == 0 or axis is None:
        return 0
    ax = axis if type(axis) is int else operator.index(axis)
    if not -nd <= ax < nd:
        raise np.exceptions.AxisError(ax, nd)
    return ax % nd


class _Rows:
    """``x`` arranged for the kernels: the array ``a``, the kernel axis and how to undo the
    reshape (``axis=None``: one row; more than 32 dimensions: ``outer × axis × inner``, which
    has the same rows in the same C order)."""

    __slots__ = ("a", "axis", "flat", "orig_axis", "orig_shape", "reshaped")

    def __init__(self, x: ArrayLike, axis: Axis, name: str = "x") -> None:
        a = _as_float(x, name)
        self.orig_shape = a.shape
        nd = len(self.orig_shape)
        self.flat = axis is None or nd == 0
        if self.flat:
            a = a.reshape(-1)
            self.axis = self.orig_axis = 0
            self.reshaped = True
        else:
            self.axis = self.orig_axis = _axis(a, axis)
            self.reshaped = nd > _KERNEL_MAX_NDIM
            if self.reshaped:
                # The kernels only need the rows: collapsing the axes before and after
                # ``axis`` keeps every row and their order (a copy only for views that do not
                # collapse, and only on this rare path).
                ax, sh = self.axis, a.shape
                a = a.reshape(math.prod(sh[:ax]), sh[ax], math.prod(sh[ax + 1 :]))
                self.axis = 1
        self.a = a

    def restore(self, r: np.ndarray) -> np.ndarray:
        """A result shaped like ``a`` back to the caller's shape."""
        return r.reshape(self.orig_shape) if self.reshaped else r

    def restore_outer(self, r: np.ndarray) -> np.ndarray:
        """A per-row result back to the caller's shape without the axis."""
        return r.reshape(self.outer_shape()) if self.reshaped else r

    def outer_shape(self) -> tuple[int, ...]:
        """The caller's shape without the axis (``()`` for ``axis=None``)."""
        if self.flat:
            return ()
        s = list(self.orig_shape)
        del s[self.orig_axis]
        return tuple(s)

    def param(self, value: Any, name: str) -> np.ndarray:
        """One float64 per row (or a single value), C order over the other axes."""
        if type(value) is float and value == 1.0:  # the default temperature / scale
            return _ONE
        v = _real(value, name)
        if v.size == 1:
            return v.reshape(1)
        if self.flat:
            raise ValueError(f"{name} must be a scalar with axis=None, got shape {v.shape}")
        keep = list(self.orig_shape)
        keep[self.orig_axis] = 1
        target: tuple[int, ...] = (
            tuple(keep) if v.ndim == len(self.orig_shape) else self.outer_shape()
        )
        try:
            b = np.broadcast_to(v, target)
        except ValueError:
            raise ValueError(
                f"{name} of shape {v.shape} does not broadcast to one value per row: expected "
                f"a scalar, shape {tuple(keep)} or shape {self.outer_shape()}"
            ) from None
        return np.ascontiguousarray(b).reshape(-1)


def _self_overlapping(a: np.ndarray) -> bool:
    """Whether elements of ``a`` may share memory (``as_strided`` views): sorted by |stride|,
    each axis of length > 1 must step past every byte the faster axes reach. Exact for views
    made by slicing, transposing or reshaping; it reports overlap for a few interleaved
    ``as_strided`` layouts that do not (the test of ``rust/simplex/layout.rs``
    ``may_overlap``). About 1 µs; contiguous arrays skip it."""
    flags = a.flags  # a new object at each access
    if flags.c_contiguous or flags.f_contiguous:  # (also every empty array)
        return False
    reach = a.itemsize - 1
    for s, n in sorted([(abs(s), n) for s, n in zip(a.strides, a.shape) if n > 1]):
        if s <= reach:
            return True
        reach += (n - 1) * s
    return False


def _check_out(out: Any, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy array, got {type(out).__name__}")
    if out.shape != shape or out.dtype != dtype:
        raise ValueError(
            f"out must have shape {shape} and dtype {dtype}, got {out.shape} and {out.dtype}"
        )
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    # Writing a result into self-overlapping memory leaves garbage (several results per
    # element): rejected rather than silently wrong.
    if _self_overlapping(out):
        raise ValueError(
            f"out has overlapping elements (strides {out.strides} for shape {out.shape}); "
            "pass an array whose elements are distinct in memory"
        )
    return out


def _map_out(rows: _Rows, out: Any, compute: Any) -> np.ndarray:
    """Runs ``compute(out_or_None)`` honouring ``out=`` (aliasing with the input is allowed)."""
    if out is None:
        return rows.restore(compute(None))
    o = _check_out(out, rows.orig_shape, rows.a.dtype)
    target = o.reshape(rows.a.shape) if rows.reshaped else o
    # ``reshape`` returns a view of ``o`` or a fresh copy, so the cheap bounds test tells them
    # apart (the exact ``np.shares_memory`` can take exponential time on strided views).
    direct = np.may_share_memory(target, o) if rows.reshaped else True
    if direct and not np.may_share_memory(target, rows.a):
        compute(target)
    else:
        np.copyto(o, rows.restore(compute(None)))
    return o


def _threads(num_threads: Optional[int]) -> Optional[int]:
    """Checked here so that -1 or 2**64 get the same ValueError as 0 (the binding's unsigned
    conversion would raise an OverflowError that does not name the argument)."""
    if num_threads is None:
        return None
    n = operator.index(num_threads)
    if not 1 <= n <= _core._SM_MAX_THREADS:
        raise ValueError(
            f"num_threads must be between 1 and {_core._SM_MAX_THREADS} (or None), got {n}"
        )
    return n


def _n_points(n_points: Optional[int]) -> Optional[int]:
    if n_points is None:
        return None
    k = operator.index(n_points)
    if not _core._SM_MIN_POINTS <= k <= _core._SM_MAX_POINTS:
        raise ValueError(
            f"n_points must be in [{_core._SM_MIN_POINTS}, {_core._SM_MAX_POINTS}], got {k}"
        )
    return k


def _taylor_order(order: int) -> npt.NDArray[np.float64]:
    # Checked as an int: through float64 and the binding's cast, -2 read as 0 and 2**64 as
    # 18446744073709551615 in the message.
    k = operator.index(order)
    if k < 2 or k % 2 or k > _core._SM_MAX_ORDER:
        raise ValueError(
            f"order must be an even integer in [2, {_core._SM_MAX_ORDER}] (odd orders can be "
            f"negative), got {k}"
        )
    return np.array([k], dtype=np.float64)


def softmax(
    x: ArrayLike,
    axis: Axis = -1,
    *,
    temperature: ArrayLike = 1.0,
    out: Optional[np.ndarray] = None,
    num_threads: Optional[int] = None,
) -> FloatArray:
    """``softmax(x / temperature)`` along ``axis``: ``exp(x/τ − logsumexp(x/τ))``.

    Shift invariant and monotone. ``temperature`` is positive, per row or one value.

    >>> import numpy as np
    >>> softmax(np.array([[0.0, 0.0], [0.0, np.log(3.0)]]))
    array([[0.5 , 0.5 ],
           [0.25, 0.75]])
    >>> softmax(np.array([0.0, 1.0]), temperature=np.inf)
    Traceback (most recent call last):
    ...
    ValueError: temperature must be positive and finite, got inf
    """
    r = _Rows(x, axis)
    t = r.param(temperature, "temperature")
    return _map_out(
        r, out, lambda o: _core._sm_softmax(r.a, r.axis, t, o, _threads(num_threads), False)
    )


def log_softmax(
    x: ArrayLike,
    axis: Axis = -1,
    *,
    temperature: ArrayLike = 1.0,
    out: Optional[np.ndarray] = None,
    num_threads: Optional[int] = None,
) -> FloatArray:
    """``log(softmax(x / temperature))`` computed without forming the softmax.

    >>> import numpy as np
    >>> log_softmax(np.array([0.0, 0.0])).round(6)
    array([-0.693147, -0.693147])
    """
    r = _Rows(x, axis)
    t = r.param(temperature, "temperature")
    return _map_out(
        r, out, lambda o: _core._sm_softmax(r.a, r.axis, t, o, _threads(num_threads), True)
    )


def logsumexp(
    x: ArrayLike, axis: Axis = -1, *, keepdims: bool = False, num_threads: Optional[int] = None
) -> Union[FloatArray, np.floating[Any]]:
    """``log Σ exp(x)`` along ``axis`` (``axis=None``: over everything, a scalar).

    >>> import numpy as np
    >>> float(logsumexp(np.array([0.0, np.log(3.0)])).round(6))
    1.386294
    >>> logsumexp(np.zeros((2, 0)))
    array([-inf, -inf])
    """
    r = _Rows(x, axis)
    res = r.restore_outer(_core._sm_logsumexp(r.a, r.axis, _threads(num_threads)))
    if keepdims:
        if r.flat:
            return res.reshape((1,) * len(r.orig_shape))
        return np.expand_dims(res, r.orig_axis)
    return res[()] if res.ndim == 0 else res


def _vjp_rows(y: ArrayLike, grad: ArrayLike, axis: Axis) -> tuple[_Rows, np.ndarray]:
    r = _Rows(y, axis, "y")
    g = np.asarray(grad)
    if g.shape != r.orig_shape:
        raise ValueError(f"grad has shape {g.shape} but y has shape {r.orig_shape}")
    g = _as_float(g, "grad").astype(r.a.dtype, copy=False)
    if r.reshaped:
        g = g.reshape(r.a.shape)
    return r, g


def softmax_vjp(
    y: ArrayLike,
    grad: ArrayLike,
    axis: Axis = -1,
    *,
    temperature: ArrayLike = 1.0,
    num_threads: Optional[int] = None,
) -> FloatArray:
    """VJP of :func:`softmax` from its output ``y``: ``y ⊙ (grad − ⟨y, grad⟩) / τ``.

    >>> import numpy as np
    >>> y = softmax(np.array([0.0, 1.0]))
    >>> softmax_vjp(y, np.array([1.0, 1.0]))   # a constant direction changes nothing
    array([0., 0.])
    """
    r, g = _vjp_rows(y, grad, axis)
    t = r.param(temperature, "temperature")
    return r.restore(_core._sm_vjp("softmax", r.a, g, r.axis, t, _threads(num_threads)))


def log_softmax_vjp(
    y: ArrayLike,
    grad: ArrayLike,
    axis: Axis = -1,
    *,
    temperature: ArrayLike = 1.0,
    num_threads: Optional[int] = None,
) -> FloatArray:
    """VJP of :func:`log_softmax` from its output: ``(grad − exp(y)·Σgrad) / τ``.

    >>> import numpy as np
    >>> log_softmax_vjp(np.log([0.5, 0.5]), np.array([1.0, 0.0]))
    array([ 0.5, -0.5])
    """
    r, g = _vjp_rows(y, grad, axis)
    t = r.param(temperature, "temperature")
    return r.restore(_core._sm_vjp("log_softmax", r.a, g, r.axis, t, _threads(num_threads)))


def logsumexp_vjp(
    x: ArrayLike, grad: ArrayLike, axis: Axis = -1, *, num_threads: Optional[int] = None
) -> FloatArray:
    """VJP of :func:`logsumexp`, from its *input*: ``grad[..., None] · softmax(x)``.

    ``grad`` has the shape of ``logsumexp(x, axis)`` (or ``keepdims`` shape).

    >>> import numpy as np
    >>> logsumexp_vjp(np.array([0.0, 0.0]), 2.0)
    array([1., 1.])
    """
    r = _Rows(x, axis)
    g = _real(grad, "grad")
    outer = r.outer_shape()
    if g.shape != outer:
        keep = list(r.orig_shape)
        keep[r.orig_axis] = 1
        if r.flat and g.size == 1:
            g = g.reshape(())
        elif g.shape == tuple(keep):
            g = g.reshape(outer)
        else:
            raise ValueError(f"grad has shape {g.shape}; logsumexp's output has shape {outer}")
    g = np.ascontiguousarray(g).reshape(-1)
    return r.restore(_core._sm_logsumexp_vjp(r.a, g, r.axis, _threads(num_threads)))


def taylor_softmax(
    x: ArrayLike,
    order: int = 2,
    axis: Axis = -1,
    *,
    out: Optional[np.ndarray] = None,
    num_threads: Optional[int] = None,
) -> FloatArray:
    """Taylor softmax: ``f_k(x_i) / Σ f_k(x_j)`` with ``f_k(x) = Σ_{m≤k} x^m/m!``, even ``k``.

    Not shift invariant and not monotone: with ``order=2``, −3 gets more mass than −1.

    >>> import numpy as np
    >>> p = taylor_softmax(np.array([-3.0, -1.0]))
    >>> bool(p[0] > p[1])
    True
    """
    r = _Rows(x, axis)
    k = _taylor_order(order)
    return _map_out(
        r, out, lambda o: _core._sm_map("taylor_softmax", r.a, r.axis, k, o, _threads(num_threads))
    )


def taylor_softmax_vjp(
    x: ArrayLike,
    grad: ArrayLike,
    order: int = 2,
    axis: Axis = -1,
    *,
    num_threads: Optional[int] = None,
) -> FloatArray:
    """VJP of :func:`taylor_softmax`, from its *input* ``x`` (``f_k`` is not injective).

    >>> import numpy as np
    >>> taylor_softmax_vjp(np.array([0.0, 0.0]), np.array([1.0, -1.0]))
    array([ 0.5, -0.5])
    """
    r, g = _vjp_rows(x, grad, axis)
    k = _taylor_order(order)
    return r.restore(_core._sm_vjp("taylor_softmax", r.a, g, r.axis, k, _threads(num_threads)))


def topk_softmax(
    x: ArrayLike,
    k: ArrayLike,
    axis: Axis = -1,
    *,
    out: Optional[np.ndarray] = None,
    num_threads: Optional[int] = None,
) -> FloatArray:
    """Softmax over the ``k`` largest entries of each row, 0 elsewhere (ties: lower index).

    Selection is expected ``O(n)`` (no sort). ``k`` may differ per row; ``k ≥ n`` is softmax.

    >>> import numpy as np
    >>> topk_softmax(np.array([1.0, 3.0, 2.0, 3.0]), k=2)
    array([0. , 0.5, 0. , 0.5])
    """
    r = _Rows(x, axis)
    kk = r.param(k, "k")
    return _map_out(
        r, out, lambda o: _core._sm_map("topk_softmax", r.a, r.axis, kk, o, _threads(num_threads))
    )


def topk_softmax_vjp(
    y: ArrayLike,
    grad: ArrayLike,
    k: Optional[ArrayLike] = None,
    axis: Axis = -1,
    *,
    num_threads: Optional[int] = None,
) -> FloatArray:
    """VJP of :func:`topk_softmax` from its output (``k`` is implied by the zeros of ``y``).

    >>> import numpy as np
    >>> topk_softmax_vjp(np.array([0.0, 0.5, 0.5]), np.array([5.0, 1.0, 0.0]))
    array([ 0.  ,  0.25, -0.25])
    """
    r, g = _vjp_rows(y, grad, axis)
    one = np.ones(1)
    return r.restore(_core._sm_vjp("topk_softmax", r.a, g, r.axis, one, _threads(num_threads)))


def _noise(noise: str) -> str:
    if not isinstance(noise, str):
        raise TypeError(f"noise must be a string, got {type(noise).__name__}")
    return noise


def perturbmax(
    x: ArrayLike,
    noise: str = "gaussian",
    axis: Axis = -1,
    n_points: Optional[int] = None,
    *,
    out: Optional[np.ndarray] = None,
    num_threads: Optional[int] = None,
) -> FloatArray:
    """``P[argmax(x + ε) = i]`` for i.i.d. ``noise`` in {'gaussian', 'logistic', 'gumbel'}.

    Gumbel noise gives softmax exactly. Gaussian and logistic noise are integrated by
    quadrature in ``O(n_points · n)`` per row (default 128 / 256 nodes; see the module
    docstring for the accuracy reached).

    >>> import numpy as np
    >>> from math import erf, sqrt
    >>> p = perturbmax(np.array([1.0, 0.0]))
    >>> bool(abs(p[0] - 0.5 * (1 + erf(1 / 2))) < 1e-12)   # Φ(1/√2)
    True
    """
    r = _Rows(x, axis)
    nz = _noise(noise)
    npts = _n_points(n_points)
    one = np.ones(1)
    return _map_out(
        r,
        out,
        lambda o: _core._sm_map(
            "perturbmax", r.a, r.axis, one, o, _threads(num_threads), nz, npts
        ),
    )


def perturbmax_vjp(
    x: ArrayLike,
    grad: ArrayLike,
    noise: str = "gaussian",
    axis: Axis = -1,
    n_points: Optional[int] = None,
    *,
    num_threads: Optional[int] = None,
) -> FloatArray:
    """VJP of :func:`perturbmax`, from its *input* ``x``, by the same quadrature.

    >>> import numpy as np
    >>> g = perturbmax_vjp(np.array([0.0, 0.0]), np.array([1.0, 0.0]))
    >>> bool(abs(g[0] - 1 / (2 * np.sqrt(np.pi))) < 1e-12)   # φ(0)/√2
    True
    """
    r, g = _vjp_rows(x, grad, axis)
    npts = _n_points(n_points)
    return r.restore(
        _core._sm_perturbmax_vjp(r.a, g, r.axis, _noise(noise), npts, _threads(num_threads))
    )


def sparsemax(
    x: ArrayLike,
    axis: Axis = -1,
    *,
    out: Optional[np.ndarray] = None,
    num_threads: Optional[int] = None,
) -> FloatArray:
    """Euclidean projection onto the simplex: ``max(x − τ, 0)`` with ``Σ = 1``.

    Expected ``O(n)``: only entries above ``max − 1`` can be in the support, and only those are
    sorted.

    >>> import numpy as np
    >>> sparsemax(np.array([0.1, 0.5, 0.7]))
    array([0. , 0.4, 0.6])
    """
    r = _Rows(x, axis)
    one = np.ones(1)
    return _map_out(
        r, out, lambda o: _core._sm_map("sparsemax", r.a, r.axis, one, o, _threads(num_threads))
    )


def sparsemax_vjp(
    y: ArrayLike, grad: ArrayLike, axis: Axis = -1, *, num_threads: Optional[int] = None
) -> FloatArray:
    """VJP of :func:`sparsemax` from its output: ``s ⊙ (grad − mean_support(grad))``.

    >>> import numpy as np
    >>> sparsemax_vjp(np.array([0.0, 0.4, 0.6]), np.array([3.0, 1.0, 0.0]))
    array([ 0. ,  0.5, -0.5])
    """
    r, g = _vjp_rows(y, grad, axis)
    one = np.ones(1)
    return r.restore(_core._sm_vjp("sparsemax", r.a, g, r.axis, one, _threads(num_threads)))


def entmax15(
    x: ArrayLike,
    axis: Axis = -1,
    *,
    out: Optional[np.ndarray] = None,
    num_threads: Optional[int] = None,
) -> FloatArray:
    """1.5-entmax, exactly (sort of the candidates + closed-form threshold).

    >>> import numpy as np
    >>> entmax15(np.array([0.0, 0.0, 5.0]))
    array([0., 0., 1.])
    """
    r = _Rows(x, axis)
    one = np.ones(1)
    return _map_out(
        r, out, lambda o: _core._sm_map("entmax15", r.a, r.axis, one, o, _threads(num_threads))
    )


def entmax15_vjp(
    y: ArrayLike, grad: ArrayLike, axis: Axis = -1, *, num_threads: Optional[int] = None
) -> FloatArray:
    """VJP of :func:`entmax15` from its output (``s = sqrt(y)`` on the support).

    >>> import numpy as np
    >>> entmax15_vjp(np.array([0.0, 1.0]), np.array([1.0, 2.0]))
    array([0., 0.])
    """
    r, g = _vjp_rows(y, grad, axis)
    one = np.ones(1)
    return r.restore(_core._sm_vjp("entmax15", r.a, g, r.axis, one, _threads(num_threads)))


def entmax(
    x: ArrayLike,
    alpha: ArrayLike = 1.5,
    axis: Axis = -1,
    *,
    out: Optional[np.ndarray] = None,
    num_threads: Optional[int] = None,
) -> FloatArray:
    """α-entmax, ``max((α−1)x − τ, 0)^{1/(α−1)}``, for α in [1, 1e6] (per row or one value).

    α = 1 is softmax and α = 2 sparsemax, exactly; α = 1.5 uses the closed form; other α a
    safeguarded Newton search that stays finite for every α > 1 in float32 and float64.

    >>> import numpy as np
    >>> x = np.array([0.2, 1.0, 0.5])
    >>> bool(np.allclose(entmax(x, alpha=1.0), softmax(x)))
    True
    >>> bool(np.allclose(entmax(x, alpha=2.0), sparsemax(x)))
    True
    """
    r = _Rows(x, axis)
    a = r.param(alpha, "alpha")
    return _map_out(
        r, out, lambda o: _core._sm_map("entmax", r.a, r.axis, a, o, _threads(num_threads))
    )


def entmax_vjp(
    y: ArrayLike,
    grad: ArrayLike,
    alpha: ArrayLike = 1.5,
    axis: Axis = -1,
    *,
    num_threads: Optional[int] = None,
) -> tuple[FloatArray, npt.NDArray[np.float64]]:
    """VJP of :func:`entmax` from its output, and the gradient w.r.t. α.

    Returns ``(grad_x, grad_alpha)``; ``grad_alpha`` (float64) has one value per row, shaped
    like ``y`` with ``axis`` of length 1 (sum it over broadcast dimensions when one α is
    shared by many rows).

    >>> import numpy as np
    >>> gx, ga = entmax_vjp(np.array([0.25, 0.75]), np.array([1.0, 1.0]), alpha=2.0)
    >>> gx, ga.shape
    (array([0., 0.]), (1,))
    """
    r, g = _vjp_rows(y, grad, axis)
    a = r.param(alpha, "alpha")
    gx, ga = _core._sm_entmax_vjp(r.a, g, r.axis, a, _threads(num_threads))
    if r.flat:
        return r.restore(gx), ga.reshape((1,) * len(r.orig_shape))
    return r.restore(gx), np.expand_dims(ga.reshape(r.outer_shape()), r.orig_axis)


def entropy_invariant_scale(n: ArrayLike, d: ArrayLike, base: float = 512) -> Any:
    """Su's entropy-invariant attention scale ``λ = log_base(n) / sqrt(d)``.

    Equal to the standard ``1/sqrt(d)`` at the reference length ``n = base``; keeps the entropy
    of ``softmax(λ·s)`` roughly constant as the number of keys ``n`` grows.

    >>> round(entropy_invariant_scale(512, 64), 6)
    0.125
    >>> round(entropy_invariant_scale(4096, 64), 6)
    0.166667
    """
    n_a = _real(n, "n")
    d_a = _real(d, "d")
    # Written so that NaN fails each test (``n < 1`` is False for NaN).
    bad_n = ~((n_a >= 1) & (n_a < np.inf))
    if bad_n.any():
        raise ValueError(f"n must be finite and at least 1, got {n_a[bad_n].flat[0]}")
    bad_d = ~((d_a > 0) & (d_a < np.inf))
    if bad_d.any():
        raise ValueError(f"d must be positive and finite, got {d_a[bad_d].flat[0]}")
    b = float(_real(base, "base"))
    if not 1 < b < math.inf:
        raise ValueError(f"base must be finite and greater than 1, got {b}")
    r = np.log(n_a) / math.log(b) / np.sqrt(d_a)
    return float(r) if r.ndim == 0 else r


def scaled_softmax(
    x: ArrayLike,
    d: float,
    axis: Axis = -1,
    *,
    base: float = 512,
    n: Optional[ArrayLike] = None,
    out: Optional[np.ndarray] = None,
    num_threads: Optional[int] = None,
) -> FloatArray:
    """``softmax(λ·x)`` with the entropy-invariant ``λ = entropy_invariant_scale(n, d, base)``.

    ``n`` (the number of keys) defaults to the length of ``axis``; pass it per row (e.g. the
    number of unmasked keys) as for a temperature. Its VJP is
    ``softmax_vjp(y, g, temperature=1/λ)``. ``n = 1`` gives ``λ = 0``, whose limit is the
    uniform distribution over the entries that are not ``-inf`` (the one unmasked key gets
    probability 1; ``+inf`` entries share it as in :func:`softmax`).

    >>> import numpy as np
    >>> s = np.arange(512.0) / 100
    >>> bool(np.allclose(scaled_softmax(s, 64), softmax(s / 8)))
    True
    >>> scaled_softmax(np.array([0.0, 5.0, -np.inf]), 64, n=1)
    array([0.5, 0.5, 0. ])
    """
    r = _Rows(x, axis)
    length = r.a.shape[r.axis]
    # An empty axis has no keys; any valid n gives the same (empty) result.
    nn = max(length, 1) if n is None else n
    lam = r.param(entropy_invariant_scale(nn, d, base), "n")
    dt = r.a.dtype
    with np.errstate(over="ignore", divide="ignore"):
        lam_dt = lam.astype(dt)
        t = 1.0 / lam
    if np.isinf(lam_dt).any():
        raise ValueError(
            f"the scale log_base(n)/sqrt(d) = {lam.max():g} overflows {dt} (d is too small)"
        )
    # λ = 0 (n = 1), or λ too small for 1/λ to be a temperature of the dtype (the kernels
    # multiply by 1/τ in the dtype), is computed here as softmax(λ·x) with the limit's rule
    # for infinities; before, λ = 0 silently became τ = 1 (plain softmax).
    direct = (lam_dt > 0) & np.isfinite(t)
    if direct.all():
        return softmax(x, axis, temperature=t, out=out, num_threads=num_threads)
    shape = list(r.a.shape)
    shape[r.axis] = 1
    lam_k = lam.reshape(shape) if lam.size > 1 else lam.reshape(())
    a64 = r.a.astype(np.float64)
    with np.errstate(invalid="ignore"):
        z = np.where(np.isfinite(a64), a64 * lam_k, a64)
    y = r.restore(_core._sm_softmax(z, r.axis, np.ones(1), None, _threads(num_threads), False))
    if out is None:
        return y.astype(dt, copy=False)
    o = _check_out(out, r.orig_shape, dt)
    np.copyto(o, y, casting="unsafe")
    return o


def sparsity(
    x: ArrayLike,
    measure: str = "s_star",
    axis: Axis = -1,
    *,
    p: float = 2.0,
    q: float = 1.0,
    order: float = 2.0,
    num_threads: Optional[int] = None,
) -> Union[npt.NDArray[np.float64], float]:
    """Sparsity of each row (smaller = sparser).

    ``measure``: ``'mean_max'`` (``S₀ = mean|x|/max|x|``), ``'l1_lp'`` (``(l₁/n)/l_p``),
    ``'s_star'`` (``n^{1/p−1/q}·l_q/l_p``, Hurley–Rickard's six properties; default
    ``S*_{1,2} = l₁/(√n·l₂)``) or ``'renyi'`` (Rényi entropy of order ``order`` of the row
    normalised to sum 1; needs non-negative entries). An all-zero row is NaN.

    >>> import numpy as np
    >>> float(sparsity(np.array([0.0, 0.0, 0.0, 1.0])))
    0.5
    >>> float(sparsity(np.ones(4)))
    1.0
    """
    r = _Rows(x, axis)
    if not isinstance(measure, str):
        raise TypeError("measure must be a string")
    res = _core._sm_sparsity(
        r.a, r.axis, measure, float(p), float(q), float(order), _threads(num_threads)
    )
    res = r.restore_outer(res)
    return float(res) if res.ndim == 0 else res

