"""Type stubs for its_core/core/_events.pyx (ITE pool and sparse map; internal)."""

import numpy as np
import numpy.typing as npt

POOL_MAX_ENTRIES: int

class ItePool:
    top: int
    garbage: int
    generation: int
    def __init__(self) -> None: ...
    @property
    def nbytes(self) -> int: ...

class SparseEventMap:
    count: int
    generation: int
    def __init__(self) -> None: ...
    def entries_of(self, device_id: int) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint64]]: ...
    @property
    def nbytes(self) -> int: ...
