# The command processor: runs ITS commands from the queue in guest memory
# against the translation core and the LPI side.

from its_core.core._types cimport (cpu_t, devid_t, eventid_t, intid_t, ite_t, uint8_t, uint32_t,
                                   uint64_t)
from its_core.core._core cimport TranslationTables
from its_core.frontend._devtable cimport device_table_t
from its_core.frontend._lpi cimport LPIState
from its_core.frontend._guest cimport GuestWindow


cdef class CommandProcessor:
    cdef TranslationTables tables
    cdef LPIState lpi
    cdef GuestWindow mem
    # Device table (GITS_BASER0) and collection table (GITS_BASER1), as
    # configured by the front end before each run (they cannot change while
    # the ITS is enabled).
    cdef device_table_t device_table    # flat or two-level, walked by _devtable.pxd
    cdef public bint its_enabled     # GITS_CTLR.Enabled (kept by the front end)
    # GICv4: 0 for a GICv3 processor, 1 GICv4.0, 2 GICv4.1 (selects the
    # handler and field tables); the vPE table (GITS_BASER2) as configured;
    # the redistributors' VirtualLPIs (None for GICv3).
    cdef readonly int version_index
    cdef device_table_t vpe_table
    cdef uint64_t ite_bytes          # ITT entry: 8 (GICv3, KVM rev0), 16 (GICv4, its-core-rev1)
    cdef uint64_t vpe_entry_bytes    # vPE table entry: 8 (GICv4.0), 32 (GICv4.1)
    cdef object virtual
    cdef uint64_t collection_slots  # BASER1 table bytes / 8
    # Error log: one row per failed command.
    cdef object log_array           # ndarray ERROR_DTYPE, grown by doubling
    cdef readonly Py_ssize_t error_count
    cdef readonly Py_ssize_t errors_dropped
    cdef readonly Py_ssize_t max_errors

    cdef uint64_t _device_slot(self, uint64_t device_id) noexcept
    cdef bint _collection_slot(self, uint64_t icid) noexcept
    cdef int _record(self, uint64_t offset, uint32_t opcode, uint32_t code) except -1
    cdef int _drop_device_pending(self, uint64_t device_id) except -1
    cdef tuple _run(self, uint64_t queue_base, uint64_t queue_bytes, uint64_t creadr,
                    uint64_t cwriter, bint stall_on_error)
