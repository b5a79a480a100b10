"""The ITS and redistributor LPI register maps, declared once as data.

How a register is described
---------------------------
Each `Register` states its Arm mnemonic, offset, width (32 or 64 bits), the
access sizes a guest may use, its reset value and two masks, plus a `Layout`
naming its fields (see `its_core.frontend.fields`):

* ``res0`` -- reserved bits.  They are exactly the bits no field covers, so
  they follow from the layout instead of being a second list to keep in step.
  A field the architecture defines but this GICv3, physical-LPI-only model
  does not implement (GICv4 and UMSI bits of GITS_CTLR, for instance) is left
  out of the layout and is therefore RES0 here.
* ``read_only`` -- bits a guest write cannot change (GITS_CTLR.Quiescent,
  BASER Type/Entry_Size, every bit of an RO register).

One generic write path, `Register.merge_write`, keeps read-only and RES0 bits
and takes the rest from the written value; anything smarter (KVM's
sanitising of cacheability, CWRITER.Retry, processing the queue) belongs to
small per-register hooks in the device model, not here.

Reset values are built from named fields (``GITS_TYPER.layout.encode(...)``),
never written as bare hex.  They are the values KVM's emulated ITS reports,
since this project saves and restores tables in KVM's revision-0 ABI.

Partial accesses
----------------
The 64-bit registers (TYPER, CBASER, CWRITER, CREADR, BASER<n>, and GICR
TYPER/PROPBASER/PENDBASER) may be accessed whole or as two independent 32-bit
halves; the 32-bit registers (CTLR, IIDR, PIDR/CIDR, GICR_CTLR) only whole.
GITS_TRANSLATER takes 32-bit writes and 16-bit writes to its low half (zero-
extended by the caller).  `lookup` resolves an (offset, size) pair to
``(register, half)`` -- half 0/1 for a 32-bit access to the low/high word of a
64-bit register, None for a whole access -- and returns None for holes, wrong
sizes and misaligned accesses, which the device treats as RAZ/WI.
`merge_half` and `read_half` do the 32-bit half arithmetic.

Offsets of the ITS map are from ITS_base: the control frame at 0x0_0000 and
GITS_TRANSLATER in the translation frame at 0x1_0040.  Offsets of the GICR
map are from the redistributor's RD_base frame.

GICv4
-----
The GICv4.0 and GICv4.1 registers are declared here and modelled by an ITS
or redistributors built with ``gic_version`` "4.0" / "4.1"
(`its_register_map`, `gicr_register_map`); `ITS_REGISTERS`,
`GICR_REGISTERS`, `lookup` and `lookup_gicr` are the GICv3 maps, and a GICv3
ITS or redistributor reads and writes exactly as before.  A GICv4.1
redistributor decodes GICR_INVLPIR / GICR_INVALLR in their GICv4.1 layout
(V, vPEID); a GICv4.0 one keeps the GICv3 layout (V and vPEID RES0).

* Fields of registers the GICv3 maps already hold (GITS_TYPER.Virtual,
  VMOVP, VSGI, VMAPP, SVPET, nID; GICR_TYPER.VLPIS, Dirty, RVPEID, VSGI) are
  in those layouts -- the registers are read-only and this model reports them
  as 0 -- and `GICV4_FIELDS` names them.
* Registers a GICv4 ITS or redistributor has in addition, or with another
  layout, are in `GICV4_ITS_REGISTERS` and `GICV4_GICR_REGISTERS`, one map
  per GIC version (``"4.0"``, ``"4.1"``): GITS_BASER2 describing the vPE
  table (Type `BaserType.VPES`), GITS_SGIR in the third ITS frame
  (`SGIR_FRAME`), the VLPI frame of each redistributor (`VLPI_FRAME`:
  GICR_VPROPBASER and GICR_VPENDBASER in their v4.0 and v4.1 layouts,
  GICR_VSGIR, GICR_VSGIPENDR) and the GICv4.1 layouts of GICR_INVLPIR and
  GICR_INVALLR (V and vPEID).  Offsets are from ITS_base and RD_base, as in
  the GICv3 maps.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

from its_core.frontend.fields import Field, Layout
from its_core.validation import as_int, as_uint, check_gic_version

__all__ = [
    "Register", "RegisterAccess", "RegisterMap", "UnknownRegister",
    "ITS_REGISTERS", "GICR_REGISTERS",
    "lookup", "lookup_gicr", "merge_half", "read_half",
    "Cacheability", "Shareability", "BaserType", "PageSize",
    "baser_page_size", "baser_address", "baser_table_bytes", "baser_entry_bytes",
    "cbaser_address", "cbaser_queue_bytes", "gicr_typer_value",
    "TRANSLATION_FRAME", "CBASER_PAGE_BYTES",
    "SGIR_FRAME", "VLPI_FRAME", "GICV4_FIELDS", "GICV4_ITS_REGISTERS", "GICV4_GICR_REGISTERS",
    "GITS_BASER2_VPES", "GITS_BASER2_VPES_V41", "GITS_SGIR",
    "GICR_VPROPBASER_V40", "GICR_VPENDBASER_V40", "GICR_VPROPBASER_V41",
    "GICR_VPENDBASER_V41", "GICR_VSGIR", "GICR_VSGIPENDR", "GICR_INVLPIR_V41",
    "GICR_INVALLR_V41", "GITS_PIDR2_V4", "GICR_PIDR2_V4", "its_register_map",
    "gicr_register_map",
]

_BIT = Field.bits

#: Offset of the translation frame (GITS_TRANSLATER's 64 KiB page) from ITS_base.
TRANSLATION_FRAME = 0x1_0000

#: Offset of the GICv4.1 vSGI frame (GITS_SGIR's 64 KiB page) from ITS_base.
SGIR_FRAME = 0x2_0000

#: Offset of a GICv4 redistributor's VLPI frame (VLPI_base) from its RD_base.
VLPI_FRAME = 0x2_0000

#: CBASER.Size counts pages of this many bytes.
CBASER_PAGE_BYTES = 4096

_U32 = (1 << 32) - 1
_U64 = (1 << 64) - 1


# -- codes shared by several registers -------------------------------------------

class Cacheability(IntEnum):
    """InnerCache / OuterCache codes of CBASER, BASER<n>, PROPBASER, PENDBASER.

    Code 0 means Device-nGnRnE for InnerCache and "same as inner" for
    OuterCache.
    """

    DEVICE_nGnRnE = 0
    SAME_AS_INNER = 0
    NORMAL_NON_CACHEABLE = 1
    RaWt = 2
    RaWb = 3
    WaWt = 4
    WaWb = 5
    RaWaWt = 6
    RaWaWb = 7


class Shareability(IntEnum):
    """Shareability codes."""

    NON_SHAREABLE = 0
    INNER_SHAREABLE = 1
    OUTER_SHAREABLE = 2


class BaserType(IntEnum):
    """GITS_BASER<n>.Type: which table the register describes (3, 5-7 reserved).

    VPES (2) is the GICv4 vPE table: GITS_BASER2 of a GICv4 ITS.
    """

    UNIMPLEMENTED = 0
    DEVICES = 1
    VPES = 2
    COLLECTIONS = 4


class PageSize(IntEnum):
    """GITS_BASER<n>.Page_Size codes (3 is reserved)."""

    SIZE_4K = 0
    SIZE_16K = 1
    SIZE_64K = 2


# -- the register object ---------------------------------------------------------

@dataclass(frozen=True)
class Register:
    """One memory-mapped register.

    Attributes
    ----------
    name : str
        Arm mnemonic (``"GITS_CBASER"``).
    offset : int
        Byte offset within its map (from ITS_base or RD_base).
    width : int
        32 or 64 (bits).
    access : str
        ``"RW"``, ``"RO"`` or ``"WO"`` as seen by a guest.
    layout : Layout
        The fields; bits outside them are RES0.
    reset : int
        Reset value.
    read_only : int
        Mask of bits guest writes do not change.
    sizes : frozenset of int
        Allowed guest access sizes in bytes.
    description : str
        One line on behaviour the masks do not capture.
    """

    name: str
    offset: int
    width: int
    access: str
    layout: Layout
    reset: int
    read_only: int
    sizes: frozenset[int]
    description: str = ""

    def __post_init__(self) -> None:
        if self.width not in (32, 64) or self.layout.width != self.width:
            raise ValueError(f"{self.name}: width {self.width} / layout {self.layout.width}")
        if self.offset % 4:
            raise ValueError(f"{self.name}: offset {self.offset:#x} not word aligned")
        if self.access not in ("RW", "RO", "WO"):
            raise ValueError(f"{self.name}: bad access {self.access!r}")
        if not self.sizes or not self.sizes <= {1, 2, 4, 8} or max(self.sizes) > self.nbytes:
            raise ValueError(f"{self.name}: bad access sizes {sorted(self.sizes)}")
        if not 0 <= self.reset <= self.mask or self.reset & self.res0:
            raise ValueError(f"{self.name}: reset {self.reset:#x} sets reserved bits")
        if not 0 <= self.read_only <= self.mask:
            raise ValueError(f"{self.name}: read-only mask wider than the register")

    @property
    def nbytes(self) -> int:
        """Width in bytes."""
        return self.width // 8

    @property
    def mask(self) -> int:
        """All ones over the register width."""
        return (1 << self.width) - 1

    @property
    def res0(self) -> int:
        """Reserved (RES0) bits: those no field of the layout covers."""
        return self.layout.reserved_mask

    @property
    def write_mask(self) -> int:
        """Bits a guest write replaces: not read-only, not reserved."""
        return self.mask & ~self.read_only & ~self.res0

    def field(self, name: str) -> Field:
        """The field called `name` (KeyError if absent)."""
        return self.layout[name]

    def decode(self, value: int) -> dict[str, int]:
        """Split a register value into its fields (see `Layout.decode`)."""
        return self.layout.decode(value)

    def encode(self, *, address: int | None = None, **fields: int) -> int:
        """Build a register value from fields (see `Layout.encode`).

        Parameters
        ----------
        address : int, optional
            For a register that points at guest memory (CBASER, BASER<n>,
            PROPBASER, PENDBASER): the **byte address** of the queue or table.
            It is checked (alignment, range) and placed as the architecture
            says, so nobody has to remember that ``Physical_Address`` holds
            the address shifted right (or, for a BASER with 64 KiB pages,
            that PA[51:48] goes to bits [15:12]).  Not with
            ``Physical_Address=``.
        **fields : int
            Field values by name; fields not given are 0.

        Raises
        ------
        ValueError
            A value does not fit its field, the address is misaligned or too
            wide (the message names the register), or both `address` and
            ``Physical_Address`` were given.

        Examples
        --------
        >>> hex(GITS_CBASER.encode(address=0x4001_0000, Size=0, Valid=1))
        '0x8000000040010000'
        """
        if address is None:
            return self.layout.encode(**fields)
        if "Physical_Address" in fields:
            raise ValueError(f"{self.name}: give address= or Physical_Address=, not both")
        value = self.layout.encode(**fields)
        return value | self.address_bits(address, page_size=fields.get("Page_Size", 0))

    def address_bits(self, address: int, *, page_size: int = 0) -> int:
        """The bits that encode byte address `address` in this register.

        `page_size` is the BASER Page_Size code (`PageSize`), which sets a
        BASER's alignment and encoding; other registers ignore it.
        """
        if "Physical_Address" not in self.layout:
            raise ValueError(f"{self.name} holds no address")
        address = as_uint(address, f"{self.name} address")
        field = self.layout["Physical_Address"]
        alignment, limit = 1 << field.lsb, 1 << (field.msb + 1)
        packed_high = False
        if self.layout is GITS_BASER_LAYOUT:
            alignment = _PAGE_BYTES.get(page_size, 64 << 10)
            packed_high = alignment == 64 << 10
            if packed_high:
                limit = 1 << 52                      # PA[51:48] in bits [15:12]
        if address % alignment:
            raise ValueError(f"{self.name}: address {address:#x} is not aligned to "
                             f"{alignment:#x} bytes")
        if address >= limit:
            raise ValueError(f"{self.name}: address {address:#x} does not fit "
                             f"{limit.bit_length() - 1} bits")
        if packed_high:
            return (address & field.mask) | ((address >> 48) << 12)
        return address

    def merge_write(self, old: int, value: int) -> int:
        """The generic write path: the new value after a guest writes `value`.

        Read-only and RES0 bits keep their `old` value (RES0 bits of a valid
        register value are always 0); all other bits come from `value`.

        Parameters
        ----------
        old, value : int
            Full-width register values.

        Returns
        -------
        int
        """
        old = as_uint(old, f"{self.name}: old value", self.width)
        value = as_uint(value, f"{self.name}: value", self.width)
        keep = self.mask & ~self.write_mask
        return (old & keep) | (value & self.write_mask)

    def __repr__(self) -> str:
        return f"<Register {self.name} @{self.offset:#x} {self.width}-bit {self.access}>"


class RegisterAccess(NamedTuple):
    """Result of `lookup`: the register hit and which part of it.

    Attributes
    ----------
    register : Register
    half : int or None
        0 or 1 for a 32-bit access to the low or high word of a 64-bit
        register; None for an access to the whole register.
    """

    register: Register
    half: int | None


class UnknownRegister(KeyError):
    """A register name that is not in a `RegisterMap`; the message lists the
    valid names."""

    def __init__(self, register_map: "RegisterMap", name: object):
        self.name = name
        super().__init__(f"{register_map.name} has no register {name!r}; valid names: "
                         f"{', '.join(register_map.names)}")

    def __str__(self) -> str:
        return str(self.args[0])


class RegisterMap:
    """An ordered, read-only collection of registers with an (offset, size) decoder.

    Parameters
    ----------
    name : str
        Name used in messages (``"GITS"``).
    registers : iterable of Register
        Must have unique names and must not overlap.
    """

    def __init__(self, name: str, registers: Iterable[Register]) -> None:
        self.name = name
        self._regs = tuple(registers)
        self._by_name: dict[str, Register] = {}
        self._by_word: dict[int, Register] = {}
        for reg in self._regs:
            if reg.name in self._by_name:
                raise ValueError(f"{name}: duplicate register {reg.name}")
            for word in range(reg.offset, reg.offset + reg.nbytes, 4):
                if word in self._by_word:
                    raise ValueError(f"{name}: {reg.name} overlaps {self._by_word[word].name}")
                self._by_word[word] = reg
            self._by_name[reg.name] = reg

    def __getitem__(self, name: str) -> Register:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownRegister(self, name) from None

    def find(self, name: str) -> Register:
        """The register called `name`, in any case (``"gits_ctlr"``).

        Raises
        ------
        KeyError
            No such register; the message lists the valid names.
        """
        if not isinstance(name, str):
            raise TypeError(f"a register name is a string, got {type(name).__name__}")
        register = self._by_name.get(name) or self._by_name.get(name.upper())
        if register is None:
            raise UnknownRegister(self, name)
        return register

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[Register]:
        return iter(self._regs)

    def __len__(self) -> int:
        return len(self._regs)

    def __repr__(self) -> str:
        return f"<RegisterMap {self.name}: {len(self._regs)} registers>"

    @property
    def names(self) -> tuple[str, ...]:
        """Register names in declaration order."""
        return tuple(self._by_name)

    def reset_values(self) -> dict[str, int]:
        """``{name: reset value}`` for every register."""
        return {reg.name: reg.reset for reg in self._regs}

    def accesses(self) -> dict[tuple[int, int], RegisterAccess]:
        """Every valid guest access, ``{(offset, size): RegisterAccess}``: `lookup`
        run once over each register's offsets and sizes, so that a device
        model can decode an access with one dictionary look-up."""
        return {(offset, size): access
                for register in self._regs
                for size in register.sizes
                for offset in range(register.offset, register.offset + register.nbytes, size)
                if (access := self.lookup(offset, size)) is not None}

    def at(self, offset: int) -> Register | None:
        """The register starting exactly at `offset`, or None."""
        reg = self._by_word.get(offset)
        return reg if reg is not None and reg.offset == offset else None

    def lookup(self, offset: int, size: int) -> RegisterAccess | None:
        """Resolve a guest access of `size` bytes at `offset`.

        Parameters
        ----------
        offset : int
            Byte offset within the map.
        size : int
            Access size in bytes (1, 2, 4 or 8).

        Returns
        -------
        RegisterAccess or None
            None for a hole, a size the register does not allow, a misaligned
            access, or one that is not exactly the whole register or one
            32-bit half of a 64-bit register (or the low 16 bits of a register
            allowing 2-byte access).  The caller treats None as RAZ/WI.
        """
        offset = as_int(offset, "offset")
        size = as_int(size, "size")
        if size <= 0 or offset < 0 or offset % size:
            return None
        reg = self._by_word.get(offset & ~3)
        if reg is None or size not in reg.sizes:
            return None
        rel = offset - reg.offset
        if size == reg.nbytes:
            return RegisterAccess(reg, None) if rel == 0 else None
        if size == 4:                      # reg is 64-bit here: one 32-bit half
            return RegisterAccess(reg, rel // 4)
        return RegisterAccess(reg, None) if rel == 0 else None


def merge_half(old64: int, half: int, value32: int) -> int:
    """Replace one 32-bit half of a 64-bit value.

    Parameters
    ----------
    old64 : int
        Current 64-bit value.
    half : int
        0 for bits [31:0], 1 for bits [63:32].
    value32 : int
        The 32-bit value written.

    Returns
    -------
    int
        The merged 64-bit value.
    """
    old64 = as_uint(old64, "old64", 64)
    value32 = as_uint(value32, "value32", 32)
    if half not in (0, 1):
        raise ValueError(f"half must be 0 or 1, got {half!r}")
    shift = 32 * half
    return (old64 & ~(_U32 << shift)) | (value32 << shift)


def read_half(value64: int, half: int) -> int:
    """Bits [31:0] (`half` 0) or [63:32] (`half` 1) of a 64-bit value."""
    value64 = as_uint(value64, "value64", 64)
    if half not in (0, 1):
        raise ValueError(f"half must be 0 or 1, got {half!r}")
    return (value64 >> (32 * half)) & _U32


# -- field layouts -------------------------------------------------------------------

GITS_CTLR_LAYOUT = Layout(
    "GITS_CTLR",
    _BIT("Enabled", 0),
    # [1] ImDe, [7:4] ITS_Number (GICv4) and [8] UMSIirq (UMSI) are not
    # implemented by this GICv3 model and are RES0 here.
    _BIT("Quiescent", 31),
    width=32,
)

GITS_IIDR_LAYOUT = Layout(
    "GITS_IIDR",
    _BIT("Implementer", 11, 0),
    _BIT("Revision", 15, 12),
    _BIT("Variant", 19, 16),
    _BIT("ProductID", 31, 24),
    width=32,
)

GITS_TYPER_LAYOUT = Layout(
    "GITS_TYPER",
    _BIT("Physical", 0),
    _BIT("Virtual", 1),
    _BIT("CCT", 2),
    # IMPDEF choice: bit 3 is IMPLEMENTATION DEFINED; this model gives it no
    # meaning, so it reads as 0 (reserved).
    _BIT("ITT_entry_size", 7, 4),
    _BIT("ID_bits", 12, 8),
    _BIT("Devbits", 17, 13),
    _BIT("SEIS", 18),
    _BIT("PTA", 19),
    _BIT("HCC", 31, 24),
    _BIT("CIDbits", 35, 32),
    _BIT("CIL", 36),
    _BIT("VMOVP", 37),
    _BIT("MPAM", 38),
    _BIT("VSGI", 39),
    _BIT("VMAPP", 40),
    _BIT("SVPET", 42, 41),
    _BIT("nID", 43),
    _BIT("UMSI", 44),
    _BIT("UMSIirq", 45),
    _BIT("INV", 46),
    width=64,
)

GITS_CBASER_LAYOUT = Layout(
    "GITS_CBASER",
    _BIT("Size", 7, 0),
    _BIT("Shareability", 11, 10),
    _BIT("Physical_Address", 51, 12),
    _BIT("OuterCache", 55, 53),
    _BIT("InnerCache", 61, 59),
    _BIT("Valid", 63),
    width=64,
)

GITS_CWRITER_LAYOUT = Layout(
    "GITS_CWRITER",
    _BIT("Retry", 0),
    _BIT("Offset", 19, 5),
    width=64,
)

GITS_CREADR_LAYOUT = Layout(
    "GITS_CREADR",
    _BIT("Stalled", 0),
    _BIT("Offset", 19, 5),
    width=64,
)

GITS_BASER_LAYOUT = Layout(
    "GITS_BASER",
    _BIT("Size", 7, 0),
    _BIT("Page_Size", 9, 8),
    _BIT("Shareability", 11, 10),
    _BIT("Physical_Address", 47, 12),
    _BIT("Entry_Size", 52, 48),
    _BIT("OuterCache", 55, 53),
    _BIT("Type", 58, 56),
    _BIT("InnerCache", 61, 59),
    _BIT("Indirect", 62),
    _BIT("Valid", 63),
    width=64,
)

#: PIDR/CIDR hold one identification byte in [7:0]; [31:8] are RES0.
ID_REG_LAYOUT = Layout("GITS_ID", _BIT("ID", 7, 0), width=32)

#: GITS_PIDR2 separates the architecture revision (3 = GICv3, 4 = GICv4).
GITS_PIDR2_LAYOUT = Layout(
    "GITS_PIDR2",
    # [3:0]: JEDEC / designer identification bits; not interpreted here.
    _BIT("IDlow", 3, 0),
    _BIT("ArchRev", 7, 4),
    width=32,
)

GITS_TRANSLATER_LAYOUT = Layout("GITS_TRANSLATER", _BIT("EventID", 31, 0), width=32)

GICR_CTLR_LAYOUT = Layout(
    "GICR_CTLR",
    _BIT("EnableLPIs", 0),
    # [1] CES and [26:24] DPG* are not modelled by this LPI-only map (RES0 here).
    _BIT("RWP", 3),
    _BIT("UWP", 31),
    width=32,
)

GICR_TYPER_LAYOUT = Layout(
    "GICR_TYPER",
    _BIT("PLPIS", 0),
    _BIT("VLPIS", 1),
    _BIT("Dirty", 2),
    _BIT("DirectLPI", 3),
    _BIT("Last", 4),
    _BIT("DPGS", 5),
    _BIT("RVPEID", 7),
    _BIT("Processor_Number", 23, 8),
    _BIT("CommonLPIAff", 25, 24),
    _BIT("VSGI", 26),
    _BIT("Affinity", 63, 32),
    width=64,
)

GICR_PROPBASER_LAYOUT = Layout(
    "GICR_PROPBASER",
    _BIT("IDbits", 4, 0),
    _BIT("InnerCache", 9, 7),
    _BIT("Shareability", 11, 10),
    _BIT("Physical_Address", 51, 12),
    _BIT("OuterCache", 58, 56),
    width=64,
)

GICR_PENDBASER_LAYOUT = Layout(
    "GICR_PENDBASER",
    _BIT("InnerCache", 9, 7),
    _BIT("Shareability", 11, 10),
    _BIT("Physical_Address", 51, 16),
    _BIT("OuterCache", 58, 56),
    _BIT("PTZ", 62),
    width=64,
)

#: GICR_SETLPIR / GICR_CLRLPIR: the physical INTID to make pending / clear.
GICR_LPIR_LAYOUT = Layout("GICR_LPIR", _BIT("pINTID", 31, 0), width=64)

#: GICR_INVLPIR: the physical INTID whose configuration byte to reload.  The
#: GICv4.1 fields (V [63], vPEID [47:32]) are RES0 in this (GICv3 / GICv4.0)
#: layout; a GICv4.1 redistributor uses `GICR_INVLPIR_V41_LAYOUT`.
GICR_INVLPIR_LAYOUT = Layout("GICR_INVLPIR", _BIT("INTID", 31, 0), width=64)

#: GICR_INVALLR: reload every configuration byte.  Its GICv4.1 fields (V,
#: vPEID) are RES0 in this layout, so every bit is; a GICv4.1 redistributor
#: uses `GICR_INVALLR_V41_LAYOUT`.
GICR_INVALLR_LAYOUT = Layout("GICR_INVALLR", width=64)

GICR_SYNCR_LAYOUT = Layout("GICR_SYNCR", _BIT("Busy", 0), width=32)

# GICv4 layouts (gicv4-digest 5.1, 5.2, 6).

#: GITS_SGIR (GICv4.1): make vSGI vINTID pending for vPE vPEID.
GITS_SGIR_LAYOUT = Layout(
    "GITS_SGIR",
    _BIT("vINTID", 3, 0),
    _BIT("vPEID", 47, 32),
    width=64,
)

#: GICR_VPROPBASER, GICv4.0: the resident vPE's vLPI configuration table, in
#: GICR_PROPBASER's format.
GICR_VPROPBASER_V40_LAYOUT = Layout("GICR_VPROPBASER", *GICR_PROPBASER_LAYOUT.fields, width=64)

#: GICR_VPROPBASER, GICv4.1: a BASER-like descriptor of the vPE Configuration
#: table the redistributors share with the ITSs.
GICR_VPROPBASER_V41_LAYOUT = Layout(
    "GICR_VPROPBASER",
    _BIT("Size", 6, 0),
    _BIT("InnerCache", 9, 7),
    _BIT("Shareability", 11, 10),
    _BIT("Physical_Address", 51, 12),
    _BIT("Z", 52),
    _BIT("Page_Size", 54, 53),
    _BIT("Indirect", 55),
    _BIT("OuterCache", 58, 56),
    _BIT("Entry_Size", 61, 59),
    _BIT("Valid", 63),
    width=64,
)

#: GICR_VPENDBASER, GICv4.0: the resident vPE's virtual pending table.
GICR_VPENDBASER_V40_LAYOUT = Layout(
    "GICR_VPENDBASER",
    _BIT("InnerCache", 9, 7),
    _BIT("Shareability", 11, 10),
    _BIT("Physical_Address", 51, 16),
    _BIT("OuterCache", 58, 56),
    _BIT("Dirty", 60),
    _BIT("PendingLast", 61),
    _BIT("IDAI", 62),
    _BIT("Valid", 63),
    width=64,
)

#: GICR_VPENDBASER, GICv4.1 (GICR_TYPER.RVPEID = 1): the resident vPE by vPEID.
GICR_VPENDBASER_V41_LAYOUT = Layout(
    "GICR_VPENDBASER",
    _BIT("vPEID", 15, 0),
    _BIT("vGrp1En", 58),
    _BIT("vGrp0En", 59),
    _BIT("Dirty", 60),
    _BIT("PendingLast", 61),
    _BIT("Doorbell", 62),
    _BIT("Valid", 63),
    width=64,
)

def fields_mask(layout: Layout, *names: str) -> int:
    """OR of the masks of the named fields of `layout`."""
    mask = 0
    for name in names:
        mask |= layout[name].mask
    return mask


#: The GICR_VPENDBASER bits a write keeps, per layout (Dirty and RES0 read 0):
#: gicv4-digest 5.4 step 1.
GICR_VPENDBASER_V40_KEPT = fields_mask(
    GICR_VPENDBASER_V40_LAYOUT, "InnerCache", "Shareability", "Physical_Address", "OuterCache",
    "PendingLast", "IDAI", "Valid")
GICR_VPENDBASER_V41_KEPT = fields_mask(
    GICR_VPENDBASER_V41_LAYOUT, "vPEID", "vGrp1En", "vGrp0En", "PendingLast", "Doorbell",
    "Valid")
#: The GICR_VPROPBASER (GICv4.1) bits a write keeps: all but the read-only Entry_Size.
GICR_VPROPBASER_V41_KEPT = fields_mask(
    GICR_VPROPBASER_V41_LAYOUT,
    *(name for name in GICR_VPROPBASER_V41_LAYOUT.names if name != "Entry_Size"))

#: GICR_VSGIR (GICv4.1): writing a vPEID starts a vSGI pending-state query.
GICR_VSGIR_LAYOUT = Layout("GICR_VSGIR", _BIT("vPEID", 15, 0), width=32)

#: GICR_VSGIPENDR (GICv4.1): the answer, one Pending bit per vSGI once Busy is 0.
GICR_VSGIPENDR_LAYOUT = Layout(
    "GICR_VSGIPENDR",
    _BIT("Pending", 15, 0),
    _BIT("Busy", 31),
    width=32,
)

#: GICR_INVLPIR, GICv4.1: V = 1 reloads vINTID INTID of vPE vPEID.
GICR_INVLPIR_V41_LAYOUT = Layout(
    "GICR_INVLPIR",
    _BIT("INTID", 31, 0),
    _BIT("vPEID", 47, 32),
    _BIT("V", 63),
    width=64,
)

#: GICR_INVALLR, GICv4.1: V = 1 reloads every vLPI configuration of vPE vPEID.
GICR_INVALLR_V41_LAYOUT = Layout(
    "GICR_INVALLR",
    _BIT("vPEID", 47, 32),
    _BIT("V", 63),
    width=64,
)


# -- register declarations -------------------------------------------------------------

_SIZES_32 = frozenset({4})
_SIZES_64 = frozenset({4, 8})     # whole, or either 32-bit half


def _ro(layout: Layout, *names: str) -> int:
    """Mask of the named fields (the read-only part of an RW register)."""
    mask = 0
    for name in names:
        mask |= layout[name].mask
    return mask


def _rw32(name: str, offset: int, layout: Layout, reset: int, read_only: int = 0,
          description: str = "") -> Register:
    return Register(name, offset, 32, "RW", layout, reset, read_only, _SIZES_32, description)


def _ro32(name: str, offset: int, layout: Layout, reset: int, description: str = "") -> Register:
    return Register(name, offset, 32, "RO", layout, reset, _U32, _SIZES_32, description)


def _rw64(name: str, offset: int, layout: Layout, reset: int, read_only: int = 0,
          description: str = "") -> Register:
    return Register(name, offset, 64, "RW", layout, reset, read_only, _SIZES_64, description)


def _ro64(name: str, offset: int, layout: Layout, reset: int, description: str = "") -> Register:
    return Register(name, offset, 64, "RO", layout, reset, _U64, _SIZES_64, description)


#: KVM's identity: Arm implementer code, product 'K'.
IMPLEMENTER_ARM = 0x43B
PRODUCT_ID_KVM = 0x4B

# Table attributes KVM resets BASER0/1 to (and sanitises guest values towards).
_TABLE_ATTRS = dict(
    InnerCache=Cacheability.RaWb,
    OuterCache=Cacheability.SAME_AS_INNER,
    Shareability=Shareability.INNER_SHAREABLE,
)
_KVM_ENTRY_SIZE = 8                      # bytes per DTE / CTE in KVM's ABI


def _baser(n: int, table: BaserType,
           description: str = "writes ignored while GITS_CTLR.Enabled") -> Register:
    """GITS_BASER<n>; Type and Entry_Size are read-only; Type 0 means RAZ/WI."""
    name = f"GITS_BASER{n}"
    offset = 0x0100 + 8 * n
    if table == BaserType.UNIMPLEMENTED:
        return Register(name, offset, 64, "RW", GITS_BASER_LAYOUT, 0, _U64, _SIZES_64,
                        "unimplemented table: RAZ/WI")
    reset = GITS_BASER_LAYOUT.encode(
        Type=table, Entry_Size=_KVM_ENTRY_SIZE - 1, Page_Size=PageSize.SIZE_64K, **_TABLE_ATTRS)
    return _rw64(name, offset, GITS_BASER_LAYOUT, reset,
                 read_only=_ro(GITS_BASER_LAYOUT, "Type", "Entry_Size"),
                 description=description)


def _idreg(name: str, offset: int, value: int, layout: Layout = ID_REG_LAYOUT) -> Register:
    fields = {"ID": value} if layout is ID_REG_LAYOUT else {
        "ArchRev": value >> 4, "IDlow": value & 0xF}
    return _ro32(name, offset, layout, layout.encode(**fields), "identification")


GITS_CTLR = _rw32(
    "GITS_CTLR", 0x0000, GITS_CTLR_LAYOUT,
    GITS_CTLR_LAYOUT.encode(Quiescent=1),
    read_only=_ro(GITS_CTLR_LAYOUT, "Quiescent"),
    description="Enabled starts/stops translation and command processing")
GITS_IIDR = _ro32(
    "GITS_IIDR", 0x0004, GITS_IIDR_LAYOUT,
    GITS_IIDR_LAYOUT.encode(ProductID=PRODUCT_ID_KVM, Implementer=IMPLEMENTER_ARM),
    "Revision selects the table save/restore ABI (0)")
GITS_TYPER = _ro64(
    "GITS_TYPER", 0x0008, GITS_TYPER_LAYOUT,
    GITS_TYPER_LAYOUT.encode(Physical=1, ITT_entry_size=8 - 1, ID_bits=16 - 1, Devbits=16 - 1),
    "capabilities; KVM's values (8-byte ITEs, 16 EventID and DeviceID bits, PTA=0)")
GITS_CBASER = _rw64(
    "GITS_CBASER", 0x0080, GITS_CBASER_LAYOUT, 0,
    description="writes ignored while Enabled; a write resets CREADR and CWRITER (KVM)")
GITS_CWRITER = _rw64(
    "GITS_CWRITER", 0x0088, GITS_CWRITER_LAYOUT, 0,
    description="Retry is write-1-to-restart and reads as 0; offsets past the queue ignored")
GITS_CREADR = _ro64(
    "GITS_CREADR", 0x0090, GITS_CREADR_LAYOUT, 0,
    "advanced by command processing; Stalled set on a stalling command error")
GITS_BASER0 = _baser(0, BaserType.DEVICES)
GITS_BASER1 = _baser(1, BaserType.COLLECTIONS)
GITS_BASER2 = _baser(2, BaserType.UNIMPLEMENTED)
GITS_BASER3 = _baser(3, BaserType.UNIMPLEMENTED)
GITS_BASER4 = _baser(4, BaserType.UNIMPLEMENTED)
GITS_BASER5 = _baser(5, BaserType.UNIMPLEMENTED)
GITS_BASER6 = _baser(6, BaserType.UNIMPLEMENTED)
GITS_BASER7 = _baser(7, BaserType.UNIMPLEMENTED)
# Identification registers: KVM's values.
GITS_PIDR4 = _idreg("GITS_PIDR4", 0xFFD0, 0x40)
GITS_PIDR5 = _idreg("GITS_PIDR5", 0xFFD4, 0x00)
GITS_PIDR6 = _idreg("GITS_PIDR6", 0xFFD8, 0x00)
GITS_PIDR7 = _idreg("GITS_PIDR7", 0xFFDC, 0x00)
GITS_PIDR0 = _idreg("GITS_PIDR0", 0xFFE0, 0x92)
GITS_PIDR1 = _idreg("GITS_PIDR1", 0xFFE4, 0xB4)
GITS_PIDR2 = _idreg("GITS_PIDR2", 0xFFE8, 0x3B, GITS_PIDR2_LAYOUT)   # ArchRev 3 = GICv3
GITS_PIDR3 = _idreg("GITS_PIDR3", 0xFFEC, 0x00)
GITS_CIDR0 = _idreg("GITS_CIDR0", 0xFFF0, 0x0D)
GITS_CIDR1 = _idreg("GITS_CIDR1", 0xFFF4, 0xF0)
GITS_CIDR2 = _idreg("GITS_CIDR2", 0xFFF8, 0x05)
GITS_CIDR3 = _idreg("GITS_CIDR3", 0xFFFC, 0xB1)
GITS_TRANSLATER = Register(
    "GITS_TRANSLATER", TRANSLATION_FRAME + 0x0040, 32, "WO", GITS_TRANSLATER_LAYOUT, 0, 0,
    frozenset({2, 4}),
    "MSI doorbell: the EventID is the data, the DeviceID comes from the bus; reads as 0")

#: The ITS register map, offsets from ITS_base.
ITS_REGISTERS = RegisterMap("GITS", [
    GITS_CTLR, GITS_IIDR, GITS_TYPER, GITS_CBASER, GITS_CWRITER, GITS_CREADR,
    GITS_BASER0, GITS_BASER1, GITS_BASER2, GITS_BASER3,
    GITS_BASER4, GITS_BASER5, GITS_BASER6, GITS_BASER7,
    GITS_PIDR4, GITS_PIDR5, GITS_PIDR6, GITS_PIDR7,
    GITS_PIDR0, GITS_PIDR1, GITS_PIDR2, GITS_PIDR3,
    GITS_CIDR0, GITS_CIDR1, GITS_CIDR2, GITS_CIDR3,
    GITS_TRANSLATER,
])

GICR_CTLR = _rw32(
    "GICR_CTLR", 0x0000, GICR_CTLR_LAYOUT, 0,
    read_only=_ro(GICR_CTLR_LAYOUT, "RWP", "UWP"),
    description="EnableLPIs; RWP is set while disabling LPIs is in progress")
#: GICR_TYPER's reset value is a template: PLPIS = 1, DirectLPI = 1; the
#: per-CPU fields (Processor_Number, Affinity, Last) come from `gicr_typer_value`.
GICR_TYPER = _ro64(
    "GICR_TYPER", 0x0008, GICR_TYPER_LAYOUT, GICR_TYPER_LAYOUT.encode(PLPIS=1, DirectLPI=1),
    "per-CPU identity; Processor_Number is the PTA=0 command target; DirectLPI = 1")
GICR_PROPBASER = _rw64(
    "GICR_PROPBASER", 0x0070, GICR_PROPBASER_LAYOUT,
    GICR_PROPBASER_LAYOUT.encode(**_TABLE_ATTRS),
    description="LPI configuration table; writes ignored while EnableLPIs")
GICR_PENDBASER = _rw64(
    "GICR_PENDBASER", 0x0078, GICR_PENDBASER_LAYOUT,
    GICR_PENDBASER_LAYOUT.encode(**_TABLE_ATTRS),
    description="LPI pending table; writes ignored while EnableLPIs; PTZ not kept (KVM)")


def _wo64(name: str, offset: int, layout: Layout, description: str) -> Register:
    return Register(name, offset, 64, "WO", layout, 0, 0, _SIZES_64, description)


# The direct LPI registers (GICR_TYPER.DirectLPI = 1).  Writes while EnableLPIs
# is 0 and INTIDs that are not LPIs below the limit are ignored (the
# architecture allows it) and recorded as invalid accesses.
GICR_SETLPIR = _wo64("GICR_SETLPIR", 0x0040, GICR_LPIR_LAYOUT,
                     "make pINTID pending on this redistributor")
GICR_CLRLPIR = _wo64("GICR_CLRLPIR", 0x0048, GICR_LPIR_LAYOUT,
                     "clear the pending state of pINTID on this redistributor")
GICR_INVLPIR = _wo64("GICR_INVLPIR", 0x00A0, GICR_INVLPIR_LAYOUT,
                     "reload the configuration byte of INTID")
GICR_INVALLR = _wo64("GICR_INVALLR", 0x00B0, GICR_INVALLR_LAYOUT,
                     "reload every configuration byte")
GICR_SYNCR = _ro32("GICR_SYNCR", 0x00C0, GICR_SYNCR_LAYOUT, 0,
                   "Busy reads 0: direct LPI writes take effect at once")

#: The redistributor's LPI registers, offsets from RD_base.
GICR_REGISTERS = RegisterMap("GICR", [GICR_CTLR, GICR_TYPER, GICR_SETLPIR, GICR_CLRLPIR,
                                      GICR_PROPBASER, GICR_PENDBASER, GICR_INVLPIR,
                                      GICR_INVALLR, GICR_SYNCR])


# -- GICv4 registers (a GICv4 ITS / redistributor has them) --------------------------
#
# None of these is in ITS_REGISTERS or GICR_REGISTERS: a GICv3 ITS and its
# redistributors do not have them.  Reset values follow QEMU's GICv4.0 model
# (0 for the VLPI frame) and the project's KVM-style table attributes for
# the vPE table's BASER.

_GICV4 = "GICv4 only"

#: Fields of registers in the GICv3 maps that only GICv4 gives a meaning:
#: register name -> field names.  This model reports them as 0.
GICV4_FIELDS: dict[str, tuple[str, ...]] = {
    "GITS_TYPER": ("Virtual", "VMOVP", "VSGI", "VMAPP", "SVPET", "nID"),
    "GICR_TYPER": ("VLPIS", "Dirty", "RVPEID", "VSGI"),
}

GITS_BASER2_VPES = _baser(2, BaserType.VPES, f"vPE table ({_GICV4})")
#: GICv4.1: the vPE table with 32-byte entries (Entry_Size 31), room for the
#: its-core-rev1 save format's v4.1 VTE (VCONF_addr, default doorbell, vSGIs).
GITS_BASER2_VPES_V41 = dataclasses.replace(
    GITS_BASER2_VPES,
    reset=GITS_BASER_LAYOUT["Entry_Size"].deposit(GITS_BASER2_VPES.reset, 32 - 1),
    description=f"vPE table, 32-byte entries ({_GICV4})")
GITS_SGIR = Register(
    "GITS_SGIR", SGIR_FRAME + 0x0020, 64, "WO", GITS_SGIR_LAYOUT, 0, 0, frozenset({8}),
    f"GICv4.1: make vSGI vINTID pending for vPE vPEID; 64-bit writes only ({_GICV4})")

GICR_VPROPBASER_V40 = _rw64(
    "GICR_VPROPBASER", VLPI_FRAME + 0x0070, GICR_VPROPBASER_V40_LAYOUT, 0,
    description=f"GICv4.0: vLPI configuration table of the resident vPE ({_GICV4})")
GICR_VPENDBASER_V40 = _rw64(
    "GICR_VPENDBASER", VLPI_FRAME + 0x0078, GICR_VPENDBASER_V40_LAYOUT, 0,
    read_only=_ro(GICR_VPENDBASER_V40_LAYOUT, "Dirty"),
    description=f"GICv4.0: virtual pending table of the resident vPE ({_GICV4})")
GICR_VPROPBASER_V41 = _rw64(
    "GICR_VPROPBASER", VLPI_FRAME + 0x0070, GICR_VPROPBASER_V41_LAYOUT, 0,
    read_only=_ro(GICR_VPROPBASER_V41_LAYOUT, "Entry_Size"),
    description=f"GICv4.1: the shared vPE Configuration table ({_GICV4})")
GICR_VPENDBASER_V41 = _rw64(
    "GICR_VPENDBASER", VLPI_FRAME + 0x0078, GICR_VPENDBASER_V41_LAYOUT, 0,
    read_only=_ro(GICR_VPENDBASER_V41_LAYOUT, "Dirty"),
    description=f"GICv4.1: the resident vPE by vPEID ({_GICV4})")
GICR_VSGIR = _rw32(
    "GICR_VSGIR", VLPI_FRAME + 0x0080, GICR_VSGIR_LAYOUT, 0,
    description=f"GICv4.1: start a vSGI pending-state query for vPEID ({_GICV4})")
GICR_VSGIPENDR = _ro32(
    "GICR_VSGIPENDR", VLPI_FRAME + 0x0088, GICR_VSGIPENDR_LAYOUT, 0,
    f"GICv4.1: the queried vSGI pending bits once Busy is 0 ({_GICV4})")
GICR_INVLPIR_V41 = _wo64("GICR_INVLPIR", 0x00A0, GICR_INVLPIR_V41_LAYOUT,
                         "GICv4.1: V = 0 reloads the configuration byte of INTID; V = 1 "
                         "names vINTID INTID of vPE vPEID (nothing cached: no effect)")
GICR_INVALLR_V41 = _wo64("GICR_INVALLR", 0x00B0, GICR_INVALLR_V41_LAYOUT,
                         "GICv4.1: V = 0 reloads every configuration byte; V = 1 names "
                         "every vLPI of vPE vPEID (nothing cached: no effect)")

#: GIC version -> the ITS registers a GICv4 ITS has in place of, or in
#: addition to, `ITS_REGISTERS` (offsets from ITS_base).
GICV4_ITS_REGISTERS: dict[str, RegisterMap] = {
    "4.0": RegisterMap("GITS (GICv4.0)", [GITS_BASER2_VPES]),
    "4.1": RegisterMap("GITS (GICv4.1)",
                       [GITS_BASER2_VPES_V41, GITS_SGIR]),
}

#: GIC version -> the redistributor registers a GICv4 redistributor has in
#: place of, or in addition to, `GICR_REGISTERS` (offsets from RD_base; the
#: VLPI frame starts at `VLPI_FRAME`).
GICV4_GICR_REGISTERS: dict[str, RegisterMap] = {
    "4.0": RegisterMap("GICR (GICv4.0)",
                       [GICR_VPROPBASER_V40, GICR_VPENDBASER_V40]),
    "4.1": RegisterMap("GICR (GICv4.1)",
                       [GICR_INVLPIR_V41, GICR_INVALLR_V41, GICR_VPROPBASER_V41,
                        GICR_VPENDBASER_V41, GICR_VSGIR, GICR_VSGIPENDR]),
}


#: Identification with ArchRev 4 (GICv4; GICv4.1 reports 4 too): QEMU's 0x4B.
GITS_PIDR2_V4 = _idreg("GITS_PIDR2", 0xFFE8, 0x4B, GITS_PIDR2_LAYOUT)
#: GICR_PIDR2 of a GICv4 redistributor (a GICv3 RD_base frame of this model has none).
GICR_PIDR2_V4 = _idreg("GICR_PIDR2", 0xFFE8, 0x4B, GITS_PIDR2_LAYOUT)

@functools.lru_cache(maxsize=None)
def its_register_map(gic_version: str = "3") -> RegisterMap:
    """The ITS register map of an ITS of `gic_version`.

    "3": `ITS_REGISTERS` itself.  "4.0" / "4.1": the same registers with
    GITS_BASER2 describing the vPE table (`GITS_BASER2_VPES`, 8-byte entries;
    "4.1": `GITS_BASER2_VPES_V41`, 32-byte entries) and GITS_PIDR2
    reporting ArchRev 4 (`GITS_PIDR2_V4`); "4.1" adds GITS_SGIR in the third
    64 KiB frame.  (GITS_TYPER's value is the ITS's: its layout is shared.)
    """
    check_gic_version(gic_version)
    if gic_version == "3":
        return ITS_REGISTERS
    baser2 = GITS_BASER2_VPES_V41 if gic_version == "4.1" else GITS_BASER2_VPES
    replaced = {"GITS_BASER2": baser2, "GITS_PIDR2": GITS_PIDR2_V4}
    regs = [replaced.get(reg.name, reg) for reg in ITS_REGISTERS]
    if gic_version == "4.1":
        regs.append(GITS_SGIR)
    return RegisterMap(f"GITS (GICv{gic_version})", regs)


@functools.lru_cache(maxsize=None)
def gicr_register_map(gic_version: str = "3") -> RegisterMap:
    """The register map of one redistributor of `gic_version`, offsets from RD_base.

    "3": `GICR_REGISTERS` (the RD_base frame only).  "4.0" / "4.1": those
    registers, GICR_PIDR2 with ArchRev 4, and the VLPI frame at `VLPI_FRAME`
    in the version's layout (GICR_VPROPBASER, GICR_VPENDBASER; "4.1" adds
    GICR_VSGIR and GICR_VSGIPENDR).  "4.1" also has GICR_INVLPIR /
    GICR_INVALLR in their GICv4.1 layout (V, vPEID: `GICR_INVLPIR_V41`,
    `GICR_INVALLR_V41`); "4.0" keeps the GICv3 layout.
    """
    check_gic_version(gic_version)
    if gic_version == "3":
        return GICR_REGISTERS
    replaced = {reg.name: reg for reg in GICV4_GICR_REGISTERS[gic_version]
                if reg.offset < VLPI_FRAME}
    vlpi = [reg for reg in GICV4_GICR_REGISTERS[gic_version]
            if reg.offset >= VLPI_FRAME]
    return RegisterMap(f"GICR (GICv{gic_version})",
                       [*(replaced.get(reg.name, reg) for reg in GICR_REGISTERS),
                        GICR_PIDR2_V4, *vlpi])


def _check_gicv4_declarations() -> None:
    """Import-time guard: every GICv4 field named exists, and a GICv4 register
    that shares a name with a GICv3 one sits at the same offset."""
    gicv3 = {reg.name: reg for reg in (*ITS_REGISTERS, *GICR_REGISTERS)}
    for name, fields in GICV4_FIELDS.items():
        for field in fields:
            gicv3[name].field(field)                    # KeyError if absent
    for maps in (GICV4_ITS_REGISTERS, GICV4_GICR_REGISTERS):
        for register_map in maps.values():
            for reg in register_map:
                if reg.name in gicv3 and gicv3[reg.name].offset != reg.offset:
                    raise AssertionError(f"{reg.name}: GICv4 offset differs from GICv3")


_check_gicv4_declarations()


def lookup(offset: int, size: int) -> RegisterAccess | None:
    """Resolve a guest access to the ITS frames; see `RegisterMap.lookup`.

    Parameters
    ----------
    offset : int
        Byte offset from ITS_base.
    size : int
        Access size in bytes.

    Returns
    -------
    RegisterAccess or None
        ``(register, half)``; None for holes, wrong sizes and misaligned
        accesses (RAZ/WI).
    """
    return ITS_REGISTERS.lookup(offset, size)


def lookup_gicr(offset: int, size: int) -> RegisterAccess | None:
    """Resolve a guest access to a redistributor's RD_base frame (LPI registers only)."""
    return GICR_REGISTERS.lookup(offset, size)


@functools.lru_cache(maxsize=1024)     # a pure function, called for every CPU of every ITS
def gicr_typer_value(processor_number: int, affinity: int, *, last: bool = False,
                     plpis: bool = True, direct_lpi: bool = False, vlpis: bool = False,
                     rvpeid: bool = False, vsgi: bool = False) -> int:
    """GICR_TYPER for one redistributor.

    Parameters
    ----------
    processor_number : int
        GICR_TYPER.Processor_Number (16 bits); with PTA = 0 the value ITS
        commands use as the target.
    affinity : int
        Affinity [63:32] (Aff3.Aff2.Aff1.Aff0).
    last : bool, default False
        True for the last redistributor of the series.
    plpis : bool, default True
        Physical LPIs supported (true whenever an ITS exists).
    direct_lpi : bool, default False
        The direct LPI registers (SETLPIR, CLRLPIR, INVLPIR, INVALLR, SYNCR)
        are implemented; this model's redistributors report 1.
    vlpis, rvpeid, vsgi : bool, default False
        GICv4: virtual LPIs (VLPIS); GICv4.1: GICR_VPENDBASER names the
        resident vPE by vPEID (RVPEID) and vSGIs are supported (VSGI).
    """
    return GICR_TYPER_LAYOUT.encode(PLPIS=plpis, Last=last, DirectLPI=direct_lpi,
                                    Processor_Number=processor_number, Affinity=affinity,
                                    VLPIS=vlpis, RVPEID=rvpeid, VSGI=vsgi)


# -- BASER / CBASER decoding --------------------------------------------------------------

_PAGE_BYTES = {PageSize.SIZE_4K: 4 << 10, PageSize.SIZE_16K: 16 << 10, PageSize.SIZE_64K: 64 << 10}


def _u64(value: int) -> int:
    return as_uint(value, "register value", 64)


def baser_page_size(value: int) -> int:
    """Table page size in bytes from GITS_BASER<n>.Page_Size.

    Parameters
    ----------
    value : int
        64-bit GITS_BASER<n> value.

    Returns
    -------
    int
        4096, 16384 or 65536.  IMPDEF choice: the reserved code 3 is treated
        as 64 KiB (as QEMU does) rather than making the table unusable.
    """
    code = GITS_BASER_LAYOUT["Page_Size"].extract(_u64(value))
    return _PAGE_BYTES.get(code, 64 << 10)


def baser_address(value: int) -> int:
    """Physical base address of the table described by a GITS_BASER<n> value.

    With 64 KiB pages bits [47:16] hold PA[47:16] and bits [15:12] hold
    PA[51:48]; with 4 or 16 KiB pages bits [47:12] hold PA[47:12].
    """
    value = _u64(value)
    in_place = value & GITS_BASER_LAYOUT["Physical_Address"].mask      # bits [47:12]
    if baser_page_size(value) == 64 << 10:
        high = (in_place >> 12) & 0xF                                   # PA[51:48]
        return (in_place & ~0xF000) | (high << 48)
    return in_place


def baser_table_bytes(value: int) -> int:
    """Size of the (level-1, if Indirect) table in bytes: ``(Size + 1) * page size``."""
    value = _u64(value)
    return (GITS_BASER_LAYOUT["Size"].extract(value) + 1) * baser_page_size(value)


def baser_entry_bytes(value: int) -> int:
    """Bytes per table entry: ``Entry_Size + 1``."""
    return GITS_BASER_LAYOUT["Entry_Size"].extract(_u64(value)) + 1


def cbaser_address(value: int) -> int:
    """Physical base of the command queue: GITS_CBASER bits [51:12] in place."""
    return _u64(value) & GITS_CBASER_LAYOUT["Physical_Address"].mask


def cbaser_queue_bytes(value: int) -> int:
    """Command queue length in bytes: ``(Size + 1) * 4096``."""
    return (GITS_CBASER_LAYOUT["Size"].extract(_u64(value)) + 1) * CBASER_PAGE_BYTES


__all__ += [reg.name for reg in ITS_REGISTERS] + [reg.name for reg in GICR_REGISTERS]
