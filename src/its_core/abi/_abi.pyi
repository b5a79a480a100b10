"""Type stubs for its_core/abi/_abi.pyx (save/restore kernels; internal)."""

import numpy as np
import numpy.typing as npt

from its_core.core._core import TranslationTables
from its_core.frontend._guest import GuestWindow

def level2_pages(mem: GuestWindow, base: int, table_bytes: int, page_bytes: int
                 ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64], npt.NDArray[np.bool_]]:
    """The level-2 pages of a two-level device table (GITS_BASER0.Indirect = 1:
    level-1 table at `base`, `table_bytes` long; level-2 pages of `page_bytes`),
    read through the native device-table walk the restore scan and the command
    processor use.

    Returns ``(indices, pages, inside)``, one element per level-1 descriptor
    with V = 1, in table order: the descriptor's index, its level-2 page
    address (descriptor bits [51:12] with the bits below the page size
    cleared) and whether the whole page (`page_bytes`) lies inside guest
    memory.  Descriptors with V = 0 are skipped.

    Raises ValueError if a level-1 descriptor itself lies outside guest
    memory (check the level-1 table first to report it otherwise).
    """
def zero_ranges(mem: GuestWindow, addrs: npt.NDArray[np.uint64],
                lengths: npt.NDArray[np.uint64]) -> None:
    """Zero each range (adjacent ranges by one memset)."""
def scatter_u64(mem: GuestWindow, addrs: npt.NDArray[np.uint64],
                values: npt.NDArray[np.uint64]) -> None: ...
def check_itts(mem: GuestWindow, records: npt.NDArray[np.void]) -> tuple[int, bool]:
    """The first device of `records` whose ITT cannot be saved, as
    ``(index, misplaced)`` (misplaced: ITT_addr not 256-byte aligned below
    2**52; else the ITT is not wholly in guest memory), or ``(-1, False)``."""
def save_dtes(mem: GuestWindow, slots: npt.NDArray[np.uint64],
              records: npt.NDArray[np.void]) -> None:
    """Write each device's DTE (V, next, ITT_addr, Size) at its slot."""
def save_itts(mem: GuestWindow, tables: TranslationTables, records: npt.NDArray[np.void]) -> None:
    """Write every device's whole ITT (each ITE with its `next`, zero elsewhere)."""
def collection_entries(tables: TranslationTables) -> npt.NDArray[np.uint64]:
    """The CTE words a save writes, by ICID, without the terminator: mapped
    collections, and unmapped ones that a mapped event names (RDBase all ones)."""
def scan_collections(mem: GuestWindow, base: int, table_bytes: int, num_cpus: int,
                     num_collections: int, target: TranslationTables | None = None
                     ) -> tuple[npt.NDArray[np.uint16], npt.NDArray[np.int32]]:
    """The packed CTE list: (icids, cpus with -1 for "known, unmapped"); with
    `target`, the mapped collections are also mapped there."""
def scan_devices(mem: GuestWindow, target: TranslationTables, base: int, table_bytes: int,
                 page_bytes: int, indirect: bool, known_icids: npt.NDArray[np.uint8]) -> None: ...
def walk_device_table(mem: GuestWindow, base: int, table_bytes: int, page_bytes: int,
                      indirect: bool) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]: ...
def walk_itts_rev1(mem: GuestWindow, device_ids: npt.NDArray[np.uint64],
                   itts: npt.NDArray[np.uint64], event_bits: npt.NDArray[np.uint8]
                   ) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32],
                              npt.NDArray[np.uint64], npt.NDArray[np.uint64]]: ...
