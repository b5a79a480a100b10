"""The command processor: ITS commands from the queue in guest memory.

`CommandProcessor.process` runs the queue from CREADR to CWRITER, reading
each 32-byte command through a bounds-checked window on guest memory and
applying it to the translation core and the LPI state, in native code.
Two C tables are built at import from `its_core.commands`:

* `FIELDS`, the field positions of every command, from `commands.FIELD_ROWS`
  (the same table the Python encoders and decoder use);
* `HANDLERS`, one C function per command number, from `commands.OPCODES`
  (`_route` below; a command without a handler fails the import, and every
  other number runs `_unknown_command`).

GICv4 (an ITS built with ``gic_version`` "4.0" or "4.1").  The virtual
commands have their own field table, `VFIELDS`, one per GICv4 version, from
`commands.DECODE_TABLES` (so VMAPP and VMOVP are read in the version's
layout), and the handler table is chosen per processor (`HANDLERS[version]`):
a GICv3 processor runs no GICv4 command, a GICv4.0 one no VSGI / INVDB.
The virtual handlers check in the reference model's order
(`its_core.frontend.reference_its`, with its error codes,
`commands.GICV4_ERROR_NAMES`), change the core (virtual ITEs, the vPE ->
CPU table) and leave the vPE attributes, VPT bits, doorbells and resident
caches to the redistributors' `VirtualLPIs` (`its_core.frontend.virtual`).
Physical commands meet a virtual ITE through `_find_ite`: a GICv3 processor
sees no interrupt there (the guard for host-made virtual state); a GICv4 one
returns `FOUND_VIRTUAL` and each handler acts as the reference model says.

Each handler checks its command and applies it; the look-ups the commands
share (DeviceID -> device -> ITE -> collection, with each command's own error
codes from `LOOKUP_ERRORS`) are written once, in `_find_ite`.  The device
table is walked by _devtable.pxd, which the restore scan shares.

A command that fails a check is recorded (queue offset, command number,
error code) and skipped, or, in stall mode, left at CREADR with processing
stopped.  Every check and its error code follow docs/front-end.md.
"""

import numpy as np

from its_core.abi import entries as abi
from its_core.frontend import commands
from its_core.validation import check_gic_version
from its_core.frontend._devtable cimport (NO_SLOT, describe_device_table, dte_slot, entry_fields,
                                       entry_fields_t)
from its_core.frontend._guest cimport guest_contains, guest_read_u64, guest_write_u64
from its_core.core._core cimport (DEVICE_ID_OUT_OF_RANGE, DEVICE_NOT_MAPPED,
                                  EVENT_ID_OUT_OF_RANGE, INTID_OUT_OF_RANGE, ITS_DISABLED,
                                  LPIS_DISABLED, OK, message_ids)
from its_core.core._core import TranslationStatus
from its_core.core._types cimport uint16_t, ite_vpe_id
from its_core.core._types cimport (CPU_NONE, LPI_FIRST_INTID, device_t, icid_t, ite_icid, ite_intid,
                                   ite_is_virtual, ite_pack, ite_t)

#: TranslationStatus members by value (no enum construction per doorbell).
_STATUSES = tuple(sorted(TranslationStatus, key=int))

#: Numpy layout of the error log.
ERROR_DTYPE = np.dtype([("offset", np.uint32), ("opcode", np.uint8), ("code", np.uint32)])
#: Command errors a processor records by default; later ones are only counted.
MAX_ERRORS = 1 << 20

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

# GICv4: the parameters of the virtual commands, per GICv4 version (index 0:
# "4.0", 1: "4.1"), from the same declarations `commands.decode` uses.

cdef enum:
    V_DEVICE_ID = 0
    V_EVENT_ID
    V_VPE_ID
    V_VINTID
    V_DBELL_PINTID
    V_DOORBELL_VALID
    V_RDBASE
    V_VPT_ADDR
    V_VPT_SIZE
    V_VCONF_ADDR
    V_DEFAULT_DOORBELL
    V_DEFAULT_DOORBELL_VALID
    V_VALID
    V_PRIORITY
    V_GROUP
    V_ENABLE
    V_CLEAR
    NUM_VFIELDS

_VFIELD_IDS = {"device_id": V_DEVICE_ID, "event_id": V_EVENT_ID, "vpe_id": V_VPE_ID,
               "vintid": V_VINTID, "dbell_pintid": V_DBELL_PINTID,
               "doorbell_valid": V_DOORBELL_VALID, "rdbase": V_RDBASE,
               "vpt_addr": V_VPT_ADDR, "vpt_size": V_VPT_SIZE, "vconf_addr": V_VCONF_ADDR,
               "default_doorbell": V_DEFAULT_DOORBELL,
               "default_doorbell_valid": V_DEFAULT_DOORBELL_VALID, "valid": V_VALID,
               "priority": V_PRIORITY, "group": V_GROUP, "enable": V_ENABLE, "clear": V_CLEAR}
#: Parameters no handler reads (the v4.1 VMAPP's Alloc / PTZ, VMOVP's
#: SequenceNumber / ITSList: accepted and ignored, as in the reference model).
_VFIELDS_IGNORED = {"alloc", "ptz", "sequence_number", "its_list"}

cdef field_t VFIELDS[2][NUM_OPCODES][NUM_VFIELDS]

#: GIC version -> processor version index (HANDLERS' first index).
_VERSION_INDEX = {"3": 0, "4.0": 1, "4.1": 2}

for _version, _table in commands.DECODE_TABLES.items():
    for _opcode, _spec in _table.items():
        if _spec.name not in commands.GICV4_COMMAND_TABLE:
            continue
        for _f in _spec.fields:
            _row = field_t(dword=_f.dword, lsb=_f.field.lsb, shift=_f.shift, bias=_f.bias,
                           mask=(1 << _f.field.width) - 1)
            if _f.name in _VFIELDS_IGNORED:
                continue
            VFIELDS[_VERSION_INDEX[_version] - 1][_opcode][_VFIELD_IDS[_f.name]] = _row
            # _find_ite reads DeviceID / EventID through FIELDS for every command.
            if _f.name in ("device_id", "event_id"):
                FIELDS[_opcode][_FIELD_IDS[_f.name]] = _row


cdef inline uint64_t field(const uint64_t* dwords, uint32_t opcode, int field_id) noexcept nogil:
    """A command parameter's value, as `commands.CommandField.from_wire` gives it."""
    cdef const field_t* spec = &FIELDS[opcode][field_id]
    return (((dwords[spec.dword] >> spec.lsb) & spec.mask) << spec.shift) + spec.bias


cdef inline uint64_t vfield(CommandProcessor processor, const uint64_t* dwords,
                            int field_id) noexcept:
    """A virtual command's parameter in the layout of the processor's GICv4 version."""
    cdef const field_t* spec = &VFIELDS[processor.version_index - 1][dwords[0] & 0xFF][field_id]
    return (((dwords[spec.dword] >> spec.lsb) & spec.mask) << spec.shift) + spec.bias


cdef uint32_t E_MOVI_UNMAPPED_COLLECTION = commands.E_ITS_MOVI_UNMAPPED_COLLECTION
cdef uint32_t E_INT_LPIS_DISABLED = commands.E_ITS_INT_LPIS_DISABLED
cdef uint32_t E_MAPD_DEVICE_OOR = commands.E_ITS_MAPD_DEVICE_OOR
cdef uint32_t E_MAPD_ITTSIZE_OOR = commands.E_ITS_MAPD_ITTSIZE_OOR
cdef uint32_t E_MAPC_PROCNUM_OOR = commands.E_ITS_MAPC_PROCNUM_OOR
cdef uint32_t E_MAPC_COLLECTION_OOR = commands.E_ITS_MAPC_COLLECTION_OOR
cdef uint32_t E_MAPTI_ID_OOR = commands.E_ITS_MAPTI_ID_OOR
cdef uint32_t E_MAPTI_PHYSICALID_OOR = commands.E_ITS_MAPTI_PHYSICALID_OOR
cdef uint32_t E_MAPTI_ID_ALREADY_MAPPED = commands.E_ITS_MAPTI_ID_ALREADY_MAPPED
cdef uint32_t E_INVALL_UNMAPPED_COLLECTION = commands.E_ITS_INVALL_UNMAPPED_COLLECTION
cdef uint32_t E_MOVALL_PROCNUM_OOR = commands.E_ITS_MOVALL_PROCNUM_OOR
cdef uint32_t E_UNKNOWN_COMMAND = commands.E_ITS_UNKNOWN_COMMAND
cdef uint32_t E_CMD_READ_FAULT = commands.E_ITS_CMD_READ_FAULT
# GICv4 (commands.GICV4_ERROR_NAMES).
cdef uint32_t E_VMAPP_VPT_SIZE_OOR = commands.E_ITS_VMAPP_VPT_SIZE_OOR
cdef uint32_t E_VMAPP_RDBASE_OOR = commands.E_ITS_VMAPP_RDBASE_OOR
cdef uint32_t E_VMAPP_VPEID_OOR = commands.E_ITS_VMAPP_VPEID_OOR
cdef uint32_t E_VMAPP_DOORBELL_OOR = commands.E_ITS_VMAPP_DOORBELL_OOR
cdef uint32_t E_VMAPTI_ID_OOR = commands.E_ITS_VMAPTI_ID_OOR
cdef uint32_t E_VMAPTI_VIRTUALID_OOR = commands.E_ITS_VMAPTI_VIRTUALID_OOR
cdef uint32_t E_VMAPTI_ID_ALREADY_MAPPED = commands.E_ITS_VMAPTI_ID_ALREADY_MAPPED
cdef uint32_t E_VMAPTI_DOORBELL_OOR = commands.E_ITS_VMAPTI_DOORBELL_OOR
cdef uint32_t E_VMAPTI_VPEID_OOR = commands.E_ITS_VMAPTI_VPEID_OOR
cdef uint32_t E_VMOVI_DOORBELL_OOR = commands.E_ITS_VMOVI_DOORBELL_OOR
cdef uint32_t E_VMOVI_UNMAPPED_INTERRUPT = commands.E_ITS_VMOVI_UNMAPPED_INTERRUPT
cdef uint32_t E_VMOVI_NOT_VIRTUAL = commands.E_ITS_VMOVI_NOT_VIRTUAL
cdef uint32_t E_VMOVI_UNMAPPED_VPE = commands.E_ITS_VMOVI_UNMAPPED_VPE
cdef uint32_t E_VMOVI_VIRTUALID_OOR = commands.E_ITS_VMOVI_VIRTUALID_OOR
cdef uint32_t E_VMOVP_RDBASE_OOR = commands.E_ITS_VMOVP_RDBASE_OOR
cdef uint32_t E_VMOVP_UNMAPPED_VPE = commands.E_ITS_VMOVP_UNMAPPED_VPE
cdef uint32_t E_VMOVP_DOORBELL_OOR = commands.E_ITS_VMOVP_DOORBELL_OOR
cdef uint32_t E_VINVALL_UNMAPPED_VPE = commands.E_ITS_VINVALL_UNMAPPED_VPE
cdef uint32_t E_INVDB_UNMAPPED_VPE = commands.E_ITS_INVDB_UNMAPPED_VPE
cdef uint32_t E_VSGI_UNMAPPED_VPE = commands.E_ITS_VSGI_UNMAPPED_VPE
cdef uint32_t E_MOVI_VIRTUAL_INTERRUPT = commands.E_ITS_MOVI_VIRTUAL_INTERRUPT
cdef uint64_t NO_DOORBELL = commands.NO_DOORBELL

#: `_find_ite`'s result for a virtual ITE on a GICv4 processor: not an error
#: code (those are 0x01CCRR), the handler decides.
cdef uint32_t FOUND_VIRTUAL = 1

# 64-bit constants are typed globals, never C enum members (an enum holds an
# int: a 64-bit value there is not portable).  Entry layouts come from abi/entries.py.
cdef uint64_t ENTRY_BYTES = abi.ENTRY_BYTES             # DTE, CTE, ITE
cdef entry_fields_t TABLE_FIELDS = entry_fields(abi)    # what the device-table walk reads


# ---------------------------------------------------------------------------
# The look-ups the commands share, each written once.

ctypedef struct lookup_errors_t:    # a command's error code per failed look-up (0: not checked)
    uint32_t unmapped_device        # DeviceID beyond device_bits, or no device mapped there
    uint32_t id_out_of_range        # EventID >= 2**(the device's EventID bits)
    uint32_t unmapped_interrupt     # the EventID has no ITE
    uint32_t unmapped_collection    # the ITE's collection is not mapped to a CPU

#: The codes `_find_ite` reports, per command, in the order it checks
#: (docs/front-end.md).  MAPTI and MAPI need an EventID *without* an ITE, so
#: they check neither the ITE nor its collection; INV does not check the
#: collection.
_LOOKUP_ERROR_CODES = {
    # command: (unmapped device, EventID out of range, no ITE, collection unmapped)
    "MAPTI": (commands.E_ITS_MAPTI_UNMAPPED_DEVICE, commands.E_ITS_MAPTI_ID_OOR, 0, 0),
    "MAPI": (commands.E_ITS_MAPTI_UNMAPPED_DEVICE, commands.E_ITS_MAPTI_ID_OOR, 0, 0),
    "MOVI": (commands.E_ITS_MOVI_UNMAPPED_INTERRUPT,) * 3
            + (commands.E_ITS_MOVI_UNMAPPED_COLLECTION,),
    "DISCARD": (commands.E_ITS_DISCARD_UNMAPPED_INTERRUPT,) * 4,
    "INV": (commands.E_ITS_INV_UNMAPPED_INTERRUPT,) * 3 + (0,),
    "INT": (commands.E_ITS_INT_UNMAPPED_INTERRUPT,) * 4,
    "CLEAR": (commands.E_ITS_CLEAR_UNMAPPED_INTERRUPT,) * 4,
    # GICv4 (numbers from commands.GICV4_OPCODES): VMAPTI and VMAPI need an
    # EventID without an ITE, as MAPTI.
    "VMAPTI": (commands.E_ITS_VMAPTI_UNMAPPED_DEVICE, commands.E_ITS_VMAPTI_ID_OOR, 0, 0),
    "VMAPI": (commands.E_ITS_VMAPTI_UNMAPPED_DEVICE, commands.E_ITS_VMAPTI_ID_OOR, 0, 0),
}

#: `_LOOKUP_ERROR_CODES` by command number (all zero for the other commands).
cdef lookup_errors_t LOOKUP_ERRORS[NUM_OPCODES]

for _command, (_device, _event_id, _ite, _collection) in _LOOKUP_ERROR_CODES.items():
    LOOKUP_ERRORS[commands.OPCODES.get(_command) or commands.GICV4_OPCODES[_command]] = \
        lookup_errors_t(
        unmapped_device=_device, id_out_of_range=_event_id, unmapped_interrupt=_ite,
        unmapped_collection=_collection)


ctypedef struct found_event_t:      # what _find_ite found for a command
    uint64_t device_id              # the command's DeviceID ...
    uint64_t event_id               # ... and EventID
    device_t* device                # the mapped device
    ite_t ite                       # its ITE for EventID (0: none; only MAPTI/MAPI go on then)
    cpu_t cpu                       # the CPU of the ITE's collection (CPU_NONE: unmapped)


cdef inline uint32_t _find_ite(CommandProcessor processor, const uint64_t* dwords,
                               found_event_t* event) except 0xFFFFFFFF:
    """The look-up of every command naming (DeviceID, EventID): device, ITE,
    the CPU of the ITE's collection.  Returns 0, or the command's code from
    LOOKUP_ERRORS for the first check that fails, in this order:
    1. DeviceID below 2**device_bits and a device mapped there;
    2. EventID below 2**(the device's EventID bits);
    3. the EventID has an ITE          (only if the command has a code for it);
    4. the ITE's collection is mapped  (only if the command has a code for it).
    An ITE that is virtual (at step 3): GICv3, the command's "no ITE" code;
    GICv4, FOUND_VIRTUAL (event.ite holds it, event.cpu is CPU_NONE)."""
    cdef uint32_t opcode = dwords[0] & 0xFF
    cdef const lookup_errors_t* errors = &LOOKUP_ERRORS[opcode]
    event.device_id = field(dwords, opcode, F_DEVICE_ID)
    event.event_id = field(dwords, opcode, F_EVENT_ID)
    event.cpu = CPU_NONE
    cdef int failure = processor.tables._find_event(event.device_id, event.event_id,
                                                    &event.device, &event.ite)
    if failure == DEVICE_ID_OUT_OF_RANGE or failure == DEVICE_NOT_MAPPED:
        return errors.unmapped_device
    if failure == EVENT_ID_OUT_OF_RANGE:
        return errors.id_out_of_range
    if not errors.unmapped_interrupt:
        return 0
    if event.ite == 0:
        return errors.unmapped_interrupt
    if ite_is_virtual(event.ite):
        # A GICv3 ITS has no virtual interrupts: a virtual ITE that host code
        # put in its tables is not an interrupt its physical commands act on.
        return FOUND_VIRTUAL if processor.version_index else errors.unmapped_interrupt
    event.cpu = processor.tables.collections[ite_icid(event.ite)]
    if event.cpu == CPU_NONE and errors.unmapped_collection:
        return errors.unmapped_collection
    return 0


cdef inline uint64_t _ite_slot(CommandProcessor processor, const found_event_t* event) noexcept:
    """Guest address of the event's ITE in its device's ITT (ITT + EventID x
    the ITT entry size, GITS_TYPER.ITT_entry_size: 8 bytes on a GICv3 ITS, 16
    on a GICv4 one; the whole entry inside guest memory), or NO_SLOT."""
    cdef uint64_t slot = event.device.itt_addr + event.event_id * processor.ite_bytes
    return slot if guest_contains(processor.mem, slot, processor.ite_bytes) else NO_SLOT


cdef inline cpu_t _collection_cpu(TranslationTables tables, uint64_t icid) noexcept:
    """The CPU collection ICID maps to; CPU_NONE if it is unmapped or ICID >= num_collections."""
    if icid >= <uint64_t>tables.num_collections:
        return CPU_NONE
    return tables.collections[icid]


# ---------------------------------------------------------------------------
# One handler per command: it checks the command (first failure wins) and
# applies it.  Each returns 0 or the error code; 0xFFFFFFFF means a Python
# exception is set (MemoryError from the core).

ctypedef uint32_t (*command_handler_t)(CommandProcessor, const uint64_t*) except 0xFFFFFFFF


cdef uint32_t _mapd(CommandProcessor processor, const uint64_t* dwords) except 0xFFFFFFFF:
    """MAPD DeviceID, ITT_addr, Size, V.  Checks: the DeviceID has a
    device-table slot (E_ITS_MAPD_DEVICE_OOR); V = 1 and Size + 1 > event_bits
    (E_ITS_MAPD_ITTSIZE_OOR).  Drops the device if mapped (its events and their
    pending bits); V = 1 maps it, V = 0 writes a zero DTE at its slot."""
    cdef uint32_t opcode = dwords[0] & 0xFF
    cdef TranslationTables tables = processor.tables
    cdef uint64_t device_id = field(dwords, opcode, F_DEVICE_ID)
    cdef uint64_t num_event_bits = field(dwords, opcode, F_NUM_EVENT_BITS)
    cdef bint valid = field(dwords, opcode, F_VALID)
    cdef uint64_t slot = processor._device_slot(device_id)
    if slot == NO_SLOT:
        return E_MAPD_DEVICE_OOR
    if valid and num_event_bits > <uint64_t>tables.event_bits:
        return E_MAPD_ITTSIZE_OOR
    if tables._device(<devid_t>device_id) != NULL:
        processor._drop_device_pending(device_id)
    if valid:
        tables._map_device(device_id, num_event_bits, field(dwords, opcode, F_ITT_ADDR))
    else:
        tables._unmap_device(device_id)
        guest_write_u64(processor.mem, slot, 0)
    return 0


cdef uint32_t _mapc(CommandProcessor processor, const uint64_t* dwords) except 0xFFFFFFFF:
    """MAPC ICID, RDbase, V.  V = 0: unmap ICID (no checks, no error when
    unmapped).  V = 1 checks: CPU < num_cpus (E_ITS_MAPC_PROCNUM_OOR); ICID
    has a collection-table slot (E_ITS_MAPC_COLLECTION_OOR); then routes ICID
    to the CPU."""
    cdef uint32_t opcode = dwords[0] & 0xFF
    cdef TranslationTables tables = processor.tables
    cdef uint64_t icid = field(dwords, opcode, F_ICID)
    cdef uint64_t cpu_number
    if not field(dwords, opcode, F_VALID):
        if icid < <uint64_t>tables.num_collections:
            tables._unmap_collection(icid)
        return 0
    cpu_number = field(dwords, opcode, F_CPU)
    if cpu_number >= <uint64_t>tables.num_cpus:
        return E_MAPC_PROCNUM_OOR
    if not processor._collection_slot(icid):
        return E_MAPC_COLLECTION_OOR
    tables._map_collection(icid, cpu_number)
    return 0


cdef inline uint32_t _map_interrupt(CommandProcessor processor, const uint64_t* dwords,
                                    uint64_t intid) except 0xFFFFFFFF:
    """MAPTI and MAPI with pINTID `intid`.  Checks: _find_ite (device mapped:
    E_ITS_MAPTI_UNMAPPED_DEVICE; EventID in range: E_ITS_MAPTI_ID_OOR); the
    whole ITT entry inside guest memory (E_ITS_MAPTI_ID_OOR); 8192 <= pINTID <
    LPI limit (E_ITS_MAPTI_PHYSICALID_OOR); EventID not mapped yet
    (E_ITS_MAPTI_ID_ALREADY_MAPPED); ICID has a collection-table slot
    (E_ITS_MAPC_COLLECTION_OOR).  Then maps and loads the LPI's config byte."""
    cdef found_event_t event
    cdef uint64_t icid = field(dwords, dwords[0] & 0xFF, F_ICID)
    cdef uint32_t code = _find_ite(processor, dwords, &event)
    if code:
        return code
    if _ite_slot(processor, &event) == NO_SLOT:
        return E_MAPTI_ID_OOR
    if intid < LPI_FIRST_INTID or intid >= processor.lpi.limit:
        return E_MAPTI_PHYSICALID_OOR
    if event.ite != 0:
        return E_MAPTI_ID_ALREADY_MAPPED
    if not processor._collection_slot(icid):
        return E_MAPC_COLLECTION_OOR
    # Every check of TranslationTables._map_event has passed above.
    processor.tables._add_ite(event.device, <eventid_t>event.event_id,
                              ite_pack(<intid_t>intid, <icid_t>icid))
    processor.lpi.load_config(<intid_t>intid)
    return 0


cdef uint32_t _mapti(CommandProcessor processor, const uint64_t* dwords) except 0xFFFFFFFF:
    """MAPTI DeviceID, EventID, pINTID, ICID (checks: _map_interrupt)."""
    return _map_interrupt(processor, dwords, field(dwords, dwords[0] & 0xFF, F_INTID))


cdef uint32_t _mapi(CommandProcessor processor, const uint64_t* dwords) except 0xFFFFFFFF:
    """MAPI DeviceID, EventID, ICID: MAPTI with pINTID = EventID (checks: _map_interrupt)."""
    return _map_interrupt(processor, dwords, field(dwords, dwords[0] & 0xFF, F_EVENT_ID))


cdef uint32_t _movi(CommandProcessor processor, const uint64_t* dwords) except 0xFFFFFFFF:
    """MOVI DeviceID, EventID, ICID.  Checks: _find_ite (an ITE:
    E_ITS_MOVI_UNMAPPED_INTERRUPT; its collection mapped:
    E_ITS_MOVI_UNMAPPED_COLLECTION); the new ICID < num_collections and mapped
    (E_ITS_MOVI_UNMAPPED_COLLECTION).  Sets the new ICID and moves a pending
    bit from the old CPU to the new one."""
    cdef found_event_t event
    cdef uint64_t icid = field(dwords, dwords[0] & 0xFF, F_ICID)
    cdef uint32_t code = _find_ite(processor, dwords, &event)
    if code == FOUND_VIRTUAL:
        return E_MOVI_VIRTUAL_INTERRUPT                  # QEMU: "ITE is not physical"
    if code:
        return code
    cdef cpu_t new_cpu = _collection_cpu(processor.tables, icid)
    if new_cpu == CPU_NONE:
        return E_MOVI_UNMAPPED_COLLECTION
    processor.tables._move_event(event.device_id, event.event_id, icid)
    processor.lpi.move_pending(ite_intid(event.ite), event.cpu, new_cpu)
    return 0


cdef uint32_t _discard(CommandProcessor processor, const uint64_t* dwords) except 0xFFFFFFFF:
    """DISCARD DeviceID, EventID.  Checks: _find_ite (an ITE whose collection
    is mapped, else E_ITS_DISCARD_UNMAPPED_INTERRUPT).  Clears the pending bit
    on the target CPU, unmaps the event and writes a zero ITE at ITT + EventID
    x the ITT entry size (8 or 16 bytes, when inside guest memory).  GICv4, a
    virtual ITE: its vLPI is cleared as CLEAR does and the ITE always removed
    (the architecture; QEMU 7.2 keeps it when the vPE is unmapped, digest C1)."""
    cdef found_event_t event
    cdef uint32_t code = _find_ite(processor, dwords, &event)
    if code == FOUND_VIRTUAL:
        processor.virtual.take(ite_vpe_id(event.ite), ite_intid(event.ite))
    elif code:
        return code
    else:
        processor.lpi.clear_pending(event.cpu, ite_intid(event.ite))
    processor.tables._unmap_event(event.device_id, event.event_id)
    cdef uint64_t slot = _ite_slot(processor, &event)
    if slot != NO_SLOT:
        guest_write_u64(processor.mem, slot, 0)
        if processor.ite_bytes == 16:
            guest_write_u64(processor.mem, slot + 8, 0)
    return 0


cdef uint32_t _inv(CommandProcessor processor, const uint64_t* dwords) except 0xFFFFFFFF:
    """INV DeviceID, EventID.  Checks: _find_ite (an ITE, else
    E_ITS_INV_UNMAPPED_INTERRUPT; its collection is not checked).  Loads the
    LPI's config byte.  GICv4, a virtual ITE: no state (vLPI configuration is
    read from guest memory when used); the signalling looks again
    (`VirtualLPIs.invalidate_configuration`)."""
    cdef found_event_t event
    cdef uint32_t code = _find_ite(processor, dwords, &event)
    if code == FOUND_VIRTUAL:
        processor.virtual.invalidate_configuration(ite_vpe_id(event.ite))
        return 0
    if code:
        return code
    processor.lpi.load_config(ite_intid(event.ite))
    return 0


cdef uint32_t _int(CommandProcessor processor, const uint64_t* dwords) except 0xFFFFFFFF:
    """INT DeviceID, EventID.  Checks: _find_ite (an ITE whose collection is
    mapped, else E_ITS_INT_UNMAPPED_INTERRUPT); the target CPU has LPIs
    enabled (E_ITS_INT_LPIS_DISABLED).  Sets the LPI pending on the target CPU
    (an INTID at or above the LPI limit: nothing, no error).  GICv4, a
    virtual ITE: its vLPI is delivered as a translation would (dropped
    silently when the vPE is unmapped or the vINTID out of range)."""
    cdef found_event_t event
    cdef uint32_t code = _find_ite(processor, dwords, &event)
    if code == FOUND_VIRTUAL:
        processor.virtual.deliver(ite_vpe_id(event.ite), ite_intid(event.ite),
                                  processor.tables._doorbell_of(<devid_t>event.device_id,
                                                                <eventid_t>event.event_id))
        return 0
    if code:
        return code
    if not processor.lpi.lpis_enabled[event.cpu]:
        return E_INT_LPIS_DISABLED
    if ite_intid(event.ite) < processor.lpi.limit:
        processor.lpi.set_pending(event.cpu, ite_intid(event.ite))
    return 0


cdef uint32_t _clear(CommandProcessor processor, const uint64_t* dwords) except 0xFFFFFFFF:
    """CLEAR DeviceID, EventID.  Checks: _find_ite (an ITE whose collection
    is mapped, else E_ITS_CLEAR_UNMAPPED_INTERRUPT).  Clears the LPI's pending
    bit on the target CPU.  GICv4, a virtual ITE: clears its vLPI (VPT bit or
    resident cache; never a doorbell)."""
    cdef found_event_t event
    cdef uint32_t code = _find_ite(processor, dwords, &event)
    if code == FOUND_VIRTUAL:
        processor.virtual.take(ite_vpe_id(event.ite), ite_intid(event.ite))
        return 0
    if code:
        return code
    processor.lpi.clear_pending(event.cpu, ite_intid(event.ite))
    return 0


cdef uint32_t _invall(CommandProcessor processor, const uint64_t* dwords) except 0xFFFFFFFF:
    """INVALL ICID.  Checks: ICID < num_collections and mapped
    (E_ITS_INVALL_UNMAPPED_COLLECTION).  Loads the config byte of every mapped
    event whose collection targets that CPU."""
    cdef TranslationTables tables = processor.tables
    cdef cpu_t cpu = _collection_cpu(tables, field(dwords, dwords[0] & 0xFF, F_ICID))
    if cpu == CPU_NONE:
        return E_INVALL_UNMAPPED_COLLECTION
    processor.lpi.load_config_many(tables.intids_targeting(cpu))
    return 0


cdef uint32_t _movall(CommandProcessor processor, const uint64_t* dwords) except 0xFFFFFFFF:
    """MOVALL RDbase1, RDbase2.  Checks: both CPUs < num_cpus
    (E_ITS_MOVALL_PROCNUM_OOR).  Moves every pending bit of the first CPU to
    the second (see LPIState.move_all)."""
    cdef uint32_t opcode = dwords[0] & 0xFF
    cdef uint64_t from_cpu = field(dwords, opcode, F_FROM_CPU)
    cdef uint64_t to_cpu = field(dwords, opcode, F_TO_CPU)
    if from_cpu >= <uint64_t>processor.lpi.num_cpus or to_cpu >= <uint64_t>processor.lpi.num_cpus:
        return E_MOVALL_PROCNUM_OOR
    processor.lpi.move_all(<cpu_t>from_cpu, <cpu_t>to_cpu)
    return 0


cdef uint32_t _sync(CommandProcessor processor, const uint64_t* dwords) except 0xFFFFFFFF:
    """SYNC RDbase.  No checks, no effect: processing is synchronous."""
    return 0


# ---------------------------------------------------------------------------
# GICv4 virtual commands (routed for a GICv4 processor only).  Checks and
# codes: the reference model's (its_core.frontend.reference_its docstring).

cdef inline bint _valid_doorbell(CommandProcessor processor, uint64_t pintid) noexcept:
    """1023 (no doorbell) or an LPI number below 2**intid_bits (digest C8)."""
    return pintid == NO_DOORBELL or (
        pintid >= LPI_FIRST_INTID and not (pintid >> processor.tables.intid_bits))


cdef inline bint _vpe_slot(CommandProcessor processor, uint64_t vpe_id) noexcept:
    """Whether vPEID has an entry in the vPE table GITS_BASER2 describes (flat
    or two-level, entries of BASER2.Entry_Size bytes -- 8 on GICv4.0, 32 on
    GICv4.1 -- wholly inside guest memory; none with Valid = 0).  The table is
    described with 8-byte slots, so an entry of k x 8 bytes is slot vPEID x k
    of it (the same level-1 index and in-page offset); its last bytes are
    checked here."""
    cdef uint64_t scale = processor.vpe_entry_bytes // 8
    cdef uint64_t slot = dte_slot(processor.mem, &processor.vpe_table, vpe_id * scale)
    return slot != NO_SLOT and guest_contains(processor.mem, slot, processor.vpe_entry_bytes)


cdef uint32_t _vmapp(CommandProcessor processor, const uint64_t* dwords) except 0xFFFFFFFF:
    """VMAPP (the v4.0 or v4.1 layout).  Checks: VPT_size <= intid_bits - 1
    (E_ITS_VMAPP_VPT_SIZE_OOR, also for V = 0, C4); V = 1: RDbase < CPUs
    (E_ITS_VMAPP_RDBASE_OOR, C3); v4.1 V = 1: Default_Doorbell 1023 or an LPI
    (E_ITS_VMAPP_DOORBELL_OOR); the vPEID has a vPE table slot
    (E_ITS_VMAPP_VPEID_OOR).  V = 0 unmaps the vPE (ITEs stay, C1); V = 1 maps
    or overwrites it (C2).  Alloc and PTZ are ignored."""
    cdef bint v41 = processor.version_index == 2
    cdef uint64_t vpe_id = vfield(processor, dwords, V_VPE_ID)
    cdef uint64_t rdbase = vfield(processor, dwords, V_RDBASE)
    cdef uint64_t vpt_size = vfield(processor, dwords, V_VPT_SIZE)
    cdef bint valid = vfield(processor, dwords, V_VALID)
    cdef uint64_t default_doorbell = (vfield(processor, dwords, V_DEFAULT_DOORBELL) if v41
                                      else NO_DOORBELL)
    if vpt_size > <uint64_t>(processor.tables.intid_bits - 1):
        return E_VMAPP_VPT_SIZE_OOR
    if valid and rdbase >= <uint64_t>processor.tables.num_cpus:
        return E_VMAPP_RDBASE_OOR
    if valid and not _valid_doorbell(processor, default_doorbell):
        return E_VMAPP_DOORBELL_OOR
    if not _vpe_slot(processor, vpe_id):
        return E_VMAPP_VPEID_OOR
    if not valid:
        processor.tables._unmap_vpe(vpe_id)
        processor.virtual.unmap_vpe(vpe_id)
        return 0
    processor.tables._map_vpe(vpe_id, rdbase)
    processor.virtual.map_vpe(vpe_id, rdbase, vfield(processor, dwords, V_VPT_ADDR), vpt_size,
                              vfield(processor, dwords, V_VCONF_ADDR) if v41 else 0,
                              default_doorbell)
    return 0


cdef inline uint32_t _map_virtual(CommandProcessor processor, const uint64_t* dwords,
                                  uint64_t vintid) except 0xFFFFFFFF:
    """VMAPTI and VMAPI with vINTID `vintid`.  Checks: _find_ite (device mapped:
    E_ITS_VMAPTI_UNMAPPED_DEVICE; EventID in range: E_ITS_VMAPTI_ID_OOR); the
    whole ITT entry inside guest memory (E_ITS_VMAPTI_ID_OOR); vINTID an LPI
    below 2**intid_bits (E_ITS_VMAPTI_VIRTUALID_OOR); the doorbell 1023 or such
    an LPI (E_ITS_VMAPTI_DOORBELL_OOR, C8); no ITE, physical or virtual
    (E_ITS_VMAPTI_ID_ALREADY_MAPPED, C7); the vPEID has a vPE table slot
    (E_ITS_VMAPTI_VPEID_OOR).  The vPE need not be mapped (C5)."""
    cdef found_event_t event
    cdef uint64_t vpe_id = vfield(processor, dwords, V_VPE_ID)
    cdef uint64_t doorbell = vfield(processor, dwords, V_DBELL_PINTID)
    cdef uint32_t code = _find_ite(processor, dwords, &event)
    if code:
        return code
    if _ite_slot(processor, &event) == NO_SLOT:
        return E_VMAPTI_ID_OOR
    if vintid < LPI_FIRST_INTID or vintid >> processor.tables.intid_bits:
        return E_VMAPTI_VIRTUALID_OOR
    if not _valid_doorbell(processor, doorbell):
        return E_VMAPTI_DOORBELL_OOR
    if event.ite != 0:
        return E_VMAPTI_ID_ALREADY_MAPPED
    if not _vpe_slot(processor, vpe_id):
        return E_VMAPTI_VPEID_OOR
    # Every check of TranslationTables._map_virtual_event has passed above.
    processor.tables._map_virtual_event(event.device_id, event.event_id, vintid, vpe_id,
                                        doorbell)
    return 0


cdef uint32_t _vmapti(CommandProcessor processor, const uint64_t* dwords) except 0xFFFFFFFF:
    """VMAPTI DeviceID, EventID, vPEID, vINTID, Dbell_pINTID (checks: _map_virtual)."""
    return _map_virtual(processor, dwords, vfield(processor, dwords, V_VINTID))


cdef uint32_t _vmapi(CommandProcessor processor, const uint64_t* dwords) except 0xFFFFFFFF:
    """VMAPI DeviceID, EventID, vPEID, Dbell_pINTID: VMAPTI with vINTID = EventID."""
    return _map_virtual(processor, dwords, vfield(processor, dwords, V_EVENT_ID))


cdef uint32_t _vmovi(CommandProcessor processor, const uint64_t* dwords) except 0xFFFFFFFF:
    """VMOVI DeviceID, EventID, vPEID, Dbell_pINTID, D.  Checks: D = 1 and the
    doorbell neither 1023 nor an LPI (E_ITS_VMOVI_DOORBELL_OOR, before any
    look-up, C8); an ITE (E_ITS_VMOVI_UNMAPPED_INTERRUPT); a virtual one
    (E_ITS_VMOVI_NOT_VIRTUAL); the old and the new vPE mapped
    (E_ITS_VMOVI_UNMAPPED_VPE); vINTID below both vPEs' 2**(VPT_size + 1)
    (E_ITS_VMOVI_VIRTUALID_OOR, C6).  Moves the ITE (D = 0 keeps its doorbell,
    C9) and a pending vLPI unless both vPEs share a VPT (C10, C11)."""
    cdef TranslationTables tables = processor.tables
    cdef uint64_t device_id = vfield(processor, dwords, V_DEVICE_ID)
    cdef uint64_t event_id = vfield(processor, dwords, V_EVENT_ID)
    cdef uint64_t new_vpe = vfield(processor, dwords, V_VPE_ID)
    cdef uint64_t doorbell = vfield(processor, dwords, V_DBELL_PINTID)
    cdef bint set_doorbell = vfield(processor, dwords, V_DOORBELL_VALID)
    cdef device_t* device
    cdef ite_t ite = 0
    if set_doorbell and not _valid_doorbell(processor, doorbell):
        return E_VMOVI_DOORBELL_OOR
    if tables._find_event(device_id, event_id, &device, &ite) or ite == 0:
        return E_VMOVI_UNMAPPED_INTERRUPT
    if not ite_is_virtual(ite):
        return E_VMOVI_NOT_VIRTUAL
    cdef uint64_t old_vpe = ite_vpe_id(ite)
    cdef uint64_t vintid = ite_intid(ite)
    virtual = processor.virtual
    if not virtual.is_mapped(old_vpe) or not virtual.is_mapped(new_vpe):
        return E_VMOVI_UNMAPPED_VPE
    if (vintid < LPI_FIRST_INTID or vintid >= <uint64_t>virtual.vintid_limit(old_vpe)
            or vintid >= <uint64_t>virtual.vintid_limit(new_vpe)):
        return E_VMOVI_VIRTUALID_OOR
    if not set_doorbell:
        doorbell = tables._doorbell_of(<devid_t>device_id, <eventid_t>event_id)
    tables._move_virtual_event(device_id, event_id, new_vpe, doorbell, set_doorbell)
    virtual.move(old_vpe, new_vpe, vintid, doorbell)
    return 0


cdef uint32_t _vmovp(CommandProcessor processor, const uint64_t* dwords) except 0xFFFFFFFF:
    """VMOVP (v4.0 or v4.1 layout).  Checks: RDbase < CPUs
    (E_ITS_VMOVP_RDBASE_OOR); the vPE mapped (E_ITS_VMOVP_UNMAPPED_VPE); v4.1
    DB = 1: Default_Doorbell 1023 or an LPI (E_ITS_VMOVP_DOORBELL_OOR).  Only
    the vPE's RD (and v4.1 DB = 1: its default doorbell) changes (C15, C16);
    SequenceNumber and ITSList are ignored (GITS_TYPER.VMOVP = 1)."""
    cdef uint64_t vpe_id = vfield(processor, dwords, V_VPE_ID)
    cdef uint64_t rdbase = vfield(processor, dwords, V_RDBASE)
    cdef bint set_default = (processor.version_index == 2
                             and vfield(processor, dwords, V_DEFAULT_DOORBELL_VALID))
    cdef uint64_t default_doorbell = vfield(processor, dwords, V_DEFAULT_DOORBELL)
    if rdbase >= <uint64_t>processor.tables.num_cpus:
        return E_VMOVP_RDBASE_OOR
    if not processor.virtual.is_mapped(vpe_id):
        return E_VMOVP_UNMAPPED_VPE
    if set_default and not _valid_doorbell(processor, default_doorbell):
        return E_VMOVP_DOORBELL_OOR
    processor.tables._map_vpe(vpe_id, rdbase)
    processor.virtual.move_vpe(vpe_id, rdbase, default_doorbell if set_default else None)
    return 0


cdef uint32_t _vsync(CommandProcessor processor, const uint64_t* dwords) except 0xFFFFFFFF:
    """VSYNC vPEID.  No checks, no effect (any vPEID, C18): processing is synchronous."""
    return 0


cdef uint32_t _vinvall(CommandProcessor processor, const uint64_t* dwords) except 0xFFFFFFFF:
    """VINVALL vPEID.  Checks: the vPE mapped (E_ITS_VINVALL_UNMAPPED_VPE).  No
    state changes: vLPI configuration is never cached (C17); the signalling
    looks again (`VirtualLPIs.invalidate_configuration`)."""
    cdef uint64_t vpe_id = vfield(processor, dwords, V_VPE_ID)
    if not processor.virtual.is_mapped(vpe_id):
        return E_VINVALL_UNMAPPED_VPE
    processor.virtual.invalidate_configuration(vpe_id)
    return 0


cdef uint32_t _invdb(CommandProcessor processor, const uint64_t* dwords) except 0xFFFFFFFF:
    """INVDB vPEID (GICv4.1).  Checks: the vPE mapped (E_ITS_INVDB_UNMAPPED_VPE).
    Reloads the default doorbell's configuration byte (as INV for an LPI)."""
    cdef uint64_t vpe_id = vfield(processor, dwords, V_VPE_ID)
    if not processor.virtual.is_mapped(vpe_id):
        return E_INVDB_UNMAPPED_VPE
    cdef uint64_t doorbell = processor.virtual.default_doorbell_of(vpe_id)
    if doorbell != NO_DOORBELL:
        processor.lpi.load_config(<intid_t>doorbell)
    return 0


cdef uint32_t _vsgi(CommandProcessor processor, const uint64_t* dwords) except 0xFFFFFFFF:
    """VSGI vPEID, vINTID, Priority, Group, Enable, Clear (GICv4.1).  Checks:
    the vPE mapped (E_ITS_VSGI_UNMAPPED_VPE).  Clear = 1 clears the vSGI's
    pending bit only; Clear = 0 sets its priority, group and enable only."""
    cdef uint64_t vpe_id = vfield(processor, dwords, V_VPE_ID)
    if not processor.virtual.is_mapped(vpe_id):
        return E_VSGI_UNMAPPED_VPE
    processor.virtual.vsgi(vpe_id, vfield(processor, dwords, V_VINTID),
                           vfield(processor, dwords, V_PRIORITY),
                           vfield(processor, dwords, V_GROUP),
                           vfield(processor, dwords, V_ENABLE),
                           bool(vfield(processor, dwords, V_CLEAR)))
    return 0


cdef uint32_t _unknown_command(CommandProcessor processor,
                               const uint64_t* dwords) except 0xFFFFFFFF:
    """Any command number commands.OPCODES does not list: E_ITS_UNKNOWN_COMMAND."""
    return E_UNKNOWN_COMMAND


#: The handler of every command number, per GIC version (index
#: `_VERSION_INDEX`: 0 GICv3, 1 GICv4.0, 2 GICv4.1).
cdef command_handler_t HANDLERS[3][NUM_OPCODES]

for _index in range(3):
    for _opcode in range(NUM_OPCODES):
        HANDLERS[_index][_opcode] = _unknown_command


cdef int _route(str mnemonic, command_handler_t handler) except -1:
    """Run `handler` for the command number commands.OPCODES gives `mnemonic`
    (a physical command: every GIC version)."""
    opcode = commands.OPCODES.get(mnemonic)
    if opcode is None or HANDLERS[0][opcode] != _unknown_command:
        raise ImportError(f"_cmdq: {mnemonic} is not a command of its_core.commands, "
                          f"or has two handlers")
    for index in range(3):
        HANDLERS[index][opcode] = handler
    return 0


cdef int _route_virtual(str mnemonic, command_handler_t handler) except -1:
    """Run `handler` for GICv4 command `mnemonic` on the GIC versions whose
    decode table (commands.DECODE_TABLES) has it (in either layout)."""
    opcode = commands.GICV4_OPCODES.get(mnemonic)
    if opcode is None:
        raise ImportError(f"_cmdq: {mnemonic} is not a GICv4 command of its_core.commands")
    for version, index in _VERSION_INDEX.items():
        spec = commands.DECODE_TABLES[version].get(opcode)
        if spec is not None and spec.mnemonic == mnemonic:
            if HANDLERS[index][opcode] != _unknown_command:
                raise ImportError(f"_cmdq: {mnemonic} has two handlers")
            HANDLERS[index][opcode] = handler
    return 0


_route("MAPD", _mapd)
_route("MAPC", _mapc)
_route("MAPTI", _mapti)
_route("MAPI", _mapi)
_route("MOVI", _movi)
_route("DISCARD", _discard)
_route("INV", _inv)
_route("INT", _int)
_route("CLEAR", _clear)
_route("INVALL", _invall)
_route("MOVALL", _movall)
_route("SYNC", _sync)
_route_virtual("VMAPP", _vmapp)
_route_virtual("VMAPTI", _vmapti)
_route_virtual("VMAPI", _vmapi)
_route_virtual("VMOVI", _vmovi)
_route_virtual("VMOVP", _vmovp)
_route_virtual("VSYNC", _vsync)
_route_virtual("VINVALL", _vinvall)
_route_virtual("INVDB", _invdb)
_route_virtual("VSGI", _vsgi)

_unhandled = [f"{spec.name} (GIC {version})" for version, index in _VERSION_INDEX.items()
              for opcode, spec in commands.DECODE_TABLES[version].items()
              if HANDLERS[index][opcode] == _unknown_command]
if _unhandled:
    raise ImportError(f"_cmdq: no handler for {', '.join(_unhandled)} (its_core.commands)")


cdef class CommandProcessor:
    """Runs commands against a `TranslationTables` and an `LPIState`."""

    def __init__(self, TranslationTables tables, LPIState lpi, GuestWindow mem,
                 Py_ssize_t max_errors=MAX_ERRORS, *, gic_version="3", virtual=None):
        check_gic_version(gic_version)
        if (virtual is None) != (gic_version == "3"):
            raise ValueError("a GICv4 command processor needs the redistributors' VirtualLPIs "
                             "(`virtual`), a GICv3 one none")
        self.tables = tables
        self.ite_bytes = 8 if gic_version == "3" else 16
        self.vpe_entry_bytes = 32 if gic_version == "4.1" else 8
        self.lpi = lpi
        self.mem = mem
        self.max_errors = max_errors
        self.version_index = _VERSION_INDEX[gic_version]
        self.virtual = virtual
        self.clear_errors()
        self.configure(0, 0, 4096, False, 0)
        self.configure_vpe_table(0, 0, 4096, False)

    def configure(self, uint64_t device_table, uint64_t device_table_bytes,
                  uint64_t device_page_bytes, bint device_indirect,
                  uint64_t collection_table_bytes):
        """Describe the device and collection tables (from GITS_BASER0/1)."""
        self.device_table = describe_device_table(&TABLE_FIELDS, device_table, device_table_bytes,
                                                  device_page_bytes, device_indirect)
        self.collection_slots = collection_table_bytes // ENTRY_BYTES

    def configure_vpe_table(self, uint64_t table, uint64_t table_bytes, uint64_t page_bytes,
                            bint indirect):
        """Describe the vPE table (from GITS_BASER2; `table_bytes` 0 when it is
        not Valid: no vPEID has a slot).  Walked as the device table is."""
        self.vpe_table = describe_device_table(&TABLE_FIELDS, table, table_bytes, page_bytes,
                                               indirect)

    @property
    def gic_version(self):
        """The GIC version whose commands this processor runs."""
        return {index: version for version, index in _VERSION_INDEX.items()}[self.version_index]

    def clear_errors(self):
        self.log_array = np.zeros(64, ERROR_DTYPE)
        self.error_count = 0
        self.errors_dropped = 0

    @property
    def errors(self):
        """The error log rows recorded so far (a copy)."""
        return self.log_array[:self.error_count].copy()

    def load_errors(self, offsets, opcodes, codes, Py_ssize_t dropped):
        """Replace the error log by these rows (equal-length arrays, at most
        `max_errors` of them) and `dropped` errors counted but not recorded
        (only when the log is full), as a host snapshot restores it.
        ValueError otherwise; the log is then unchanged."""
        offsets, opcodes, codes = np.asarray(offsets), np.asarray(opcodes), np.asarray(codes)
        cdef Py_ssize_t count = offsets.shape[0] if offsets.ndim == 1 else -1
        if count < 0 or opcodes.shape != (count,) or codes.shape != (count,):
            raise ValueError("offsets, opcodes and codes must be 1-D arrays of one length")
        if count > self.max_errors:
            raise ValueError(f"{count} errors do not fit a log of {self.max_errors}")
        if dropped < 0 or (dropped and count < self.max_errors):
            raise ValueError(f"{dropped} dropped errors with {count} of {self.max_errors} "
                             "recorded: errors are only dropped once the log is full")
        log = np.zeros(max(64, count), ERROR_DTYPE)
        log["offset"][:count] = offsets
        log["opcode"][:count] = opcodes
        log["code"][:count] = codes
        self.log_array = log
        self.error_count = count
        self.errors_dropped = dropped

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
        if device_id >> self.tables.device_bits:
            return NO_SLOT
        return dte_slot(self.mem, &self.device_table, device_id)

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

    def process(self, uint64_t queue_base, uint64_t queue_bytes, uint64_t creadr,
                uint64_t cwriter, bint stall_on_error):
        """Run the queue from `creadr` to `cwriter` (byte offsets).

        Returns ``(creadr, stalled)``: where processing stopped, and whether it
        stopped on a failed command (stall mode).  Offsets that are not inside
        the queue (or not 32-byte multiples) make the queue invalid: nothing
        runs.
        """
        if (queue_bytes == 0 or creadr >= queue_bytes or cwriter >= queue_bytes
                or creadr % COMMAND_BYTES or cwriter % COMMAND_BYTES):
            return creadr, False
        # One write section for the whole run: a concurrent translation sees
        # the mappings before the CWRITER write or after it (docs/threads.md).
        self.tables.guard.begin_write()
        try:
            return self._run(queue_base, queue_bytes, creadr, cwriter, stall_on_error)
        finally:
            self.tables.guard.end_write()

    cdef tuple _run(self, uint64_t queue_base, uint64_t queue_bytes, uint64_t creadr,
                    uint64_t cwriter, bint stall_on_error):
        cdef uint64_t dwords[4]
        cdef uint64_t addr, step
        cdef uint32_t code, opcode
        cdef uint64_t budget = queue_bytes // COMMAND_BYTES
        while creadr != cwriter and budget:
            budget -= 1
            addr = queue_base + creadr
            if guest_contains(self.mem, addr, COMMAND_BYTES):
                for step in range(4):
                    dwords[step] = guest_read_u64(self.mem, addr + 8 * step)
                opcode = dwords[0] & 0xFF
                code = HANDLERS[self.version_index][opcode](self, dwords)
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
        self.tables.guard.begin_write()
        try:
            if self.tables._device(<devid_t>device_id) != NULL:
                self._drop_device_pending(device_id)
                self.tables._unmap_device(device_id)
        finally:
            self.tables.guard.end_write()

    def msi(self, device_id, event_id):
        """The doorbell: translate one (DeviceID, EventID) and make its LPI
        pending.  Returns a `TranslationStatus` (checks in docs/front-end.md);
        a virtual ITE returns VIRTUAL or VIRTUAL_NO_VPE with nothing delivered
        (`ITS.msi` then delivers the vLPI: docs/gicv4.md)."""
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
