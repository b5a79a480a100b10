"""``its-core replay``: run a recorded trace of guest activity against an ITS.

A trace is a text file, one action per line (``#`` starts a comment; numbers
in any Python literal form, ``0x..`` included)::

    config cpus=4 memory=64M layout=flat device_bits=16 event_bits=16 intid_bits=16
    mem   ADDR HEXBYTES            # write guest memory (e.g. a command into the queue)
    its   OFFSET VALUE SIZE        # guest write to the ITS frame
    its?  OFFSET SIZE [= VALUE]    # guest read; with "= VALUE" a check
    gicr  CPU OFFSET VALUE SIZE    # guest write to a redistributor's RD_base frame
    gicr? CPU OFFSET SIZE [= VALUE]
    msi   DEVICE_ID EVENT_ID       # a device rings GITS_TRANSLATER
    ack   CPU                      # the CPU takes its highest-priority LPI
    reset                          # the ITS is reset

``config`` (optional, first) sets up the ITS; every key has a default.
Replay prints each doorbell that did not translate, each acknowledged LPI
and each failed check, then the final state as ``its-core dump`` lists it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

from its_core import dump
from its_core.guest_memory import GuestMemory
from its_core.its import ITS

_SIZES = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
CONFIG_DEFAULTS = {"cpus": 4, "memory": 64 << 20, "layout": "flat", "device_bits": 16,
                   "event_bits": 16, "intid_bits": 16}


class TraceError(ValueError):
    """A line of the trace cannot be understood."""

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


_ARITY = {"mem": 2, "its": 3, "its?": (2, 4), "gicr": 4, "gicr?": (3, 5), "msi": 2,
          "ack": 1, "reset": 0}


def replay(lines, config: dict | None = None) -> tuple[ITS, Outcome]:
    """Run the trace `lines`; returns the ITS and what was observed."""
    settings = dict(CONFIG_DEFAULTS)
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
            continue
        arity = _ARITY.get(verb)
        if arity is None:
            raise TraceError(number, f"unknown action {verb!r}")
        if len(args) not in (arity if isinstance(arity, tuple) else (arity,)):
            raise TraceError(number, f"{verb} takes {arity} arguments, got {len(args)}")
        actions.append((number, verb, args))
    settings.update(config or {})
    its = ITS(GuestMemory(settings["memory"]), settings["cpus"], settings["layout"],
              device_bits=settings["device_bits"], event_bits=settings["event_bits"],
              intid_bits=settings["intid_bits"])
    outcome = Outcome()
    for number, verb, args in actions:
        try:
            _apply(its, outcome, number, verb, args)
        except TraceError:
            raise
        except (ValueError, TypeError, IndexError) as error:
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


def main(trace_path: str, as_json: bool, out) -> int:
    """0 when the trace ran and every check held, 1 when a check failed, 2 on a bad trace."""
    try:
        with open(trace_path) as stream:
            its, outcome = replay(stream)
    except (OSError, TraceError) as error:
        print(f"its-core replay: {error}", file=sys.stderr)
        return 2
    listing = dump.describe(its)
    listing["enabled"] = its.enabled
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
