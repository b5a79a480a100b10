# Event stores: where the ITEs of mapped devices live.
#
# ItePool        one shared array of ITE words; each device with few or dense
#                EventIDs owns a power-of-two slab of it, indexed by EventID.
# SparseEventMap open addressing keyed by (DeviceID << 32 | EventID), for
#                devices whose EventIDs are too sparse for a slab.
# A free ITE word is 0 in both (pINTID 0 is never a valid LPI).

from its_core.core._types cimport (device_t, devid_t, eventid_t, ite_t, lookup_t, uint32_t,
                                   uint64_t, checked_index, mix64, DEVICE_HAS_SLAB, DEVICE_SPARSE)


cdef class ItePool:
    cdef object entries_array           # ndarray[uint64]
    cdef ite_t[::1] entries             # slabs; everything from `top` on is zero
    cdef readonly Py_ssize_t top        # first index never handed out
    cdef readonly Py_ssize_t garbage    # entries inside released slabs
    cdef readonly Py_ssize_t generation # bumped whenever entries is reallocated

    cdef Py_ssize_t reserve(self, Py_ssize_t size) except -1
    cdef int adopt(self, object array, Py_ssize_t top) except -1
    cdef void release(self, device_t* device) noexcept
    cdef int compact(self, list record_arrays, Py_ssize_t spare) except -1
    cdef object fill(self, lookup_t* view)


cdef class SparseEventMap:
    cdef object keys_array              # ndarray[uint64]
    cdef uint64_t[::1] keys             # DeviceID << 32 | EventID
    cdef object values_array            # ndarray[uint64]
    cdef ite_t[::1] values              # 0 = empty bucket
    cdef uint64_t mask                  # buckets - 1
    cdef readonly Py_ssize_t count
    cdef readonly Py_ssize_t generation # bumped whenever the arrays are reallocated

    cdef _allocate(self, Py_ssize_t buckets)
    cdef uint64_t _slot_of(self, uint64_t key) noexcept
    cdef _reinsert(self, const uint64_t[::1] keys, const ite_t[::1] values)
    cdef int put(self, uint64_t key, ite_t ite) except -1
    cdef int ensure_capacity(self, Py_ssize_t count) except -1
    cdef ite_t pop(self, uint64_t key) noexcept
    cdef int drop_device(self, devid_t device_id) except -1
    cdef object fill(self, lookup_t* view)


cdef inline uint64_t sparse_key(devid_t device_id, eventid_t event_id) noexcept nogil:
    return (<uint64_t>device_id << 32) | event_id


cdef inline ite_t sparse_get(const lookup_t* view, uint64_t key) noexcept nogil:
    """ITE stored under `key` in the sparse map, or 0."""
    cdef uint64_t slot = mix64(key) & view.sparse_mask
    cdef ite_t ite
    while True:
        ite = view.sparse_values[checked_index(slot, view.sparse_mask + 1)]
        if ite == 0 or view.sparse_keys[slot] == key:
            return ite
        slot = (slot + 1) & view.sparse_mask


cdef inline ite_t find_ite(const lookup_t* view, const device_t* device,
                           eventid_t event_id) noexcept nogil:
    """ITE of `event_id` on `device` (EventID range checked by the caller), or 0."""
    if device.flags & DEVICE_HAS_SLAB:
        if (<uint64_t>event_id) >> device.slab_log2:
            return 0
        return view.pool[checked_index(<uint64_t>device.ite_base + event_id, view.pool_length)]
    if device.flags & DEVICE_SPARSE:
        return sparse_get(view, sparse_key(device.device_id, event_id))
    return 0
