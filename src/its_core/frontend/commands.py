"""ITS commands: numbers, field positions, encoders, decoder and error codes.

An ITS command is 32 bytes in the command queue: four little-endian 64-bit
doublewords DW0..DW3, the command number in DW0[7:0] and unused bits RES0.

Everything here is driven by one table, `COMMAND_TABLE`: for each physical
command its number and a tuple of `CommandField` rows ``(name, dword, Field,
shift, bias)``.  The encoders (`mapd`, `mapti`, ... and the generic `encode`)
and `decode` both walk that table, so a bit position is written down exactly
once; `FIELD_ROWS` is the same table flattened to plain ints for the Cython
command processor.

Field values are the *meaning* of a field, not its raw bits: MAPD takes the
number of EventID bits (the command stores ``Size = bits - 1``, so the row
has ``bias=1``) and the ITT address (the command stores address bits [51:8]
in place, so the row has ``shift=8`` and the address must be 256-byte
aligned).  Every value that does not fit is refused with a `ValueError`
naming the command and field.

Targets (MAPC, SYNC, MOVALL).  Architecturally the RDbase field is DW2[51:16]
(DW3[51:16] for MOVALL's second target); with GITS_TYPER.PTA = 0 it holds a
processor number.  This model follows KVM and reads the target as the 32 bits
DW2[47:16] -- bits [51:48] are ignored -- and the encoders put a 32-bit CPU
number in the same place (`RDBASE_ARCH` records the architectural extent).

GICv4 commands (executed by an ITS built with ``gic_version`` "4.0" or
"4.1").  The virtual
commands VMAPP, VMAPTI, VMAPI, VMOVI, VMOVP, VSYNC, VINVALL and, for GICv4.1,
INVDB and VSGI are declared in the same form in `GICV4_COMMAND_TABLE`, so
`encode`, `encode_dwords`, `encode_many`, the per-command encoders (`vmapp`,
`vmapti`, ...) and `decode` understand them.  A GICv4 ITS's command
processor executes them (`_cmdq`, as `reference_its` specifies);
`COMMAND_TABLE` / `OPCODES` / `FIELD_ROWS` list the physical commands only,
and a GICv3 ITS skips every GICv4 command number as an unknown command
(`E_ITS_UNKNOWN_COMMAND`).

Two layouts of one command number.  GICv4.1 widens VMAPP (VCONF_addr, PTZ,
Alloc, Default_Doorbell, an 8-bit VPT_size) and VMOVP (DB,
Default_Doorbell).  Each layout is its own `CommandSpec` with its own name
-- ``VMAPP`` and ``VMOVP`` for GICv4.0, ``VMAPP_V41`` and ``VMOVP_V41`` for
GICv4.1 -- sharing the command number (`CommandSpec.mnemonic` gives the Arm
name, ``VMAPP`` for both).  `CommandSpec.gic_versions` lists the GIC versions
whose ITS reads the number with that layout, and `decode` / `decode_dwords`
take ``gic_version="3"`` (the default: the physical commands only, every
GICv4 number `UNKNOWN`, exactly as before), ``"4.0"`` (adds the GICv4.0
commands and layouts; VSGI and INVDB stay `UNKNOWN`) or ``"4.1"`` (the
GICv4.1 layouts plus VSGI and INVDB).  The name `decode` reports is the spec
name, so ``encode(cmd.name, **cmd.fields)`` always re-encodes a decoded
command.

GICv4 keyword names are the field mnemonics in snake_case (``vpe_id`` for
vPEID, ``vintid``, ``dbell_pintid``, ``vpt_addr``, ``vpt_size``,
``vconf_addr``, ``ptz``, ``alloc``, ``default_doorbell``, ``rdbase``,
``sequence_number``, ``its_list``, ``priority``, ``group``, ``clear``,
``enable``); the one-letter flags get the project's word for them as for
MAPD/MAPC: V is ``valid``, VMOVI's D (the doorbell field is valid) is
``doorbell_valid`` and VMOVP's DB (the Default_Doorbell field is valid) is
``default_doorbell_valid``.  Addresses are byte addresses (VPT_addr and
VCONF_addr hold PA[51:16] in place: 64 KiB aligned); VSGI's ``priority`` is
the 8-bit priority of which the command keeps the top nibble (a multiple of
16); VPT_size is stored as given (vINTID bits - 1, as Linux writes it).  The
virtual commands' RDbase is the architectural DW2[51:16] (a processor number
with PTA = 0), not the 32-bit reading of the physical commands.

Error codes.  KVM's internal command error codes have the form
``0x01_CC_RR`` (CC = command number, RR = a per-command reason; KVM's CLEAR
code is the one exception).  The 15 KVM codes are reproduced as constants; the project adds a few of its own in the
same form, each marked "project code:" below; `ERROR_NAMES` maps every code
to its name.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, NamedTuple

from its_core.frontend.fields import Field
from its_core.validation import GIC_VERSIONS, as_int, as_uint, check_gic_version

__all__ = [
    "COMMAND_BYTES", "COMMAND_TABLE", "OPCODES", "OPCODE_NAMES", "GICV4_OPCODES",
    "GICV4_COMMAND_TABLE", "GIC_VERSIONS", "DECODE_TABLES", "NO_DOORBELL",
    "FIELD_ROWS", "OPCODE", "RDBASE_ARCH", "UNKNOWN",
    "CommandField", "CommandSpec", "Command",
    "encode", "encode_dwords", "encode_many", "decode", "decode_dwords",
    "mapd", "mapc", "mapti", "mapi", "movi", "discard", "inv", "invall", "int_",
    "clear", "sync", "movall",
    "vmapp", "vmapp_v41", "vmapti", "vmapi", "vmovi", "vmovp", "vmovp_v41", "vsync",
    "vinvall", "invdb", "vsgi",
    "error_code", "error_name", "ERROR_NAMES", "PROJECT_ERROR_CODES",
]

#: Size of one command in bytes (four 64-bit doublewords).
COMMAND_BYTES = 32
_DWORDS = struct.Struct("<4Q")

#: The command number, DW0[7:0], common to every command.
OPCODE = Field.bits("CommandNumber", 7, 0)

#: Name reported by `decode` for a command number the chosen GIC version does not define.
UNKNOWN = "UNKNOWN"

# GIC_VERSIONS (imported from `its_core.validation`, re-exported): the values of
# the ``gic_version`` keyword of `decode`, the GIC version whose ITS reads the command.

_EVERY_VERSION = frozenset(GIC_VERSIONS)
_GICV4 = frozenset({"4.0", "4.1"})
_GICV4_0 = frozenset({"4.0"})
_GICV4_1 = frozenset({"4.1"})


class CommandField(NamedTuple):
    """One row of the command table: where a command parameter lives.

    Attributes
    ----------
    name : str
        Python name of the parameter: keyword of the encoder and key in
        `Command.fields` (``"device_id"``, ``"itt_addr"``...).
    dword : int
        Doubleword index 0..3.
    field : Field
        Arm mnemonic and bit position inside that doubleword.
    shift : int
        Low bits of the value that the command does not carry (they must be
        zero): the stored bits are ``(value - bias) >> shift``.
    bias : int
        Subtracted before storing (MAPD stores EventID bits - 1).
    default : int or None
        Value used by `encode` when the parameter is omitted; None = required.
    """

    name: str
    dword: int
    field: Field
    shift: int = 0
    bias: int = 0
    default: int | None = None

    @property
    def lowest(self) -> int:
        """Smallest value the parameter can take."""
        return self.bias

    @property
    def highest(self) -> int:
        """Largest value the parameter can take."""
        return (self.field.max << self.shift) + self.bias

    @property
    def where(self) -> str:
        """Position in Arm notation, e.g. ``"Size, DW1[4:0]"``."""
        return f"{self.field.name}, DW{self.dword}{self.field.span}"

    def to_wire(self, value: Any, command: str) -> int:
        """Validate a parameter value and return the bits to store in the field.

        Raises
        ------
        ValueError
            Out of range or misaligned; the message names command and field.
        TypeError
            Not an integer.
        """
        label = f"{command}.{self.name} ({self.where})"
        number = as_int(value, label, flag=self.field.width == 1)
        if not self.lowest <= number <= self.highest:
            raise ValueError(
                f"{label}: {number:#x} is out of range {self.lowest:#x}..{self.highest:#x}"
            )
        raw = number - self.bias
        if raw & ((1 << self.shift) - 1):
            raise ValueError(f"{label}: {number:#x} is not a multiple of {1 << self.shift}")
        return raw >> self.shift

    def from_wire(self, dword_value: int) -> int:
        """The parameter value held in a doubleword."""
        return (self.field.extract(dword_value) << self.shift) + self.bias


class CommandSpec(NamedTuple):
    """A command layout: its name, number, parameter rows and GIC versions.

    Attributes
    ----------
    name : str
        Arm mnemonic (``"MAPTI"``), with a ``_V41`` suffix for the GICv4.1
        layout of a command whose GICv4.0 layout differs (``"VMAPP_V41"``).
    code : int
        Command number, DW0[7:0].
    fields : tuple of CommandField
        Parameters in encoder-argument order.
    gic_versions : frozenset of str
        The values of `GIC_VERSIONS` whose ITS reads `code` with this layout
        (every version for the physical commands).
    """

    name: str
    code: int
    fields: tuple[CommandField, ...]
    gic_versions: frozenset[str] = _EVERY_VERSION

    @property
    def mnemonic(self) -> str:
        """The Arm mnemonic, without the layout suffix (``"VMAPP"`` for ``"VMAPP_V41"``)."""
        return self.name.removesuffix(_V41_SUFFIX)

    @property
    def dword_masks(self) -> tuple[int, int, int, int]:
        """Bits used in each doubleword (command number included); the rest is RES0."""
        masks = [OPCODE.mask, 0, 0, 0]
        for f in self.fields:
            masks[f.dword] |= f.field.mask
        return (masks[0], masks[1], masks[2], masks[3])


#: Suffix of the name of a GICv4.1 layout that differs from the GICv4.0 one.
_V41_SUFFIX = "_V41"


class Command(NamedTuple):
    """A decoded command.

    Attributes
    ----------
    name : str
        `CommandSpec.name` of the layout decoded, or `UNKNOWN` for a command
        number the GIC version given to `decode` does not define (with the
        default ``gic_version="3"``, every GICv4 command).
    code : int
        The command number from DW0[7:0].
    fields : dict
        Parameter values keyed by `CommandField.name`; for an unknown command
        ``{"opcode": code}``.
    """

    name: str
    code: int
    fields: dict[str, int]

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v:#x}" for k, v in self.fields.items())
        return f"{self.name}({args})"


# -- the table ------------------------------------------------------------------
#
# Positions from the Arm command layouts (GIC architecture specification, Arm IHI
# 0069, "ITS commands").  Each Field names the Arm mnemonic of the command field;
# the row name is the Python parameter.

_DEVICE_ID = CommandField("device_id", 0, Field.bits("DeviceID", 63, 32))
_EVENT_ID = CommandField("event_id", 1, Field.bits("EventID", 31, 0))
_ICID = CommandField("icid", 2, Field.bits("ICID", 15, 0))
_VALID = CommandField("valid", 2, Field.bits("V", 63), default=1)

#: Architectural extent of the RDbase target field, DW2[51:16] (DW3 for
#: MOVALL.RDbase2).  Not used by the table: the model reads [47:16] (see top).
RDBASE_ARCH = Field.bits("RDbase", 51, 16)


def _target(name: str, dword: int, mnemonic: str) -> CommandField:
    """A PTA=0 target: a 32-bit processor number in DWn[47:16] (KVM's reading)."""
    return CommandField(name, dword, Field.bits(mnemonic, 47, 16))


_PHYSICAL_SPECS = (
    CommandSpec("MOVI", 0x01, (_DEVICE_ID, _EVENT_ID, _ICID)),
    CommandSpec("INT", 0x03, (_DEVICE_ID, _EVENT_ID)),
    CommandSpec("CLEAR", 0x04, (_DEVICE_ID, _EVENT_ID)),
    CommandSpec("SYNC", 0x05, (_target("cpu", 2, "RDbase"),)),
    CommandSpec("MAPD", 0x08, (
        _DEVICE_ID,
        # ITT physical address bits [51:8] kept in place: 256-byte aligned.
        CommandField("itt_addr", 2, Field.bits("ITT_addr", 51, 8), shift=8),
        # Size = number of EventID bits - 1.
        CommandField("num_event_bits", 1, Field.bits("Size", 4, 0), bias=1),
        _VALID,
    )),
    CommandSpec("MAPC", 0x09, (_ICID, _target("cpu", 2, "RDbase"), _VALID)),
    CommandSpec("MAPTI", 0x0A, (
        _DEVICE_ID, _EVENT_ID, CommandField("intid", 1, Field.bits("pINTID", 63, 32)), _ICID,
    )),
    CommandSpec("MAPI", 0x0B, (_DEVICE_ID, _EVENT_ID, _ICID)),
    CommandSpec("INV", 0x0C, (_DEVICE_ID, _EVENT_ID)),
    CommandSpec("INVALL", 0x0D, (_ICID,)),
    CommandSpec("MOVALL", 0x0E, (
        _target("from_cpu", 2, "RDbase1"), _target("to_cpu", 3, "RDbase2"),
    )),
    CommandSpec("DISCARD", 0x0F, (_DEVICE_ID, _EVENT_ID)),
)

# GICv4 / GICv4.1 virtual commands (executed by a GICv4 ITS only).  Positions from gicv4-digest 3.2 (Linux's
# its_encode_* helpers, QEMU's FIELD macros, Arm IHI 0069).

#: "No doorbell" value of a Dbell_pINTID field (VMAPTI, VMAPI, VMOVI).
NO_DOORBELL = 1023

_VPE_ID = CommandField("vpe_id", 1, Field.bits("vPEID", 47, 32))
_DBELL_PINTID = CommandField("dbell_pintid", 2, Field.bits("Dbell_pINTID", 63, 32))
# The virtual commands' target: the architectural RDbase DW2[51:16] (with
# PTA = 0 a processor number), as Linux writes it and QEMU reads it.
_VIRTUAL_RDBASE = CommandField("rdbase", 2, RDBASE_ARCH)
# VPT physical address bits [51:16] kept in place: 64 KiB aligned.
_VPT_ADDR = CommandField("vpt_addr", 3, Field.bits("VPT_addr", 51, 16), shift=16)
_SEQUENCE_NUMBER = CommandField("sequence_number", 0, Field.bits("SequenceNumber", 47, 32),
                                default=0)
_ITS_LIST = CommandField("its_list", 1, Field.bits("ITSList", 15, 0), default=0)

_VMAPP_V40_FIELDS = (
    _VPE_ID, _VIRTUAL_RDBASE, _VPT_ADDR,
    # VPT_size = vINTID bits - 1, stored as given (Linux: LPI ID bits - 1).
    CommandField("vpt_size", 3, Field.bits("VPT_size", 4, 0)),
    _VALID,
)
_VMOVP_V40_FIELDS = (_VPE_ID, _VIRTUAL_RDBASE, _SEQUENCE_NUMBER, _ITS_LIST)

_GICV4_SPECS = (
    CommandSpec("VMOVI", 0x21, (
        _DEVICE_ID, _EVENT_ID, _VPE_ID, _DBELL_PINTID,
        # D: the Dbell_pINTID field is valid (Linux always sets it).
        CommandField("doorbell_valid", 2, Field.bits("D", 0), default=1),
    ), _GICV4),
    CommandSpec("VMOVP", 0x22, _VMOVP_V40_FIELDS, _GICV4_0),
    CommandSpec("VMOVP_V41", 0x22, _VMOVP_V40_FIELDS + (
        CommandField("default_doorbell", 3, Field.bits("Default_Doorbell", 31, 0)),
        # DB: the Default_Doorbell field is valid (Linux always sets it on v4.1).
        CommandField("default_doorbell_valid", 2, Field.bits("DB", 63), default=1),
    ), _GICV4_1),
    CommandSpec("VSGI", 0x23, (
        _VPE_ID,
        CommandField("vintid", 0, Field.bits("vINTID", 35, 32)),
        # The 8-bit priority; the command keeps its top nibble (Linux: prio >> 4).
        CommandField("priority", 0, Field.bits("Priority", 23, 20), shift=4),
        CommandField("group", 0, Field.bits("Group", 10)),
        CommandField("enable", 0, Field.bits("Enable", 8)),
        CommandField("clear", 0, Field.bits("Clear", 9), default=0),
    ), _GICV4_1),
    CommandSpec("VSYNC", 0x25, (_VPE_ID,), _GICV4),
    CommandSpec("VMAPP", 0x29, _VMAPP_V40_FIELDS, _GICV4_0),
    CommandSpec("VMAPP_V41", 0x29, (
        _VPE_ID, _VIRTUAL_RDBASE, _VPT_ADDR,
        CommandField("vpt_size", 3, Field.bits("VPT_size", 7, 0)),
        # vLPI configuration table physical address bits [51:16] in place.
        CommandField("vconf_addr", 0, Field.bits("VCONF_addr", 51, 16), shift=16),
        CommandField("default_doorbell", 1, Field.bits("Default_Doorbell", 31, 0)),
        CommandField("alloc", 0, Field.bits("Alloc", 8)),
        CommandField("ptz", 0, Field.bits("PTZ", 9), default=0),
        _VALID,
    ), _GICV4_1),
    CommandSpec("VMAPTI", 0x2A, (
        _DEVICE_ID, _EVENT_ID, _VPE_ID,
        CommandField("vintid", 2, Field.bits("vINTID", 31, 0)),
        _DBELL_PINTID,
    ), _GICV4),
    CommandSpec("VMAPI", 0x2B, (_DEVICE_ID, _EVENT_ID, _VPE_ID, _DBELL_PINTID), _GICV4),
    CommandSpec("VINVALL", 0x2D, (_VPE_ID,), _GICV4),
    CommandSpec("INVDB", 0x2E, (_VPE_ID,), _GICV4_1),
)

#: Every command layout: the physical commands, then the GICv4 ones.
_SPECS = _PHYSICAL_SPECS + _GICV4_SPECS

#: name -> `CommandSpec` of every physical command this model implements.
COMMAND_TABLE: dict[str, CommandSpec] = {spec.name: spec for spec in _PHYSICAL_SPECS}

#: name -> `CommandSpec` of every GICv4 / GICv4.1 command layout: declared
#: for GICv4 (encoded and decoded; executed by an ITS of those versions).
GICV4_COMMAND_TABLE: dict[str, CommandSpec] = {spec.name: spec for spec in _GICV4_SPECS}

#: Every layout `encode` knows, by name.
_ENCODABLE: dict[str, CommandSpec] = {**COMMAND_TABLE, **GICV4_COMMAND_TABLE}

#: name -> command number, physical commands (the ones the processor runs).
OPCODES: dict[str, int] = {spec.name: spec.code for spec in _PHYSICAL_SPECS}

#: GICv4/v4.1 command numbers by Arm mnemonic, for logs.  A GICv3 ITS (this
#: model) treats each as an unknown command.
GICV4_OPCODES: dict[str, int] = {spec.mnemonic: spec.code for spec in _GICV4_SPECS}

#: command number -> mnemonic, physical and GICv4 (for messages and logs).
OPCODE_NAMES: dict[int, str] = {code: name for name, code in {**OPCODES, **GICV4_OPCODES}.items()}

#: gic_version -> {command number: `CommandSpec`}: how an ITS of that GIC
#: version reads each command number (`decode`); a number missing is `UNKNOWN`.
DECODE_TABLES: dict[str, dict[int, CommandSpec]] = {
    version: {spec.code: spec for spec in _SPECS if version in spec.gic_versions}
    for version in GIC_VERSIONS
}

#: The physical table flattened to plain ints for the Cython command processor: one
#: ``(command, opcode, name, dword, lsb, width, shift, bias)`` row per field.
FIELD_ROWS: tuple[tuple[str, int, str, int, int, int, int, int], ...] = tuple(
    (spec.name, spec.code, f.name, f.dword, f.field.lsb, f.field.width, f.shift, f.bias)
    for spec in _PHYSICAL_SPECS for f in spec.fields
)


def _self_check() -> None:
    """Import-time guard: no two parameters of a command share a bit, no two
    layouts share a name, and each GIC version reads a command number one way."""
    for spec in _SPECS:
        used = [OPCODE.mask, 0, 0, 0]
        for f in spec.fields:
            if not 0 <= f.dword < 4 or f.field.msb > 63:
                raise AssertionError(f"{spec.name}.{f.name} lies outside the command")
            if used[f.dword] & f.field.mask:
                raise AssertionError(f"{spec.name}.{f.name} overlaps another field")
            used[f.dword] |= f.field.mask
        if not spec.gic_versions or not spec.gic_versions <= _EVERY_VERSION:
            raise AssertionError(f"{spec.name}: bad GIC versions {sorted(spec.gic_versions)}")
    if len(_ENCODABLE) != len(_SPECS):
        raise AssertionError("two command layouts share a name")
    for version, table in DECODE_TABLES.items():
        if len(table) != sum(version in spec.gic_versions for spec in _SPECS):
            raise AssertionError(f"GIC {version}: two layouts share a command number")


_self_check()


# -- generic encode / decode ---------------------------------------------------

def _spec_named(name: str) -> CommandSpec:
    """The layout called `name` (physical or GICv4); ValueError listing the known names."""
    spec = _ENCODABLE.get(name) if isinstance(name, str) else None
    if spec is None:
        raise ValueError(f"unknown command {name!r}; known: {', '.join(_ENCODABLE)}")
    return spec


def _decode_table(gic_version: str) -> dict[int, CommandSpec]:
    """`DECODE_TABLES` entry for `gic_version`; ValueError for another value."""
    return DECODE_TABLES[check_gic_version(gic_version)]


def encode_dwords(name: str, **params: int) -> tuple[int, int, int, int]:
    """Encode a command as four 64-bit doubleword values.

    Parameters
    ----------
    name : str
        Command name, a key of `COMMAND_TABLE` or `GICV4_COMMAND_TABLE`
        (``"VMAPP_V41"`` for the GICv4.1 layout of VMAPP).
    **params : int
        One value per `CommandField` of the command; a field with a default
        (``valid``) may be omitted.

    Returns
    -------
    tuple of 4 int

    Raises
    ------
    ValueError
        Unknown command, unknown or missing parameter, or a value that does
        not fit (the message names the field).
    """
    spec = _spec_named(name)
    known = {f.name for f in spec.fields}
    extra = set(params) - known
    if extra:
        raise ValueError(f"{name}: unexpected field(s) {', '.join(sorted(extra))}")
    dwords = [spec.code, 0, 0, 0]
    for f in spec.fields:
        if f.name in params:
            value = params[f.name]
        elif f.default is not None:
            value = f.default
        else:
            raise ValueError(f"{name}: missing field {f.name!r}")
        dwords[f.dword] |= f.to_wire(value, name) << f.field.lsb
    return (dwords[0], dwords[1], dwords[2], dwords[3])


def encode(name: str, **params: int) -> bytes:
    """Encode a command as its 32-byte little-endian queue image.

    See `encode_dwords` for the parameters and errors.
    """
    return _DWORDS.pack(*encode_dwords(name, **params))


def encode_many(name: str, **params) -> "np.ndarray":
    """Encode many commands of one kind at once, vectorised.

    Parameters
    ----------
    name : str
        Command name, a key of `COMMAND_TABLE` or `GICV4_COMMAND_TABLE`.
    **params : array_like of int or int
        One array (or scalar, broadcast) per `CommandField`; fields with a
        default may be omitted.

    Returns
    -------
    ndarray of uint64, shape (n, 4)
        DW0..DW3 of each command; ``.astype('<u8').tobytes()`` (or a
        little-endian view of guest memory) is the queue image.

    Raises
    ------
    ValueError
        As `encode_dwords`, naming the first offending row.
    """
    import numpy as np

    spec = _spec_named(name)
    extra = set(params) - {f.name for f in spec.fields}
    if extra:
        raise ValueError(f"{name}: unexpected field(s) {', '.join(sorted(extra))}")
    values = {}
    for f in spec.fields:
        if f.name in params:
            values[f.name] = np.asarray(params[f.name])
        elif f.default is not None:
            values[f.name] = np.asarray(f.default)
        else:
            raise ValueError(f"{name}: missing field {f.name!r}")
    arrays = np.broadcast_arrays(*values.values())
    count = arrays[0].size if arrays else 1
    out = np.zeros((count, 4), np.uint64)
    out[:, 0] = spec.code
    for f, array in zip(spec.fields, arrays):
        array = array.reshape(-1)
        if array.dtype.kind not in "iub":
            raise ValueError(f"{name}.{f.name}: expected integers, got dtype {array.dtype}")
        wide = array.astype(object) if array.dtype.kind == "u" and array.itemsize == 8 else \
            array.astype(np.int64)
        bad = np.flatnonzero((wide < f.lowest) | (wide > f.highest)
                             | ((wide - f.bias) % (1 << f.shift) != 0))
        if bad.size:
            f.to_wire(int(wide[bad[0]]), name)          # raises with the usual message
        raw = (array.astype(np.uint64) - np.uint64(f.bias)) >> np.uint64(f.shift)
        out[:, f.dword] |= raw << np.uint64(f.field.lsb)
    return out


def decode_dwords(dwords: Sequence[int], *, gic_version: str = "3") -> Command:
    """Decode a command given as four 64-bit doubleword values.

    Bits outside the command's fields (RES0) are ignored.

    Parameters
    ----------
    dwords : sequence of 4 int
        DW0..DW3, each in ``0 .. 2**64-1``.
    gic_version : {"3", "4.0", "4.1"}, default "3"
        Read the command as an ITS of this GIC version does: "3" knows the
        physical commands only (every GICv4 number is `UNKNOWN`, as this
        model's ITS treats it), "4.0" adds the GICv4.0 commands and layouts,
        "4.1" the GICv4.1 layouts of VMAPP and VMOVP plus VSGI and INVDB.

    Returns
    -------
    Command

    Raises
    ------
    ValueError
        Not four doublewords, a doubleword out of range, or an unknown
        `gic_version`.
    """
    table = _decode_table(gic_version)
    if len(dwords) != 4:
        raise ValueError(f"a command has 4 doublewords, got {len(dwords)}")
    words = [as_uint(word, f"DW{index}", 64) for index, word in enumerate(dwords)]
    code = OPCODE.extract(words[0])
    spec = table.get(code)
    if spec is None:
        return Command(UNKNOWN, code, {"opcode": code})
    return Command(spec.name, code, {f.name: f.from_wire(words[f.dword]) for f in spec.fields})


def decode(packet: Any, *, gic_version: str = "3") -> Command:
    """Decode one 32-byte command image (bytes-like, little-endian).

    Parameters
    ----------
    packet : bytes-like
        Exactly 32 bytes (``bytes``, ``bytearray``, ``memoryview``, a
        ``uint8`` numpy array...).
    gic_version : {"3", "4.0", "4.1"}, default "3"
        The GIC version whose ITS reads the command (see `decode_dwords`);
        the default decodes every GICv4 command as `UNKNOWN`.

    Returns
    -------
    Command
        ``name`` is the layout's name (``"VMAPP_V41"`` for the GICv4.1 VMAPP)
        or `UNKNOWN`; ``fields`` holds the parameters (``{"opcode": n}`` for
        an unknown command).

    Raises
    ------
    ValueError
        `packet` is not 32 bytes long, or `gic_version` is not one of
        `GIC_VERSIONS`.
    """
    _decode_table(gic_version)
    view = memoryview(packet)
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    view = view.cast("B")
    if view.nbytes != COMMAND_BYTES:
        raise ValueError(f"a command is {COMMAND_BYTES} bytes, got {view.nbytes}")
    return decode_dwords(_DWORDS.unpack(view), gic_version=gic_version)


# -- one encoder per command ---------------------------------------------------

def mapd(device_id: int, itt_addr: int, num_event_bits: int, valid: bool = True) -> bytes:
    """MAPD: map DeviceID to an ITT holding ``2**num_event_bits`` events (or unmap).

    Parameters
    ----------
    device_id : int
        DeviceID, DW0[63:32].
    itt_addr : int
        ITT physical address, 256-byte aligned, below ``2**52``; bits [51:8]
        go to DW2[51:8].
    num_event_bits : int
        EventID bits, 1..32; stored as Size = bits - 1 in DW1[4:0].
    valid : bool, default True
        V, DW2[63]; False unmaps the device.

    Returns
    -------
    bytes
        The 32-byte command.
    """
    return encode("MAPD", device_id=device_id, itt_addr=itt_addr,
                  num_event_bits=num_event_bits, valid=valid)


def mapc(icid: int, cpu: int, valid: bool = True) -> bytes:
    """MAPC: map collection `icid` to processor number `cpu` (or unmap).

    Parameters
    ----------
    icid : int
        ICID, DW2[15:0].
    cpu : int
        Target processor number (PTA = 0), 32 bits in DW2[47:16].
    valid : bool, default True
        V, DW2[63].
    """
    return encode("MAPC", icid=icid, cpu=cpu, valid=valid)


def mapti(device_id: int, event_id: int, intid: int, icid: int) -> bytes:
    """MAPTI: map (DeviceID, EventID) to LPI `intid` in collection `icid`.

    DeviceID DW0[63:32], EventID DW1[31:0], pINTID DW1[63:32], ICID DW2[15:0].
    """
    return encode("MAPTI", device_id=device_id, event_id=event_id, intid=intid, icid=icid)


def mapi(device_id: int, event_id: int, icid: int) -> bytes:
    """MAPI: MAPTI with pINTID = EventID."""
    return encode("MAPI", device_id=device_id, event_id=event_id, icid=icid)


def movi(device_id: int, event_id: int, icid: int) -> bytes:
    """MOVI: move (DeviceID, EventID) to collection `icid`."""
    return encode("MOVI", device_id=device_id, event_id=event_id, icid=icid)


def discard(device_id: int, event_id: int) -> bytes:
    """DISCARD: remove the mapping of (DeviceID, EventID) and its pending state."""
    return encode("DISCARD", device_id=device_id, event_id=event_id)


def inv(device_id: int, event_id: int) -> bytes:
    """INV: reload the configuration of the LPI mapped by (DeviceID, EventID)."""
    return encode("INV", device_id=device_id, event_id=event_id)


def invall(icid: int) -> bytes:
    """INVALL: reload the configuration of every LPI of collection `icid`."""
    return encode("INVALL", icid=icid)


def int_(device_id: int, event_id: int) -> bytes:
    """INT: make the LPI mapped by (DeviceID, EventID) pending, as an MSI would."""
    return encode("INT", device_id=device_id, event_id=event_id)


def clear(device_id: int, event_id: int) -> bytes:
    """CLEAR: clear the pending state of the LPI mapped by (DeviceID, EventID)."""
    return encode("CLEAR", device_id=device_id, event_id=event_id)


def sync(cpu: int) -> bytes:
    """SYNC: wait for earlier commands targeting processor `cpu` (DW2[47:16])."""
    return encode("SYNC", cpu=cpu)


def movall(from_cpu: int, to_cpu: int) -> bytes:
    """MOVALL: move all pending LPIs of `from_cpu` (DW2[47:16]) to `to_cpu` (DW3[47:16])."""
    return encode("MOVALL", from_cpu=from_cpu, to_cpu=to_cpu)


# -- GICv4 encoders (commands a GICv4 ITS executes) ---------------------------------
#
# These build the virtual commands Linux's its_build_v*_cmd builders build.
# No ITS of this model executes them yet: a GICv3 ITS skips each as an
# unknown command (E_ITS_UNKNOWN_COMMAND).

def vmapp(vpe_id: int, rdbase: int, vpt_addr: int, vpt_size: int,
          valid: bool = True) -> bytes:
    """VMAPP, GICv4.0 layout: map vPE `vpe_id` to a redistributor and a virtual pending table.

    Parameters
    ----------
    vpe_id : int
        vPEID, DW1[47:32] (16 bits).
    rdbase : int
        RDbase, DW2[51:16]: the target redistributor (the processor number
        when GITS_TYPER.PTA = 0), up to ``2**36 - 1``.
    vpt_addr : int
        Virtual pending table physical address, 64 KiB aligned, below
        ``2**52``; bits [51:16] go to DW3[51:16].
    vpt_size : int
        VPT_size, DW3[4:0]: the number of vINTID bits - 1, stored as given.
    valid : bool, default True
        V, DW2[63]; False unmaps the vPE.

    Returns
    -------
    bytes
        The 32-byte command (command number 0x29).
    """
    return encode("VMAPP", vpe_id=vpe_id, rdbase=rdbase, vpt_addr=vpt_addr,
                  vpt_size=vpt_size, valid=valid)


def vmapp_v41(vpe_id: int, rdbase: int, vpt_addr: int, vpt_size: int, vconf_addr: int,
              default_doorbell: int, alloc: bool, ptz: bool = False,
              valid: bool = True) -> bytes:
    """VMAPP, GICv4.1 layout (GITS_TYPER.VMAPP = 1): the GICv4.0 fields plus
    the vLPI configuration table, the default doorbell and Alloc/PTZ.

    Parameters
    ----------
    vpe_id, rdbase, vpt_addr, valid
        As for `vmapp`.
    vpt_size : int
        VPT_size, DW3[7:0] (8 bits in the GICv4.1 layout).
    vconf_addr : int
        VCONF_addr: the vLPI configuration table, 64 KiB aligned, below
        ``2**52``; bits [51:16] go to DW0[51:16].
    default_doorbell : int
        Default_Doorbell, DW1[31:0]: the vPE's default doorbell pINTID.
    alloc : bool
        Alloc, DW0[8] (Linux: 1 on the first map / last unmap across ITSs).
    ptz : bool, default False
        PTZ, DW0[9]: the VPT is known to be zero (Linux always writes 0).

    Returns
    -------
    bytes
        The 32-byte command (command number 0x29).
    """
    return encode("VMAPP_V41", vpe_id=vpe_id, rdbase=rdbase, vpt_addr=vpt_addr,
                  vpt_size=vpt_size, vconf_addr=vconf_addr,
                  default_doorbell=default_doorbell, alloc=alloc, ptz=ptz, valid=valid)


def vmapti(device_id: int, event_id: int, vpe_id: int, vintid: int,
           dbell_pintid: int) -> bytes:
    """VMAPTI: map (DeviceID, EventID) to vLPI `vintid` of vPE `vpe_id`.

    DeviceID DW0[63:32], EventID DW1[31:0], vPEID DW1[47:32], vINTID
    DW2[31:0], Dbell_pINTID DW2[63:32] (`NO_DOORBELL` = 1023 for none).
    """
    return encode("VMAPTI", device_id=device_id, event_id=event_id, vpe_id=vpe_id,
                  vintid=vintid, dbell_pintid=dbell_pintid)


def vmapi(device_id: int, event_id: int, vpe_id: int, dbell_pintid: int) -> bytes:
    """VMAPI: VMAPTI with vINTID = EventID.

    DeviceID DW0[63:32], EventID DW1[31:0], vPEID DW1[47:32], Dbell_pINTID
    DW2[63:32] (`NO_DOORBELL` = 1023 for none).
    """
    return encode("VMAPI", device_id=device_id, event_id=event_id, vpe_id=vpe_id,
                  dbell_pintid=dbell_pintid)


def vmovi(device_id: int, event_id: int, vpe_id: int, dbell_pintid: int,
          doorbell_valid: bool = True) -> bytes:
    """VMOVI: move the vLPI of (DeviceID, EventID) to vPE `vpe_id`.

    DeviceID DW0[63:32], EventID DW1[31:0], vPEID DW1[47:32], Dbell_pINTID
    DW2[63:32]; `doorbell_valid` is D, DW2[0]: the doorbell field is used
    (Linux always sets it).
    """
    return encode("VMOVI", device_id=device_id, event_id=event_id, vpe_id=vpe_id,
                  dbell_pintid=dbell_pintid, doorbell_valid=doorbell_valid)


def vmovp(vpe_id: int, rdbase: int, sequence_number: int = 0, its_list: int = 0) -> bytes:
    """VMOVP, GICv4.0 layout: retarget vPE `vpe_id` to redistributor `rdbase`.

    vPEID DW1[47:32], RDbase DW2[51:16]; SequenceNumber DW0[47:32] and
    ITSList DW1[15:0] synchronise the ITSs when GITS_TYPER.VMOVP = 0 (RES0,
    so 0, when it is 1).
    """
    return encode("VMOVP", vpe_id=vpe_id, rdbase=rdbase, sequence_number=sequence_number,
                  its_list=its_list)


def vmovp_v41(vpe_id: int, rdbase: int, default_doorbell: int, sequence_number: int = 0,
              its_list: int = 0, default_doorbell_valid: bool = True) -> bytes:
    """VMOVP, GICv4.1 layout: `vmovp` plus the vPE's default doorbell.

    Default_Doorbell DW3[31:0]; `default_doorbell_valid` is DB, DW2[63]
    (Linux sets it with the default doorbell on every GICv4.1 VMOVP).
    """
    return encode("VMOVP_V41", vpe_id=vpe_id, rdbase=rdbase,
                  default_doorbell=default_doorbell, sequence_number=sequence_number,
                  its_list=its_list, default_doorbell_valid=default_doorbell_valid)


def vsync(vpe_id: int) -> bytes:
    """VSYNC: wait for earlier commands on vPE `vpe_id` (vPEID DW1[47:32])."""
    return encode("VSYNC", vpe_id=vpe_id)


def vinvall(vpe_id: int) -> bytes:
    """VINVALL: reload the vLPI configuration of vPE `vpe_id` (vPEID DW1[47:32])."""
    return encode("VINVALL", vpe_id=vpe_id)


def invdb(vpe_id: int) -> bytes:
    """INVDB (GICv4.1): reload the configuration of vPE `vpe_id`'s default
    doorbell (vPEID DW1[47:32])."""
    return encode("INVDB", vpe_id=vpe_id)


def vsgi(vpe_id: int, vintid: int, priority: int, group: bool, enable: bool,
         clear: bool = False) -> bytes:
    """VSGI (GICv4.1): configure, or clear the pending state of, vSGI `vintid` of a vPE.

    Parameters
    ----------
    vpe_id : int
        vPEID, DW1[47:32].
    vintid : int
        The vSGI, 0..15: vINTID DW0[35:32].
    priority : int
        The 8-bit priority, a multiple of 16 (0x00..0xF0): its top nibble
        goes to Priority DW0[23:20], as Linux's ``prio >> 4``.
    group : bool
        Group, DW0[10].
    enable : bool
        Enable, DW0[8].
    clear : bool, default False
        Clear, DW0[9]: clear the pending state and leave the configuration
        (one command cannot do both).

    Returns
    -------
    bytes
        The 32-byte command (command number 0x23).
    """
    return encode("VSGI", vpe_id=vpe_id, vintid=vintid, priority=priority, group=group,
                  enable=enable, clear=clear)


# -- error codes -----------------------------------------------------------------

def error_code(opcode: int, reason: int) -> int:
    """Build a command error code ``0x01_CC_RR`` from a command number and reason byte.

    Parameters
    ----------
    opcode : int
        Command number 0..255 (0x00 is used by the project for queue-level
        errors that belong to no command).
    reason : int
        Per-command reason byte 0..255.

    Returns
    -------
    int
    """
    for what, value in (("opcode", opcode), ("reason", reason)):
        as_uint(value, what, 8)
    return 0x010000 | opcode << 8 | reason


# KVM's codes, as KVM defines them (literal values: they are KVM's data, not
# derived).  They mostly follow 0x01_CC_RR, with quirks kept as-is: CLEAR
# (command 0x04) reports 0x010507, in SYNC's command byte; MAPTI/MAPI report
# an out-of-range ICID with the MAPC code; MAPI reports everything with the
# MAPTI codes.
E_ITS_MOVI_UNMAPPED_INTERRUPT = 0x010107
E_ITS_MOVI_UNMAPPED_COLLECTION = 0x010109
E_ITS_INT_UNMAPPED_INTERRUPT = 0x010307
E_ITS_CLEAR_UNMAPPED_INTERRUPT = 0x010507
E_ITS_MAPD_DEVICE_OOR = 0x010801
E_ITS_MAPD_ITTSIZE_OOR = 0x010802
E_ITS_MAPC_PROCNUM_OOR = 0x010902
E_ITS_MAPC_COLLECTION_OOR = 0x010903
E_ITS_MAPTI_UNMAPPED_DEVICE = 0x010A04
E_ITS_MAPTI_ID_OOR = 0x010A05
E_ITS_MAPTI_PHYSICALID_OOR = 0x010A06
E_ITS_INV_UNMAPPED_INTERRUPT = 0x010C07
E_ITS_INVALL_UNMAPPED_COLLECTION = 0x010D09
E_ITS_MOVALL_PROCNUM_OOR = 0x010E01
E_ITS_DISCARD_UNMAPPED_INTERRUPT = 0x010F07

# The project's own codes.  Queue-level errors that belong to no command use
# command byte 0x00, which is not an ITS command number, so they cannot
# collide with any per-command code.

# project code: the command number in DW0[7:0] is not one this model
# implements (GICv4 commands included); the command is skipped.  The opcode
# itself is available from `decode(...).code`.
E_ITS_UNKNOWN_COMMAND = error_code(0x00, 0xFF)               # 0x0100ff
# project code: the 32 command bytes at CREADR could not be read from guest
# memory (the queue lies outside guest RAM).
E_ITS_CMD_READ_FAULT = error_code(0x00, 0xFE)                # 0x0100fe
# project code: MAPTI or MAPI on an EventID that already has an ITE
# (UNPREDICTABLE in the architecture; KVM silently keeps the old mapping).
# Reason 0x08 is unused by KVM; MAPI reports it under MAPTI's command byte
# 0x0A, as KVM does for every other MAPI error.
E_ITS_MAPTI_ID_ALREADY_MAPPED = error_code(0x0A, 0x08)       # 0x010a08
# project code: INT whose target CPU has GICR_CTLR.EnableLPIs = 0 (KVM returns
# an internal -EBUSY here); reason 0x10 is outside KVM's reason bytes.
E_ITS_INT_LPIS_DISABLED = error_code(0x03, 0x10)             # 0x010310

#: The codes above that are the project's own, not KVM's.
PROJECT_ERROR_CODES = frozenset({
    E_ITS_UNKNOWN_COMMAND, E_ITS_CMD_READ_FAULT,
    E_ITS_MAPTI_ID_ALREADY_MAPPED, E_ITS_INT_LPIS_DISABLED,
})

#: code -> constant name, for every KVM and project code above.
ERROR_NAMES: dict[int, str] = dict(sorted(
    (value, name) for name, value in globals().items()
    if name.startswith("E_ITS_") and isinstance(value, int)
))

if len(ERROR_NAMES) != len([n for n in globals() if n.startswith("E_ITS_")]):
    raise AssertionError("two E_ITS_ constants share a code")

__all__ += list(ERROR_NAMES.values())


# -- GICv4 error codes (project codes) -------------------------------------------
#
# The outcomes of the GICv4 commands (gicv4-digest 3.3, 3.4, 8) as a GICv4
# ITS and the reference model (`its_core.frontend.reference_its`) report
# them: each is a "skip" of QEMU's command loop, given a code in the
# ``0x01_CC_RR`` form with the command's own number.  They are kept apart
# from `ERROR_NAMES`, the codes a GICv3 ITS can log; `GICV4_ERROR_NAMES`
# names them, `error_name`, the snapshot format and docs/reference.md know
# them.  Reasons reuse the physical commands' reason
# bytes where the meaning is the same (0x04 unmapped device, 0x05 EventID
# out of range, 0x07 unmapped interrupt, 0x08 already mapped).

# VMAPP: VPT_size > GITS_TYPER.ID_bits (GICv4.1: also VPT_size bits [7:5]).
E_ITS_VMAPP_VPT_SIZE_OOR = error_code(0x29, 0x01)            # 0x012901
# VMAPP V = 1: RDbase is not a redistributor (processor number >= CPUs).
E_ITS_VMAPP_RDBASE_OOR = error_code(0x29, 0x02)              # 0x012902
# VMAPP: the vPEID has no slot in the vPE table (GITS_BASER2).
E_ITS_VMAPP_VPEID_OOR = error_code(0x29, 0x03)               # 0x012903
# VMAPP (GICv4.1) V = 1: Default_Doorbell is neither 1023 nor an LPI.
E_ITS_VMAPP_DOORBELL_OOR = error_code(0x29, 0x04)            # 0x012904
# VMAPTI / VMAPI (reported under 0x2A, as KVM reports MAPI under MAPTI).
E_ITS_VMAPTI_UNMAPPED_DEVICE = error_code(0x2A, 0x04)        # 0x012a04
E_ITS_VMAPTI_ID_OOR = error_code(0x2A, 0x05)                 # 0x012a05
# vINTID (VMAPI: the EventID) is not an LPI number below 2**ID_bits.
E_ITS_VMAPTI_VIRTUALID_OOR = error_code(0x2A, 0x06)          # 0x012a06
# The (DeviceID, EventID) already has an ITE, physical or virtual.
E_ITS_VMAPTI_ID_ALREADY_MAPPED = error_code(0x2A, 0x08)      # 0x012a08
# Dbell_pINTID is neither 1023 nor an LPI number below 2**ID_bits.
E_ITS_VMAPTI_DOORBELL_OOR = error_code(0x2A, 0x0A)           # 0x012a0a
# The vPEID has no slot in the vPE table.
E_ITS_VMAPTI_VPEID_OOR = error_code(0x2A, 0x0B)              # 0x012a0b
# VMOVI: D = 1 and Dbell_pINTID neither 1023 nor an LPI.
E_ITS_VMOVI_DOORBELL_OOR = error_code(0x21, 0x0A)            # 0x01210a
# VMOVI: no ITE for the event.
E_ITS_VMOVI_UNMAPPED_INTERRUPT = error_code(0x21, 0x07)      # 0x012107
# VMOVI: the event's ITE is physical.
E_ITS_VMOVI_NOT_VIRTUAL = error_code(0x21, 0x0C)             # 0x01210c
# VMOVI: the ITE's vPE or the target vPE is not mapped (no valid vPE table entry).
E_ITS_VMOVI_UNMAPPED_VPE = error_code(0x21, 0x0D)            # 0x01210d
# VMOVI: the vINTID is beyond the old or the new vPE's VPT_size.
E_ITS_VMOVI_VIRTUALID_OOR = error_code(0x21, 0x06)           # 0x012106
# VMOVP: RDbase is not a redistributor.
E_ITS_VMOVP_RDBASE_OOR = error_code(0x22, 0x02)              # 0x012202
# VMOVP: the vPE is not mapped.
E_ITS_VMOVP_UNMAPPED_VPE = error_code(0x22, 0x0D)            # 0x01220d
# VMOVP (GICv4.1) DB = 1: Default_Doorbell is neither 1023 nor an LPI.
E_ITS_VMOVP_DOORBELL_OOR = error_code(0x22, 0x0A)            # 0x01220a
# VINVALL, INVDB, VSGI: the vPE is not mapped.
E_ITS_VINVALL_UNMAPPED_VPE = error_code(0x2D, 0x0D)          # 0x012d0d
E_ITS_INVDB_UNMAPPED_VPE = error_code(0x2E, 0x0D)            # 0x012e0d
E_ITS_VSGI_UNMAPPED_VPE = error_code(0x23, 0x0D)             # 0x01230d
# MOVI (a physical command) on a virtual ITE (QEMU: "ITE is not physical").
E_ITS_MOVI_VIRTUAL_INTERRUPT = error_code(0x01, 0x0C)        # 0x01010c

#: code -> constant name of the GICv4 codes above (not in `ERROR_NAMES`).
GICV4_ERROR_NAMES: dict[int, str] = dict(sorted(
    (value, name) for name, value in globals().items()
    if name.startswith("E_ITS_") and isinstance(value, int) and value not in ERROR_NAMES
))

if len(GICV4_ERROR_NAMES) + len(ERROR_NAMES) != len(
        [n for n in globals() if n.startswith("E_ITS_")]):
    raise AssertionError("two E_ITS_ constants share a code")

__all__ += ["GICV4_ERROR_NAMES", *GICV4_ERROR_NAMES.values()]


def error_name(code: int) -> str:
    """Name of an error code (`ERROR_NAMES`, then `GICV4_ERROR_NAMES`), or
    ``"E_ITS_0x..."`` for a code in neither."""
    name = ERROR_NAMES.get(code) or GICV4_ERROR_NAMES.get(code)
    return name if name is not None else f"E_ITS_{code:#08x}"
