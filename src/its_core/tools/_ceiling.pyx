"""A bare lookup loop with no checks: the ceiling the benchmarks compare to.

Three dependent loads per translation, as in the simplest possible ITS:
device slab base -> ITE -> collection target.  Nothing is validated, so this
module is only ever fed arrays built by the benchmark code itself.
"""

cimport cython
from libc.stdint cimport int32_t, uint32_t, uint64_t


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
