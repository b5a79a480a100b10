"""Native delivery of the virtual pairs of a doorbell batch (GICv4).

`ITS.msi_batch` translates a batch in the core; the pairs whose ITE is
virtual come back with status VIRTUAL or VIRTUAL_NO_VPE and their ITE
word (`translate_batch`'s ``virtual_ites`` output: vINTID, vPEID and a
doorbell code, `_types.pxd`).  `deliver_virtual_batch` then does for each
of them, in one C loop with the GIL held, exactly what
`VirtualLPIs.deliver` does for one (the reference model's rules, module
docstring of `its_core.frontend.reference_its`):

* vPE not mapped (in the redistributors' vPE attributes): VIRTUAL_NO_VPE;
* vINTID outside 8192 .. 2**(VPT_size + 1) - 1: VIRTUAL_INTID_OUT_OF_RANGE;
* vPE resident on the CPU its entry names (C14): the bit is set in that
  CPU's resident cache (VIRTUAL_INTID_OUT_OF_RANGE beyond the cached range)
  and the CPU marked stale for the signalling (`VirtualLPIs.stale`);
* otherwise: the vINTID's bit is set in the VPT in guest memory (nothing is
  written outside guest memory), the ITE's doorbell is made pending on the
  vPE's CPU through the physical LPI state (lost when 1023, beyond the LPI
  limit or with EnableLPIs = 0: C13), and on GICv4.1 an enabled vLPI rings
  the vPE's armed default doorbell once.

Every index it uses is checked here first: vPEIDs against the attribute
arrays, CPU numbers against `num_cpus`, cache bits against the cache size,
VPT bytes against guest memory.  The caller holds the redistributors' lock
(the resident caches and the LPI state are theirs).
"""

import numpy as np

from libc.stdlib cimport malloc, free
from libc.string cimport memcpy

from its_core.core._core cimport VIRTUAL, TranslationTables
from its_core.core._types cimport (cpu_t, intid_t, ite_t, uint8_t, uint16_t, uint32_t, uint64_t,
                                   int32_t, DOORBELL_CODE_UNCACHED, LPI_FIRST_INTID,
                                   ite_doorbell_code, ite_intid, ite_vpe_id)
from its_core.frontend._guest cimport GuestWindow, guest_contains
from its_core.frontend._lpi cimport LPIState

cdef enum:
    # VirtualStatus (frontend/virtual.py): what a delivery did.
    DELIVERED = 64
    DROPPED_NO_VPE = 65
    DROPPED_OUT_OF_RANGE = 66
    VPE_SPACE = 1 << 16

cdef uint64_t SWAR_ADD = 0x0101010101010101 * (128 - VIRTUAL)
cdef uint64_t SWAR_TOP = 0x8080808080808080


cdef inline void _ring(LPIState lpi, int cpu, uint64_t doorbell) noexcept:
    """Make doorbell LPI `doorbell` pending on `cpu`, unless it is none
    (1023), beyond the LPI limit, or the CPU has EnableLPIs = 0 (C13).  A
    doorbell already pending (the common case under load) costs one load."""
    if (doorbell >= LPI_FIRST_INTID and doorbell < lpi.limit and lpi.lpis_enabled[cpu]
            and not lpi.pending[cpu, doorbell >> 3] & (1 << (doorbell & 7))):
        lpi.set_pending(<cpu_t>cpu, <intid_t>doorbell)


cdef Py_ssize_t _first_virtual(const uint8_t* statuses, Py_ssize_t length) noexcept:
    """Index of the first status >= VIRTUAL, or `length`: eight at a time (a
    status is below 128, so adding 128 - VIRTUAL to each byte of a word sets
    that byte's top bit exactly when the status is >= VIRTUAL, with no carry
    into the next byte)."""
    cdef uint64_t word
    cdef Py_ssize_t index = 0
    while index + 8 <= length:
        memcpy(&word, &statuses[index], 8)
        if (word + SWAR_ADD) & SWAR_TOP:
            break
        index += 8
    while index < length and statuses[index] < VIRTUAL:
        index += 1
    return index


cdef int _check_arrays(object virtual, int num_cpus) except -1:
    """ValueError unless `virtual`'s arrays have the shapes and dtypes this
    module reads them with (a programming error, never a guest's)."""
    for name, dtype, length in (("vpe_mapped", np.bool_, VPE_SPACE),
                                ("vpe_cpu", np.int32, VPE_SPACE),
                                ("vpt_addr", np.uint64, VPE_SPACE),
                                ("vpt_size", np.uint8, VPE_SPACE),
                                ("vconf_addr", np.uint64, VPE_SPACE),
                                ("default_doorbell", np.uint32, VPE_SPACE),
                                ("doorbell_armed", np.bool_, VPE_SPACE),
                                ("resident", np.bool_, num_cpus),
                                ("resident_vpt", np.uint64, num_cpus),
                                ("resident_vpe", np.int32, num_cpus),
                                ("resident_limit", np.uint64, num_cpus),
                                ("stale", np.bool_, num_cpus)):
        array = getattr(virtual, name)
        if array.dtype != dtype or array.shape != (length,) or not array.flags.c_contiguous:
            raise ValueError(f"VirtualLPIs.{name} is not a contiguous {np.dtype(dtype)} "
                             f"array of {length}")
    return 0


def deliver_virtual_batch(TranslationTables tables, LPIState lpi, GuestWindow mem,
                          object virtual, const uint32_t[::1] device_ids,
                          const uint32_t[::1] event_ids, const uint64_t[::1] virtual_ites,
                          int32_t[::1] cpus, uint8_t[::1] statuses):
    """Deliver every pair whose status is VIRTUAL or VIRTUAL_NO_VPE (see the
    module docstring); its status becomes its `VirtualStatus` value and, when
    delivered, its CPU the vPE's CPU.  Other pairs are not touched.  Returns
    how many pairs were virtual (0: nothing was read or changed).

    Parameters
    ----------
    tables : TranslationTables
        The ITS's tables: the doorbell of each virtual ITE.
    lpi : LPIState
        The redistributors' physical LPI state: doorbells are rung in it.
    mem : GuestWindow
        Guest memory, where the VPTs (and GICv4.1 vLPI configuration tables) are.
    virtual : VirtualLPIs
        The redistributors' GICv4 state (vPE attributes, residency, caches).
    device_ids, event_ids, virtual_ites, cpus, statuses : ndarray
        The batch and three of `TranslationTables.translate_batch`'s outputs
        (``virtual_ites`` is read only where the status is virtual).
    """
    cdef Py_ssize_t length = statuses.shape[0]
    cdef Py_ssize_t index, first
    for array_length in (device_ids.shape[0], event_ids.shape[0], virtual_ites.shape[0],
                         cpus.shape[0]):
        if array_length != length:
            raise ValueError("deliver_virtual_batch: arrays of different lengths")
    first = _first_virtual(&statuses[0], length) if length else 0
    if first == length:
        return 0
    cdef int num_cpus = lpi.num_cpus
    _check_arrays(virtual, num_cpus)
    cdef const uint8_t[::1] vpe_mapped = virtual.vpe_mapped.view(np.uint8)
    cdef const int32_t[::1] vpe_cpu = virtual.vpe_cpu
    cdef const uint64_t[::1] vpt_addr = virtual.vpt_addr
    cdef const uint8_t[::1] vpt_size = virtual.vpt_size
    cdef const uint64_t[::1] vconf_addr = virtual.vconf_addr
    cdef const uint32_t[::1] default_doorbell = virtual.default_doorbell
    cdef uint8_t[::1] doorbell_armed = virtual.doorbell_armed.view(np.uint8)
    cdef const uint8_t[::1] resident = virtual.resident.view(np.uint8)
    cdef const uint64_t[::1] resident_vpt = virtual.resident_vpt
    cdef const int32_t[::1] resident_vpe = virtual.resident_vpe
    cdef const uint64_t[::1] resident_limit = virtual.resident_limit
    cdef uint8_t[::1] stale = virtual.stale.view(np.uint8)
    cdef bint is_v41 = virtual.is_v41
    cdef uint64_t cache_bits = (<uint64_t>1) << lpi.intid_bits
    # Each resident CPU's cache of pending vINTIDs (bool array of 2**intid_bits).
    cdef uint8_t** caches = <uint8_t**>malloc(num_cpus * sizeof(uint8_t*))
    if caches == NULL:
        raise MemoryError()
    cdef int cpu
    cdef uint8_t[::1] cache_view
    caches_alive = []                       # keeps every cache array alive in the loop
    cdef Py_ssize_t count = 0
    cdef int32_t vpe_id
    cdef uint64_t vintid, addr, config_addr
    cdef ite_t ite
    cdef Py_ssize_t pair
    cdef uint16_t code
    cdef uint8_t[::1] guest
    cdef uint64_t guest_base, guest_size, offset, doorbell, lpi_limit
    cdef const uint8_t[:, ::1] pending
    cdef const uint8_t[::1] lpis_enabled
    cdef const uint32_t[::1] doorbell_values
    try:
        for cpu in range(num_cpus):
            caches[cpu] = NULL
        for cpu_key, cache in virtual._cached_pending.items():
            cpu = cpu_key
            if not 0 <= cpu < num_cpus or cache.dtype != np.bool_ or cache.shape != (cache_bits,):
                raise ValueError(f"resident cache of CPU {cpu_key} is not a bool array of "
                                 f"2**intid_bits")
            cache_view = cache.view(np.uint8)
            caches_alive.append(cache)
            caches[cpu] = &cache_view[0]
        tables.guard.wait_writer()          # the doorbell map holds still (uncached codes)
        if tables.doorbell_values_array is None:
            raise ValueError("virtual pairs in a batch, but the tables hold no virtual state")
        doorbell_values = tables.doorbell_values_array
        guest = mem.data
        guest_base, guest_size = mem.base, mem.size
        pending = lpi.pending_array
        lpis_enabled = lpi.enabled_array
        lpi_limit = lpi.limit
        for pair in range(first, length):
            if statuses[pair] < VIRTUAL:
                continue
            count += 1
            ite = virtual_ites[pair]
            vpe_id = ite_vpe_id(ite)        # 16 bits: inside the attribute arrays
            if not vpe_mapped[vpe_id]:
                statuses[pair] = DROPPED_NO_VPE
                continue
            vintid = ite_intid(ite)
            if vintid < LPI_FIRST_INTID or vintid >> min(vpt_size[vpe_id] + 1, 63):
                statuses[pair] = DROPPED_OUT_OF_RANGE
                continue
            cpu = vpe_cpu[vpe_id]
            if not 0 <= cpu < num_cpus:     # VirtualLPIs only stores checked CPUs
                raise ValueError(f"vPE {vpe_id} names CPU {cpu}")
            if resident[cpu] and (resident_vpe[cpu] == vpe_id if is_v41
                                  else resident_vpt[cpu] == vpt_addr[vpe_id]):
                if caches[cpu] == NULL:
                    raise ValueError(f"CPU {cpu} has a resident vPE but no cache")
                if vintid >= resident_limit[cpu] or vintid >= cache_bits:
                    statuses[pair] = DROPPED_OUT_OF_RANGE
                    continue
                caches[cpu][vintid] = 1
                stale[cpu] = 1              # its signalled best may change
            else:
                offset = vpt_addr[vpe_id] + (vintid >> 3) - guest_base
                if offset < guest_size:         # (wraps for addresses below guest_base)
                    guest[offset] |= <uint8_t>(1 << (vintid & 7))
                code = ite_doorbell_code(ite)
                doorbell = (doorbell_values[code] if code != DOORBELL_CODE_UNCACHED
                            else tables._doorbell_of(device_ids[pair], event_ids[pair]))
                # _ring, with the common case (already pending) read in place
                if (doorbell >= LPI_FIRST_INTID and doorbell < lpi_limit
                        and lpis_enabled[cpu]
                        and not pending[cpu, doorbell >> 3] & (1 << (doorbell & 7))):
                    lpi.set_pending(<cpu_t>cpu, <intid_t>doorbell)
                if is_v41 and doorbell_armed[vpe_id]:
                    config_addr = vconf_addr[vpe_id] + (vintid - LPI_FIRST_INTID)
                    if (guest_contains(mem, config_addr, 1)
                            and mem.data[config_addr - mem.base] & 1):
                        doorbell_armed[vpe_id] = 0
                        _ring(lpi, cpu, default_doorbell[vpe_id])
            statuses[pair] = DELIVERED
            cpus[pair] = cpu
    finally:
        free(caches)
    virtual.version += 1
    lpi.version += 1                        # as for every delivery (LPIState.deliver)
    return count

