"""Losses on logits and integer targets, with their gradients w.r.t. the logits.

Conventions follow ``torch.nn.functional.cross_entropy``: classes along ``axis`` (default
the last), ``target`` of the logits' shape without that axis, ``ignore_index=-100`` rows
contribute neither loss nor gradient, ``reduction`` in {'mean', 'sum', 'none'} with 'mean'
averaging over the rows not ignored (NaN if all are). Each function returns the loss, or
``(loss, grad)`` with ``return_grad=True``, where ``grad`` is the gradient of the *reduced*
loss w.r.t. the logits (same shape and dtype). A target outside ``[0, n_classes)`` that is
not ``ignore_index`` raises ``ValueError``.

>>> import numpy as np
>>> from probcraft import losses
>>> x = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
>>> float(losses.cross_entropy(x, np.array([0, -100])).round(6))
0.239545
>>> loss, g = losses.sparsemax_loss(x, np.array([0, 1]), reduction="sum", return_grad=True)
>>> g
array([[ 0.        ,  0.        ,  0.        ],
       [ 0.33333333, -0.66666667,  0.33333333]])
"""

from __future__ import annotations

import operator
from typing import Any, Optional, Union

import numpy as np
import numpy.typing as npt

from . import _core
from .softmax import _real, _Rows, _threads

__all__ = [
    "cross_entropy",
    "emo_loss",
    "entmax_loss",
    "margin_softmax_loss",
    "sparsemax_loss",
    "tailr_loss",
    "topk_softmax_loss",
]

LossResult = Union[Any, tuple[Any, npt.NDArray[np.floating[Any]]]]


def _run(
    kind: str,
    logits: npt.ArrayLike,
    target: npt.ArrayLike,
    axis: int,
    ignore_index: int,
    reduction: str,
    return_grad: bool,
    num_threads: Optional[int],
    param: Any = 1.0,
    param_name: str = "",
    **extra: Any,
) -> LossResult:
    if axis is None:
        raise ValueError("losses need a class axis (axis=None is not supported)")
    r = _Rows(logits, axis, "logits")
    # Tested on the caller's shape: ``_Rows`` has already made a 0-d array one row of one.
    if len(r.orig_shape) == 0:
        raise ValueError("logits must have at least one dimension (the classes), got a 0-d array")
    t = np.asarray(target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"target must be an integer array, got dtype {t.dtype}")
    if t.shape != r.outer_shape():
        raise ValueError(
            f"target has shape {t.shape}; expected {r.outer_shape()} (logits without axis {axis})"
        )
    if t.dtype.kind == "u" and t.size and t.max() > np.iinfo(np.int64).max:
        raise ValueError("target values exceed int64")
    t64 = np.ascontiguousarray(t, dtype=np.int64).reshape(-1)
    p = r.param(param, param_name) if param_name else np.ones(1)
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    ii = operator.index(ignore_index)
    # The binding takes an int64 (targets are int64): a larger value would fail the conversion
    # with an OverflowError that does not name the argument.
    if not -(2**63) <= ii < 2**63:
        raise ValueError(f"ignore_index must fit in int64, got {ii}")
    per_row, count, grad = _core._sm_loss(
        kind,
        r.a,
        t64,
        r.axis,
        p,
        ii,
        reduction,
        bool(return_grad),
        _threads(num_threads),
        **extra,
    )
    dt = r.a.dtype
    loss: Any
    if grad is not None:
        grad = r.restore(grad)
    if reduction == "none":
        loss = per_row.reshape(r.outer_shape()).astype(dt)
    elif reduction == "sum":
        loss = dt.type(per_row.sum())
    else:
        loss = dt.type(per_row.sum() / count) if count else dt.type(np.nan)
    return (loss, grad) if return_grad else loss


def cross_entropy(
    logits: npt.ArrayLike,
    target: npt.ArrayLike,
    axis: int = -1,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    return_grad: bool = False,
    num_threads: Optional[int] = None,
) -> LossResult:
    """``logsumexp(x) − x_t``; gradient ``softmax(x) − e_t``.

    >>> import numpy as np
    >>> float(cross_entropy(np.zeros((1, 4)), np.array([2])).round(6))   # log 4
    1.386294
    """
    return _run("cross_entropy", logits, target, axis, ignore_index, reduction, return_grad,
                num_threads)


def margin_softmax_loss(
    cosine: npt.ArrayLike,
    target: npt.ArrayLike,
    margin: float = 0.35,
    scale: float = 30.0,
    axis: int = -1,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    return_grad: bool = False,
    num_threads: Optional[int] = None,
) -> LossResult:
    """AM-softmax: cross-entropy of ``scale·cos`` with the target's cosine lowered by ``margin``.

    ``scale`` is ``1/τ``. The gradient is w.r.t. the cosines: ``scale·(softmax(z) − e_t)``.

    >>> import numpy as np
    >>> c = np.array([[0.9, 0.1]])
    >>> bool(margin_softmax_loss(c, np.array([0])) > cross_entropy(30 * c, np.array([0])))
    True
    """
    return _run("margin", cosine, target, axis, ignore_index, reduction, return_grad,
                num_threads, margin=float(margin), scale=float(scale))


def topk_softmax_loss(
    logits: npt.ArrayLike,
    target: npt.ArrayLike,
    k: npt.ArrayLike,
    axis: int = -1,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    return_grad: bool = False,
    num_threads: Optional[int] = None,
) -> LossResult:
    """Sparse softmax loss ``logsumexp(top-k x) − x_t``; gradient ``topk_softmax(x) − e_t``.

    >>> import numpy as np
    >>> float(topk_softmax_loss(np.array([[3.0, 3.0, -9.0]]), np.array([0]), k=2).round(6))
    0.693147
    """
    return _run("topk", logits, target, axis, ignore_index, reduction, return_grad,
                num_threads, param=k, param_name="k")


def sparsemax_loss(
    logits: npt.ArrayLike,
    target: npt.ArrayLike,
    axis: int = -1,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    return_grad: bool = False,
    num_threads: Optional[int] = None,
) -> LossResult:
    """Fenchel–Young sparsemax loss ``(1 − Σp²)/2 + ⟨p, x⟩ − x_t``; gradient ``p − e_t``.

    Zero exactly when the target alone is in the support with margin ≥ 1.

    >>> import numpy as np
    >>> float(sparsemax_loss(np.array([[2.0, 0.0]]), np.array([0])))
    0.0
    """
    return _run("sparsemax", logits, target, axis, ignore_index, reduction, return_grad,
                num_threads)


def entmax_loss(
    logits: npt.ArrayLike,
    target: npt.ArrayLike,
    alpha: npt.ArrayLike = 1.5,
    axis: int = -1,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    return_grad: bool = False,
    num_threads: Optional[int] = None,
) -> LossResult:
    """Fenchel–Young α-entmax loss with Tsallis entropy ``(1 − Σp^α)/(α(α−1))``.

    α = 1 is cross-entropy, α = 2 the sparsemax loss; gradient ``entmax(x, α) − e_t``.

    >>> import numpy as np
    >>> x, t = np.array([[1.0, 0.2, -0.5]]), np.array([1])
    >>> bool(np.isclose(entmax_loss(x, t, alpha=1.0), cross_entropy(x, t)))
    True
    """
    return _run("entmax", logits, target, axis, ignore_index, reduction, return_grad,
                num_threads, param=alpha, param_name="alpha")


def tailr_loss(
    logits: npt.ArrayLike,
    target: npt.ArrayLike,
    gamma: float = 0.5,
    axis: int = -1,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    return_grad: bool = False,
    num_threads: Optional[int] = None,
) -> LossResult:
    """TaiLr / total-variation loss ``−log(γ + (1−γ)p_t)/(1−γ)``, γ in [0, 1].

    γ = 0 is cross-entropy; γ = 1 is ``1 − p_t`` (the limit). Gradient ``w·(p − e_t)`` with
    ``w = p_t/(γ + (1−γ)p_t)``.

    >>> import numpy as np
    >>> float(tailr_loss(np.zeros((1, 2)), np.array([0]), gamma=1.0))
    0.5
    """
    return _run("tailr", logits, target, axis, ignore_index, reduction, return_grad,
                num_threads, gamma=float(gamma))


def emo_loss(
    logits: npt.ArrayLike,
    target: npt.ArrayLike,
    embeddings: npt.ArrayLike,
    axis: int = -1,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    return_grad: bool = False,
    num_threads: Optional[int] = None,
) -> LossResult:
    """EMO loss ``1 − ⟨Σ_i p_i ê_i, ê_t⟩`` with frozen class embeddings (one row per class,
    normalised to unit length here).

    >>> import numpy as np
    >>> e = np.eye(3)
    >>> float(emo_loss(np.array([[0.0, 0.0, 0.0]]), np.array([1]), e).round(6))
    0.666667
    """
    emb = np.ascontiguousarray(_real(embeddings, "embeddings"))
    if emb.ndim != 2:
        raise ValueError(f"embeddings must be 2-d (classes × dim), got shape {emb.shape}")
    return _run("emo", logits, target, axis, ignore_index, reduction, return_grad,
                num_threads, embeddings=emb)
