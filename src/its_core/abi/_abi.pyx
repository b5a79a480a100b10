"""Native kernels of the KVM ITS table ABI rev0 (layouts in its_core/abi/entries.py).

Saving: `level2_pages` lists the level-2 pages of a two-level device table
(the save planner zeroes them with `zero_ranges`), `check_itts` and
`collection_entries` plan, `save_dtes` and `save_itts` write the entries
straight from the core's stores into guest memory.  Restoring:
`scan_collections` and `scan_devices` walk the tables exactly as KVM's
restore does (docs/save-format.md), validating every entry and bounding
every scan by the table it walks, and load what they find into fresh
tables; they raise `RestoreError` naming the table, the ID, the field and
the reason.  The device table is walked by frontend/_devtable.pxd,
the walk the command processor uses.  Every guest address is checked against
guest memory before it is read.
"""

import numpy as np

from its_core.core._events import POOL_MAX_ENTRIES
from its_core.core._layouts import DEVICE_DTYPE

cimport cython
from libc.string cimport memcpy, memset

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
from its_core.core._types cimport (DEVICE_HAS_SLAB, DEVICE_SPARSE, LPI_FIRST_INTID, device_t, ite_icid,
                                   int32_t, int64_t, ite_t, uint8_t, uint16_t, uint32_t, uint64_t)

# Field positions, from the layouts declared in abi/entries.py.
cdef uint64_t CTE_VALID = abi.CTE["V"].mask
cdef uint64_t DTE_VALID = abi.DTE["V"].mask
cdef int DTE_NEXT_SHIFT = abi.DTE["next"].lsb
cdef uint64_t DTE_NEXT_MAX = abi.DTE_NEXT_MAX
cdef uint64_t LOW32 = 0xFFFFFFFF         # the EventID of a sparse-map key
cdef int DTE_ITT_SHIFT = abi.DTE["ITT_addr"].lsb
cdef uint64_t DTE_ITT_MASK = abi.DTE["ITT_addr"].max
cdef uint64_t DTE_SIZE_MASK = abi.DTE["Size"].max
# The ITE fields as C constants, so the hot loops shift and mask by
# immediates (checked against abi/entries.py at import).
cdef extern from *:
    """
    #define ITS_ABI_ITE_NEXT_SHIFT 48
    #define ITS_ABI_ITE_INTID_SHIFT 16
    #define ITS_ABI_ITE_INTID_MASK 0xFFFFFFFFULL
    #define ITS_ABI_ITE_ICID_MASK 0xFFFFULL
    #define ITS_ABI_ITE_BODY_MASK 0xFFFFFFFFFFFFULL
    """
    enum:
        ITE_NEXT_SHIFT "ITS_ABI_ITE_NEXT_SHIFT"
        ITE_INTID_SHIFT "ITS_ABI_ITE_INTID_SHIFT"
    const uint64_t ITE_INTID_MASK "ITS_ABI_ITE_INTID_MASK"
    const uint64_t ITE_ICID_MASK "ITS_ABI_ITE_ICID_MASK"
    const uint64_t ITE_BODY_MASK "ITS_ABI_ITE_BODY_MASK"
assert (ITE_NEXT_SHIFT, ITE_INTID_SHIFT, ITE_INTID_MASK, ITE_ICID_MASK, ITE_BODY_MASK) == (
    abi.ITE["next"].lsb, abi.ITE["pINTID"].lsb, abi.ITE["pINTID"].max, abi.ITE["ICID"].max,
    abi.ITE["pINTID"].mask | abi.ITE["ICID"].mask), "ITE constants out of step with abi.ITE"
cdef int CTE_TARGET_SHIFT = abi.CTE["RDBase"].lsb
cdef uint64_t CTE_TARGET_MASK = abi.CTE["RDBase"].max
cdef uint64_t CTE_ICID_MASK = abi.CTE["ICID"].max
cdef uint64_t ITE_NEXT_MAX = abi.ITE_NEXT_MAX
cdef int ITT_ADDR_SHIFT = abi.ITT_ADDR_SHIFT
cdef entry_fields_t TABLE_FIELDS = entry_fields(abi)    # what the device-table walk reads
cdef enum:
    ENTRY = 8
    COUNTED_WALK_MAX = 4096     # ITTs up to this many entries are walked by a counted loop


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
    """Zero each [addrs[i], addrs[i] + lengths[i]) of guest memory.  Ranges
    that follow one another in memory (level-2 pages allocated in a row) are
    zeroed by one memset: a large one streams past the caches."""
    cdef Py_ssize_t index
    cdef uint64_t start = 0, end = 0
    for index in range(addrs.shape[0]):
        if not guest_contains(mem, addrs[index], lengths[index]):
            raise ValueError(f"range {addrs[index]:#x}+{lengths[index]:#x} outside guest memory")
    with nogil:
        for index in range(addrs.shape[0]):
            if not lengths[index]:
                continue
            if end > start and addrs[index] == end:
                end += lengths[index]            # inside memory: checked above
                continue
            if end > start:
                memset(&mem.data[start - mem.base], 0, end - start)
            start, end = addrs[index], addrs[index] + lengths[index]
        if end > start:
            memset(&mem.data[start - mem.base], 0, end - start)


def scatter_u64(GuestWindow mem, const uint64_t[:] addrs, const uint64_t[:] values):
    """Store values[i] (little-endian) at guest address addrs[i]."""
    cdef Py_ssize_t index
    for index in range(addrs.shape[0]):
        if not guest_contains(mem, addrs[index], ENTRY):
            raise ValueError(f"entry at {addrs[index]:#x} outside guest memory")
    with nogil:
        for index in range(addrs.shape[0]):
            guest_write_u64(mem, addrs[index], values[index])


def check_itts(GuestWindow mem, records):
    """The first device of `records` (DEVICE_DTYPE) whose ITT cannot be saved:
    ``(index, misplaced)``, `misplaced` True when ITT_addr is not a 256-byte
    aligned address below 2**52 and False when the ITT (8 << event_bits
    bytes) is not wholly inside guest memory; ``(-1, False)`` when every ITT
    can be saved."""
    cdef const device_t[::1] devices = records
    cdef Py_ssize_t index, bad = -1
    cdef bint misplaced = False
    cdef uint64_t itt
    with nogil:
        for index in range(devices.shape[0]):
            itt = devices[index].itt_addr
            if itt & 0xFF or itt >> 52:
                bad, misplaced = index, True
                break
            if devices[index].event_bits > 60 or not guest_contains(
                    mem, itt, (<uint64_t>ENTRY) << devices[index].event_bits):
                bad = index
                break
    return bad, misplaced


def save_dtes(GuestWindow mem, const uint64_t[::1] slots, records):
    """Write the DTE of each device of `records` (DEVICE_DTYPE, by DeviceID)
    at guest address slots[i]: V, `next` the distance to the following
    DeviceID (0 for the last, capped at DTE_NEXT_MAX), ITT_addr, Size.  The
    caller has checked the ITT addresses (`check_itts`); the slots are
    checked here."""
    cdef const device_t[::1] devices = records
    cdef Py_ssize_t index, count = devices.shape[0]
    cdef uint64_t following
    if slots.shape[0] != count:
        raise ValueError("save_dtes: one slot per device")
    for index in range(count):
        if not guest_contains(mem, slots[index], ENTRY):
            raise ValueError(f"entry at {slots[index]:#x} outside guest memory")
    with nogil:
        for index in range(count):
            following = 0
            if index + 1 < count:
                following = min(<uint64_t>(devices[index + 1].device_id
                                           - devices[index].device_id), DTE_NEXT_MAX)
            guest_write_u64(mem, slots[index],
                            DTE_VALID | (following << DTE_NEXT_SHIFT)
                            | ((devices[index].itt_addr >> ITT_ADDR_SHIFT) << DTE_ITT_SHIFT)
                            | <uint64_t>(devices[index].event_bits - 1))


def save_itts(GuestWindow mem, TranslationTables tables, records):
    """Write every device's ITT: all 2**bits slots, each ITE with its `next`
    and zero elsewhere, straight from the core's slabs and sparse map into
    guest memory, in one native pass.

    `records` is the core's device array (DEVICE_DTYPE) in DeviceID order;
    the caller has checked that every ITT lies inside guest memory (checked
    again here: ValueError, nothing written).
    """
    cdef const device_t[::1] devices = records
    cdef Py_ssize_t index
    index, _ = check_itts(mem, records)
    if index >= 0:
        raise ValueError(f"ITT of device {devices[index].device_id} outside guest memory")
    # The sparse map's live entries by (DeviceID, EventID): each sparse
    # device's ITEs are then one run, met in DeviceID order.
    if tables.sparse.count:
        live = np.flatnonzero(tables.sparse.values_array)
        keys = tables.sparse.keys_array[live]
        order = np.argsort(keys)
        sparse_keys, sparse_ites = keys[order], tables.sparse.values_array[live][order]
    else:
        sparse_keys = sparse_ites = np.zeros(1, np.uint64)
    cdef const uint64_t[::1] skeys = sparse_keys
    cdef const ite_t[::1] sites = sparse_ites
    cdef Py_ssize_t count = tables.sparse.count, run_end
    cdef Py_ssize_t cursor = 0
    cdef const ite_t* pool = &tables.pool.entries[0]
    cdef int failed = 0
    with nogil:
        for index in range(devices.shape[0]):
            if devices[index].flags & DEVICE_SPARSE:
                while cursor < count and (skeys[cursor] >> 32) < devices[index].device_id:
                    cursor += 1
                run_end = cursor
                while run_end < count and (skeys[run_end] >> 32) == devices[index].device_id:
                    run_end += 1
                _save_sparse_itt(mem, &devices[index], &skeys[0], &sites[0], cursor, run_end)
                cursor = run_end
            elif devices[index].flags & DEVICE_HAS_SLAB:
                _save_slab_itt(mem, &devices[index], &pool[devices[index].ite_base])
            else:
                memset(&mem.data[devices[index].itt_addr - mem.base], 0,
                       (<size_t>ENTRY) << devices[index].event_bits)


cdef inline void _save_slab_itt(GuestWindow mem, const device_t* device,
                                const ite_t* slab) noexcept nogil:
    """One device's ITT from its slab: every slot written once, backwards, so
    each ITE knows the next mapped EventID; slots past the slab zeroed."""
    cdef uint64_t itt = device.itt_addr
    cdef Py_ssize_t size = (<Py_ssize_t>1) << device.event_bits
    cdef Py_ssize_t slab_size = (<Py_ssize_t>1) << device.slab_log2
    cdef Py_ssize_t event
    cdef uint64_t following = 0, step
    cdef ite_t ite
    if slab_size > size:
        slab_size = size
    if size > slab_size:
        memset(&mem.data[itt + slab_size * ENTRY - mem.base], 0, (size - slab_size) * ENTRY)
    for event in range(slab_size - 1, -1, -1):
        ite = slab[event]
        if ite == 0:
            guest_write_u64(mem, itt + event * ENTRY, 0)
            continue
        step = 0 if following == 0 else min(following - <uint64_t>event, ITE_NEXT_MAX)
        guest_write_u64(mem, itt + event * ENTRY, ite | (step << ITE_NEXT_SHIFT))
        following = <uint64_t>event


cdef inline void _save_sparse_itt(GuestWindow mem, const device_t* device, const uint64_t* keys,
                                  const ite_t* ites, Py_ssize_t first,
                                  Py_ssize_t end) noexcept nogil:
    """One sparse device's ITT: zeroed, then its ITEs keys[first:end] (sorted
    by EventID), each with the distance to the next."""
    cdef uint64_t itt = device.itt_addr
    cdef uint64_t event_id, step
    cdef Py_ssize_t row
    memset(&mem.data[itt - mem.base], 0, (<size_t>ENTRY) << device.event_bits)
    for row in range(first, end):
        event_id = keys[row] & LOW32
        if event_id >> device.event_bits:
            continue                         # cannot happen: the core bounds EventIDs
        step = 0
        if row + 1 < end:
            step = min((keys[row + 1] & LOW32) - event_id, ITE_NEXT_MAX)
        guest_write_u64(mem, itt + event_id * ENTRY, ites[row] | (step << ITE_NEXT_SHIFT))


def collection_entries(TranslationTables tables):
    """The CTE words a save writes, by ICID (no terminator): one per mapped
    collection and one, with RDBase all ones, per unmapped collection that a
    mapped event names; one native pass over the ITE words and the ICIDs."""
    named_array = np.zeros(65536, np.uint8)
    cdef uint8_t[::1] named = named_array
    cdef const ite_t* words
    cdef Py_ssize_t index, length, count = 0
    cdef uint64_t icid, target
    cdef const int32_t* cpus = &tables.collections[0]
    cdef Py_ssize_t limit = min(tables.num_collections, tables.collections.shape[0])
    for part in range(2):
        if part == 0:
            length = tables.pool.top
            words = &tables.pool.entries[0] if length else NULL
        else:
            length = tables.sparse.values.shape[0] if tables.sparse.count else 0
            words = &tables.sparse.values[0] if length else NULL
        with nogil:
            for index in range(length):
                if words[index] != 0:
                    named[ite_icid(words[index])] = 1
    cdef const uint64_t* named_words = <const uint64_t*>&named[0]
    cdef Py_ssize_t word
    with nogil:
        for index in range(limit):               # a straight pass: vectorised
            named[index] |= <uint8_t>(cpus[index] >= 0)
        for word in range(65536 // 8):           # mostly-zero words skipped 8 at a time
            if named_words[word]:
                for index in range(word * 8, word * 8 + 8):
                    count += named[index]
    out = np.empty(count, np.uint64)
    cdef uint64_t[::1] entries = out
    count = 0
    with nogil:
        for word in range(65536 // 8):
            if not named_words[word]:
                continue
            for index in range(word * 8, word * 8 + 8):
                if named[index]:
                    target = <uint64_t>cpus[index] if index < limit and cpus[index] >= 0 \
                        else CTE_TARGET_MASK
                    entries[count] = CTE_VALID | (target << CTE_TARGET_SHIFT) | <uint64_t>index
                    count += 1
    return out


# ---------------------------------------------------------------------------
# Restoring

def scan_collections(GuestWindow mem, uint64_t base, uint64_t table_bytes, int num_cpus,
                     int num_collections, TranslationTables target=None):
    """Read the packed CTE list.  Returns (icids uint16, cpus int32 with -1 for
    "known, unmapped"), in table order.  With `target` (fresh tables), each
    mapped collection is also mapped there, as MAPC does."""
    cdef uint64_t position, entry, cpu, icid
    cdef uint64_t slots = table_bytes // ENTRY
    seen = np.zeros(65536, np.uint8)
    cdef uint8_t[::1] seen_view = seen
    icids = np.empty(min(slots, <uint64_t>65536), np.uint16)    # ICIDs are unique
    cpus = np.empty(icids.shape[0], np.int32)
    cdef uint16_t[::1] icid_view = icids
    cdef int32_t[::1] cpu_view = cpus
    cdef Py_ssize_t count = 0
    for position in range(slots):
        if not guest_contains(mem, base + position * ENTRY, ENTRY):
            raise RestoreError("collection", int(position), "CTE",
                               "entry outside guest memory")
        entry = guest_read_u64(mem, base + position * ENTRY)
        if not entry & CTE_VALID:
            break
        icid = entry & CTE_ICID_MASK
        cpu = (entry >> CTE_TARGET_SHIFT) & CTE_TARGET_MASK
        if cpu != CTE_TARGET_MASK and cpu >= <uint64_t>num_cpus:
            raise RestoreError("collection", int(icid), "RDBase",
                               f"target CPU {cpu} does not exist (num_cpus={num_cpus})")
        if icid >= <uint64_t>num_collections or icid >= slots:
            raise RestoreError("collection", int(icid), "ICID",
                               f"beyond the collection table ({min(num_collections, slots)} slots)")
        if seen_view[icid]:
            raise RestoreError("collection", int(icid), "ICID", "duplicate collection")
        seen_view[icid] = 1
        icid_view[count] = <uint16_t>icid
        cpu_view[count] = -1 if cpu == CTE_TARGET_MASK else <int32_t>cpu
        count += 1
    if target is not None:
        for position in range(<uint64_t>count):
            if cpu_view[position] >= 0 and target._map_collection(icid_view[position],
                                                                  cpu_view[position]):
                raise RestoreError("collection", int(icid_view[position]), "CTE",
                                   "cannot be mapped")
    return icids[:count], cpus[:count]


cdef inline bint _ite_ok(uint64_t ite, uint64_t step, uint64_t event_id, uint64_t entries,
                         uint64_t intid_span, const uint8_t* known) noexcept nogil:
    """The checks of _DeviceScan._check_ite on a mapped ITE, as one test."""
    return ((((ite >> ITE_INTID_SHIFT) & ITE_INTID_MASK) - LPI_FIRST_INTID) < intid_span
            and known[ite & ITE_ICID_MASK] and step < entries - event_id)


@cython.final
cdef class _DeviceScan:
    """Validates devices and ITTs during the device-table walk (`device`,
    in KVM's order, so the first bad entry is the one reported) and lays
    them out: device records, and ITEs in slabs of a pool array sized from
    the device table (`_slab_estimate`) or in the sparse map of `target`, a
    fresh TranslationTables; `finish` hands it all to `target` in one bulk
    load.  The caller swaps `target` in only if all of it succeeds.  Each
    layout's directory is thus allocated once, at its final size, and no
    device costs a Python call."""
    cdef GuestWindow mem
    cdef TranslationTables target
    cdef int device_bits, event_bits, intid_bits
    cdef const uint8_t[::1] known_icids
    cdef object records_array               # DEVICE_DTYPE, the devices met so far
    cdef device_t[::1] records
    cdef Py_ssize_t num_devices
    cdef object pool_array                  # uint64: the slabs laid out so far, from 0
    cdef ite_t[::1] pool
    cdef Py_ssize_t pool_top                # entries of pool_array in use
    cdef Py_ssize_t num_events

    def __init__(self, GuestWindow mem, TranslationTables target, known_icids,
                 Py_ssize_t pool_estimate):
        self.mem = mem
        self.target = target
        self.device_bits = target.device_bits
        self.event_bits = target.event_bits
        self.intid_bits = target.intid_bits
        self.known_icids = known_icids
        self.records_array = np.zeros(64, DEVICE_DTYPE)
        self.records = self.records_array
        self.num_devices = 0
        self.pool_array = np.empty(max(pool_estimate, 1024), np.uint64)
        self.pool = self.pool_array
        self.pool_top = self.num_events = 0

    cdef int _check_ite(self, uint64_t device_id, uint64_t event_id, uint64_t ite,
                        uint64_t entries) except -1:
        """RestoreError unless the mapped ITE `ite` (pINTID != 0) of
        `event_id` is valid, its `next` staying inside the ITT."""
        cdef uint64_t intid = (ite >> ITE_INTID_SHIFT) & ITE_INTID_MASK
        cdef uint64_t step = ite >> ITE_NEXT_SHIFT
        if intid < LPI_FIRST_INTID or intid >> self.intid_bits:
            raise RestoreError("itt", (int(device_id), int(event_id)), "pINTID",
                               f"{intid} is not an LPI below 2**{self.intid_bits}")
        if not self.known_icids[ite & ITE_ICID_MASK]:
            raise RestoreError("itt", (int(device_id), int(event_id)), "ICID",
                               f"collection {ite & ITE_ICID_MASK} is not in the collection table")
        if step and event_id + step >= entries:
            raise RestoreError("itt", (int(device_id), int(event_id)), "next",
                               f"next {step} points past the ITT ({entries} entries)")
        return 0

    cdef device_t* _new_record(self, uint64_t device_id) except NULL:
        """A zeroed record for `device_id`, after the last one (the walk meets
        DeviceIDs in increasing order: `next` only moves forward)."""
        cdef Py_ssize_t length = self.records.shape[0]
        if self.num_devices and device_id <= self.records[self.num_devices - 1].device_id:
            raise AssertionError(f"device table walk went back to DeviceID {device_id:#x}")
        if self.num_devices == length:
            grown = np.zeros(2 * length, DEVICE_DTYPE)
            grown[:length] = self.records_array
            self.records_array = grown
            self.records = grown
        self.num_devices += 1
        return &self.records[self.num_devices - 1]

    cdef int device(self, uint64_t device_id, uint64_t dte) except -1:
        """Validate one valid DTE and its ITT (walking the ITT chain) and lay
        out its record and ITEs: a small ITT's ITEs are stored during that
        one walk, a large one's by a second (`_fill`), once the storage is
        known."""
        cdef uint64_t bits = (dte & DTE_SIZE_MASK) + 1
        cdef uint64_t itt = ((dte >> DTE_ITT_SHIFT) & DTE_ITT_MASK) << ITT_ADDR_SHIFT
        cdef uint64_t entries, event_id, ite, step, last_event = 0
        cdef Py_ssize_t count = 0
        cdef int slab_log2
        cdef device_t* record
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
        # The ITT lies in guest memory (checked): read it through one pointer.
        # An entry passes the inline test or goes to _check_ite, which raises.
        cdef const uint8_t* table = &self.mem.data[itt - self.mem.base]
        cdef const uint8_t* known = &self.known_icids[0]
        cdef uint64_t intid_span = ((<uint64_t>1) << self.intid_bits) - LPI_FIRST_INTID
        # KVM's walk: from EventID 0, an unmapped entry leads to the next one,
        # a mapped one `next` entries on (0: the end).  Each step advances, so
        # the walk is bounded by the ITT.  A small ITT is walked by a counted
        # loop (`expected` is where the chain goes next): its loads then do
        # not wait for one another, as following `next` from load to load does.
        cdef uint64_t expected = 0, filled = 0
        cdef Py_ssize_t base = 0
        cdef ite_t* slab
        if entries <= COUNTED_WALK_MAX:
            # A small ITT always goes in a slab (never more than
            # DENSE_SLAB_LIMIT entries): store while validating, into room
            # for the whole ITT, cut to the slab's size once the walk is done.
            base = self._reserve(<Py_ssize_t>entries)
            slab = &self.pool[base]
            for event_id in range(entries):
                if event_id != expected:
                    continue
                memcpy(&ite, table + event_id * ENTRY, ENTRY)
                if (ite >> ITE_INTID_SHIFT) & ITE_INTID_MASK == 0:
                    expected = event_id + 1
                    continue
                step = ite >> ITE_NEXT_SHIFT
                if not _ite_ok(ite, step, event_id, entries, intid_span, known):
                    self.pool_top = base
                    self._check_ite(device_id, event_id, ite, entries)
                if filled < event_id:
                    memset(&slab[filled], 0, (event_id - filled) * ENTRY)
                slab[event_id] = ite & ITE_BODY_MASK
                filled = event_id + 1
                count += 1
                last_event = event_id
                if step == 0:
                    break
                expected = event_id + step
            record = self._new_record(device_id)
            record.device_id = <uint32_t>device_id
            record.event_bits = <uint8_t>bits
            record.itt_addr = itt
            record.num_events = <uint32_t>count
            self.pool_top = base
            if count:
                slab_log2 = self.target._slab_log2_for(last_event, count, <int>bits)
                if slab_log2 < 0 or ((<uint64_t>1) << slab_log2) > entries:
                    raise AssertionError("a small ITT's slab does not fit the ITT")
                if filled < ((<uint64_t>1) << slab_log2):
                    memset(&slab[filled], 0, (((<uint64_t>1) << slab_log2) - filled) * ENTRY)
                record.ite_base = <uint32_t>base
                record.slab_log2 = <uint8_t>slab_log2
                record.flags = DEVICE_HAS_SLAB
                self.pool_top = base + ((<Py_ssize_t>1) << slab_log2)
                self.num_events += count
            return 0
        event_id = 0
        while event_id < entries:
            memcpy(&ite, table + event_id * ENTRY, ENTRY)
            if (ite >> ITE_INTID_SHIFT) & ITE_INTID_MASK == 0:
                event_id += 1
                continue
            step = ite >> ITE_NEXT_SHIFT
            if not _ite_ok(ite, step, event_id, entries, intid_span, known):
                self._check_ite(device_id, event_id, ite, entries)
            count += 1
            last_event = event_id
            if step == 0:
                break
            event_id += step
        record = self._new_record(device_id)
        record.device_id = <uint32_t>device_id
        record.event_bits = <uint8_t>bits
        record.itt_addr = itt
        record.num_events = <uint32_t>count
        if count == 0:
            return 0
        slab_log2 = self.target._slab_log2_for(last_event, count, <int>bits)
        if slab_log2 < 0:
            record.flags = DEVICE_SPARSE
        else:
            record.ite_base = <uint32_t>self._reserve((<Py_ssize_t>1) << slab_log2)
            record.slab_log2 = <uint8_t>slab_log2
            record.flags = DEVICE_HAS_SLAB
        self._fill(record)                   # the ITT is still in the cache
        self.num_events += count
        return 0

    cdef Py_ssize_t _reserve(self, Py_ssize_t size) except -1:
        """Start of `size` pool entries at the top (the pool array grows, by
        a copy, only past the estimate it was allocated with)."""
        cdef Py_ssize_t capacity = self.pool.shape[0]
        if self.pool_top + size > POOL_MAX_ENTRIES:
            raise MemoryError("ITE pool would exceed 2**32 entries")
        if self.pool_top + size > capacity:
            grown = np.empty(min(max(2 * capacity, self.pool_top + size), POOL_MAX_ENTRIES),
                             np.uint64)
            grown[:self.pool_top] = self.pool_array[:self.pool_top]
            self.pool_array = grown
            self.pool = grown
        self.pool_top += size
        return self.pool_top - size

    cdef int _fill(self, device_t* record) except -1:
        """Store the ITEs of a device with a large ITT (more than
        COUNTED_WALK_MAX entries) just validated: its chain walked again,
        each entry tested again (the guest could change its memory in
        between), each slot of its slab written once."""
        cdef uint64_t entries = (<uint64_t>1) << record.event_bits
        cdef uint64_t device_id = record.device_id
        cdef const uint8_t* table = &self.mem.data[record.itt_addr - self.mem.base]
        cdef const uint8_t* known = &self.known_icids[0]
        cdef uint64_t intid_span = ((<uint64_t>1) << self.intid_bits) - LPI_FIRST_INTID
        cdef uint64_t event_id = 0, filled = 0, step, ite
        cdef uint64_t size = 0
        cdef Py_ssize_t stored = 0, count = record.num_events
        cdef bint sparse = record.flags & DEVICE_SPARSE
        cdef ite_t* slab = NULL
        if not sparse:
            size = (<uint64_t>1) << record.slab_log2
            slab = &self.pool[record.ite_base]
        cdef int outcome
        while event_id < entries:
            memcpy(&ite, table + event_id * ENTRY, ENTRY)
            if (ite >> ITE_INTID_SHIFT) & ITE_INTID_MASK == 0:
                event_id += 1
                continue
            step = ite >> ITE_NEXT_SHIFT
            outcome = self._store(record, slab, size, &filled, &stored, device_id, event_id,
                                  ite, step, entries, intid_span, known)
            if outcome or stored == count or step == 0:
                break
            event_id += step
        if stored != count:
            raise RestoreError("itt", (int(device_id), int(event_id)), "next",
                               "the ITT changed while it was being restored")
        if filled < size:
            memset(&slab[filled], 0, (size - filled) * ENTRY)
        return 0

    cdef inline int _store(self, device_t* record, ite_t* slab, uint64_t size, uint64_t* filled,
                           Py_ssize_t* stored, uint64_t device_id, uint64_t event_id,
                           uint64_t ite, uint64_t step, uint64_t entries, uint64_t intid_span,
                           const uint8_t* known) except -1:
        """`_fill`'s step for one mapped entry: test it, store it (a slab's
        skipped slots zeroed).  Returns 1 if it lies past the slab (the ITT
        changed since `device` sized it), else 0."""
        if not _ite_ok(ite, step, event_id, entries, intid_span, known):
            self._check_ite(device_id, event_id, ite, entries)
        if slab == NULL:
            self.target.sparse.put(sparse_key(<uint32_t>device_id, <uint32_t>event_id),
                                   ite & ITE_BODY_MASK)
        else:
            if event_id >= size:
                return 1
            if filled[0] < event_id:
                memset(&slab[filled[0]], 0, (event_id - filled[0]) * ENTRY)
            slab[event_id] = ite & ITE_BODY_MASK
            filled[0] = event_id + 1
        stored[0] += 1
        return 0

    cdef int finish(self) except -1:
        """Hand everything laid out to `target` (one bulk load), the pool
        array cut to its final size."""
        cdef Py_ssize_t length = max(self.pool_top, 1024)
        pool_array = self.pool_array
        self.pool_array = None
        self.pool = np.empty(0, np.uint64)
        if pool_array.shape[0] != length:
            if pool_array.shape[0] > length:
                pool_array.resize(length, refcheck=False)   # in place: no copy
            else:
                pool_array = np.concatenate([pool_array, np.empty(length - pool_array.shape[0],
                                                                  np.uint64)])
        pool_array[self.pool_top:] = 0
        self.target._load_bulk(self.records_array[:self.num_devices], pool_array,
                               self.pool_top, self.num_events)
        return 0


def scan_devices(GuestWindow mem, TranslationTables target, uint64_t base, uint64_t table_bytes,
                 uint64_t page_bytes, bint indirect, known_icids):
    """Walk the device table (flat or two-level) and every ITT it names,
    loading what it finds into `target` (fresh tables, swapped in by the
    caller only when this returns).  `known_icids` is a 65536-entry uint8
    mask of the collections restored from the collection table."""
    cdef device_table_t table = describe_device_table(&TABLE_FIELDS, base, table_bytes,
                                                      page_bytes, indirect)
    # A flat table's walk is cheap next to its ITTs: walk it once more, first,
    # to size the pool.  A two-level one's may read far more DTEs (up to its
    # first device, each level-2 page is read entry by entry): the pool grows.
    cdef _DeviceScan scan = _DeviceScan(
        mem, target, known_icids,
        0 if indirect else _slab_estimate(mem, &table, target.event_bits))
    _scan_devices(mem, scan, &table)
    scan.finish()


cdef Py_ssize_t _slab_estimate(GuestWindow mem, const device_table_t* table,
                               int event_bits) except -1:
    """Pool entries the valid DTEs' slabs will likely take: 2**Size each, up
    to DENSE_SLAB_LIMIT (a first walk of the device table alone, stopping
    at its first bad entry; what it finds is checked by the real scan)."""
    cdef dte_cursor_t cursor
    cdef Py_ssize_t total = 0
    cdef uint64_t bits
    cdef int found
    walk_start(table, &cursor)
    while True:
        found = walk_next(mem, table, &cursor)
        if (found == WALK_END or found == WALK_DTE_OUTSIDE or found == WALK_DESCRIPTOR_OUTSIDE
                or found == WALK_PAGE_OUTSIDE):
            break
        bits = min((cursor.dte & DTE_SIZE_MASK) + 1, <uint64_t>min(event_bits, 12))
        total += (<Py_ssize_t>1) << bits
        if total > POOL_MAX_ENTRIES or not walk_follow(table, &cursor):
            break
    return min(total, <Py_ssize_t>POOL_MAX_ENTRIES)


cdef int _check_walk(int found, const dte_cursor_t* cursor) except -1:
    """RestoreError for a device-table walk step (`walk_next`) that left
    guest memory: a DTE, a level-1 descriptor or a level-2 page."""
    if found == WALK_DTE_OUTSIDE:
        raise RestoreError("device", int(cursor.device_id), "DTE", "entry outside guest memory")
    if found == WALK_DESCRIPTOR_OUTSIDE:
        raise RestoreError("level1", int(cursor.next_descriptor), "descriptor",
                           "entry outside guest memory")
    if found == WALK_PAGE_OUTSIDE:
        raise RestoreError("level1", int(cursor.next_descriptor), "Address",
                           f"level-2 page {cursor.page:#x} outside guest memory")
    return 0


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
        _check_walk(found, &cursor)
        scan.device(cursor.device_id, cursor.dte)
        if not walk_follow(table, &cursor):
            return 0


# ---------------------------------------------------------------------------
# its-core-rev1 (GICv4): the walks its numpy save/restore path needs

def walk_device_table(GuestWindow mem, uint64_t base, uint64_t table_bytes, uint64_t page_bytes,
                      bint indirect):
    """The valid DTEs of a device table in KVM's restore order (the walk
    `scan_devices` takes, without reading any ITT): ``(device_ids, dtes)``,
    two uint64 arrays.  Raises RestoreError for an entry, level-1 descriptor
    or level-2 page outside guest memory, as `scan_devices` does."""
    cdef device_table_t table = describe_device_table(&TABLE_FIELDS, base, table_bytes,
                                                      page_bytes, indirect)
    cdef dte_cursor_t cursor
    cdef int found
    cdef Py_ssize_t count = 0
    ids_array = np.empty(64, np.uint64)
    dtes_array = np.empty(64, np.uint64)
    cdef uint64_t[::1] ids = ids_array, dtes = dtes_array
    walk_start(&table, &cursor)
    while True:
        found = walk_next(mem, &table, &cursor)
        if found == WALK_END:
            break
        _check_walk(found, &cursor)
        if count == ids.shape[0]:
            ids_array = np.concatenate((ids_array, np.empty(count, np.uint64)))
            dtes_array = np.concatenate((dtes_array, np.empty(count, np.uint64)))
            ids, dtes = ids_array, dtes_array
        ids[count] = cursor.device_id
        dtes[count] = cursor.dte
        count += 1
        if not walk_follow(&table, &cursor):
            break
    return ids_array[:count].copy(), dtes_array[:count].copy()


def walk_itts_rev1(GuestWindow mem, const uint64_t[::1] device_ids, const uint64_t[::1] itts,
                   const uint8_t[::1] event_bits):
    """Walk each device's its-core-rev1 ITT (16-byte ITEs) as KVM walks a rev0
    one: from EventID 0, an entry whose INTID field (dword0 [47:16]) is 0
    steps by one, a mapped one by its `next` (dword0 [63:48]; 0 ends the
    ITT).  Returns ``(rows, event_ids, dword0s, dword1s)``: the device index
    (uint32), EventID (uint32) and both dwords (uint64) of every mapped
    entry, in walk order.  The caller has checked that each ITT
    (16 << event_bits bytes) lies inside guest memory (checked again:
    ValueError); a `next` pointing past the ITT is a RestoreError."""
    cdef Py_ssize_t device, count = 0, capacity = 64
    cdef uint64_t entries, event_id, word0, word1, step
    for device in range(itts.shape[0]):
        if event_bits[device] > 32 or not guest_contains(
                mem, itts[device], (<uint64_t>16) << event_bits[device]):
            raise ValueError(f"ITT {itts[device]:#x} outside guest memory")
    rows_array = np.empty(capacity, np.uint32)
    events_array = np.empty(capacity, np.uint32)
    word0_array = np.empty(capacity, np.uint64)
    word1_array = np.empty(capacity, np.uint64)
    cdef uint32_t[::1] rows = rows_array, events = events_array
    cdef uint64_t[::1] words0 = word0_array, words1 = word1_array
    for device in range(itts.shape[0]):
        entries = (<uint64_t>1) << event_bits[device]
        event_id = 0
        while event_id < entries:
            word0 = guest_read_u64(mem, itts[device] + event_id * 16)
            if (word0 >> ITE_INTID_SHIFT) & ITE_INTID_MASK == 0:
                event_id += 1
                continue
            word1 = guest_read_u64(mem, itts[device] + event_id * 16 + 8)
            step = word0 >> ITE_NEXT_SHIFT
            if step and event_id + step >= entries:
                raise RestoreError("itt", (int(device_ids[device]), int(event_id)), "next",
                                   f"next {step} points past the ITT ({entries} entries)")
            if count == capacity:
                rows_array = np.concatenate((rows_array, np.empty(capacity, np.uint32)))
                events_array = np.concatenate((events_array, np.empty(capacity, np.uint32)))
                word0_array = np.concatenate((word0_array, np.empty(capacity, np.uint64)))
                word1_array = np.concatenate((word1_array, np.empty(capacity, np.uint64)))
                rows, events, words0, words1 = rows_array, events_array, word0_array, word1_array
                capacity *= 2
            rows[count] = <uint32_t>device
            events[count] = <uint32_t>event_id
            words0[count] = word0
            words1[count] = word1
            count += 1
            if step == 0:
                break
            event_id += step
    return (rows_array[:count].copy(), events_array[:count].copy(), word0_array[:count].copy(),
            word1_array[:count].copy())
