"""Device directories: DeviceID -> device record, in three storage layouts.

``flat``
    One record per possible DeviceID, directly indexed.  Fastest; costs
    ``24 * 2**device_bits`` bytes, so it is offered up to 20 DeviceID bits.
``twolevel``
    Like a GITS_BASER indirect table: a level-1 array of page numbers and
    pages of ``2**page_shift`` records, allocated on first use.  The level-1
    array only grows as far as the highest page in use.
``hash``
    Open addressing with linear probing on the DeviceID, load factor at most
    1/2, backward-shift deletion (no tombstones).  Memory follows the number of
    devices, whatever their IDs.

All three hand out ``device_t`` records that stay in place until the device
is removed (hash: until the next insert or remove, which may move buckets).
"""

import numpy as np

cimport cython
from libc.string cimport memset


# The numpy twin of device_t; checked against sizeof(device_t) at import.
DEVICE_DTYPE = np.dtype([
    ("itt_addr", np.uint64),
    ("device_id", np.uint32),
    ("ite_base", np.uint32),
    ("num_events", np.uint32),
    ("event_bits", np.uint8),
    ("slab_log2", np.uint8),
    ("flags", np.uint8),
    ("_pad", np.uint8),
])
assert DEVICE_DTYPE.itemsize == sizeof(device_t), "DEVICE_DTYPE does not match device_t"

from its_core.core.parameters import FLAT_MAX_DEVICE_BITS
#: Devices per page of the two-level layout (1024 records = 24 KiB).
TWOLEVEL_PAGE_SHIFT = 10
_HASH_MIN_BUCKETS = 64
#: A bulk hash load orders the records by the top this-many bits of their home bucket.
_HASH_LOAD_BIN_BITS = 12


def sorted_order(ids):
    """The permutation that sorts a uint32 array (intp; ties keep their order).

    A least-significant-byte-first radix sort, skipping bytes every ID shares:
    a few linear passes, several times faster than `numpy.argsort` on the
    tens of thousands of scattered DeviceIDs of a hash directory."""
    cdef const uint32_t[::1] keys = np.ascontiguousarray(ids, np.uint32)
    cdef Py_ssize_t length = keys.shape[0], index
    if length <= 256:
        return np.argsort(np.asarray(keys), kind="stable")
    order_array = np.arange(length, dtype=np.intp)
    spare_array = np.empty(length, np.intp)
    cdef Py_ssize_t[::1] order = order_array
    cdef Py_ssize_t[::1] spare = spare_array
    cdef Py_ssize_t[::1] swap
    cdef Py_ssize_t counts[256]
    cdef Py_ssize_t total, bucket
    cdef int shift
    cdef uint32_t differ = 0
    for index in range(1, length):
        differ |= keys[index] ^ keys[0]
    for shift in range(0, 32, 8):
        if not ((differ >> shift) & 0xFF):
            continue
        memset(counts, 0, sizeof(counts))
        for index in range(length):
            counts[(keys[order[index]] >> shift) & 0xFF] += 1
        total = 0
        for bucket in range(256):
            total, counts[bucket] = total + counts[bucket], total
        for index in range(length):
            bucket = (keys[order[index]] >> shift) & 0xFF
            spare[counts[bucket]] = order[index]
            counts[bucket] += 1
        swap = order
        order = spare
        spare = swap
        order_array, spare_array = spare_array, order_array
    return order_array


def _record_ids(object records):
    """DeviceIDs of the occupied records of a structured array."""
    return records["device_id"][records["event_bits"] != 0]


cdef class DeviceDirectory:
    """Base of the three layouts: DeviceID -> ``device_t`` record."""

    def __init__(self, int device_bits):
        if not 1 <= device_bits <= 32:
            raise ValueError(f"device_bits must be in 1..32, got {device_bits}")
        self.device_bits = device_bits
        self.count = 0
        self.generation = 0

    cdef device_t* insert(self, devid_t device_id) except NULL:
        """Zeroed record for a DeviceID not yet present (may grow storage)."""
        raise NotImplementedError

    cdef void remove(self, devid_t device_id) noexcept:
        """Free the record of a present DeviceID."""
        pass

    cdef list storage(self):
        """Every record array of the layout, as 1-D structured ndarrays (views)."""
        raise NotImplementedError

    cdef object fill(self, lookup_t* view):
        """Point the layout fields of `view` at this directory's arrays and
        return those arrays: the caller keeps them while it uses `view`."""
        return ()

    cdef device_t* lookup(self, devid_t device_id) noexcept:
        """Record of `device_id` or NULL (through the layout's inline find)."""
        return NULL

    cdef int load(self, object records) except -1:
        """Fill this empty directory with `records` (DEVICE_DTYPE, complete,
        by strictly increasing DeviceID below 2**device_bits, checked by the
        caller): a bulk load's one step, each array allocated once."""
        raise NotImplementedError

    cdef int _check_load(self, object records) except -1:
        """ValueError unless the directory is empty and `records` a device
        record array: the part of `load`'s contract that is cheap to check."""
        if self.count:
            raise ValueError("load: the directory is not empty")
        if not isinstance(records, np.ndarray) or records.dtype != DEVICE_DTYPE \
                or records.ndim != 1:
            raise ValueError("load: expected a 1-D array of device records")
        return 0

    @property
    def nbytes(self):
        """Bytes held by the directory's arrays."""
        raise NotImplementedError

    def device_ids(self):
        """Sorted uint32 array of the DeviceIDs present."""
        arrays = [_record_ids(records) for records in self.storage()]
        ids = np.concatenate(arrays) if arrays else np.empty(0, np.uint32)
        ids.sort()
        return ids

    def records(self):
        """Structured array (DEVICE_DTYPE) of the present devices, by DeviceID."""
        # A native scan that stops once `count` records are found (a small
        # state in a big flat table costs little), then np.take, not fancy
        # indexing: much faster on structured arrays.
        cdef Py_ssize_t remaining = self.count, index, found
        cdef device_t[::1] view
        cdef Py_ssize_t[::1] positions
        parts = []
        for records in self.storage():
            view = records
            chosen = np.empty(min(remaining, view.shape[0]), np.intp)
            positions = chosen
            found = 0
            with nogil:
                for index in range(view.shape[0]):
                    if found == positions.shape[0]:
                        break
                    if view[index].event_bits:
                        positions[found] = index
                        found += 1
            remaining -= found
            parts.append(np.take(records, chosen[:found]))
        merged = np.concatenate(parts) if len(parts) != 1 else parts[0]
        ids = merged["device_id"]
        if ids.size > 1 and not (ids[1:] > ids[:-1]).all():    # flat: already in order
            merged = np.take(merged, sorted_order(ids))         # IDs are unique
        return merged


#: device_bits -> the all-empty record array that empty flat directories share.
_EMPTY_FLAT = {}


@cython.final
cdef class FlatDirectory(DeviceDirectory):
    """Directly indexed: one record per possible DeviceID."""

    def __init__(self, int device_bits):
        super().__init__(device_bits)
        if device_bits > FLAT_MAX_DEVICE_BITS:
            raise ValueError(
                f"the flat layout holds at most {FLAT_MAX_DEVICE_BITS} DeviceID bits "
                f"(got {device_bits}); use layout='twolevel' or 'hash' for wider IDs")
        # Until its first device, a directory reads the one empty array of
        # its size that every empty flat directory shares (never written):
        # a new, reset or about-to-be-loaded directory allocates nothing.
        self.records_array = _EMPTY_FLAT.get(device_bits)
        if self.records_array is None:
            self.records_array = _EMPTY_FLAT[device_bits] = np.zeros(1 << device_bits,
                                                                     DEVICE_DTYPE)
        self.records = self.records_array
        self.shared = True

    cdef int _own(self) except -1:
        """Give the directory its own records before the first write."""
        if self.shared:
            self.records_array = np.zeros(1 << self.device_bits, DEVICE_DTYPE)
            self.records = self.records_array
            self.shared = False
            self.generation += 1
        return 0

    cdef device_t* insert(self, devid_t device_id) except NULL:
        self._own()
        cdef device_t* record = &self.records[device_id]
        memset(record, 0, sizeof(device_t))
        record.device_id = device_id
        self.count += 1
        return record

    cdef void remove(self, devid_t device_id) noexcept:
        memset(&self.records[device_id], 0, sizeof(device_t))
        self.count -= 1

    cdef int load(self, object records) except -1:
        self._check_load(records)
        cdef const device_t[::1] recs = records
        cdef Py_ssize_t index
        if recs.shape[0]:
            self._own()
        for index in range(recs.shape[0]):
            self.records[checked_index(recs[index].device_id, self.records.shape[0])] = recs[index]
        self.count = recs.shape[0]
        return 0

    cdef list storage(self):
        return [self.records_array]

    cdef object fill(self, lookup_t* view):
        view.records = &self.records[0]
        view.records_length = self.records.shape[0]
        return self.records_array

    cdef device_t* lookup(self, devid_t device_id) noexcept:
        cdef lookup_t view
        self.fill(&view)
        return flat_find(&view, device_id)

    @property
    def nbytes(self):
        return self.records_array.nbytes


@cython.final
cdef class TwoLevelDirectory(DeviceDirectory):
    """Paged: level-1 page numbers, pages of records allocated on first use."""

    def __init__(self, int device_bits, int page_shift=TWOLEVEL_PAGE_SHIFT):
        super().__init__(device_bits)
        if not 1 <= page_shift <= 16:
            raise ValueError(f"page_shift must be in 1..16, got {page_shift}")
        self.page_shift = min(page_shift, device_bits)
        self.level1_array = np.zeros(0, np.int32)
        self.level1 = self.level1_array
        # Row 0 is the shared empty page that every absent level-1 entry names.
        self.pages_array = np.zeros((2, 1 << self.page_shift), DEVICE_DTYPE)
        self.pages = self.pages_array
        self.pages_used = 1
        self.page_fill_array = np.zeros(2, np.int32)
        self.page_fill = self.page_fill_array
        self.free_pages = []

    cdef Py_ssize_t _new_page(self) except -1:
        """Number of a zeroed page, reusing an emptied one or growing the pool."""
        if self.free_pages:
            return self.free_pages.pop()
        cdef Py_ssize_t rows = self.pages_array.shape[0]
        if self.pages_used == rows:
            grown = np.zeros((2 * rows, 1 << self.page_shift), DEVICE_DTYPE)
            grown[:rows] = self.pages_array
            fill = np.zeros(2 * rows, np.int32)
            fill[:rows] = self.page_fill_array
            self.pages_array, self.page_fill_array = grown, fill
            self.pages, self.page_fill = grown, fill
            self.generation += 1
        self.pages_used += 1
        return self.pages_used - 1

    cdef device_t* insert(self, devid_t device_id) except NULL:
        cdef uint32_t page_index = device_id >> self.page_shift
        cdef Py_ssize_t length = self.level1_array.shape[0]
        if page_index >= length:
            wanted = max(page_index + 1, 2 * length)
            wanted = min(wanted, 1 << (self.device_bits - self.page_shift))
            grown = np.zeros(wanted, np.int32)
            grown[:length] = self.level1_array
            self.level1_array = grown
            self.level1 = grown
            self.generation += 1
        if self.level1[page_index] == 0:
            self.level1[page_index] = <int32_t>self._new_page()
        cdef int32_t page = self.level1[page_index]
        cdef device_t* record = &self.pages[page, device_id & ((1u << self.page_shift) - 1)]
        memset(record, 0, sizeof(device_t))
        record.device_id = device_id
        self.page_fill[page] += 1
        self.count += 1
        return record

    cdef void remove(self, devid_t device_id) noexcept:
        cdef uint32_t page_index = device_id >> self.page_shift
        cdef int32_t page = self.level1[page_index]
        memset(&self.pages[page, device_id & ((1u << self.page_shift) - 1)], 0,
               sizeof(device_t))
        self.page_fill[page] -= 1
        self.count -= 1
        if self.page_fill[page] == 0:
            self.level1[page_index] = 0
            self.free_pages.append(page)

    cdef int load(self, object records) except -1:
        # One page per level-1 index the DeviceIDs use, numbered in DeviceID
        # order; the arrays are allocated at their final sizes.
        self._check_load(records)
        cdef const device_t[::1] recs = records
        cdef Py_ssize_t length = recs.shape[0], index, pages = 0
        if length == 0:
            return 0
        cdef uint32_t mask = (1u << self.page_shift) - 1, page_index
        for index in range(length):
            if index == 0 or (recs[index].device_id >> self.page_shift) != \
                    (recs[index - 1].device_id >> self.page_shift):
                pages += 1
        self.level1_array = np.zeros((recs[length - 1].device_id >> self.page_shift) + 1,
                                     np.int32)
        self.level1 = self.level1_array
        self.pages_array = np.zeros((pages + 1, 1 << self.page_shift), DEVICE_DTYPE)
        self.pages = self.pages_array
        self.page_fill_array = np.zeros(pages + 1, np.int32)
        self.page_fill = self.page_fill_array
        self.pages_used = pages + 1
        self.free_pages = []
        self.generation += 1
        cdef int32_t page = 0
        for index in range(length):
            page_index = recs[index].device_id >> self.page_shift
            if self.level1[page_index] == 0:
                page += 1
                self.level1[page_index] = page
            self.pages[page, recs[index].device_id & mask] = recs[index]
            self.page_fill[page] += 1
        self.count = length
        return 0

    cdef list storage(self):
        return [self.pages_array[:self.pages_used].reshape(-1)]

    cdef object fill(self, lookup_t* view):
        view.records = &self.pages[0, 0]
        view.records_length = self.pages.shape[0] * self.pages.shape[1]
        view.level1 = &self.level1[0] if self.level1.shape[0] else NULL
        view.level1_length = self.level1.shape[0]
        view.page_shift = self.page_shift
        return self.pages_array, self.level1_array

    cdef device_t* lookup(self, devid_t device_id) noexcept:
        cdef lookup_t view
        self.fill(&view)
        return twolevel_find(&view, device_id)

    @property
    def nbytes(self):
        return (self.level1_array.nbytes + self.pages_array.nbytes
                + self.page_fill_array.nbytes)


@cython.final
cdef class HashDirectory(DeviceDirectory):
    """Open addressing keyed by DeviceID; memory follows the device count."""

    def __init__(self, int device_bits):
        super().__init__(device_bits)
        self._allocate(_HASH_MIN_BUCKETS)

    cdef _allocate(self, Py_ssize_t buckets):
        self.buckets_array = np.zeros(buckets, DEVICE_DTYPE)
        self.buckets = self.buckets_array
        self.mask = buckets - 1
        self.shift = 64 - (buckets.bit_length() - 1)
        self.generation += 1

    cdef device_t* _probe_free(self, devid_t device_id) noexcept:
        """First empty bucket on `device_id`'s probe sequence."""
        cdef uint64_t slot = fib_slot(device_id, self.shift)
        while self.buckets[slot].event_bits != 0:
            slot = (slot + 1) & self.mask
        return &self.buckets[slot]

    cdef int _grow(self) except -1:
        """Double the bucket array and re-insert every record."""
        old = self.buckets_array
        occupied = old[old["event_bits"] != 0]
        self._allocate(2 * old.shape[0])
        cdef device_t[::1] moving = occupied
        cdef Py_ssize_t index
        for index in range(moving.shape[0]):
            self._probe_free(moving[index].device_id)[0] = moving[index]
        return 0

    cdef int load(self, object records) except -1:
        # Buckets for load <= 1/2, then each record placed in the order of its
        # home bucket (a counting sort on the home's top bits): the probes walk
        # the bucket array once, front to back, instead of jumping around it,
        # which is what makes inserting by DeviceID slow.  Any insertion order
        # gives a valid table.
        self._check_load(records)
        cdef const device_t[::1] recs = records
        cdef Py_ssize_t length = recs.shape[0], index, group, buckets = _HASH_MIN_BUCKETS
        while 2 * length > buckets:
            buckets *= 2
        self._allocate(buckets)
        cdef int bin_shift = max(0, (buckets.bit_length() - 1) - _HASH_LOAD_BIN_BITS)
        cdef Py_ssize_t bins = buckets >> bin_shift
        homes = np.empty(length, np.uint32)
        ordered = np.empty(length, DEVICE_DTYPE)
        starts = np.zeros(bins + 1, np.intp)
        cdef uint32_t[::1] home = homes
        cdef device_t[::1] sorted_recs = ordered
        cdef Py_ssize_t[::1] start = starts
        for index in range(length):
            home[index] = <uint32_t>fib_slot(recs[index].device_id, self.shift)
            start[(home[index] >> bin_shift) + 1] += 1
        for group in range(bins):
            start[group + 1] += start[group]
        for index in range(length):                  # the records themselves, by bin
            group = home[index] >> bin_shift
            sorted_recs[start[group]] = recs[index]
            start[group] += 1
        for index in range(length):
            self._probe_free(sorted_recs[index].device_id)[0] = sorted_recs[index]
        self.count = length
        return 0

    cdef device_t* insert(self, devid_t device_id) except NULL:
        if 2 * (self.count + 1) > <Py_ssize_t>(self.mask + 1):
            self._grow()
        cdef device_t* record = self._probe_free(device_id)
        memset(record, 0, sizeof(device_t))
        record.device_id = device_id
        self.count += 1
        return record

    cdef void remove(self, devid_t device_id) noexcept:
        # Backward-shift deletion: pull later members of the cluster into the
        # hole whenever their home slot does not lie cyclically in (hole, slot].
        cdef uint64_t hole = fib_slot(device_id, self.shift)
        while self.buckets[hole].device_id != device_id:
            if self.buckets[hole].event_bits == 0:
                return                      # not present
            hole = (hole + 1) & self.mask
        if self.buckets[hole].event_bits == 0:
            return
        cdef uint64_t slot = hole
        cdef uint64_t home
        while True:
            slot = (slot + 1) & self.mask
            if self.buckets[slot].event_bits == 0:
                break
            home = fib_slot(self.buckets[slot].device_id, self.shift)
            if ((slot - home) & self.mask) >= ((slot - hole) & self.mask):
                self.buckets[hole] = self.buckets[slot]
                hole = slot
        memset(&self.buckets[hole], 0, sizeof(device_t))
        self.count -= 1

    cdef list storage(self):
        return [self.buckets_array]

    cdef object fill(self, lookup_t* view):
        view.records = &self.buckets[0]
        view.records_length = self.buckets.shape[0]
        view.records_mask = self.mask
        view.records_shift = self.shift
        return self.buckets_array

    cdef device_t* lookup(self, devid_t device_id) noexcept:
        cdef lookup_t view
        self.fill(&view)
        return hash_find(&view, device_id)

    @property
    def nbytes(self):
        return self.buckets_array.nbytes
