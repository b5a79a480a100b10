"""Building the test guests of tests/guests with a cross compiler, and running
them on the `its_core.virt` machine or on QEMU.

Guests are raw binaries linked at RAM + 0x80000 (tests/guests/link.ld), as
QEMU loads a ``-kernel`` that is not an ELF file.  Assembly guests use
lib.S; C guests use start.S and runtime.c (tests/guests/guest.h).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

GUESTS = Path(__file__).parent / "guests"
CROSS_GCC = "aarch64-linux-gnu-gcc"
OBJCOPY = "aarch64-linux-gnu-objcopy"
QEMU = "qemu-system-aarch64"
C_FLAGS = ["-O2", "-ffreestanding", "-nostdlib", "-mgeneral-regs-only", "-mstrict-align",
           "-mno-outline-atomics", "-fno-pie", "-no-pie", "-static", "-Wl,--build-id=none",
           "-Wl,--no-warn-rwx-segments"]


#: Set by .ci/run, which installs the cross compiler and QEMU: a missing tool
#: is then a failure, not a skip, so the guest and QEMU tests cannot vanish.
TOOLS_REQUIRED = os.environ.get("ITS_CORE_REQUIRE_GUEST_TOOLS") == "1"


def skip_reason(compiler: bool = False, qemu: bool = False) -> str | None:
    """Why a test needing the cross compiler and/or QEMU must be skipped: the
    missing tools, or None when they are installed -- or when TOOLS_REQUIRED,
    so that the test runs and fails instead."""
    missing = ([CROSS_GCC] if compiler and not have_cross_compiler() else []) + (
        [QEMU] if qemu and not have_qemu() else [])
    if not missing or TOOLS_REQUIRED:
        return None
    return " and ".join(missing) + " not installed"


def have_cross_compiler() -> bool:
    return shutil.which(CROSS_GCC) is not None and shutil.which(OBJCOPY) is not None


def have_qemu() -> bool:
    return shutil.which(QEMU) is not None


def build(name: str, out_dir: Path, sources: tuple[str, ...] | None = None) -> Path:
    """Build guest `name` (name.S or name.c in tests/guests) into `out_dir`;
    returns the raw binary's path.  `sources` (file names in tests/guests)
    replaces the default start-up and runtime; `out_dir` is on the include
    path, for headers a test generates there."""
    elf, binary = out_dir / f"{name}.elf", out_dir / f"{name}.bin"
    if binary.exists():
        return binary
    if sources is not None:
        sources = [GUESTS / source for source in sources]
    elif (GUESTS / f"{name}.c").exists():
        sources = [GUESTS / "start.S", GUESTS / "runtime.c", GUESTS / "fdt.c",
                   GUESTS / f"{name}.c"]
    else:
        sources = [GUESTS / f"{name}.S", GUESTS / "lib.S"]
    compiled = subprocess.run([CROSS_GCC, *C_FLAGS, "-I", str(GUESTS), "-I", str(out_dir), "-T",
                               str(GUESTS / "link.ld"), "-o", str(elf), *map(str, sources)],
                              capture_output=True, text=True)
    if compiled.returncode:
        raise RuntimeError(f"building guest {name} failed:\n{compiled.stderr}")
    subprocess.run([OBJCOPY, "-O", "binary", str(elf), str(binary)], check=True)
    return binary


def run_on_machine(binary: Path, smp: int = 1, layout: str = "flat", timeout: float = 60,
                   memory: str = "256M", gic_version: str = "3", **load):
    """(UART output as text, RunResult) of `binary` on a fresh Machine."""
    from its_core.virt import Machine
    output = bytearray()
    machine = Machine(smp=smp, layout=layout, output=output.extend, memory=memory,
                      gic_version=gic_version)
    machine.load(binary, **load)
    result = machine.run(timeout=timeout)
    return output.decode(errors="replace"), result


def run_on_qemu(binary: Path, smp: int = 1, timeout: float = 120, uart_input: bytes = b"",
                extra=(), machine: str = "virt,gic-version=3", cpu: str = "cortex-a57") -> str:
    """The UART output of `binary` on QEMU's virt board (by default
    gic-version=3, cortex-a57), with `uart_input` waiting on its UART and
    `extra` arguments (``-append``, ``-initrd``)."""
    completed = subprocess.run(
        [QEMU, "-M", machine, "-cpu", cpu, "-smp", str(smp), "-m", "256M",
         "-nographic", "-monitor", "none", "-serial", "stdio", "-kernel", str(binary), *extra],
        capture_output=True, timeout=timeout, input=uart_input)
    return completed.stdout.decode(errors="replace")
