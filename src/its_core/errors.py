"""Exception hierarchy of its_core.

Every error the library raises for a host-side mistake derives from
`ITSError`.  Guest mistakes (bad commands, bad register writes) are not
exceptions: they are recorded and the guest-visible outcome is modelled.
"""

from __future__ import annotations


class ITSError(Exception):
    """Base class of every its_core error."""


class TranslationError(ITSError, LookupError):
    """An MSI (DeviceID, EventID) did not translate.

    Attributes
    ----------
    status : TranslationStatus
        Why the translation failed.
    device_id, event_id : int
        The pair that was translated.
    """

    def __init__(self, status, device_id: int, event_id: int):
        self.status = status
        self.device_id = device_id
        self.event_id = event_id
        super().__init__(f"DeviceID {device_id} EventID {event_id}: {status.name}")

    def __reduce__(self):
        return (type(self), (self.status, self.device_id, self.event_id))


class MappingError(ITSError, ValueError):
    """A table operation was refused; nothing was changed.

    Attributes
    ----------
    reason : MappingFailure
        Which check failed.
    operation : str
        The operation that was refused (``"map_event"``, ...).
    """

    def __init__(self, message: str, *, reason=None, operation: str = ""):
        self.reason = reason
        self.operation = operation
        super().__init__(message)


class _TableError(ITSError):
    """An error about one entry of a saved table.

    Attributes
    ----------
    table : str
        ``"device"``, ``"level1"``, ``"itt"``, ``"collection"``, ``"pending"``,
        ``"registers"``, or ``"snapshot"`` (a host snapshot: `ITS.from_snapshot`,
        `its_core.snapshot.load`).
    id : object
        DeviceID, (DeviceID, EventID), ICID, table position, CPU number (table
        ``"pending"``, printed in decimal; the others print in hex), register
        name, or None.
    field : str
        The entry field (or register; for a snapshot, its key) at fault.
    reason : str
        What is wrong with it.
    """

    def __init__(self, table: str = "", id=None, field: str = "", reason: str = ""):
        self.table = table
        self.id = id
        self.field = field
        self.reason = reason
        where = f"{table} table" if table not in ("registers", "snapshot") else table
        if id is None:
            ident = ""
        elif table == "pending":            # the id is a CPU number: decimal, like everywhere
            ident = f" of CPU {id}"
        elif isinstance(id, int):           # DeviceID, ICID, table position
            ident = f" {id:#x}"
        else:
            ident = f" {id!r}"
        super().__init__(f"{where}{ident}: {field}: {reason}")

    def __reduce__(self):
        return (type(self), (self.table, self.id, self.field, self.reason))


class SaveError(_TableError):
    """The state cannot be saved into the guest's tables; nothing was written."""


class RestoreError(_TableError):
    """A saved image is invalid; the ITS is exactly as it was before the restore."""


class InvalidAccessError(ITSError, ValueError):
    """A register access that hits no register (a hole, a wrong size, a
    misaligned access), raised instead of being read as zero / ignored
    because the ITS was built with ``strict=True``.

    Attributes
    ----------
    access : AccessError
        What was accessed: frame, offset, size, write, value, reason.
    """

    def __init__(self, access):
        self.access = access
        super().__init__(f"strict mode: {access}")

    def __reduce__(self):
        return (type(self), (self.access,))
