"""The `virt` machine's physical memory map and interrupt numbers, declared once.

Every address follows QEMU's ``-M virt`` board (hw/arm/virt.c,
``base_memmap``) with ``gic-version=3`` or ``4``: a guest built for that
board finds its devices where it expects them.  Everything else in
`its_core.virt` (the device tree, the MMIO dispatch, the boot loader) reads
these constants.  The GIC version changes one thing here: a GICv4
redistributor has four 64 KiB frames (RD_base, SGI_base, VLPI_base,
reserved), so the redistributors are 256 KiB apart instead of 128 KiB and
the region holds fewer of them.
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
#: The ITS: control frame + translation frame (128 KiB), whatever the GIC
#: version.  A GICv4.1 ITS decodes a third 64 KiB frame (GITS_SGIR) that does
#: not fit: the redistributors start right after these 128 KiB (QEMU keeps the
#: same 128 KiB region for gic-version=4, and implements GICv4.0 only).
ITS = Region("its", 0x0808_0000, 0x2_0000)
#: Redistributors: one stride (`gicr_stride`) per CPU from here; QEMU
#: describes the whole region in the device tree for every GIC version.
GICR = Region("gicr", 0x080A_0000, 0xF6_0000)
#: PL011 UART (4 KiB).
UART = Region("uart", 0x0900_0000, 0x1000)
#: RAM starts here; its size is the machine's.
RAM_BASE = 0x4000_0000
DEFAULT_RAM_BYTES = 256 * MiB

#: Bytes of one CPU's GICv3 redistributor frames (RD_base then SGI_base, 64 KiB each).
GICR_STRIDE = 0x2_0000
#: Bytes of one CPU's GICv4 redistributor frames (RD_base, SGI_base,
#: VLPI_base, reserved): QEMU's stride for gic-version=4.
GICV4_GICR_STRIDE = 0x4_0000
GICR_FRAME_BYTES = 0x1_0000
#: Offset of the VLPI frame (GICR_VPROPBASER, GICR_VPENDBASER, ...) in a
#: GICv4 redistributor.
VLPI_FRAME_OFFSET = 0x2_0000
#: Largest number of CPUs the redistributor region holds with a GICv3 (123).
MAX_CPUS = GICR.size // GICR_STRIDE
#: Largest number of CPUs the redistributor region holds with a GICv4 (61;
#: QEMU adds a high redistributor region beyond that, this machine does not).
MAX_CPUS_GICV4 = GICR.size // GICV4_GICR_STRIDE


def gicr_stride(gic_version: str = "3") -> int:
    """Bytes between two CPUs' RD_base frames for `gic_version` ("3", "4.0", "4.1")."""
    return GICR_STRIDE if gic_version == "3" else GICV4_GICR_STRIDE


def max_cpus(gic_version: str = "3") -> int:
    """Largest number of CPUs the redistributor region holds for `gic_version`."""
    return GICR.size // gicr_stride(gic_version)

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


def redistributor_frame(cpu: int, gic_version: str = "3") -> int:
    """Base address of `cpu`'s RD_base frame (its SGI_base frame follows,
    then with a GICv4 its VLPI frame)."""
    return GICR.base + cpu * gicr_stride(gic_version)


def mpidr(cpu: int) -> int:
    """MPIDR_EL1 of CPU `cpu`: Aff0 = cpu % 16, Aff1 = cpu // 16 (QEMU's
    GICv3 clusters of 16), bit 31 RES1."""
    return (1 << 31) | ((cpu // 16) << 8) | (cpu % 16)


def affinity(cpu: int) -> int:
    """The affinity fields of `cpu`'s MPIDR (the device tree's cpu `reg`)."""
    return mpidr(cpu) & 0xFF_00FF_FFFF
