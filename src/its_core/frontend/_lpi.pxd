# The LPI side of the redistributors: per-CPU pending bitmaps (in the exact
# layout of a GICv3 pending table), the LPI configuration cache, each CPU's
# GICR_CTLR.EnableLPIs, and the per-CPU priority index over the pending bits
# (see LPIState in _lpi.pyx).

from its_core.core._types cimport cpu_t, intid_t, ite_t, uint8_t, uint32_t, uint64_t, int32_t
from its_core.frontend._guest cimport GuestWindow


cdef class LPIState:
    cdef readonly int num_cpus          # redistributors
    cdef readonly int intid_bits        # INTIDs are < 2**intid_bits
    cdef GuestWindow mem                # where the config and pending tables live
    cdef readonly object pending_array  # ndarray uint8 (num_cpus, 2**intid_bits // 8)
    cdef uint8_t[:, ::1] pending        # bit INTID % 8 of byte INTID // 8, per CPU
    cdef readonly object config_array   # ndarray uint8 (2**intid_bits,): cached config byte
    cdef uint8_t[::1] config            # by INTID: priority [7:2], enable [0]
    cdef readonly object enabled_array  # ndarray uint8 (num_cpus,): GICR_CTLR.EnableLPIs
    cdef uint8_t[::1] lpis_enabled
    cdef readonly uint64_t limit        # LPI limit: 2**min(PROPBASER.IDbits + 1, intid_bits)
    cdef readonly uint64_t prop_addr    # GICR_PROPBASER physical address
    cdef readonly uint64_t version      # bumped by every change of pending bits, config, enables

    # The priority index of the pending, enabled LPIs (INTID >= 8192), per CPU
    # and priority p = config >> 2.  "Word w" is the 64-INTID word w of the
    # pending bitmap (INTIDs 64w .. 64w + 63).
    cdef readonly Py_ssize_t level1_words   # per (CPU, p): 2**intid_bits / 4096
    cdef readonly Py_ssize_t level2_words   # per (CPU, p): ceil(level1_words / 64)
    cdef uint64_t[:, :, ::1] level1     # (num_cpus, 64, level1_words): bit w <=> word w has one of p
    cdef uint64_t[:, :, ::1] level2     # (num_cpus, 64, level2_words): bit i <=> level1 word i != 0
    cdef uint64_t[:, ::1] level3        # (num_cpus, 64): bit i <=> level2 word i != 0
    cdef uint64_t[::1] priorities       # (num_cpus,): bit p <=> level3[cpu, p] != 0
    cdef uint64_t[::1] pending_count    # (num_cpus,): pending bits at INTIDs >= 8192
    cdef object _index_arrays           # the ndarrays behind those five views

    cdef void set_pending(self, cpu_t cpu, intid_t intid) noexcept
    cdef void clear_pending(self, cpu_t cpu, intid_t intid) noexcept
    cdef bint is_pending(self, cpu_t cpu, intid_t intid) noexcept
    cdef void move_pending(self, intid_t intid, cpu_t source, cpu_t target) noexcept
    cdef void move_all(self, cpu_t source, cpu_t target) noexcept
    cdef void load_config(self, intid_t intid) noexcept

    cdef int _check_cpu(self, int cpu) except -1
    cdef void _pended(self, cpu_t cpu, intid_t intid) noexcept
    cdef void _unpended(self, cpu_t cpu, intid_t intid) noexcept
    cdef void _index_add(self, cpu_t cpu, intid_t intid, uint8_t config) noexcept
    cdef void _index_remove(self, cpu_t cpu, intid_t intid, uint8_t config) noexcept
    cdef void _index_word(self, cpu_t cpu, Py_ssize_t word_index, uint64_t word) noexcept
    cdef void _index_clear(self, cpu_t cpu) noexcept
    cdef void _index_rebuild(self, cpu_t cpu, bint trust_count) noexcept
    cdef void _set_config(self, intid_t intid, uint8_t config) noexcept
    cdef void _copy_config(self) noexcept
    cdef bint _load_config_words(self, const ite_t* words, Py_ssize_t length, uint64_t first,
                                 uint64_t last) noexcept
    cdef uint64_t _config_changes(self, uint64_t first, uint64_t last, bint apply,
                                  uint64_t stop) noexcept
    cdef void _reload_all_config(self) noexcept
    cdef void _copy_pending(self, cpu_t cpu, uint64_t pend_addr) noexcept
    cdef int _find(self, cpu_t cpu, int priority_mask, intid_t* intid, int* priority) except -1
