"""The LPI side of the redistributors: pending bitmaps and the config cache.

Pending state is one bitmap per CPU in the exact layout of a GICv3 LPI
pending table (bit ``INTID % 8`` of byte ``INTID // 8``), so loading it from
or saving it to guest memory is a copy.  Only bytes 1024 (INTID 8192) up to
``limit / 8`` are ever read from or written to a table in guest memory.

The configuration cache holds one byte per INTID (priority in [7:2], enable
in bit 0), loaded from the table at GICR_PROPBASER only when the front end
says so (MAPTI/MAPI, INV, INVALL, EnableLPIs), as KVM does: edits to the
table in between are not seen.  Bytes outside guest memory load as 0.
"""

import numpy as np

cimport cython
from libc.string cimport memcpy, memset

cdef extern from *:
    """
    #if defined(__GNUC__)
    #define ITS_CTZ64(value) __builtin_ctzll(value)
    #else
    static int ITS_CTZ64(unsigned long long value) {
        int bit = 0;
        while (!(value & 1)) { value >>= 1; bit++; }
        return bit;
    }
    #endif
    """
    int ITS_CTZ64(unsigned long long value) nogil   # index of the lowest set bit (value != 0)

from its_core.core._core cimport OK, LPIS_DISABLED, INTID_OUT_OF_RANGE
from its_core.frontend._guest cimport guest_contains
from its_core.core._types cimport CPU_NONE, LPI_FIRST_INTID

cdef enum:
    RESERVED_BYTES = LPI_FIRST_INTID // 8

#: Bytes of a pending table that are IMPLEMENTATION DEFINED (INTIDs < 8192).
PENDING_RESERVED_BYTES = RESERVED_BYTES


def _guest_span(GuestWindow mem, uint64_t addr, uint64_t nbytes):
    """(first, last) byte offsets into [addr, addr + nbytes) that lie in guest
    memory, as offsets from `addr`; (0, 0) when nothing does."""
    cdef uint64_t start = max(addr, mem.base)
    cdef uint64_t memory_end = mem.base + mem.size
    cdef uint64_t end = min(addr + nbytes if addr + nbytes >= addr else <uint64_t>-1,
                            memory_end)
    if start >= end:
        return 0, 0
    return start - addr, end - addr


cdef class LPIState:
    """Pending bitmaps, config cache and EnableLPIs of every redistributor."""

    def __init__(self, GuestWindow mem, int num_cpus, int intid_bits):
        if not 1 <= num_cpus <= 65536:
            raise ValueError(f"num_cpus must be in 1..65536, got {num_cpus}")
        if not 14 <= intid_bits <= 24:
            raise ValueError(f"intid_bits must be in 14..24 for the front end, got {intid_bits}")
        self.mem = mem
        self.num_cpus = num_cpus
        self.intid_bits = intid_bits
        self.pending_array = np.zeros((num_cpus, (1 << intid_bits) // 8), np.uint8)
        self.pending = self.pending_array
        self.config_array = np.zeros(1 << intid_bits, np.uint8)
        self.config = self.config_array
        self.enabled_array = np.zeros(num_cpus, np.uint8)
        self.lpis_enabled = self.enabled_array
        self.set_propbaser(0, 0)

    def set_propbaser(self, uint64_t prop_addr, int id_bits_field):
        """Take GICR_PROPBASER's address and IDbits field (bits - 1)."""
        self.prop_addr = prop_addr
        self.limit = (<uint64_t>1) << min(id_bits_field + 1, self.intid_bits)
        self.version += 1

    cdef void set_pending(self, cpu_t cpu, intid_t intid) noexcept:
        self.pending[cpu, intid >> 3] |= <uint8_t>(1 << (intid & 7))
        self.version += 1

    cdef void clear_pending(self, cpu_t cpu, intid_t intid) noexcept:
        self.pending[cpu, intid >> 3] &= <uint8_t>~(1 << (intid & 7))
        self.version += 1

    def _checked_lpi(self, int cpu, uint64_t intid):
        """ValueError unless `cpu` is a redistributor and `intid` an LPI below
        the limit: the callers (direct LPI registers) decide what a guest's
        bad value does before they call."""
        if not 0 <= cpu < self.num_cpus or not LPI_FIRST_INTID <= intid < self.limit:
            raise ValueError(f"CPU {cpu} / LPI {intid} out of range")

    def set_lpi(self, int cpu, uint64_t intid):
        """Make LPI `intid` pending on `cpu` (GICR_SETLPIR)."""
        self._checked_lpi(cpu, intid)
        self.set_pending(cpu, <intid_t>intid)

    def clear_lpi(self, int cpu, uint64_t intid):
        """Clear the pending state of LPI `intid` on `cpu` (GICR_CLRLPIR)."""
        self._checked_lpi(cpu, intid)
        self.clear_pending(cpu, <intid_t>intid)

    def reload_config(self, uint64_t intid):
        """Reload the configuration byte of LPI `intid` (GICR_INVLPIR)."""
        self._checked_lpi(0, intid)
        self.load_config(<intid_t>intid)

    cdef bint is_pending(self, cpu_t cpu, intid_t intid) noexcept:
        return (self.pending[cpu, intid >> 3] >> (intid & 7)) & 1

    cdef void move_pending(self, intid_t intid, cpu_t source, cpu_t target) noexcept:
        """MOVI: a pending LPI follows its event (dropped if the target has
        LPIs disabled, since such a CPU holds no pending state)."""
        if source == target or not self.is_pending(source, intid):
            return
        self.clear_pending(source, intid)
        if self.lpis_enabled[target]:
            self.set_pending(target, intid)

    cdef void move_all(self, cpu_t source, cpu_t target) noexcept:
        """MOVALL: OR the source's pending bits into the target, clear the source."""
        cdef Py_ssize_t index
        if source == target:
            return
        if self.lpis_enabled[target]:
            for index in range(RESERVED_BYTES, self.pending.shape[1]):
                self.pending[target, index] |= self.pending[source, index]
        memset(&self.pending[source, 0], 0, self.pending.shape[1])
        self.version += 1

    cdef void load_config(self, intid_t intid) noexcept:
        """Cache the config byte of one LPI (0 if outside guest memory)."""
        cdef uint64_t addr = self.prop_addr + (intid - LPI_FIRST_INTID)
        if guest_contains(self.mem, addr, 1):
            self.config[intid] = self.mem.data[addr - self.mem.base]
        else:
            self.config[intid] = 0
        self.version += 1

    def load_config_many(self, intids):
        """Cache the config bytes of the LPIs in `intids` (uint32 array)."""
        cdef const uint32_t[:] view = np.ascontiguousarray(intids, np.uint32)
        cdef Py_ssize_t index
        for index in range(view.shape[0]):
            self.load_config(view[index])

    def load_all_config(self):
        """Cache the config byte of every LPI below the limit (EnableLPIs)."""
        count = max(0, <Py_ssize_t>self.limit - LPI_FIRST_INTID)
        self.version += 1
        self.config_array[LPI_FIRST_INTID:] = 0
        first, last = _guest_span(self.mem, self.prop_addr, count)
        if last > first:
            offset = self.prop_addr + first - self.mem.base
            self.config_array[LPI_FIRST_INTID + first:LPI_FIRST_INTID + last] = \
                self.mem.array[offset:offset + (last - first)]

    def enable(self, int cpu, uint64_t pend_addr, bint table_is_zero):
        """GICR_CTLR.EnableLPIs 0 -> 1: load the pending bitmap (unless PTZ)
        and the whole config cache."""
        self.pending_array[cpu] = 0
        if not table_is_zero:
            self.load_pending(cpu, pend_addr)
        self.lpis_enabled[cpu] = 1
        self.load_all_config()

    def pending_span(self):
        """(first, end) byte offsets of a pending table that hold LPIs below
        the limit: the only bytes ever read or written in guest memory."""
        return PENDING_RESERVED_BYTES, max(PENDING_RESERVED_BYTES, <Py_ssize_t>(self.limit // 8))

    def load_pending(self, int cpu, uint64_t pend_addr):
        """Copy `cpu`'s pending bits from its table (bytes outside guest
        memory read as 0; bytes below 1024 and beyond the limit untouched)."""
        start, end = self.pending_span()
        self.version += 1
        row = self.pending_array[cpu]
        row[start:] = 0
        first, last = _guest_span(self.mem, pend_addr + start, end - start)
        if last > first:
            offset = pend_addr + start + first - self.mem.base
            row[start + first:start + last] = self.mem.array[offset:offset + (last - first)]

    def save_pending(self, int cpu, uint64_t pend_addr):
        """Copy `cpu`'s pending bits into its table; the caller checked that the
        span lies inside guest memory."""
        start, end = self.pending_span()
        offset = pend_addr + start - self.mem.base
        self.mem.array[offset:offset + (end - start)] = self.pending_array[cpu, start:end]

    def disable(self, int cpu):
        """GICR_CTLR.EnableLPIs 1 -> 0: the CPU's pending state is dropped."""
        self.pending_array[cpu] = 0
        self.lpis_enabled[cpu] = 0
        self.version += 1

    def pending_intids(self, int cpu):
        """Sorted uint32 INTIDs pending on `cpu`."""
        bits = np.unpackbits(self.pending_array[cpu], bitorder="little")
        return np.flatnonzero(bits).astype(np.uint32)

    def highest_pending(self, int cpu, int priority_mask=0xFF):
        """(intid, priority) of the highest-priority enabled pending LPI of
        `cpu` whose priority (config bits [7:2], as 0..252) is strictly below
        `priority_mask`, ties to the lowest INTID; None if there is none.  One
        native scan of the bitmap, 64 INTIDs per step; nothing changes."""
        cdef const uint8_t* row = &self.pending[cpu, 0]
        cdef Py_ssize_t offset, length = self.pending.shape[1]
        cdef uint64_t word
        cdef intid_t intid, chosen = 0
        cdef int bit, best = min(priority_mask, 0x100)
        cdef int mask = best
        cdef uint8_t config
        with nogil:
            for offset in range(RESERVED_BYTES, length - 7, 8):
                memcpy(&word, row + offset, 8)
                while word:
                    bit = ITS_CTZ64(word)
                    word &= word - 1
                    intid = <intid_t>(offset * 8 + bit)
                    config = self.config[intid]
                    if config & 1 and (config & 0xFC) < best:
                        best = config & 0xFC
                        chosen = intid
        if best == mask:
            return None
        return chosen, best

    def acknowledge(self, int cpu, int priority_mask=0xFF):
        """Clear and return the LPI `highest_pending` names, or None."""
        found = self.highest_pending(cpu, priority_mask)
        if found is None:
            return None
        self.clear_pending(cpu, <intid_t>found[0])
        return found[0]

    def deliver(self, const uint32_t[::1] intids, const int32_t[::1] cpus,
                uint8_t[::1] statuses):
        """Make the translated LPIs of a batch pending.  Statuses that are OK
        become LPIS_DISABLED or INTID_OUT_OF_RANGE where delivery fails.  A C
        loop that keeps the GIL: deliveries from several threads never
        interleave, so none loses another's pending bits (docs/threads.md)."""
        cdef Py_ssize_t index
        cdef cpu_t cpu
        cdef intid_t intid
        for index in range(statuses.shape[0]):
            if statuses[index] != OK:
                continue
            cpu = cpus[index]
            intid = intids[index]
            if not self.lpis_enabled[cpu]:
                statuses[index] = LPIS_DISABLED
            elif intid >= self.limit:
                statuses[index] = INTID_OUT_OF_RANGE
            else:
                self.pending[cpu, intid >> 3] |= <uint8_t>(1 << (intid & 7))
        self.version += 1

    def load_state(self, pending, config, enabled):
        """Replace every CPU's pending bitmap, the config cache and the
        EnableLPIs flags with copies of `pending` (uint8, num_cpus x
        2**intid_bits / 8), `config` (uint8, 2**intid_bits) and `enabled`
        (bool, num_cpus), as a host snapshot restores them: nothing is read
        from guest memory.  ValueError for arrays of another shape."""
        pending = np.asarray(pending)
        config = np.asarray(config)
        enabled = np.asarray(enabled)
        for name, array, target in (("pending", pending, self.pending_array),
                                    ("config", config, self.config_array),
                                    ("enabled", enabled, self.enabled_array)):
            if array.shape != target.shape:
                raise ValueError(f"{name} has shape {array.shape}, expected {target.shape}")
        self.pending_array[...] = pending
        self.config_array[...] = config
        self.enabled_array[...] = enabled != 0
        self.version += 1

    def reset_pending(self):
        """Drop every CPU's pending state."""
        self.pending_array[:] = 0
        self.version += 1
