# Type stub for the compiled extension. `python -m mypy.stubtest probcraft._core` checks that
# it matches the binary (run by scripts/test.sh).
from typing import Any, final

import numpy as np
import numpy.typing as npt

__version__: str

class ModelFormatError(ValueError): ...
class LimitError(ValueError): ...

@final
class Streams:
    def __new__(cls, seed: int) -> Streams: ...
    @property
    def seed(self) -> int: ...
    def child(self, k: int) -> Streams: ...
    def u64(self, i: int, n: int) -> npt.NDArray[np.uint64]: ...
    def uniform(self, i: int, n: int) -> npt.NDArray[np.float64]: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def __reduce__(self) -> tuple[Any, tuple[bytes]]: ...
    @classmethod
    def _from_state(cls, state: bytes) -> Streams: ...

def build_info() -> dict[str, Any]: ...
def set_simd_level(level: str) -> str: ...
def stream_u64(seed: int, stream: int, n: int) -> npt.NDArray[np.uint64]: ...
def derive_seed(seed: int, k: int) -> int: ...
def _parallel_probe(n_items: int, num_threads: int | None = None) -> int: ...
def _panic_for_test() -> None: ...

# Private test hooks for the model loaders and the SentencePiece normaliser (rust/python/spmio.rs).
def _spm_normalize(model_bytes: bytes, text: str) -> str: ...
def _spm_normalize_batch(model_bytes: bytes, texts: list[str]) -> list[str]: ...
def _spm_normalize_with_offsets(model_bytes: bytes, text: str) -> tuple[str, list[int]]: ...
def _spm_roundtrip(model_bytes: bytes) -> bytes: ...
def _load_vocab(format: str, data: bytes) -> list[tuple[bytes, float, int]]: ...
def _load_vocab_info(format: str, data: bytes) -> dict[str, Any]: ...
def _vocab_normalize(format: str, data: bytes, text: str) -> str: ...
@final
class FourierModel:
    def __new__(
        cls,
        coeffs: npt.NDArray[np.complex128],
        domain: str,
        scale: npt.NDArray[np.float64],
        offset: npt.NDArray[np.float64],
    ) -> FourierModel: ...
    @property
    def domain(self) -> str: ...
    @property
    def n_channels(self) -> int: ...
    @property
    def degree(self) -> int: ...
    @property
    def coeffs(self) -> npt.NDArray[np.complex128]: ...
    @property
    def scale(self) -> npt.NDArray[np.float64]: ...
    @property
    def offset(self) -> npt.NDArray[np.float64]: ...
    @property
    def autocorrelation(self) -> npt.NDArray[np.complex128]: ...
    def evaluate(
        self, kind: str, x: npt.NDArray[np.float64], num_threads: int | None = None
    ) -> npt.NDArray[np.float64]: ...
    def bin_mass(
        self,
        lower: npt.NDArray[np.float64],
        upper: npt.NDArray[np.float64],
        num_threads: int | None = None,
    ) -> npt.NDArray[np.float64]: ...
    def ppf(
        self, q: npt.NDArray[np.float64], num_threads: int | None = None
    ) -> npt.NDArray[np.float64]: ...
    def rvs(
        self, size: int, seed: int, num_threads: int | None = None
    ) -> npt.NDArray[np.float64]: ...
    def quantized_cdf(
        self, precision: int, tail_mass: float, num_bins: int
    ) -> tuple[
        npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.int32], bool
    ]: ...
    def nll_grad(
        self,
        x: npt.NDArray[np.float64],
        weights: npt.NDArray[np.float64] | None,
        penalty_kind: str,
        gamma: float,
        grad: bool,
        num_threads: int | None = None,
    ) -> tuple[
        npt.NDArray[np.float64],
        npt.NDArray[np.complex128],
        npt.NDArray[np.float64],
        npt.NDArray[np.float64],
    ]: ...
    def __reduce__(self) -> tuple[Any, tuple[bytes]]: ...
    @classmethod
    def _from_state(cls, state: bytes) -> FourierModel: ...

def fourier_fit(
    data: npt.NDArray[np.float64],
    weights: npt.NDArray[np.float64] | None,
    n_coeffs: int,
    domain: str,
    penalty_kind: str,
    gamma: float,
    optimizer: str,
    steps: int,
    lr: float,
    batch_size: int | None,
    seed: int,
    compress: bool,
    tol: float,
    num_threads: int | None = None,
) -> tuple[
    npt.NDArray[np.complex128],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.uint64],
]: ...

# softmax family (private; the typed API is probcraft.softmax / probcraft.losses)
_SM_ALPHA_MAX: float
_SM_MAX_ORDER: int
_SM_MAX_POINTS: int

def _sm_softmax(
    x: npt.NDArray[Any],
    axis: int,
    temperature: npt.NDArray[np.float64],
    out: npt.NDArray[Any] | None = None,
    num_threads: int | None = None,
    log: bool = False,
) -> npt.NDArray[Any]: ...
def _sm_logsumexp(
    x: npt.NDArray[Any], axis: int, num_threads: int | None = None
) -> npt.NDArray[Any]: ...
def _sm_vjp(
    kind: str,
    y: npt.NDArray[Any],
    grad: npt.NDArray[Any],
    axis: int,
    param: npt.NDArray[np.float64],
    num_threads: int | None = None,
) -> npt.NDArray[Any]: ...
def _sm_perturbmax_vjp(
    x: npt.NDArray[Any],
    grad: npt.NDArray[Any],
    axis: int,
    noise: str,
    n_points: int | None = None,
    num_threads: int | None = None,
) -> npt.NDArray[Any]: ...
def _sm_logsumexp_vjp(
    x: npt.NDArray[Any],
    grad: npt.NDArray[np.float64],
    axis: int,
    num_threads: int | None = None,
) -> npt.NDArray[Any]: ...
def _sm_entmax_vjp(
    y: npt.NDArray[Any],
    grad: npt.NDArray[Any],
    axis: int,
    alpha: npt.NDArray[np.float64],
    num_threads: int | None = None,
) -> tuple[npt.NDArray[Any], npt.NDArray[np.float64]]: ...
def _sm_map(
    kind: str,
    x: npt.NDArray[Any],
    axis: int,
    param: npt.NDArray[np.float64],
    out: npt.NDArray[Any] | None = None,
    num_threads: int | None = None,
    noise: str = "gaussian",
    n_points: int | None = None,
) -> npt.NDArray[Any]: ...
def _sm_sparsity(
    x: npt.NDArray[Any],
    axis: int,
    measure: str,
    p: float = 2.0,
    q: float = 1.0,
    order: float = 2.0,
    num_threads: int | None = None,
) -> npt.NDArray[np.float64]: ...
def _sm_loss(
    kind: str,
    x: npt.NDArray[Any],
    target: npt.NDArray[np.int64],
    axis: int,
    param: npt.NDArray[np.float64],
    ignore_index: int,
    reduction: str,
    return_grad: bool,
    num_threads: int | None = None,
    margin: float = 0.0,
    scale: float = 1.0,
    gamma: float = 0.0,
    embeddings: npt.NDArray[np.float64] | None = None,
) -> tuple[npt.NDArray[np.float64], int, npt.NDArray[Any] | None]: ...
