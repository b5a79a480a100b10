"""Invalid register accesses: what is recorded, and strict mode.

An access that hits no register (a hole, a wrong size, a misaligned access,
or a direct LPI register write the architecture lets the model ignore) reads
as zero or is ignored, and is recorded as an `AccessError` in a bounded log;
with ``strict=True`` it raises `InvalidAccessError` instead.  The ITS frame and
the redistributor frames share this one rule.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

from its_core.errors import InvalidAccessError

__all__ = ["ACCESS_ERRORS_KEPT", "AccessError", "AccessLog"]

#: How many invalid register accesses a log keeps (the most recent).
ACCESS_ERRORS_KEPT = 1 << 16


class AccessError(NamedTuple):
    """An invalid register access (read as zero / write ignored)."""

    frame: str      # "GITS" or "GICR<cpu>"
    offset: int
    size: int
    write: bool
    value: int      # the value written (0 for reads)
    reason: str

    def __str__(self) -> str:
        what = f"{self.size}-byte write of {self.value:#x}" if self.write else \
            f"{self.size}-byte read"
        return f"{what} at {self.frame} offset {self.offset:#x}: {self.reason}"


def new_log() -> deque:
    """An empty log of the most recent `ACCESS_ERRORS_KEPT` invalid accesses."""
    return deque(maxlen=ACCESS_ERRORS_KEPT)


class AccessLog:
    """Where a register frame reports invalid accesses: a bounded log, or (strict)
    an exception."""

    __slots__ = ("errors", "strict")

    def __init__(self, errors: deque, strict: bool):
        self.errors = errors
        self.strict = bool(strict)

    def report(self, frame: str, offset: int, size: int, write: bool, value: int,
               reason: str) -> None:
        """Record the access, or raise InvalidAccessError in strict mode."""
        error = AccessError(frame, offset, size, write, value, reason)
        if self.strict:
            raise InvalidAccessError(error)
        self.errors.append(error)
