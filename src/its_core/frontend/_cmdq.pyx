"""The command processor: ITS commands from the queue in guest memory.

`CommandProcessor.process` runs the queue from CREADR to CWRITER, reading
each 32-byte command through a bounds-checked window on guest memory and
applying it to the translation core and the LPI state, in native code.  The
field positions come from `its_core.commands.FIELD_ROWS`, the same table the
Python encoders and decoder use, loaded into a C table at import.

A command that fails a check is recorded (queue offset, command number,
error code) and skipped, or, in stall mode, left at CREADR with processing
stopped.  Every check and its error code follow docs/front-end.md.
"""

import numpy as np

from its_core.abi import entries as abi
from its_core.frontend import commands
from its_core.frontend._guest cimport guest_contains, guest_read_u64, guest_write_u64
from its_core.core._core cimport (DEVICE_ID_OUT_OF_RANGE, DEVICE_NOT_MAPPED,
                                  EVENT_ID_OUT_OF_RANGE, INTID_OUT_OF_RANGE, ITS_DISABLED,
                                  LPIS_DISABLED, OK, message_ids)
from its_core.core._core import TranslationStatus
from its_core.core._types cimport uint16_t
from its_core.core._types cimport (CPU_NONE, LPI_FIRST_INTID, device_t, icid_t, ite_icid, ite_intid,
                                   ite_pack)

#: TranslationStatus members by value (no enum construction per doorbell).
_STATUSES = tuple(sorted(TranslationStatus, key=int))

#: Numpy layout of the error log.
ERROR_DTYPE = np.dtype([("offset", np.uint32), ("opcode", np.uint8), ("code", np.uint32)])

cdef uint64_t COMMAND_BYTES = commands.COMMAND_BYTES

# ---------------------------------------------------------------------------
# The field table, from commands.FIELD_ROWS.

cdef enum:
    F_DEVICE_ID = 0
    F_EVENT_ID
    F_INTID
    F_ICID
    F_VALID
    F_ITT_ADDR
    F_NUM_EVENT_BITS
    F_CPU
    F_FROM_CPU
    F_TO_CPU
    NUM_FIELDS
    NUM_OPCODES = 256

_FIELD_IDS = {"device_id": F_DEVICE_ID, "event_id": F_EVENT_ID, "intid": F_INTID,
              "icid": F_ICID, "valid": F_VALID, "itt_addr": F_ITT_ADDR,
              "num_event_bits": F_NUM_EVENT_BITS, "cpu": F_CPU, "from_cpu": F_FROM_CPU,
              "to_cpu": F_TO_CPU}

ctypedef struct field_t:
    uint8_t dword
    uint8_t lsb
    uint8_t shift
    uint8_t bias
    uint64_t mask                   # of the field, right-aligned

cdef field_t FIELDS[NUM_OPCODES][NUM_FIELDS]

for _command, _opcode, _name, _dword, _lsb, _width, _shift, _bias in commands.FIELD_ROWS:
    FIELDS[_opcode][_FIELD_IDS[_name]] = field_t(
        dword=_dword, lsb=_lsb, shift=_shift, bias=_bias,
        mask=(1 << _width) - 1 if _width < 64 else 0xFFFFFFFFFFFFFFFF)


cdef inline uint64_t field(const uint64_t* dwords, uint32_t opcode, int field_id) noexcept nogil:
    """A command parameter's value, as `commands.CommandField.from_wire` gives it."""
    cdef const field_t* spec = &FIELDS[opcode][field_id]
    return (((dwords[spec.dword] >> spec.lsb) & spec.mask) << spec.shift) + spec.bias


cdef uint32_t OP_MOVI = commands.OPCODES["MOVI"]
cdef uint32_t OP_INT = commands.OPCODES["INT"]
cdef uint32_t OP_CLEAR = commands.OPCODES["CLEAR"]
cdef uint32_t OP_SYNC = commands.OPCODES["SYNC"]
cdef uint32_t OP_MAPD = commands.OPCODES["MAPD"]
cdef uint32_t OP_MAPC = commands.OPCODES["MAPC"]
cdef uint32_t OP_MAPTI = commands.OPCODES["MAPTI"]
cdef uint32_t OP_MAPI = commands.OPCODES["MAPI"]
cdef uint32_t OP_INV = commands.OPCODES["INV"]
cdef uint32_t OP_INVALL = commands.OPCODES["INVALL"]
cdef uint32_t OP_MOVALL = commands.OPCODES["MOVALL"]
cdef uint32_t OP_DISCARD = commands.OPCODES["DISCARD"]

cdef uint32_t E_MOVI_UNMAPPED_INTERRUPT = commands.E_ITS_MOVI_UNMAPPED_INTERRUPT
cdef uint32_t E_MOVI_UNMAPPED_COLLECTION = commands.E_ITS_MOVI_UNMAPPED_COLLECTION
cdef uint32_t E_INT_UNMAPPED_INTERRUPT = commands.E_ITS_INT_UNMAPPED_INTERRUPT
cdef uint32_t E_INT_LPIS_DISABLED = commands.E_ITS_INT_LPIS_DISABLED
cdef uint32_t E_CLEAR_UNMAPPED_INTERRUPT = commands.E_ITS_CLEAR_UNMAPPED_INTERRUPT
cdef uint32_t E_MAPD_DEVICE_OOR = commands.E_ITS_MAPD_DEVICE_OOR
cdef uint32_t E_MAPD_ITTSIZE_OOR = commands.E_ITS_MAPD_ITTSIZE_OOR
cdef uint32_t E_MAPC_PROCNUM_OOR = commands.E_ITS_MAPC_PROCNUM_OOR
cdef uint32_t E_MAPC_COLLECTION_OOR = commands.E_ITS_MAPC_COLLECTION_OOR
cdef uint32_t E_MAPTI_UNMAPPED_DEVICE = commands.E_ITS_MAPTI_UNMAPPED_DEVICE
cdef uint32_t E_MAPTI_ID_OOR = commands.E_ITS_MAPTI_ID_OOR
cdef uint32_t E_MAPTI_PHYSICALID_OOR = commands.E_ITS_MAPTI_PHYSICALID_OOR
cdef uint32_t E_MAPTI_ID_ALREADY_MAPPED = commands.E_ITS_MAPTI_ID_ALREADY_MAPPED
cdef uint32_t E_INV_UNMAPPED_INTERRUPT = commands.E_ITS_INV_UNMAPPED_INTERRUPT
cdef uint32_t E_INVALL_UNMAPPED_COLLECTION = commands.E_ITS_INVALL_UNMAPPED_COLLECTION
cdef uint32_t E_MOVALL_PROCNUM_OOR = commands.E_ITS_MOVALL_PROCNUM_OOR
cdef uint32_t E_DISCARD_UNMAPPED_INTERRUPT = commands.E_ITS_DISCARD_UNMAPPED_INTERRUPT
cdef uint32_t E_UNKNOWN_COMMAND = commands.E_ITS_UNKNOWN_COMMAND
cdef uint32_t E_CMD_READ_FAULT = commands.E_ITS_CMD_READ_FAULT

# 64-bit constants are typed globals, never C enum members (an enum holds an
# int: a 64-bit value there is not portable).  Entry layouts come from abi/entries.py.
cdef uint64_t ENTRY_BYTES = abi.ENTRY_BYTES             # DTE, CTE, ITE, level-1 descriptor
cdef uint64_t NO_SLOT = 0xFFFFFFFFFFFFFFFF
cdef uint64_t L2_ADDRESS_MASK = abi.L1_DESCRIPTOR["Address"].mask
cdef uint64_t L1_VALID = abi.L1_DESCRIPTOR["V"].mask


cdef class CommandProcessor:
    """Runs commands against a `TranslationTables` and an `LPIState`."""

    def __init__(self, TranslationTables tables, LPIState lpi, GuestWindow mem,
                 Py_ssize_t max_errors=1 << 20):
        self.tables = tables
        self.lpi = lpi
        self.mem = mem
        self.max_errors = max_errors
        self.clear_errors()
        self.configure(0, 0, 4096, False, 0)

    def configure(self, uint64_t device_table, uint64_t device_table_bytes,
                  uint64_t device_page_bytes, bint device_indirect,
                  uint64_t collection_table_bytes):
        """Describe the device and collection tables (from GITS_BASER0/1)."""
        self.device_table = device_table
        self.device_table_bytes = device_table_bytes
        self.device_page_bytes = device_page_bytes
        self.device_indirect = device_indirect
        self.collection_slots = collection_table_bytes // ENTRY_BYTES

    def clear_errors(self):
        self.log_array = np.zeros(64, ERROR_DTYPE)
        self.error_count = 0
        self.errors_dropped = 0

    @property
    def errors(self):
        """The error log rows recorded so far (a copy)."""
        return self.log_array[:self.error_count].copy()

    cdef int _record(self, uint64_t offset, uint32_t opcode, uint32_t code) except -1:
        if self.error_count >= self.max_errors:
            self.errors_dropped += 1
            return 0
        if self.error_count == self.log_array.shape[0]:
            grown = np.zeros(2 * self.error_count, ERROR_DTYPE)
            grown[:self.error_count] = self.log_array
            self.log_array = grown
        self.log_array[self.error_count] = (offset, opcode, code)
        self.error_count += 1
        return 0

    cdef uint64_t _device_slot(self, uint64_t device_id) noexcept:
        """Guest address of DeviceID's DTE, or NO_SLOT (docs/front-end.md)."""
        cdef uint64_t index, descriptor_addr, descriptor, page, slot
        cdef uint64_t per_page = self.device_page_bytes // ENTRY_BYTES
        if device_id >> self.tables.device_bits:
            return NO_SLOT
        if not self.device_indirect:
            if device_id >= self.device_table_bytes // ENTRY_BYTES:
                return NO_SLOT
            slot = self.device_table + device_id * ENTRY_BYTES
        else:
            index = device_id // per_page
            if index >= self.device_table_bytes // ENTRY_BYTES:
                return NO_SLOT
            descriptor_addr = self.device_table + index * ENTRY_BYTES
            if not guest_contains(self.mem, descriptor_addr, ENTRY_BYTES):
                return NO_SLOT
            descriptor = guest_read_u64(self.mem, descriptor_addr)
            if not descriptor & L1_VALID:
                return NO_SLOT
            page = descriptor & L2_ADDRESS_MASK & ~(self.device_page_bytes - 1)
            slot = page + (device_id % per_page) * ENTRY_BYTES
        if not guest_contains(self.mem, slot, ENTRY_BYTES):
            return NO_SLOT
        return slot

    cdef bint _collection_slot(self, uint64_t icid) noexcept:
        return icid < <uint64_t>self.tables.num_collections and icid < self.collection_slots

    cdef int _drop_device_pending(self, uint64_t device_id) except -1:
        """Clear the pending bits of every event of a device about to be dropped."""
        cdef Py_ssize_t index
        cdef cpu_t cpu
        event_ids, intids, icids = self.tables.events_of(device_id)
        cdef const uint32_t[:] intid_view = intids
        cdef const uint16_t[:] icid_view = icids
        for index in range(intid_view.shape[0]):
            cpu = self.tables.collections[icid_view[index]]
            if cpu != CPU_NONE:
                self.lpi.clear_pending(cpu, intid_view[index])
        return 0

    cdef uint32_t _execute(self, const uint64_t* dwords) except 0xFFFFFFFF:
        """Apply one command; 0 or its error code."""
        cdef uint32_t opcode = dwords[0] & 0xFF
        cdef TranslationTables tables = self.tables
        cdef uint64_t device_id, event_id, icid, intid, cpu_number, target, slot
        cdef device_t* device
        cdef ite_t ite
        cdef int failure
        cdef cpu_t cpu, new_cpu

        if opcode == OP_MAPTI or opcode == OP_MAPI:
            device_id = field(dwords, opcode, F_DEVICE_ID)
            event_id = field(dwords, opcode, F_EVENT_ID)
            icid = field(dwords, opcode, F_ICID)
            intid = field(dwords, opcode, F_INTID) if opcode == OP_MAPTI else event_id
            failure = tables._find_event(device_id, event_id, &device, &ite)
            if failure == DEVICE_ID_OUT_OF_RANGE or failure == DEVICE_NOT_MAPPED:
                return E_MAPTI_UNMAPPED_DEVICE
            if failure == EVENT_ID_OUT_OF_RANGE or not guest_contains(
                    self.mem, device.itt_addr + event_id * ENTRY_BYTES, ENTRY_BYTES):
                return E_MAPTI_ID_OOR
            if intid < LPI_FIRST_INTID or intid >= self.lpi.limit:
                return E_MAPTI_PHYSICALID_OOR
            if ite != 0:
                return E_MAPTI_ID_ALREADY_MAPPED
            if not self._collection_slot(icid):
                return E_MAPC_COLLECTION_OOR
            # Every check of TranslationTables._map_event has passed above.
            tables._add_ite(device, <eventid_t>event_id, ite_pack(<intid_t>intid, <icid_t>icid))
            self.lpi.load_config(<intid_t>intid)
            return 0

        if opcode == OP_MAPD:
            device_id = field(dwords, opcode, F_DEVICE_ID)
            slot = self._device_slot(device_id)
            if slot == NO_SLOT:
                return E_MAPD_DEVICE_OOR
            if field(dwords, opcode, F_VALID) and \
                    field(dwords, opcode, F_NUM_EVENT_BITS) > <uint64_t>tables.event_bits:
                return E_MAPD_ITTSIZE_OOR
            if tables._device(<devid_t>device_id) != NULL:
                self._drop_device_pending(device_id)
            if field(dwords, opcode, F_VALID):
                tables._map_device(device_id, field(dwords, opcode, F_NUM_EVENT_BITS),
                                   field(dwords, opcode, F_ITT_ADDR))
            else:
                tables._unmap_device(device_id)
                guest_write_u64(self.mem, slot, 0)
            return 0

        if opcode == OP_MAPC:
            icid = field(dwords, opcode, F_ICID)
            if not field(dwords, opcode, F_VALID):
                if icid < <uint64_t>tables.num_collections:
                    tables._unmap_collection(icid)
                return 0
            cpu_number = field(dwords, opcode, F_CPU)
            if cpu_number >= <uint64_t>tables.num_cpus:
                return E_MAPC_PROCNUM_OOR
            if not self._collection_slot(icid):
                return E_MAPC_COLLECTION_OOR
            tables._map_collection(icid, cpu_number)
            return 0

        if opcode == OP_SYNC:
            return 0

        if opcode == OP_MOVALL:
            cpu_number = field(dwords, opcode, F_FROM_CPU)
            target = field(dwords, opcode, F_TO_CPU)
            if cpu_number >= <uint64_t>self.lpi.num_cpus or target >= <uint64_t>self.lpi.num_cpus:
                return E_MOVALL_PROCNUM_OOR
            self.lpi.move_all(<cpu_t>cpu_number, <cpu_t>target)
            return 0

        if opcode == OP_INVALL:
            icid = field(dwords, opcode, F_ICID)
            if icid >= <uint64_t>tables.num_collections or tables.collections[icid] == CPU_NONE:
                return E_INVALL_UNMAPPED_COLLECTION
            self.lpi.load_config_many(tables.intids_targeting(tables.collections[icid]))
            return 0

        if (opcode == OP_MOVI or opcode == OP_DISCARD or opcode == OP_INV
                or opcode == OP_INT or opcode == OP_CLEAR):
            device_id = field(dwords, opcode, F_DEVICE_ID)
            event_id = field(dwords, opcode, F_EVENT_ID)
            failure = tables._find_event(device_id, event_id, &device, &ite)
            cpu = CPU_NONE if failure or ite == 0 else tables.collections[ite_icid(ite)]
            if opcode == OP_INV:
                if failure or ite == 0:
                    return E_INV_UNMAPPED_INTERRUPT
                self.lpi.load_config(ite_intid(ite))
                return 0
            if opcode == OP_MOVI:
                if failure or ite == 0:
                    return E_MOVI_UNMAPPED_INTERRUPT
                if cpu == CPU_NONE:
                    return E_MOVI_UNMAPPED_COLLECTION
                icid = field(dwords, opcode, F_ICID)
                if icid >= <uint64_t>tables.num_collections or tables.collections[icid] == CPU_NONE:
                    return E_MOVI_UNMAPPED_COLLECTION
                new_cpu = tables.collections[icid]
                tables._move_event(device_id, event_id, icid)
                self.lpi.move_pending(ite_intid(ite), cpu, new_cpu)
                return 0
            if cpu == CPU_NONE:
                if opcode == OP_DISCARD:
                    return E_DISCARD_UNMAPPED_INTERRUPT
                if opcode == OP_INT:
                    return E_INT_UNMAPPED_INTERRUPT
                return E_CLEAR_UNMAPPED_INTERRUPT
            if opcode == OP_INT:
                if not self.lpi.lpis_enabled[cpu]:
                    return E_INT_LPIS_DISABLED
                if ite_intid(ite) < self.lpi.limit:
                    self.lpi.set_pending(cpu, ite_intid(ite))
                return 0
            self.lpi.clear_pending(cpu, ite_intid(ite))
            if opcode == OP_DISCARD:
                tables._unmap_event(device_id, event_id)
                slot = device.itt_addr + event_id * ENTRY_BYTES
                if guest_contains(self.mem, slot, ENTRY_BYTES):
                    guest_write_u64(self.mem, slot, 0)
            return 0

        return E_UNKNOWN_COMMAND

    def process(self, uint64_t queue_base, uint64_t queue_bytes, uint64_t creadr,
                uint64_t cwriter, bint stall_on_error):
        """Run the queue from `creadr` to `cwriter` (byte offsets).

        Returns ``(creadr, stalled)``: where processing stopped, and whether it
        stopped on a failed command (stall mode).  Offsets that are not inside
        the queue (or not 32-byte multiples) make the queue invalid: nothing
        runs.
        """
        cdef uint64_t dwords[4]
        cdef uint64_t addr, step
        cdef uint32_t code, opcode
        cdef uint64_t budget = queue_bytes // COMMAND_BYTES
        if (queue_bytes == 0 or creadr >= queue_bytes or cwriter >= queue_bytes
                or creadr % COMMAND_BYTES or cwriter % COMMAND_BYTES):
            return creadr, False
        while creadr != cwriter and budget:
            budget -= 1
            addr = queue_base + creadr
            if guest_contains(self.mem, addr, COMMAND_BYTES):
                for step in range(4):
                    dwords[step] = guest_read_u64(self.mem, addr + 8 * step)
                opcode = dwords[0] & 0xFF
                code = self._execute(dwords)
            else:
                opcode = 0
                code = E_CMD_READ_FAULT
            if code:
                self._record(creadr, opcode, code)
                if stall_on_error:
                    return creadr, True
            creadr += COMMAND_BYTES
            if creadr == queue_bytes:
                creadr = 0
        return creadr, False

    def device_slots(self, device_ids):
        """Guest address of each DeviceID's DTE, 2**64 - 1 where it has none."""
        cdef const uint32_t[:] ids = np.ascontiguousarray(device_ids, np.uint32)
        slots = np.empty(ids.shape[0], np.uint64)
        cdef uint64_t[::1] view = slots
        cdef Py_ssize_t index
        for index in range(ids.shape[0]):
            view[index] = self._device_slot(ids[index])
        return slots

    def set_tables(self, TranslationTables tables):
        """Switch to other translation tables (a restore swaps them in)."""
        self.tables = tables

    def drop_device(self, uint64_t device_id):
        """Forget a device, its events and their pending bits (BASER0 Valid=0)."""
        if self.tables._device(<devid_t>device_id) != NULL:
            self._drop_device_pending(device_id)
            self.tables._unmap_device(device_id)

    def msi(self, device_id, event_id):
        """The doorbell: translate one (DeviceID, EventID) and make its LPI
        pending.  Returns a `TranslationStatus` (checks in docs/front-end.md)."""
        cdef uint64_t device, event
        cdef intid_t intid
        cdef cpu_t cpu
        cdef uint8_t status
        message_ids(device_id, event_id, &device, &event)
        if not self.its_enabled:
            status = ITS_DISABLED
        else:
            status = self.tables._translate(<devid_t>device, <eventid_t>event, &intid, &cpu)
            if status == OK:
                if not self.lpi.lpis_enabled[cpu]:
                    status = LPIS_DISABLED
                elif intid >= self.lpi.limit:
                    status = INTID_OUT_OF_RANGE
                else:
                    self.lpi.set_pending(cpu, intid)
        return _STATUSES[status]
