"""The translation core: device, event and collection mappings, and lookups.

`TranslationTables` holds DeviceID -> device (one of three directory layouts),
device -> ITEs (dense pool slabs or a sparse hash), and ICID -> CPU.  Every
mutator validates its arguments completely before it changes anything, so a
rejected operation leaves the tables exactly as they were.  Lookups run in
nogil loops specialised per layout (a fused type over the directory classes),
so the layout's find is inlined into the loop.

GICv4 (the core data path; the ITS front end of a GICv4 ITS drives it, see
docs/gicv4.md).  A virtual ITE lives in the same event stores as a physical
one, in every layout: an ITE word with bit 63 set, vINTID in [47:16] and
vPEID in [15:0] (`_types.pxd`).  A physical and a virtual ITE for one event
are exclusive (EVENT_ALREADY_MAPPED either way).  Each virtual ITE's doorbell
pINTID (1023 = none) sits in a side map keyed like the sparse map
(``doorbells``: only a delivery to a non-resident vPE needs it).  The vPE
table maps each 16-bit vPEID to a CPU as the collection table maps ICIDs
(``vpes``, CPU_NONE = unmapped); both are allocated on first use, so GICv3
tables cost and export exactly what they did.  `translate_batch` reports a
virtual pair as VIRTUAL (vINTID, the vPE's CPU) or VIRTUAL_NO_VPE (vINTID,
-1), with the vPEID in an optional fourth array; `translate` raises
TranslationError with those statuses.  Both batch loops reach virtual ITEs
through the shared `finish_translation`, whose physical path pays one
compare shared with the free-slot check.  `to_arrays` / `from_arrays` add
`VIRTUAL_TABLE_ARRAYS` only for tables holding virtual state.

Threads (docs/threads.md): every mutator runs inside a write section of the
tables' `TableGuard`, every read that releases the GIL or calls into Python
half-way pins the tables, and every other read waits for another thread's
open write section; so no read ever sees a mutation half done or an array
that was freed.
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

cimport cython
from libc.stdint cimport int32_t
from libc.string cimport memset

from its_core.core._types cimport (CPU_NONE, DEVICE_HAS_SLAB, DEVICE_SPARSE, DOORBELL_NONE,
                                   INTID_NONE, ITE_ICID_MASK, ITE_INTID_SHIFT, ITE_VIRTUAL_SHIFT,
                                   LPI_FIRST_INTID, VPE_SPACE, VPEID_NONE, ite_icid, ite_intid,
                                   ite_is_virtual, ite_pack, ite_pack_virtual, ite_vpe_id,
                                   ite_doorbell_code, DOORBELL_CODE_UNCACHED, DOORBELL_CODES,
                                   ITE_DOORBELL_CODE_SHIFT, DOORBELL_CODE_MASK)
from its_core.core._layouts cimport (FlatDirectory, HashDirectory, TwoLevelDirectory,
                                     flat_find, hash_find, twolevel_find)
from its_core.core._events cimport find_ite, sparse_get, sparse_key
from its_core.core._guard cimport TableGuard
from its_core.core._types cimport (ITS_CORE_DEBUG, checked_index, device_t, fib_slot,
                                   its_core_prefetch, its_core_unlikely, lookup_t, mix64,
                                   vpeid_t)

from its_core.core._events import POOL_MAX_ENTRIES
from its_core.core._layouts import DEVICE_DTYPE
from its_core.core.parameters import LAYOUTS, check_table_parameters
from its_core.errors import MappingError, RestoreError, TranslationError
from its_core.validation import as_int, as_uint

#: True in a debug build (Cython bounds/wraparound/initialisation checks on).
DEBUG_BUILD = bool(ITS_CORE_DEBUG)

TranslationStatus.__doc__ = """Outcome of translating one (DeviceID, EventID), an IntEnum.

The first six come from the tables (`TranslationTables.translate_batch`,
`TranslationError.status`); the last three only from the front end's doorbell
(`ITS.msi`, `ITS.msi_batch`), where the LPI is then dropped.

OK
    Translated (and, through the doorbell, made pending).
NO_DEVICE
    The DeviceID has no mapped device (no valid DTE).
EVENT_OUT_OF_RANGE
    EventID >= 2**(the device's EventID bits).
NO_MAPPING
    The EventID has no ITE.
NO_COLLECTION
    The ITE's collection is not mapped to a CPU.
DEVICE_OUT_OF_RANGE
    DeviceID >= 2**device_bits.
ITS_DISABLED
    GITS_CTLR.Enabled is 0.
LPIS_DISABLED
    The target CPU's GICR_CTLR.EnableLPIs is 0.
INTID_OUT_OF_RANGE
    The INTID lies beyond GICR_PROPBASER.IDbits.
VIRTUAL
    GICv4: the ITE is virtual and its vPE is mapped (`translate_batch`:
    vINTID and the vPE's CPU; `translate` raises with it).
VIRTUAL_NO_VPE
    GICv4: the ITE is virtual and its vPE is not mapped.
"""

MappingFailure.__doc__ = """Why a table operation was refused (`MappingError.reason`), an IntEnum.

`map_events` and the command processor report the same codes per row.

DEVICE_ID_OUT_OF_RANGE
    DeviceID >= 2**device_bits.
EVENT_BITS_OUT_OF_RANGE
    EventID bits not in 1..event_bits.
DEVICE_NOT_MAPPED
    No device with that DeviceID.
EVENT_ID_OUT_OF_RANGE
    EventID >= 2**(the device's EventID bits).
INTID_NOT_LPI
    INTID < 8192 or >= 2**intid_bits.
EVENT_ALREADY_MAPPED
    The EventID already has an ITE.
ICID_OUT_OF_RANGE
    ICID >= num_collections.
EVENT_NOT_MAPPED
    The EventID has no ITE.
CPU_OUT_OF_RANGE
    CPU number >= num_cpus.
EVENT_IS_VIRTUAL
    A physical-only operation (`move_event`, MOVI) on a virtual ITE.
EVENT_NOT_VIRTUAL
    A virtual-only operation (`move_virtual_event`, VMOVI) on a physical ITE.
VPE_ID_OUT_OF_RANGE
    vPEID not in 0..65535.
DOORBELL_NOT_LPI
    Doorbell neither 1023 (none) nor an LPI below 2**intid_bits.
"""


cdef enum:
    LAYOUT_FLAT = 0
    LAYOUT_TWOLEVEL = 1
    LAYOUT_HASH = 2
    ICID_SPACE = 65536          # the collection array covers every 16-bit ICID
    INITIAL_SLAB_LOG2 = 5       # a device's first slab holds 32 ITEs (or its ITT)
    DENSE_SLAB_LIMIT = 4096     # slabs up to this size are always allowed ...
    DENSE_SLAB_FACTOR = 4       # ... beyond it, at most this many slots per event

_UINT32_MAX = 0xFFFFFFFF
cdef uint64_t ID_MAX = 0xFFFFFFFF          # DeviceIDs and EventIDs are 32-bit
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
#: Bits [62:48] of an ITE word: a virtual ITE's doorbell code (_types.pxd).
_DOORBELL_CODE_FIELD = np.uint64(int(DOORBELL_CODE_MASK) << int(ITE_DOORBELL_CODE_SHIFT))


ctypedef fused directory_t:
    FlatDirectory
    TwoLevelDirectory
    HashDirectory


cdef inline device_t* find_device(directory_t layout, const lookup_t* view,
                                  devid_t device_id) noexcept nogil:
    """The layout's find; `layout` only selects the specialisation."""
    if directory_t is FlatDirectory:
        return flat_find(view, device_id)
    elif directory_t is TwoLevelDirectory:
        return twolevel_find(view, device_id)
    else:
        return hash_find(view, device_id)


cdef enum:
    SPARSE_LOOKUP = 0xFF        # locate_ite: the ITE is in the sparse map (internal)


cdef inline uint8_t locate_ite(directory_t layout, const lookup_t* view, devid_t device_id,
                               eventid_t event_id, const ite_t** slot) noexcept nogil:
    """First half of a translation: DeviceID -> device -> where its ITE lives.

    OK with `slot[0]` at the ITE's pool slot; SPARSE_LOOKUP when the ITE is
    in the sparse map (`sparse_get` finds it); otherwise the failure status.
    """
    if (<uint64_t>device_id) >> view.device_bits:
        return DEVICE_OUT_OF_RANGE
    cdef const device_t* device = find_device(layout, view, device_id)
    if device == NULL:
        return NO_DEVICE
    if (device.flags & DEVICE_HAS_SLAB) and not ((<uint64_t>event_id) >> device.slab_log2):
        slot[0] = &view.pool[checked_index(<uint64_t>device.ite_base + event_id,
                                           view.pool_length)]
        return OK                   # in the slab, so in range: slab_log2 <= event_bits
    if (<uint64_t>event_id) >> device.event_bits:
        return EVENT_OUT_OF_RANGE
    if device.flags & DEVICE_SPARSE:
        return SPARSE_LOOKUP
    return NO_MAPPING


cdef inline uint8_t finish_virtual(const lookup_t* view, ite_t ite, intid_t* intid,
                                   cpu_t* cpu, int32_t* vpe_ids, ite_t* words,
                                   Py_ssize_t index) noexcept nogil:
    """`finish_translation` of a virtual ITE: (vINTID, its vPE's CPU) through
    the vPE table, the vPEID in `vpe_ids[index]` and the word in
    `words[index]` (each unless NULL); VIRTUAL, or VIRTUAL_NO_VPE with the
    CPU left -1.  The physical path pays nothing for it but the one compare
    it shares with `ite == 0`, a branch marked unlikely, so the compiler lays
    this code out cold.  Inline: a call per virtual pair cost about 1 ns of
    an all-virtual batch, and physical rates did not move (best of four
    alternating runs, 0.97-1.15x)."""
    cdef cpu_t target = view.vpes[ite_vpe_id(ite)]     # 65536 entries: any vPEID
    intid[0] = ite_intid(ite)
    if vpe_ids != NULL:
        vpe_ids[index] = ite_vpe_id(ite)
    if words != NULL:
        words[index] = ite
    if target == CPU_NONE:
        return VIRTUAL_NO_VPE
    cpu[0] = target
    return VIRTUAL


cdef inline uint8_t finish_translation(const lookup_t* view, ite_t ite, intid_t* intid,
                                       cpu_t* cpu, int32_t* vpe_ids, ite_t* words,
                                       Py_ssize_t index) noexcept nogil:
    """Second half: ITE -> (INTID, target CPU) through the collection table
    (a virtual ITE: `finish_virtual`, which writes `vpe_ids[index]`; the
    caller has set every other entry of `vpe_ids` to VPEID_NONE)."""
    # One unsigned compare catches both rare words: 0 (free) wraps to the
    # top, and a virtual word (bit 63) is >= 2**63; physical ones are below.
    if its_core_unlikely(ite - 1 >= ((<ite_t>1) << ITE_VIRTUAL_SHIFT) - 1):
        if ite == 0:
            return NO_MAPPING
        return finish_virtual(view, ite, intid, cpu, vpe_ids, words, index)
    cdef cpu_t target = view.collections[ite_icid(ite)]     # 65536 entries: any ICID
    if target == CPU_NONE:
        return NO_COLLECTION
    intid[0] = ite_intid(ite)
    cpu[0] = target
    return OK


cdef inline uint8_t translate_one(directory_t layout, const lookup_t* view,
                                  devid_t device_id, eventid_t event_id,
                                  intid_t* intid, cpu_t* cpu, int32_t* vpe_ids, ite_t* words,
                                  Py_ssize_t index) noexcept nogil:
    """Walk DeviceID -> device -> ITE -> collection (or vPE: `vpe_ids[index]`
    written); INTID_NONE / CPU_NONE left where the result does not set them."""
    if (<uint64_t>device_id) >> view.device_bits:
        return DEVICE_OUT_OF_RANGE
    cdef const device_t* device = find_device(layout, view, device_id)
    if device == NULL:
        return NO_DEVICE
    if (device.flags & DEVICE_HAS_SLAB) and not ((<uint64_t>event_id) >> device.slab_log2):
        return finish_translation(view, view.pool[checked_index(
            <uint64_t>device.ite_base + event_id, view.pool_length)], intid, cpu, vpe_ids, words,
            index)
    if (<uint64_t>event_id) >> device.event_bits:   # (a slab never outgrows the ITT)
        return EVENT_OUT_OF_RANGE
    return finish_translation(view, find_ite(view, device, event_id), intid, cpu, vpe_ids, words,
                              index)


cdef void translate_loop(directory_t layout, const lookup_t* view, Py_ssize_t start,
                         Py_ssize_t end, const uint32_t[:] device_ids,
                         const uint32_t[:] event_ids, uint32_t* intids, int32_t* cpus,
                         uint8_t* statuses, int32_t* vpe_ids, ite_t* words) noexcept nogil:
    """Translate pairs [start, end) one after the other (`vpe_ids`: NULL, or
    filled with VPEID_NONE by the caller; virtual pairs write theirs)."""
    cdef Py_ssize_t index
    cdef intid_t intid
    cdef cpu_t cpu
    for index in range(start, end):
        intid = INTID_NONE
        cpu = CPU_NONE
        statuses[index] = translate_one(layout, view, device_ids[index], event_ids[index],
                                        &intid, &cpu, vpe_ids, words, index)
        intids[index] = intid
        cpus[index] = cpu


# Group prefetching for batches over tables bigger than the caches: the loop
# takes PREFETCH_GROUP pairs at a time through three passes (hint every
# device record; locate every ITE and hint it; finish every translation), so
# a group's DRAM misses overlap instead of the few the out-of-order window
# reaches on its own.  Runs of pairs on one device (a sequential pattern) are
# already cache-friendly and only pay for the passes, so a chunk of
# PREFETCH_CHUNK pairs whose DeviceIDs mostly repeat their predecessor's goes
# through the plain loop, judged on its first PREFETCH_SAMPLE pairs
# (docs/layouts.md, "The batch loop").
cdef enum:
    PREFETCH_GROUP = 64
    PREFETCH_CHUNK = 512
    PREFETCH_SAMPLE = 16
    _PREFETCH_MIN_BYTES = 4 << 20   # tables smaller than this stay in cache


cdef inline void prefetch_device(directory_t layout, const lookup_t* view,
                                 devid_t device_id) noexcept nogil:
    """Hint the cache line of `device_id`'s record (its first probe, for hash)."""
    cdef uint64_t page_index
    if (<uint64_t>device_id) >> view.device_bits:
        return
    if directory_t is FlatDirectory:
        its_core_prefetch(&view.records[device_id])
    elif directory_t is TwoLevelDirectory:
        page_index = device_id >> view.page_shift
        if page_index < view.level1_length:
            its_core_prefetch(&view.records[
                ((<uint64_t>view.level1[page_index]) << view.page_shift)
                + (device_id & ((1u << view.page_shift) - 1))])
    else:
        its_core_prefetch(&view.records[fib_slot(device_id, view.records_shift)])


cdef void translate_group(directory_t layout, const lookup_t* view, Py_ssize_t start,
                          Py_ssize_t end, const uint32_t[:] device_ids,
                          const uint32_t[:] event_ids, uint32_t* intids, int32_t* cpus,
                          uint8_t* statuses, int32_t* vpe_ids, ite_t* words) noexcept nogil:
    """Translate pairs [start, end), at most PREFETCH_GROUP, in three prefetching passes."""
    cdef const ite_t* slots[PREFETCH_GROUP]
    cdef Py_ssize_t index
    cdef uint8_t status
    cdef ite_t ite
    cdef intid_t intid
    cdef cpu_t cpu
    for index in range(start, end):
        prefetch_device(layout, view, device_ids[index])
    for index in range(start, end):
        status = locate_ite(layout, view, device_ids[index], event_ids[index],
                            &slots[index - start])
        if status == OK:
            its_core_prefetch(slots[index - start])
        elif status == SPARSE_LOOKUP:
            its_core_prefetch(&view.sparse_values[
                mix64(sparse_key(device_ids[index], event_ids[index])) & view.sparse_mask])
        statuses[index] = status
    for index in range(start, end):
        status = statuses[index]
        intid = INTID_NONE
        cpu = CPU_NONE
        if status == OK or status == SPARSE_LOOKUP:
            ite = (slots[index - start][0] if status == OK
                   else sparse_get(view, sparse_key(device_ids[index], event_ids[index])))
            status = finish_translation(view, ite, &intid, &cpu, vpe_ids, words, index)
        statuses[index] = status
        intids[index] = intid
        cpus[index] = cpu


cdef void translate_loop_prefetch(directory_t layout, const lookup_t* view, Py_ssize_t length,
                                  const uint32_t[:] device_ids, const uint32_t[:] event_ids,
                                  uint32_t* intids, int32_t* cpus,
                                  uint8_t* statuses, int32_t* vpe_ids, ite_t* words) noexcept nogil:
    """`translate_loop` in prefetched groups where the DeviceIDs jump about;
    identical results."""
    cdef Py_ssize_t chunk = 0, chunk_end, start, index, repeats
    while chunk < length:
        chunk_end = min(chunk + <Py_ssize_t>PREFETCH_CHUNK, length)
        repeats = 0
        for index in range(chunk + 1, min(chunk + <Py_ssize_t>PREFETCH_SAMPLE, chunk_end)):
            repeats += device_ids[index] == device_ids[index - 1]
        if 2 * repeats >= min(<Py_ssize_t>PREFETCH_SAMPLE, chunk_end - chunk):
            translate_loop(layout, view, chunk, chunk_end, device_ids, event_ids, intids, cpus,
                           statuses, vpe_ids, words)
        else:
            start = chunk
            while start < chunk_end:
                translate_group(layout, view, start, min(start + <Py_ssize_t>PREFETCH_GROUP,
                                                         chunk_end),
                                device_ids, event_ids, intids, cpus, statuses, vpe_ids, words)
                start += PREFETCH_GROUP
        chunk = chunk_end


cdef inline bint wants_prefetch(const lookup_t* view) noexcept nogil:
    """Whether the tables' lookup arrays outgrow the caches (_PREFETCH_MIN_BYTES)."""
    return (view.records_length * sizeof(device_t) + view.pool_length * sizeof(ite_t)
            + (view.sparse_mask + 1) * (sizeof(ite_t) + sizeof(uint64_t))) >= _PREFETCH_MIN_BYTES


cdef void translate_pairs(directory_t layout, const lookup_t* view, Py_ssize_t length,
                          const uint32_t[:] device_ids, const uint32_t[:] event_ids,
                          uint32_t* intids, int32_t* cpus, uint8_t* statuses,
                          int32_t* vpe_ids, ite_t* words) noexcept nogil:
    """The batch loop for these tables: prefetching only when they outgrow the caches."""
    if wants_prefetch(view):
        translate_loop_prefetch(layout, view, length, device_ids, event_ids, intids, cpus,
                                statuses, vpe_ids, words)
    else:
        translate_loop(layout, view, 0, length, device_ids, event_ids, intids, cpus, statuses,
                       vpe_ids, words)


cdef int message_ids(object device_id, object event_id, uint64_t* device,
                     uint64_t* event) except -1:
    """Convert the (DeviceID, EventID) of one MSI from Python ints.

    Exact ints take a C fast path; anything else goes through the package's
    one integer check (`its_core.validation.as_uint`), so numpy integers are
    accepted and bools and floats refused with TypeError.  ValueError unless
    both are in 0..2**32-1."""
    if type(device_id) is not int:
        device_id = as_uint(device_id, "device_id")
    if type(event_id) is not int:
        event_id = as_uint(event_id, "event_id")
    try:
        device[0] = device_id
    except OverflowError:
        device[0] = ID_MAX + 1                           # reported just below
    try:
        event[0] = event_id
    except OverflowError:
        event[0] = ID_MAX + 1
    if device[0] > ID_MAX:
        as_uint(device_id, "device_id", 32)              # raises with the right words
    if event[0] > ID_MAX:
        as_uint(event_id, "event_id", 32)
    return 0


_FAILURE_TEXT = {
    DEVICE_ID_OUT_OF_RANGE: "DeviceID out of range",
    EVENT_BITS_OUT_OF_RANGE: "EventID bits out of range",
    DEVICE_NOT_MAPPED: "device not mapped",
    EVENT_ID_OUT_OF_RANGE: "EventID beyond the device's ITT",
    INTID_NOT_LPI: "INTID is not an LPI in range",
    EVENT_ALREADY_MAPPED: "EventID already mapped",
    ICID_OUT_OF_RANGE: "collection ID out of range",
    EVENT_NOT_MAPPED: "EventID not mapped",
    CPU_OUT_OF_RANGE: "CPU number out of range",
    EVENT_IS_VIRTUAL: "EventID is mapped to a virtual ITE",
    EVENT_NOT_VIRTUAL: "EventID is mapped to a physical ITE",
    VPE_ID_OUT_OF_RANGE: "vPE ID out of range",
    DOORBELL_NOT_LPI: "doorbell is neither 1023 nor an LPI in range",
}


def _wide(value, str name):
    """`value` as a Python int that fits int64 (over-wide values are clamped
    to a bound that every range check rejects); TypeError as `as_int`."""
    return min(max(as_int(value, name), _INT64_MIN), _INT64_MAX)


cdef _check(int code, str operation, dict arguments):
    """Raise MappingError for a non-zero mutator result."""
    if code:
        failure = MappingFailure(code)
        detail = ", ".join(f"{name}={value:#x}" if name == "itt_addr" else f"{name}={value}"
                           for name, value in arguments.items())
        raise MappingError(f"{operation}({detail}): {_FAILURE_TEXT[code]}",
                           reason=failure, operation=operation)


def _as_id_array(values, str name):
    """`values` as a 1-D uint32 array; no copy when it already is one."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.dtype.kind not in "iu":
        raise ValueError(f"{name} must be an integer array, got dtype {array.dtype}")
    if array.dtype != np.uint32:
        if array.size:
            low, high = array.min(), array.max()
            if low < 0 or high > _UINT32_MAX:
                bad = int(np.flatnonzero((array < 0) | (array > _UINT32_MAX))[0])
                raise ValueError(f"{name}[{bad}] = {array[bad]} does not fit 32 bits")
        array = array.astype(np.uint32)
    return array


def message_arrays(device_ids, event_ids):
    """The (DeviceID, EventID) columns of a batch as equal-length uint32 arrays
    (no copy when they already are), ValueError naming what is wrong."""
    devices = _as_id_array(device_ids, "device_ids")
    events = _as_id_array(event_ids, "event_ids")
    if events.shape[0] != devices.shape[0]:
        raise ValueError(f"device_ids and event_ids differ in length "
                         f"({devices.shape[0]} != {events.shape[0]})")
    return devices, events


def _check_out(out, Py_ssize_t length):
    try:
        arrays = tuple(out)
    except TypeError:
        arrays = ()
    if len(arrays) not in (3, 4):
        raise ValueError("out must be a triple (intids, cpus, statuses) or a quadruple "
                         "(intids, cpus, statuses, vpe_ids or virtual_ites)")
    words = len(arrays) == 4 and isinstance(arrays[3], np.ndarray) and arrays[3].dtype == np.uint64
    for array, dtype, name in zip(arrays, (np.uint32, np.int32, np.uint8,
                                           np.uint64 if words else np.int32),
                                  ("intids", "cpus", "statuses",
                                   "virtual_ites" if words else "vpe_ids")):
        if not isinstance(array, np.ndarray) or array.dtype != dtype or array.ndim != 1:
            raise ValueError(f"out {name} must be a 1-D ndarray of {np.dtype(dtype)}")
        if array.shape[0] != length:
            raise ValueError(f"out {name} has length {array.shape[0]}, expected {length}")
        if not array.flags.c_contiguous or not array.flags.writeable:
            raise ValueError(f"out {name} must be contiguous and writeable")
    return arrays


#: Tables whose lookup arrays span at least this many bytes are translated in
#: batches by the group-prefetching loop (`TranslationTables.batch_prefetching`).
PREFETCH_MIN_BYTES = _PREFETCH_MIN_BYTES

#: Batches of at least this many pairs are split across threads by default.
AUTO_THREADS_MIN_PAIRS = 1 << 17
_MAX_AUTO_THREADS = 8
_pool = None
_pool_lock = threading.Lock()


def batch_threads(threads, Py_ssize_t length):
    """The number of parts a batch of `length` pairs is split into: `threads`
    checked (ValueError unless a positive integer), or the automatic choice."""
    if threads is None:
        if length < AUTO_THREADS_MIN_PAIRS:
            return 1
        return max(1, min(os.cpu_count() or 1, _MAX_AUTO_THREADS,
                          length // (AUTO_THREADS_MIN_PAIRS // 2)))
    if isinstance(threads, (bool, np.bool_)) or not isinstance(threads, (int, np.integer)) \
            or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    return max(1, min(int(threads), length))


def _thread_pool():
    """The worker threads batches split across (made on first use)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=max(os.cpu_count() or 1, 2),
                                       thread_name_prefix="its-core-batch")
        return _pool


def _sorted_unique(values):
    """np.unique for a small array, by sorting: numpy 2's hash-based unique
    costs about 150 us even on 2 000 values."""
    ordered = np.sort(values)
    if ordered.size < 2:
        return ordered
    keep = np.empty(ordered.size, bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


cdef class _Section:
    """A `with` block of the tables' guard: a pin (``write=False``: a read that
    releases the GIL or calls into Python half-way; it must not contain
    another pin of the same tables) or a write section (a mutation, or a
    composite read that must see one state: `TranslationTables.exclusive`)."""
    cdef TableGuard guard
    cdef bint write

    def __cinit__(self, TableGuard guard, bint write):
        self.guard = guard
        self.write = write

    def __enter__(self):
        if self.write:
            self.guard.begin_write()
        else:
            self.guard.pin()

    def __exit__(self, *exc_info):
        if self.write:
            self.guard.end_write()
        else:
            self.guard.unpin()
        return False


def _Pin(TableGuard guard):
    return _Section(guard, False)


def _WriteSection(TableGuard guard):
    return _Section(guard, True)



#: The tables as canonical arrays, declared once: ``(name, dtype, dimension,
#: meaning)``.  `TranslationTables.to_arrays` writes them, `from_arrays` checks
#: and loads them, and a host snapshot (`its_core.abi.snapshot_format`) holds
#: them as ``tables.<name>``.  The dimension names the length the arrays of
#: one group share: ``devices`` (mapped devices, by DeviceID), ``events``
#: (every ITE, grouped by device in DeviceID order, by EventID within a device:
#: `export_events` order) and ``collections`` (mapped collections, by ICID).
TABLE_ARRAYS = (
    ("device_id", "u4", "devices", "mapped DeviceIDs, strictly increasing, below 2**device_bits"),
    ("event_bits", "u1", "devices", "EventID bits each device was mapped with, 1..event_bits"),
    ("itt_addr", "u8", "devices", "ITT address each device was mapped with"),
    ("num_events", "u4", "devices",
     "mapped events of each device: its rows of the event arrays; they sum to their length"),
    ("event_id", "u4", "events",
     "EventIDs, strictly increasing within a device, below 2**(its event bits)"),
    ("intid", "u4", "events", "pINTID of each event: an LPI, 8192 <= INTID < 2**intid_bits"),
    ("icid", "u2", "events", "collection of each event, below num_collections (mapped or not)"),
    ("collection_icid", "u2", "collections",
     "ICIDs of the mapped collections, strictly increasing, below num_collections"),
    ("collection_cpu", "i4", "collections", "target CPU of each, 0..num_cpus-1"),
)

#: The GICv4 state as canonical arrays, in the form of `TABLE_ARRAYS`:
#: ``virtual_events`` (every virtual ITE, sorted by (DeviceID, EventID)) and
#: ``vpes`` (mapped vPEs, by vPEID).  `to_arrays` adds them only to tables
#: holding virtual state (a virtual ITE or a mapped vPE), so tables without
#: any give exactly the `TABLE_ARRAYS` keys; `from_arrays` takes all of them
#: or none.  The physical arrays never hold a virtual ITE.  (A GICv4 ITS's
#: host snapshot carries these as its "its.virtual" keys; a GICv3 ITS's
#: snapshot refuses virtual state that host code put in its tables.)
VIRTUAL_TABLE_ARRAYS = (
    ("virtual_device_id", "u4", "virtual_events",
     "DeviceID of each virtual ITE: a mapped device (tables.device_id)"),
    ("virtual_event_id", "u4", "virtual_events",
     "EventID of each, below 2**(its device's event bits); (DeviceID, EventID) strictly "
     "increasing, never also a physical event"),
    ("virtual_intid", "u4", "virtual_events",
     "vINTID of each: an LPI, 8192 <= vINTID < 2**intid_bits"),
    ("virtual_vpe_id", "u2", "virtual_events", "vPEID of each (mapped or not)"),
    ("virtual_doorbell", "u4", "virtual_events",
     "doorbell pINTID of each: 1023 (none) or an LPI below 2**intid_bits"),
    ("vpe_id", "u2", "vpes", "vPEIDs of the mapped vPEs, strictly increasing"),
    ("vpe_cpu", "i4", "vpes", "CPU each is mapped to, 0..num_cpus-1"),
)

cdef enum:
    ROW_OK = 0
    ROW_NOT_INCREASING = 1      # EventID not above the previous one of its device
    ROW_BEYOND_ITT = 2          # EventID >= 2**(the device's EventID bits)
    ROW_NOT_LPI = 3             # INTID < 8192 or >= 2**intid_bits
    ROW_ICID = 4                # ICID >= num_collections
    ROW_ABOVE_LAST = 5          # EventID above the device's last one: not increasing
    SPARSE_STORAGE = 255        # _load_arrays: the device's ITEs go to the sparse map
    INITIAL_POOL_ENTRIES = 1024 # what a new ItePool holds


cdef inline Py_ssize_t _load_rows(ite_t* slab, Py_ssize_t slab_size, const uint32_t* events,
                                  const uint32_t* intids, const uint16_t* icids,
                                  Py_ssize_t count, uint64_t last, uint64_t intid_limit,
                                  uint64_t num_collections, int* failure) noexcept nogil:
    """Check the `count` event rows of one device (EventIDs strictly
    increasing up to `last`, INTIDs LPIs below `intid_limit`, ICIDs below
    `num_collections`) and, with a `slab`, write their ITEs into it, indexed
    by EventID (`last` < `slab_size`).  Returns -1, or the first refused row
    with its ROW_* code in `failure`."""
    cdef Py_ssize_t row
    cdef uint32_t event, previous = 0, intid
    for row in range(count):
        event = events[row]
        intid = intids[row]
        if row and event <= previous:
            failure[0] = ROW_NOT_INCREASING
            return row
        if event > last:
            failure[0] = ROW_ABOVE_LAST
            return row
        if intid < LPI_FIRST_INTID or intid >= intid_limit:
            failure[0] = ROW_NOT_LPI
            return row
        if icids[row] >= num_collections:
            failure[0] = ROW_ICID
            return row
        if slab != NULL:
            slab[checked_index(event, slab_size)] = ite_pack(intid, icids[row])
        previous = event
    return -1


cdef inline bint _write_rows(ite_t* slab, Py_ssize_t slab_size, const uint32_t* events,
                             const uint32_t* intids, const uint16_t* icids, Py_ssize_t count,
                             uint32_t last, uint32_t intid_span,
                             uint32_t num_collections) noexcept nogil:
    """`_load_rows` for a slab, without a branch per row: every check of the
    `count` rows is folded into one flag while their ITEs are written (each
    store kept inside the slab), so the loop runs at memory speed; a full slab
    (EventIDs exactly 0..count-1) is one straight, vectorisable pass.  True
    when some row is bad: `_load_rows` then says which and why."""
    cdef Py_ssize_t row
    cdef uint32_t event, previous = 0, bad = 0
    if count == slab_size:
        for row in range(count):
            bad |= events[row] ^ <uint32_t>row
            bad |= (intids[row] - <uint32_t>LPI_FIRST_INTID) >= intid_span
            bad |= icids[row] >= num_collections
            slab[row] = ite_pack(intids[row], icids[row])
        return bad != 0
    for row in range(count):
        event = events[row]
        bad |= (row != 0) & (event <= previous)
        bad |= event > last
        bad |= (intids[row] - <uint32_t>LPI_FIRST_INTID) >= intid_span
        bad |= icids[row] >= num_collections
        slab[checked_index(event if event <= last else last, slab_size)] = \
            ite_pack(intids[row], icids[row])
        previous = event
    return bad != 0


_SINGULAR = {"devices": "device", "events": "event", "collections": "collection",
             "virtual_events": "virtual event", "vpes": "vPE"}


def _table_error(str name, str reason):
    """RestoreError about the canonical array `name` (key ``tables.<name>``)."""
    return RestoreError("snapshot", None, f"tables.{name}", reason)


def _first(mask):
    """Index of the first True of a bool array."""
    return int(np.flatnonzero(mask)[0])


def _table_columns(arrays):
    """The canonical arrays of `arrays` (a mapping by `TABLE_ARRAYS` name),
    contiguous, after checking that each is there with its dtype, 1-D, and
    that the arrays of one dimension agree in length (RestoreError)."""
    try:
        names = set(arrays)
    except TypeError:
        raise RestoreError("snapshot", None, "tables",
                           f"expected a mapping of arrays, got {type(arrays).__name__}") from None
    expected = [name for name, _, _, _ in TABLE_ARRAYS + VIRTUAL_TABLE_ARRAYS]
    extra = sorted(names - set(expected), key=str)
    if extra:
        raise RestoreError("snapshot", None, f"tables.{extra[0]}", "not a table array")
    declared = TABLE_ARRAYS
    if names & {name for name, _, _, _ in VIRTUAL_TABLE_ARRAYS}:     # all or none
        declared = TABLE_ARRAYS + VIRTUAL_TABLE_ARRAYS
    columns, lengths = {}, {}
    for name, dtype, dimension, _ in declared:
        if name not in names:
            raise _table_error(name, "missing")
        value = arrays[name]
        if not isinstance(value, np.ndarray) or value.dtype != np.dtype(dtype) or value.ndim != 1:
            got = (f"a {value.ndim}-D {value.dtype} array" if isinstance(value, np.ndarray)
                   else type(value).__name__)
            raise _table_error(name, f"expected a 1-D {np.dtype(dtype)} array, got {got}")
        first = lengths.setdefault(dimension, (name, value.shape[0]))
        if value.shape[0] != first[1]:
            raise _table_error(name, f"has {value.shape[0]} rows but tables.{first[0]} has "
                                     f"{first[1]} (both are per {_SINGULAR[dimension]})")
        columns[name] = np.ascontiguousarray(value)
    return columns


def _rebuild_tables(layout, device_bits, event_bits, intid_bits, num_collections, num_cpus,
                    arrays):
    """Unpickle `TranslationTables` (see `TranslationTables.__reduce__`)."""
    return TranslationTables.from_arrays(
        arrays, layout, device_bits=device_bits, event_bits=event_bits, intid_bits=intid_bits,
        num_collections=num_collections, num_cpus=num_cpus)

cdef class TranslationTables:
    """DeviceID/EventID -> (LPI INTID, target CPU) mappings in one storage layout.

    Parameters
    ----------
    layout : {"flat", "twolevel", "hash"}
        How DeviceIDs are looked up (see docs/architecture.md).  All layouts
        behave identically; only speed and memory differ.
    device_bits : int
        DeviceIDs are below ``2**device_bits`` (1..32; flat allows up to 20).
    event_bits : int
        Largest number of EventID bits a device may be mapped with (1..32).
    intid_bits : int, default 16
        LPI INTIDs are in ``[8192, 2**intid_bits)`` (14..32: the ITE's INTID
        field is 32 bits wide; an `ITS` allows 14..24, what a CPU interface
        reports and what it keeps pending bitmaps for).
    num_collections : int
        ICIDs are below this (1..65536).
    num_cpus : int, default 8
        Collections target CPU numbers below this (1..2**31).  Here it only
        bounds MAPC targets and costs nothing per CPU; an `ITS` defaults to
        4 redistributors, each with its own pending bitmap.
    """

    def __init__(self, str layout="flat", *, device_bits=16, event_bits=16, intid_bits=16,
                 num_collections=ICID_SPACE, num_cpus=8):
        check_table_parameters(layout, device_bits, event_bits, intid_bits, num_collections,
                               num_cpus)
        self.layout = layout
        self.layout_code = LAYOUTS.index(layout)
        self.device_bits = device_bits
        self.event_bits = event_bits
        self.intid_bits = intid_bits
        self.num_collections = num_collections
        self.num_cpus = num_cpus
        self.guard = TableGuard()
        self.reset()

    def reset(self):
        """Drop every device, event and collection mapping."""
        self.guard.begin_write()
        try:
            self._reset()
        finally:
            self.guard.end_write()

    def exclusive(self):
        """A context manager holding the tables' write section: no other
        thread reads or changes them inside the block (for composite reads
        that must see one state, such as a save).  Re-entrant."""
        return _WriteSection(self.guard)

    def _reset(self):
        if self.layout_code == LAYOUT_FLAT:
            self.directory = FlatDirectory(self.device_bits)
        elif self.layout_code == LAYOUT_TWOLEVEL:
            self.directory = TwoLevelDirectory(self.device_bits)
        else:
            self.directory = HashDirectory(self.device_bits)
        self.pool = ItePool()
        self.sparse = SparseEventMap()
        self.collections_array = np.full(ICID_SPACE, CPU_NONE, np.int32)
        self.collections = self.collections_array
        self.num_events = 0
        self.num_virtual_events = 0
        self.num_vpes = 0
        self.doorbells = None           # GICv4 state costs nothing until first used
        self.doorbell_values_array = None
        self.doorbell_values = None
        self.doorbell_codes = None
        self.vpes_array = None
        self.vpes = None
        self._refresh_view()

    # ------------------------------------------------------------------
    # C-level mutators (also called by the command processor)

    cdef device_t* _device(self, devid_t device_id) noexcept:
        """Record of a DeviceID already checked against device_bits, or NULL."""
        if self.view_generation != (self.directory.generation + self.pool.generation
                                    + self.sparse.generation):
            return self.directory.lookup(device_id)      # view stale: slow path
        if self.layout_code == LAYOUT_FLAT:
            return flat_find(&self.view, device_id)
        elif self.layout_code == LAYOUT_TWOLEVEL:
            return twolevel_find(&self.view, device_id)
        return hash_find(&self.view, device_id)

    cdef int _map_device(self, int64_t device_id, int64_t event_bits,
                         uint64_t itt_addr) except -1:
        """MAPD V=1: (re)map a device with an empty ITT.  Returns 0 or a failure."""
        if device_id < 0 or (<uint64_t>device_id) >> self.device_bits:
            return DEVICE_ID_OUT_OF_RANGE
        if not 1 <= event_bits <= self.event_bits:
            return EVENT_BITS_OUT_OF_RANGE
        cdef device_t* device = self._device(<devid_t>device_id)
        if device != NULL:
            self._drop_events(device)
        else:
            device = self.directory.insert(<devid_t>device_id)
        device.event_bits = <uint8_t>event_bits
        device.itt_addr = itt_addr
        self._sync_view()
        return 0

    cdef int _drop_events(self, device_t* device) except -1:
        """Forget every ITE of `device`, physical and virtual (its record stays)."""
        cdef Py_ssize_t virtual = 0
        if device.flags & DEVICE_SPARSE:
            self.sparse.drop_device(device.device_id)
        if self.doorbells is not None and self.doorbells.count:
            virtual = self.doorbells.count
            self.doorbells.drop_device(device.device_id)
            virtual -= self.doorbells.count
        self.pool.release(device)
        self.num_virtual_events -= virtual
        self.num_events -= device.num_events - virtual
        device.num_events = 0
        device.flags = 0
        return 0

    cdef int _unmap_device(self, int64_t device_id) except -1:
        """MAPD V=0: forget a device and its ITEs (absent device: no change)."""
        if device_id < 0 or (<uint64_t>device_id) >> self.device_bits:
            return DEVICE_ID_OUT_OF_RANGE
        cdef device_t* device = self._device(<devid_t>device_id)
        if device != NULL:
            self._drop_events(device)
            self.directory.remove(<devid_t>device_id)
        return 0

    cdef int _find_event(self, int64_t device_id, int64_t event_id,
                         device_t** device, ite_t* ite) except -1:
        """Validate (DeviceID, EventID) and find their ITE (0 if unmapped)."""
        if device_id < 0 or (<uint64_t>device_id) >> self.device_bits:
            return DEVICE_ID_OUT_OF_RANGE
        device[0] = self._device(<devid_t>device_id)
        if device[0] == NULL:
            return DEVICE_NOT_MAPPED
        if event_id < 0 or (<uint64_t>event_id) >> device[0].event_bits:
            return EVENT_ID_OUT_OF_RANGE
        self._sync_view()
        ite[0] = find_ite(&self.view, device[0], <eventid_t>event_id)
        return 0

    cdef int _refresh_view(self) except -1:
        """Point `view` at the current arrays and hold them in `view_owner`."""
        self.view.device_bits = self.device_bits
        self.view.collections = &self.collections[0]
        self.view.vpes = &self.vpes[0] if self.vpes_array is not None else NULL
        self.view_owner = (self.directory.fill(&self.view), self.pool.fill(&self.view),
                           self.sparse.fill(&self.view), self.collections_array,
                           self.vpes_array)
        self.view_generation = (self.directory.generation + self.pool.generation
                                + self.sparse.generation)
        return 0

    cdef inline int _sync_view(self) except -1:
        """Refresh `view` if any store reallocated an array since the last time."""
        if self.view_generation != (self.directory.generation + self.pool.generation
                                    + self.sparse.generation):
            self._refresh_view()
        return 0

    cdef int _map_event(self, int64_t device_id, int64_t event_id, int64_t intid,
                        int64_t icid) except -1:
        """MAPTI/MAPI, checked in KVM's order: device, EventID, INTID, existing
        mapping, ICID."""
        cdef device_t* device
        cdef ite_t ite
        cdef int failure = self._find_event(device_id, event_id, &device, &ite)
        if failure:
            return failure
        if intid < LPI_FIRST_INTID or (<uint64_t>intid) >> self.intid_bits:
            return INTID_NOT_LPI
        if ite != 0:
            return EVENT_ALREADY_MAPPED
        if icid < 0 or icid >= self.num_collections:
            return ICID_OUT_OF_RANGE
        return self._add_ite(device, <eventid_t>event_id, ite_pack(<intid_t>intid, <icid_t>icid))

    cdef int _add_ite(self, device_t* device, eventid_t event_id, ite_t ite) except -1:
        """Store a new ITE whose every check has passed (see _map_event;
        a virtual one's doorbell is already in `doorbells`)."""
        self._store_ite(device, event_id, ite)
        device.num_events += 1
        if ite_is_virtual(ite):
            self.num_virtual_events += 1
        else:
            self.num_events += 1
        self._sync_view()
        return 0

    cdef int _store_ite(self, device_t* device, eventid_t event_id, ite_t ite) except -1:
        """Write a non-zero ITE for `event_id`, growing the device's slab or
        moving the device to the sparse map when its EventIDs are too spread."""
        if device.flags & DEVICE_SPARSE:
            self.sparse.put(sparse_key(device.device_id, event_id), ite)
            return 0
        cdef bint has_slab = device.flags & DEVICE_HAS_SLAB
        if not (has_slab and not ((<uint64_t>event_id) >> device.slab_log2)):
            self._prepare_storage(device, event_id, device.num_events + 1)
            if device.flags & DEVICE_SPARSE:
                self.sparse.put(sparse_key(device.device_id, event_id), ite)
                return 0
        self.pool.entries[<Py_ssize_t>device.ite_base + event_id] = ite
        return 0

    cdef int _prepare_storage(self, device_t* device, eventid_t max_event_id,
                              Py_ssize_t num_events) except -1:
        """Make room for EventIDs up to `max_event_id` on a device that will
        hold `num_events`: a (bigger) dense slab, or the sparse map when a slab
        would be too empty (more than 4096 slots and 4 per event)."""
        cdef bint has_slab = device.flags & DEVICE_HAS_SLAB
        cdef int slab_log2 = INITIAL_SLAB_LOG2
        while (<uint64_t>max_event_id) >> slab_log2:
            slab_log2 += 1
        if has_slab and slab_log2 <= device.slab_log2:
            slab_log2 = device.slab_log2 + 1
        slab_log2 = min(slab_log2, device.event_bits)
        cdef Py_ssize_t size = (<Py_ssize_t>1) << slab_log2
        cdef Py_ssize_t old_size = ((<Py_ssize_t>1) << device.slab_log2) if has_slab else 0
        cdef Py_ssize_t start, index
        cdef ite_t ite
        if size > max(<Py_ssize_t>DENSE_SLAB_LIMIT, DENSE_SLAB_FACTOR * num_events):
            # Too sparse for a slab: move what the slab holds into the map.
            for index in range(old_size):
                ite = self.pool.entries[device.ite_base + index]
                if ite != 0:
                    self.sparse.put(sparse_key(device.device_id, <eventid_t>index), ite)
            self.pool.release(device)
            device.flags = DEVICE_SPARSE
            return 0
        start = self.pool.reserve(size)
        if start == -2:
            self.pool.compact(self.directory.storage(), size)
            start = self.pool.reserve(size)
        if has_slab:
            self.pool.entries[start:start + old_size] = \
                self.pool.entries[device.ite_base:device.ite_base + old_size]
            self.pool.release(device)
        device.ite_base = <uint32_t>start
        device.slab_log2 = <uint8_t>slab_log2
        device.flags = DEVICE_HAS_SLAB
        return 0

    cdef int _unmap_event(self, int64_t device_id, int64_t event_id) except -1:
        """DISCARD's table part: forget one ITE, physical or virtual (a
        virtual one with its doorbell: the architecture's DISCARD, digest
        §3.4 / C1, whether or not its vPE is mapped)."""
        cdef device_t* device
        cdef ite_t ite
        cdef int failure = self._find_event(device_id, event_id, &device, &ite)
        if failure or ite == 0:
            return failure or EVENT_NOT_MAPPED
        if device.flags & DEVICE_SPARSE:
            self.sparse.pop(sparse_key(device.device_id, <eventid_t>event_id))
        else:
            self.pool.entries[<Py_ssize_t>device.ite_base + event_id] = 0
        device.num_events -= 1
        if ite_is_virtual(ite):
            self.doorbells.pop(sparse_key(device.device_id, <eventid_t>event_id))
            self.num_virtual_events -= 1
        else:
            self.num_events -= 1
        return 0

    cdef int _move_event(self, int64_t device_id, int64_t event_id, int64_t icid) except -1:
        """MOVI's table part: give a mapped physical event another collection
        (a virtual one: EVENT_IS_VIRTUAL, QEMU's "ITE is not physical")."""
        cdef device_t* device
        cdef ite_t ite
        cdef int failure = self._find_event(device_id, event_id, &device, &ite)
        if failure or ite == 0:
            return failure or EVENT_NOT_MAPPED
        if ite_is_virtual(ite):
            return EVENT_IS_VIRTUAL
        if icid < 0 or icid >= self.num_collections:
            return ICID_OUT_OF_RANGE
        self._store_ite(device, <eventid_t>event_id, ite_pack(ite_intid(ite), <icid_t>icid))
        self._sync_view()
        return 0

    cdef int _map_collection(self, int64_t icid, int64_t cpu) except -1:
        """MAPC V=1, checked in KVM's order: CPU, then ICID."""
        if cpu < 0 or cpu >= self.num_cpus:
            return CPU_OUT_OF_RANGE
        if icid < 0 or icid >= self.num_collections:
            return ICID_OUT_OF_RANGE
        self.collections[icid] = <cpu_t>cpu
        return 0

    cdef int _unmap_collection(self, int64_t icid) except -1:
        """MAPC V=0 (events keep naming the ICID; they translate again after a
        later MAPC V=1)."""
        if icid < 0 or icid >= self.num_collections:
            return ICID_OUT_OF_RANGE
        self.collections[icid] = CPU_NONE
        return 0

    # ------------------------------------------------------------------
    # GICv4: virtual ITEs and the vPE table (C level)

    cdef int _ensure_virtual(self) except -1:
        """Allocate the doorbell map and the vPE table on first use."""
        if self.vpes_array is None:
            self.doorbells = SparseEventMap()
            self.doorbell_values_array = np.zeros(DOORBELL_CODES, np.uint32)
            self.doorbell_values = self.doorbell_values_array
            self.doorbell_codes = {}
            self.vpes_array = np.full(VPE_SPACE, CPU_NONE, np.int32)
            self.vpes = self.vpes_array
            self._refresh_view()
        return 0

    cdef uint16_t _doorbell_code(self, uint64_t doorbell) except? 0xFFFF:
        """The code of doorbell `doorbell` for a virtual ITE word (_types.pxd):
        its index in `doorbell_values`, given to each new doorbell value in
        turn from 1; DOORBELL_CODE_UNCACHED (0) once DOORBELL_CODES - 1 values
        have one.  Codes are never taken back (a guest cycling through more
        doorbell values than that only loses the cache, not a doorbell)."""
        code = self.doorbell_codes.get(doorbell)
        if code is not None:
            return code
        cdef Py_ssize_t count = len(self.doorbell_codes) + 1
        if count >= DOORBELL_CODES:
            return DOORBELL_CODE_UNCACHED
        self.doorbell_values[count] = <uint32_t>doorbell
        self.doorbell_codes[doorbell] = count
        return <uint16_t>count

    cdef int _map_virtual_event(self, int64_t device_id, int64_t event_id, int64_t vintid,
                                int64_t vpe_id, int64_t doorbell) except -1:
        """VMAPTI/VMAPI's table part, checked in the reference model's order
        (QEMU's, with MAPTI's "already mapped"): device, EventID, vINTID an
        LPI below 2**intid_bits, doorbell 1023 or such an LPI, no ITE
        (physical or virtual), vPEID 16 bits.  The vPE need not be mapped
        (digest C5)."""
        cdef device_t* device
        cdef ite_t ite
        cdef int failure = self._find_event(device_id, event_id, &device, &ite)
        if failure:
            return failure
        if vintid < LPI_FIRST_INTID or (<uint64_t>vintid) >> self.intid_bits:
            return INTID_NOT_LPI
        if doorbell != DOORBELL_NONE and (doorbell < LPI_FIRST_INTID
                                          or (<uint64_t>doorbell) >> self.intid_bits):
            return DOORBELL_NOT_LPI
        if ite != 0:
            return EVENT_ALREADY_MAPPED
        if vpe_id < 0 or vpe_id >= VPE_SPACE:
            return VPE_ID_OUT_OF_RANGE
        self._ensure_virtual()
        self._add_ite(device, <eventid_t>event_id,
                      ite_pack_virtual(<intid_t>vintid, <vpeid_t>vpe_id,
                                       self._doorbell_code(<uint64_t>doorbell)))
        self.doorbells.put(sparse_key(<devid_t>device_id, <eventid_t>event_id),
                           <uint64_t>doorbell)
        return 0

    cdef int _move_virtual_event(self, int64_t device_id, int64_t event_id, int64_t vpe_id,
                                 int64_t doorbell, bint set_doorbell) except -1:
        """VMOVI's table part, checked in QEMU's order: the doorbell (only
        with `set_doorbell`, D = 1) before any lookup, device, EventID, an
        ITE, a virtual one (EVENT_NOT_VIRTUAL), vPEID 16 bits."""
        cdef device_t* device
        cdef ite_t ite
        if set_doorbell and doorbell != DOORBELL_NONE and (
                doorbell < LPI_FIRST_INTID or (<uint64_t>doorbell) >> self.intid_bits):
            return DOORBELL_NOT_LPI
        cdef int failure = self._find_event(device_id, event_id, &device, &ite)
        if failure or ite == 0:
            return failure or EVENT_NOT_MAPPED
        if not ite_is_virtual(ite):
            return EVENT_NOT_VIRTUAL
        if vpe_id < 0 or vpe_id >= VPE_SPACE:
            return VPE_ID_OUT_OF_RANGE
        cdef uint16_t code = ite_doorbell_code(ite)
        if set_doorbell:
            code = self._doorbell_code(<uint64_t>doorbell)
            self.doorbells.put(sparse_key(<devid_t>device_id, <eventid_t>event_id),
                               <uint64_t>doorbell)
        self._store_ite(device, <eventid_t>event_id,
                        ite_pack_virtual(ite_intid(ite), <vpeid_t>vpe_id, code))
        self._sync_view()
        return 0

    cdef int _map_vpe(self, int64_t vpe_id, int64_t cpu) except -1:
        """VMAPP V=1's table part, checked as MAPC: CPU, then vPEID."""
        if cpu < 0 or cpu >= self.num_cpus:
            return CPU_OUT_OF_RANGE
        if vpe_id < 0 or vpe_id >= VPE_SPACE:
            return VPE_ID_OUT_OF_RANGE
        self._ensure_virtual()
        if self.vpes[vpe_id] == CPU_NONE:
            self.num_vpes += 1
        self.vpes[vpe_id] = <cpu_t>cpu
        return 0

    cdef int _unmap_vpe(self, int64_t vpe_id) except -1:
        """VMAPP V=0's table part (virtual ITEs keep naming the vPE, C1)."""
        if vpe_id < 0 or vpe_id >= VPE_SPACE:
            return VPE_ID_OUT_OF_RANGE
        if self.vpes_array is not None and self.vpes[vpe_id] != CPU_NONE:
            self.vpes[vpe_id] = CPU_NONE
            self.num_vpes -= 1
        return 0

    cdef bint _has_virtual_state(self):
        """Whether any virtual ITE or mapped vPE exists."""
        return self.num_virtual_events != 0 or self.num_vpes != 0

    # ------------------------------------------------------------------
    # Python API: mutators

    def map_device(self, device_id, event_bits, itt_addr=0):
        """Map `device_id` with an empty ITT of ``2**event_bits`` EventIDs.

        Re-mapping a mapped device drops all its events (MAPD semantics).
        `itt_addr` is kept for the front end and for saving; the core does not
        interpret it.  Raises `MappingError` (nothing changed) on bad input.
        """
        itt = as_uint(itt_addr, "itt_addr", 64)
        cdef int64_t wide_device = _wide(device_id, "device_id")
        cdef int64_t wide_bits = _wide(event_bits, "event_bits")
        self.guard.begin_write()
        try:
            code = self._map_device(wide_device, wide_bits, itt)
        finally:
            self.guard.end_write()
        _check(code, "map_device", {"device_id": device_id, "event_bits": event_bits,
                              "itt_addr": itt})

    def unmap_device(self, device_id):
        """Forget `device_id` and all its events.  Returns whether it was mapped."""
        cdef int64_t wide = _wide(device_id, "device_id")
        self.guard.begin_write()
        try:
            was_mapped = (wide >= 0 and not ((<uint64_t>wide) >> self.device_bits)
                          and self._device(<devid_t>wide) != NULL)
            code = self._unmap_device(wide)
        finally:
            self.guard.end_write()
        _check(code, "unmap_device", {"device_id": device_id})
        return was_mapped

    def map_event(self, device_id, event_id, intid, icid):
        """Map (`device_id`, `event_id`) to LPI `intid` in collection `icid`.

        Checks, in order: DeviceID range, device mapped, EventID within the
        device's ITT, INTID an LPI below ``2**intid_bits``, EventID not yet
        mapped, ICID below `num_collections`.
        """
        cdef int64_t wide_device = _wide(device_id, "device_id")
        cdef int64_t wide_event = _wide(event_id, "event_id")
        cdef int64_t wide_intid = _wide(intid, "intid")
        cdef int64_t wide_icid = _wide(icid, "icid")
        self.guard.begin_write()
        try:
            code = self._map_event(wide_device, wide_event, wide_intid, wide_icid)
        finally:
            self.guard.end_write()
        _check(code, "map_event", {"device_id": device_id, "event_id": event_id,
                             "intid": intid, "icid": icid})

    def unmap_event(self, device_id, event_id):
        """Forget the mapping of (`device_id`, `event_id`); return its
        ``(intid, icid)``, or for a virtual ITE (GICv4 DISCARD, removed
        whether or not its vPE is mapped) its ``(vintid, vpe_id, doorbell)``."""
        cdef int64_t wide_device = _wide(device_id, "device_id")
        cdef int64_t wide_event = _wide(event_id, "event_id")
        self.guard.begin_write()
        try:
            mapped = (self._mapping(wide_device, wide_event)
                      or self._virtual_mapping(wide_device, wide_event))
            code = self._unmap_event(wide_device, wide_event)
        finally:
            self.guard.end_write()
        _check(code, "unmap_event", {"device_id": device_id, "event_id": event_id})
        return mapped

    def move_event(self, device_id, event_id, icid):
        """Give a mapped event collection `icid`; return its previous ICID.
        A virtual event refuses with EVENT_IS_VIRTUAL (MOVI on a virtual ITE)."""
        cdef int64_t wide_device = _wide(device_id, "device_id")
        cdef int64_t wide_event = _wide(event_id, "event_id")
        cdef int64_t wide_icid = _wide(icid, "icid")
        self.guard.begin_write()
        try:
            mapped = self._mapping(wide_device, wide_event)
            code = self._move_event(wide_device, wide_event, wide_icid)
        finally:
            self.guard.end_write()
        _check(code, "move_event", {"device_id": device_id, "event_id": event_id, "icid": icid})
        return mapped[1]

    def map_events(self, device_ids, event_ids, intids, icids):
        """Map many events at once (same checks and order as `map_event`).

        Each row is applied in turn, so a later row sees earlier ones.  Rows
        that fail change nothing and are reported, not raised.

        Returns
        -------
        failures : ndarray of uint8
            0 where the row was mapped, else its `MappingFailure` code.
        """
        devices = _as_id_array(device_ids, "device_ids")
        events = _as_id_array(event_ids, "event_ids")
        lpis = _as_id_array(intids, "intids")
        collections = _as_id_array(icids, "icids")
        cdef Py_ssize_t length = devices.shape[0]
        if not (events.shape[0] == lpis.shape[0] == collections.shape[0] == length):
            raise ValueError("device_ids, event_ids, intids and icids differ in length")
        failures = np.zeros(length, np.uint8)
        cdef const uint32_t[:] device_view = devices
        cdef const uint32_t[:] event_view = events
        cdef const uint32_t[:] intid_view = lpis
        cdef const uint32_t[:] icid_view = collections
        cdef uint8_t[::1] failure_view = failures
        cdef Py_ssize_t index
        self.guard.begin_write()
        try:
            for index in range(length):
                failure_view[index] = <uint8_t>self._map_event(
                    device_view[index], event_view[index], intid_view[index], icid_view[index])
        finally:
            self.guard.end_write()
        return failures

    def map_virtual_event(self, device_id, event_id, vintid, vpe_id, doorbell=DOORBELL_NONE):
        """GICv4 VMAPTI: map (`device_id`, `event_id`) to vLPI `vintid` of
        vPE `vpe_id`, with doorbell pINTID `doorbell` (1023: none).

        Checks, in order (`MappingError`, nothing changed): DeviceID range,
        device mapped, EventID within the device's ITT, vINTID an LPI below
        ``2**intid_bits`` (INTID_NOT_LPI), doorbell 1023 or such an LPI
        (DOORBELL_NOT_LPI), EventID not yet mapped, physically or virtually
        (EVENT_ALREADY_MAPPED), vPEID in 0..65535 (VPE_ID_OUT_OF_RANGE).  The
        vPE need not be mapped (`map_vpe`); its pairs then translate as
        VIRTUAL_NO_VPE.  The vINTID against the vPE's VPT size is the front
        end's check.
        """
        cdef int64_t wide_device = _wide(device_id, "device_id")
        cdef int64_t wide_event = _wide(event_id, "event_id")
        cdef int64_t wide_vintid = _wide(vintid, "vintid")
        cdef int64_t wide_vpe = _wide(vpe_id, "vpe_id")
        cdef int64_t wide_doorbell = _wide(doorbell, "doorbell")
        self.guard.begin_write()
        try:
            code = self._map_virtual_event(wide_device, wide_event, wide_vintid, wide_vpe,
                                           wide_doorbell)
        finally:
            self.guard.end_write()
        _check(code, "map_virtual_event", {"device_id": device_id, "event_id": event_id,
                                           "vintid": vintid, "vpe_id": vpe_id,
                                           "doorbell": doorbell})

    def map_virtual_events(self, device_ids, event_ids, vintids, vpe_ids, doorbells):
        """Map many virtual events at once (same checks and order as
        `map_virtual_event`), row by row; failing rows change nothing and are
        reported, not raised.  Values that do not fit 32 bits refuse the
        whole call (ValueError naming the array).

        Returns
        -------
        failures : ndarray of uint8
            0 where the row was mapped, else its `MappingFailure` code.
        """
        devices = _as_id_array(device_ids, "device_ids")
        events = _as_id_array(event_ids, "event_ids")
        vlpis = _as_id_array(vintids, "vintids")
        vpes = _as_id_array(vpe_ids, "vpe_ids")
        bells = _as_id_array(doorbells, "doorbells")
        cdef Py_ssize_t length = devices.shape[0]
        if not (events.shape[0] == vlpis.shape[0] == vpes.shape[0] == bells.shape[0] == length):
            raise ValueError("device_ids, event_ids, vintids, vpe_ids and doorbells differ in "
                             "length")
        failures = np.zeros(length, np.uint8)
        cdef const uint32_t[:] device_view = devices
        cdef const uint32_t[:] event_view = events
        cdef const uint32_t[:] vintid_view = vlpis
        cdef const uint32_t[:] vpe_view = vpes
        cdef const uint32_t[:] doorbell_view = bells
        cdef uint8_t[::1] failure_view = failures
        cdef Py_ssize_t index
        self.guard.begin_write()
        try:
            for index in range(length):
                failure_view[index] = <uint8_t>self._map_virtual_event(
                    device_view[index], event_view[index], vintid_view[index], vpe_view[index],
                    doorbell_view[index])
        finally:
            self.guard.end_write()
        return failures

    def move_virtual_event(self, device_id, event_id, vpe_id, doorbell=None):
        """GICv4 VMOVI: give a mapped virtual event vPE `vpe_id` and, unless
        `doorbell` is None (D = 0), doorbell `doorbell`.  Returns the previous
        ``(vpe_id, doorbell)``.

        Checks, in order: the doorbell (when given: 1023 or an LPI below
        ``2**intid_bits``), DeviceID range, device mapped, EventID in range,
        EventID mapped, the ITE virtual (EVENT_NOT_VIRTUAL), vPEID in
        0..65535.  Pending state is the front end's: the core moves nothing.
        """
        cdef int64_t wide_device = _wide(device_id, "device_id")
        cdef int64_t wide_event = _wide(event_id, "event_id")
        cdef int64_t wide_vpe = _wide(vpe_id, "vpe_id")
        cdef bint set_doorbell = doorbell is not None
        cdef int64_t wide_doorbell = _wide(doorbell, "doorbell") if set_doorbell else 0
        self.guard.begin_write()
        try:
            mapped = self._virtual_mapping(wide_device, wide_event)
            code = self._move_virtual_event(wide_device, wide_event, wide_vpe, wide_doorbell,
                                            set_doorbell)
        finally:
            self.guard.end_write()
        _check(code, "move_virtual_event", {"device_id": device_id, "event_id": event_id,
                                            "vpe_id": vpe_id, "doorbell": doorbell})
        return mapped[1], mapped[2]

    def map_vpe(self, vpe_id, cpu):
        """GICv4 VMAPP V=1: route vPE `vpe_id` (0..65535) to CPU number `cpu`
        (re-targets a mapped one, as VMOVP).  Checks CPU, then vPEID."""
        cdef int64_t wide_vpe = _wide(vpe_id, "vpe_id")
        cdef int64_t wide_cpu = _wide(cpu, "cpu")
        self.guard.begin_write()
        try:
            code = self._map_vpe(wide_vpe, wide_cpu)
        finally:
            self.guard.end_write()
        _check(code, "map_vpe", {"vpe_id": vpe_id, "cpu": cpu})

    def unmap_vpe(self, vpe_id):
        """GICv4 VMAPP V=0: unroute vPE `vpe_id`; its virtual ITEs stay and
        translate as VIRTUAL_NO_VPE.  Returns whether it was mapped."""
        cdef int64_t wide = _wide(vpe_id, "vpe_id")
        self.guard.begin_write()
        try:
            was_mapped = (0 <= wide < VPE_SPACE and self.vpes_array is not None
                          and self.vpes[wide] != CPU_NONE)
            code = self._unmap_vpe(wide)
        finally:
            self.guard.end_write()
        _check(code, "unmap_vpe", {"vpe_id": vpe_id})
        return was_mapped

    def map_collection(self, icid, cpu):
        """Route collection `icid` to CPU number `cpu` (re-targets a mapped one)."""
        cdef int64_t wide_icid = _wide(icid, "icid")
        cdef int64_t wide_cpu = _wide(cpu, "cpu")
        self.guard.begin_write()
        try:
            code = self._map_collection(wide_icid, wide_cpu)
        finally:
            self.guard.end_write()
        _check(code, "map_collection", {"icid": icid, "cpu": cpu})

    def unmap_collection(self, icid):
        """Unroute collection `icid`.  Returns whether it was mapped."""
        cdef int64_t wide = _wide(icid, "icid")
        self.guard.begin_write()
        try:
            was_mapped = 0 <= wide < self.num_collections and self.collections[wide] != CPU_NONE
            code = self._unmap_collection(wide)
        finally:
            self.guard.end_write()
        _check(code, "unmap_collection", {"icid": icid})
        return was_mapped

    cdef object _mapping(self, int64_t device_id, int64_t event_id):
        """(intid, icid) of a mapped physical event or None; IDs already converted."""
        cdef device_t* device
        cdef ite_t ite = 0
        if self._find_event(device_id, event_id, &device, &ite) or ite == 0 \
                or ite_is_virtual(ite):
            return None
        return ite_intid(ite), ite_icid(ite)

    cdef object _virtual_mapping(self, int64_t device_id, int64_t event_id):
        """(vintid, vpe_id, doorbell) of a mapped virtual event or None."""
        cdef device_t* device
        cdef ite_t ite = 0
        if self._find_event(device_id, event_id, &device, &ite) or ite == 0 \
                or not ite_is_virtual(ite):
            return None
        return (ite_intid(ite), ite_vpe_id(ite),
                self._doorbell_of(<devid_t>device_id, <eventid_t>event_id))

    cdef uint64_t _doorbell_of(self, devid_t device_id, eventid_t event_id):
        """Doorbell of a virtual ITE known to exist."""
        return self.doorbells.values[self.doorbells._slot_of(sparse_key(device_id, event_id))]

    cdef bint _is_mapped(self, int64_t device_id):
        """Whether a converted DeviceID is in range and mapped (no waiting)."""
        return (device_id >= 0 and not ((<uint64_t>device_id) >> self.device_bits)
                and self._device(<devid_t>device_id) != NULL)

    # ------------------------------------------------------------------
    # Python API: queries

    def lookup_device(self, device_id):
        """(event_bits, itt_addr) of a mapped device, or None."""
        cdef int64_t wide = _wide(device_id, "device_id")
        self.guard.wait_writer()
        if not self._is_mapped(wide):
            return None
        cdef device_t* device = self._device(<devid_t>wide)
        return device.event_bits, device.itt_addr

    def lookup_event(self, device_id, event_id):
        """(intid, icid) of a mapped physical event, or None (also for
        out-of-range IDs and for a virtual event: see `virtual_event`)."""
        cdef int64_t wide_device = _wide(device_id, "device_id")
        cdef int64_t wide_event = _wide(event_id, "event_id")
        self.guard.wait_writer()
        return self._mapping(wide_device, wide_event)

    def virtual_event(self, device_id, event_id):
        """(vintid, vpe_id, doorbell) of a mapped virtual event, or None
        (also for out-of-range IDs and for a physical event)."""
        cdef int64_t wide_device = _wide(device_id, "device_id")
        cdef int64_t wide_event = _wide(event_id, "event_id")
        self.guard.wait_writer()
        return self._virtual_mapping(wide_device, wide_event)

    def vpe_cpu(self, vpe_id):
        """CPU number vPE `vpe_id` is mapped to, or None when unmapped (also
        for a vPEID outside 0..65535)."""
        cdef int64_t wide = _wide(vpe_id, "vpe_id")
        self.guard.wait_writer()
        if not 0 <= wide < VPE_SPACE or self.vpes_array is None or self.vpes[wide] == CPU_NONE:
            return None
        return self.vpes[wide]

    def vpe_table(self):
        """(vpe_ids uint16, cpus int32) of the mapped vPEs, by vPEID."""
        with _Pin(self.guard):
            if self.vpes_array is None:
                return np.empty(0, np.uint16), np.empty(0, np.int32)
            mapped = np.flatnonzero(self.vpes_array != CPU_NONE)
            return mapped.astype(np.uint16), self.vpes_array[mapped].copy()

    def collection_cpu(self, icid):
        """CPU number collection `icid` targets, or None when unmapped."""
        cdef int64_t wide = _wide(icid, "icid")
        self.guard.wait_writer()
        if not 0 <= wide < self.num_collections or self.collections[wide] == CPU_NONE:
            return None
        return self.collections[wide]

    cdef uint8_t _translate(self, devid_t device_id, eventid_t event_id,
                            intid_t* intid, cpu_t* cpu) except 255:
        """One translation through this layout's inlined lookup (waits for
        another thread's open write section; calls nothing that could let one
        start)."""
        self.guard.wait_writer()
        self._sync_view()
        cdef const lookup_t* view = &self.view
        intid[0] = INTID_NONE
        cpu[0] = CPU_NONE
        if self.layout_code == LAYOUT_FLAT:
            return translate_one(<FlatDirectory>self.directory, view, device_id, event_id,
                                 intid, cpu, NULL, NULL, 0)
        elif self.layout_code == LAYOUT_TWOLEVEL:
            return translate_one(<TwoLevelDirectory>self.directory, view, device_id,
                                 event_id, intid, cpu, NULL, NULL, 0)
        return translate_one(<HashDirectory>self.directory, view, device_id, event_id,
                             intid, cpu, NULL, NULL, 0)

    def translate(self, device_id, event_id):
        """Translate one MSI: return ``(intid, cpu)``.

        Raises `TranslationError` (with ``.status``) when the pair does not
        translate to a physical LPI -- also for a virtual ITE (status VIRTUAL
        or VIRTUAL_NO_VPE; `virtual_event` reads it) --, ValueError for IDs
        that do not fit 32 bits and TypeError for non-integers.
        """
        cdef uint64_t device, event
        cdef intid_t intid
        cdef cpu_t cpu
        message_ids(device_id, event_id, &device, &event)
        cdef uint8_t status = self._translate(<devid_t>device, <eventid_t>event, &intid, &cpu)
        if status != OK:
            raise TranslationError(TranslationStatus(status), device_id, event_id)
        return intid, cpu

    def translate_batch(self, device_ids, event_ids, out=None, *, threads=None,
                        with_vpe_ids=False):
        """Translate many MSIs in nogil loops.

        Parameters
        ----------
        device_ids, event_ids : array_like of int
            Equal-length 1-D integer arrays.  uint32 arrays are used in place;
            other integer dtypes are converted after checking that every value
            fits 32 bits (ValueError otherwise).
        out : tuple of ndarray, optional
            ``(intids uint32, cpus int32, statuses uint8)``, or those and
            ``vpe_ids int32`` -- or ``virtual_ites uint64`` -- of the same
            length, written in place and returned.
        threads : int, optional
            Split the batch into this many contiguous parts translated at once,
            the calling thread taking the first (ValueError unless a positive
            integer).  Default: one per CPU (at most 8) for batches of at least
            `AUTO_THREADS_MIN_PAIRS` pairs, with each part at least that half
            size; otherwise 1.  The results do not depend on it.
        with_vpe_ids : bool, default False
            Without `out`: also return a fourth array, ``vpe_ids``.

        Tables larger than the caches (`batch_prefetching`) are walked in
        groups of pairs whose memory loads are requested ahead of use, except
        where consecutive pairs mostly hit the same device; the results are
        those of the plain loop, pair for pair.

        A pair whose ITE is virtual (GICv4, `map_virtual_event`) has status
        VIRTUAL with its vINTID in `intids` and its vPE's CPU (`map_vpe`) in
        `cpus`, or VIRTUAL_NO_VPE with the vINTID and CPU -1 when the vPE is
        not mapped; `vpe_ids` holds its vPEID in both cases.  Nothing is
        delivered here: the front end serves virtual pairs.

        Returns
        -------
        intids : ndarray of uint32
            LPI INTID (OK) or vINTID (VIRTUAL, VIRTUAL_NO_VPE), else 0.
        cpus : ndarray of int32
            Target CPU (OK) or the vPE's CPU (VIRTUAL), else -1.
        statuses : ndarray of uint8
            `TranslationStatus` of each pair.
        vpe_ids : ndarray of int32
            Only with `with_vpe_ids` or a four-array `out`: the vPEID of
            each virtual pair (VIRTUAL, VIRTUAL_NO_VPE), else -1.
        virtual_ites : ndarray of uint64
            Instead of `vpe_ids`, when `out`'s fourth array is uint64: the
            virtual ITE word of each virtual pair as the core holds it
            (bit 63, vINTID [47:16], vPEID [15:0], a doorbell code in
            [62:48]: the front end's vLPI delivery reads it, `_vlpi.pyx`);
            the other entries are not written.
        """
        devices, events = message_arrays(device_ids, event_ids)
        cdef Py_ssize_t length = devices.shape[0]
        cdef int parts = batch_threads(threads, length)
        if out is None:
            out = (np.empty(length, np.uint32), np.empty(length, np.int32),
                   np.empty(length, np.uint8))
            if with_vpe_ids:
                out += (np.empty(length, np.int32),)
        else:
            out = _check_out(out, length)
        if len(out) == 4 and out[3].dtype == np.int32:
            out[3].fill(VPEID_NONE)         # the loops write only the virtual pairs' vPEIDs
        if length == 0:
            return out
        cdef Py_ssize_t index
        bounds = [length * index // parts for index in range(parts + 1)]
        # Pinned: no other thread's write section starts until every part has
        # finished, so every array the view points into stays allocated and
        # unchanged (docs/threads.md).  The parts run under this one pin.
        self.guard.pin()
        try:
            self._sync_view()
            if parts == 1:
                self._translate_part(devices, events, out, 0, length)
            else:
                pending = [_thread_pool().submit(self._translate_part, devices, events, out,
                                                 bounds[index], bounds[index + 1])
                           for index in range(1, parts)]
                try:
                    self._translate_part(devices, events, out, 0, bounds[1])
                finally:
                    for future in pending:
                        future.result()
        finally:
            self.guard.unpin()
        return out

    def _translate_part(self, devices, events, out, Py_ssize_t start, Py_ssize_t end):
        """Pairs [start, end) of a batch, without the GIL; the caller has
        pinned the tables and synced the view."""
        cdef const uint32_t[:] device_view = devices[start:end]
        cdef const uint32_t[:] event_view = events[start:end]
        cdef uint32_t[::1] intid_view = out[0][start:end]
        cdef int32_t[::1] cpu_view = out[1][start:end]
        cdef uint8_t[::1] status_view = out[2][start:end]
        cdef int32_t[::1] vpe_view
        cdef Py_ssize_t length = end - start
        if length <= 0:
            return
        cdef uint32_t* intid_out = &intid_view[0]
        cdef int32_t* cpu_out = &cpu_view[0]
        cdef uint8_t* status_out = &status_view[0]
        cdef int32_t* vpe_out = NULL
        cdef uint64_t[::1] words_view
        cdef ite_t* words_out = NULL
        if len(out) == 4 and out[3].dtype == np.uint64:
            words_view = out[3][start:end]
            words_out = &words_view[0]
        elif len(out) == 4:
            vpe_view = out[3][start:end]
            vpe_out = &vpe_view[0]
        cdef lookup_t view = self.view
        cdef FlatDirectory flat
        cdef TwoLevelDirectory twolevel
        cdef HashDirectory hashed
        if self.layout_code == LAYOUT_FLAT:
            flat = <FlatDirectory>self.directory
            with nogil:
                translate_pairs(flat, &view, length, device_view, event_view, intid_out,
                               cpu_out, status_out, vpe_out, words_out)
        elif self.layout_code == LAYOUT_TWOLEVEL:
            twolevel = <TwoLevelDirectory>self.directory
            with nogil:
                translate_pairs(twolevel, &view, length, device_view, event_view, intid_out,
                               cpu_out, status_out, vpe_out, words_out)
        else:
            hashed = <HashDirectory>self.directory
            with nogil:
                translate_pairs(hashed, &view, length, device_view, event_view, intid_out,
                               cpu_out, status_out, vpe_out, words_out)

    def load_devices(self, device_ids, event_bits, itt_addrs, event_counts, event_ids, ites):
        """Map many devices with their events at once (for restoring).

        Devices must be new, in strictly increasing DeviceID order, and every
        row must already be valid: this is the trusted bulk path behind
        restore, which validates a saved image completely first.  Device `k`
        owns the next ``event_counts[k]`` rows of `event_ids` / `ites`
        (EventIDs strictly increasing; ITEs packed as the core holds them:
        pINTID in bits [47:16], ICID in bits [15:0]).
        """
        cdef const uint32_t[:] devices = np.ascontiguousarray(device_ids, np.uint32)
        cdef const uint8_t[:] bits = np.ascontiguousarray(event_bits, np.uint8)
        cdef const uint64_t[:] itts = np.ascontiguousarray(itt_addrs, np.uint64)
        cdef const int64_t[:] counts = np.ascontiguousarray(event_counts, np.int64)
        cdef const uint32_t[:] events = np.ascontiguousarray(event_ids, np.uint32)
        cdef const uint64_t[:] words = np.ascontiguousarray(ites, np.uint64)
        cdef Py_ssize_t index, position, row = 0, last, count
        cdef device_t* device
        with _WriteSection(self.guard):
            if not (devices.shape[0] == bits.shape[0] == itts.shape[0] == counts.shape[0]):
                raise ValueError("device arrays differ in length")
            if events.shape[0] != words.shape[0] or np.sum(event_counts) != events.shape[0]:
                raise ValueError("event arrays do not match event_counts")
            for index in range(devices.shape[0]):
                if index and devices[index] <= devices[index - 1]:
                    raise ValueError("device_ids must be strictly increasing")
                if self._map_device(devices[index], bits[index], itts[index]):
                    raise ValueError(f"device {devices[index]} cannot be mapped")
                count = counts[index]
                if count == 0:
                    continue
                last = row + count - 1
                for position in range(row, last + 1):
                    if (words[position] >> ITE_INTID_SHIFT) < LPI_FIRST_INTID or \
                            (words[position] >> ITE_INTID_SHIFT) >> self.intid_bits or \
                            (position > row and events[position] <= events[position - 1]) or \
                            (<uint64_t>events[position]) >> bits[index] or \
                            ite_icid(words[position]) >= self.num_collections:
                        raise ValueError(f"event row {position} is not valid")
                device = self._device(devices[index])
                self._prepare_storage(device, events[last], count)
                device = self._device(devices[index])
                for position in range(row, last + 1):
                    if device.flags & DEVICE_SPARSE:
                        self.sparse.put(sparse_key(devices[index], events[position]), words[position])
                    else:
                        self.pool.entries[<Py_ssize_t>device.ite_base + events[position]] = \
                            words[position]
                device.num_events = <uint32_t>count
                self.num_events += count
                row = last + 1
            self._sync_view()

    def export_events(self):
        """Every ITE, sorted by (DeviceID, EventID), in one native pass.

        Returns
        -------
        device_ids, event_ids : ndarray of uint32
        ites : ndarray of uint64
            pINTID in bits [47:16], ICID in bits [15:0] (a KVM ITE without
            its `next` field); a GICv4 virtual ITE has bit 63 set, vINTID in
            [47:16], vPEID in [15:0] and bits [62:48] clear (its doorbell
            is not in the word: `virtual_event`).
        """
        with _Pin(self.guard):
            return self._export_events()

    def _export_events(self):
        cdef Py_ssize_t total, row = 0, index, event
        cdef uint32_t[::1] devices_view
        cdef uint32_t[::1] events_view
        cdef uint64_t[::1] ites_view
        cdef device_t[::1] recs
        cdef ite_t ite
        total = self.num_events + self.num_virtual_events
        recs = self.directory.records()
        out_devices = np.empty(total, np.uint32)
        out_events = np.empty(total, np.uint32)
        out_ites = np.empty(total, np.uint64)
        devices_view = out_devices
        events_view = out_events
        ites_view = out_ites
        for index in range(recs.shape[0]):
            if recs[index].flags & DEVICE_HAS_SLAB:
                for event in range((<Py_ssize_t>1) << recs[index].slab_log2):
                    ite = self.pool.entries[<Py_ssize_t>recs[index].ite_base + event]
                    if ite != 0:
                        devices_view[row] = recs[index].device_id
                        events_view[row] = <uint32_t>event
                        ites_view[row] = ite
                        row += 1
            elif recs[index].flags & DEVICE_SPARSE:
                sparse_events, sparse_ites = self.sparse.entries_of(recs[index].device_id)
                count = sparse_events.shape[0]
                out_devices[row:row + count] = recs[index].device_id
                out_events[row:row + count] = sparse_events
                out_ites[row:row + count] = sparse_ites
                row += count
        assert row == total, "event count out of step with the stores"
        if self.num_virtual_events:             # virtual words: clear the doorbell codes
            virtual = (out_ites >> np.uint64(ITE_VIRTUAL_SHIFT)) != 0
            out_ites[virtual] &= ~_DOORBELL_CODE_FIELD
        return out_devices, out_events, out_ites

    # ------------------------------------------------------------------
    # Canonical arrays (host snapshots, pickling)

    def to_arrays(self):
        """The whole state as the canonical arrays of `TABLE_ARRAYS`, fresh
        copies, in one native pass over the stores.

        Returns
        -------
        dict of str to ndarray
            ``device_id``, ``event_bits``, ``itt_addr``, ``num_events`` (one
            row per mapped device, by DeviceID), ``event_id``, ``intid``,
            ``icid`` (one row per ITE, grouped by device, by EventID within
            a device) and ``collection_icid``, ``collection_cpu`` (the mapped
            collections, by ICID).  `from_arrays` takes them back, in any
            layout.  Tables holding GICv4 state (a virtual ITE or a mapped
            vPE) also give the `VIRTUAL_TABLE_ARRAYS`; the physical arrays
            then hold the physical ITEs only.
        """
        with _WriteSection(self.guard):          # one state, however long it takes
            if self._has_virtual_state():
                return self._to_arrays_virtual()
            return self._to_arrays()

    def _to_arrays_virtual(self):
        """`_to_arrays` for tables holding virtual state: the ITEs split by
        their VIRTUAL bit (numpy over `_export_events`, not the native pass)."""
        records = self.directory.records()
        device_ids, event_ids, ites = self._export_events()
        virtual = (ites >> np.uint64(ITE_VIRTUAL_SHIFT)) != 0
        physical = ~virtual
        physical_devices = device_ids[physical]
        record_ids = records["device_id"]
        out = {"device_id": record_ids.astype(np.uint32),
               "event_bits": records["event_bits"].astype(np.uint8),
               "itt_addr": records["itt_addr"].astype(np.uint64),
               "num_events": (np.searchsorted(physical_devices, record_ids, "right")
                              - np.searchsorted(physical_devices, record_ids, "left")
                              ).astype(np.uint32),
               "event_id": event_ids[physical],
               "intid": (ites[physical] >> np.uint64(ITE_INTID_SHIFT)).astype(np.uint32),
               "icid": (ites[physical] & np.uint64(ITE_ICID_MASK)).astype(np.uint16)}
        out["collection_icid"], out["collection_cpu"] = self.collection_table()
        virtual_devices, virtual_events = device_ids[virtual], event_ids[virtual]
        doorbells = np.empty(virtual_devices.shape[0], np.uint32)
        cdef Py_ssize_t index
        cdef const uint32_t[::1] device_view = virtual_devices
        cdef const uint32_t[::1] event_view = virtual_events
        cdef uint32_t[::1] doorbell_view = doorbells
        for index in range(doorbells.shape[0]):
            doorbell_view[index] = <uint32_t>self._doorbell_of(device_view[index],
                                                              event_view[index])
        out["virtual_device_id"] = virtual_devices
        out["virtual_event_id"] = virtual_events
        out["virtual_intid"] = ((ites[virtual] >> np.uint64(ITE_INTID_SHIFT))
                                & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        out["virtual_vpe_id"] = (ites[virtual] & np.uint64(ITE_ICID_MASK)).astype(np.uint16)
        out["virtual_doorbell"] = doorbells
        mapped = np.flatnonzero(self.vpes_array != CPU_NONE)
        out["vpe_id"], out["vpe_cpu"] = mapped.astype(np.uint16), self.vpes_array[mapped].copy()
        return out

    def _to_arrays(self):
        records = self.directory.records()
        cdef Py_ssize_t count = records.shape[0], total = self.num_events
        out = {name: np.empty(total if dimension == "events" else count, np.dtype(dtype))
               for name, dtype, dimension, _ in TABLE_ARRAYS if dimension != "collections"}
        if self.sparse.count:
            live = self.sparse.values_array != 0
            order = np.argsort(self.sparse.keys_array[live])
            sparse_keys = self.sparse.keys_array[live][order]
            sparse_ites = self.sparse.values_array[live][order]
        else:
            sparse_keys = sparse_ites = np.zeros(1, np.uint64)
        cdef const uint64_t[::1] skeys = sparse_keys
        cdef const ite_t[::1] sites = sparse_ites
        cdef const device_t[::1] recs = records
        cdef uint32_t[::1] device_out = out["device_id"]
        cdef uint8_t[::1] bits_out = out["event_bits"]
        cdef uint64_t[::1] itt_out = out["itt_addr"]
        cdef uint32_t[::1] count_out = out["num_events"]
        cdef uint32_t[::1] event_out = out["event_id"]
        cdef uint32_t[::1] intid_out = out["intid"]
        cdef uint16_t[::1] icid_out = out["icid"]
        cdef const ite_t* pool = &self.pool.entries[0]
        cdef Py_ssize_t index, event, base, size, row = 0, sparse_row = 0, wanted
        cdef ite_t ite
        cdef bint consistent = True
        with nogil:
            for index in range(count):
                device_out[index] = recs[index].device_id
                bits_out[index] = recs[index].event_bits
                itt_out[index] = recs[index].itt_addr
                count_out[index] = recs[index].num_events
                wanted = row + recs[index].num_events
                if wanted > total:
                    consistent = False
                    break
                if recs[index].flags & DEVICE_HAS_SLAB:
                    base = recs[index].ite_base
                    size = (<Py_ssize_t>1) << recs[index].slab_log2
                    if wanted - row == size:          # a full slab: one straight pass
                        for event in range(size):
                            ite = pool[base + event]
                            event_out[row + event] = <uint32_t>event
                            intid_out[row + event] = ite_intid(ite)
                            icid_out[row + event] = ite_icid(ite)
                        row = wanted
                        continue
                    for event in range(size):
                        ite = pool[base + event]
                        if ite != 0:
                            if row == wanted:
                                consistent = False
                                break
                            event_out[row] = <uint32_t>event
                            intid_out[row] = ite_intid(ite)
                            icid_out[row] = ite_icid(ite)
                            row += 1
                elif recs[index].flags & DEVICE_SPARSE:
                    while row < wanted:
                        if sparse_row >= skeys.shape[0] or \
                                (skeys[sparse_row] >> 32) != recs[index].device_id:
                            consistent = False
                            break
                        event_out[row] = <uint32_t>skeys[sparse_row]
                        intid_out[row] = ite_intid(sites[sparse_row])
                        icid_out[row] = ite_icid(sites[sparse_row])
                        sparse_row += 1
                        row += 1
                if row != wanted or not consistent:
                    consistent = False
                    break
        if not consistent or row != total:
            raise AssertionError("event count out of step with the stores")
        out["collection_icid"], out["collection_cpu"] = self.collection_table()
        return out

    @classmethod
    def from_arrays(cls, arrays, str layout="flat", *, device_bits=16, event_bits=16,
                    intid_bits=16, num_collections=ICID_SPACE, num_cpus=8):
        """New tables holding the canonical arrays `arrays` (as `to_arrays`
        returns them: a mapping by `TABLE_ARRAYS` name), in `layout`, with the
        constructor's parameters.

        Every array is checked first, vectorised where it can be and in the
        native loading pass for the per-event checks, so hostile arrays give
        `RestoreError` (naming the array as ``tables.<name>``, its key in a
        host snapshot, the row and what is wrong), never a crash and never a
        partly built object.  ValueError / TypeError for bad parameters, as
        the constructor.  The `VIRTUAL_TABLE_ARRAYS` are optional (all or
        none) and checked as thoroughly: every virtual row as
        `map_virtual_event` would check it, after the physical ones.
        """
        cdef TranslationTables tables = cls(
            layout, device_bits=device_bits, event_bits=event_bits, intid_bits=intid_bits,
            num_collections=num_collections, num_cpus=num_cpus)
        columns = _table_columns(arrays)
        tables._check_devices(columns)
        icids, cpus = columns["collection_icid"], columns["collection_cpu"]
        if icids.shape[0]:
            bad = (icids >= tables.num_collections)
            if bad.any():
                index = _first(bad)
                raise _table_error("collection_icid", f"row {index}: ICID {icids[index]} is not "
                                   f"below num_collections = {tables.num_collections}")
            bad = icids[1:] <= icids[:icids.shape[0] - 1]
            if bad.any():
                index = _first(bad) + 1
                raise _table_error("collection_icid", f"row {index}: ICID {icids[index]} does "
                                   f"not follow ICID {icids[index - 1]} (not strictly increasing)")
            bad = (cpus < 0) | (cpus >= tables.num_cpus)
            if bad.any():
                index = _first(bad)
                raise _table_error("collection_cpu", f"row {index}: CPU {cpus[index]} is not in "
                                   f"0..{tables.num_cpus - 1}")
        cdef int failure = ROW_OK
        cdef Py_ssize_t row = tables._load_arrays(
            columns["device_id"], columns["event_bits"], columns["itt_addr"],
            columns["num_events"], columns["event_id"], columns["intid"], columns["icid"],
            &failure)
        if row >= 0:
            tables._raise_row(columns, row, failure)
        tables.collections_array[icids.astype(np.intp)] = cpus
        if "vpe_id" in columns:
            tables._load_virtual(columns)
        return tables

    def _load_virtual(self, dict columns):
        """Check and load the `VIRTUAL_TABLE_ARRAYS` into these tables, fresh
        from `from_arrays` (RestoreError naming the array and row, and the
        tables are dropped by the caller)."""
        vpe_ids, vpe_cpus = columns["vpe_id"], columns["vpe_cpu"]
        if vpe_ids.shape[0]:
            bad = vpe_ids[1:] <= vpe_ids[:vpe_ids.shape[0] - 1]
            if bad.any():
                index = _first(bad) + 1
                raise _table_error("vpe_id", f"row {index}: vPEID {vpe_ids[index]} does not "
                                   f"follow vPEID {vpe_ids[index - 1]} (not strictly increasing)")
            bad = (vpe_cpus < 0) | (vpe_cpus >= self.num_cpus)
            if bad.any():
                index = _first(bad)
                raise _table_error("vpe_cpu", f"row {index}: CPU {vpe_cpus[index]} is not in "
                                   f"0..{self.num_cpus - 1}")
        keys = ((columns["virtual_device_id"].astype(np.uint64) << np.uint64(32))
                | columns["virtual_event_id"].astype(np.uint64))
        if keys.shape[0] > 1:
            bad = keys[1:] <= keys[:keys.shape[0] - 1]
            if bad.any():
                index = _first(bad) + 1
                raise _table_error("virtual_event_id", f"row {index}: (DeviceID, EventID) "
                                   "does not follow the previous row's (not strictly increasing)")
        self._ensure_virtual()
        self.doorbells.ensure_capacity(keys.shape[0])
        cdef const uint32_t[::1] devices = columns["virtual_device_id"]
        cdef const uint32_t[::1] events = columns["virtual_event_id"]
        cdef const uint32_t[::1] vintids = columns["virtual_intid"]
        cdef const uint16_t[::1] vpes = columns["virtual_vpe_id"]
        cdef const uint32_t[::1] doorbells = columns["virtual_doorbell"]
        cdef Py_ssize_t row
        cdef int code = 0
        for row in range(keys.shape[0]):
            code = self._map_virtual_event(devices[row], events[row], vintids[row], vpes[row],
                                           doorbells[row])
            if code:
                break
        if code:
            name = {DEVICE_ID_OUT_OF_RANGE: "virtual_device_id",
                    DEVICE_NOT_MAPPED: "virtual_device_id",
                    INTID_NOT_LPI: "virtual_intid",
                    DOORBELL_NOT_LPI: "virtual_doorbell"}.get(code, "virtual_event_id")
            value = int(columns[name][row])
            raise _table_error(name, f"row {row} (DeviceID {int(devices[row]):#x}, EventID "
                               f"{int(events[row])}): {name.replace('_', ' ')} {value}: "
                               f"{_FAILURE_TEXT[code]}")
        for row in range(vpe_ids.shape[0]):
            self._map_vpe(vpe_ids[row], vpe_cpus[row])
        return None

    cdef int _check_devices(self, dict columns) except -1:
        """RestoreError unless the per-device arrays are valid and their
        event counts add up to the event arrays (vectorised)."""
        devices, bits = columns["device_id"], columns["event_bits"]
        counts = columns["num_events"]
        if devices.shape[0]:
            bad = (devices.astype(np.uint64) >> np.uint64(self.device_bits)) != 0
            if bad.any():
                index = _first(bad)
                raise _table_error("device_id", f"row {index}: DeviceID {devices[index]:#x} is "
                                   f"not below 2**device_bits = {1 << self.device_bits:#x}")
            bad = devices[1:] <= devices[:devices.shape[0] - 1]
            if bad.any():
                index = _first(bad) + 1
                raise _table_error("device_id", f"row {index}: DeviceID {devices[index]:#x} does "
                                   f"not follow DeviceID {devices[index - 1]:#x} (not strictly "
                                   "increasing)")
            bad = (bits < 1) | (bits > self.event_bits)
            if bad.any():
                index = _first(bad)
                raise _table_error("event_bits", f"row {index}: {bits[index]} EventID bits is "
                                   f"not in 1..event_bits = 1..{self.event_bits}")
            bad = counts.astype(np.uint64) > (np.uint64(1) << bits.astype(np.uint64))
            if bad.any():
                index = _first(bad)
                raise _table_error("num_events", f"row {index}: {counts[index]} events do not "
                                   f"fit the device's {bits[index]} EventID bits")
        total = int(counts.sum(dtype=np.uint64))
        if total != columns["event_id"].shape[0]:
            raise _table_error("num_events", f"the devices' events sum to {total}, but the event "
                               f"arrays have {columns['event_id'].shape[0]} rows")
        return 0

    cdef int _raise_row(self, dict columns, Py_ssize_t row, int failure) except -1:
        """The RestoreError of a row the native loading pass refused."""
        event = int(columns["event_id"][row])
        ends = np.cumsum(columns["num_events"], dtype=np.int64)
        device = int(np.searchsorted(ends, row, side="right"))
        where = f"row {row} (DeviceID {int(columns['device_id'][device]):#x})"
        if failure == ROW_NOT_INCREASING:
            raise _table_error("event_id", f"{where}: EventID {event} does not follow EventID "
                               f"{int(columns['event_id'][row - 1])} (not strictly increasing "
                               "within the device)")
        if failure == ROW_ABOVE_LAST:
            raise _table_error("event_id", f"{where}: EventID {event} is above the device's last "
                               f"EventID {int(columns['event_id'][ends[device] - 1])} (not "
                               "strictly increasing within the device)")
        if failure == ROW_BEYOND_ITT:
            raise _table_error("event_id", f"{where}: EventID {event} is beyond the device's ITT "
                               f"({int(columns['event_bits'][device])} EventID bits)")
        if failure == ROW_NOT_LPI:
            raise _table_error("intid", f"{where}: INTID {int(columns['intid'][row])} is not an "
                               f"LPI below 2**intid_bits = {1 << self.intid_bits:#x}")
        raise _table_error("icid", f"{where}: ICID {int(columns['icid'][row])} is not below "
                           f"num_collections = {self.num_collections}")

    cdef Py_ssize_t _load_arrays(self, const uint32_t[::1] devices, const uint8_t[::1] bits,
                                 const uint64_t[::1] itts, const uint32_t[::1] counts,
                                 const uint32_t[::1] events, const uint32_t[::1] intids,
                                 const uint16_t[::1] icids, int* failure) except -2:
        """Load canonical arrays into these fresh tables: the device arrays
        checked by `_check_devices`, the event rows checked here, in the
        loading pass itself (`_load_rows`).  Returns -1, or the first refused
        row with its ROW_* code in `failure` (the tables are then partly
        loaded: drop them).

        A first pass chooses every device's storage as `_prepare_storage`
        would for its EventIDs, so the pool is allocated once at its final
        size; the second writes each slab in place, in DeviceID order, and
        the device records, which the directory then takes in one bulk
        `load` (each layout allocating its arrays once)."""
        cdef Py_ssize_t count = devices.shape[0], index, row = 0, end, number, position
        cdef Py_ssize_t dense_total = 0, sparse_total = 0, size, base = 0, refused
        cdef uint64_t last
        cdef uint64_t intid_limit = (<uint64_t>1) << self.intid_bits
        cdef uint32_t intid_span = <uint32_t>(intid_limit - LPI_FIRST_INTID)
        cdef uint64_t num_collections = self.num_collections
        cdef int slab_log2
        storage_array = np.empty(count, np.uint8)   # slab_log2 per device, or SPARSE_STORAGE
        cdef uint8_t[::1] storage = storage_array
        for index in range(count):                   # pass 1: storage
            end = row + counts[index]
            storage[index] = 0
            if end > row:
                last = events[end - 1]
                if last >> bits[index]:
                    failure[0] = ROW_BEYOND_ITT
                    return end - 1
                slab_log2 = self._slab_log2_for(last, end - row, bits[index])
                if slab_log2 < 0:
                    storage[index] = SPARSE_STORAGE
                    sparse_total += end - row
                else:
                    storage[index] = <uint8_t>slab_log2
                    dense_total += (<Py_ssize_t>1) << slab_log2
            row = end
        if dense_total > POOL_MAX_ENTRIES:
            raise _table_error("event_id", f"the devices' slabs need {dense_total} ITE slots, "
                               f"more than the pool's {POOL_MAX_ENTRIES}")
        pool_array = self._new_pool(dense_total)
        cdef ite_t[::1] pool = pool_array
        if sparse_total:
            self.sparse.ensure_capacity(sparse_total)
        records = np.zeros(count, DEVICE_DTYPE)     # the directory takes them all at once
        cdef device_t[::1] recs = records
        cdef device_t* device
        row = 0
        for index in range(count):                   # pass 2: write the events
            device = &recs[index]
            device.device_id = devices[index]
            device.event_bits = bits[index]
            device.itt_addr = itts[index]
            number = counts[index]
            if number == 0:
                continue
            last = events[row + number - 1]
            if storage[index] == SPARSE_STORAGE:
                refused = _load_rows(NULL, 0, &events[row], &intids[row], &icids[row], number,
                                     last, intid_limit, num_collections, failure)
                if refused >= 0:
                    return row + refused
                for position in range(row, row + number):
                    self.sparse.put(sparse_key(devices[index], events[position]),
                                    ite_pack(intids[position], icids[position]))
                device.flags = DEVICE_SPARSE
            else:
                size = (<Py_ssize_t>1) << storage[index]
                if number != size:
                    memset(&pool[base], 0, size * sizeof(ite_t))
                if _write_rows(&pool[base], size, &events[row], &intids[row], &icids[row],
                               number, <uint32_t>last, intid_span, <uint32_t>num_collections):
                    refused = _load_rows(&pool[base], size, &events[row], &intids[row],
                                         &icids[row], number, last, intid_limit,
                                         num_collections, failure)
                    if refused < 0:
                        raise AssertionError("_write_rows and _load_rows disagree")
                    return row + refused
                device.ite_base = <uint32_t>base
                device.slab_log2 = storage[index]
                device.flags = DEVICE_HAS_SLAB
                base += size
            device.num_events = <uint32_t>number
            self.num_events += number
            row += number
        self.directory.load(records)
        self.pool.adopt(pool_array, dense_total)
        self._sync_view()
        return -1

    cdef int _slab_log2_for(self, uint64_t last_event_id, Py_ssize_t num_events,
                            int event_bits) noexcept nogil:
        """The slab a fresh device holding `num_events` events up to EventID
        `last_event_id` gets (`_prepare_storage`'s rule, for bulk loads):
        its log2 size, or -1 for the sparse map."""
        cdef int slab_log2 = INITIAL_SLAB_LOG2
        while last_event_id >> slab_log2:
            slab_log2 += 1
        slab_log2 = min(slab_log2, event_bits)
        if ((<Py_ssize_t>1) << slab_log2) > max(<Py_ssize_t>DENSE_SLAB_LIMIT,
                                                DENSE_SLAB_FACTOR * num_events):
            return -1
        return slab_log2

    cdef object _new_pool(self, Py_ssize_t entries):
        """A pool array for a bulk load whose slabs fill its first `entries`
        (left uninitialised: the loader writes every one) and whose rest is
        zero; MemoryError past POOL_MAX_ENTRIES, as a growing pool."""
        if entries > POOL_MAX_ENTRIES:
            raise MemoryError("ITE pool would exceed 2**32 entries")
        pool_array = np.empty(max(entries, <Py_ssize_t>INITIAL_POOL_ENTRIES), np.uint64)
        pool_array[entries:] = 0
        return pool_array

    cdef int _load_bulk(self, object records, object pool_array, Py_ssize_t pool_top,
                        Py_ssize_t num_events) except -1:
        """Take a bulk load into these empty tables: `records` (DEVICE_DTYPE,
        complete, by strictly increasing DeviceID, their slabs laid out in
        the first `pool_top` entries of `pool_array`, from `_new_pool`) and
        `num_events`, the ITEs they hold (sparse-map ones already put)."""
        self.directory.load(records)
        self.pool.adopt(pool_array, pool_top)
        self.num_events = num_events
        self._sync_view()
        return 0

    def __reduce__(self):
        """Pickle (and copy) through the canonical arrays: `to_arrays` /
        `from_arrays` (a copy is equal in every mapping; how the layout
        stores them internally may differ)."""
        return (_rebuild_tables, (self.layout, self.device_bits, self.event_bits,
                                  self.intid_bits, self.num_collections, self.num_cpus,
                                  self.to_arrays()))

    # ------------------------------------------------------------------
    # Bulk views of the state (for saving, testing and tooling)

    def device_ids(self):
        """Sorted uint32 array of the mapped DeviceIDs."""
        with _Pin(self.guard):
            return self.directory.device_ids()

    def devices(self):
        """Structured array of the mapped devices by DeviceID: fields
        ``device_id``, ``event_bits``, ``itt_addr``, ``num_events``."""
        with _Pin(self.guard):
            records = self.directory.records()
            out = np.empty(records.shape[0], [("device_id", np.uint32), ("event_bits", np.uint8),
                                              ("itt_addr", np.uint64), ("num_events", np.uint32)])
            for name in out.dtype.names:
                out[name] = records[name]
            return out

    def events_of(self, device_id):
        """(event_ids uint32, intids uint32, icids uint16) of a mapped device's
        physical events, sorted by EventID; empty arrays when the device is
        not mapped (virtual events: `virtual_events`)."""
        cdef int64_t wide = _wide(device_id, "device_id")
        cdef device_t* device
        empty = (np.empty(0, np.uint32), np.empty(0, np.uint32), np.empty(0, np.uint16))
        with _Pin(self.guard):
            if not self._is_mapped(wide):
                return empty
            device = self._device(<devid_t>wide)
            if device.flags & DEVICE_SPARSE:
                event_ids, ites = self.sparse.entries_of(<devid_t>wide)
            elif device.flags & DEVICE_HAS_SLAB:
                base = device.ite_base
                slab = self.pool.entries_array[base:base + (1 << device.slab_log2)]
                event_ids = np.flatnonzero(slab).astype(np.uint32)
                ites = slab[event_ids]
            else:
                return empty
            if self.num_virtual_events:
                physical = (ites >> np.uint64(ITE_VIRTUAL_SHIFT)) == 0
                event_ids, ites = event_ids[physical], ites[physical]
            return (event_ids,
                    (ites >> np.uint64(ITE_INTID_SHIFT)).astype(np.uint32),
                    (ites & np.uint64(ITE_ICID_MASK)).astype(np.uint16))

    def virtual_events(self):
        """Every virtual ITE, sorted by (DeviceID, EventID): (device_ids
        uint32, event_ids uint32, vintids uint32, vpe_ids uint16, doorbells
        uint32)."""
        with _WriteSection(self.guard):
            arrays = self._to_arrays_virtual() if self._has_virtual_state() else None
        if arrays is None:
            return (np.empty(0, np.uint32), np.empty(0, np.uint32), np.empty(0, np.uint32),
                    np.empty(0, np.uint16), np.empty(0, np.uint32))
        return tuple(arrays[name] for name in ("virtual_device_id", "virtual_event_id",
                                               "virtual_intid", "virtual_vpe_id",
                                               "virtual_doorbell"))

    def intids_targeting(self, int cpu):
        """uint32 INTIDs of every mapped event whose collection targets `cpu`
        (with repeats when events share an LPI), for INVALL."""
        with _Pin(self.guard):
            ites = self._live_ites()
            targets = self.collections_array[(ites & np.uint64(ITE_ICID_MASK)).astype(np.intp)]
            return (ites[targets == cpu] >> np.uint64(ITE_INTID_SHIFT)).astype(np.uint32)

    def device_records(self):
        """The device records themselves (DEVICE_DTYPE of _layouts) by DeviceID:
        what the native save path walks."""
        with _Pin(self.guard):
            return self.directory.records()

    cdef object _live_ites(self):
        """Every live physical ITE word (pool and sparse map), unordered."""
        pool = self.pool.entries_array[:self.pool.top]
        if self.sparse.count == 0:
            words = pool[pool != 0]
        else:
            words = np.concatenate([pool[pool != 0],
                                    self.sparse.values_array[self.sparse.values_array != 0]])
        if self.num_virtual_events:
            words = words[(words >> np.uint64(ITE_VIRTUAL_SHIFT)) == 0]
        return words

    cdef object _ite_mask(self, bint by_intid):
        """A bool mask over ICIDs (or INTIDs) named by live ITEs: one native
        pass over the pool (released slabs are zero) and the sparse map."""
        mask = np.zeros((1 << self.intid_bits) if by_intid else ICID_SPACE, np.uint8)
        cdef uint8_t[::1] marks = mask
        cdef const ite_t[::1] words
        cdef Py_ssize_t index
        cdef ite_t ite
        for array in (self.pool.entries_array[:self.pool.top], self.sparse.values_array):
            words = array
            with nogil:
                for index in range(words.shape[0]):
                    ite = words[index]
                    if ite != 0 and not ite_is_virtual(ite):
                        marks[ite_intid(ite) if by_intid else ite_icid(ite)] = 1
        return mask

    cdef bint _few_ites(self, Py_ssize_t mask_size):
        """Whether sorting the stores' words beats a pass over a mask of
        `mask_size` entries (small states: no cost of O(ID space))."""
        return (self.pool.top + (self.sparse.values_array.shape[0] if self.sparse.count else 0)
                ) * 8 < mask_size

    def referenced_icids(self):
        """Sorted uint16 ICIDs named by at least one mapped physical event."""
        with _Pin(self.guard):
            if self._few_ites(ICID_SPACE):
                return _sorted_unique(self._live_ites() & np.uint64(ITE_ICID_MASK)).astype(
                    np.uint16)
            return np.flatnonzero(self._ite_mask(False)).astype(np.uint16)

    def mapped_intids(self):
        """Sorted unique uint32 pINTIDs of every mapped physical event."""
        with _Pin(self.guard):
            if self._few_ites(1 << self.intid_bits):
                return _sorted_unique(self._live_ites() >> np.uint64(ITE_INTID_SHIFT)).astype(
                    np.uint32)
            return np.flatnonzero(self._ite_mask(True)).astype(np.uint32)

    def collections_of(self, icids):
        """int32 target CPU of each ICID in `icids` (-1 where unmapped)."""
        with _Pin(self.guard):
            return self.collections_array[np.asarray(icids, np.intp)]

    def collection_table(self):
        """(icids uint16, cpus int32) of the mapped collections, by ICID."""
        with _Pin(self.guard):
            mapped = np.flatnonzero(self.collections_array[:self.num_collections] != CPU_NONE)
            return mapped.astype(np.uint16), self.collections_array[mapped].copy()

    def snapshot(self):
        """The whole state as plain Python containers, for comparisons:
        ``{"devices": {device_id: (event_bits, itt_addr)},
        "events": {(device_id, event_id): (intid, icid)},
        "collections": {icid: cpu}}``, and, only when the tables hold GICv4
        state, ``"virtual_events": {(device_id, event_id): (vintid, vpe_id,
        doorbell)}, "vpes": {vpe_id: cpu}``."""
        with _WriteSection(self.guard):
            devices, events = {}, {}
            for record in self.devices():
                device_id = int(record["device_id"])
                devices[device_id] = (int(record["event_bits"]), int(record["itt_addr"]))
                for event_id, intid, icid in zip(*self.events_of(device_id)):
                    events[(device_id, int(event_id))] = (int(intid), int(icid))
            icids, cpus = self.collection_table()
            state = {"devices": devices, "events": events,
                     "collections": {int(icid): int(cpu) for icid, cpu in zip(icids, cpus)}}
            if self._has_virtual_state():
                rows = zip(*(array.tolist() for array in self.virtual_events()))
                state["virtual_events"] = {(device_id, event_id): (vintid, vpe_id, doorbell)
                                           for device_id, event_id, vintid, vpe_id, doorbell
                                           in rows}
                vpe_ids, vpe_cpus = self.vpe_table()
                state["vpes"] = dict(zip(vpe_ids.tolist(), vpe_cpus.tolist()))
            return state

    @property
    def num_devices(self):
        """Number of mapped devices."""
        return self.directory.count

    @property
    def nbytes(self):
        """Bytes held by every array of the tables (directory, ITE pool,
        sparse map, collection table; once GICv4 state was made, also the
        doorbell map and the vPE table)."""
        with _Pin(self.guard):
            virtual = 0
            if self.vpes_array is not None:
                virtual = self.doorbells.nbytes + self.vpes_array.nbytes
            return (self.directory.nbytes + self.pool.nbytes + self.sparse.nbytes
                    + self.collections_array.nbytes + virtual)

    @property
    def batch_prefetching(self):
        """Whether `translate_batch` takes the group-prefetching loop on these
        tables now: their lookup arrays (directory, ITE pool, sparse map) span
        at least `PREFETCH_MIN_BYTES`, more than the caches hold.  The results
        are the same either way."""
        with _Pin(self.guard):
            self._sync_view()
            return wants_prefetch(&self.view)

    def __repr__(self):
        return (f"TranslationTables(layout={self.layout!r}, devices={self.num_devices}, "
                f"events={self.num_events}, nbytes={self.nbytes})")
