# Type stub for the compiled extension. `python -m mypy.stubtest probcraft._core` checks that
# it matches the binary (run by scripts/test.sh).
from typing import Any

import numpy as np
import numpy.typing as npt

__version__: str

class ModelFormatError(ValueError): ...
class LimitError(ValueError): ...

class Streams:
    def __new__(cls, seed: int) -> Streams: ...
    @property
    def seed(self) -> int: ...
    def child(self, k: int) -> Streams: ...
    def u64(self, i: int, n: int) -> npt.NDArray[np.uint64]: ...
    def uniform(self, i: int, n: int) -> npt.NDArray[np.float64]: ...
    def __eq__(self, other: object) -> bool: ...
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
