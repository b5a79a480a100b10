"""Type stubs for its_core/core/_layouts.pyx (device directories; internal)."""

import numpy as np
import numpy.typing as npt

DEVICE_DTYPE: np.dtype
FLAT_MAX_DEVICE_BITS: int
TWOLEVEL_PAGE_SHIFT: int

def sorted_order(ids: npt.ArrayLike) -> npt.NDArray[np.intp]: ...

class DeviceDirectory:
    device_bits: int
    count: int
    generation: int
    @property
    def nbytes(self) -> int: ...
    def device_ids(self) -> npt.NDArray[np.uint32]: ...
    def records(self) -> npt.NDArray[np.void]: ...

class FlatDirectory(DeviceDirectory):
    def __init__(self, device_bits: int) -> None: ...

class TwoLevelDirectory(DeviceDirectory):
    page_shift: int
    def __init__(self, device_bits: int, page_shift: int = ...) -> None: ...

class HashDirectory(DeviceDirectory):
    def __init__(self, device_bits: int) -> None: ...
