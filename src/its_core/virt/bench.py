"""The `its-core bench` table of the virt machine: guest instructions per second
beside bare unicorn on the same loop, MMIO exits per second beside unicorn's
own MMIO callback, and one migration (docs/virt.md, "Speed";
benchmarks/bench_virt.py measures the same things, with a C guest for
interrupts too).

The two guests here are a few instructions each, encoded below from the
A64 encodings (the assembly is beside each word), so the table needs no cross
compiler.
"""

from __future__ import annotations

import dataclasses
import time
from typing import NamedTuple

import numpy as np
import unicorn
from unicorn import arm64_const as A

from its_core.testing import GuestMap, random_state
from its_core.virt import memory_map as mm
from its_core.virt.machine import Machine

LOOP_ITERATIONS = 5_000_000          # 2 instructions each
MMIO_READS = 100_000                 # 3 instructions each, one MMIO read


def _movz(register: int, value: int, shift: int = 0) -> int:
    """MOVZ Xd, #value, LSL #shift (shift 0 or 16)."""
    return 0xD280_0000 | (shift // 16) << 21 | (value & 0xFFFF) << 5 | register


def _movk(register: int, value: int, shift: int) -> int:
    """MOVK Xd, #value, LSL #shift."""
    return 0xF280_0000 | (shift // 16) << 21 | (value & 0xFFFF) << 5 | register


SUBS_X0_X0_1 = 0xF100_0400           # subs x0, x0, #1
LDR_W2_X1 = 0xB940_0022              # ldr w2, [x1]
HVC_0 = 0xD400_0002                  # hvc #0
PSCI_SYSTEM_OFF = 0x8400_0008


def _bne(back: int) -> int:
    """B.NE to `back` instructions before this one."""
    return 0x5400_0001 | ((-back) & 0x7FFFF) << 5


def _program(*words: int) -> bytes:
    return b"".join(word.to_bytes(4, "little") for word in words)


def _set(register: int, value: int) -> tuple[int, int]:
    return _movz(register, value), _movk(register, value >> 16, 16)


#: x0 = LOOP_ITERATIONS; 1: subs x0, x0, #1; b.ne 1b; PSCI SYSTEM_OFF.
LOOP_GUEST = _program(*_set(0, LOOP_ITERATIONS), SUBS_X0_X0_1, _bne(1),
                      *_set(0, PSCI_SYSTEM_OFF), HVC_0)
#: x1 = UART FR, x0 = MMIO_READS; 1: ldr w2, [x1]; subs; b.ne 1b; SYSTEM_OFF.
MMIO_GUEST = _program(*_set(1, mm.UART.base + 0x18), *_set(0, MMIO_READS), LDR_W2_X1,
                      SUBS_X0_X0_1, _bne(2), *_set(0, PSCI_SYSTEM_OFF), HVC_0)


class VirtFigures(NamedTuple):
    loop_machine_s: float
    loop_bare_s: float
    mmio_machine_s: float
    mmio_bare_s: float
    migration_s: float


def _on_machine(program: bytes) -> float:
    machine = Machine(smp=1, memory="64M", output=lambda data: None)
    machine.load(program)
    start = time.perf_counter()
    result = machine.run(timeout=600)
    elapsed = time.perf_counter() - start
    if result.reason != "off":
        raise RuntimeError(f"benchmark guest did not finish: {result.message}")
    return elapsed


def _on_bare_unicorn(program: bytes, instructions: int, mmio: bool) -> float:
    uc = unicorn.Uc(unicorn.UC_ARCH_ARM64, unicorn.UC_MODE_ARM)
    uc.ctl_set_cpu_model(A.UC_CPU_ARM64_A57)
    ram = np.zeros(64 << 20, np.uint8)
    ram[mm.KERNEL_OFFSET:mm.KERNEL_OFFSET + len(program)] = np.frombuffer(program, np.uint8)
    uc.mem_map_ptr(mm.RAM_BASE, ram.size, unicorn.UC_PROT_ALL, ram.ctypes.data)
    if mmio:
        uc.mmio_map(mm.UART.base, mm.UART.size, lambda uc, offset, size, user: 0x90, None,
                    lambda uc, offset, size, value, user: None, None)
    uc.hook_add(unicorn.UC_HOOK_INTR, lambda uc, number, user: uc.emu_stop())
    start = time.perf_counter()
    uc.emu_start(mm.RAM_BASE + mm.KERNEL_OFFSET, 0xFFFF_FFFF_FFFF_FFFC, 0, instructions + 16)
    return time.perf_counter() - start


def _migration() -> float:
    """save() + Machine.restore() of 256 MiB, 4 CPUs, 65 536 mapped events."""
    machine = Machine(smp=4, memory="256M", layout="hash", output=lambda data: None)
    moved = {name: getattr(GuestMap, name) + mm.RAM_BASE
             for name in ("queue", "device_table", "level2_tables", "collection_table",
                          "config_table", "pending_tables", "itt_base")}
    random_state(machine.its, 2048, 32, guest=dataclasses.replace(GuestMap(), **moved),
                 num_collections=4)
    start = time.perf_counter()
    Machine.restore(machine.save(), layout="flat", output=lambda data: None)
    return time.perf_counter() - start


def run(repeat: int = 3) -> VirtFigures:
    """Best of `repeat` for each figure (the migration once per repeat too)."""
    def best(measure):
        return min(measure() for _ in range(repeat))
    return VirtFigures(
        loop_machine_s=best(lambda: _on_machine(LOOP_GUEST)),
        loop_bare_s=best(lambda: _on_bare_unicorn(LOOP_GUEST, 2 * LOOP_ITERATIONS, False)),
        mmio_machine_s=best(lambda: _on_machine(MMIO_GUEST)),
        mmio_bare_s=best(lambda: _on_bare_unicorn(MMIO_GUEST, 3 * MMIO_READS, True)),
        migration_s=best(_migration))


def format_table(figures: VirtFigures) -> str:
    loop = 2 * LOOP_ITERATIONS
    rows = [
        ("guest instructions/s, machine", f"{loop / figures.loop_machine_s / 1e6:.0f} M",
         f"{figures.loop_machine_s / figures.loop_bare_s:.2f}x bare unicorn's time"),
        ("guest instructions/s, bare unicorn", f"{loop / figures.loop_bare_s / 1e6:.0f} M", ""),
        ("MMIO exits/s, machine", f"{MMIO_READS / figures.mmio_machine_s / 1e3:.0f} K",
         f"{figures.mmio_machine_s / figures.mmio_bare_s:.2f}x bare unicorn's time"),
        ("MMIO exits/s, bare unicorn callback", f"{MMIO_READS / figures.mmio_bare_s / 1e3:.0f} K",
         ""),
        ("migration, 256 MiB, 64 K LPIs", f"{figures.migration_s * 1e3:.0f} ms", "save + restore"),
    ]
    width = max(len(row[0]) for row in rows)
    lines = ["virt machine (its_core.virt on unicorn; same run)"]
    lines += [f"  {name:<{width}}  {value:>8}  {note}".rstrip() for name, value, note in rows]
    return "\n".join(lines)
