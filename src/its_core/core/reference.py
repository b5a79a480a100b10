"""Reference model of the translation core: plain dicts, obviously correct.

`ReferenceTables` has the same constructor, operations, queries and errors as
`its_core.TranslationTables` and is what every layout is tested against.  It
is deliberately naive: no layouts, no slabs, no hashing of our own.
"""

from __future__ import annotations

import numpy as np

from its_core.core._core import MappingFailure, TranslationStatus
from its_core.errors import MappingError, TranslationError

from its_core.core.parameters import ICID_SPACE, check_table_parameters

LPI_FIRST_INTID = 8192


class ReferenceTables:
    """Dict-based model of `TranslationTables` (see there for parameters).

    `layout` is accepted and validated like the real one, so the same
    arguments build either; it changes nothing here.
    """

    def __init__(self, layout: str = "flat", *, device_bits: int = 16, event_bits: int = 16,
                 intid_bits: int = 16, num_collections: int = ICID_SPACE, num_cpus: int = 8):
        check_table_parameters(layout, device_bits, event_bits, intid_bits, num_collections,
                               num_cpus)
        self.layout = layout
        self.device_bits = device_bits
        self.event_bits = event_bits
        self.intid_bits = intid_bits
        self.num_collections = num_collections
        self.num_cpus = num_cpus
        self.reset()

    def reset(self) -> None:
        self.devices: dict[int, tuple[int, int]] = {}            # device_id -> (event_bits, itt_addr)
        self.events: dict[tuple[int, int], tuple[int, int]] = {}  # (device_id, event_id) -> (intid, icid)
        self.collections: dict[int, int] = {}                      # icid -> cpu

    # -- checks, each raising the MappingFailure the core reports -------------

    @staticmethod
    def _fail(operation: str, reason: MappingFailure) -> None:
        raise MappingError(f"{operation}: {reason.name}", reason=reason, operation=operation)

    def _check_device_id(self, operation: str, device_id: int) -> None:
        if not 0 <= device_id < 2 ** self.device_bits:
            self._fail(operation, MappingFailure.DEVICE_ID_OUT_OF_RANGE)

    def _check_event(self, operation: str, device_id: int, event_id: int) -> None:
        self._check_device_id(operation, device_id)
        if device_id not in self.devices:
            self._fail(operation, MappingFailure.DEVICE_NOT_MAPPED)
        if not 0 <= event_id < 2 ** self.devices[device_id][0]:
            self._fail(operation, MappingFailure.EVENT_ID_OUT_OF_RANGE)

    def _check_icid(self, operation: str, icid: int) -> None:
        if not 0 <= icid < self.num_collections:
            self._fail(operation, MappingFailure.ICID_OUT_OF_RANGE)

    # -- operations -------------------------------------------------------------

    def map_device(self, device_id: int, event_bits: int, itt_addr: int = 0) -> None:
        if not 0 <= itt_addr < 2 ** 64:
            raise ValueError(f"itt_addr {itt_addr:#x} does not fit 64 bits")
        self._check_device_id("map_device", device_id)
        if not 1 <= event_bits <= self.event_bits:
            self._fail("map_device", MappingFailure.EVENT_BITS_OUT_OF_RANGE)
        self.unmap_device(device_id)
        self.devices[device_id] = (event_bits, itt_addr)

    def unmap_device(self, device_id: int) -> bool:
        self._check_device_id("unmap_device", device_id)
        for key in [key for key in self.events if key[0] == device_id]:
            del self.events[key]
        return self.devices.pop(device_id, None) is not None

    def map_event(self, device_id: int, event_id: int, intid: int, icid: int) -> None:
        self._check_event("map_event", device_id, event_id)
        if not LPI_FIRST_INTID <= intid < 2 ** self.intid_bits:
            self._fail("map_event", MappingFailure.INTID_NOT_LPI)
        if (device_id, event_id) in self.events:
            self._fail("map_event", MappingFailure.EVENT_ALREADY_MAPPED)
        self._check_icid("map_event", icid)
        self.events[(device_id, event_id)] = (intid, icid)

    def map_events(self, device_ids, event_ids, intids, icids) -> np.ndarray:
        """Row by row `map_event`; failures reported as MappingFailure codes.
        Like the core, values that do not fit 32 bits refuse the whole call."""
        columns = [np.asarray(a) for a in (device_ids, event_ids, intids, icids)]
        for column in columns:
            if column.dtype.kind not in "iu" or (column.size and (
                    column.min() < 0 or column.max() > 0xFFFFFFFF)):
                raise ValueError("map_events takes integer arrays of values in 0..2**32-1")
        rows = list(zip(*(column.tolist() for column in columns)))
        failures = np.zeros(len(rows), np.uint8)
        for index, row in enumerate(rows):
            try:
                self.map_event(*row)
            except MappingError as error:
                failures[index] = error.reason
        return failures

    def unmap_event(self, device_id: int, event_id: int) -> tuple[int, int]:
        self._check_event("unmap_event", device_id, event_id)
        if (device_id, event_id) not in self.events:
            self._fail("unmap_event", MappingFailure.EVENT_NOT_MAPPED)
        return self.events.pop((device_id, event_id))

    def move_event(self, device_id: int, event_id: int, icid: int) -> int:
        self._check_event("move_event", device_id, event_id)
        if (device_id, event_id) not in self.events:
            self._fail("move_event", MappingFailure.EVENT_NOT_MAPPED)
        self._check_icid("move_event", icid)
        intid, old_icid = self.events[(device_id, event_id)]
        self.events[(device_id, event_id)] = (intid, icid)
        return old_icid

    def map_collection(self, icid: int, cpu: int) -> None:
        if not 0 <= cpu < self.num_cpus:
            self._fail("map_collection", MappingFailure.CPU_OUT_OF_RANGE)
        self._check_icid("map_collection", icid)
        self.collections[icid] = cpu

    def unmap_collection(self, icid: int) -> bool:
        self._check_icid("unmap_collection", icid)
        return self.collections.pop(icid, None) is not None

    # -- queries ----------------------------------------------------------------

    def lookup_device(self, device_id: int):
        return self.devices.get(device_id)

    def lookup_event(self, device_id: int, event_id: int):
        return self.events.get((device_id, event_id))

    def collection_cpu(self, icid: int):
        return self.collections.get(icid)

    def translation_status(self, device_id: int, event_id: int):
        """(status, intid, cpu) of one pair, INTID 0 and CPU -1 unless OK."""
        if not 0 <= device_id < 2 ** self.device_bits:
            return TranslationStatus.DEVICE_OUT_OF_RANGE, 0, -1
        if device_id not in self.devices:
            return TranslationStatus.NO_DEVICE, 0, -1
        if not 0 <= event_id < 2 ** self.devices[device_id][0]:
            return TranslationStatus.EVENT_OUT_OF_RANGE, 0, -1
        if (device_id, event_id) not in self.events:
            return TranslationStatus.NO_MAPPING, 0, -1
        intid, icid = self.events[(device_id, event_id)]
        if icid not in self.collections:
            return TranslationStatus.NO_COLLECTION, 0, -1
        return TranslationStatus.OK, intid, self.collections[icid]

    def translate(self, device_id: int, event_id: int) -> tuple[int, int]:
        for name, value in (("device_id", device_id), ("event_id", event_id)):
            if not 0 <= value < 2 ** 32:
                raise ValueError(f"{name} {value} does not fit 32 bits")
        status, intid, cpu = self.translation_status(device_id, event_id)
        if status != TranslationStatus.OK:
            raise TranslationError(status, device_id, event_id)
        return intid, cpu

    def translate_batch(self, device_ids, event_ids, out=None):
        """Same contract as the core's (a Python loop over `translation_status`)."""
        device_ids = np.asarray(device_ids)
        event_ids = np.asarray(event_ids)
        if device_ids.shape != event_ids.shape or device_ids.ndim != 1:
            raise ValueError("device_ids and event_ids must be 1-D and of equal length")
        results = [self.translation_status(int(d), int(e))
                   for d, e in zip(device_ids.tolist(), event_ids.tolist())]
        statuses = np.array([r[0] for r in results], np.uint8)
        intids = np.array([r[1] for r in results], np.uint32)
        cpus = np.array([r[2] for r in results], np.int32)
        if out is not None:
            out[0][:], out[1][:], out[2][:] = intids, cpus, statuses
            return out
        return intids, cpus, statuses

    def snapshot(self) -> dict:
        return {"devices": dict(self.devices), "events": dict(self.events),
                "collections": dict(self.collections)}

    @property
    def num_devices(self) -> int:
        return len(self.devices)

    @property
    def num_events(self) -> int:
        return len(self.events)
