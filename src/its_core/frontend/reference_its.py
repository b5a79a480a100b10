"""Reference model of the ITS front end's command and LPI semantics: plain Python.

`ReferenceITS` is the oracle the front end (`its_core.ITS`) is tested
against.  It follows ``docs/front-end.md`` line by line and is deliberately
naive: no MMIO, no command queue, no caching of its own.  State is set through
plain attributes and a few methods:

* ``baser0`` / ``baser1`` -- the GITS_BASER0/1 values, used only for the
  device-table and collection-table slot checks (level-1 descriptors of an
  indirect device table are read from guest memory on every check);
* ``propbaser`` -- the one GICR_PROPBASER value, shared by every CPU;
* ``pendbaser[cpu]`` -- GICR_PENDBASER per CPU, PTZ (bit 62) included until the
  next `enable_lpis` of that CPU consumes it;
* ``enabled`` -- GITS_CTLR.Enabled, only consulted by `msi`;
* ``lpis_enabled[cpu]`` -- GICR_CTLR.EnableLPIs, changed by `enable_lpis` /
  `disable_lpis`.

`execute` applies one 32-byte command and returns 0 or its error code;
`execute_slot` does the same for a queue slot in guest memory (reporting
``E_ITS_CMD_READ_FAULT`` when it is outside).  Mappings are kept in a
`ReferenceTables`; pending state is one ``set`` of INTIDs per CPU; the
configuration cache is one dict INTID -> config byte shared by every CPU
(an INTID never loaded reads as 0: disabled, priority 0).
"""

from __future__ import annotations

from its_core.frontend import commands as C
from its_core.frontend import registers as R
from its_core.core._core import TranslationStatus
from its_core.frontend.guest_memory import GuestMemory
from its_core.core.reference import ICID_SPACE, LPI_FIRST_INTID, ReferenceTables

__all__ = ["ReferenceITS", "ITE_BYTES", "DTE_BYTES", "PTZ_BIT"]

#: Bytes of one ITE, DTE and CTE (GITS_TYPER.ITT_entry_size = 7, Entry_Size = 7).
ITE_BYTES = 8
DTE_BYTES = 8
CTE_BYTES = 8
#: GICR_PENDBASER.PTZ.
PTZ_BIT = 1 << 62
#: Level-1 descriptor Valid bit and address bits [51:12].
L1_VALID = 1 << 63
L1_ADDRESS = ((1 << 52) - 1) & ~0xFFF
#: Pending-table bytes below this one (INTIDs 0..8191) are never read.
PENDING_FIRST_BYTE = LPI_FIRST_INTID // 8

_PROP_ADDRESS = R.GICR_PROPBASER_LAYOUT["Physical_Address"].mask
_PROP_IDBITS = R.GICR_PROPBASER_LAYOUT["IDbits"]
_PEND_ADDRESS = R.GICR_PENDBASER_LAYOUT["Physical_Address"].mask
_BASER_VALID = R.GITS_BASER_LAYOUT["Valid"]
_BASER_INDIRECT = R.GITS_BASER_LAYOUT["Indirect"]


class ReferenceITS:
    """Pure-Python model of the front end's commands, doorbell and LPI state.

    Parameters
    ----------
    mem : GuestMemory
        Guest memory: tables are read from it and DTE/ITE zeroing is written to it.
    num_cpus : int
        Number of redistributors (valid MAPC / MOVALL targets).
    device_bits, event_bits, intid_bits : int
        As for `its_core.ITS`.
    num_collections : int, default 65536
        ICIDs below this are candidates for a collection-table slot.
    """

    def __init__(self, mem: GuestMemory, num_cpus: int, device_bits: int = 16,
                 event_bits: int = 16, intid_bits: int = 16,
                 num_collections: int = ICID_SPACE) -> None:
        self.mem = mem
        self.num_cpus = num_cpus
        self.device_bits = device_bits
        self.event_bits = event_bits
        self.intid_bits = intid_bits
        self.num_collections = num_collections
        # "hash" only so that any device_bits is accepted; the layout changes nothing here.
        self.tables = ReferenceTables("hash", device_bits=device_bits, event_bits=event_bits,
                                      intid_bits=intid_bits, num_collections=num_collections,
                                      num_cpus=num_cpus)
        self.baser0 = 0
        self.baser1 = 0
        self.enabled = False
        self.propbaser = 0
        self.pendbaser = [0] * num_cpus
        self.lpis_enabled = [False] * num_cpus
        self.pending_sets: list[set[int]] = [set() for _ in range(num_cpus)]
        self.config: dict[int, int] = {}

    # -- limits and guest-memory helpers ---------------------------------------------

    @property
    def lpi_limit(self) -> int:
        """2 ** min(PROPBASER.IDbits + 1, intid_bits): first INTID that is out of range."""
        return 2 ** min(_PROP_IDBITS.extract(self.propbaser) + 1, self.intid_bits)

    def _read_u64(self, addr: int) -> int | None:
        """The 64-bit little-endian word at `addr`, None if not wholly in memory."""
        if not self.mem.contains(addr, 8):
            return None
        return int.from_bytes(self.mem.read(addr, 8), "little")

    def _read_byte(self, addr: int) -> int:
        """One byte of guest memory; 0 outside it."""
        if not self.mem.contains(addr, 1):
            return 0
        return self.mem.read(addr, 1)[0]

    def _read_bytes(self, addr: int, n: int) -> bytes:
        """`n` bytes of guest memory from `addr`; bytes outside guest memory read as 0."""
        if self.mem.contains(addr, n):
            return self.mem.read(addr, n)
        return bytes(self._read_byte(a) for a in range(addr, addr + n))

    def _load_config(self, intid: int) -> None:
        """Config cache <- the LPI's byte at PROPBASER.PA + INTID - 8192."""
        self.config[intid] = self._read_byte((self.propbaser & _PROP_ADDRESS)
                                             + intid - LPI_FIRST_INTID)

    # -- table slots -----------------------------------------------------------------

    def device_slot(self, device_id: int) -> int | None:
        """Guest address of DeviceID's DTE, or None if it has no device-table slot."""
        if not 0 <= device_id < 2 ** self.device_bits:
            return None
        base = R.baser_address(self.baser0)
        table_bytes = R.baser_table_bytes(self.baser0)
        if not _BASER_INDIRECT.extract(self.baser0):
            if device_id >= table_bytes // DTE_BYTES:
                return None
            dte = base + device_id * DTE_BYTES
        else:
            page = R.baser_page_size(self.baser0)
            per_page = page // DTE_BYTES
            index = device_id // per_page
            if index >= table_bytes // 8:
                return None
            descriptor = self._read_u64(base + index * 8)
            if descriptor is None or not descriptor & L1_VALID:
                return None
            level2 = descriptor & L1_ADDRESS & ~(page - 1)
            dte = level2 + (device_id % per_page) * DTE_BYTES
        return dte if self.mem.contains(dte, DTE_BYTES) else None

    def collection_slot(self, icid: int) -> bool:
        """Whether ICID has a collection-table slot."""
        return icid < self.num_collections and icid < R.baser_table_bytes(self.baser1) // CTE_BYTES

    # -- internal state helpers --------------------------------------------------------

    def _ite(self, device_id: int, event_id: int):
        """(intid, icid) of the ITE, or None (device unmapped, EventID out of range/unmapped)."""
        return self.tables.lookup_event(device_id, event_id)

    def _clear_on_target(self, intid: int, icid: int) -> None:
        """Clear the LPI's pending bit on the CPU its collection maps to now (if any)."""
        cpu = self.tables.collection_cpu(icid)
        if cpu is not None:
            self.pending_sets[cpu].discard(intid)

    def _set_pending(self, cpu: int, intid: int) -> None:
        if self.lpis_enabled[cpu]:
            self.pending_sets[cpu].add(intid)

    def _drop_device(self, device_id: int) -> None:
        """Forget a device, its events and their pending bits."""
        if self.tables.lookup_device(device_id) is None:
            return
        for (dev, _event), (intid, icid) in list(self.tables.events.items()):
            if dev == device_id:
                self._clear_on_target(intid, icid)
        self.tables.unmap_device(device_id)

    # -- commands ----------------------------------------------------------------------

    def execute(self, packet: bytes) -> int:
        """Apply one 32-byte command; return 0 or its E_ITS_* error code."""
        command = C.decode(packet, gic_version="3")     # GICv4 commands: unknown
        handler = getattr(self, "_cmd_" + command.name.lower(), None)
        if handler is None:
            return C.E_ITS_UNKNOWN_COMMAND
        return handler(**command.fields)

    def execute_slot(self, addr: int) -> int:
        """Apply the command stored at guest address `addr` (a queue slot)."""
        if not self.mem.contains(addr, C.COMMAND_BYTES):
            return C.E_ITS_CMD_READ_FAULT
        return self.execute(self.mem.read(addr, C.COMMAND_BYTES))

    def _cmd_mapd(self, device_id, itt_addr, num_event_bits, valid) -> int:
        dte = self.device_slot(device_id)
        if dte is None:
            return C.E_ITS_MAPD_DEVICE_OOR
        if valid and num_event_bits > self.event_bits:
            return C.E_ITS_MAPD_ITTSIZE_OOR
        self._drop_device(device_id)
        if valid:
            self.tables.map_device(device_id, num_event_bits, itt_addr)
        else:
            self.mem.write(dte, bytes(DTE_BYTES))
        return 0

    def _cmd_mapc(self, icid, cpu, valid) -> int:
        if not valid:
            self.tables.collections.pop(icid, None)
            return 0
        if cpu >= self.num_cpus:
            return C.E_ITS_MAPC_PROCNUM_OOR
        if not self.collection_slot(icid):
            return C.E_ITS_MAPC_COLLECTION_OOR
        self.tables.map_collection(icid, cpu)
        return 0

    def _cmd_mapti(self, device_id, event_id, intid, icid) -> int:
        device = self.tables.lookup_device(device_id)
        if device is None:
            return C.E_ITS_MAPTI_UNMAPPED_DEVICE
        bits, itt = device
        if event_id >= 2 ** bits or not self.mem.contains(itt + event_id * ITE_BYTES, ITE_BYTES):
            return C.E_ITS_MAPTI_ID_OOR
        if not LPI_FIRST_INTID <= intid < self.lpi_limit:
            return C.E_ITS_MAPTI_PHYSICALID_OOR
        if self._ite(device_id, event_id) is not None:
            return C.E_ITS_MAPTI_ID_ALREADY_MAPPED
        if not self.collection_slot(icid):
            return C.E_ITS_MAPC_COLLECTION_OOR
        self.tables.map_event(device_id, event_id, intid, icid)
        self._load_config(intid)
        return 0

    def _cmd_mapi(self, device_id, event_id, icid) -> int:
        return self._cmd_mapti(device_id, event_id, event_id, icid)

    def _cmd_movi(self, device_id, event_id, icid) -> int:
        ite = self._ite(device_id, event_id)
        if ite is None:
            return C.E_ITS_MOVI_UNMAPPED_INTERRUPT
        intid, old_icid = ite
        old_cpu = self.tables.collection_cpu(old_icid)
        if old_cpu is None:
            return C.E_ITS_MOVI_UNMAPPED_COLLECTION
        new_cpu = self.tables.collection_cpu(icid) if icid < self.num_collections else None
        if new_cpu is None:
            return C.E_ITS_MOVI_UNMAPPED_COLLECTION
        self.tables.move_event(device_id, event_id, icid)
        if intid in self.pending_sets[old_cpu]:
            self.pending_sets[old_cpu].discard(intid)
            self._set_pending(new_cpu, intid)
        return 0

    def _cmd_discard(self, device_id, event_id) -> int:
        ite = self._ite(device_id, event_id)
        if ite is None or self.tables.collection_cpu(ite[1]) is None:
            return C.E_ITS_DISCARD_UNMAPPED_INTERRUPT
        intid, icid = ite
        self._clear_on_target(intid, icid)
        self.tables.unmap_event(device_id, event_id)
        itt = self.tables.lookup_device(device_id)[1]
        self.mem.write(itt + event_id * ITE_BYTES, bytes(ITE_BYTES))
        return 0

    def _cmd_inv(self, device_id, event_id) -> int:
        ite = self._ite(device_id, event_id)
        if ite is None:
            return C.E_ITS_INV_UNMAPPED_INTERRUPT
        self._load_config(ite[0])
        return 0

    def _cmd_invall(self, icid) -> int:
        cpu = self.tables.collection_cpu(icid) if icid < self.num_collections else None
        if cpu is None:
            return C.E_ITS_INVALL_UNMAPPED_COLLECTION
        for intid, event_icid in list(self.tables.events.values()):
            if self.tables.collection_cpu(event_icid) == cpu:
                self._load_config(intid)
        return 0

    def _cmd_int(self, device_id, event_id) -> int:
        ite = self._ite(device_id, event_id)
        if ite is None or self.tables.collection_cpu(ite[1]) is None:
            return C.E_ITS_INT_UNMAPPED_INTERRUPT
        intid, icid = ite
        cpu = self.tables.collection_cpu(icid)
        if not self.lpis_enabled[cpu]:
            return C.E_ITS_INT_LPIS_DISABLED
        if intid < self.lpi_limit:
            self.pending_sets[cpu].add(intid)
        return 0

    def _cmd_clear(self, device_id, event_id) -> int:
        ite = self._ite(device_id, event_id)
        if ite is None or self.tables.collection_cpu(ite[1]) is None:
            return C.E_ITS_CLEAR_UNMAPPED_INTERRUPT
        self._clear_on_target(*ite)
        return 0

    def _cmd_sync(self, cpu) -> int:
        return 0

    def _cmd_movall(self, from_cpu, to_cpu) -> int:
        if from_cpu >= self.num_cpus or to_cpu >= self.num_cpus:
            return C.E_ITS_MOVALL_PROCNUM_OOR
        if from_cpu != to_cpu:
            moved = self.pending_sets[from_cpu]
            self.pending_sets[from_cpu] = set()
            if self.lpis_enabled[to_cpu]:
                self.pending_sets[to_cpu] |= moved
        return 0

    # -- registers with side effects ----------------------------------------------------

    def write_baser0(self, value: int) -> None:
        """BASER0 write (while disabled): Valid = 0 drops every device and its pending bits."""
        self.baser0 = value
        if not _BASER_VALID.extract(value):
            for device_id in list(self.tables.devices):
                self._drop_device(device_id)

    def write_baser1(self, value: int) -> None:
        """BASER1 write (while disabled): Valid = 0 unmaps every collection."""
        self.baser1 = value
        if not _BASER_VALID.extract(value):
            self.tables.collections.clear()

    def reset(self) -> None:
        """ITS reset: disabled, no devices, collections or mappings; Valid cleared in BASER0/1.

        Redistributor state (pending bits, config cache, PROPBASER, PENDBASER,
        EnableLPIs) is kept.
        """
        self.enabled = False
        self.tables.reset()
        self.baser0 &= ~_BASER_VALID.mask
        self.baser1 &= ~_BASER_VALID.mask

    # -- redistributors -------------------------------------------------------------------

    def enable_lpis(self, cpu: int) -> None:
        """GICR_CTLR.EnableLPIs 0 -> 1: load pending bits (unless PTZ) and the config cache.

        A PTZ written with PENDBASER applies to this enable only.
        """
        if self.lpis_enabled[cpu]:
            return
        self.lpis_enabled[cpu] = True
        limit = self.lpi_limit
        pending: set[int] = set()
        if not self.pendbaser[cpu] & PTZ_BIT and limit > LPI_FIRST_INTID:
            table = self.pendbaser[cpu] & _PEND_ADDRESS
            first, end = PENDING_FIRST_BYTE, limit // 8
            for byte_index, byte in enumerate(self._read_bytes(table + first, end - first), first):
                for bit in range(8):
                    if byte >> bit & 1:
                        pending.add(byte_index * 8 + bit)
        self.pending_sets[cpu] = pending
        # PTZ reads as 0 and acts on the enable that follows its write: it is consumed here
        # (docs/front-end.md leaves open whether it also applies to later enables; it does not).
        self.pendbaser[cpu] &= ~PTZ_BIT
        # The whole cache is reloaded: LPIs below the limit from the table, the rest
        # (beyond a lowered IDbits) read as 0 (docs/front-end.md does not say; see tests).
        self.config.clear()
        if limit > LPI_FIRST_INTID:
            prop = self.propbaser & _PROP_ADDRESS
            for offset, byte in enumerate(self._read_bytes(prop, limit - LPI_FIRST_INTID)):
                self.config[LPI_FIRST_INTID + offset] = byte

    def disable_lpis(self, cpu: int) -> None:
        """GICR_CTLR.EnableLPIs 1 -> 0: the CPU's pending bits are dropped."""
        self.lpis_enabled[cpu] = False
        self.pending_sets[cpu] = set()

    # -- doorbell and queries ----------------------------------------------------------------

    def msi(self, device_id: int, event_id: int) -> TranslationStatus:
        """A GITS_TRANSLATER write from `device_id` with data `event_id`."""
        if not self.enabled:
            return TranslationStatus.ITS_DISABLED
        status, intid, cpu = self.tables.translation_status(device_id, event_id)
        if status != TranslationStatus.OK:
            return TranslationStatus(status)
        if not self.lpis_enabled[cpu]:
            return TranslationStatus.LPIS_DISABLED
        if intid >= self.lpi_limit:
            return TranslationStatus.INTID_OUT_OF_RANGE
        self.pending_sets[cpu].add(intid)
        return TranslationStatus.OK

    def pending(self, cpu: int) -> list[int]:
        """Sorted INTIDs pending on `cpu`."""
        return sorted(self.pending_sets[cpu])

    def acknowledge(self, cpu: int) -> int | None:
        """Take the enabled pending LPI with the lowest priority value (ties: lowest INTID)."""
        candidates = [intid for intid in self.pending_sets[cpu] if self.config.get(intid, 0) & 1]
        if not candidates:
            return None
        best = min(candidates, key=lambda intid: (self.config[intid] & 0xFC, intid))
        self.pending_sets[cpu].discard(best)
        return best

    def translate(self, device_id: int, event_id: int) -> tuple[int, int]:
        return self.tables.translate(device_id, event_id)

    def translate_batch(self, device_ids, event_ids):
        return self.tables.translate_batch(device_ids, event_ids)

    def translation_status(self, device_id: int, event_id: int):
        return self.tables.translation_status(device_id, event_id)

    def snapshot(self) -> dict:
        return self.tables.snapshot()
