# Device directories: DeviceID -> device record, in three storage layouts.
#
# A directory owns the device records (device_t, see _types.pxd) and nothing
# else; what a device maps (its ITEs) lives in the event store (_events.pxd).
# Each layout has a `*_find` inline function below so that the translation
# loop in _core.pyx, specialised per layout through a fused type, inlines the
# lookup instead of calling through a vtable.

cimport numpy as cnp
from its_core.core._types cimport (device_t, devid_t, int32_t, lookup_t, uint32_t, uint64_t,
                                   checked_index, fib_slot)


cdef class DeviceDirectory:
    cdef readonly int device_bits       # DeviceIDs are < 2**device_bits
    cdef readonly Py_ssize_t count      # devices held
    cdef readonly Py_ssize_t generation # bumped whenever an array is reallocated

    cdef device_t* insert(self, devid_t device_id) except NULL
    cdef void remove(self, devid_t device_id) noexcept
    cdef list storage(self)
    cdef object fill(self, lookup_t* view)
    cdef device_t* lookup(self, devid_t device_id) noexcept
    cdef int load(self, object records) except -1
    cdef int _check_load(self, object records) except -1


cdef class FlatDirectory(DeviceDirectory):
    cdef object records_array           # ndarray[DEVICE_DTYPE], one per DeviceID
    cdef device_t[::1] records          # view of records_array
    cdef bint shared                    # records_array is the shared empty one: never written

    cdef int _own(self) except -1


cdef class TwoLevelDirectory(DeviceDirectory):
    cdef readonly int page_shift        # a page holds 2**page_shift devices
    cdef object level1_array            # ndarray[int32]: page number, 0 = none
    cdef int32_t[::1] level1            # grows to the highest page in use
    cdef object pages_array             # ndarray[DEVICE_DTYPE], (pages, page size)
    cdef device_t[:, ::1] pages         # page 0 is never used: always empty
    cdef Py_ssize_t pages_used          # rows of pages_array handed out so far
    cdef object page_fill_array         # ndarray[int32]: devices held per page
    cdef int32_t[::1] page_fill
    cdef list free_pages                # emptied page numbers, reused first

    cdef Py_ssize_t _new_page(self) except -1


cdef class HashDirectory(DeviceDirectory):
    cdef object buckets_array           # ndarray[DEVICE_DTYPE], power-of-two size
    cdef device_t[::1] buckets          # open addressing, linear probing
    cdef uint64_t mask                  # len(buckets) - 1
    cdef int shift                      # 64 - log2(len(buckets))

    cdef _allocate(self, Py_ssize_t buckets)
    cdef device_t* _probe_free(self, devid_t device_id) noexcept
    cdef int _grow(self) except -1



cdef inline device_t* flat_find(const lookup_t* view, devid_t device_id) noexcept nogil:
    """Record of `device_id` (< 2**device_bits, checked by the caller) or NULL."""
    cdef const device_t* record = &view.records[checked_index(device_id, view.records_length)]
    return <device_t*>record if record.event_bits else NULL


cdef inline device_t* twolevel_find(const lookup_t* view, devid_t device_id) noexcept nogil:
    """Record of `device_id` or NULL; an absent page maps to empty page 0."""
    cdef uint64_t page_index = device_id >> view.page_shift
    if page_index >= view.level1_length:
        return NULL
    cdef const device_t* record = &view.records[checked_index(
        ((<uint64_t>view.level1[page_index]) << view.page_shift)
        + (device_id & ((1u << view.page_shift) - 1)), view.records_length)]
    return <device_t*>record if record.event_bits else NULL


cdef inline device_t* hash_find(const lookup_t* view, devid_t device_id) noexcept nogil:
    """Record of `device_id` or NULL (linear probe until an empty bucket)."""
    cdef uint64_t slot = fib_slot(device_id, view.records_shift)
    cdef const device_t* record
    while True:
        record = &view.records[checked_index(slot, view.records_length)]
        if record.event_bits == 0:
            return NULL
        if record.device_id == device_id:
            return <device_t*>record
        slot = (slot + 1) & view.records_mask
