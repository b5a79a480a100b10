"""The `virt` machine's physical memory map and interrupt numbers, declared once.

Every address follows QEMU's ``-M virt,gic-version=3`` board (hw/arm/virt.c,
``base_memmap``): a guest built for that board finds its devices where it
expects them.  Everything else in `its_core.virt` (the device tree, the
MMIO dispatch, the boot loader) reads these constants.
"""

from __future__ import annotations

from typing import NamedTuple

MiB = 1 << 20


class Region(NamedTuple):
    """A range of guest-physical addresses."""

    name: str
    base: int
    size: int

    @property
    def end(self) -> int:
        return self.base + self.size

    def __contains__(self, address: int) -> bool:
        return self.base <= address < self.base + self.size


#: GIC distributor (64 KiB).
GICD = Region("gicd", 0x0800_0000, 0x1_0000)
#: The ITS: control frame + translation frame (128 KiB).
ITS = Region("its", 0x0808_0000, 0x2_0000)
#: Redistributors: one 128 KiB frame pair (RD_base, SGI_base) per CPU from
#: here; QEMU describes the whole region (room for 123 CPUs) in the device tree.
GICR = Region("gicr", 0x080A_0000, 0xF6_0000)
#: PL011 UART (4 KiB).
UART = Region("uart", 0x0900_0000, 0x1000)
#: RAM starts here; its size is the machine's.
RAM_BASE = 0x4000_0000
DEFAULT_RAM_BYTES = 256 * MiB

#: Bytes of one CPU's redistributor frames (RD_base then SGI_base, 64 KiB each).
GICR_STRIDE = 0x2_0000
GICR_FRAME_BYTES = 0x1_0000
#: Largest number of CPUs the redistributor region holds.
MAX_CPUS = GICR.size // GICR_STRIDE

#: A raw binary (or a Linux arm64 Image with text_offset 0) is loaded here,
#: as QEMU loads an AArch64 kernel (KERNEL64_LOAD_ADDR).
KERNEL_OFFSET = 0x8_0000

# Interrupt numbers (INTIDs).
SPI_BASE = 32
PPI_BASE = 16
#: The UART's SPI (device-tree cell 1).
UART_SPI = 1
UART_INTID = SPI_BASE + UART_SPI
#: Generic timer PPIs as QEMU's device tree gives them (cells: secure physical,
#: non-secure physical, virtual, hypervisor).
TIMER_PPIS = (13, 14, 11, 10)
#: SPIs the distributor implements (GICD_TYPER.ITLinesNumber = SPI_LINES / 32).
SPI_LINES = 32 * 8

#: The fixed APB clock QEMU gives the PL011 (24 MHz).
APB_CLOCK_HZ = 24_000_000
#: CNTFRQ_EL0 the machine reports (QEMU 7.2: 62.5 MHz).
COUNTER_HZ = 62_500_000


def redistributor_frame(cpu: int) -> int:
    """Base address of `cpu`'s RD_base frame (its SGI_base frame follows)."""
    return GICR.base + cpu * GICR_STRIDE


def mpidr(cpu: int) -> int:
    """MPIDR_EL1 of CPU `cpu`: Aff0 = cpu % 16, Aff1 = cpu // 16 (QEMU's
    GICv3 clusters of 16), bit 31 RES1."""
    return (1 << 31) | ((cpu // 16) << 8) | (cpu % 16)


def affinity(cpu: int) -> int:
    """The affinity fields of `cpu`'s MPIDR (the device tree's cpu `reg`)."""
    return mpidr(cpu) & 0xFF_00FF_FFFF
