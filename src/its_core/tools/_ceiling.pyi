"""Type stubs for its_core/tools/_ceiling.pyx (benchmark ceiling)."""

import numpy as np
import numpy.typing as npt

def bare_translate(device_base: npt.NDArray[np.uint64], ites: npt.NDArray[np.uint64],
                   collection_cpu: npt.NDArray[np.int32], device_ids: npt.NDArray[np.uint32],
                   event_ids: npt.NDArray[np.uint32], intids: npt.NDArray[np.uint32],
                   cpus: npt.NDArray[np.int32]) -> None: ...

def checked_translate(devices: npt.NDArray[np.uint64], device_bits: int,
                      ites: npt.NDArray[np.uint64], collection_cpu: npt.NDArray[np.int32],
                      device_ids: npt.NDArray[np.uint32], event_ids: npt.NDArray[np.uint32],
                      intids: npt.NDArray[np.uint32], cpus: npt.NDArray[np.int32],
                      statuses: npt.NDArray[np.uint8]) -> None: ...
