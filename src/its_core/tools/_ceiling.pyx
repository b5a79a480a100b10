"""Bare lookup loops the benchmarks compare the core to.

`bare_translate` is the ceiling: three dependent loads per translation, as in
the simplest possible ITS (device slab base -> ITE -> collection target), with
no checks at all.  `checked_translate` is the same walk doing the work every
correct ITS must do and the ceiling skips: it range-checks the device, checks
it is mapped and the EventID is inside its ITT, that the ITE and the
collection are mapped, and writes a status per pair.  The gap between the two
is structural; the gap between the checked loop and a layout is the layout's.

Nothing is validated, so this module is only ever fed arrays built by the
benchmark code itself.
"""

cimport cython
from libc.stdint cimport int32_t, uint8_t, uint32_t, uint64_t

from its_core.core._core cimport (DEVICE_OUT_OF_RANGE, EVENT_OUT_OF_RANGE, NO_COLLECTION,
                                  NO_DEVICE, NO_MAPPING, OK)


def bare_translate(const uint64_t[::1] device_base, const uint64_t[::1] ites,
                   const int32_t[::1] collection_cpu,
                   const uint32_t[::1] device_ids, const uint32_t[::1] event_ids,
                   uint32_t[::1] intids, int32_t[::1] cpus):
    """intids[i], cpus[i] = lookup(device_ids[i], event_ids[i]), unchecked.

    `device_base[d]` is the index of device d's first ITE in `ites`; an ITE
    holds the pINTID in bits [47:16] and the ICID in bits [15:0].
    """
    cdef Py_ssize_t index
    cdef uint64_t ite
    with nogil:
        for index in range(device_ids.shape[0]):
            ite = ites[device_base[device_ids[index]] + event_ids[index]]
            intids[index] = <uint32_t>(ite >> 16)
            cpus[index] = collection_cpu[ite & 0xFFFF]


def checked_translate(const uint64_t[::1] devices, int device_bits, const uint64_t[::1] ites,
                      const int32_t[::1] collection_cpu,
                      const uint32_t[::1] device_ids, const uint32_t[::1] event_ids,
                      uint32_t[::1] intids, int32_t[::1] cpus, uint8_t[::1] statuses):
    """`bare_translate` with a correct ITS's checks and a `TranslationStatus` per pair.

    `devices[d]` packs device d's first ITE index in bits [63:8] and its
    EventID bits in [7:0] (0: not mapped), one load as the core's record is;
    `devices` covers every DeviceID below 2**device_bits.  A free ITE is 0
    and an unmapped collection's CPU is -1, as in the core.  Failed pairs get
    intid 0 and cpu -1.
    """
    cdef Py_ssize_t index
    cdef uint64_t device, ite
    cdef uint32_t device_id, event_id
    cdef int32_t cpu
    with nogil:
        for index in range(device_ids.shape[0]):
            device_id = device_ids[index]
            event_id = event_ids[index]
            intids[index] = 0
            cpus[index] = -1
            if (<uint64_t>device_id) >> device_bits:
                statuses[index] = DEVICE_OUT_OF_RANGE
                continue
            device = devices[device_id]
            if device & 0xFF == 0:
                statuses[index] = NO_DEVICE
                continue
            if (<uint64_t>event_id) >> (device & 0xFF):
                statuses[index] = EVENT_OUT_OF_RANGE
                continue
            ite = ites[(device >> 8) + event_id]
            if ite == 0:
                statuses[index] = NO_MAPPING
                continue
            cpu = collection_cpu[ite & 0xFFFF]
            if cpu == -1:
                statuses[index] = NO_COLLECTION
                continue
            intids[index] = <uint32_t>(ite >> 16)
            cpus[index] = cpu
            statuses[index] = OK
