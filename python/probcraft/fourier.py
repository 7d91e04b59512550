"""Fourier-series densities: flexible 1-D densities for learned compression.

The model ("Fourier Basis Density Model", De la Fuente, Singh, Ballé, PCS 2024) is

    p(x) = |Σ_k a_k e^{iπkx}|² / (2 Σ_k |a_k|²)      on [-1, 1],

non-negative by construction, with complex coefficients ``a_0..a_N``. On the real line it is
used through ``x = tanh((y - offset) / scale)``. Every call evaluates all channels at once:
coefficients of shape ``(C, N+1)`` describe ``C`` independent densities (one per channel of a
learned-compression latent) and points of shape ``(C, M)`` give each channel its own points.

>>> import numpy as np
>>> import probcraft
>>> d = probcraft.FourierDensity([1.0, 0.5 - 0.2j, 0.1j])
>>> x = np.linspace(-1, 1, 5)
>>> bool(np.all(d.pdf(x) >= 0))
True
>>> float(d.cdf(-1.0)), float(d.cdf(1.0))
(0.0, 1.0)
>>> round(float(d.ppf(d.cdf(0.3))), 12)
0.3
"""

from __future__ import annotations

import math
import secrets
from typing import Any, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

from . import _core
from ._core import LimitError

__all__ = ["FourierDensity", "NllGrad", "QuantizedCDF"]

ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.float64]
Penalty = Union[float, Tuple[str, float]]

_DEFAULT_STEPS = {"lbfgs": 1000, "adam": 3000}
#: Most samples one :meth:`FourierDensity.rvs` call returns, all channels together (the
#: core's ``sample::MAX_SAMPLES``).
MAX_SAMPLES = 2**31


class QuantizedCDF(NamedTuple):
    """Integer CDF tables for a range coder, one row per channel.

    ``cdf[c, :cdf_length[c]]`` rises strictly from 0 to ``2**precision`` (every symbol has
    mass ≥ 1) and is padded with ``2**precision``. On the real line symbol ``j`` of channel
    ``c`` is the integer ``offset[c] + j``; when ``overflow`` is true the last symbol of each
    row is the escape symbol for integers outside the table, whose value must be sent by
    other means (e.g. Elias-gamma). On the interval, symbol ``j`` is the ``j``-th of
    ``num_bins`` equal bins of ``[-1, 1]`` and there is no escape symbol.
    """

    cdf: npt.NDArray[np.int32]
    cdf_length: npt.NDArray[np.int32]
    offset: npt.NDArray[np.int32]
    precision: int
    overflow: bool


class NllGrad(NamedTuple):
    """Mean negative log-likelihood and its gradient.

    ``coeffs`` is ``∂L/∂Re a + i·∂L/∂Im a`` (same shape as the coefficients); ``scale`` and
    ``offset`` are zero on the interval domain.
    """

    nll: Union[float, FloatArray]
    coeffs: npt.NDArray[np.complex128]
    scale: Union[float, FloatArray]
    offset: Union[float, FloatArray]


def _float_array(x: ArrayLike, what: str) -> FloatArray:
    a = np.asarray(x)
    if a.dtype.kind not in "iuf":
        raise TypeError(f"{what} must be real numbers (float or int), got dtype {a.dtype}")
    return a.astype(np.float64, copy=False)


def _penalty(penalty: Penalty) -> Tuple[str, float]:
    if isinstance(penalty, tuple):
        if len(penalty) != 2 or not isinstance(penalty[0], str):
            raise TypeError("penalty must be a float or a (kind, strength) tuple")
        kind, gamma = penalty
    elif isinstance(penalty, (int, float, np.floating, np.integer)) and not isinstance(
        penalty, bool
    ):
        kind, gamma = "density", penalty
    else:
        raise TypeError("penalty must be a float or a (kind, strength) tuple")
    gamma = float(gamma)
    if not (math.isfinite(gamma) and gamma >= 0):
        raise ValueError(f"penalty strength must be finite and >= 0, got {gamma}")
    if kind not in ("density", "unnormalized"):
        raise ValueError(f"penalty kind must be 'density' or 'unnormalized', got {kind!r}")
    return kind, gamma


class FourierDensity:
    """One or several Fourier-series densities (``scipy.stats``-style methods).

    Parameters
    ----------
    coeffs:
        Complex coefficients ``a_0..a_N``, shape ``(N+1,)`` for one density or ``(C, N+1)``
        for ``C`` channels. Only their direction matters (``p`` is unchanged by
        ``a → λe^{iφ}a``). Real arrays are promoted to complex.
    domain:
        ``"interval"`` (support ``[-1, 1]``) or ``"real"`` (``x = tanh((y - offset)/scale)``).
    scale, offset:
        Real line only: per-channel ``scale > 0`` (default 1) and ``offset`` (default 0),
        scalars or shape ``(C,)``.

    Points broadcast against the channel axis: with ``C`` channels, ``x`` of shape ``(M,)``
    is shared by all channels and gives ``(C, M)``; ``x`` of shape ``(C, ...)`` (or
    ``(1, ...)``) gives each channel its own row. Batch methods take ``num_threads``
    (``None``: all cores; small inputs stay on the calling thread). Inputs may be float32 or
    float64; results are float64 unless ``dtype`` asks otherwise.

    >>> import numpy as np
    >>> d = FourierDensity(np.array([[1, 0.3j], [1, -0.5]]), domain="real", scale=[1.0, 2.0])
    >>> d.pdf(np.array([0.0, 1.0])).shape
    (2, 2)
    >>> float(d.bin_mass(-np.inf, np.inf)[1])
    1.0
    """

    __slots__ = ("_m", "_single", "_fit_info")

    def __init__(
        self,
        coeffs: ArrayLike,
        *,
        domain: str = "interval",
        scale: Optional[ArrayLike] = None,
        offset: Optional[ArrayLike] = None,
    ) -> None:
        c = np.asarray(coeffs)
        if c.dtype.kind not in "iufc":
            raise TypeError(f"coeffs must be numeric (complex or real), got dtype {c.dtype}")
        if c.ndim not in (1, 2):
            raise ValueError(f"coeffs must have shape (N+1,) or (C, N+1), got {c.shape}")
        if c.size == 0:
            raise ValueError(f"coeffs must not be empty, got shape {c.shape}")
        if domain not in ("interval", "real"):
            raise ValueError(f"domain must be 'interval' or 'real', got {domain!r}")
        single = c.ndim == 1
        c2 = np.ascontiguousarray(np.atleast_2d(c), dtype=np.complex128)
        n_ch = c2.shape[0]
        if domain == "interval":
            if scale is not None or offset is not None:
                raise ValueError("scale and offset apply only to domain='real'")
            s = np.ones(n_ch)
            t = np.zeros(n_ch)
        else:
            s = self._per_channel(1.0 if scale is None else scale, n_ch, "scale")
            t = self._per_channel(0.0 if offset is None else offset, n_ch, "offset")
        self._m = _core.FourierModel(c2, domain, s, t)
        self._single = single
        self._fit_info: Optional[dict[str, Any]] = None

    @staticmethod
    def _per_channel(v: ArrayLike, n_ch: int, what: str) -> FloatArray:
        a = _float_array(v, what)
        if a.ndim == 0:
            return np.full(n_ch, float(a))
        if a.shape != (n_ch,):
            raise ValueError(f"{what} must be a scalar or have shape ({n_ch},), got {a.shape}")
        return np.ascontiguousarray(a)

    @classmethod
    def _wrap(
        cls, model: Any, single: bool, fit_info: Optional[dict[str, Any]] = None
    ) -> "FourierDensity":
        # ``fit_info`` is optional so that pickles written before it was saved still load.
        obj = cls.__new__(cls)
        obj._m = model
        obj._single = single
        obj._fit_info = fit_info
        return obj

    # -- properties -----------------------------------------------------------------------

    @property
    def coeffs(self) -> npt.NDArray[np.complex128]:
        """The coefficients as given, ``(N+1,)`` or ``(C, N+1)``."""
        c = self._m.coeffs
        return c[0] if self._single else c

    @property
    def domain(self) -> str:
        return str(self._m.domain)

    @property
    def degree(self) -> int:
        """``N``: the highest frequency."""
        return int(self._m.degree)

    @property
    def n_channels(self) -> int:
        return int(self._m.n_channels)

    @property
    def scale(self) -> Union[float, FloatArray]:
        s = self._m.scale
        return float(s[0]) if self._single else s

    @property
    def offset(self) -> Union[float, FloatArray]:
        t = self._m.offset
        return float(t[0]) if self._single else t

    @property
    def autocorrelation(self) -> npt.NDArray[np.complex128]:
        """``c_n / c_0`` for ``n = 0..N`` (``c_n = Σ_k a_{k+n} conj(a_k)``)."""
        c = self._m.autocorrelation
        return c[0] if self._single else c

    @property
    def fit_info(self) -> Optional[dict[str, Any]]:
        """For fitted densities: training NLL and optimiser iterations per channel."""
        return self._fit_info

    # -- shape plumbing -------------------------------------------------------------------

    def _layout(self, x: FloatArray) -> Tuple[FloatArray, Tuple[int, ...]]:
        """Rows ``(1 or C, M)`` for the core and the output shape."""
        if self._single:
            return np.ascontiguousarray(x.reshape(1, -1)), x.shape
        c = self.n_channels
        if x.ndim == 0:
            return np.ascontiguousarray(x.reshape(1, 1)), (c,)
        if x.ndim == 1:
            return np.ascontiguousarray(x.reshape(1, -1)), (c, x.shape[0])
        if x.shape[0] not in (1, c):
            raise ValueError(
                f"points of shape {x.shape} do not broadcast against {c} channels: the first "
                f"axis must be 1 or {c} (or pass 1-D points shared by all channels)"
            )
        return np.ascontiguousarray(x.reshape(x.shape[0], -1)), (c,) + x.shape[1:]

    def _apply(
        self, kind: str, x: ArrayLike, num_threads: Optional[int], dtype: npt.DTypeLike
    ) -> Any:
        rows, shape = self._layout(_float_array(x, "x"))
        out = self._m.evaluate(kind, rows, num_threads).reshape(shape)
        return self._finish(out, dtype)

    @staticmethod
    def _finish(out: FloatArray, dtype: npt.DTypeLike) -> Any:
        dt = np.dtype(dtype)
        if dt.kind != "f":
            raise TypeError(f"dtype must be a floating type, got {dt}")
        if dt != np.float64:
            out = out.astype(dt)
        return out[()] if out.ndim == 0 else out

    # -- evaluation -----------------------------------------------------------------------

    def pdf(
        self, x: ArrayLike, *, num_threads: Optional[int] = None, dtype: npt.DTypeLike = np.float64
    ) -> Any:
        """Density at ``x`` (0 outside ``[-1, 1]`` on the interval).

        >>> d = FourierDensity([1.0])
        >>> round(float(d.pdf(0.25)), 12)
        0.5
        """
        return self._apply("pdf", x, num_threads, dtype)

    def logpdf(
        self, x: ArrayLike, *, num_threads: Optional[int] = None, dtype: npt.DTypeLike = np.float64
    ) -> Any:
        """Log density. On the real line the map's Jacobian is taken in log space, so it stays
        finite and accurate far into the tails while the density on ``[-1, 1]`` is positive
        at the ends; where it vanishes at ``±1`` (a zero of the series there), ``tanh`` of
        the mapped point rounds to ``±1`` beyond ``|y − offset| ≈ 19·scale`` and the result
        is ``-inf`` from there on (``docs/limits.md``).

        >>> d = FourierDensity([1.0, 0.5], domain="real")
        >>> bool(np.isfinite(d.logpdf(700.0)))
        True
        """
        return self._apply("logpdf", x, num_threads, dtype)

    def cdf(
        self, x: ArrayLike, *, num_threads: Optional[int] = None, dtype: npt.DTypeLike = np.float64
    ) -> Any:
        """Cumulative distribution function.

        >>> float(FourierDensity([1.0]).cdf(0.0))
        0.5
        """
        return self._apply("cdf", x, num_threads, dtype)

    def ppf(
        self, q: ArrayLike, *, num_threads: Optional[int] = None, dtype: npt.DTypeLike = np.float64
    ) -> Any:
        """Inverse CDF; ``q`` must lie in ``[0, 1]`` (NaN passes through).

        >>> float(FourierDensity([1.0]).ppf(0.75))
        0.5
        """
        rows, shape = self._layout(_float_array(q, "q"))
        out = self._m.ppf(rows, num_threads).reshape(shape)
        return self._finish(out, dtype)

    def rvs(
        self,
        size: Union[int, Sequence[int]] = 1,
        seed: Optional[int] = None,
        *,
        num_threads: Optional[int] = None,
    ) -> Any:
        """Samples by inverse CDF. Sample ``i`` of channel ``c`` uses stream
        ``(seed, c·n + i)`` (``n`` = samples per channel), so results do not depend on
        ``num_threads``. Shape ``size`` (one density) or ``(C, *size)``; at most ``2**31``
        samples per call, all channels together (``LimitError`` beyond).

        >>> d = FourierDensity([1.0, 0.4j])
        >>> bool(np.array_equal(d.rvs(5, seed=1), d.rvs(5, seed=1, num_threads=2)))
        True
        """
        shape = (size,) if isinstance(size, (int, np.integer)) else tuple(size)
        if any((not isinstance(s, (int, np.integer))) or s < 0 for s in shape):
            raise ValueError(f"size must be non-negative integers, got {size!r}")
        shape = tuple(int(s) for s in shape)
        # Python ints: np.prod in int64 wraps for sizes past 2**63 (a negative count, or a
        # small one that then fails to reshape).
        n = math.prod(shape)
        if n * self.n_channels > MAX_SAMPLES:
            raise LimitError(
                f"size={size!r} asks for {n} samples x {self.n_channels} channels, more than "
                f"the limit of 2**31 per call"
            )
        if seed is None:
            seed = secrets.randbits(64)
        if not isinstance(seed, (int, np.integer)) or not (0 <= seed < 2**64):
            raise ValueError(f"seed must be an integer in [0, 2**64), got {seed!r}")
        out = self._m.rvs(n, int(seed), num_threads)
        return out.reshape(shape) if self._single else out.reshape((self.n_channels,) + shape)

    def bin_mass(
        self, lower: ArrayLike, upper: ArrayLike, *, num_threads: Optional[int] = None
    ) -> Any:
        """Probability of ``[lower, upper]`` in product form, free of the cancellation of
        ``cdf(upper) - cdf(lower)`` for narrow or far-tail bins. ``lower > upper`` is an error.

        >>> d = FourierDensity([1.0, 0.3], domain="real", scale=2.0)
        >>> k = np.arange(-3, 4)
        >>> m = d.bin_mass(k - 0.5, k + 0.5)
        >>> bool(np.allclose(m, d.cdf(k + 0.5) - d.cdf(k - 0.5)))
        True
        """
        lo, hi = np.broadcast_arrays(_float_array(lower, "lower"), _float_array(upper, "upper"))
        rl, shape = self._layout(lo)
        ru, _ = self._layout(hi)
        out = self._m.bin_mass(rl, ru, num_threads).reshape(shape)
        return out[()] if out.ndim == 0 else out

    def quantized_cdf(
        self, precision: int = 16, *, tail_mass: float = 2.0**-8, num_bins: int = 256
    ) -> QuantizedCDF:
        """Per-channel integer CDF tables for a range coder (see :class:`QuantizedCDF`).

        Real line: integer bins ``[k - ½, k + ½]`` between the ``tail_mass/2`` and
        ``1 - tail_mass/2`` quantiles plus an escape symbol for the rest. Interval:
        ``num_bins`` equal bins, at most ``2**precision`` of them (``LimitError`` beyond).
        Every symbol gets mass ≥ 1 out of ``2**precision``.

        >>> t = FourierDensity([1.0, 0.5], domain="real", scale=3.0).quantized_cdf(12)
        >>> int(t.cdf[0, t.cdf_length[0] - 1]) == 2**12
        True
        """
        if not isinstance(precision, (int, np.integer)) or isinstance(precision, bool):
            raise TypeError("precision must be an integer")
        if not isinstance(num_bins, (int, np.integer)) or num_bins < 1:
            raise ValueError(f"num_bins must be a positive integer, got {num_bins!r}")
        if not 1 <= precision <= 30:
            raise ValueError(f"precision must be in 1..30 bits, got {precision}")
        if self.domain == "interval":
            # Checked here as well as in the core: a num_bins past 2**64 would otherwise fail
            # the conversion to the core's integer type with an unrelated OverflowError.
            if num_bins > 2**precision:
                raise LimitError(
                    f"num_bins = {num_bins} does not fit a {precision}-bit table (at most "
                    f"2**{precision} bins, every bin needs mass >= 1); lower num_bins or "
                    f"raise precision"
                )
            nb = int(num_bins)
        else:
            nb = 0  # the real line has integer bins; num_bins is not used there
        cdf, length, off, overflow = self._m.quantized_cdf(int(precision), float(tail_mass), nb)
        return QuantizedCDF(cdf, length, off, int(precision), bool(overflow))

    # -- likelihood -----------------------------------------------------------------------

    def _nll_call(
        self,
        x: ArrayLike,
        weights: Optional[ArrayLike],
        penalty: Penalty,
        grad: bool,
        num_threads: Optional[int],
    ) -> Tuple[Any, Any, Any, Any]:
        kind, gamma = _penalty(penalty)
        xa = _float_array(x, "x")
        if self._single:
            rows = np.ascontiguousarray(xa.reshape(1, -1))
        else:
            if xa.ndim == 1:
                rows = np.ascontiguousarray(xa.reshape(1, -1))
            elif xa.ndim == 2 and xa.shape[0] in (1, self.n_channels):
                rows = np.ascontiguousarray(xa)
            else:
                raise ValueError(
                    f"points of shape {xa.shape} must be (M,) or ({self.n_channels}, M)"
                )
        w = None
        if weights is not None:
            w = np.ascontiguousarray(
                np.broadcast_to(_float_array(weights, "weights").reshape(-1) if self._single
                                else _float_array(weights, "weights"), rows.shape)
            )
        return self._m.nll_grad(rows, w, kind, gamma, grad, num_threads)

    def nll(
        self,
        x: ArrayLike,
        *,
        weights: Optional[ArrayLike] = None,
        penalty: Penalty = 0.0,
        num_threads: Optional[int] = None,
    ) -> Union[float, FloatArray]:
        """Mean negative log-likelihood of ``x`` (per channel), plus the penalty.

        With ``weights`` it is the weighted mean; only the weights' ratios matter.

        ``penalty`` is a strength ``γ`` for the default scale-free smoothness penalty
        ``γ∫|p′|²`` (``"density"``), or ``(kind, γ)`` with ``kind`` in ``"density"``,
        ``"unnormalized"`` (``γ∫|f′|²`` of the paper and codex, which depends on ``‖a‖``).

        >>> d = FourierDensity([1.0])
        >>> bool(abs(d.nll([0.0, 0.5]) - np.log(2.0)) < 1e-12)
        True
        """
        nll, _, _, _ = self._nll_call(x, weights, penalty, False, num_threads)
        return float(nll[0]) if self._single else nll

    def nll_grad(
        self,
        x: ArrayLike,
        *,
        weights: Optional[ArrayLike] = None,
        penalty: Penalty = 0.0,
        num_threads: Optional[int] = None,
    ) -> NllGrad:
        """:meth:`nll` and its gradient w.r.t. coefficients, scale and offset.

        >>> g = FourierDensity([1.0, 0.2j], domain="real").nll_grad([0.1, -0.4])
        >>> g.coeffs.shape
        (2,)
        """
        nll, ga, gs, gt = self._nll_call(x, weights, penalty, True, num_threads)
        if self._single:
            return NllGrad(float(nll[0]), ga[0], float(gs[0]), float(gt[0]))
        return NllGrad(nll, ga, gs, gt)

    # -- fitting --------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        data: ArrayLike,
        n_coeffs: int,
        *,
        domain: str = "real",
        penalty: Penalty = 0.0,
        optimizer: str = "lbfgs",
        steps: Optional[int] = None,
        seed: int = 0,
        weights: Optional[ArrayLike] = None,
        lr: float = 0.01,
        batch_size: Optional[int] = None,
        compress: bool = True,
        tol: float = 1e-9,
        num_threads: Optional[int] = None,
    ) -> "FourierDensity":
        """Maximum-likelihood fit of ``n_coeffs`` complex coefficients (plus scale and
        offset on the real line) to ``data`` of shape ``(M,)`` or ``(C, M)``.

        ``optimizer="lbfgs"`` (default; full batch, ``steps`` = max iterations, stops at
        gradient norm ``tol``) or ``"adam"`` (``steps`` updates with learning rate ``lr``,
        full batch or minibatches of ``batch_size`` points drawn with replacement;
        ``batch_size`` is capped at the number of points per channel). ``weights`` turn the
        data into a weighted histogram; only their ratios matter (any finite scale, 1e-320
        to 1e308, gives the same fit). With ``compress`` (default) points closer than about
        ``1e-3/n_coeffs`` of the data's scale are merged before optimising (their weights
        summed), which changes the likelihood by ≲1e-6 nats per point and makes large data
        sets cheap; the reported NLL is on the data as given.

        >>> rng = np.random.default_rng(0)
        >>> d = FourierDensity.fit(rng.normal(2.0, 0.5, 2000), 6)
        >>> abs(float(d.ppf(0.5)) - 2.0) < 0.1
        True
        """
        if not isinstance(n_coeffs, (int, np.integer)) or isinstance(n_coeffs, bool):
            raise TypeError("n_coeffs must be an integer")
        if n_coeffs < 1:
            raise ValueError(f"n_coeffs must be at least 1, got {n_coeffs}")
        if domain not in ("interval", "real"):
            raise ValueError(f"domain must be 'interval' or 'real', got {domain!r}")
        if optimizer not in _DEFAULT_STEPS:
            raise ValueError(f"optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")
        kind, gamma = _penalty(penalty)
        y = _float_array(data, "data")
        if y.ndim not in (1, 2):
            raise ValueError(f"data must have shape (M,) or (C, M), got {y.shape}")
        single = y.ndim == 1
        rows = np.ascontiguousarray(y.reshape(1, -1) if single else y)
        if rows.shape[1] == 0:
            raise ValueError("data must contain at least one point per channel")
        w = None
        if weights is not None:
            w = np.ascontiguousarray(
                np.broadcast_to(_float_array(weights, "weights"), y.shape).reshape(rows.shape)
            )
        if steps is None:
            steps = _DEFAULT_STEPS[optimizer]
        if not isinstance(steps, (int, np.integer)) or steps < 0:
            raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
        if batch_size is not None:
            if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool):
                raise TypeError(f"batch_size must be a positive integer, got {batch_size!r}")
            if batch_size < 1:
                raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
            # Minibatches are drawn with replacement; more draws than points only repeat
            # them (and an unbounded count would exhaust memory), so cap at the point count.
            batch_size = min(int(batch_size), rows.shape[1])
        if not isinstance(seed, (int, np.integer)) or not (0 <= seed < 2**64):
            raise ValueError(f"seed must be an integer in [0, 2**64), got {seed!r}")
        coeffs, scale, offset, nll, iters = _core.fourier_fit(
            rows, w, int(n_coeffs), domain, kind, gamma, optimizer, int(steps), float(lr),
            None if batch_size is None else int(batch_size), int(seed), bool(compress),
            float(tol), num_threads,
        )
        if domain == "interval":
            obj = cls(coeffs[0] if single else coeffs, domain=domain)
        else:
            obj = cls(coeffs[0] if single else coeffs, domain=domain,
                      scale=scale[0] if single else scale, offset=offset[0] if single else offset)
        obj._fit_info = {
            "nll": float(nll[0]) if single else nll,
            "iterations": int(iters[0]) if single else iters,
            "optimizer": optimizer,
            "penalty": (kind, gamma),
        }
        return obj

    # -- protocol -------------------------------------------------------------------------

    def __reduce__(self) -> Tuple[Any, Tuple[Any, ...]]:
        if self._fit_info is None:
            # Same state as before fit_info was pickled: readable by older versions too.
            return (FourierDensity._wrap, (self._m, self._single))
        return (FourierDensity._wrap, (self._m, self._single, self._fit_info))

    def __repr__(self) -> str:
        shape = f"N={self.degree}" + ("" if self._single else f", C={self.n_channels}")
        return f"FourierDensity({shape}, domain={self.domain!r})"
