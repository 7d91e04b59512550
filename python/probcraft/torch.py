"""PyTorch autograd wrappers (optional: ``pip install probcraft[torch]``).

Every map of the softmax family, every loss in :mod:`probcraft.losses` and the Fourier
log-density are ``torch.autograd.Function``\\ s whose forward and backward run probcraft's
kernels. CPU tensors of float32 / float64 are passed to the kernels as numpy views (no copy,
any strides) and results come back with ``torch.from_numpy`` (no copy); float16 / bfloat16
are computed in float32 and cast back. Tensors on other devices raise ``ValueError``: moving
them silently would hide a device round trip. Backward is first order only
(``once_differentiable``).

Importing ``probcraft`` never imports torch; importing this module does.

>>> import torch, probcraft.torch as pt
>>> x = torch.tensor([[1.0, 2.0, 3.5]], dtype=torch.float64, requires_grad=True)
>>> y = pt.sparsemax(x)
>>> y.detach().tolist()
[[0.0, 0.0, 1.0]]
>>> y[0, 2].backward(); x.grad.tolist()
[[0.0, 0.0, 0.0]]
>>> round(pt.cross_entropy(torch.zeros(2, 4), torch.tensor([1, 2])).item(), 5)   # log 4
1.38629
"""

from __future__ import annotations

import importlib
from typing import Any, Optional, Union

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from . import losses as _losses
from .fourier import FourierDensity

# `probcraft.softmax` the attribute is the function re-exported by __init__, not the module.
_sm = importlib.import_module("probcraft.softmax")

__all__ = [
    "cross_entropy",
    "emo_loss",
    "entmax",
    "entmax15",
    "entmax_loss",
    "fourier_logpdf",
    "log_softmax",
    "logsumexp",
    "margin_softmax_loss",
    "perturbmax",
    "softmax",
    "sparsemax",
    "sparsemax_loss",
    "tailr_loss",
    "taylor_softmax",
    "topk_softmax",
    "topk_softmax_loss",
]

Param = Union[float, int, torch.Tensor]


# ----------------------------------------------------------------------------- plumbing
def _np(t: torch.Tensor, name: str = "x") -> np.ndarray:
    """A numpy view of a CPU tensor (float16/bfloat16 upcast to float32)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise ValueError(
            f"{name} is on {t.device}; probcraft.torch runs on CPU tensors (call .cpu() first)"
        )
    t = t.detach()
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    if t.is_conj():
        t = t.resolve_conj()
    if t.is_neg():
        t = t.resolve_neg()
    return t.numpy()


def _torch(a: Any, like: torch.Tensor) -> torch.Tensor:
    a = np.asarray(a)
    if not a.flags.writeable:
        a = a.copy()
    out = torch.from_numpy(a)
    if out.dtype != like.dtype and like.dtype in (torch.float16, torch.bfloat16):
        out = out.to(like.dtype)
    return out


def _param(p: Param) -> Any:
    if isinstance(p, torch.Tensor):
        return _np(p, "parameter")
    return p


def _dim(dim: Optional[int]) -> Optional[int]:
    return dim


# ----------------------------------------------------------------------------- maps
class _OutputVjp(torch.autograd.Function):
    """Maps whose VJP needs only the output ``y`` (softmax, log_softmax, sparsemax, entmax15,
    topk_softmax)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, name: str, dim: Optional[int], param: Any) -> torch.Tensor:
        fn = getattr(_sm, name)
        if name in ("softmax", "log_softmax"):
            y = fn(_np(x), dim, temperature=param)
        elif name == "topk_softmax":
            y = fn(_np(x), param, dim)
        else:
            y = fn(_np(x), dim)
        out = _torch(y, x)
        ctx.save_for_backward(out)
        ctx.name, ctx.dim, ctx.param = name, dim, param
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:
        (y,) = ctx.saved_tensors
        vjp = getattr(_sm, ctx.name + "_vjp")
        yn, gn = _np(y, "y"), _np(g, "grad")
        if ctx.name in ("softmax", "log_softmax"):
            gx = vjp(yn, gn, ctx.dim, temperature=ctx.param)
        else:
            gx = vjp(yn, gn, axis=ctx.dim)
        return _torch(gx, g), None, None, None


class _InputVjp(torch.autograd.Function):
    """Maps whose VJP needs the input (taylor_softmax, perturbmax)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, name: str, dim: Optional[int], extra: dict[str, Any]) -> torch.Tensor:
        fn = getattr(_sm, name)
        out = _torch(fn(_np(x), axis=dim, **extra), x)
        ctx.save_for_backward(x)
        ctx.name, ctx.dim, ctx.extra = name, dim, extra
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:
        (x,) = ctx.saved_tensors
        vjp = getattr(_sm, ctx.name + "_vjp")
        gx = vjp(_np(x), _np(g, "grad"), axis=ctx.dim, **ctx.extra)
        return _torch(gx, g), None, None, None


class _LogSumExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, dim: Optional[int], keepdim: bool) -> torch.Tensor:
        r = _sm.logsumexp(_np(x), dim, keepdims=keepdim)
        ctx.save_for_backward(x)
        ctx.dim, ctx.keepdim = dim, keepdim
        return _torch(np.asarray(r, dtype=_np(x).dtype), x)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:
        (x,) = ctx.saved_tensors
        gx = _sm.logsumexp_vjp(_np(x), _np(g, "grad"), ctx.dim)
        return _torch(np.asarray(gx, dtype=_np(x).dtype), g), None, None


class _Entmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, alpha: Any, dim: Optional[int]) -> torch.Tensor:
        a = _np(alpha, "alpha") if isinstance(alpha, torch.Tensor) else alpha
        out = _torch(_sm.entmax(_np(x), a, dim), x)
        ctx.save_for_backward(out)
        ctx.alpha, ctx.dim = a, dim
        ctx.alpha_shape = tuple(alpha.shape) if isinstance(alpha, torch.Tensor) else None
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:
        (y,) = ctx.saved_tensors
        gx, ga = _sm.entmax_vjp(_np(y, "y"), _np(g, "grad"), ctx.alpha, ctx.dim)
        galpha = None
        if ctx.alpha_shape is not None and ctx.needs_input_grad[1]:
            # ga has one value per row (keepdims shape); reduce onto alpha's shape.
            ga_t = torch.from_numpy(np.ascontiguousarray(ga))
            galpha = _sum_to(ga_t, ctx.alpha_shape).to(g.dtype)
        return _torch(gx, g), galpha, None


def _sum_to(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Sums a broadcast result back onto ``shape`` (the reverse of broadcasting)."""
    if tuple(t.shape) == shape:
        return t
    if len(shape) == 0 or int(np.prod(shape)) == 1:
        return t.sum().reshape(shape)
    # alpha given without the axis (outer shape): drop the kept axis first.
    squeezable = [i for i, s in enumerate(t.shape) if s == 1]
    for i in reversed(squeezable):
        if t.dim() > len(shape):
            t = t.squeeze(i)
    lead = t.dim() - len(shape)
    if lead > 0:
        t = t.sum(dim=tuple(range(lead)))
    dims = tuple(i for i, s in enumerate(shape) if s == 1 and t.shape[i] != 1)
    if dims:
        t = t.sum(dim=dims, keepdim=True)
    return t.reshape(shape)


def softmax(x: torch.Tensor, dim: Optional[int] = -1, *, temperature: float = 1.0) -> torch.Tensor:
    """:func:`probcraft.softmax` with autograd (``temperature`` is a constant)."""
    return _OutputVjp.apply(x, "softmax", dim, temperature)


def log_softmax(x: torch.Tensor, dim: Optional[int] = -1, *, temperature: float = 1.0) -> torch.Tensor:
    """:func:`probcraft.log_softmax` with autograd."""
    return _OutputVjp.apply(x, "log_softmax", dim, temperature)


def logsumexp(x: torch.Tensor, dim: Optional[int] = -1, keepdim: bool = False) -> torch.Tensor:
    """:func:`probcraft.logsumexp` with autograd."""
    return _LogSumExp.apply(x, dim, keepdim)


def sparsemax(x: torch.Tensor, dim: Optional[int] = -1) -> torch.Tensor:
    """:func:`probcraft.sparsemax` with autograd."""
    return _OutputVjp.apply(x, "sparsemax", dim, None)


def entmax15(x: torch.Tensor, dim: Optional[int] = -1) -> torch.Tensor:
    """:func:`probcraft.entmax15` with autograd."""
    return _OutputVjp.apply(x, "entmax15", dim, None)


def topk_softmax(x: torch.Tensor, k: Any, dim: Optional[int] = -1) -> torch.Tensor:
    """:func:`probcraft.topk_softmax` with autograd (``k`` is a constant)."""
    return _OutputVjp.apply(x, "topk_softmax", dim, _param(k))


def entmax(x: torch.Tensor, alpha: Param = 1.5, dim: Optional[int] = -1) -> torch.Tensor:
    """:func:`probcraft.entmax` with autograd w.r.t. ``x`` and, when it is a tensor that
    requires grad, ``alpha`` (a scalar or one value per row)."""
    return _Entmax.apply(x, alpha, dim)


def taylor_softmax(x: torch.Tensor, order: int = 2, dim: Optional[int] = -1) -> torch.Tensor:
    """:func:`probcraft.taylor_softmax` with autograd."""
    return _InputVjp.apply(x, "taylor_softmax", dim, {"order": int(order)})


def perturbmax(
    x: torch.Tensor, noise: str = "gaussian", dim: Optional[int] = -1, n_points: Optional[int] = None
) -> torch.Tensor:
    """:func:`probcraft.perturbmax` with autograd."""
    return _InputVjp.apply(x, "perturbmax", dim, {"noise": noise, "n_points": n_points})


# ----------------------------------------------------------------------------- losses
class _Loss(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, logits: torch.Tensor, target: torch.Tensor, name: str, kwargs: dict[str, Any]
    ) -> torch.Tensor:
        fn = getattr(_losses, name)
        t = _np(target, "target") if isinstance(target, torch.Tensor) else np.asarray(target)
        want_grad = bool(logits.requires_grad)
        res = fn(_np(logits, "logits"), t, return_grad=want_grad, **kwargs)
        loss, grad = res if want_grad else (res, None)
        ctx.reduction = kwargs.get("reduction", "mean")
        ctx.axis = kwargs.get("axis", -1)
        if grad is not None:
            ctx.save_for_backward(_torch(grad, logits))
        out = torch.as_tensor(np.asarray(loss, dtype=_np(logits).dtype))
        return out.to(logits.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:
        (grad,) = ctx.saved_tensors
        if ctx.reduction == "none":
            # Each row's loss depends on its row only: scale row gradients by g.
            scale = g.unsqueeze(ctx.axis % grad.dim())
        else:
            scale = g
        return (grad * scale).to(grad.dtype), None, None, None


def _loss(name: str, logits: torch.Tensor, target: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    return _Loss.apply(logits, target, name, {k: _param(v) for k, v in kwargs.items()})


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, dim: int = -1, *,
                  ignore_index: int = -100, reduction: str = "mean") -> torch.Tensor:
    """:func:`probcraft.losses.cross_entropy` with autograd w.r.t. the logits."""
    return _loss("cross_entropy", logits, target, axis=dim, ignore_index=ignore_index,
                 reduction=reduction)


def sparsemax_loss(logits: torch.Tensor, target: torch.Tensor, dim: int = -1, *,
                   ignore_index: int = -100, reduction: str = "mean") -> torch.Tensor:
    """:func:`probcraft.losses.sparsemax_loss` with autograd."""
    return _loss("sparsemax_loss", logits, target, axis=dim, ignore_index=ignore_index,
                 reduction=reduction)


def entmax_loss(logits: torch.Tensor, target: torch.Tensor, alpha: Any = 1.5, dim: int = -1, *,
                ignore_index: int = -100, reduction: str = "mean") -> torch.Tensor:
    """:func:`probcraft.losses.entmax_loss` with autograd (``alpha`` is a constant)."""
    return _loss("entmax_loss", logits, target, alpha=alpha, axis=dim,
                 ignore_index=ignore_index, reduction=reduction)


def topk_softmax_loss(logits: torch.Tensor, target: torch.Tensor, k: Any, dim: int = -1, *,
                      ignore_index: int = -100, reduction: str = "mean") -> torch.Tensor:
    """:func:`probcraft.losses.topk_softmax_loss` with autograd."""
    return _loss("topk_softmax_loss", logits, target, k=k, axis=dim,
                 ignore_index=ignore_index, reduction=reduction)


def margin_softmax_loss(cosine: torch.Tensor, target: torch.Tensor, margin: float = 0.35,
                        scale: float = 30.0, dim: int = -1, *, ignore_index: int = -100,
                        reduction: str = "mean") -> torch.Tensor:
    """:func:`probcraft.losses.margin_softmax_loss` with autograd w.r.t. the cosines."""
    return _loss("margin_softmax_loss", cosine, target, margin=margin, scale=scale, axis=dim,
                 ignore_index=ignore_index, reduction=reduction)


def tailr_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 0.5, dim: int = -1, *,
               ignore_index: int = -100, reduction: str = "mean") -> torch.Tensor:
    """:func:`probcraft.losses.tailr_loss` with autograd."""
    return _loss("tailr_loss", logits, target, gamma=gamma, axis=dim,
                 ignore_index=ignore_index, reduction=reduction)


def emo_loss(logits: torch.Tensor, target: torch.Tensor, embeddings: Any, dim: int = -1, *,
             ignore_index: int = -100, reduction: str = "mean") -> torch.Tensor:
    """:func:`probcraft.losses.emo_loss` with autograd w.r.t. the logits (the embeddings
    are frozen)."""
    return _loss("emo_loss", logits, target, embeddings=embeddings, axis=dim,
                 ignore_index=ignore_index, reduction=reduction)


# ----------------------------------------------------------------------------- Fourier
def _dlogpdf_dx(coeffs: np.ndarray, x: np.ndarray, domain: str, scale: np.ndarray,
                offset: np.ndarray) -> np.ndarray:
    """``∂ logpdf / ∂x`` for rows ``x`` of shape ``(C, M)`` (the kernels give parameter
    gradients only). With ``f(t) = Σ a_k e^{iπkt}``: ``∂ log p_I/∂t = 2 Re(conj(f) f′)/|f|²``;
    on the real line ``t = tanh(u)``, ``u = (y − offset)/scale`` adds the Jacobian
    ``log(sech²u / scale)``, whose derivative is ``−2 tanh(u)/scale``."""
    k = np.arange(coeffs.shape[1])
    out = np.empty_like(x)
    for c in range(x.shape[0]):
        a = coeffs[c]
        if domain == "real":
            u = (x[c] - offset[c]) / scale[c]
            t = np.tanh(u)
        else:
            t = x[c]
        e = np.exp(1j * np.pi * np.outer(t, k))
        f = e @ a
        fp = e @ (1j * np.pi * k * a)
        dlp = 2.0 * np.real(np.conj(f) * fp) / np.abs(f) ** 2
        if domain == "real":
            # sech²(u) = 1 − t², computed without cancellation far in the tails.
            au = np.abs(u)
            ex = np.exp(-2.0 * au)
            sech2 = 4.0 * ex / (1.0 + ex) ** 2
            out[c] = (dlp * sech2 - 2.0 * t) / scale[c]
        else:
            out[c] = np.where(np.abs(t) <= 1.0, dlp, 0.0)
    return out


class _FourierLogpdf(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, coeffs: torch.Tensor, scale: Optional[torch.Tensor],
                offset: Optional[torch.Tensor], domain: str) -> torch.Tensor:
        a = _np(coeffs, "coeffs")
        single = a.ndim == 1
        a2 = np.atleast_2d(np.asarray(a, dtype=np.complex128))
        n_ch = a2.shape[0]
        if domain == "real":
            s = np.broadcast_to(np.asarray(1.0 if scale is None else _np(scale, "scale"), np.float64), (n_ch,))
            o = np.broadcast_to(np.asarray(0.0 if offset is None else _np(offset, "offset"), np.float64), (n_ch,))
            dens = FourierDensity(a2, domain="real", scale=np.array(s), offset=np.array(o))
        else:
            if scale is not None or offset is not None:
                raise ValueError("scale and offset apply only to domain='real'")
            s, o = np.ones(n_ch), np.zeros(n_ch)
            dens = FourierDensity(a2, domain="interval")
        xn = np.asarray(_np(x), dtype=np.float64)
        if single:
            rows = xn.reshape(1, -1)
        elif xn.ndim == 1:
            rows = np.broadcast_to(xn, (n_ch, xn.size))
        elif xn.ndim == 2 and xn.shape[0] in (1, n_ch):
            rows = np.broadcast_to(xn, (n_ch, xn.shape[1]))
        else:
            raise ValueError(f"x of shape {tuple(x.shape)} must be (M,) or ({n_ch}, M)")
        lp = dens.logpdf(rows)  # (C, M)
        ctx.save_for_backward(x)
        ctx.dens, ctx.rows, ctx.a2, ctx.s, ctx.o = dens, rows, a2, np.array(s), np.array(o)
        ctx.single, ctx.domain, ctx.x_shape = single, domain, tuple(x.shape)
        ctx.scale_shape = None if scale is None else tuple(scale.shape)
        ctx.offset_shape = None if offset is None else tuple(offset.shape)
        out = lp.reshape(x.shape) if single else lp
        return torch.from_numpy(np.ascontiguousarray(out)).to(
            x.dtype if x.dtype.is_floating_point else torch.float64
        )

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:
        gn = np.asarray(_np(g, "grad"), dtype=np.float64).reshape(ctx.rows.shape)
        rows = ctx.rows
        n_ch, m = rows.shape
        need_x, need_a, need_s, need_o = ctx.needs_input_grad[:4]
        gx = ga = gs = go = None
        if need_a or need_s or need_o:
            # nll_grad(weights=w) is the gradient of Σw(−logpdf)/Σw; the VJP Σ g·∂logpdf is
            # assembled from the positive and negative parts of g (weights must be ≥ 0).
            ok = np.isfinite(rows) & (np.abs(rows) <= 1.0 if ctx.domain == "interval" else True)
            pts = np.where(ok, rows, 0.0)
            acc_a = np.zeros_like(ctx.a2)
            acc_s = np.zeros(n_ch)
            acc_o = np.zeros(n_ch)
            for sign in (1.0, -1.0):
                w = np.where(ok, np.maximum(sign * gn, 0.0), 0.0)
                tot = w.sum(axis=1)
                if not np.any(tot > 0):
                    continue
                w = np.where(tot[:, None] > 0, w, 1.0)
                r = ctx.dens.nll_grad(pts, weights=w)
                f = -sign * np.where(tot > 0, tot, 0.0)
                acc_a += f[:, None] * np.atleast_2d(r.coeffs)
                acc_s += f * np.atleast_1d(r.scale)
                acc_o += f * np.atleast_1d(r.offset)
            if need_a:
                ga = torch.from_numpy(acc_a[0] if ctx.single else acc_a)
            if need_s:
                gs = _sum_to(torch.from_numpy(acc_s), ctx.scale_shape)
            if need_o:
                go = _sum_to(torch.from_numpy(acc_o), ctx.offset_shape)
        if need_x:
            d = _dlogpdf_dx(ctx.a2, np.ascontiguousarray(rows), ctx.domain, ctx.s, ctx.o) * gn
            if ctx.single:
                d = d.reshape(ctx.x_shape)
            elif len(ctx.x_shape) == 1 or ctx.x_shape[0] == 1:
                d = d.sum(axis=0).reshape(ctx.x_shape)
            gx = torch.from_numpy(np.ascontiguousarray(d)).to(g.dtype)
        return gx, ga, gs, go, None


def fourier_logpdf(
    x: torch.Tensor,
    coeffs: torch.Tensor,
    scale: Optional[torch.Tensor] = None,
    offset: Optional[torch.Tensor] = None,
    *,
    domain: str = "real",
) -> torch.Tensor:
    """Log density of :class:`probcraft.FourierDensity` with autograd w.r.t. ``coeffs``
    (complex, ``(N+1,)`` or ``(C, N+1)``), ``scale`` and ``offset`` (real line; scalars or
    ``(C,)``) and the points ``x`` (``(M,)`` shared by all channels, or ``(C, M)``).

    Parameter gradients come from the kernels' ``nll_grad``; the gradient w.r.t. ``x`` (e.g.
    the rate term of a learned-compression model flowing back into the encoder) is computed
    in numpy from the closed form. Complex gradients follow PyTorch's convention
    (``∂L/∂Re a + i·∂L/∂Im a`` for a real loss ``L``).

    >>> import torch
    >>> a = torch.tensor([1.0 + 0j, 0.3j], dtype=torch.complex128, requires_grad=True)
    >>> lp = fourier_logpdf(torch.tensor([0.0, 1.0], dtype=torch.float64), a)
    >>> lp.sum().backward(); a.grad.shape
    torch.Size([2])
    """
    if domain not in ("real", "interval"):
        raise ValueError(f"domain must be 'real' or 'interval', got {domain!r}")
    if not isinstance(coeffs, torch.Tensor):
        coeffs = torch.as_tensor(coeffs)
    if not coeffs.is_complex():
        coeffs = coeffs.to(torch.complex128)
    return _FourierLogpdf.apply(x, coeffs, scale, offset, domain)
