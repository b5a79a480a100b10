"""A small vocabulary of bit fields: every bit position is declared once.

Registers, command doublewords and in-memory table entries are all described
with the same two objects:

`Field`
    A named run of bits inside an integer: ``Field("Size", lsb=0, width=5)``
    or, in the notation of the Arm tables, ``Field.bits("Size", 4, 0)`` for
    ``[4:0]``.  It knows its mask and how to pull a value out of a container
    word (`Field.extract`) or put one in (`Field.deposit`).

`Layout`
    A named set of non-overlapping fields inside a container of fixed width
    (32 or 64 bits for registers, 64 for a command doubleword or a table
    entry).  `Layout.decode` turns a word into a ``{field name: value}`` dict
    and `Layout.encode` builds a word from keyword arguments; bits that no
    field covers form `Layout.reserved_mask`, so a register's RES0 bits follow
    from its field list instead of being written down a second time.

Field names are the Arm mnemonics (``Physical_Address``, ``ITT_entry_size``)
so that the code reads like the architecture tables.  Every value that does
not fit its field is refused with a `ValueError` naming the field: silently
truncating a guest-visible value is exactly the kind of bug these objects
exist to prevent.  Values are checked by `its_core.validation`: plain
non-negative ints, numpy integers and other ``__index__`` types are accepted,
bools and floats are refused (TypeError).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from its_core.validation import as_int, as_uint

__all__ = ["Field", "Layout"]


@dataclass(frozen=True, slots=True)
class Field:
    """A named run of `width` bits starting at bit `lsb`.

    Parameters
    ----------
    name : str
        Arm mnemonic of the field (a Python identifier, e.g. ``"ID_bits"``).
    lsb : int
        Position of the least significant bit (bit 0 is the LSB of the word).
    width : int
        Number of bits, at least 1.

    Examples
    --------
    >>> size = Field.bits("Size", 7, 0)
    >>> size.extract(0x1234)
    52
    >>> hex(size.deposit(0x1200, 0x34))
    '0x1234'
    """

    name: str
    lsb: int
    width: int

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"field name must be an identifier, got {self.name!r}")
        if not isinstance(self.lsb, int) or self.lsb < 0:
            raise ValueError(f"field {self.name}: lsb must be an int >= 0, got {self.lsb!r}")
        if not isinstance(self.width, int) or self.width < 1:
            raise ValueError(f"field {self.name}: width must be an int >= 1, got {self.width!r}")

    @classmethod
    def bits(cls, name: str, hi: int, lo: int | None = None) -> Field:
        """Build a field from an inclusive ``[hi:lo]`` range (``lo`` omitted: one bit).

        Parameters
        ----------
        name : str
            Arm mnemonic of the field.
        hi, lo : int
            Most and least significant bit, inclusive, as in the Arm tables.

        Returns
        -------
        Field
        """
        if lo is None:
            lo = hi
        if hi < lo:
            raise ValueError(f"field {name}: [{hi}:{lo}] has hi < lo")
        return cls(name, lo, hi - lo + 1)

    @property
    def msb(self) -> int:
        """Position of the most significant bit (inclusive)."""
        return self.lsb + self.width - 1

    @property
    def max(self) -> int:
        """Largest value the field can hold, ``2**width - 1``."""
        return (1 << self.width) - 1

    @property
    def mask(self) -> int:
        """The field's bits in place inside the container word."""
        return self.max << self.lsb

    @property
    def span(self) -> str:
        """The bit range in Arm notation, ``"[51:12]"`` or ``"[63]"``."""
        return f"[{self.msb}]" if self.width == 1 else f"[{self.msb}:{self.lsb}]"

    def fits(self, field_value: object) -> bool:
        """True if `field_value` is an integer in ``0 .. max``; never raises."""
        try:
            number = as_int(field_value, self.name, flag=self.width == 1)
        except TypeError:
            return False
        return 0 <= number <= self.max

    def check(self, field_value: object, *, owner: str = "") -> int:
        """Validate a value for this field and return it as an int.

        Parameters
        ----------
        field_value : int
            The value to store in the field.
        owner : str, optional
            Prefix for the error message (e.g. the register or command name).

        Returns
        -------
        int

        Raises
        ------
        TypeError
            `field_value` is not an integer.
        ValueError
            `field_value` is negative or needs more than `width` bits; the
            message names the field.
        """
        label = f"{owner}.{self.name}" if owner else self.name
        number = as_uint(field_value, label, flag=self.width == 1)
        if number > self.max:
            raise ValueError(
                f"{label}: value {number:#x} does not fit the {self.width}-bit field {self.span}"
            )
        return number

    def extract(self, value: int) -> int:
        """Return the field's value inside the container word `value`.

        Parameters
        ----------
        value : int
            The container word (non-negative).

        Returns
        -------
        int
            ``(value >> lsb) & max``.
        """
        return (as_uint(value, f"field {self.name}: container") >> self.lsb) & self.max

    def deposit(self, value: int, field_value: int) -> int:
        """Return `value` with this field replaced by `field_value`.

        Parameters
        ----------
        value : int
            The container word (non-negative); other bits are kept.
        field_value : int
            The new field value; must fit (`ValueError` naming the field).

        Returns
        -------
        int
        """
        container = as_uint(value, f"field {self.name}: container")
        return (container & ~self.mask) | (self.check(field_value) << self.lsb)

    def __repr__(self) -> str:
        return f"Field({self.name!r}, {self.span})"


class Layout:
    """A named set of non-overlapping fields inside a `width`-bit word.

    Parameters
    ----------
    name : str
        Name of the word (``"GITS_CTLR"``, ``"MAPD.DW2"``); used in messages.
    *fields : Field
        The fields, in any order; names must be unique, bits must not overlap
        and must lie below `width`.
    width : int, default 64
        Width of the container word in bits.

    Attributes
    ----------
    name : str
    width : int
    fields : tuple of Field
        In declaration order.
    field_mask : int
        Union of all field masks.
    reserved_mask : int
        Bits of the word covered by no field (RES0 for registers).

    Examples
    --------
    >>> ctlr = Layout("GITS_CTLR", Field.bits("Enabled", 0),
    ...               Field.bits("Quiescent", 31), width=32)
    >>> ctlr.decode(0x80000001)
    {'Enabled': 1, 'Quiescent': 1}
    >>> hex(ctlr.encode(Quiescent=1))
    '0x80000000'
    """

    __slots__ = ("name", "width", "fields", "field_mask", "reserved_mask", "_by_name")

    def __init__(self, name: str, *fields: Field, width: int = 64) -> None:
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"layout {name}: width must be a positive int, got {width!r}")
        by_name: dict[str, Field] = {}
        used = 0
        for field in fields:
            if not isinstance(field, Field):
                raise TypeError(f"layout {name}: expected Field, got {type(field).__name__}")
            if field.name in by_name:
                raise ValueError(f"layout {name}: duplicate field name {field.name!r}")
            if field.msb >= width:
                raise ValueError(
                    f"layout {name}: field {field.name} {field.span} exceeds {width} bits"
                )
            if used & field.mask:
                clash = [f.name for f in by_name.values() if f.mask & field.mask]
                raise ValueError(f"layout {name}: field {field.name} overlaps {', '.join(clash)}")
            by_name[field.name] = field
            used |= field.mask
        self.name = name
        self.width = width
        self.fields: tuple[Field, ...] = tuple(fields)
        self.field_mask = used
        self.reserved_mask = ((1 << width) - 1) & ~used
        self._by_name = by_name

    # -- container protocol --------------------------------------------------

    def __getitem__(self, name: str) -> Field:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{self.name} has no field {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[Field]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def __repr__(self) -> str:
        inner = ", ".join(f"{f.name}{f.span}" for f in sorted(self.fields, key=lambda f: -f.lsb))
        return f"Layout({self.name!r}, width={self.width}: {inner})"

    @property
    def names(self) -> tuple[str, ...]:
        """Field names in declaration order."""
        return tuple(self._by_name)

    @property
    def word_mask(self) -> int:
        """All ones over the container width."""
        return (1 << self.width) - 1

    # -- conversions ---------------------------------------------------------

    def _check_word(self, value: object) -> int:
        word = as_uint(value, f"{self.name}: value")
        if word >> self.width:
            raise ValueError(f"{self.name}: value {word:#x} is wider than {self.width} bits")
        return word

    def decode(self, value: int) -> dict[str, int]:
        """Split a word into its fields.

        Parameters
        ----------
        value : int
            The word; must fit in `width` bits.  Reserved bits are ignored
            (see `reserved_bits` to inspect them).

        Returns
        -------
        dict
            ``{field name: value}`` for every field, in declaration order.
        """
        word = self._check_word(value)
        return {f.name: (word >> f.lsb) & f.max for f in self.fields}

    def encode(self, **field_values: int) -> int:
        """Build a word from field values; fields not given are 0.

        Raises
        ------
        ValueError
            A name is not a field of this layout, or a value does not fit its
            field (the message names the field).
        TypeError
            A value is not an integer.
        """
        return self.update(0, **field_values)

    def update(self, value: int, **field_values: int) -> int:
        """Return `value` with the named fields replaced; other bits are kept.

        Raises
        ------
        ValueError, TypeError
            As for `encode`, or if `value` does not fit in `width` bits.
        """
        word = self._check_word(value)
        for name, field_value in field_values.items():
            field = self._by_name.get(name)
            if field is None:
                raise ValueError(f"{self.name} has no field {name!r}")
            word = (word & ~field.mask) | (field.check(field_value, owner=self.name) << field.lsb)
        return word

    def reserved_bits(self, value: int) -> int:
        """The bits of `value` that lie outside every field."""
        return self._check_word(value) & self.reserved_mask
