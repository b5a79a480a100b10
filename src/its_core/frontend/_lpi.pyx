"""The LPI side of the redistributors: pending bitmaps, the config cache and
a priority index over them.

Pending state is one bitmap per CPU in the exact layout of a GICv3 LPI
pending table (bit ``INTID % 8`` of byte ``INTID // 8``), so loading it from
or saving it to guest memory is a copy.  Only bytes 1024 (INTID 8192) up to
``limit / 8`` are ever read from or written to a table in guest memory.

The configuration cache holds one byte per INTID (priority in [7:2], enable
in bit 0), loaded from the table at GICR_PROPBASER only when the front end
says so (MAPTI/MAPI, INV, INVALL, EnableLPIs), as KVM does: edits to the
table in between are not seen.  Bytes outside guest memory load as 0.

Beside them, each CPU keeps an index of its pending, enabled LPIs by
priority (see `LPIState`), which every operation here keeps up to date, so
that `highest_pending` and `acknowledge` cost a few bit operations whatever
the size of the bitmap.

Every method makes its changes in C with the GIL held (memcpy, memset and
loops, never a numpy copy, which may release the GIL): each public method is
atomic for other Python threads.
"""

import numpy as np

cimport cython
from libc.string cimport memcpy, memset

cdef extern from *:
    """
    #if defined(__GNUC__)
    #define ITS_CTZ64(value) __builtin_ctzll(value)
    #define ITS_POPCOUNT64(value) __builtin_popcountll(value)
    #else
    static int ITS_CTZ64(unsigned long long value) {
        int bit = 0;
        while (!(value & 1)) { value >>= 1; bit++; }
        return bit;
    }
    static int ITS_POPCOUNT64(unsigned long long value) {
        int count = 0;
        while (value) { value &= value - 1; count++; }
        return count;
    }
    #endif
    """
    int ITS_CTZ64(unsigned long long value) nogil   # index of the lowest set bit (value != 0)
    int ITS_POPCOUNT64(unsigned long long value) nogil

from its_core.core._core cimport OK, LPIS_DISABLED, INTID_OUT_OF_RANGE, TranslationTables
from its_core.frontend._guest cimport guest_contains
from its_core.core._types cimport ite_intid, ite_is_virtual, ite_t, intid_t
from its_core.core._types cimport CPU_NONE, LPI_FIRST_INTID, ITS_CORE_DEBUG, fprintf, stderr, abort

cdef enum:
    RESERVED_BYTES = LPI_FIRST_INTID // 8
    RESERVED_WORDS = LPI_FIRST_INTID // 64  # first 64-INTID word of a bitmap that holds LPIs
    PRIORITIES = 64                         # config bits [7:2]
    KEY_MASK = 0xFD                         # the config bits the index files an LPI by

#: Bytes of a pending table that are IMPLEMENTATION DEFINED (INTIDs < 8192).
PENDING_RESERVED_BYTES = RESERVED_BYTES

cdef uint64_t ONE = 1


cdef inline bint _guest_span(GuestWindow mem, uint64_t addr, uint64_t nbytes,
                             uint64_t* first, uint64_t* last) noexcept:
    """The byte offsets [first, last) into [addr, addr + nbytes) that lie in
    guest memory, as offsets from `addr`; False (and 0, 0) when none do."""
    cdef uint64_t start = max(addr, mem.base)
    cdef uint64_t memory_end = mem.base + mem.size
    cdef uint64_t end = min(addr + nbytes if addr + nbytes >= addr else <uint64_t>-1, memory_end)
    if start >= end:
        first[0] = last[0] = 0
        return False
    first[0] = start - addr
    last[0] = end - addr
    return True


@cython.final
cdef class LPIState:
    """Pending bitmaps, config cache and EnableLPIs of every redistributor,
    with a per-CPU priority index of the pending, enabled LPIs.

    The index.  For each CPU and each of the 64 priorities p (config bits
    [7:2]), a three-level bitmap over the 64-INTID words of the CPU's pending
    bitmap: level 1 has a bit per pending-bitmap word, set when that word
    holds at least one pending LPI (INTID >= 8192) whose cached config byte is
    enabled with priority p; level 2 a bit per level-1 uint64, set when it is
    non-zero; level 3 (one uint64: at most 24 INTID bits) a bit per level-2
    uint64; and per CPU a 64-bit mask of the priorities with a non-zero level
    3.  `highest_pending` takes the lowest priority of the mask below the
    priority mask, descends the three levels with count-trailing-zeros to
    the lowest such word, and returns its lowest pending LPI filed under that
    priority: the same answer as a scan of the whole bitmap, in a handful of
    bit operations.  A per-CPU count of pending LPIs lets bulk operations skip
    CPUs with nothing pending.

    Memory: 64 x 8 x (2**intid_bits / 4096 + level2_words + 1) + 16 bytes
    per CPU, beside the 2**intid_bits / 8 bytes of its pending bitmap
    (`index_nbytes`): 2.03 MiB against 2 MiB at 24 INTID bits (1.02x), 9 KiB
    against 8 KiB at 16 bits, 3 KiB against 2 KiB at 14 bits.

    Every operation here keeps the index exact: a pending bit going 0 -> 1
    or 1 -> 0 files or unfiles that LPI (a pending bit already set costs
    nothing more), a config byte whose priority or enable bit changes moves
    the LPI on every CPU where it is pending (a disabled one leaves the
    index), and bulk loads refile in one native pass: a pending table
    (EnableLPIs, restore) or MOVALL the CPU concerned; a reload of every
    config byte (EnableLPIs, INVALLR) the CPUs with LPIs pending, or, when
    comparing the old and new bytes reads less and few LPIs change, just
    those LPIs.  Code that writes `pending_array` or `config_array` directly
    must call `rebuild_index` before anything else uses the state (until
    then `highest_pending` may raise RuntimeError or miss an LPI).

    Every public method changes the state in C with the GIL held, so each
    is atomic for other Python threads; `highest_pending` changes nothing.
    """

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
        # Level 1: one bit per 64-INTID word; level 2 one per level-1 uint64;
        # level 3 one per level-2 uint64, which fit one uint64 up to 24 bits.
        self.level1_words = (1 << intid_bits) // (64 * 64)
        self.level2_words = (self.level1_words + 63) // 64
        assert self.level2_words <= 64
        arrays = (np.zeros((num_cpus, PRIORITIES, self.level1_words), np.uint64),
                  np.zeros((num_cpus, PRIORITIES, self.level2_words), np.uint64),
                  np.zeros((num_cpus, PRIORITIES), np.uint64),
                  np.zeros(num_cpus, np.uint64),
                  np.zeros(num_cpus, np.uint64))
        self._index_arrays = arrays
        self.level1, self.level2, self.level3, self.priorities, self.pending_count = arrays
        self.set_propbaser(0, 0)

    @property
    def index_nbytes(self):
        """Bytes held by the priority index (all CPUs)."""
        return sum(array.nbytes for array in self._index_arrays)

    cdef int _check_cpu(self, int cpu) except -1:
        if not 0 <= cpu < self.num_cpus:
            raise ValueError(f"cpu {cpu} is not in 0..{self.num_cpus - 1}")
        return 0

    def set_propbaser(self, uint64_t prop_addr, int id_bits_field):
        """Take GICR_PROPBASER's address and IDbits field (bits - 1)."""
        self.prop_addr = prop_addr
        self.limit = ONE << min(id_bits_field + 1, self.intid_bits)
        self.version += 1

    # -- the index --------------------------------------------------------------------

    cdef void _index_add(self, cpu_t cpu, intid_t intid, uint8_t config) noexcept:
        """File pending LPI `intid` (>= 8192, `config` enabled) under its priority."""
        cdef int priority = config >> 2
        cdef uint64_t word_index = intid >> 6
        cdef uint64_t index1 = word_index >> 6
        cdef uint64_t index2 = index1 >> 6
        cdef uint64_t old = self.level1[cpu, priority, index1]
        cdef uint64_t bit = ONE << (word_index & 63)
        if old & bit:
            return
        self.level1[cpu, priority, index1] = old | bit
        if old:
            return
        old = self.level2[cpu, priority, index2]
        self.level2[cpu, priority, index2] = old | (ONE << (index1 & 63))
        if old:
            return
        old = self.level3[cpu, priority]
        self.level3[cpu, priority] = old | (ONE << index2)
        if old:
            return
        self.priorities[cpu] |= ONE << priority

    cdef void _index_remove(self, cpu_t cpu, intid_t intid, uint8_t config) noexcept:
        """Unfile LPI `intid` (>= 8192), filed under `config` (enabled): its
        word's level-1 bit stays while another pending LPI of the word is
        filed under the same priority.  `intid`'s own pending bit and config
        byte are not looked at, so this may run before either changes."""
        cdef int priority = config >> 2
        cdef uint64_t word_index = intid >> 6
        cdef uint64_t index1 = word_index >> 6
        cdef uint64_t index2 = index1 >> 6
        cdef intid_t base = <intid_t>(word_index << 6)
        cdef uint64_t word, value
        cdef int bit
        memcpy(&word, &self.pending[cpu, word_index << 3], 8)
        word &= ~(ONE << (intid & 63))
        while word:
            bit = ITS_CTZ64(word)
            word &= word - 1
            if (self.config[base + bit] & KEY_MASK) == (config & KEY_MASK):
                return
        value = self.level1[cpu, priority, index1] & ~(ONE << (word_index & 63))
        self.level1[cpu, priority, index1] = value
        if value:
            return
        value = self.level2[cpu, priority, index2] & ~(ONE << (index1 & 63))
        self.level2[cpu, priority, index2] = value
        if value:
            return
        value = self.level3[cpu, priority] & ~(ONE << index2)
        self.level3[cpu, priority] = value
        if value:
            return
        self.priorities[cpu] &= ~(ONE << priority)

    cdef void _index_word(self, cpu_t cpu, Py_ssize_t word_index, uint64_t word) noexcept:
        """File the enabled LPIs among the bits of `word`, which are pending
        bits of 64-INTID word `word_index` of `cpu`'s bitmap."""
        cdef intid_t base = <intid_t>(word_index << 6)
        cdef int bit
        cdef uint8_t config
        while word:
            bit = ITS_CTZ64(word)
            word &= word - 1
            config = self.config[base + bit]
            if config & 1:
                self._index_add(cpu, base + bit, config)

    cdef void _index_clear(self, cpu_t cpu) noexcept:
        """Empty `cpu`'s index, touching only its non-zero words."""
        cdef uint64_t priorities = self.priorities[cpu]
        cdef uint64_t word3, word2
        cdef int priority, index2
        while priorities:
            priority = ITS_CTZ64(priorities)
            priorities &= priorities - 1
            word3 = self.level3[cpu, priority]
            while word3:
                index2 = ITS_CTZ64(word3)
                word3 &= word3 - 1
                word2 = self.level2[cpu, priority, index2]
                while word2:
                    self.level1[cpu, priority, (index2 << 6) | ITS_CTZ64(word2)] = 0
                    word2 &= word2 - 1
                self.level2[cpu, priority, index2] = 0
            self.level3[cpu, priority] = 0
        self.priorities[cpu] = 0

    cdef void _index_rebuild(self, cpu_t cpu, bint trust_count) noexcept:
        """Refile `cpu`'s index from its bitmap and the config cache.  With
        `trust_count`, `pending_count[cpu]` is right (only configs changed):
        a CPU with nothing pending costs nothing and the pass stops at its
        last pending LPI.  Without, the index is zeroed and the count redone."""
        cdef const uint8_t* row = &self.pending[cpu, 0]
        cdef Py_ssize_t words = self.pending.shape[1] >> 3
        cdef Py_ssize_t word_index
        cdef uint64_t word, found = 0, remaining = <uint64_t>-1
        cdef intid_t base
        cdef uint8_t config
        cdef int bit
        if trust_count:
            self._index_clear(cpu)
            remaining = self.pending_count[cpu]
            if remaining == 0:
                return
        else:
            memset(&self.level1[cpu, 0, 0], 0, PRIORITIES * self.level1_words * 8)
            memset(&self.level2[cpu, 0, 0], 0, PRIORITIES * self.level2_words * 8)
            memset(&self.level3[cpu, 0], 0, PRIORITIES * 8)
            self.priorities[cpu] = 0
        for word_index in range(RESERVED_WORDS, words):
            memcpy(&word, row + (word_index << 3), 8)
            if not word:
                continue
            found += ITS_POPCOUNT64(word)
            self._index_word(cpu, word_index, word)
            if found >= remaining:
                break
        if ITS_CORE_DEBUG and trust_count and found != remaining:
            fprintf(stderr, b"its_core: CPU %d has %llu LPIs pending, its count says %llu\n",
                    <int>cpu, <unsigned long long>found, <unsigned long long>remaining)
            abort()
        self.pending_count[cpu] = found

    def rebuild_index(self, cpu=None):
        """Rebuild the priority index (and pending count) of `cpu`, or of
        every CPU, from `pending_array` and `config_array`: what code that
        wrote either array directly must call before using the state again."""
        cdef int first = 0, end = self.num_cpus, index
        if cpu is not None:
            self._check_cpu(cpu)
            first, end = cpu, cpu + 1
        for index in range(first, end):
            self._index_rebuild(index, False)
        self.version += 1

    def index_snapshot(self, int cpu):
        """Copies of `cpu`'s index, for tests: ``(priorities, level3, level2,
        level1, pending_count)`` with the two masks and the count as ints and
        the levels as uint64 arrays of shape (64,), (64, level2_words) and
        (64, level1_words)."""
        self._check_cpu(cpu)
        level1 = np.empty((PRIORITIES, self.level1_words), np.uint64)
        level2 = np.empty((PRIORITIES, self.level2_words), np.uint64)
        level3 = np.empty(PRIORITIES, np.uint64)
        cdef uint64_t[:, ::1] view1 = level1, view2 = level2
        cdef uint64_t[::1] view3 = level3
        memcpy(&view1[0, 0], &self.level1[cpu, 0, 0], PRIORITIES * self.level1_words * 8)
        memcpy(&view2[0, 0], &self.level2[cpu, 0, 0], PRIORITIES * self.level2_words * 8)
        memcpy(&view3[0], &self.level3[cpu, 0], PRIORITIES * 8)
        cdef uint64_t priorities = self.priorities[cpu], count = self.pending_count[cpu]
        return priorities, level3, level2, level1, count

    cdef int _find(self, cpu_t cpu, int priority_mask, intid_t* intid, int* priority) except -1:
        """1 and the LPI `highest_pending` names in *intid, *priority; 0 if none."""
        cdef int limit = min(priority_mask, 0x100)
        cdef int allowed, found
        cdef uint64_t candidates, value, word_index, index1, index2, word
        cdef intid_t base
        cdef int bit
        if limit <= 0:
            return 0
        allowed = (limit + 3) >> 2           # priorities p with 4p < limit: 1..64
        candidates = self.priorities[cpu]
        if allowed < PRIORITIES:
            candidates &= (ONE << allowed) - 1
        if not candidates:
            return 0
        found = ITS_CTZ64(candidates)
        value = self.level3[cpu, found]
        if value:
            index2 = ITS_CTZ64(value)
            value = self.level2[cpu, found, index2]
            if value:
                index1 = (index2 << 6) | ITS_CTZ64(value)
                value = self.level1[cpu, found, index1]
                if value:
                    word_index = (index1 << 6) | ITS_CTZ64(value)
                    memcpy(&word, &self.pending[cpu, word_index << 3], 8)
                    base = <intid_t>(word_index << 6)
                    while word:
                        bit = ITS_CTZ64(word)
                        word &= word - 1
                        if (self.config[base + bit] & KEY_MASK) == ((found << 2) | 1):
                            intid[0] = base + bit
                            priority[0] = found << 2
                            return 1
        raise RuntimeError(f"LPIState: CPU {cpu}'s priority index does not match its pending "
                           f"bitmap (pending_array or config_array written directly without "
                           f"rebuild_index()?)")

    # -- pending bits -----------------------------------------------------------------

    cdef void _pended(self, cpu_t cpu, intid_t intid) noexcept:
        """Count and file `intid`, whose pending bit on `cpu` just went 0 -> 1."""
        cdef uint8_t config
        if intid < LPI_FIRST_INTID:
            return
        self.pending_count[cpu] += 1
        config = self.config[intid]
        if config & 1:
            self._index_add(cpu, intid, config)

    cdef void _unpended(self, cpu_t cpu, intid_t intid) noexcept:
        """Uncount and unfile `intid`, whose pending bit on `cpu` just went 1 -> 0."""
        cdef uint8_t config
        if intid < LPI_FIRST_INTID:
            return
        self.pending_count[cpu] -= 1
        config = self.config[intid]
        if config & 1:
            self._index_remove(cpu, intid, config)

    cdef void set_pending(self, cpu_t cpu, intid_t intid) noexcept:
        cdef uint8_t bit = <uint8_t>(1 << (intid & 7))
        cdef uint8_t byte = self.pending[cpu, intid >> 3]
        if not byte & bit:
            self.pending[cpu, intid >> 3] = byte | bit
            self._pended(cpu, intid)
        self.version += 1

    cdef void clear_pending(self, cpu_t cpu, intid_t intid) noexcept:
        cdef uint8_t bit = <uint8_t>(1 << (intid & 7))
        cdef uint8_t byte = self.pending[cpu, intid >> 3]
        if byte & bit:
            self.pending[cpu, intid >> 3] = byte & ~bit
            self._unpended(cpu, intid)
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
        """MOVALL: OR the source's pending bits into the target, clear the
        source.  One pass over the source's words up to its last pending LPI;
        only the bits new to the target are filed."""
        cdef Py_ssize_t words = self.pending.shape[1] >> 3
        cdef Py_ssize_t word_index
        cdef uint64_t moved, fresh, existing, seen = 0
        cdef uint64_t remaining = self.pending_count[source]
        cdef uint8_t* from_row = &self.pending[source, 0]
        cdef uint8_t* to_row = &self.pending[target, 0]
        cdef intid_t base
        cdef uint8_t config
        cdef int bit
        if source == target:
            return
        if self.lpis_enabled[target]:
            for word_index in range(RESERVED_WORDS, words):
                if seen >= remaining:
                    break
                memcpy(&moved, from_row + (word_index << 3), 8)
                if not moved:
                    continue
                seen += ITS_POPCOUNT64(moved)
                memcpy(&existing, to_row + (word_index << 3), 8)
                fresh = moved & ~existing
                if not fresh:
                    continue
                existing |= fresh
                memcpy(to_row + (word_index << 3), &existing, 8)
                self.pending_count[target] += ITS_POPCOUNT64(fresh)
                self._index_word(target, word_index, fresh)
        memset(from_row, 0, self.pending.shape[1])
        self._index_clear(source)
        self.pending_count[source] = 0
        self.version += 1

    # -- config -----------------------------------------------------------------------

    cdef void _set_config(self, intid_t intid, uint8_t config) noexcept:
        """Cache `config` for `intid`, refiling it on every CPU where it is
        pending if its priority or enable bit changes."""
        cdef uint8_t old = self.config[intid]
        cdef cpu_t cpu
        if (intid >= LPI_FIRST_INTID and (old ^ config) & KEY_MASK and (old | config) & 1):
            for cpu in range(self.num_cpus):
                if self.pending_count[cpu] and self.is_pending(cpu, intid):
                    if old & 1:
                        self._index_remove(cpu, intid, old)
                    if config & 1:
                        self._index_add(cpu, intid, config)
        self.config[intid] = config

    cdef void load_config(self, intid_t intid) noexcept:
        """Cache the config byte of one LPI (0 if outside guest memory)."""
        cdef uint64_t addr = self.prop_addr + (intid - LPI_FIRST_INTID)
        if guest_contains(self.mem, addr, 1):
            self._set_config(intid, self.mem.data[addr - self.mem.base])
        else:
            self._set_config(intid, 0)
        self.version += 1

    def load_config_many(self, intids):
        """Cache the config bytes of the LPIs in `intids` (uint32 array)."""
        cdef const uint32_t[:] view = np.ascontiguousarray(intids, np.uint32)
        cdef Py_ssize_t index
        for index in range(view.shape[0]):
            self.load_config(view[index])

    def load_mapped_config(self, TranslationTables tables):
        """Cache the config bytes of the physical LPIs that `tables` map, as
        `load_config_many(tables.mapped_intids())` does, in one native pass
        over the tables' ITE words (virtual ITEs skipped) (an LPI named by several events is loaded
        once per event: the same byte each time).  INTIDs at or above
        2**intid_bits are skipped (an ITS's tables share its intid_bits)."""
        cdef uint64_t first, last
        cdef bint any_loaded = False
        # No Python call and no GIL release below: atomic for other threads.
        # The config bytes that lie inside guest memory, once for all:
        _guest_span(self.mem, self.prop_addr, self.config.shape[0] - LPI_FIRST_INTID,
                    &first, &last)
        if tables.pool.top:
            any_loaded |= self._load_config_words(&tables.pool.entries[0], tables.pool.top,
                                                  first, last)
        if tables.sparse.count:
            any_loaded |= self._load_config_words(&tables.sparse.values[0],
                                                  tables.sparse.values.shape[0], first, last)
        if any_loaded:
            self.version += 1

    cdef bint _load_config_words(self, const ite_t* words, Py_ssize_t length, uint64_t first,
                                 uint64_t last) noexcept:
        """`load_config` of the INTID of every physical ITE word of `words`,
        the guest's config bytes being those at offsets [first, last) from
        INTID 8192 (0 elsewhere).  True if any word was physical."""
        cdef Py_ssize_t index
        cdef uint64_t intid, offset, limit = self.config.shape[0]
        cdef ite_t ite
        cdef uint8_t config
        cdef bint seen = False
        cdef bint any_pending = False
        cdef uint8_t* cache = &self.config[0]
        cdef const uint8_t* guest = NULL
        cdef int cpu
        for cpu in range(self.num_cpus):
            any_pending |= self.pending_count[cpu] != 0
        if last > first:
            guest = &self.mem.data[self.prop_addr + first - self.mem.base]   # offset `first`
        for index in range(length):
            ite = words[index]
            if ite == 0 or ite_is_virtual(ite):      # a vINTID has no physical config
                continue
            seen = True
            intid = ite_intid(ite)
            if intid < LPI_FIRST_INTID or intid >= limit:
                continue
            offset = intid - LPI_FIRST_INTID
            config = guest[offset - first] if first <= offset < last else 0
            if config != cache[intid]:
                if any_pending:          # it may have to be refiled
                    self._set_config(<intid_t>intid, config)
                else:                    # nothing pending: only the cache changes
                    cache[intid] = config
        return seen

    cdef void _copy_config(self) noexcept:
        """The config bytes of every LPI below the limit into the cache (the
        index is left for the caller to rebuild)."""
        cdef uint64_t count = self.limit - LPI_FIRST_INTID if self.limit > LPI_FIRST_INTID else 0
        cdef uint64_t first, last
        memset(&self.config[LPI_FIRST_INTID], 0, self.config.shape[0] - LPI_FIRST_INTID)
        if _guest_span(self.mem, self.prop_addr, count, &first, &last):
            memcpy(&self.config[LPI_FIRST_INTID + first],
                   &self.mem.data[self.prop_addr + first - self.mem.base], last - first)

    cdef uint64_t _config_changes(self, uint64_t first, uint64_t last, bint apply,
                                  uint64_t stop) noexcept:
        """Compare the cache, from INTID 8192 up, with what `_copy_config`
        would put there (the guest bytes at offsets [first, last) from 8192,
        0 elsewhere), 8 bytes at a time: count the LPIs whose priority or
        enable bit would change (giving up past `stop`), or, with `apply`,
        cache each of those bytes and refile the LPI (`_set_config`)."""
        cdef uint64_t total = self.config.shape[0] - LPI_FIRST_INTID
        cdef uint64_t offset, old, new, diff, changed = 0
        cdef uint8_t* cache = &self.config[LPI_FIRST_INTID]
        cdef int k
        for offset in range(0, total, 8):
            memcpy(&old, cache + offset, 8)
            if offset >= first and offset + 8 <= last:
                memcpy(&new, &self.mem.data[self.prop_addr + offset - self.mem.base], 8)
            elif offset + 8 <= first or offset >= last:
                new = 0
            else:
                new = 0
                for k in range(8):
                    if first <= offset + k < last:
                        new |= (<uint64_t>self.mem.data[self.prop_addr + offset + k
                                                        - self.mem.base]) << (8 * k)
            diff = (old ^ new) & <uint64_t>0xFDFDFDFDFDFDFDFD
            if not diff or not (old | new) & <uint64_t>0x0101010101010101:
                continue
            for k in range(8):
                if (diff >> (8 * k)) & KEY_MASK and ((old | new) >> (8 * k)) & 1:
                    if apply:
                        self._set_config(<intid_t>(LPI_FIRST_INTID + offset + k),
                                         <uint8_t>(new >> (8 * k)))
                    else:
                        changed += 1
                        if changed > stop:
                            return changed
        return changed

    cdef void _reload_all_config(self) noexcept:
        """`_copy_config`, keeping the index exact the cheaper way: when
        refiling every CPU with LPIs pending would read more words than
        comparing the whole cache, and few enough LPIs change priority or
        enable bit, refile just those on each CPU; otherwise refile the CPUs
        with LPIs pending from their bitmaps."""
        cdef uint64_t count = self.limit - LPI_FIRST_INTID if self.limit > LPI_FIRST_INTID else 0
        cdef uint64_t first, last, rebuild_cost = 0, stop
        cdef uint64_t row_words = (self.pending.shape[1] >> 3) - RESERVED_WORDS
        cdef uint64_t compare_cost = (self.config.shape[0] - LPI_FIRST_INTID) >> 3
        cdef int cpu
        for cpu in range(self.num_cpus):
            if self.pending_count[cpu]:
                rebuild_cost += row_words
        if rebuild_cost > compare_cost:
            _guest_span(self.mem, self.prop_addr, count, &first, &last)
            stop = rebuild_cost // <uint64_t>self.num_cpus
            if self._config_changes(first, last, False, stop) <= stop:
                self._config_changes(first, last, True, 0)
                self._copy_config()         # the other bits; the index already agrees
                return
        self._copy_config()
        for cpu in range(self.num_cpus):
            self._index_rebuild(cpu, True)

    def load_all_config(self):
        """Cache the config byte of every LPI below the limit (EnableLPIs,
        GICR_INVALLR), refiling the LPIs pending anywhere whose priority or
        enable bit changed."""
        self.version += 1
        self._reload_all_config()

    # -- pending tables and EnableLPIs -------------------------------------------------

    def enable(self, int cpu, uint64_t pend_addr, bint table_is_zero):
        """GICR_CTLR.EnableLPIs 0 -> 1: load the pending bitmap (unless PTZ)
        and the whole config cache."""
        self._check_cpu(cpu)
        memset(&self.pending[cpu, 0], 0, self.pending.shape[1])
        self._index_clear(cpu)
        self.pending_count[cpu] = 0
        self.lpis_enabled[cpu] = 1
        self._reload_all_config()           # `cpu` has nothing pending yet
        self.version += 1
        if not table_is_zero:
            self._copy_pending(cpu, pend_addr)
            self._index_rebuild(cpu, False)
            self.version += 1

    def pending_span(self):
        """(first, end) byte offsets of a pending table that hold LPIs below
        the limit: the only bytes ever read or written in guest memory."""
        return PENDING_RESERVED_BYTES, max(PENDING_RESERVED_BYTES, <Py_ssize_t>(self.limit // 8))

    cdef void _copy_pending(self, cpu_t cpu, uint64_t pend_addr) noexcept:
        """`cpu`'s pending bits from its table into the bitmap: bytes 1024
        up to the end zeroed, then those below the limit that lie in guest
        memory copied (the index and count are left for the caller)."""
        cdef uint64_t start = RESERVED_BYTES
        cdef uint64_t end = max(<uint64_t>RESERVED_BYTES, self.limit // 8)
        cdef uint64_t first, last
        memset(&self.pending[cpu, start], 0, self.pending.shape[1] - start)
        if _guest_span(self.mem, pend_addr + start, end - start, &first, &last):
            memcpy(&self.pending[cpu, start + first],
                   &self.mem.data[pend_addr + start + first - self.mem.base], last - first)

    def load_pending(self, int cpu, uint64_t pend_addr):
        """Copy `cpu`'s pending bits from its table (bytes outside guest
        memory read as 0; bytes below 1024 and beyond the limit untouched)."""
        self._check_cpu(cpu)
        self.version += 1
        self._copy_pending(cpu, pend_addr)
        self._index_rebuild(cpu, False)

    def save_pending(self, int cpu, uint64_t pend_addr):
        """Copy `cpu`'s pending bits into its table; the caller checked that the
        span lies inside guest memory (ValueError if not: nothing written)."""
        cdef uint64_t start = RESERVED_BYTES
        cdef uint64_t end = max(<uint64_t>RESERVED_BYTES, self.limit // 8)
        self._check_cpu(cpu)
        if end == start:
            return
        if pend_addr + start < pend_addr or not guest_contains(self.mem, pend_addr + start,
                                                               end - start):
            raise ValueError(f"pending table {pend_addr:#x} outside guest memory")
        memcpy(&self.mem.data[pend_addr + start - self.mem.base], &self.pending[cpu, start],
               end - start)

    def disable(self, int cpu):
        """GICR_CTLR.EnableLPIs 1 -> 0: the CPU's pending state is dropped."""
        self._check_cpu(cpu)
        memset(&self.pending[cpu, 0], 0, self.pending.shape[1])
        self._index_clear(cpu)
        self.pending_count[cpu] = 0
        self.lpis_enabled[cpu] = 0
        self.version += 1

    def pending_intids(self, int cpu):
        """Sorted uint32 INTIDs pending on `cpu`."""
        self._check_cpu(cpu)
        row = np.empty(self.pending.shape[1], np.uint8)
        cdef uint8_t[::1] copy = row
        memcpy(&copy[0], &self.pending[cpu, 0], self.pending.shape[1])
        return np.flatnonzero(np.unpackbits(row, bitorder="little")).astype(np.uint32)

    # -- the CPU interface -------------------------------------------------------------

    def highest_pending(self, int cpu, int priority_mask=0xFF):
        """(intid, priority) of the highest-priority enabled pending LPI of
        `cpu` whose priority (config bits [7:2], as 0..252) is strictly below
        `priority_mask`, ties to the lowest INTID; None if there is none.  A
        descent of the CPU's priority index; nothing changes."""
        cdef intid_t intid
        cdef int priority
        self._check_cpu(cpu)
        if not self._find(cpu, priority_mask, &intid, &priority):
            return None
        return intid, priority

    def acknowledge(self, int cpu, int priority_mask=0xFF):
        """Clear and return the LPI `highest_pending` names, or None."""
        cdef intid_t intid
        cdef int priority
        self._check_cpu(cpu)
        if not self._find(cpu, priority_mask, &intid, &priority):
            return None
        self.clear_pending(cpu, intid)
        return intid

    def deliver(self, const uint32_t[::1] intids, const int32_t[::1] cpus,
                uint8_t[::1] statuses):
        """Make the translated LPIs of a batch pending (one native loop, with
        the GIL held, so that deliveries from several threads never lose each
        other's bits: docs/threads.md).  Statuses that are OK become
        LPIS_DISABLED or INTID_OUT_OF_RANGE where delivery fails.  Only a bit
        that goes 0 -> 1 is filed in the index."""
        cdef Py_ssize_t index
        cdef cpu_t cpu
        cdef intid_t intid
        cdef uint8_t bit, byte
        cdef uint64_t limit = self.limit
        for index in range(statuses.shape[0]):
            if statuses[index] != OK:
                continue
            cpu = cpus[index]
            intid = intids[index]
            if not self.lpis_enabled[cpu]:
                statuses[index] = LPIS_DISABLED
            elif intid >= limit:
                statuses[index] = INTID_OUT_OF_RANGE
            else:
                bit = <uint8_t>(1 << (intid & 7))
                byte = self.pending[cpu, intid >> 3]
                if not byte & bit:
                    self.pending[cpu, intid >> 3] = byte | bit
                    self._pended(cpu, intid)
        self.version += 1

    def load_state(self, pending, config, enabled):
        """Replace every CPU's pending bitmap, the config cache and the
        EnableLPIs flags with copies of `pending` (uint8, num_cpus x
        2**intid_bits / 8), `config` (uint8, 2**intid_bits) and `enabled`
        (num_cpus flags), as a host snapshot restores them, and rebuild the
        priority index: nothing is read from guest memory.  ValueError for
        arrays of another shape (nothing changed)."""
        pending = np.ascontiguousarray(pending, np.uint8)
        config = np.ascontiguousarray(config, np.uint8)
        enabled = np.ascontiguousarray(np.asarray(enabled) != 0, np.uint8)
        for name, array, target in (("pending", pending, self.pending_array),
                                    ("config", config, self.config_array),
                                    ("enabled", enabled, self.enabled_array)):
            if array.shape != target.shape:
                raise ValueError(f"{name} has shape {array.shape}, expected {target.shape}")
        cdef const uint8_t[:, ::1] pending_view = pending
        cdef const uint8_t[::1] config_view = config
        cdef const uint8_t[::1] enabled_view = enabled
        memcpy(&self.pending[0, 0], &pending_view[0, 0], pending.nbytes)
        memcpy(&self.config[0], &config_view[0], config.nbytes)
        memcpy(&self.lpis_enabled[0], &enabled_view[0], enabled.nbytes)
        self.rebuild_index()

    def reset_pending(self):
        """Drop every CPU's pending state."""
        cdef int cpu
        memset(&self.pending[0, 0], 0, self.num_cpus * self.pending.shape[1])
        for cpu in range(self.num_cpus):
            self._index_clear(cpu)
            self.pending_count[cpu] = 0
        self.version += 1
