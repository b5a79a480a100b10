"""Tests of GuestMemory: aliasing, bounds, hostile addresses, endianness."""

import gc
import mmap
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from its_core.errors import ITSError
from its_core.frontend.guest_memory import GuestMemory, GuestMemoryError

TOP = 1 << 64

# -- construction ------------------------------------------------------------------


def test_owned_memory_is_zero_filled_at_base_zero():
    mem = GuestMemory(64 << 20)
    assert len(mem) == mem.size == 64 << 20
    assert mem.base == 0 and mem.end == 64 << 20
    assert mem.array.dtype == np.uint8 and mem.array.shape == (64 << 20,)
    assert not mem.array.any()
    assert mem.source is None


def test_numpy_integer_size_is_accepted():
    assert len(GuestMemory(np.int64(4096))) == 4096


@pytest.mark.parametrize("size", [0, -1, -(1 << 70)])
def test_non_positive_size_is_value_error(size):
    with pytest.raises(ValueError):
        GuestMemory(size)


@pytest.mark.parametrize("buf", [b"\0" * 64, memoryview(bytearray(64)).toreadonly()])
def test_read_only_buffer_is_refused(buf):
    with pytest.raises((ValueError, TypeError), match="read-only"):
        GuestMemory(buf)


def test_read_only_numpy_buffer_is_refused():
    arr = np.zeros(64, np.uint8)
    arr.flags.writeable = False
    with pytest.raises(ValueError):
        GuestMemory(arr)


def test_empty_and_non_contiguous_buffers_are_refused():
    with pytest.raises(ValueError):
        GuestMemory(bytearray())
    with pytest.raises(ValueError):
        GuestMemory(np.zeros(64, np.uint8)[::2])


@pytest.mark.parametrize("bad", [object(), "abc", 1.5, True])
def test_non_buffer_is_type_error(bad):
    with pytest.raises(TypeError):
        GuestMemory(bad)


def test_window_must_fit_64_bit_space():
    GuestMemory(4096, base=TOP - 4096)          # exactly fits
    with pytest.raises(ValueError):
        GuestMemory(4096, base=TOP - 4095)
    with pytest.raises(ValueError):
        GuestMemory(4096, base=-4096)
    with pytest.raises(TypeError):
        GuestMemory(4096, base=1.0)


# -- aliasing ------------------------------------------------------------------------

def test_bytearray_positional_aliases_both_ways():
    buf = bytearray(4096)
    mem = GuestMemory(buf)
    mem.write(0x10, b"\xAA\xBB")
    assert buf[0x10:0x12] == b"\xAA\xBB"
    buf[0x20] = 0x5A
    assert mem.read(0x20, 1) == b"\x5A"
    assert mem.source is buf
    # The buffer is pinned while wrapped: it cannot be resized under us.
    with pytest.raises(BufferError):
        buf.append(0)


def test_mmap_aliases_and_is_released_after_use():
    m = mmap.mmap(-1, 8192)
    mem = GuestMemory(m, base=0x8000_0000)
    mem.write_u64(0x8000_1000, 0x0123_4567_89AB_CDEF)
    assert m[0x1000:0x1008] == struct.pack("<Q", 0x0123_4567_89AB_CDEF)
    m[0x1FFF] = 0x77
    assert mem.read(0x8000_1FFF, 1) == b"\x77"
    view = mem.view(0x8000_0000, 4, "<u4")
    view[1] = 0xDEADBEEF
    assert m[4:8] == b"\xEF\xBE\xAD\xDE"
    del mem, view
    gc.collect()
    m.close()                                  # no exported buffers remain


def test_numpy_buffer_aliases():
    arr = np.zeros(4096, np.uint8)
    mem = GuestMemory(arr, base=0x4000_0000)
    mem.write(0x4000_0100, bytes(range(8)))
    assert arr[0x100:0x108].tolist() == list(range(8))
    assert np.shares_memory(mem.array, arr)


def test_wider_numpy_buffer_is_viewed_as_its_bytes():
    arr = np.zeros(16, dtype="<u4")
    mem = GuestMemory(arr)
    assert len(mem) == 64
    mem.write_u32(8, 0x11223344)
    assert arr[2] == 0x11223344


def test_views_alias_the_callers_bytearray():
    buf = bytearray(256)
    mem = GuestMemory(buf, base=0x1000)
    v = mem.view(0x1008, 2, np.uint64)
    v[1] = 0x0102030405060708
    assert bytes(buf[0x10:0x18]) == bytes([8, 7, 6, 5, 4, 3, 2, 1])
    buf[0x08:0x10] = struct.pack("<Q", 0xFFEE)
    assert int(v[0]) == 0xFFEE


# -- views and endianness ------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint64, "u8", "=u8", "<u8", np.dtype("uint64")])
def test_multibyte_views_are_little_endian(dtype):
    mem = GuestMemory(64)
    mem.write(0, bytes([1, 0, 0, 0, 0, 0, 0, 0x80]))
    v = mem.view(0, 1, dtype)
    assert v.dtype.str == "<u8"
    assert int(v[0]) == 0x8000_0000_0000_0001


def test_big_endian_view_is_refused():
    mem = GuestMemory(64)
    with pytest.raises(ValueError):
        mem.view(0, 1, ">u4")
    with pytest.raises(ValueError):
        mem.view(0, 1, np.dtype([("a", "<u4"), ("b", ">u4")]))


def test_structured_view_is_normalised_to_little_endian():
    mem = GuestMemory(64)
    mem.write(0, struct.pack("<QI", 0xAABB, 7))
    v = mem.view(0, 1, np.dtype([("low", "u8"), ("high", "u4")]))
    assert v.dtype["low"].str == "<u8" and v.dtype["high"].str == "<u4"
    assert int(v["low"][0]) == 0xAABB and int(v["high"][0]) == 7


def test_object_dtype_is_refused():
    with pytest.raises(TypeError):
        GuestMemory(64).view(0, 1, object)


def test_read_only_view():
    mem = GuestMemory(64)
    v = mem.view(8, 2, "<u4", writable=False)
    assert not v.flags.writeable
    with pytest.raises(ValueError):
        v[0] = 1
    mem.write_u32(8, 5)                # memory itself stays writable
    assert int(v[0]) == 5


def test_unaligned_view_is_allowed():
    mem = GuestMemory(64)
    mem.write(3, struct.pack("<I", 0xCAFEBABE))
    assert int(mem.view(3, 1, "<u4")[0]) == 0xCAFEBABE


def test_view_bounds():
    mem = GuestMemory(64, base=0x100)
    assert mem.view(0x100 + 56, 1, "<u8").shape == (1,)
    assert mem.view(0x140, 0, "<u8").shape == (0,)
    with pytest.raises(GuestMemoryError):
        mem.view(0x100 + 57, 1, "<u8")
    with pytest.raises(GuestMemoryError):
        mem.view(0x100, 9, "<u8")
    with pytest.raises(ValueError):
        mem.view(0x100, -1, "<u8")


# -- bounds and hostile input -----------------------------------------------------------

def test_boundaries_with_base_offset():
    mem = GuestMemory(bytearray(4096), base=0x4000_0000)
    mem.write(0x4000_0FFF, b"\x01")
    assert mem.read(0x4000_0FFF, 1) == b"\x01"
    assert mem.read(0x4000_0000, 4096) == bytes(4095) + b"\x01"
    with pytest.raises(GuestMemoryError):
        mem.read(0x4000_1000, 1)
    with pytest.raises(GuestMemoryError):
        mem.read(0x3FFF_FFFF, 1)
    with pytest.raises(GuestMemoryError):
        mem.write(0x4000_0FFF, b"\x01\x02")
    with pytest.raises(GuestMemoryError):
        mem.read_u64(0x4000_0FF9)


def test_error_names_address_and_size():
    mem = GuestMemory(4096)
    with pytest.raises(GuestMemoryError) as info:
        mem.read(0x1234_5678, 16)
    err = info.value
    assert isinstance(err, IndexError) and isinstance(err, ITSError)
    assert err.addr == 0x1234_5678 and err.nbytes == 16
    assert "0x12345678" in str(err) and "0x10" in str(err)


@pytest.mark.parametrize("addr,n", [
    (-1, 1), (-(1 << 80), 8), (TOP - 1, 1), (TOP, 1), (1 << 200, 1),
    (0, 1 << 64), (0, 1 << 200), (4000, 1 << 63), (TOP - 8, 16),
])
def test_hostile_accesses_raise_guest_memory_error(addr, n):
    mem = GuestMemory(4096)
    assert not mem.contains(addr, n)
    with pytest.raises(GuestMemoryError):
        mem.read(addr, n)
    with pytest.raises(GuestMemoryError):
        mem.view(addr, n, np.uint8)


@pytest.mark.parametrize("addr", [-1, -8, 4089, TOP - 1, TOP, 1 << 200])
def test_hostile_word_accesses(addr):
    mem = GuestMemory(4096)
    with pytest.raises(GuestMemoryError):
        mem.read_u64(addr)
    with pytest.raises(GuestMemoryError):
        mem.write_u64(addr, 0)
    with pytest.raises(GuestMemoryError):
        mem.write(addr, b"\1" * 8)
    with pytest.raises(GuestMemoryError):
        mem.fill(addr, 8)
    assert not mem.array.any()                  # nothing was written anywhere


def test_negative_size_is_value_error():
    mem = GuestMemory(4096)
    with pytest.raises(ValueError):
        mem.read(0, -1)
    assert not mem.contains(0, -1)


def test_memory_at_top_of_address_space():
    mem = GuestMemory(4096, base=TOP - 4096)
    mem.write_u64(TOP - 8, (1 << 64) - 1)
    assert mem.read_u64(TOP - 8) == (1 << 64) - 1
    assert mem.contains(TOP - 1, 1)
    assert not mem.contains(TOP - 1, 2)
    with pytest.raises(GuestMemoryError):
        mem.read(TOP - 4, 8)


@given(st.integers(-(1 << 130), 1 << 130), st.integers(-(1 << 130), 1 << 130))
def test_contains_never_raises(addr, n):
    mem = GuestMemory(256, base=0x1000)
    expected = n >= 0 and 0x1000 <= addr and addr + n <= 0x1100
    assert mem.contains(addr, n) is expected


@pytest.mark.parametrize("addr,n", [(1.5, 1), (0, 2.0), (None, 1), ("0", 1)])
def test_contains_with_non_integers_is_false(addr, n):
    assert GuestMemory(256).contains(addr, n) is False


@given(st.integers(0x0FF0, 0x1110), st.integers(0, 0x40))
def test_read_matches_reference_or_raises(addr, n):
    ref = bytearray(range(256))
    mem = GuestMemory(bytearray(ref), base=0x1000)
    if 0x1000 <= addr and addr + n <= 0x1100:
        assert mem.read(addr, n) == bytes(ref[addr - 0x1000:addr - 0x1000 + n])
    else:
        with pytest.raises(GuestMemoryError):
            mem.read(addr, n)


# -- word access ---------------------------------------------------------------------------

@given(st.integers(0, (1 << 64) - 1), st.integers(0, 56))
def test_u64_is_little_endian(value, offset):
    buf = bytearray(64)
    mem = GuestMemory(buf)
    mem.write_u64(offset, value)
    assert bytes(buf[offset:offset + 8]) == struct.pack("<Q", value)
    assert mem.read_u64(offset) == value


def test_u64_out_of_range_values():
    mem = GuestMemory(64)
    with pytest.raises(ValueError):
        mem.write_u64(0, 1 << 64)
    with pytest.raises(ValueError):
        mem.write_u64(0, -1)
    with pytest.raises(ValueError):
        mem.write_u32(0, 1 << 32)


def test_write_accepts_any_bytes_like_and_fill():
    mem = GuestMemory(64)
    mem.write(0, memoryview(b"abcd"))
    mem.write(4, np.array([0x0201, 0x0403], dtype="<u2"))
    mem.write(8, np.arange(8, dtype=np.uint8)[::2])      # non-contiguous source
    assert mem.read(0, 12) == b"abcd\x01\x02\x03\x04\x00\x02\x04\x06"
    mem.fill(2, 4, 0xEE)
    assert mem.read(0, 8) == b"ab\xEE\xEE\xEE\xEE\x03\x04"


def test_write_from_overlapping_view():
    mem = GuestMemory(bytearray(range(16)))
    mem.write(2, mem.view(0, 8))
    assert mem.read(0, 10) == bytes([0, 1, 0, 1, 2, 3, 4, 5, 6, 7])
