"""Native kernels of the KVM ITS table ABI rev0 (layouts in its_core/abi/entries.py).

Saving: `level2_pages` lists the level-2 pages of a two-level device table
(the save planner zeroes them); `zero_ranges` and `scatter_u64` write prepared
entries into guest memory.  Restoring: `scan_collections` and `scan_devices`
walk the tables exactly as KVM's restore does (docs/save-format.md),
validating every entry and bounding every scan by the table it walks, and
return plain arrays; they raise `RestoreError` naming the table, the ID, the
field and the reason.  The device table is walked by frontend/_devtable.pxd,
the walk the command processor uses.  Every guest address is checked against
guest memory before it is read.
"""

import numpy as np

from libc.string cimport memset

from its_core.abi import entries as abi
from its_core.errors import RestoreError
from its_core.frontend._devtable cimport (WALK_DESCRIPTOR_OUTSIDE, WALK_DTE_OUTSIDE, WALK_END,
                                          WALK_PAGE_OUTSIDE, describe_device_table,
                                          device_table_t, dte_cursor_t, entry_fields,
                                          entry_fields_t, next_level2_page, walk_follow,
                                          walk_next, walk_start)
from its_core.frontend._guest cimport GuestWindow, guest_contains, guest_read_u64, guest_write_u64
from its_core.core._core cimport TranslationTables
from its_core.core._events cimport sparse_key
from its_core.core._types cimport (DEVICE_HAS_SLAB, DEVICE_SPARSE, LPI_FIRST_INTID, device_t,
                                   int32_t, int64_t, ite_t, uint8_t, uint16_t, uint32_t, uint64_t)

# Field positions, from the layouts declared in abi/entries.py.
cdef uint64_t CTE_VALID = abi.CTE["V"].mask
cdef int DTE_ITT_SHIFT = abi.DTE["ITT_addr"].lsb
cdef uint64_t DTE_ITT_MASK = abi.DTE["ITT_addr"].max
cdef uint64_t DTE_SIZE_MASK = abi.DTE["Size"].max
cdef int ITE_NEXT_SHIFT = abi.ITE["next"].lsb
cdef int ITE_INTID_SHIFT = abi.ITE["pINTID"].lsb
cdef uint64_t ITE_INTID_MASK = abi.ITE["pINTID"].max
cdef uint64_t ITE_ICID_MASK = abi.ITE["ICID"].max
cdef uint64_t ITE_BODY_MASK = abi.ITE["pINTID"].mask | abi.ITE["ICID"].mask
cdef int CTE_TARGET_SHIFT = abi.CTE["RDBase"].lsb
cdef uint64_t CTE_TARGET_MASK = abi.CTE["RDBase"].max
cdef uint64_t CTE_ICID_MASK = abi.CTE["ICID"].max
cdef uint64_t ITE_NEXT_MAX = abi.ITE_NEXT_MAX
cdef int ITT_ADDR_SHIFT = abi.ITT_ADDR_SHIFT
cdef entry_fields_t TABLE_FIELDS = entry_fields(abi)    # what the device-table walk reads
cdef enum:
    ENTRY = 8


# ---------------------------------------------------------------------------
# Saving

def level2_pages(GuestWindow mem, uint64_t base, uint64_t table_bytes, uint64_t page_bytes):
    """The level-2 pages of a two-level device table (GITS_BASER0.Indirect = 1).

    For every level-1 descriptor with V = 1, in table order: its index, its
    level-2 page address (descriptor bits [51:12], the bits below the page
    size cleared) and whether the whole page lies inside guest memory.
    Returns ``(indices, pages, inside)``: uint64, uint64 and bool arrays.
    Raises ValueError if a level-1 descriptor itself lies outside guest memory.
    """
    cdef device_table_t table = describe_device_table(&TABLE_FIELDS, base, table_bytes,
                                                      page_bytes, True)
    cdef uint64_t index = 0, page
    cdef Py_ssize_t count = 0
    cdef int found
    while True:                             # count them, so the arrays are sized once
        found = next_level2_page(mem, &table, &index, &page)
        if found == WALK_END:
            break
        if found == WALK_DESCRIPTOR_OUTSIDE:
            raise ValueError(f"level-1 descriptor {index} at {base + index * ENTRY:#x} "
                             f"outside guest memory")
        count += 1
        index += 1
    indices = np.empty(count, np.uint64)
    pages = np.empty(count, np.uint64)
    inside = np.empty(count, np.bool_)
    cdef uint64_t[::1] index_view = indices, page_view = pages
    cdef uint8_t[::1] inside_view = inside.view(np.uint8)
    cdef Py_ssize_t position
    index = 0
    for position in range(count):
        next_level2_page(mem, &table, &index, &page)
        index_view[position] = index
        page_view[position] = page
        inside_view[position] = guest_contains(mem, page, page_bytes)
        index += 1
    return indices, pages, inside


def zero_ranges(GuestWindow mem, const uint64_t[:] addrs, const uint64_t[:] lengths):
    """Zero each [addrs[i], addrs[i] + lengths[i]) of guest memory."""
    cdef Py_ssize_t index
    for index in range(addrs.shape[0]):
        if not guest_contains(mem, addrs[index], lengths[index]):
            raise ValueError(f"range {addrs[index]:#x}+{lengths[index]:#x} outside guest memory")
    with nogil:
        for index in range(addrs.shape[0]):
            if lengths[index]:
                memset(&mem.data[addrs[index] - mem.base], 0, lengths[index])


def scatter_u64(GuestWindow mem, const uint64_t[:] addrs, const uint64_t[:] values):
    """Store values[i] (little-endian) at guest address addrs[i]."""
    cdef Py_ssize_t index
    for index in range(addrs.shape[0]):
        if not guest_contains(mem, addrs[index], ENTRY):
            raise ValueError(f"entry at {addrs[index]:#x} outside guest memory")
    with nogil:
        for index in range(addrs.shape[0]):
            guest_write_u64(mem, addrs[index], values[index])


def save_itts(GuestWindow mem, TranslationTables tables, records):
    """Write every device's ITT: zero all 2**bits slots, then each ITE with
    its `next`, straight from the core's slabs into guest memory.

    `records` is the core's device array (DEVICE_DTYPE) in DeviceID order;
    the caller has checked that every ITT lies inside guest memory.
    """
    cdef device_t[::1] devices = records
    cdef Py_ssize_t index, event, size
    cdef uint64_t itt, following, step
    cdef ite_t ite
    cdef const ite_t* slab
    for index in range(devices.shape[0]):
        itt = devices[index].itt_addr
        size = (<Py_ssize_t>1) << devices[index].event_bits
        if not guest_contains(mem, itt, <uint64_t>size * ENTRY):
            raise ValueError(f"ITT of device {devices[index].device_id} outside guest memory")
    for index in range(devices.shape[0]):
        itt = devices[index].itt_addr
        size = (<Py_ssize_t>1) << devices[index].event_bits
        memset(&mem.data[itt - mem.base], 0, size * ENTRY)
        if devices[index].flags & DEVICE_HAS_SLAB:
            # Walk the slab backwards so each ITE knows the next mapped EventID.
            slab = &tables.pool.entries[devices[index].ite_base]
            following = 0
            with nogil:
                for event in range(((<Py_ssize_t>1) << devices[index].slab_log2) - 1, -1, -1):
                    ite = slab[event]
                    if ite == 0:
                        continue
                    step = 0 if following == 0 else min(following - event, ITE_NEXT_MAX)
                    guest_write_u64(mem, itt + event * ENTRY, ite | (step << ITE_NEXT_SHIFT))
                    following = event
        elif devices[index].flags & DEVICE_SPARSE:
            event_ids, ites = tables.sparse.entries_of(devices[index].device_id)
            steps = np.minimum(np.diff(event_ids.astype(np.uint64), append=event_ids[-1:]),
                               ITE_NEXT_MAX)
            scatter_u64(mem, itt + event_ids.astype(np.uint64) * ENTRY,
                        ites | (steps << np.uint64(ITE_NEXT_SHIFT)))


# ---------------------------------------------------------------------------
# Restoring

def scan_collections(GuestWindow mem, uint64_t base, uint64_t table_bytes, int num_cpus,
                     int num_collections):
    """Read the packed CTE list.  Returns (icids uint16, cpus int32 with -1 for
    "known, unmapped"), in table order."""
    cdef uint64_t position, entry, target, icid
    cdef uint64_t slots = table_bytes // ENTRY
    seen = np.zeros(65536, np.uint8)
    cdef uint8_t[::1] seen_view = seen
    icids, cpus = [], []
    for position in range(slots):
        if not guest_contains(mem, base + position * ENTRY, ENTRY):
            raise RestoreError("collection", int(position), "CTE",
                               "entry outside guest memory")
        entry = guest_read_u64(mem, base + position * ENTRY)
        if not entry & CTE_VALID:
            break
        icid = entry & CTE_ICID_MASK
        target = (entry >> CTE_TARGET_SHIFT) & CTE_TARGET_MASK
        if target != CTE_TARGET_MASK and target >= <uint64_t>num_cpus:
            raise RestoreError("collection", int(icid), "RDBase",
                               f"target CPU {target} does not exist (num_cpus={num_cpus})")
        if icid >= <uint64_t>num_collections or icid >= slots:
            raise RestoreError("collection", int(icid), "ICID",
                               f"beyond the collection table ({min(num_collections, slots)} slots)")
        if seen_view[icid]:
            raise RestoreError("collection", int(icid), "ICID", "duplicate collection")
        seen_view[icid] = 1
        icids.append(icid)
        cpus.append(-1 if target == CTE_TARGET_MASK else <int64_t>target)
    return np.array(icids, np.uint16), np.array(cpus, np.int32)


cdef class _DeviceScan:
    """Validates devices and ITTs and maps them straight into `target`, a
    fresh TranslationTables that the caller swaps in only if the whole scan
    succeeds (so nothing is copied through intermediate arrays)."""
    cdef GuestWindow mem
    cdef TranslationTables target
    cdef int device_bits, event_bits, intid_bits
    cdef const uint8_t[::1] known_icids

    def __init__(self, GuestWindow mem, TranslationTables target, known_icids):
        self.mem = mem
        self.target = target
        self.device_bits = target.device_bits
        self.event_bits = target.event_bits
        self.intid_bits = target.intid_bits
        self.known_icids = known_icids

    cdef int device(self, uint64_t device_id, uint64_t dte) except -1:
        """Validate one valid DTE and its ITT, then map them into `target`.

        Two walks of the ITT chain: the first validates every ITE and counts
        them, so storage is sized once; the second stores them."""
        cdef uint64_t bits = (dte & DTE_SIZE_MASK) + 1
        cdef uint64_t itt = ((dte >> DTE_ITT_SHIFT) & DTE_ITT_MASK) << ITT_ADDR_SHIFT
        cdef uint64_t entries, event_id, ite, intid, step, icid, last_event = 0
        cdef Py_ssize_t count = 0
        cdef device_t* device
        cdef TranslationTables target = self.target
        if device_id >> self.device_bits:
            raise RestoreError("device", int(device_id), "DeviceID",
                               f"beyond {self.device_bits} DeviceID bits")
        if bits > <uint64_t>self.event_bits:
            raise RestoreError("device", int(device_id), "Size",
                               f"{bits} EventID bits, more than {self.event_bits}")
        entries = (<uint64_t>1) << bits
        if not guest_contains(self.mem, itt, entries * ENTRY):
            raise RestoreError("device", int(device_id), "ITT_addr",
                               f"ITT {itt:#x}+{entries * ENTRY:#x} outside guest memory")
        event_id = 0
        while event_id < entries:                    # each step advances: bounded
            ite = guest_read_u64(self.mem, itt + event_id * ENTRY)
            intid = (ite >> ITE_INTID_SHIFT) & ITE_INTID_MASK
            if intid == 0:
                event_id += 1
                continue
            if intid < LPI_FIRST_INTID or intid >> self.intid_bits:
                raise RestoreError("itt", (int(device_id), int(event_id)), "pINTID",
                                   f"{intid} is not an LPI below 2**{self.intid_bits}")
            icid = ite & ITE_ICID_MASK
            if not self.known_icids[icid]:
                raise RestoreError("itt", (int(device_id), int(event_id)), "ICID",
                                   f"collection {icid} is not in the collection table")
            count += 1
            last_event = event_id
            step = ite >> ITE_NEXT_SHIFT
            if step == 0:
                break
            if event_id + step >= entries:
                raise RestoreError("itt", (int(device_id), int(event_id)), "next",
                                   f"next {step} points past the ITT ({entries} entries)")
            event_id += step
        if target._map_device(device_id, bits, itt):
            raise RestoreError("device", int(device_id), "DTE", "cannot be mapped")
        if count == 0:
            return 0
        device = target._device(<uint32_t>device_id)
        target._prepare_storage(device, <uint32_t>last_event, count)
        event_id = 0
        while True:                                  # the validated chain again
            ite = guest_read_u64(self.mem, itt + event_id * ENTRY)
            if (ite >> ITE_INTID_SHIFT) & ITE_INTID_MASK == 0:
                event_id += 1
                continue
            if device.flags & DEVICE_SPARSE:
                target.sparse.put(sparse_key(<uint32_t>device_id, <uint32_t>event_id),
                                  ite & ITE_BODY_MASK)
            else:
                target.pool.entries[<Py_ssize_t>device.ite_base + event_id] = ite & ITE_BODY_MASK
            if event_id == last_event:
                break
            event_id += ite >> ITE_NEXT_SHIFT
        device.num_events = <uint32_t>count
        target.num_events += count
        return 0


def scan_devices(GuestWindow mem, TranslationTables target, uint64_t base, uint64_t table_bytes,
                 uint64_t page_bytes, bint indirect, known_icids):
    """Walk the device table (flat or two-level) and every ITT it names,
    mapping what it finds into `target` (fresh tables, swapped in by the
    caller only when this returns).  `known_icids` is a 65536-entry uint8
    mask of the collections restored from the collection table."""
    cdef device_table_t table = describe_device_table(&TABLE_FIELDS, base, table_bytes,
                                                      page_bytes, indirect)
    try:
        _scan_devices(mem, _DeviceScan(mem, target, known_icids), &table)
    finally:
        target._sync_view()


cdef int _scan_devices(GuestWindow mem, _DeviceScan scan, const device_table_t* table) except -1:
    """Restore every valid DTE in KVM's scan order (the walk of _devtable.pxd:
    `next` = 0 ends the scan, a flat-table `next` past the end too, one leaving
    a level-2 page goes on at the next valid level-1 entry)."""
    cdef dte_cursor_t cursor
    cdef int found
    walk_start(table, &cursor)
    while True:
        found = walk_next(mem, table, &cursor)
        if found == WALK_END:
            return 0
        if found == WALK_DTE_OUTSIDE:
            raise RestoreError("device", int(cursor.device_id), "DTE", "entry outside guest memory")
        if found == WALK_DESCRIPTOR_OUTSIDE:
            raise RestoreError("level1", int(cursor.next_descriptor), "descriptor",
                               "entry outside guest memory")
        if found == WALK_PAGE_OUTSIDE:
            raise RestoreError("level1", int(cursor.next_descriptor), "Address",
                               f"level-2 page {cursor.page:#x} outside guest memory")
        scan.device(cursor.device_id, cursor.dte)
        if not walk_follow(table, &cursor):
            return 0
