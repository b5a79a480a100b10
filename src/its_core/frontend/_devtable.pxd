# The device table of GITS_BASER0 (flat or two-level), walked by native code.
#
# Written once, inline, for the three native walkers: the command processor
# (_cmdq.pyx: a DeviceID's DTE slot for MAPD and the save planner), the level-2
# page list the save planner zeroes and the restore scan (both in _abi.pyx).
# The pure-Python reference model keeps its own walk on purpose.
#
#   dte_slot          DeviceID -> address of its DTE, or NO_SLOT (random access)
#   next_level2_page  the next valid level-1 descriptor and its level-2 page
#   walk_start / walk_next / walk_follow
#                     the valid DTEs in KVM's restore order, following `next`
#
# Every guest address is checked with guest_contains() before it is read.
# The entry bits come from its_core.abi.entries, read once per module at
# import through entry_fields().

from libc.string cimport memcpy
from its_core.core._types cimport uint8_t, uint64_t
from its_core.frontend._guest cimport GuestWindow, guest_contains, guest_read_u64

cdef enum:
    DEVICE_TABLE_ENTRY_BYTES = 8    # a DTE or a level-1 descriptor

# Results of next_level2_page and walk_next.
cdef enum:
    WALK_FOUND = 0                  # an entry: a valid descriptor's page, or a valid DTE
    WALK_END                        # no entry left
    WALK_INVALID                    # read_descriptor: V = 0, no level-2 page
    WALK_DTE_OUTSIDE                # flat table: the DTE of cursor.device_id is outside guest memory
    WALK_DESCRIPTOR_OUTSIDE         # the level-1 descriptor at the index is outside guest memory
    WALK_PAGE_OUTSIDE               # the level-2 page of a valid descriptor is not wholly inside

# 64-bit constants are typed, never C enum members (an enum holds an int).
cdef extern from *:
    """
    #include <stdint.h>
    #define ITS_DEVICE_TABLE_NO_SLOT UINT64_MAX
    """
    const uint64_t NO_SLOT "ITS_DEVICE_TABLE_NO_SLOT"  # dte_slot: no slot (2**64 - 1)


ctypedef struct entry_fields_t:     # the entry bits a walk reads (abi/entries.py)
    uint64_t descriptor_valid       # level-1 descriptor V
    uint64_t descriptor_address     # level-1 descriptor Address [51:12], in place
    uint64_t dte_valid              # DTE V
    uint64_t dte_next_max           # DTE next, right-aligned mask
    int dte_next_shift              # DTE next, lowest bit


ctypedef struct device_table_t:     # GITS_BASER0, decoded once per configuration
    entry_fields_t fields
    uint64_t base                   # flat table, or level-1 table
    uint64_t slots                  # entries of that table: DTEs, or level-1 descriptors
    uint64_t page_bytes             # level-2 page size (indirect)
    uint64_t dtes_per_page          # DTEs of a level-2 page (indirect)
    uint64_t page_address_mask      # descriptor Address bits, bits below the page size cleared
    bint indirect                   # GITS_BASER0.Indirect


ctypedef struct dte_cursor_t:       # where walk_next stands
    uint64_t next_descriptor        # indirect: the level-1 entry to read when `page` is done;
                                    #   the failing one after WALK_DESCRIPTOR/PAGE_OUTSIDE
    uint64_t page                   # the flat table, or the current level-2 page
                                    #   (the failing page after WALK_PAGE_OUTSIDE)
    uint64_t first_device_id        # DeviceID of page's first DTE
    uint64_t offset                 # next DTE of `page` to read
    uint64_t dtes                   # DTEs of `page` (0: no level-2 page read yet)
    uint64_t device_id              # WALK_FOUND: the valid DTE's DeviceID (WALK_DTE_OUTSIDE: the failing one)
    uint64_t dte                    # WALK_FOUND: the valid DTE


cdef inline entry_fields_t entry_fields(object entries):
    """The bits of `entries` (the module its_core.abi.entries) a walk reads."""
    return entry_fields_t(descriptor_valid=entries.L1_DESCRIPTOR["V"].mask,
                          descriptor_address=entries.L1_DESCRIPTOR["Address"].mask,
                          dte_valid=entries.DTE["V"].mask,
                          dte_next_max=entries.DTE["next"].max,
                          dte_next_shift=entries.DTE["next"].lsb)


cdef inline device_table_t describe_device_table(const entry_fields_t* fields, uint64_t base,
                                                 uint64_t table_bytes, uint64_t page_bytes,
                                                 bint indirect) noexcept nogil:
    """The device table a GITS_BASER0 describes: base address, table bytes,
    page size and Indirect (the level-2 page size is the BASER's page size)."""
    cdef device_table_t table
    table.fields = fields[0]
    table.base = base
    table.slots = table_bytes // DEVICE_TABLE_ENTRY_BYTES
    table.page_bytes = page_bytes
    table.dtes_per_page = page_bytes // DEVICE_TABLE_ENTRY_BYTES
    # Choice (docs/front-end.md): the bits of Address below the page size are ignored.
    table.page_address_mask = fields.descriptor_address & ~(page_bytes - 1)
    table.indirect = indirect
    return table


cdef inline int read_descriptor(GuestWindow mem, const device_table_t* table, uint64_t index,
                                uint64_t* page) noexcept nogil:
    """Level-1 descriptor `index` (< table.slots): WALK_DESCRIPTOR_OUTSIDE,
    WALK_INVALID (V = 0), or WALK_FOUND with `page` set to its level-2 page
    (which may lie outside guest memory: the caller checks what it reads)."""
    cdef uint64_t addr = table.base + index * DEVICE_TABLE_ENTRY_BYTES
    if not guest_contains(mem, addr, DEVICE_TABLE_ENTRY_BYTES):
        return WALK_DESCRIPTOR_OUTSIDE
    cdef uint64_t descriptor = guest_read_u64(mem, addr)
    if not descriptor & table.fields.descriptor_valid:
        return WALK_INVALID
    page[0] = descriptor & table.page_address_mask
    return WALK_FOUND


cdef inline uint64_t dte_slot(GuestWindow mem, const device_table_t* table,
                              uint64_t device_id) noexcept nogil:
    """Guest address of DeviceID's DTE, or NO_SLOT (docs/front-end.md,
    "Device-table slot"; the caller checks DeviceID against the ITS's
    DeviceID bits first).  Flat: DeviceID < slots.  Indirect: level-1 index
    DeviceID / DTEs per page < slots, its descriptor inside guest memory and
    valid.  Either way the DTE's 8 bytes inside guest memory."""
    cdef uint64_t slot, page
    if not table.indirect:
        if device_id >= table.slots:
            return NO_SLOT
        slot = table.base + device_id * DEVICE_TABLE_ENTRY_BYTES
    else:
        if device_id // table.dtes_per_page >= table.slots:
            return NO_SLOT
        if read_descriptor(mem, table, device_id // table.dtes_per_page, &page) != WALK_FOUND:
            return NO_SLOT
        slot = page + (device_id % table.dtes_per_page) * DEVICE_TABLE_ENTRY_BYTES
    if not guest_contains(mem, slot, DEVICE_TABLE_ENTRY_BYTES):
        return NO_SLOT
    return slot


cdef inline uint64_t _first_valid_entry(const uint8_t* table, uint64_t start, uint64_t end,
                                     uint64_t valid) noexcept nogil:
    """Index of the first 8-byte entry in [start, end) of the table at
    `table` with the `valid` bit set, or `end`; four entries a test while
    none is."""
    cdef uint64_t index = start, a, b, c, d
    while index + 4 <= end:
        memcpy(&a, table + index * DEVICE_TABLE_ENTRY_BYTES, 8)
        memcpy(&b, table + (index + 1) * DEVICE_TABLE_ENTRY_BYTES, 8)
        memcpy(&c, table + (index + 2) * DEVICE_TABLE_ENTRY_BYTES, 8)
        memcpy(&d, table + (index + 3) * DEVICE_TABLE_ENTRY_BYTES, 8)
        if (a | b | c | d) & valid:
            break
        index += 4
    while index < end:
        memcpy(&a, table + index * DEVICE_TABLE_ENTRY_BYTES, 8)
        if a & valid:
            return index
        index += 1
    return end


cdef inline int next_level2_page(GuestWindow mem, const device_table_t* table, uint64_t* index,
                                 uint64_t* page) noexcept nogil:
    """From level-1 entry `index` on, the first valid descriptor: WALK_FOUND
    with `index` and `page` set (the page is not checked against guest
    memory), WALK_DESCRIPTOR_OUTSIDE at `index`, or WALK_END."""
    cdef int found
    if index[0] < table.slots and guest_contains(
            mem, table.base + index[0] * DEVICE_TABLE_ENTRY_BYTES,
            (table.slots - index[0]) * DEVICE_TABLE_ENTRY_BYTES):
        # The rest of the level-1 table lies in guest memory: skip invalid
        # descriptors several at a time.
        index[0] = _first_valid_entry(&mem.data[table.base - mem.base], index[0], table.slots,
                                      table.fields.descriptor_valid)
    while index[0] < table.slots:
        found = read_descriptor(mem, table, index[0], page)
        if found != WALK_INVALID:
            return found
        index[0] += 1
    return WALK_END


cdef inline void walk_start(const device_table_t* table, dte_cursor_t* cursor) noexcept nogil:
    """Put `cursor` before the first DTE of the table."""
    cursor.next_descriptor = 0
    cursor.first_device_id = 0
    cursor.offset = 0
    cursor.device_id = 0
    cursor.dte = 0
    if table.indirect:
        cursor.page = 0
        cursor.dtes = 0
    else:
        cursor.page = table.base
        cursor.dtes = table.slots


cdef inline int walk_next(GuestWindow mem, const device_table_t* table,
                          dte_cursor_t* cursor) noexcept nogil:
    """The next valid DTE at or after the cursor, in KVM's restore scan order
    (docs/save-format.md, "Restoring"): WALK_FOUND (cursor.device_id,
    cursor.dte), WALK_END, or where guest memory ends first:
    WALK_DTE_OUTSIDE (flat: cursor.device_id), WALK_DESCRIPTOR_OUTSIDE or
    WALK_PAGE_OUTSIDE (level-1 entry cursor.next_descriptor, page cursor.page).

    Flat: each DTE is checked against guest memory as it is read.  Indirect:
    each valid descriptor's whole level-2 page is checked before any of its
    DTEs is read; a page done (or left by a `next`) continues at the next
    valid level-1 entry."""
    cdef uint64_t addr, page, index
    cdef int found
    while True:
        if cursor.offset < cursor.dtes and (table.indirect or guest_contains(
                mem, cursor.page + cursor.offset * DEVICE_TABLE_ENTRY_BYTES,
                (cursor.dtes - cursor.offset) * DEVICE_TABLE_ENTRY_BYTES)):
            # The rest of the page (a level-2 page was checked whole) lies in
            # guest memory: look for its next valid DTE several at a time.
            index = _first_valid_entry(&mem.data[cursor.page - mem.base], cursor.offset,
                                     cursor.dtes, table.fields.dte_valid)
            cursor.offset = index
            if index < cursor.dtes:
                cursor.device_id = cursor.first_device_id + index
                cursor.dte = guest_read_u64(mem, cursor.page + index * DEVICE_TABLE_ENTRY_BYTES)
                return WALK_FOUND
        while cursor.offset < cursor.dtes:
            addr = cursor.page + cursor.offset * DEVICE_TABLE_ENTRY_BYTES
            cursor.device_id = cursor.first_device_id + cursor.offset
            if not table.indirect and not guest_contains(mem, addr, DEVICE_TABLE_ENTRY_BYTES):
                return WALK_DTE_OUTSIDE
            cursor.dte = guest_read_u64(mem, addr)
            if cursor.dte & table.fields.dte_valid:
                return WALK_FOUND
            cursor.offset += 1
        if not table.indirect:
            return WALK_END
        found = next_level2_page(mem, table, &cursor.next_descriptor, &page)
        if found != WALK_FOUND:
            return found
        cursor.page = page
        if not guest_contains(mem, page, table.page_bytes):
            return WALK_PAGE_OUTSIDE
        cursor.first_device_id = cursor.next_descriptor * table.dtes_per_page
        cursor.offset = 0
        cursor.dtes = table.dtes_per_page
        cursor.next_descriptor += 1


cdef inline bint walk_follow(const device_table_t* table, dte_cursor_t* cursor) noexcept nogil:
    """Step past the DTE walk_next found by its `next`: False when `next` is 0
    (the last device: the whole scan ends).  A step past the flat table ends
    the scan at the next walk_next; one past a level-2 page goes on at the
    next valid level-1 entry."""
    cdef uint64_t step = (cursor.dte >> table.fields.dte_next_shift) & table.fields.dte_next_max
    if step == 0:
        return False
    cursor.offset += step
    return True
