"""Guest-physical memory as one flat, zero-copy byte buffer.

`GuestMemory` maps the guest-physical range ``[base, base + size)`` onto a
host buffer.  It either owns a fresh zero-filled numpy array or wraps a buffer
the caller already has (a ``bytearray``, an ``mmap``, a numpy array, anything
writable and C-contiguous that speaks the buffer protocol) *without copying*:
reads, writes and the numpy views handed out by `GuestMemory.view` all alias
the caller's memory, so a VMM can share guest RAM with the ITS model.

Design rules
------------
* Addresses are guest-physical, 64-bit: any Python int is accepted as an
  address and checked with exact integer arithmetic, so a range that wraps
  past ``2**64`` or starts below ``base`` is simply "outside".
* A host access outside the window is a host programming error and raises
  `GuestMemoryError` (an `ITSError` and an `IndexError`) naming the address
  and size.  Code modelling the ITS itself should ask `GuestMemory.contains`
  first (it never raises) and turn a miss into a guest-visible outcome.
* Guest in-memory formats are little-endian.  `view` therefore always returns
  little-endian multi-byte dtypes (a native dtype is converted explicitly) and
  refuses explicitly big-endian ones.
* While a `GuestMemory` exists it holds a buffer export of the wrapped object:
  a ``bytearray`` cannot be resized and an ``mmap`` cannot be closed until the
  `GuestMemory` and every view taken from it are released.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from its_core.errors import ITSError
from its_core.validation import as_int, as_uint

__all__ = ["ADDRESS_LIMIT", "GuestMemory", "GuestMemoryError"]

#: One past the highest guest-physical address (64-bit address space).
ADDRESS_LIMIT = 1 << 64


class GuestMemoryError(ITSError, IndexError):
    """A host access fell (partly) outside guest memory.

    Attributes
    ----------
    addr : int
        First guest-physical address of the access.
    nbytes : int
        Length of the access in bytes.
    base, end : int
        The guest memory window ``[base, end)``.
    """

    def __init__(self, addr: int, nbytes: int, base: int, end: int):
        self.addr = addr
        self.nbytes = nbytes
        self.base = base
        self.end = end
        super().__init__(
            f"guest access of {nbytes:#x} bytes at address {addr:#x} is outside "
            f"guest memory [{base:#x}, {end:#x})"
        )

    def __reduce__(self):
        return (type(self), (self.addr, self.nbytes, self.base, self.end))


def _little_endian(dtype: Any) -> np.dtype:
    """Return `dtype` with every multi-byte component little-endian.

    Native-order components are converted; explicitly big-endian components
    and object dtypes are refused (guest formats are little-endian bytes).
    """
    dt = np.dtype(dtype)
    if dt.hasobject:
        raise TypeError(f"cannot view guest memory as object dtype {dt}")

    def walk(d: np.dtype) -> None:
        if d.fields is not None:
            for sub in d.fields.values():
                walk(sub[0])
        elif d.subdtype is not None:
            walk(d.subdtype[0])
        elif d.byteorder == ">":
            raise ValueError(f"guest memory is little-endian; refusing big-endian dtype {dt}")

    walk(dt)
    return dt.newbyteorder("<")


class GuestMemory:
    """Guest-physical memory ``[base, base + size)`` backed by one host buffer.

    Parameters
    ----------
    buffer_or_size : int or buffer
        An int: allocate that many zero bytes (a numpy ``uint8`` array owned
        by this object).  Otherwise any writable, C-contiguous object with the
        buffer protocol (``bytearray``, ``mmap.mmap``, ``numpy.ndarray``,
        ``memoryview``...); it is wrapped without copying.
    base : int, default 0
        Guest-physical address of the first byte.  ``base + size`` may be at
        most ``2**64``.

    Raises
    ------
    ValueError
        Size is zero or negative, the buffer is read-only or not contiguous,
        or the window does not fit in the 64-bit address space.
    TypeError
        `buffer_or_size` is neither an int nor a buffer, or `base` is not an
        int.

    Examples
    --------
    >>> mem = GuestMemory(bytearray(0x1000), base=0x4000_0000)
    >>> mem.write_u64(0x4000_0008, 0x1122334455667788)
    >>> mem.read(0x4000_0008, 2)
    b'\\x88w'
    >>> hex(int(mem.view(0x4000_0008, 1, "u8")[0]))
    '0x1122334455667788'
    """

    __slots__ = ("_array", "_base", "_size", "_source")

    def __init__(self, buffer_or_size: Any, base: int = 0) -> None:
        if isinstance(buffer_or_size, (bool, int, np.integer, np.bool_)):
            size = as_int(buffer_or_size, "guest memory size")
            if size <= 0:
                raise ValueError(f"guest memory size must be positive, got {size}")
            array = np.zeros(size, dtype=np.uint8)
            source: Any = None
        else:
            try:
                view = memoryview(buffer_or_size)
            except TypeError:
                raise TypeError(
                    "GuestMemory needs a size or a writable buffer, got "
                    f"{type(buffer_or_size).__name__}"
                ) from None
            if view.readonly:
                raise ValueError(
                    f"GuestMemory needs a writable buffer; {type(buffer_or_size).__name__} "
                    "is read-only"
                )
            if not view.c_contiguous:
                raise ValueError("GuestMemory needs a C-contiguous buffer")
            if view.nbytes == 0:
                raise ValueError("guest memory size must be positive, got an empty buffer")
            array = np.frombuffer(view.cast("B"), dtype=np.uint8)
            source = buffer_or_size
        base = as_uint(base, "base")
        if base + array.size > ADDRESS_LIMIT:
            raise ValueError(
                f"guest memory [{base:#x}, +{array.size:#x}) does not fit the 64-bit address space"
            )
        self._array = array
        self._base = base
        self._size = int(array.size)
        self._source = source

    # -- geometry ------------------------------------------------------------

    @property
    def base(self) -> int:
        """Guest-physical address of the first byte."""
        return self._base

    @property
    def size(self) -> int:
        """Number of bytes."""
        return self._size

    @property
    def end(self) -> int:
        """One past the last guest-physical address (``base + size``)."""
        return self._base + self._size

    @property
    def array(self) -> np.ndarray:
        """The whole buffer as a writable 1-D ``uint8`` array (index 0 = `base`)."""
        return self._array

    @property
    def source(self) -> Any:
        """The wrapped buffer object, or None if this object owns its memory."""
        return self._source

    def __len__(self) -> int:
        return self._size

    def __reduce__(self):
        """Pickle (and `copy.deepcopy`) by value: the bytes go with the object.

        A `GuestMemory` that owns its array comes back owning a copy of it; one
        that wraps a caller's buffer comes back wrapping a copy of that buffer
        object (a ``bytearray`` stays a ``bytearray`` and the copy aliases it,
        as the original aliases the caller's).  A buffer that cannot be pickled
        (an ``mmap``, a ``memoryview``) makes pickling raise TypeError, as
        pickle does.  Pickle's memo keeps one memory shared by several objects
        shared in the copy (docs/embedding.md, "Snapshots and copies")."""
        if self._source is None:
            return (_owned_memory, (self._array, self._base))
        return (GuestMemory, (self._source, self._base))

    def __repr__(self) -> str:
        owner = "owned" if self._source is None else type(self._source).__name__
        return f"<GuestMemory [{self._base:#x}, {self.end:#x}) {owner}>"

    def contains(self, addr: Any, nbytes: Any = 1) -> bool:
        """Whether ``[addr, addr + nbytes)`` lies wholly inside guest memory.

        Never raises: negative or non-integer arguments, ranges that start
        below `base`, run past the end or wrap past ``2**64`` all give False.
        A zero-length range is inside if ``base <= addr <= end``.

        Parameters
        ----------
        addr : int
            Guest-physical start address.
        nbytes : int, default 1
            Length in bytes.

        Returns
        -------
        bool
        """
        try:
            addr = as_int(addr, "guest address")
            nbytes = as_int(nbytes, "access size")
        except TypeError:
            return False
        return nbytes >= 0 and self._base <= addr and addr + nbytes <= self._base + self._size

    def offset_of(self, addr: int, nbytes: int = 1) -> int:
        """Index into `array` of guest address `addr`, checking ``[addr, addr+nbytes)``.

        Raises
        ------
        GuestMemoryError
            The range is not wholly inside guest memory.
        ValueError
            `nbytes` is negative.
        TypeError
            An argument is not an integer.
        """
        addr = as_int(addr, "guest address")
        nbytes = as_uint(nbytes, "access size")
        if not (self._base <= addr and addr + nbytes <= self._base + self._size):
            raise GuestMemoryError(addr, nbytes, self._base, self.end)
        return addr - self._base

    # -- byte access ---------------------------------------------------------

    def read(self, addr: int, n: int) -> bytes:
        """Copy `n` bytes starting at guest address `addr`.

        Raises
        ------
        GuestMemoryError
            The range is not wholly inside guest memory.
        """
        off = self.offset_of(addr, n)
        return self._array[off:off + n].tobytes()

    def write(self, addr: int, data: Any) -> None:
        """Copy a bytes-like object into guest memory at `addr`.

        Parameters
        ----------
        addr : int
            Guest-physical destination.
        data : bytes-like
            Anything with the buffer protocol; its raw bytes are copied.
            Overlap with guest memory itself is handled.

        Raises
        ------
        GuestMemoryError
            The destination range is not wholly inside guest memory.
        """
        if type(data) is bytes and type(addr) is int:     # the common case, kept short
            offset = addr - self._base
            if 0 <= offset and offset + len(data) <= self._size:
                self._array.data[offset:offset + len(data)] = data
                return
        src = memoryview(data)
        if not src.c_contiguous:
            src = memoryview(src.tobytes())
        src = src.cast("B")
        off = self.offset_of(addr, src.nbytes)
        self._array[off:off + src.nbytes] = np.frombuffer(src, dtype=np.uint8)

    def fill(self, addr: int, n: int, value: int = 0) -> None:
        """Set `n` bytes at `addr` to the byte `value`."""
        as_uint(value, "fill value", 8)
        off = self.offset_of(addr, n)
        self._array[off:off + n] = value

    def _read_uint(self, addr: int, nbytes: int) -> int:
        off = self.offset_of(addr, nbytes)
        return int.from_bytes(self._array[off:off + nbytes].tobytes(), "little")

    def _write_uint(self, addr: int, nbytes: int, value: int) -> None:
        number = as_uint(value, "value", 8 * nbytes)
        off = self.offset_of(addr, nbytes)
        self._array[off:off + nbytes] = np.frombuffer(
            number.to_bytes(nbytes, "little"), dtype=np.uint8)

    def read_u32(self, addr: int) -> int:
        """Read a little-endian 32-bit word (no alignment required)."""
        return self._read_uint(addr, 4)

    def write_u32(self, addr: int, value: int) -> None:
        """Write a little-endian 32-bit word; `value` must be in ``0 .. 2**32-1``."""
        self._write_uint(addr, 4, value)

    def read_u64(self, addr: int) -> int:
        """Read a little-endian 64-bit word (no alignment required)."""
        return self._read_uint(addr, 8)

    def write_u64(self, addr: int, value: int) -> None:
        """Write a little-endian 64-bit word; `value` must be in ``0 .. 2**64-1``."""
        self._write_uint(addr, 8, value)

    # -- zero-copy views -----------------------------------------------------

    def view(self, addr: int, count: int, dtype: Any = np.uint8, *,
             writable: bool = True) -> np.ndarray:
        """A numpy array of `count` elements of `dtype` aliasing guest memory.

        Parameters
        ----------
        addr : int
            Guest-physical address of element 0 (no alignment required).
        count : int
            Number of elements (>= 0).
        dtype : dtype-like, default uint8
            Element type.  Multi-byte types are returned little-endian (a
            native-order dtype is converted); explicitly big-endian and object
            dtypes are refused.
        writable : bool, default True
            False returns a read-only view (the memory itself stays writable
            through other paths).

        Returns
        -------
        numpy.ndarray
            1-D, sharing memory with the wrapped buffer.

        Raises
        ------
        GuestMemoryError
            ``count * itemsize`` bytes at `addr` are not wholly inside guest memory.
        ValueError
            `count` is negative or `dtype` is big-endian.
        """
        dt = _little_endian(dtype)
        if dt.itemsize == 0:
            raise ValueError(f"cannot view guest memory as zero-sized dtype {dt}")
        count = as_uint(count, "element count")
        nbytes = count * dt.itemsize
        off = self.offset_of(addr, nbytes)
        out = self._array[off:off + nbytes].view(dt)
        if not writable:
            out.flags.writeable = False
        return out


def _owned_memory(array: np.ndarray, base: int) -> GuestMemory:
    """Unpickle a `GuestMemory` that owns its array (see `GuestMemory.__reduce__`)."""
    if not (isinstance(array, np.ndarray) and array.flags.writeable):
        array = np.array(array, dtype=np.uint8)
    memory = GuestMemory(array, base)
    memory._source = None
    return memory
