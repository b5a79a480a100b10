"""``its-core replay``: run a recorded trace of guest activity against an ITS.

A trace is a UTF-8 text file, one action per line; docs/trace-format.md is the
full reference.  In short (``#`` starts a comment; numbers in any Python
integer literal form, with an optional K/M/G suffix)::

    config cpus=4 memory=64M base=0 layout=flat device_bits=16 event_bits=16 intid_bits=16
    mem   ADDR HEXBYTES            # write guest memory (e.g. a command into the queue)
    its   OFFSET VALUE SIZE        # guest write to the ITS frame
    its?  OFFSET SIZE [= VALUE]    # guest read; with "= VALUE" a check
    gicr  CPU OFFSET VALUE SIZE    # guest write to a redistributor's RD_base frame
    gicr? CPU OFFSET SIZE [= VALUE]
    msi   DEVICE_ID EVENT_ID       # a device rings GITS_TRANSLATER
    ack   CPU                      # the CPU takes its highest-priority LPI
    reset                          # the ITS is reset

Replay prints each doorbell that did not translate, each acknowledged LPI
and each failed check, then the final state as ``its-core dump`` lists it.
`TraceRecorder` writes such a trace from a live ITS; `EXAMPLE_TRACE` is the
example that ships with the package.
"""

from __future__ import annotations

import importlib.resources
import json
import sys
from dataclasses import dataclass, field

from its_core.abi import dump
from its_core.errors import ITSError
from its_core.frontend.guest_memory import GuestMemory
from its_core.frontend.its import ITS

#: The example trace shipped with the package (docs/trace-format.md walks through it).
EXAMPLE_TRACE = importlib.resources.files("its_core") / "data" / "bring_up_and_doorbell.trace"

_SIZES = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
CONFIG_DEFAULTS = {"cpus": 4, "memory": 64 << 20, "base": 0, "layout": "flat",
                   "device_bits": 16, "event_bits": 16, "intid_bits": 16, "stall_on_error": 0}


class TraceError(ValueError):
    """A line of the trace cannot be understood or run."""

    def __init__(self, line: int, message: str):
        self.line = line
        super().__init__(f"line {line}: {message}")


def _number(text: str, line: int) -> int:
    try:
        if text[-1:].upper() in _SIZES:
            return int(text[:-1], 0) * _SIZES[text[-1].upper()]
        return int(text, 0)
    except ValueError:
        raise TraceError(line, f"{text!r} is not a number") from None


@dataclass
class Outcome:
    """What a replay observed."""

    events: list = field(default_factory=list)      # (line, text) of notable results
    delivered: list = field(default_factory=list)   # (line, cpu, intid)
    failed_checks: int = 0


#: Number of arguments of each action (a tuple: any of these).
_ARITY = {"mem": (2,), "its": (3,), "its?": (2, 4), "gicr": (4,), "gicr?": (3, 5),
          "msi": (2,), "ack": (1,), "reset": (0,)}


def _arguments(counts: tuple) -> str:
    return " or ".join(map(str, counts)) + (" argument" if counts == (1,) else " arguments")


def replay(lines, config: dict | None = None) -> tuple[ITS, Outcome]:
    """Run the trace `lines` (an iterable of str) against a fresh ITS.

    `config` overrides the trace's ``config`` keys.  Returns the ITS and what
    was observed; raises TraceError naming the line at fault.
    """
    settings = dict(CONFIG_DEFAULTS)
    config_line = 0
    actions = []
    for number, raw in enumerate(lines, 1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        verb, args = words[0], words[1:]
        if verb == "config":
            if actions:
                raise TraceError(number, "config must come before any action")
            for item in args:
                key, _, value = item.partition("=")
                if key not in CONFIG_DEFAULTS:
                    raise TraceError(number, f"unknown config key {key!r}")
                settings[key] = value if key == "layout" else _number(value, number)
            config_line = number
            continue
        counts = _ARITY.get(verb)
        if counts is None:
            raise TraceError(number, f"unknown action {verb!r}")
        if len(args) not in counts or (len(args) > counts[0] and args[-2] != "="):
            usage = _arguments(counts) if len(counts) == 1 else \
                f"{_arguments(counts[:1])}, optionally followed by = VALUE"
            raise TraceError(number, f"{verb} takes {usage}; got {' '.join(args) or 'none'}")
        actions.append((number, verb, args))
    settings.update(config or {})
    try:
        its = ITS(GuestMemory(settings["memory"], base=settings["base"]), settings["cpus"],
                  settings["layout"], device_bits=settings["device_bits"],
                  event_bits=settings["event_bits"], intid_bits=settings["intid_bits"],
                  stall_on_error=bool(settings["stall_on_error"]))
    except (ValueError, TypeError, OverflowError, MemoryError) as error:
        raise TraceError(config_line, f"config: {error}") from None
    outcome = Outcome()
    for number, verb, args in actions:
        try:
            _apply(its, outcome, number, verb, args)
        except TraceError:
            raise
        except (ValueError, TypeError, IndexError, OverflowError, ITSError) as error:
            raise TraceError(number, str(error)) from None
    return its, outcome


def _apply(its: ITS, outcome: Outcome, number: int, verb: str, args: list) -> None:
    if verb == "mem":
        its.memory.write(_number(args[0], number), bytes.fromhex(args[1]))
        return
    if verb == "reset":
        its.reset()
        return
    if verb == "ack":
        cpu = _number(args[0], number)
        intid = its.acknowledge(cpu)
        outcome.delivered.append((number, cpu, intid))
        outcome.events.append((number, f"CPU {cpu} acknowledges "
                                       f"{'nothing' if intid is None else f'LPI {intid}'}"))
        return
    if verb == "msi":
        status = its.msi(_number(args[0], number), _number(args[1], number))
        if status != 0:
            outcome.events.append((number, f"doorbell {args[0]}/{args[1]} dropped: {status.name}"))
        return
    values = [_number(arg, number) for arg in args if arg != "="]
    if verb == "its":
        its.mmio_write(values[0], values[1], values[2])
    elif verb == "gicr":
        its.redistributors.mmio_write(values[0], values[1], values[2], values[3])
    else:
        if verb == "its?":
            value = its.mmio_read(values[0], values[1])
            expected = values[2] if len(values) > 2 else None
        else:
            value = its.redistributors.mmio_read(values[0], values[1], values[2])
            expected = values[3] if len(values) > 3 else None
        if expected is not None and value != expected:
            outcome.failed_checks += 1
            outcome.events.append((number, f"check failed: {' '.join(args)} read {value:#x}"))


class TraceRecorder:
    """A live ITS whose guest-visible activity is recorded as a trace.

    Each method forwards to the wrapped ITS (returning what it returns) and
    appends the trace line that replays it; reads are recorded as checks of
    the value read, so a replay verifies it sees the same.  The trace replays
    from a fresh ITS over zeroed memory: wrap the ITS before the guest
    programs it, and route every guest-memory write the ITS will read through
    `write_memory` (or, when the guest writes shared memory directly, call
    `record_memory` on the range before the ITS reads it).

    Examples
    --------
    >>> from its_core import ITS, GuestMemory
    >>> recorder = TraceRecorder(ITS(GuestMemory(1 << 20), 2))
    >>> recorder.mmio_read(0x0, 4)
    2147483648
    >>> recorder.lines[-1]
    'its? 0x0 4 = 0x80000000'
    """

    def __init__(self, its: ITS):
        self.its = its
        memory, tables = its.memory, its.tables
        #: The trace so far, one line per action (no newlines), starting with ``config``.
        self.lines = [f"config cpus={its.num_cpus} memory={memory.size:#x} base={memory.base:#x} "
                      f"layout={its.layout} device_bits={tables.device_bits} "
                      f"event_bits={tables.event_bits} intid_bits={tables.intid_bits} "
                      f"stall_on_error={int(its.stall_on_error)}"]

    def mmio_write(self, offset: int, value: int, size: int) -> None:
        """A guest write to the ITS frame (``its``)."""
        self.its.mmio_write(offset, value, size)
        self.lines.append(f"its {offset:#x} {value:#x} {size}")

    def mmio_read(self, offset: int, size: int) -> int:
        """A guest read of the ITS frame, recorded as a check (``its? ... = VALUE``)."""
        value = self.its.mmio_read(offset, size)
        self.lines.append(f"its? {offset:#x} {size} = {value:#x}")
        return value

    def redistributor_write(self, cpu: int, offset: int, value: int, size: int) -> None:
        """A guest write to `cpu`'s redistributor RD_base frame (``gicr``)."""
        self.its.redistributors.mmio_write(cpu, offset, value, size)
        self.lines.append(f"gicr {cpu} {offset:#x} {value:#x} {size}")

    def redistributor_read(self, cpu: int, offset: int, size: int) -> int:
        """A guest read of `cpu`'s RD_base frame, recorded as a check (``gicr?``)."""
        value = self.its.redistributors.mmio_read(cpu, offset, size)
        self.lines.append(f"gicr? {cpu} {offset:#x} {size} = {value:#x}")
        return value

    def write_memory(self, addr: int, data) -> None:
        """A guest write of the bytes-like `data` to guest memory at `addr` (``mem``)."""
        self.its.memory.write(addr, data)
        self.record_memory(addr, memoryview(data).nbytes)

    def record_memory(self, addr: int, nbytes: int) -> None:
        """Record the current contents of ``[addr, addr + nbytes)`` (``mem``), for
        memory the guest wrote without going through `write_memory`."""
        self.lines.append(f"mem {addr:#x} {self.its.memory.read(addr, nbytes).hex()}")

    def msi(self, device_id: int, event_id: int):
        """A device rings the doorbell (``msi``); returns the TranslationStatus."""
        status = self.its.msi(device_id, event_id)
        self.lines.append(f"msi {device_id:#x} {event_id}")
        return status

    def acknowledge(self, cpu: int) -> int | None:
        """`cpu` takes its highest-priority pending LPI (``ack``); returns it or None."""
        intid = self.its.acknowledge(cpu)
        self.lines.append(f"ack {cpu}")
        return intid

    def reset(self) -> None:
        """The ITS is reset (``reset``)."""
        self.its.reset()
        self.lines.append("reset")

    def write(self, path) -> None:
        """Write the trace to the file `path`."""
        with open(path, "w", encoding="utf-8") as stream:
            stream.write("\n".join(self.lines) + "\n")


def read_trace(path: str) -> list[str]:
    """The lines of the trace file `path`: TraceError naming the line of the first
    NUL byte or invalid UTF-8 sequence if it is not text, OSError if it cannot be read."""
    with open(path, "rb") as stream:
        data = stream.read()
    nul = data.find(b"\0")
    if nul >= 0:
        raise TraceError(data.count(b"\n", 0, nul) + 1,
                         f"not a text trace (NUL byte at offset {nul})")
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise TraceError(data.count(b"\n", 0, error.start) + 1,
                         f"not a text trace (byte {data[error.start]:#04x} at offset "
                         f"{error.start} is not UTF-8)") from None


def main(trace_path: str, as_json: bool, out) -> int:
    """0 when the trace ran and every check held, 1 when a check failed, 2 (with a
    message naming the file and line) on a trace that cannot be read or run."""
    try:
        its, outcome = replay(read_trace(trace_path))
    except OSError as error:
        print(f"its-core replay: {trace_path}: cannot read ({error.strerror or error})",
              file=sys.stderr)
        return 2
    except TraceError as error:
        print(f"its-core replay: {trace_path}: {error}", file=sys.stderr)
        return 2
    listing = dump.describe(its)
    errors = [{"offset": e.offset, "command": e.command, "code": e.code, "name": e.name}
              for e in its.errors]
    if as_json:
        print(json.dumps({"events": [{"line": n, "text": t} for n, t in outcome.events],
                          "delivered": [{"line": n, "cpu": c, "intid": i}
                                        for n, c, i in outcome.delivered],
                          "command_errors": errors, "failed_checks": outcome.failed_checks,
                          "state": listing}, indent=2), file=out)
    else:
        for number, text in outcome.events:
            print(f"line {number}: {text}", file=out)
        for error in its.errors:
            print(f"command error: {error}", file=out)
        print(dump.format_listing(listing), file=out)
    return 1 if outcome.failed_checks else 0
