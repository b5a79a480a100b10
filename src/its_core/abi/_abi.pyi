"""Type stubs for its_core/abi/_abi.pyx (save/restore kernels; internal)."""

import numpy as np
import numpy.typing as npt

from its_core.core._core import TranslationTables
from its_core.frontend._guest import GuestWindow

def zero_ranges(mem: GuestWindow, addrs: npt.NDArray[np.uint64],
                lengths: npt.NDArray[np.uint64]) -> None: ...
def scatter_u64(mem: GuestWindow, addrs: npt.NDArray[np.uint64],
                values: npt.NDArray[np.uint64]) -> None: ...
def save_itts(mem: GuestWindow, tables: TranslationTables, records: npt.NDArray[np.void]) -> None: ...
def scan_collections(mem: GuestWindow, base: int, table_bytes: int, num_cpus: int,
                     num_collections: int) -> tuple[npt.NDArray[np.uint16], npt.NDArray[np.int32]]: ...
def scan_devices(mem: GuestWindow, target: TranslationTables, base: int, table_bytes: int,
                 page_bytes: int, indirect: bool, known_icids: npt.NDArray[np.uint8]) -> None: ...
