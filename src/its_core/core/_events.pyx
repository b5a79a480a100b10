"""Event stores: where the ITEs (EventID -> pINTID, ICID) of devices live.

Dense devices own a power-of-two *slab* of one shared pool, indexed by
EventID.  A slab is released when its device is unmapped or outgrows it; the
pool is compacted (live slabs copied into a fresh array) once released slabs
make up half of it, so memory is reused without a free list.

Devices whose mapped EventIDs are too sparse for a slab (a 2**32-entry ITT
with three events, say) keep their ITEs in a shared open-addressing map keyed
by (DeviceID, EventID).  The choice is made per device by the owner
(`TranslationTables`); nothing here allocates 2**event_bits entries eagerly.
"""

import numpy as np

from libc.string cimport memset

from its_core.core._types cimport DEVICE_HAS_SLAB

_POOL_MIN_ENTRIES = 1024
_SPARSE_MIN_BUCKETS = 64
#: Pool indices are stored in device_t.ite_base (uint32).
POOL_MAX_ENTRIES = 1 << 32


cdef class ItePool:
    """Shared array of ITE words carved into per-device slabs."""

    def __init__(self):
        self.entries_array = np.zeros(_POOL_MIN_ENTRIES, np.uint64)
        self.entries = self.entries_array
        self.top = 0
        self.garbage = 0

    cdef Py_ssize_t reserve(self, Py_ssize_t size) except -1:
        """Start index of `size` fresh zero entries at the top, or -2 if the
        caller must compact first (half the pool is garbage).  Grows the pool
        when needed; raises MemoryError past POOL_MAX_ENTRIES."""
        cdef Py_ssize_t capacity = self.entries.shape[0]
        if self.top + size > capacity:
            if self.garbage * 2 >= capacity:
                return -2
            wanted = max(2 * capacity, self.top + size)
            if wanted > POOL_MAX_ENTRIES:
                raise MemoryError("ITE pool would exceed 2**32 entries")
            grown = np.zeros(wanted, np.uint64)
            grown[:self.top] = self.entries_array[:self.top]
            self.entries_array = grown
            self.entries = grown
            self.generation += 1
        cdef Py_ssize_t start = self.top
        self.top += size
        return start

    cdef int adopt(self, object array, Py_ssize_t top) except -1:
        """Replace this (empty) pool by `array`, a uint64 array whose first
        `top` entries hold the slabs a bulk load laid out and whose rest is
        zero: the pool is then allocated once, at its final size."""
        if self.top:
            raise ValueError("adopt: the pool is not empty")
        if array.dtype != np.uint64 or array.ndim != 1 or not 0 <= top <= array.shape[0] \
                or array.shape[0] < 1 or array.shape[0] > POOL_MAX_ENTRIES:
            raise ValueError("adopt: not a pool array")
        self.entries_array = array
        self.entries = array
        self.top = top
        self.garbage = 0
        self.generation += 1
        return 0

    cdef void release(self, device_t* device) noexcept:
        """Give back the slab of `device` (zeroed; its entries become garbage)."""
        cdef Py_ssize_t size
        if device.flags & DEVICE_HAS_SLAB:
            size = (<Py_ssize_t>1) << device.slab_log2
            # Released slabs are zeroed, so every non-zero pool word is live.
            memset(&self.entries[device.ite_base], 0, size * sizeof(ite_t))
            self.garbage += size
            device.flags &= ~DEVICE_HAS_SLAB
            device.slab_log2 = 0
            device.ite_base = 0

    cdef int compact(self, list record_arrays, Py_ssize_t spare) except -1:
        """Copy every live slab named by the device records into a new pool
        with room for `spare` more entries, and rebase the records."""
        cdef Py_ssize_t live = self.top - self.garbage
        cdef Py_ssize_t capacity = max(_POOL_MIN_ENTRIES, 2 * (live + spare))
        if capacity > POOL_MAX_ENTRIES:
            raise MemoryError("ITE pool would exceed 2**32 entries")
        fresh_array = np.zeros(capacity, np.uint64)
        cdef ite_t[::1] fresh = fresh_array
        cdef device_t[::1] records
        cdef Py_ssize_t index, size, top = 0
        for array in record_arrays:
            records = array
            for index in range(records.shape[0]):
                if records[index].event_bits == 0 or not (records[index].flags & DEVICE_HAS_SLAB):
                    continue
                size = (<Py_ssize_t>1) << records[index].slab_log2
                fresh[top:top + size] = self.entries[records[index].ite_base:
                                                     records[index].ite_base + size]
                records[index].ite_base = <uint32_t>top
                top += size
        self.entries_array = fresh_array
        self.entries = fresh
        self.generation += 1
        self.top = top
        self.garbage = 0
        return 0

    cdef object fill(self, lookup_t* view):
        view.pool = &self.entries[0]
        view.pool_length = self.entries.shape[0]
        return self.entries_array

    @property
    def nbytes(self):
        return self.entries_array.nbytes


cdef class SparseEventMap:
    """Open addressing (DeviceID, EventID) -> ITE; linear probing, load <= 1/2."""

    def __init__(self):
        self._allocate(_SPARSE_MIN_BUCKETS)
        self.count = 0

    cdef _allocate(self, Py_ssize_t buckets):
        self.keys_array = np.zeros(buckets, np.uint64)
        self.values_array = np.zeros(buckets, np.uint64)
        self.keys = self.keys_array
        self.values = self.values_array
        self.mask = buckets - 1
        self.generation += 1

    cdef uint64_t _slot_of(self, uint64_t key) noexcept:
        """Bucket holding `key`, or the empty bucket where it would go."""
        cdef uint64_t slot = mix64(key) & self.mask
        while self.values[slot] != 0 and self.keys[slot] != key:
            slot = (slot + 1) & self.mask
        return slot

    cdef int put(self, uint64_t key, ite_t ite) except -1:
        """Insert or overwrite; `ite` must not be 0."""
        cdef uint64_t slot = self._slot_of(key)
        if self.values[slot] != 0:
            self.values[slot] = ite
            return 0
        if 2 * (self.count + 1) > <Py_ssize_t>(self.mask + 1):
            old_keys, old_values = self.keys_array, self.values_array
            live = old_values != 0
            self._allocate(2 * old_keys.shape[0])
            self._reinsert(old_keys[live], old_values[live])
            slot = self._slot_of(key)
        self.keys[slot] = key
        self.values[slot] = ite
        self.count += 1
        return 0

    cdef int ensure_capacity(self, Py_ssize_t count) except -1:
        """Grow the map (once) so that `count` entries in all fit at load <= 1/2."""
        cdef Py_ssize_t buckets = self.mask + 1
        while 2 * count > buckets:
            buckets *= 2
        if buckets == <Py_ssize_t>(self.mask + 1):
            return 0
        old_keys, old_values = self.keys_array, self.values_array
        live = old_values != 0
        self._allocate(buckets)
        self._reinsert(old_keys[live], old_values[live])
        return 0

    cdef _reinsert(self, const uint64_t[::1] keys, const ite_t[::1] values):
        cdef Py_ssize_t index
        cdef uint64_t slot
        for index in range(keys.shape[0]):
            slot = self._slot_of(keys[index])
            self.keys[slot] = keys[index]
            self.values[slot] = values[index]

    cdef ite_t pop(self, uint64_t key) noexcept:
        """Remove `key`; return its ITE (0 if absent).  Backward-shift deletion."""
        cdef uint64_t hole = self._slot_of(key)
        cdef ite_t ite = self.values[hole]
        if ite == 0:
            return 0
        cdef uint64_t slot = hole
        cdef uint64_t home
        while True:
            slot = (slot + 1) & self.mask
            if self.values[slot] == 0:
                break
            home = mix64(self.keys[slot]) & self.mask
            if ((slot - home) & self.mask) >= ((slot - hole) & self.mask):
                self.keys[hole] = self.keys[slot]
                self.values[hole] = self.values[slot]
                hole = slot
        self.keys[hole] = 0
        self.values[hole] = 0
        self.count -= 1
        return ite

    cdef int drop_device(self, devid_t device_id) except -1:
        """Remove every entry of `device_id` (one vectorised scan)."""
        doomed = self.keys_array[(self.values_array != 0)
                                 & ((self.keys_array >> np.uint64(32)) == device_id)]
        cdef const uint64_t[::1] keys = doomed
        cdef Py_ssize_t index
        for index in range(keys.shape[0]):
            self.pop(keys[index])
        return 0

    def entries_of(self, devid_t device_id):
        """(event_ids uint32, ites uint64) of `device_id`, sorted by EventID."""
        live = (self.values_array != 0) & ((self.keys_array >> np.uint64(32)) == device_id)
        event_ids = (self.keys_array[live] & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        ites = self.values_array[live]
        order = np.argsort(event_ids, kind="stable")
        return event_ids[order], ites[order]

    cdef object fill(self, lookup_t* view):
        view.sparse_keys = &self.keys[0]
        view.sparse_values = &self.values[0]
        view.sparse_mask = self.mask
        return self.keys_array, self.values_array

    @property
    def nbytes(self):
        return self.keys_array.nbytes + self.values_array.nbytes
