# The LPI side of the redistributors: per-CPU pending bitmaps (in the exact
# layout of a GICv3 pending table), the LPI configuration cache, and each
# CPU's GICR_CTLR.EnableLPIs.

from its_core.core._types cimport cpu_t, intid_t, uint8_t, uint32_t, uint64_t, int32_t
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

    cdef void set_pending(self, cpu_t cpu, intid_t intid) noexcept
    cdef void clear_pending(self, cpu_t cpu, intid_t intid) noexcept
    cdef bint is_pending(self, cpu_t cpu, intid_t intid) noexcept
    cdef void move_pending(self, intid_t intid, cpu_t source, cpu_t target) noexcept
    cdef void move_all(self, cpu_t source, cpu_t target) noexcept
    cdef void load_config(self, intid_t intid) noexcept
