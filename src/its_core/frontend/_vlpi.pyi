"""Type stubs for its_core/frontend/_vlpi.pyx (native vLPI delivery of msi_batch; internal)."""

import numpy as np
import numpy.typing as npt

from its_core.core._core import TranslationTables
from its_core.frontend._guest import GuestWindow
from its_core.frontend._lpi import LPIState
from its_core.frontend.virtual import VirtualLPIs

def deliver_virtual_batch(tables: TranslationTables, lpi: LPIState, mem: GuestWindow,
                          virtual: VirtualLPIs, device_ids: npt.NDArray[np.uint32],
                          event_ids: npt.NDArray[np.uint32],
                          virtual_ites: npt.NDArray[np.uint64], cpus: npt.NDArray[np.int32],
                          statuses: npt.NDArray[np.uint8]) -> int: ...
