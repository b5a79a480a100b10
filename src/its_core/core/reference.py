"""Reference model of the translation core: plain dicts, obviously correct.

`ReferenceTables` has the same constructor, operations, queries and errors as
`its_core.TranslationTables` and is what every layout is tested against.  It
is deliberately naive: no layouts, no slabs, no hashing of our own.

GICv4: ``virtual_events`` ((DeviceID, EventID) -> (vINTID, vPEID, doorbell))
beside ``events`` (one event is in at most one of them) and ``vpes`` (vPEID ->
CPU), with the core's checks in the core's order; a virtual pair translates
as VIRTUAL / VIRTUAL_NO_VPE, and `snapshot` adds ``virtual_events`` and
``vpes`` only when either is non-empty, as the core does.
"""

from __future__ import annotations

import numpy as np

from its_core.core._core import MappingFailure, TranslationStatus
from its_core.errors import MappingError, TranslationError

from its_core.core.parameters import ICID_SPACE, check_table_parameters

LPI_FIRST_INTID = 8192
DOORBELL_NONE = 1023
VPE_SPACE = 65536


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
        # GICv4: (device_id, event_id) -> (vintid, vpe_id, doorbell); vpe_id -> cpu
        self.virtual_events: dict[tuple[int, int], tuple[int, int, int]] = {}
        self.vpes: dict[int, int] = {}

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

    def _check_doorbell(self, operation: str, doorbell: int) -> None:
        if doorbell != DOORBELL_NONE and not LPI_FIRST_INTID <= doorbell < 2 ** self.intid_bits:
            self._fail(operation, MappingFailure.DOORBELL_NOT_LPI)

    def _check_vpe_id(self, operation: str, vpe_id: int) -> None:
        if not 0 <= vpe_id < VPE_SPACE:
            self._fail(operation, MappingFailure.VPE_ID_OUT_OF_RANGE)

    def _mapped(self, key: tuple[int, int]) -> bool:
        return key in self.events or key in self.virtual_events

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
        for key in [key for key in self.virtual_events if key[0] == device_id]:
            del self.virtual_events[key]
        return self.devices.pop(device_id, None) is not None

    def map_event(self, device_id: int, event_id: int, intid: int, icid: int) -> None:
        self._check_event("map_event", device_id, event_id)
        if not LPI_FIRST_INTID <= intid < 2 ** self.intid_bits:
            self._fail("map_event", MappingFailure.INTID_NOT_LPI)
        if self._mapped((device_id, event_id)):
            self._fail("map_event", MappingFailure.EVENT_ALREADY_MAPPED)
        self._check_icid("map_event", icid)
        self.events[(device_id, event_id)] = (intid, icid)

    @staticmethod
    def _rows(operation: str, *arrays) -> list:
        columns = [np.asarray(a) for a in arrays]
        for column in columns:
            if column.dtype.kind not in "iu" or (column.size and (
                    column.min() < 0 or column.max() > 0xFFFFFFFF)):
                raise ValueError(f"{operation} takes integer arrays of values in 0..2**32-1")
        return list(zip(*(column.tolist() for column in columns)))

    def _each_row(self, method, rows) -> np.ndarray:
        failures = np.zeros(len(rows), np.uint8)
        for index, row in enumerate(rows):
            try:
                method(*row)
            except MappingError as error:
                failures[index] = error.reason
        return failures

    def map_events(self, device_ids, event_ids, intids, icids) -> np.ndarray:
        """Row by row `map_event`; failures reported as MappingFailure codes.
        Like the core, values that do not fit 32 bits refuse the whole call."""
        return self._each_row(self.map_event, self._rows("map_events", device_ids, event_ids,
                                                         intids, icids))

    def unmap_event(self, device_id: int, event_id: int) -> tuple:
        """(intid, icid) of the removed physical ITE, or (vintid, vpe_id,
        doorbell) of the removed virtual one."""
        self._check_event("unmap_event", device_id, event_id)
        if not self._mapped((device_id, event_id)):
            self._fail("unmap_event", MappingFailure.EVENT_NOT_MAPPED)
        if (device_id, event_id) in self.virtual_events:
            return self.virtual_events.pop((device_id, event_id))
        return self.events.pop((device_id, event_id))

    def move_event(self, device_id: int, event_id: int, icid: int) -> int:
        self._check_event("move_event", device_id, event_id)
        if not self._mapped((device_id, event_id)):
            self._fail("move_event", MappingFailure.EVENT_NOT_MAPPED)
        if (device_id, event_id) in self.virtual_events:
            self._fail("move_event", MappingFailure.EVENT_IS_VIRTUAL)
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

    # -- GICv4 ------------------------------------------------------------------

    def map_virtual_event(self, device_id: int, event_id: int, vintid: int, vpe_id: int,
                          doorbell: int = DOORBELL_NONE) -> None:
        operation = "map_virtual_event"
        self._check_event(operation, device_id, event_id)
        if not LPI_FIRST_INTID <= vintid < 2 ** self.intid_bits:
            self._fail(operation, MappingFailure.INTID_NOT_LPI)
        self._check_doorbell(operation, doorbell)
        if self._mapped((device_id, event_id)):
            self._fail(operation, MappingFailure.EVENT_ALREADY_MAPPED)
        self._check_vpe_id(operation, vpe_id)
        self.virtual_events[(device_id, event_id)] = (vintid, vpe_id, doorbell)

    def map_virtual_events(self, device_ids, event_ids, vintids, vpe_ids,
                           doorbells) -> np.ndarray:
        """Row by row `map_virtual_event`, failures reported as codes."""
        return self._each_row(self.map_virtual_event, self._rows(
            "map_virtual_events", device_ids, event_ids, vintids, vpe_ids, doorbells))

    def move_virtual_event(self, device_id: int, event_id: int, vpe_id: int,
                           doorbell: int | None = None) -> tuple[int, int]:
        operation = "move_virtual_event"
        if doorbell is not None:
            self._check_doorbell(operation, doorbell)
        self._check_event(operation, device_id, event_id)
        if not self._mapped((device_id, event_id)):
            self._fail(operation, MappingFailure.EVENT_NOT_MAPPED)
        if (device_id, event_id) not in self.virtual_events:
            self._fail(operation, MappingFailure.EVENT_NOT_VIRTUAL)
        self._check_vpe_id(operation, vpe_id)
        vintid, old_vpe_id, old_doorbell = self.virtual_events[(device_id, event_id)]
        self.virtual_events[(device_id, event_id)] = (
            vintid, vpe_id, old_doorbell if doorbell is None else doorbell)
        return old_vpe_id, old_doorbell

    def map_vpe(self, vpe_id: int, cpu: int) -> None:
        if not 0 <= cpu < self.num_cpus:
            self._fail("map_vpe", MappingFailure.CPU_OUT_OF_RANGE)
        self._check_vpe_id("map_vpe", vpe_id)
        self.vpes[vpe_id] = cpu

    def unmap_vpe(self, vpe_id: int) -> bool:
        self._check_vpe_id("unmap_vpe", vpe_id)
        return self.vpes.pop(vpe_id, None) is not None

    def virtual_event(self, device_id: int, event_id: int):
        return self.virtual_events.get((device_id, event_id))

    def vpe_cpu(self, vpe_id: int):
        return self.vpes.get(vpe_id)

    @property
    def num_virtual_events(self) -> int:
        return len(self.virtual_events)

    # -- queries ----------------------------------------------------------------

    def lookup_device(self, device_id: int):
        return self.devices.get(device_id)

    def lookup_event(self, device_id: int, event_id: int):
        return self.events.get((device_id, event_id))

    def collection_cpu(self, icid: int):
        return self.collections.get(icid)

    def translation_status(self, device_id: int, event_id: int):
        """(status, intid, cpu) of one pair, INTID 0 and CPU -1 unless OK;
        a virtual ITE: (VIRTUAL, vintid, the vPE's CPU) or (VIRTUAL_NO_VPE,
        vintid, -1)."""
        if not 0 <= device_id < 2 ** self.device_bits:
            return TranslationStatus.DEVICE_OUT_OF_RANGE, 0, -1
        if device_id not in self.devices:
            return TranslationStatus.NO_DEVICE, 0, -1
        if not 0 <= event_id < 2 ** self.devices[device_id][0]:
            return TranslationStatus.EVENT_OUT_OF_RANGE, 0, -1
        if (device_id, event_id) in self.virtual_events:
            vintid, vpe_id, _ = self.virtual_events[(device_id, event_id)]
            if vpe_id not in self.vpes:
                return TranslationStatus.VIRTUAL_NO_VPE, vintid, -1
            return TranslationStatus.VIRTUAL, vintid, self.vpes[vpe_id]
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

    def translate_batch(self, device_ids, event_ids, out=None, *, with_vpe_ids=False):
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
        vpe_ids = np.array([self.virtual_events[(d, e)][1] if r[0] in (
            TranslationStatus.VIRTUAL, TranslationStatus.VIRTUAL_NO_VPE) else -1
            for r, d, e in zip(results, device_ids.tolist(), event_ids.tolist())], np.int32)
        if out is not None:
            out[0][:], out[1][:], out[2][:] = intids, cpus, statuses
            if len(out) == 4:
                out[3][:] = vpe_ids
            return out
        if with_vpe_ids:
            return intids, cpus, statuses, vpe_ids
        return intids, cpus, statuses

    def snapshot(self) -> dict:
        state = {"devices": dict(self.devices), "events": dict(self.events),
                 "collections": dict(self.collections)}
        if self.virtual_events or self.vpes:
            state["virtual_events"] = dict(self.virtual_events)
            state["vpes"] = dict(self.vpes)
        return state

    @property
    def num_devices(self) -> int:
        return len(self.devices)

    @property
    def num_events(self) -> int:
        return len(self.events)
