"""The `virt` machine: CPUs on unicorn, its_core as the ITS, and the devices
a bare-metal guest for QEMU's ``-M virt,gic-version=3`` (or ``4``) expects.

A `Machine` owns guest RAM (one buffer, shared zero-copy by every CPU and by
its_core's `GuestMemory`), an `ITS` and `Redistributors` from its_core, the
rest of the GIC (`gic.Gic`), a PL011 UART and PSCI.  `run` schedules the CPUs
round-robin in bounded slices; an interrupt is taken when the GIC signals
one (its_core's `on_signal`, never polling the pending tables) and the CPU
has IRQs unmasked.
"""

from __future__ import annotations

import pickle
import sys
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from its_core.frontend.guest_memory import GuestMemory
from its_core.frontend.its import ITS
from its_core.frontend.redistributors import Redistributors
from its_core.validation import check_gic_version
from its_core.virt import boot, psci
from its_core.virt import memory_map as mm
from its_core.virt.cpu import CNTFRQ_EL0, CNTPCT_EL0, CNTVCT_EL0, MPIDR_EL1, Cpu, GuestFault
from its_core.virt.gic import Gic
from its_core.virt.pl011 import PL011

#: Instructions a CPU runs before the next one gets its turn.
DEFAULT_SLICE = 20_000
#: `Machine.save` format.
STATE_FORMAT = "its-core-virt-1"
_ACCESS_SIZES = frozenset((1, 2, 4, 8))
_SIZE_SUFFIXES = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(value) -> int:
    """Bytes from an int or a string such as ``"256M"``, ``"1G"``, ``"65536"``."""
    if isinstance(value, int):
        return value
    text = str(value).strip().upper().removesuffix("B").removesuffix("I")
    if text and text[-1] in _SIZE_SUFFIXES:
        return int(text[:-1]) * _SIZE_SUFFIXES[text[-1]]
    return int(text)


class RunResult(NamedTuple):
    """How a `run` ended."""

    reason: str             # "off", "reset", "timeout", "stuck", "fault", "limit"
    exit_code: int          # 0 for "off"
    message: str


class Machine:
    """A `virt` machine with `smp` CPUs and `memory` bytes of RAM, whose ITS
    stores its tables in `layout`.

    Parameters
    ----------
    smp : int
        CPUs (1..8 tested; up to `memory_map.max_cpus(gic_version)`).
    memory : int or str
        RAM size (``"256M"``).
    layout : {"flat", "twolevel", "hash"}
        its_core storage layout of the ITS.
    output : callable, optional
        Receives the bytes the guest writes to the UART (default: stdout).
    slice_instructions : int
        Instructions a CPU runs before the scheduler moves on.
    gic_version : {"3", "4.0", "4.1"}, default "3"
        The GIC the guest finds.  "3" is QEMU's ``gic-version=3`` board.
        "4.0" / "4.1" give its_core's ITS and redistributors that version
        (virtual LPIs, the vPE table, the VLPI frame) and lay the
        redistributors out 256 KiB apart as QEMU does for ``gic-version=4``
        (RD_base(n) = 0x080A0000 + n * 0x40000, VLPI frame at RD_base +
        0x20000; at most `memory_map.MAX_CPUS_GICV4` CPUs); the distributor
        and GICR_PIDR2 say ArchRev 4 and GICD_TYPER.DVIS = 1.  The CPUs
        still run the guest at EL1 (no EL2, so no virtual CPU interface: a
        GICv4 machine exercises the ITS and redistributor side of GICv4).
        A GICv4 machine saves and migrates like a GICv3 one (its ITS in
        its_core's its-core-rev1 save revision).
    """

    def __init__(self, smp: int = 1, memory="256M", layout: str = "flat", *,
                 output: Callable[[bytes], None] | None = None,
                 slice_instructions: int = DEFAULT_SLICE, gic_version: str = "3"):
        gic_version = check_gic_version(gic_version)
        most = mm.max_cpus(gic_version)
        if not 1 <= smp <= most:
            raise ValueError(f"smp must be in 1..{most} with gic_version={gic_version!r}, "
                             f"got {smp}")
        self.smp = smp
        self.gic_version = gic_version
        self.gicr_stride = mm.gicr_stride(gic_version)
        self.ram_base = mm.RAM_BASE
        self.ram_bytes = parse_size(memory)
        if self.ram_bytes <= 0 or self.ram_bytes % 0x1000:
            raise ValueError(f"memory must be a positive multiple of 4 KiB, got {memory!r}")
        self.ram = np.zeros(self.ram_bytes, np.uint8)
        self.memory = GuestMemory(self.ram, base=mm.RAM_BASE)
        self.slice = slice_instructions
        self.redistributors = Redistributors(self.memory, smp, 16, on_signal=self._changed,
                                             gic_version=gic_version)
        self.its = ITS(self.memory, smp, layout, redistributors=self.redistributors,
                       gic_version=gic_version)
        self.gic = Gic(smp, self.redistributors, self._changed, gic_version=gic_version)
        self.uart = PL011(output or _stdout,
                          on_irq=lambda level: self.gic.set_spi_level(mm.UART_INTID, level))
        self.cpus = [Cpu(self, index) for index in range(smp)]
        self.running: Cpu | None = None
        self.stopped: str | None = None
        self.unmapped_accesses = 0
        self.slices_run = 0                  # CPU slices run (each up to `slice` instructions)
        self.boot_info: boot.BootInfo | None = None
        self._clock_origin = time.monotonic()

    # -- loading --------------------------------------------------------------------

    def load(self, path, append: str = "", initrd=None) -> boot.BootInfo:
        """Load a kernel (ELF or raw) and optionally an initrd (a path or
        bytes), write the device tree, and power CPU 0 on at the entry point
        with x0 = the device tree address."""
        kernel = _read(path)
        initrd_bytes = None if initrd is None else _read(initrd)
        info = boot.load(self.ram, kernel, num_cpus=self.smp, bootargs=append,
                         initrd=initrd_bytes)
        self.boot_info = info
        self.cpus[0].power_on(info.entry, info.dtb)
        return info

    # -- the run loop ------------------------------------------------------------------

    def run(self, timeout: float | None = None,
            pause: Callable[[], bool] | None = None) -> RunResult:
        """Run the CPUs until the guest powers off (or resets), a fault, all
        CPUs wait with nothing to wake them, `timeout` seconds pass, or
        `pause()` (asked after every round of slices) returns True: then the
        result is "paused" and `run` may be called again (or the machine
        saved)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self.stopped = None
        try:
            while self.stopped is None:
                if deadline is not None and time.monotonic() > deadline:
                    return RunResult("timeout", 3, f"timeout after {timeout} s: "
                                     + self._where())
                if not self._round():
                    return RunResult("stuck", 4, "no CPU can run: " + self._where())
                if pause is not None and self.stopped is None and pause():
                    return RunResult("paused", 0, "paused between slices")
        except GuestFault as fault:
            return RunResult("fault", 5, str(fault))
        if self.stopped == "off":
            return RunResult("off", 0, "the guest powered the machine off")
        return RunResult("reset", 0, "the guest asked for a system reset")

    def _round(self) -> bool:
        """Give each runnable CPU one slice; False if none could run."""
        ran = False
        for cpu in self.cpus:
            if self.stopped is not None:
                break
            if not cpu.on:
                continue
            if cpu.waiting:
                if not self.gic.deliverable(cpu.index):
                    continue
                cpu.waiting = False
            if self.interrupt_due(cpu.index):
                cpu.take_irq()
            self.running = cpu
            try:
                cpu.run(self.slice)
            finally:
                self.running = None
            self.slices_run += 1
            ran = True
        return ran

    def interrupt_due(self, cpu: int) -> bool:
        """Whether CPU `cpu` would take an IRQ now (unmasked, and the GIC
        signals one)."""
        core = self.cpus[cpu]
        return not core.irq_masked() and self.gic.deliverable(cpu)

    def _where(self) -> str:
        return "; ".join(f"CPU {cpu.index} {'waiting' if cpu.waiting else 'running'} at "
                         f"PC {cpu.pc:#x}" for cpu in self.cpus if cpu.on) or "all CPUs off"

    def _changed(self, cpu: int) -> None:
        """What CPU `cpu` is signalled may have changed: if it is the one
        running, its slice ends early (see `Cpu.stop_requested`) so the
        scheduler looks before it goes on."""
        running = self.running
        if running is not None and running.index == cpu:
            running.stop_requested = True

    # -- migration -----------------------------------------------------------------------

    def save(self) -> dict:
        """The whole machine as a self-contained state, between slices: the ITS
        and the redistributors' LPI side through its_core's KVM-ABI save
        (tables and pending tables written into guest RAM, registers in the
        dict), then guest RAM, every CPU (unicorn context: all registers,
        system registers included, power and WFI state), the rest of the
        GIC, the UART and the counter.  A GICv4 machine's ITS saves in
        its_core's own revision, its-core-rev1 (docs/gicv4.md)."""
        its_state = self.its.save()
        return {
            "format": STATE_FORMAT,
            "smp": self.smp,
            "gic_version": self.gic_version,
            "ram_bytes": self.ram_bytes,
            "layout": self.its.layout,
            "its": its_state,
            "ram": self.ram.copy(),
            "cpus": [{"on": cpu.on, "waiting": cpu.waiting,
                      "context": pickle.dumps(cpu.uc.context_save()) if cpu.uc else None}
                     for cpu in self.cpus],
            "gic": self.gic.save(),
            "uart": self.uart.save(),
            "counter": self._counter(),
            "unmapped_accesses": self.unmapped_accesses,
        }

    @classmethod
    def restore(cls, state: dict, layout: str | None = None, **options) -> "Machine":
        """A fresh machine that continues the guest `save` captured, with its
        ITS tables in `layout` (default: the saved one); `options` as for the
        constructor (output, slice_instructions).  A state without
        ``gic_version`` (saved before machines had one) is a GICv3 machine's."""
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a {STATE_FORMAT!r} machine state")
        missing = {"smp", "ram_bytes", "layout", "its", "ram", "cpus", "gic", "uart", "counter",
                   "unmapped_accesses"} - state.keys()
        if missing:
            raise ValueError(f"machine state lacks {', '.join(sorted(missing))}")
        ram = np.asarray(state["ram"])
        if ram.dtype != np.uint8 or ram.shape != (state["ram_bytes"],):
            raise ValueError(f"machine state: ram is {ram.dtype} {ram.shape}, expected "
                             f"{state['ram_bytes']} bytes")
        if len(state["cpus"]) != state["smp"]:
            raise ValueError(f"machine state: {len(state['cpus'])} CPUs saved for smp = "
                             f"{state['smp']}")
        machine = cls(smp=state["smp"], memory=state["ram_bytes"],
                      layout=layout or state["layout"],
                      gic_version=state.get("gic_version", "3"), **options)
        machine.ram[:] = ram
        machine.its.restore(state["its"])
        machine.gic.restore(state["gic"])
        machine.uart.restore(state["uart"])
        for cpu, saved in zip(machine.cpus, state["cpus"]):
            if saved["context"] is not None:
                cpu.reset()
                cpu.uc.context_restore(pickle.loads(saved["context"]))
            cpu.on, cpu.waiting = bool(saved["on"]), bool(saved["waiting"])
        machine._clock_origin = time.monotonic() - state["counter"] / mm.COUNTER_HZ
        machine.unmapped_accesses = int(state["unmapped_accesses"])
        return machine

    def _counter(self) -> int:
        return int((time.monotonic() - self._clock_origin) * mm.COUNTER_HZ)

    # -- MMIO ----------------------------------------------------------------------------

    def mmio_regions(self, cpu: int):
        """(region, read callback, write callback) of every device, for CPU `cpu`."""
        def callbacks(read, write):
            # The GIC frames take 1-, 2-, 4- and 8-byte accesses; anything else
            # (a vector register's access, say) reads as zero and is counted.
            def on_read(uc, offset, size, data):
                if size in _ACCESS_SIZES:
                    return read(cpu, offset, size)
                self.unmapped_accesses += 1
                return 0

            def on_write(uc, offset, size, value, data):
                if size in _ACCESS_SIZES:
                    write(cpu, offset, size, value)
                else:
                    self.unmapped_accesses += 1
            return on_read, on_write
        uart_read, uart_write = self.uart.read, self.uart.write   # the hottest: one call
        return [(mm.GICD, *callbacks(self._gicd_read, self._gicd_write)),
                (mm.ITS, *callbacks(self._its_read, self._its_write)),
                (mm.GICR, *callbacks(self._gicr_read, self._gicr_write)),
                (mm.UART, lambda uc, offset, size, data: uart_read(offset),
                 lambda uc, offset, size, value, data: uart_write(offset, value))]

    def _gicd_read(self, cpu, offset, size):
        value = self.gic.distributor_read(offset, size)
        if value is None:
            self.unmapped_accesses += 1
            return 0
        return value

    def _gicd_write(self, cpu, offset, size, value):
        if not self.gic.distributor_write(offset, size, value):
            self.unmapped_accesses += 1

    def _its_read(self, cpu, offset, size):
        return self.its.mmio_read(offset, size)

    def _its_write(self, cpu, offset, size, value):
        # A CPU's write to GITS_TRANSLATER carries DeviceID 0 (QEMU: the
        # requester ID of a CPU access).
        self.its.mmio_write(offset, value, size, device_id=0)

    def _gicr_locate(self, offset):
        cpu, within = divmod(offset, self.gicr_stride)
        return (cpu, within) if cpu < self.smp else (None, within)

    def _gicr_read(self, cpu, offset, size):
        target, within = self._gicr_locate(offset)
        if target is None:
            self.unmapped_accesses += 1
            return 0
        if within < mm.GICR_FRAME_BYTES:
            value = self.gic.rd_read(target, within)
            if value is not None:
                return value
            return self.redistributors.mmio_read(target, within, size)
        if within >= mm.VLPI_FRAME_OFFSET:           # GICv4: VLPI frame, reserved frame
            return self.redistributors.mmio_read(target, within, size)
        value = self.gic.sgi_read(target, within - mm.GICR_FRAME_BYTES, size)
        if value is None:
            self.unmapped_accesses += 1
            return 0
        return value

    def _gicr_write(self, cpu, offset, size, value):
        target, within = self._gicr_locate(offset)
        if target is None:
            self.unmapped_accesses += 1
            return
        if within < mm.GICR_FRAME_BYTES:
            if not self.gic.rd_write(target, within, value):
                self.redistributors.mmio_write(target, within, value, size)
        elif within >= mm.VLPI_FRAME_OFFSET:         # GICv4: VLPI frame, reserved frame
            self.redistributors.mmio_write(target, within, value, size)
        elif not self.gic.sgi_write(target, within - mm.GICR_FRAME_BYTES, size, value):
            self.unmapped_accesses += 1

    def raz(self, uc, offset, size, data):
        """An access to an address nothing is mapped at: read as zero, counted."""
        self.unmapped_accesses += 1
        return 0

    def wi(self, uc, offset, size, value, data):
        self.unmapped_accesses += 1

    # -- system registers ------------------------------------------------------------------

    def read_sysreg(self, cpu: int, encoding: tuple) -> int | None:
        """An MRS the machine answers (identification, the counter, the GIC
        CPU interface); None leaves the register to unicorn."""
        if encoding == MPIDR_EL1:
            return mm.mpidr(cpu)
        if encoding == CNTFRQ_EL0:
            return mm.COUNTER_HZ
        if encoding in (CNTVCT_EL0, CNTPCT_EL0):
            return self._counter()
        return self.gic.read_sysreg(cpu, encoding)

    def write_sysreg(self, cpu: int, encoding: tuple, value: int) -> bool:
        """An MSR to the GIC CPU interface; False leaves it to unicorn."""
        return self.gic.write_sysreg(cpu, encoding, value)

    # -- PSCI (psci.PowerControl) ---------------------------------------------------------

    def psci_call(self, cpu: int, x0: int, x1: int, x2: int, x3: int) -> int | None:
        return psci.call(self, cpu, x0, x1, x2, x3)

    def cpu_by_affinity(self, affinity: int) -> int | None:
        for cpu in range(self.smp):
            if mm.affinity(cpu) == affinity:
                return cpu
        return None

    def cpu_is_on(self, cpu: int) -> bool:
        return self.cpus[cpu].on

    def power_on(self, cpu: int, entry: int, context_id: int) -> None:
        self.cpus[cpu].power_on(entry, context_id)

    def power_off(self, cpu: int) -> None:
        self.cpus[cpu].power_off()

    def suspend(self, cpu: int) -> None:
        self.cpus[cpu].waiting = True
        self.cpus[cpu].stop()

    def system_off(self) -> None:
        self.stopped = "off"
        for cpu in self.cpus:
            cpu.stop()

    def system_reset(self) -> None:
        self.stopped = "reset"
        for cpu in self.cpus:
            cpu.stop()


def _stdout(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _read(source) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    with open(source, "rb") as handle:
        return handle.read()
