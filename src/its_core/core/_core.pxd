# The translation core: DeviceID -> ITT -> (EventID -> pINTID, ICID) and
# ICID -> CPU, over one of the three device directories of _layouts.pxd and the
# event stores of _events.pxd.

from its_core.core._types cimport (lookup_t, cpu_t, device_t, devid_t, eventid_t, icid_t, intid_t,
                                   ite_t, uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t)
from its_core.core._layouts cimport DeviceDirectory
from its_core.core._events cimport ItePool, SparseEventMap
from its_core.core._guard cimport TableGuard


cpdef enum TranslationStatus:
    OK = 0                      # translated
    NO_DEVICE = 1               # DeviceID has no mapped device (no valid DTE)
    EVENT_OUT_OF_RANGE = 2      # EventID >= 2**(the device's EventID bits)
    NO_MAPPING = 3              # EventID has no ITE
    NO_COLLECTION = 4           # the ITE's collection is not mapped to a CPU
    DEVICE_OUT_OF_RANGE = 5     # DeviceID >= 2**device_bits
    ITS_DISABLED = 6            # front end: GITS_CTLR.Enabled == 0
    LPIS_DISABLED = 7           # front end: target GICR_CTLR.EnableLPIs == 0
    INTID_OUT_OF_RANGE = 8      # front end: pINTID beyond GICR_PROPBASER.IDbits
    VIRTUAL = 9                 # a virtual ITE whose vPE is mapped (intid = vINTID,
                                # cpu = the vPE's CPU): not delivered as a physical LPI
    VIRTUAL_NO_VPE = 10         # a virtual ITE whose vPE is not mapped (cpu = -1)


cpdef enum MappingFailure:
    DEVICE_ID_OUT_OF_RANGE = 1  # DeviceID >= 2**device_bits
    EVENT_BITS_OUT_OF_RANGE = 2 # EventID bits not in 1..event_bits
    DEVICE_NOT_MAPPED = 3       # no device with that DeviceID
    EVENT_ID_OUT_OF_RANGE = 4   # EventID >= 2**(the device's EventID bits)
    INTID_NOT_LPI = 5           # pINTID < 8192 or >= 2**intid_bits
    EVENT_ALREADY_MAPPED = 6    # the EventID already has an ITE
    ICID_OUT_OF_RANGE = 7       # ICID >= num_collections
    EVENT_NOT_MAPPED = 8        # the EventID has no ITE
    CPU_OUT_OF_RANGE = 9        # CPU number >= num_cpus
    EVENT_IS_VIRTUAL = 10       # a physical-only operation (MOVI) on a virtual ITE
    EVENT_NOT_VIRTUAL = 11      # a virtual-only operation (VMOVI) on a physical ITE
    VPE_ID_OUT_OF_RANGE = 12    # vPEID not in 0..65535
    DOORBELL_NOT_LPI = 13       # doorbell neither 1023 nor an LPI below 2**intid_bits


cdef class TranslationTables:
    cdef readonly str layout            # "flat", "twolevel" or "hash"
    cdef readonly int device_bits       # DeviceIDs are < 2**device_bits
    cdef readonly int event_bits        # a device may have up to this many EventID bits
    cdef readonly int intid_bits        # pINTIDs are < 2**intid_bits
    cdef readonly int num_collections   # ICIDs are < num_collections (<= 65536)
    cdef readonly int num_cpus          # target CPU numbers are < num_cpus
    cdef int layout_code                # LAYOUT_* (selects the fused loop)
    cdef DeviceDirectory directory      # DeviceID -> device_t
    cdef ItePool pool                   # dense ITE slabs
    cdef SparseEventMap sparse          # ITEs of sparse devices
    cdef object collections_array       # ndarray[int32] of 65536 CPU numbers
    cdef cpu_t[::1] collections         # CPU_NONE = unmapped
    cdef readonly Py_ssize_t num_events # physical ITEs held
    cdef readonly Py_ssize_t num_virtual_events # virtual ITEs held (in the same stores)
    cdef readonly Py_ssize_t num_vpes   # mapped vPEs
    cdef SparseEventMap doorbells       # doorbell of every virtual ITE; None until virtual state
    cdef object vpes_array              # ndarray[int32] of 65536 CPU numbers, or None (as doorbells)
    cdef object doorbell_values_array   # ndarray[uint32] of DOORBELL_CODES: doorbell by code ...
    cdef uint32_t[::1] doorbell_values  # ... (_types.pxd), or None (as doorbells)
    cdef dict doorbell_codes            # doorbell pINTID -> its code
    cdef cpu_t[::1] vpes                # CPU_NONE = unmapped
    cdef lookup_t view                  # raw pointers for lookups (see _sync_view)
    cdef tuple view_owner               # the arrays `view` points into
    cdef Py_ssize_t view_generation     # sum of the stores' generations at refresh
    cdef readonly TableGuard guard      # write sections and reader pins (docs/threads.md)

    # Mutators: validate, then change state or nothing.  They return 0 or a
    # MappingFailure code; -1 means a Python exception (MemoryError) is set.
    cdef int _map_device(self, int64_t device_id, int64_t event_bits,
                         uint64_t itt_addr) except -1
    cdef int _unmap_device(self, int64_t device_id) except -1
    cdef int _map_event(self, int64_t device_id, int64_t event_id, int64_t intid,
                        int64_t icid) except -1
    cdef int _unmap_event(self, int64_t device_id, int64_t event_id) except -1
    cdef int _move_event(self, int64_t device_id, int64_t event_id, int64_t icid) except -1
    cdef int _map_collection(self, int64_t icid, int64_t cpu) except -1
    cdef int _unmap_collection(self, int64_t icid) except -1
    cdef int _map_virtual_event(self, int64_t device_id, int64_t event_id, int64_t vintid,
                                int64_t vpe_id, int64_t doorbell) except -1
    cdef int _move_virtual_event(self, int64_t device_id, int64_t event_id, int64_t vpe_id,
                                 int64_t doorbell, bint set_doorbell) except -1
    cdef int _map_vpe(self, int64_t vpe_id, int64_t cpu) except -1
    cdef int _unmap_vpe(self, int64_t vpe_id) except -1
    cdef int _ensure_virtual(self) except -1
    cdef bint _has_virtual_state(self)
    cdef object _virtual_mapping(self, int64_t device_id, int64_t event_id)
    cdef uint64_t _doorbell_of(self, devid_t device_id, eventid_t event_id)
    cdef uint16_t _doorbell_code(self, uint64_t doorbell) except? 0xFFFF

    cdef device_t* _device(self, devid_t device_id) noexcept
    cdef int _drop_events(self, device_t* device) except -1
    cdef int _find_event(self, int64_t device_id, int64_t event_id,
                         device_t** device, ite_t* ite) except -1
    cdef int _add_ite(self, device_t* device, eventid_t event_id, ite_t ite) except -1
    cdef int _prepare_storage(self, device_t* device, eventid_t max_event_id,
                              Py_ssize_t num_events) except -1
    cdef int _store_ite(self, device_t* device, eventid_t event_id, ite_t ite) except -1
    cdef object _mapping(self, int64_t device_id, int64_t event_id)
    cdef bint _is_mapped(self, int64_t device_id)
    cdef bint _few_ites(self, Py_ssize_t mask_size)
    cdef object _live_ites(self)
    cdef object _ite_mask(self, bint by_intid)
    cdef int _refresh_view(self) except -1
    cdef int _sync_view(self) except -1
    cdef uint8_t _translate(self, devid_t device_id, eventid_t event_id,
                            intid_t* intid, cpu_t* cpu) except 255
    cdef Py_ssize_t _load_arrays(self, const uint32_t[::1] devices, const uint8_t[::1] bits,
                                 const uint64_t[::1] itts, const uint32_t[::1] counts,
                                 const uint32_t[::1] events, const uint32_t[::1] intids,
                                 const uint16_t[::1] icids, int* failure) except -2
    cdef int _check_devices(self, dict columns) except -1
    cdef int _slab_log2_for(self, uint64_t last_event_id, Py_ssize_t num_events,
                            int event_bits) noexcept nogil
    cdef object _new_pool(self, Py_ssize_t entries)
    cdef int _load_bulk(self, object records, object pool_array, Py_ssize_t pool_top,
                        Py_ssize_t num_events) except -1
    cdef int _raise_row(self, dict columns, Py_ssize_t row, int failure) except -1


cdef int message_ids(object device_id, object event_id, uint64_t* device,
                     uint64_t* event) except -1
