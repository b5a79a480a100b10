"""C-level window on a `GuestMemory` (see _guest.pxd)."""

import sys

if sys.byteorder != "little":
    raise ImportError("its_core's native core assumes a little-endian host")


cdef class GuestWindow:
    """Wraps a `GuestMemory`'s buffer for native code; no copy is made."""

    def __init__(self, memory):
        self.array = memory.array
        self.data = self.array
        self.base = memory.base
        self.size = memory.size
