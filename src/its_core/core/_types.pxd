# Shared C types, record layouts and constants of the translation core.
#
# Every Cython module of its_core cimports its widths from here, so a DeviceID
# is the same 32-bit type everywhere and a sentinel has one name.

from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t

ctypedef uint32_t devid_t       # DeviceID (bus side-band, up to 32 bits)
ctypedef uint32_t eventid_t     # EventID (GITS_TRANSLATER data, up to 32 bits)
ctypedef uint32_t intid_t       # physical LPI INTID (>= 8192)
ctypedef uint16_t icid_t        # interrupt collection ID (16 bits, TYPER.CIL = 0)
ctypedef int32_t cpu_t          # target CPU number; CPU_NONE when unmapped
ctypedef uint64_t ite_t         # one interrupt translation entry, packed as below

ctypedef uint16_t vpeid_t      # GICv4 vPE ID (16 bits, as QEMU's vPE table)

# An ITE is held in the core exactly as the KVM rev0 ITE without its "next"
# field: pINTID in bits [47:16], ICID in bits [15:0].  pINTID 0 marks a free
# slot, so an all-zero word is "no mapping" in every store.
#
# A GICv4 virtual ITE lives in the same stores (pool slab or sparse map, so
# every layout holds it alike) with bit 63 (ITE_VIRTUAL) set: vINTID in
# [47:16], vPEID in [15:0], and in [62:48] a doorbell code.  vINTID >= 8192,
# so a virtual word is never 0, and a physical word never has bit 63 set
# (pINTIDs fit 32 bits): the flag alone tells them apart, and `ite_intid`
# reads the vINTID of a virtual word (the 32-bit cast drops the bits above).
# The per-ITE doorbell pINTID (DOORBELL_NONE = 1023 = none) lives in a side
# map keyed like the sparse map (TranslationTables.doorbells, a
# SparseEventMap whose values are doorbells; 1023 is not 0, so every virtual
# ITE has an entry).  The doorbell code caches it in the word, for the
# delivery of vLPIs to non-resident vPEs: an index into the tables' list of
# the distinct doorbells seen (TranslationTables.doorbell_values, from 1),
# or DOORBELL_CODE_UNCACHED = 0 (then only the map has it: once that list
# is full, and for any word made without a code).  Words handed to Python
# (`export_events`) have the code cleared.
cdef enum:
    ITE_DOORBELL_CODE_SHIFT = 48
    DOORBELL_CODE_MASK = 0x7FFF         # 15 bits: [62:48]
    DOORBELL_CODE_UNCACHED = 0          # the doorbell is only in the map
    DOORBELL_CODES = 0x8000             # doorbell_values entries; codes 1 .. DOORBELL_CODES - 1

cdef enum:
    ITE_INTID_SHIFT = 16
    ITE_ICID_MASK = 0xFFFF
    ITE_VPEID_MASK = 0xFFFF
    ITE_VIRTUAL_SHIFT = 63      # ITE_VIRTUAL = 1 << 63 (does not fit a C enum)
    INTID_NONE = 0
    CPU_NONE = -1
    VPEID_NONE = -1             # translate_batch's vpe_ids for a non-virtual pair
    VPE_SPACE = 65536           # the vPE table covers every 16-bit vPEID
    DOORBELL_NONE = 1023        # a virtual ITE without a doorbell LPI
    LPI_FIRST_INTID = 8192      # INTIDs below this are SGIs, PPIs, SPIs, special

ctypedef struct device_t:       # one mapped device (24 bytes)
    uint64_t itt_addr           # guest-physical ITT base, opaque to the core
    uint32_t device_id          # DeviceID; the hash layout keys buckets on it
    uint32_t ite_base           # first pool index of the dense ITE slab
    uint32_t num_events         # mapped EventIDs of this device
    uint8_t event_bits          # EventID bits (MAPD Size + 1); 0 = slot is free
    uint8_t slab_log2           # dense slab holds 2**slab_log2 ITEs (if has_slab); <= event_bits
    uint8_t flags               # DEVICE_* bits below
    uint8_t _pad

ctypedef struct lookup_t:        # raw read pointers for one nogil lookup pass
                                # (GICv4: virtual ITEs are in pool / sparse_values too)
    const device_t* records     # flat: by DeviceID; twolevel: pages, row-major; hash: buckets
    uint64_t records_length     # entries of records
    const int32_t* level1       # twolevel: page number per page index (0 = none)
    uint64_t level1_length      # twolevel: entries of level1
    uint64_t records_mask       # hash: buckets - 1
    int records_shift           # hash: 64 - log2(buckets), for fib_slot
    int page_shift              # twolevel: a page holds 2**page_shift records
    int device_bits             # DeviceIDs are < 2**device_bits
    const ite_t* pool           # dense ITE slabs
    uint64_t pool_length        # entries of pool
    const uint64_t* sparse_keys # sparse (DeviceID << 32 | EventID) map ...
    const ite_t* sparse_values  # ... and its ITEs (0 = empty bucket)
    uint64_t sparse_mask        # sparse buckets - 1
    const cpu_t* collections    # CPU per ICID (all 65536), CPU_NONE = unmapped
    const cpu_t* vpes           # CPU per vPEID (all 65536), CPU_NONE = unmapped; NULL
                                # while the tables have never held virtual state (then
                                # no ITE is virtual, so it is never read)

# The *_length fields are only read by debug builds (checked_index below).
# The pointers of a lookup_t are taken from numpy arrays (through memoryviews)
# by the owner while it holds the GIL, and stay valid while it keeps those
# memoryviews and makes no mutation: no pointer here owns anything.

cdef enum:
    DEVICE_HAS_SLAB = 1         # ITEs live in the dense pool slab at ite_base
    DEVICE_SPARSE = 2           # ITEs live in the shared (DeviceID, EventID) hash


cdef extern from *:
    int ITS_CORE_DEBUG          # 1 in an ITS_CORE_DEBUG=1 build (a macro set by setup.py)

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define its_core_prefetch(address) __builtin_prefetch((const void*)(address), 0, 3)
    #else
    #define its_core_prefetch(address) ((void)(address))
    #endif
    """
    # A read hint: start loading the cache line of `address` (never faults,
    # never dereferences; a no-op on compilers without the builtin).
    void its_core_prefetch(const void* address) noexcept nogil

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define its_core_unlikely(condition) __builtin_expect(!!(condition), 0)
    #else
    #define its_core_unlikely(condition) (condition)
    #endif
    """
    # A branch hint: `condition` is rarely true (its code is laid out cold).
    bint its_core_unlikely(bint condition) noexcept nogil

cdef extern from "stdio.h":
    int fprintf(void* stream, const char* format, ...) nogil
    void* stderr

cdef extern from "stdlib.h":
    void abort() nogil


cdef inline uint64_t checked_index(uint64_t index, uint64_t length) noexcept nogil:
    """`index`, after checking it against `length` in debug builds only.

    The raw-pointer lookups are not covered by Cython's bounds checks; in a
    debug build an index out of its array aborts the process loudly instead
    of reading stray memory.  Release builds compile this to nothing."""
    if ITS_CORE_DEBUG and index >= length:
        fprintf(stderr, b"its_core: lookup index %llu out of bounds (%llu)\n",
                <unsigned long long>index, <unsigned long long>length)
        abort()
    return index


cdef inline intid_t ite_intid(ite_t ite) noexcept nogil:
    """pINTID of a packed ITE (INTID_NONE for a free slot)."""
    return <intid_t>(ite >> ITE_INTID_SHIFT)


cdef inline icid_t ite_icid(ite_t ite) noexcept nogil:
    """ICID of a packed ITE."""
    return <icid_t>(ite & ITE_ICID_MASK)


cdef inline ite_t ite_pack(intid_t intid, icid_t icid) noexcept nogil:
    """Pack (pINTID, ICID) into one ITE word."""
    return (<ite_t>intid << ITE_INTID_SHIFT) | icid


cdef inline bint ite_is_virtual(ite_t ite) noexcept nogil:
    """Whether a (non-zero) ITE word is a GICv4 virtual ITE."""
    return (ite >> ITE_VIRTUAL_SHIFT) != 0


cdef inline vpeid_t ite_vpe_id(ite_t ite) noexcept nogil:
    """vPEID of a virtual ITE."""
    return <vpeid_t>(ite & ITE_VPEID_MASK)


cdef inline ite_t ite_pack_virtual(intid_t vintid, vpeid_t vpe_id,
                                   uint16_t doorbell_code) noexcept nogil:
    """Pack (vINTID, vPEID, doorbell code) into one virtual ITE word (bit 63 set)."""
    return (((<ite_t>1) << ITE_VIRTUAL_SHIFT)
            | (<ite_t>(doorbell_code & DOORBELL_CODE_MASK) << ITE_DOORBELL_CODE_SHIFT)
            | (<ite_t>vintid << ITE_INTID_SHIFT) | vpe_id)


cdef inline uint16_t ite_doorbell_code(ite_t ite) noexcept nogil:
    """The doorbell code of a virtual ITE (see above)."""
    return <uint16_t>((ite >> ITE_DOORBELL_CODE_SHIFT) & DOORBELL_CODE_MASK)


cdef inline uint64_t mix64(uint64_t key) noexcept nogil:
    """SplitMix64 finaliser: a cheap, well-spread hash of a 64-bit key."""
    key ^= key >> 30
    key *= 0xBF58476D1CE4E5B9ULL
    key ^= key >> 27
    key *= 0x94D049BB133111EBULL
    key ^= key >> 31
    return key


cdef inline uint64_t fib_slot(uint64_t key, int shift) noexcept nogil:
    """Fibonacci hashing: the top (64 - shift) bits of key * 2**64/phi.
    One multiply; spreads consecutive and strided DeviceIDs evenly."""
    return (key * 0x9E3779B97F4A7C15ULL) >> shift
