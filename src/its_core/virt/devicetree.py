"""The device tree blob the `virt` machine hands its guest (built with pylibfdt).

Nodes, names and properties follow what QEMU 7.2 generates for ``-M
virt,gic-version=3 -cpu cortex-a57`` (``-machine dumpdtb=`` shows it), for
the devices this machine has: memory, CPUs with PSCI, the GICv3 with its ITS,
the generic timer, the PL011 and its clock, and /chosen.

The same tree serves every ``gic_version`` of the machine, because QEMU 7.2's
``gic-version=4`` tree (``-M virt,gic-version=4,virtualization=on``) describes
the GIC exactly as its ``gic-version=3`` one: compatible "arm,gic-v3", one
redistributor region given whole (0x080A0000, 0xF60000), no
``redistributor-stride`` (a driver learns the 256 KiB stride from
GICR_TYPER.VLPIS), and a 128 KiB ITS.  QEMU's GICv4 node adds only
``interrupts`` (the GIC maintenance interrupt, PPI 9), because gic-version=4
requires virtualization=on there; this machine has no EL2 and omits it.
"""

from __future__ import annotations

from typing import NamedTuple

import libfdt

from its_core.virt import memory_map as mm

#: Phandles (QEMU numbers its phandles from 0x8000 too).
PHANDLE_CLOCK = 0x8000
PHANDLE_GIC = 0x8001
PHANDLE_ITS = 0x8002
PHANDLE_FIRST_CPU = 0x8003

#: PSCI function IDs the /psci node names (SMC32 CPU_OFF, SMC64 others, as QEMU).
PSCI_NODE_FUNCTIONS = (("cpu_suspend", 0xC400_0001), ("cpu_off", 0x8400_0002),
                       ("cpu_on", 0xC400_0003), ("migrate", 0xC400_0005))

# Interrupt specifier cells of the GIC binding: (type, number, flags).
_SPI, _PPI = 0, 1
_LEVEL_HIGH = 4


class Chosen(NamedTuple):
    """What /chosen tells the guest."""

    bootargs: str = ""
    initrd: tuple[int, int] | None = None     # (start, end) guest addresses


def _cells(*values: int) -> bytes:
    """Big-endian 32-bit cells."""
    return b"".join(value.to_bytes(4, "big") for value in values)


def _reg(*pairs: tuple[int, int]) -> bytes:
    """A `reg` of (address, size) pairs with #address-cells = #size-cells = 2."""
    return b"".join(_cells(base >> 32, base & 0xFFFF_FFFF, size >> 32, size & 0xFFFF_FFFF)
                    for base, size in pairs)


def _strings(*values: str) -> bytes:
    return b"".join(value.encode() + b"\0" for value in values)


def build(num_cpus: int, ram_bytes: int, chosen: Chosen = Chosen()) -> bytes:
    """The machine's device tree blob."""
    fdt = libfdt.FdtSw()
    fdt.finish_reservemap()
    with fdt.add_node(""):
        fdt.property_u32("interrupt-parent", PHANDLE_GIC)
        fdt.property_string("model", "linux,dummy-virt")
        fdt.property_u32("#size-cells", 2)
        fdt.property_u32("#address-cells", 2)
        fdt.property_string("compatible", "linux,dummy-virt")

        with fdt.add_node("psci"):
            for name, function_id in PSCI_NODE_FUNCTIONS:
                fdt.property_u32(name, function_id)
            fdt.property_string("method", "hvc")
            fdt.property("compatible", _strings("arm,psci-1.0", "arm,psci-0.2", "arm,psci"))

        with fdt.add_node(f"memory@{mm.RAM_BASE:x}"):
            fdt.property("reg", _reg((mm.RAM_BASE, ram_bytes)))
            fdt.property_string("device_type", "memory")

        with fdt.add_node(f"pl011@{mm.UART.base:x}"):
            fdt.property("clock-names", _strings("uartclk", "apb_pclk"))
            fdt.property("clocks", _cells(PHANDLE_CLOCK, PHANDLE_CLOCK))
            fdt.property("interrupts", _cells(_SPI, mm.UART_SPI, _LEVEL_HIGH))
            fdt.property("reg", _reg((mm.UART.base, mm.UART.size)))
            fdt.property("compatible", _strings("arm,pl011", "arm,primecell"))

        with fdt.add_node(f"intc@{mm.GICD.base:x}"):
            fdt.property_u32("phandle", PHANDLE_GIC)
            fdt.property("reg", _reg((mm.GICD.base, mm.GICD.size), (mm.GICR.base, mm.GICR.size)))
            fdt.property_u32("#redistributor-regions", 1)
            fdt.property_string("compatible", "arm,gic-v3")
            fdt.property("ranges", b"")
            fdt.property_u32("#size-cells", 2)
            fdt.property_u32("#address-cells", 2)
            fdt.property("interrupt-controller", b"")
            fdt.property_u32("#interrupt-cells", 3)
            with fdt.add_node(f"its@{mm.ITS.base:x}"):
                fdt.property_u32("phandle", PHANDLE_ITS)
                fdt.property("reg", _reg((mm.ITS.base, mm.ITS.size)))
                fdt.property_u32("#msi-cells", 1)
                fdt.property("msi-controller", b"")
                fdt.property_string("compatible", "arm,gic-v3-its")

        with fdt.add_node("cpus"):
            fdt.property_u32("#size-cells", 0)
            fdt.property_u32("#address-cells", 1)
            for cpu in range(num_cpus):
                with fdt.add_node(f"cpu@{mm.affinity(cpu):x}"):
                    fdt.property_u32("phandle", PHANDLE_FIRST_CPU + cpu)
                    fdt.property_u32("reg", mm.affinity(cpu))
                    fdt.property_string("enable-method", "psci")
                    fdt.property_string("compatible", "arm,cortex-a57")
                    fdt.property_string("device_type", "cpu")

        with fdt.add_node("timer"):
            fdt.property("interrupts", b"".join(_cells(_PPI, ppi, _LEVEL_HIGH)
                                                for ppi in mm.TIMER_PPIS))
            fdt.property("always-on", b"")
            fdt.property("compatible", _strings("arm,armv8-timer", "arm,armv7-timer"))

        with fdt.add_node("apb-pclk"):
            fdt.property_u32("phandle", PHANDLE_CLOCK)
            fdt.property_string("clock-output-names", "clk24mhz")
            fdt.property_u32("clock-frequency", mm.APB_CLOCK_HZ)
            fdt.property_u32("#clock-cells", 0)
            fdt.property_string("compatible", "fixed-clock")

        with fdt.add_node("chosen"):
            fdt.property_string("stdout-path", f"/pl011@{mm.UART.base:x}")
            if chosen.bootargs:
                fdt.property_string("bootargs", chosen.bootargs)
            if chosen.initrd is not None:
                start, end = chosen.initrd
                fdt.property_u64("linux,initrd-start", start)
                fdt.property_u64("linux,initrd-end", end)
    return bytes(fdt.as_fdt().as_bytearray())
