"""probcraft: fast, exact probability distributions.

Three engines share one Rust core: a unigram segmentation lattice, the softmax family and
Fourier-series densities. Shared conventions: seeds are arguments (item ``i`` of a batch
draws from stream ``(seed, i)``), no threads exist until a batch call asks for them, models
are immutable and pickle to deterministic bytes, and bad input raises ``ValueError`` /
``TypeError`` / ``OSError`` (or the subclasses below) with a message saying what is wrong.

>>> import probcraft
>>> probcraft.build_info()["version"] == probcraft.__version__
True
>>> probcraft.Streams(7).uniform(0, 2).shape
(2,)
"""

from ._core import (
    LimitError,
    ModelFormatError,
    Streams,
    __version__,
    build_info,
    derive_seed,
    set_simd_level,
    stream_u64,
)
from .lattice import Unigram
from . import losses
from .softmax import (
    entmax,
    entmax15,
    entmax15_vjp,
    entmax_vjp,
    entropy_invariant_scale,
    log_softmax,
    log_softmax_vjp,
    logsumexp,
    logsumexp_vjp,
    perturbmax,
    perturbmax_vjp,
    scaled_softmax,
    softmax,
    softmax_vjp,
    sparsemax,
    sparsemax_vjp,
    sparsity,
    taylor_softmax,
    taylor_softmax_vjp,
    topk_softmax,
    topk_softmax_vjp,
)
from .fourier import FourierDensity

__all__ = [
    "FourierDensity",
    "LimitError",
    "ModelFormatError",
    "Streams",
    "Unigram",
    "__version__",
    "build_info",
    "derive_seed",
    "set_simd_level",
    "stream_u64",
    # softmax family
    "entmax",
    "entmax15",
    "entmax15_vjp",
    "entmax_vjp",
    "entropy_invariant_scale",
    "log_softmax",
    "log_softmax_vjp",
    "logsumexp",
    "logsumexp_vjp",
    "losses",
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
