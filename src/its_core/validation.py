"""The one check of integers the host program passes in.

Every public entry point that takes an ID, an address, an offset, a size or a
register value converts it here, so they all accept and refuse the same
things:

* accepted: Python ``int`` (and subclasses such as ``IntEnum`` members), numpy
  integer scalars, and any object implementing ``__index__``;
* refused with ``TypeError``: ``bool`` (``True`` as an ID or an address is a
  slip; only one-bit flag fields take it, with ``flag=True``), ``float``
  (``3.7`` must not silently become EventID 3), strings and everything else.

Range errors are ``ValueError`` with the argument's name and the rule it
broke ("must be ≥ 0", "does not fit 32 bits").  Guest-controlled values never
come through here: they are architecture-sized fields and are validated by
the model itself.

The ``gic_version`` keyword (of `ITS`, `Redistributors`, the command
decoder and the reference model) is checked here too: `check_gic_version`.
"""

from __future__ import annotations

import operator

import numpy as np

__all__ = ["as_int", "as_uint", "GIC_VERSIONS", "check_gic_version"]

#: The values of every ``gic_version`` keyword: the GIC architecture version
#: whose ITS and redistributors are modelled ("3": GICv3, the default).
GIC_VERSIONS = ("3", "4.0", "4.1")


def check_gic_version(gic_version: object) -> str:
    """`gic_version` if it is one of `GIC_VERSIONS`; ValueError naming it otherwise."""
    if not isinstance(gic_version, str) or gic_version not in GIC_VERSIONS:
        raise ValueError(f"gic_version must be one of {', '.join(map(repr, GIC_VERSIONS))}, "
                         f"got {gic_version!r}")
    return gic_version


def as_int(value: object, name: str, *, flag: bool = False) -> int:
    """`value` as a Python int, or TypeError naming `name`.

    Parameters
    ----------
    value : object
        An int, a numpy integer or anything with ``__index__``; a bool only
        when `flag` is true.
    name : str
        The argument's name, for the message.
    flag : bool, default False
        `value` is a one-bit flag field, which takes ``True``/``False``.

    Examples
    --------
    >>> import numpy as np
    >>> as_int(np.uint16(7), "event_id")
    7
    >>> as_int(3.7, "event_id")
    Traceback (most recent call last):
    TypeError: event_id must be an integer, got float
    """
    if type(value) is int:
        return value
    if isinstance(value, (bool, np.bool_)):
        if flag:
            return int(value)
        raise TypeError(f"{name} must be an integer, got bool")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None


def as_uint(value: object, name: str, bits: int | None = None, *, flag: bool = False) -> int:
    """`value` as a non-negative int (of at most `bits` bits, if given).

    Raises
    ------
    TypeError
        `value` is not an integer (see `as_int`).
    ValueError
        ``"{name} must be ≥ 0, got -4"`` or ``"{name} 0x1_0000_0000 does not
        fit 32 bits"``.

    Examples
    --------
    >>> as_uint(-4, "offset")
    Traceback (most recent call last):
    ValueError: offset must be ≥ 0, got -4
    >>> as_uint(1 << 32, "device_id", 32)
    Traceback (most recent call last):
    ValueError: device_id 0x100000000 does not fit 32 bits
    """
    number = as_int(value, name, flag=flag)
    if number < 0:
        raise ValueError(f"{name} must be ≥ 0, got {number}")
    if bits is not None and number >> bits:
        raise ValueError(f"{name} {number:#x} does not fit {bits} bits")
    return number
