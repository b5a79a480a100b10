# The command processor: runs ITS commands from the queue in guest memory
# against the translation core and the LPI side.

from its_core.core._types cimport (cpu_t, devid_t, eventid_t, intid_t, ite_t, uint8_t, uint32_t,
                                   uint64_t)
from its_core.core._core cimport TranslationTables
from its_core.frontend._lpi cimport LPIState
from its_core.frontend._guest cimport GuestWindow


cdef class CommandProcessor:
    cdef TranslationTables tables
    cdef LPIState lpi
    cdef GuestWindow mem
    # Device table (GITS_BASER0) and collection table (GITS_BASER1), as
    # configured by the front end before each run (they cannot change while
    # the ITS is enabled).
    cdef uint64_t device_table      # base address (flat table or level-1 table)
    cdef uint64_t device_table_bytes
    cdef uint64_t device_page_bytes # page size (level-2 page size when indirect)
    cdef bint device_indirect
    cdef public bint its_enabled     # GITS_CTLR.Enabled (kept by the front end)
    cdef uint64_t collection_slots  # BASER1 table bytes / 8
    # Error log: one row per failed command.
    cdef object log_array           # ndarray ERROR_DTYPE, grown by doubling
    cdef readonly Py_ssize_t error_count
    cdef readonly Py_ssize_t errors_dropped
    cdef readonly Py_ssize_t max_errors

    cdef uint64_t _device_slot(self, uint64_t device_id) noexcept
    cdef bint _collection_slot(self, uint64_t icid) noexcept
    cdef uint32_t _execute(self, const uint64_t* dwords) except 0xFFFFFFFF
    cdef int _record(self, uint64_t offset, uint32_t opcode, uint32_t code) except -1
    cdef int _drop_device_pending(self, uint64_t device_id) except -1
