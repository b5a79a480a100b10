"""`its-core run`: boot a guest on the `virt` machine, optionally migrating it.

Guest UART output goes to stdout.  With ``--migrate-on TEXT`` the machine is
saved and restored into a fresh one (the ITS in the next layout, in turn)
each time the guest writes a line containing TEXT, and a newline is then fed
to the UART: the protocol the test guests use to be migrated by a harness.
With ``--migrate-every N`` the same happens after every N instructions of
scheduler slices (each slice counted at its full length: the machine does not
count instructions one by one); a GICv4 machine (``--gic-version 4.0`` or
``4.1``) migrates too, its ITS saved in its-core-rev1.  Exit
status: 0 when the guest powers the machine off (or asks for a reset), 3 on
timeout, 4 when no CPU can run, 5 on a guest fault, 2 for a kernel or
initrd that cannot be loaded or a machine that cannot be built (smp,
memory, gic_version).
"""

from __future__ import annotations

import sys
import time

from its_core.core.parameters import LAYOUTS
from its_core.virt import boot
from its_core.virt.machine import DEFAULT_SLICE, Machine


class _Console:
    """Guest output to `sink`, watching for lines that contain `marker`."""

    def __init__(self, sink, marker: str | None):
        self.sink = sink
        self.marker = marker.encode() if marker else None
        self.line = bytearray()
        self.seen = False

    def __call__(self, data: bytes) -> None:
        self.sink(data)
        if self.marker is None:
            return
        for byte in data:
            if byte == 0x0A:
                if self.marker in self.line:
                    self.seen = True
                self.line.clear()
            else:
                self.line.append(byte)


def _stdout(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def run(kernel: str, *, smp: int = 1, memory: str = "256M", append: str = "",
        initrd: str | None = None, layout: str = "flat", migrate_on: str | None = None,
        migrate_every: int | None = None, timeout: float | None = None, output=_stdout,
        messages=sys.stderr, gic_version: str = "3") -> int:
    """Boot `kernel` and run it to the end; returns the exit status."""
    console = _Console(output, migrate_on)
    slice_instructions = min(DEFAULT_SLICE, migrate_every) if migrate_every else DEFAULT_SLICE
    try:
        machine = Machine(smp=smp, memory=memory, layout=layout, output=console,
                          slice_instructions=slice_instructions, gic_version=gic_version)
    except ValueError as error:                       # smp, memory, gic_version
        print(f"its-core run: {error}", file=messages)
        return 2
    try:
        machine.load(kernel, append=append, initrd=initrd)
    except (OSError, boot.BootError) as error:
        print(f"its-core run: {error}", file=messages)
        return 2
    deadline = None if timeout is None else time.monotonic() + timeout
    order = list(LAYOUTS)
    migrations = 0
    next_stress = migrate_every

    def pause() -> bool:
        if console.seen:
            return True
        return bool(next_stress) and machine.slices_run * machine.slice >= next_stress

    while True:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        result = machine.run(timeout=remaining, pause=pause)
        if result.reason != "paused":
            break
        by_text = console.seen
        console.seen = False
        layout = order[(order.index(layout) + 1) % len(order)]
        state = machine.save()
        done = machine.slices_run * machine.slice
        machine = Machine.restore(state, layout=layout, output=console,
                                  slice_instructions=slice_instructions)
        machine.slices_run = done // machine.slice
        migrations += 1
        if migrate_every:
            next_stress = done + migrate_every
        if by_text:
            machine.uart.feed(b"\n")
    if migrations:
        print(f"its-core run: {migrations} migration{'s' * (migrations != 1)}",
              file=messages)
    if result.exit_code:
        print(f"its-core run: {result.message}", file=messages)
    return result.exit_code
