"""Loading a guest into RAM as QEMU's ``-kernel`` does (hw/arm/boot.c, QEMU 7.2).

* An ELF file is loaded at its program headers' physical addresses and entered
  at its entry point; without an initrd the device tree goes to the bottom of
  RAM (above the image, 2 MiB aligned, when the image lies there).
* Anything else is a raw AArch64 kernel: loaded at RAM + 0x80000, or, when it
  carries a Linux arm64 ``Image`` header with a non-zero image size, at RAM +
  its text_offset (moved up by 2 MiB when that offset is below 4 KiB, where
  QEMU keeps its boot stub).  The initrd goes at RAM + min(RAM / 2, 128 MiB)
  or above the image, page aligned, and the device tree above the initrd,
  2 MiB aligned.

CPU 0 enters with x0 = the device tree's address (QEMU passes it to raw
kernels; this machine passes it to ELF files too).
"""

from __future__ import annotations

import io
from typing import NamedTuple

from elftools.elf.elffile import ELFFile
from elftools.common.exceptions import ELFError

from its_core.errors import ITSError
from its_core.virt import devicetree
from its_core.virt import memory_map as mm

PAGE = 4096
#: Offset of the magic "ARM\x64" in a Linux arm64 Image header.
IMAGE_MAGIC_OFFSET = 56
IMAGE_MAGIC = b"ARM\x64"
#: QEMU keeps its boot stub below this; an Image asking for a lower offset is
#: moved up by 2 MiB.
BOOTLOADER_BYTES = 4096
DTB_ALIGN = 2 * mm.MiB


class BootError(ITSError):
    """The kernel, initrd or device tree does not fit the machine."""


class BootInfo(NamedTuple):
    """Where everything was put."""

    entry: int
    image: tuple[int, int]              # [start, end) of the loaded image
    dtb: int                            # device tree address (x0)
    initrd: tuple[int, int] | None      # [start, end), also in /chosen


def _align_up(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment


def _check_fits(ram, address: int, size: int, what: str) -> int:
    """`address`'s offset in `ram`, BootError unless [address, address + size) is RAM."""
    offset = address - mm.RAM_BASE
    if offset < 0 or offset + size > ram.size:
        raise BootError(f"{what} [{address:#x}, {address + size:#x}) does not fit RAM "
                        f"[{mm.RAM_BASE:#x}, {mm.RAM_BASE + ram.size:#x})")
    return offset


def _place(ram, address: int, data: bytes, what: str) -> None:
    offset = _check_fits(ram, address, len(data), what)
    ram[offset:offset + len(data)] = memoryview(data)


def _load_elf(ram, data: bytes) -> tuple[int, int, int]:
    """(entry, low, high) of an ELF image written into `ram`."""
    elf = ELFFile(io.BytesIO(data))
    if elf["e_machine"] != "EM_AARCH64":
        raise BootError(f"ELF file for {elf['e_machine']}, not AArch64")
    low, high = None, None
    for segment in elf.iter_segments():
        if segment["p_type"] != "PT_LOAD" or segment["p_memsz"] == 0:
            continue
        address, file_bytes = segment["p_paddr"], segment["p_filesz"]
        if file_bytes > segment["p_memsz"]:
            raise BootError(f"ELF segment at {address:#x} has more file bytes than memory bytes")
        offset = _check_fits(ram, address, segment["p_memsz"], "ELF segment")  # before reading
        ram[offset:offset + segment["p_memsz"]] = 0
        _place(ram, address, segment.data(), "ELF segment")
        low = address if low is None else min(low, address)
        high = max(high or 0, address + segment["p_memsz"])
    if low is None:
        raise BootError("ELF file has no loadable segment")
    return elf["e_entry"], low, high


def _image_offset(data: bytes) -> tuple[int, int]:
    """(load offset from RAM base, bytes the image occupies) of a raw kernel."""
    offset, size = mm.KERNEL_OFFSET, len(data)
    if len(data) > IMAGE_MAGIC_OFFSET + 4 and \
            data[IMAGE_MAGIC_OFFSET:IMAGE_MAGIC_OFFSET + 4] == IMAGE_MAGIC:
        text_offset = int.from_bytes(data[8:16], "little")
        image_size = int.from_bytes(data[16:24], "little")
        if image_size:
            offset = text_offset + (2 * mm.MiB if text_offset < BOOTLOADER_BYTES else 0)
            size = max(size, image_size)
    return offset, size


def load(ram, kernel: bytes, *, num_cpus: int, bootargs: str = "",
         initrd: bytes | None = None) -> BootInfo:
    """Write `kernel` (ELF or raw), `initrd` and the device tree into `ram`
    (a uint8 array holding guest RAM from `memory_map.RAM_BASE`)."""
    ram_bytes = ram.size
    try:
        is_elf = kernel[:4] == b"\x7fELF"
        if is_elf:
            entry, low, high = _load_elf(ram, kernel)
        else:
            offset, size = _image_offset(kernel)
            entry = low = mm.RAM_BASE + offset
            high = low + size
            _place(ram, entry, kernel, "kernel image")
    except ELFError as error:
        raise BootError(f"not a valid ELF file: {error}") from None
    initrd_span = None
    if is_elf and initrd is None:
        blob = devicetree.build(num_cpus, ram_bytes, devicetree.Chosen(bootargs))
        dtb_address = mm.RAM_BASE
        if low < mm.RAM_BASE + len(blob) and high > mm.RAM_BASE:
            dtb_address = _align_up(high, DTB_ALIGN)        # the image lies there
    else:
        initrd_start = mm.RAM_BASE + min(ram_bytes // 2, 128 * mm.MiB)
        initrd_start = _align_up(max(initrd_start, high), PAGE)
        initrd_size = len(initrd) if initrd is not None else 0
        if initrd is not None:
            _place(ram, initrd_start, initrd, "initrd")
            initrd_span = (initrd_start, initrd_start + initrd_size)
        dtb_address = _align_up(initrd_start + initrd_size, DTB_ALIGN)
        blob = devicetree.build(num_cpus, ram_bytes, devicetree.Chosen(bootargs, initrd_span))
    _place(ram, dtb_address, blob, "device tree")
    return BootInfo(entry, (low, high), dtb_address, initrd_span)
