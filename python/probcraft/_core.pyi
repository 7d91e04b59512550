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
# Unigram training (rust/python/train.rs; public wrapper in probcraft.train).
def _train_unigram(
    corpus: object,
    vocab_size: int,
    *,
    files: bool = False,
    byte_level: bool = False,
    byte_fallback: bool = False,
    max_piece_length: int = 16,
    character_coverage: float = 0.9995,
    user_defined: list[str] = ...,
    num_threads: int | None = None,
    seed: int = 0,
    max_sentences: int | None = None,
    seed_size: int = 1000000,
    shrinking_factor: float = 0.75,
    num_sub_iterations: int = 2,
    final_iterations: int = 2,
    progress: bool = False,
) -> tuple[bytes, list[tuple[str, int, int, int, float, float, float]]]: ...
def _vocab_to_sentencepiece(data: bytes) -> bytes: ...
def _vocab_from_sentencepiece(data: bytes) -> bytes: ...

@final
class Unigram:
    @classmethod
    def from_sentencepiece(cls, path_or_bytes: Any) -> Unigram: ...
    @classmethod
    def from_hf_json(cls, path_or_bytes: Any) -> Unigram: ...
    @classmethod
    def from_bytepiece(cls, path_or_bytes: Any) -> Unigram: ...
    @classmethod
    def from_jieba_dict(cls, path_or_bytes: Any) -> Unigram: ...
    @classmethod
    def from_pieces(
        cls, pieces: Any, *, unk: int | None = None, byte_level: bool = False
    ) -> Unigram: ...
    @classmethod
    def from_bytes(cls, data: bytes) -> Unigram: ...
    @classmethod
    def _from_state(cls, state: bytes) -> Unigram: ...
    def to_bytes(self) -> bytes: ...
    def __reduce__(self) -> tuple[Any, tuple[bytes]]: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def __len__(self) -> int: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def unk_id(self) -> int | None: ...
    @property
    def byte_level(self) -> bool: ...
    @property
    def source(self) -> str: ...
    def id_to_piece(self, i: int) -> Any: ...
    def piece_to_id(self, piece: str | bytes | bytearray) -> int | None: ...
    def score(self, i: int) -> float: ...
    def normalize(self, text: str | bytes | bytearray) -> Any: ...
    def encode(
        self, text: str | bytes | bytearray, *, alpha: float | None = None, seed: int | None = None,
        method: str = "perfect",
    ) -> npt.NDArray[np.int32]: ...
    def encode_as_pieces(
        self, text: str | bytes | bytearray, *, alpha: float | None = None, seed: int | None = None,
        method: str = "perfect",
    ) -> list[Any]: ...
    def encode_with_spans(
        self, text: str | bytes | bytearray, *, alpha: float | None = None, seed: int | None = None,
        method: str = "perfect",
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]: ...
    def encode_batch_flat(
        self, texts: Any, *, alpha: float | None = None, seed: int | None = None,
        num_threads: int | None = None, method: str = "perfect", stream_offset: int = 0,
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]: ...
    def encode_batch_list(
        self, texts: Any, *, alpha: float | None = None, seed: int | None = None,
        num_threads: int | None = None, method: str = "perfect", stream_offset: int = 0,
    ) -> list[npt.NDArray[np.int32]]: ...
    def decode(self, ids: Any) -> str: ...
    def decode_bytes(self, ids: Any) -> bytes: ...
    def nbest(self, text: str | bytes | bytearray, k: int) -> list[tuple[npt.NDArray[np.int32], float]]: ...
    def sample(
        self, text: str | bytes | bytearray, n: int, *, alpha: float, seed: int | None = None,
        replace: bool = True, method: str = "perfect",
    ) -> list[tuple[Any, ...]]: ...
    def log_partition(self, text: str | bytes | bytearray, alpha: float = 1.0) -> float: ...
    def entropy(self, text: str | bytes | bytearray, alpha: float = 1.0) -> float: ...
    def log_prob(self, text: str | bytes | bytearray, ids: Any, alpha: float = 1.0) -> float: ...
    def marginals(self, text: str | bytes | bytearray, alpha: float = 1.0) -> dict[str, Any]: ...
    def prefix_candidates(
        self, text: str | bytes | bytearray, alpha: float = 1.0
    ) -> list[tuple[int, int, float]]: ...

# softmax family (private; the typed API is probcraft.softmax / probcraft.losses)
_SM_ALPHA_MAX: float
_SM_MAX_ORDER: int
_SM_MAX_POINTS: int
_SM_MIN_POINTS: int
_SM_MAX_THREADS: int

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
