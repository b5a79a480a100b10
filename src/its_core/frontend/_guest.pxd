# A C-level window on guest memory for the command processor and the LPI side.
#
# Every access goes through guest_contains() first: guest-controlled
# addresses (queue, ITT, tables) are checked here, at the boundary, with
# overflow-free arithmetic; the accessors below then trust them.

from libc.string cimport memcpy
from its_core.core._types cimport uint8_t, uint64_t


cdef class GuestWindow:
    cdef object array                   # the GuestMemory's uint8 ndarray (kept alive)
    cdef uint8_t[::1] data              # view of array
    cdef readonly uint64_t base         # guest-physical address of data[0]
    cdef readonly uint64_t size         # bytes of guest memory


cdef inline bint guest_contains(GuestWindow mem, uint64_t addr, uint64_t nbytes) noexcept nogil:
    """True when [addr, addr + nbytes) lies wholly inside guest memory."""
    if addr < mem.base:
        return False
    cdef uint64_t offset = addr - mem.base
    return offset < mem.size and nbytes <= mem.size - offset


cdef inline uint64_t guest_read_u64(GuestWindow mem, uint64_t addr) noexcept nogil:
    """Little-endian 64-bit load; `addr` checked by guest_contains(addr, 8)."""
    cdef uint64_t value
    memcpy(&value, &mem.data[addr - mem.base], 8)
    return value


cdef inline void guest_write_u64(GuestWindow mem, uint64_t addr, uint64_t value) noexcept nogil:
    """Little-endian 64-bit store; `addr` checked by guest_contains(addr, 8)."""
    memcpy(&mem.data[addr - mem.base], &value, 8)
