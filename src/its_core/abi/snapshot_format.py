"""Host snapshots: the ``its-core-snapshot-1`` format, declared once as data.

A host snapshot is the state of an `ITS` (and of its redistributors) or of a
`Redistributors` alone, taken on the host side: a flat dict of dotted keys
to numpy arrays and plain Python scalars (int, bool, str).  It holds no guest
memory, and taking or loading one neither reads nor writes guest memory; the
format does not depend on the storage layout.  `SCHEMA` declares every key
(kind, shape, meaning) exactly once:

* the writers (`snapshot_its`, `snapshot_redistributors`) put every value
  through its entry (`conform`), so the dtypes are the schema's;
* the validator (`check_structure`) checks every key, type, dtype and shape
  against it, before the content checks (`_check_its`, `_check_logs`,
  `_check_redistributors` here, vectorised; the ``tables.*`` arrays in the
  core, `TranslationTables.from_arrays`, whose `TABLE_ARRAYS` this schema
  takes its ``tables.*`` entries from);
* `its_core.snapshot` stores one ``.npz`` member per key (`to_npz_members`,
  `from_npz_members`);
* docs/save-format.md shows `schema_markdown()` (a test keeps them equal).

Every problem is a `RestoreError` whose ``field`` is the key at fault.  The
builders (`build_its`, `build_redistributors`) validate everything first,
then build new objects through the ITS's and the redistributors' internal
interface (`load_queue`, `load_baser`, `install_tables`, `load_enabled`,
`load_command_errors`, `Redistributors.load_state`): a refused snapshot
leaves nothing half-built behind, and never touches an existing object.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from its_core.abi.saverestore import ITS_REGISTER_ORDER
from its_core.core._core import TABLE_ARRAYS, VIRTUAL_TABLE_ARRAYS, TranslationTables
from its_core.core.parameters import FLAT_MAX_DEVICE_BITS, LAYOUTS
from its_core.errors import RestoreError
from its_core.frontend import commands, registers
from its_core.frontend._cmdq import MAX_ERRORS
from its_core.frontend.access import ACCESS_ERRORS_KEPT, AccessError

__all__ = ["FORMAT", "Entry", "SCHEMA", "DIMENSIONS", "ITS_REGISTERS", "conform", "snapshot_its",
           "snapshot_redistributors", "check_structure", "build_its", "build_redistributors",
           "to_npz_members", "from_npz_members", "schema_markdown"]

#: The format string of every snapshot this module writes and reads.
FORMAT = "its-core-snapshot-1"

#: The ITS registers a snapshot keeps, as stored (`ITS.stored_register`): what
#: `ITS.save_registers` saves but GITS_CTLR (its state is ``its.enabled``;
#: Quiescent is derived).
ITS_REGISTERS = ITS_REGISTER_ORDER + ("GITS_TYPER",)
_REGISTER_MEANINGS = {
    "GITS_IIDR": "as read; must be this model's (KVM's identity, table ABI Revision 0; "
                 "GICv4: Revision 1, its-core-rev1)",
    "GITS_TYPER": "as read; must match its.device_bits and its.event_bits (and, GICv4, "
                  "its.gic_version)",
    "GITS_CBASER": "as stored (no RES0 bit set)",
    "GITS_CREADR": "the byte offset of the next command, in the queue; without Stalled "
                   "(its.stalled)",
    "GITS_CWRITER": "the byte offset where the driver writes next, in the queue",
    "GITS_BASER0": "as stored: Type and Entry_Size as reset, no RES0 bit set",
    "GITS_BASER1": "as stored: Type and Entry_Size as reset, no RES0 bit set, Indirect 0",
}
_BASER_MEANING = "0 (no table: RAZ/WI)"
_REGISTER_MEANINGS["GITS_BASER2"] = ("0 (no table: RAZ/WI); GICv4: the vPE table as stored "
                                     "(Type and Entry_Size as reset, no RES0 bit set)")


class Entry(NamedTuple):
    """One key of the format.

    kind : str
        ``"int"``, ``"bool"`` or ``"str"``: a plain Python scalar (an int is
        0 .. 2**64 - 1); otherwise the numpy dtype of an array (``"u1"`` ..
        ``"u8"``, ``"i4"``, ``"b1"``; ``"U"``: unicode of any length).
    shape : tuple of str
        Empty for a scalar; else one `DIMENSIONS` name per axis.
    meaning : str
        What the value is, and what a valid one looks like.
    """

    key: str
    kind: str
    shape: tuple
    meaning: str

    @property
    def scalar(self) -> bool:
        """A plain Python scalar (no shape), not an array."""
        return not self.shape

    @property
    def group(self) -> str:
        """``format``, ``its``, ``redistributors`` or ``redistributors.access_errors``:
        the keys that are present together or not at all."""
        return _group_of(self.key)


def _group_of(key: str) -> str:
    if key == "format":
        return "format"
    if key in _VIRTUAL_KEYS:
        return _VIRTUAL_KEYS[key]
    if key.startswith("redistributors.access_errors."):
        return "redistributors.access_errors"
    if key.startswith("redistributors."):
        return "redistributors"
    return "its"


#: Array dimensions: each axis of an array is one of these.  The first six
#: are free: every array with that dimension has the same length.  The others
#: follow from scalars.
DIMENSIONS = {
    "devices": "mapped devices (rows of tables.device_id)",
    "events": "mapped events, all devices (the sum of tables.num_events)",
    "collections": "mapped collections (rows of tables.collection_icid)",
    "command_errors": "recorded command errors (at most 2**20)",
    "access_errors": "recorded invalid accesses of the ITS's log (at most 65536)",
    "redistributors.access_errors": "recorded invalid accesses of the redistributors' own "
                                    "log (at most 65536)",
    "virtual_events": "GICv4: virtual ITEs, all devices (rows of tables.virtual_device_id)",
    "vpes": "GICv4: vPEs mapped in the ITS's vPEID -> CPU table (rows of tables.vpe_id)",
    "vpe_rows": "GICv4: vPEIDs whose attributes are not all as at reset (rows of "
                "redistributors.vpe_id)",
    "cpus": "redistributors.num_cpus",
    "pending_bytes": "2**redistributors.intid_bits / 8",
    "intids": "2**redistributors.intid_bits",
    "vsgis": "16 (vSGIs per vPE)",
    "vsgi_fields": "3 (priority, group, enable)",
}
_DERIVED = {
    "cpus": lambda values: values["redistributors.num_cpus"],
    "pending_bytes": lambda values: (1 << values["redistributors.intid_bits"]) // 8,
    "intids": lambda values: 1 << values["redistributors.intid_bits"],
    "vsgis": lambda values: 16,
    "vsgi_fields": lambda values: 3,
}

#: The columns of an invalid-access log (`AccessError`), declared once for
#: the ITS's log and the redistributors' own.
_ACCESS_COLUMNS = (
    ("frame", "U", "'GITS', or 'GICR' and a CPU number below num_cpus ('GICR3'); oldest "
                   "first"),
    ("offset", "u8", "offset in the frame (GITS: below 0x20000, GICR: below 0x10000)"),
    ("size", "u1", "access size: 1, 2, 4 or 8 bytes"),
    ("write", "b1", "a write (else a read)"),
    ("value", "u8", "the value written, fitting the size (0 for a read)"),
    ("reason", "U", "why the access hit no register"),
)


def _access_entries(prefix: str, dimension: str) -> list[Entry]:
    return [Entry(f"{prefix}{name}", kind, (dimension,), meaning)
            for name, kind, meaning in _ACCESS_COLUMNS]


#: The GICv4 keys: group "its.virtual" (a GICv4 ITS: its GIC version and the
#: core's `VIRTUAL_TABLE_ARRAYS`) and "redistributors.virtual" (GICv4
#: redistributors: `VirtualLPIs`).  A GICv3 snapshot has neither group.
_VIRTUAL_ENTRIES = [
    Entry("its.gic_version", "str", (), "GICv4 ITS: '4.0' or '4.1' (a GICv3 ITS has no "
                                        "its.virtual keys)"),
    *[Entry(f"tables.{name}", dtype, (dimension,), meaning)
      for name, dtype, dimension, meaning in VIRTUAL_TABLE_ARRAYS],
    Entry("redistributors.gic_version", "str", (), "GICv4 redistributors: '4.0' or '4.1' (as "
                                                   "its.gic_version)"),
    Entry("redistributors.vpe_id", "u2", ("vpe_rows",),
          "vPEIDs with any attribute not as at reset, strictly increasing"),
    Entry("redistributors.vpe_mapped", "b1", ("vpe_rows",),
          "mapped (VMAPP V = 1); the mapped ones are exactly the ITS's tables.vpe_id"),
    Entry("redistributors.vpe_cpu", "i4", ("vpe_rows",), "RDbase: the CPU, 0..num_cpus-1"),
    Entry("redistributors.vpt_addr", "u8", ("vpe_rows",),
          "VPT address: 64 KiB aligned, below 2**52"),
    Entry("redistributors.vpt_size", "u1", ("vpe_rows",), "VPT_size, at most intid_bits - 1"),
    Entry("redistributors.vconf_addr", "u8", ("vpe_rows",),
          "GICv4.1 VCONF_addr: 64 KiB aligned, below 2**52 (GICv4.0: 0)"),
    Entry("redistributors.default_doorbell", "u4", ("vpe_rows",),
          "GICv4.1 default doorbell: 1023 (none) or an LPI below 2**intid_bits (GICv4.0: 1023)"),
    Entry("redistributors.doorbell_armed", "b1", ("vpe_rows",),
          "GICv4.1: a deschedule armed the default doorbell (GICv4.0: False)"),
    Entry("redistributors.vsgi_pending", "u2", ("vpe_rows",),
          "GICv4.1: pending vSGIs, bit n = vSGI n (GICv4.0: 0)"),
    Entry("redistributors.vsgi_config", "u1", ("vpe_rows", "vsgis", "vsgi_fields"),
          "GICv4.1: each vSGI's priority (a multiple of 16), group and enable (0 or 1) "
          "(GICv4.0: 0)"),
    Entry("redistributors.GICR_VPROPBASER", "u8", ("cpus",),
          "each CPU's GICR_VPROPBASER as stored (GICv4.1: only the bits a write keeps)"),
    Entry("redistributors.GICR_VPENDBASER", "u8", ("cpus",),
          "each CPU's GICR_VPENDBASER as read (only the bits a write keeps); Valid = a vPE is "
          "resident (GICv4.1: a mapped vPEID)"),
    Entry("redistributors.GICR_VSGIR", "u4", ("cpus",), "each CPU's GICR_VSGIR (vPEID only; "
                                                        "GICv4.0: 0)"),
    Entry("redistributors.resident_vpt", "u8", ("cpus",),
          "the resident vPE's VPT as captured when it became resident, 64 KiB aligned (0 on a "
          "CPU without one)"),
    Entry("redistributors.resident_limit", "u8", ("cpus",),
          "first vINTID not cached: a power of two up to 2**intid_bits (0 on a CPU without a "
          "resident vPE)"),
    Entry("redistributors.resident_vpe", "i4", ("cpus",),
          "GICv4.1: the resident vPEID (VPENDBASER.vPEID); -1 otherwise"),
    Entry("redistributors.resident_config", "u8", ("cpus",),
          "GICv4.1: the resident vPE's VCONF_addr as captured (0 otherwise)"),
    Entry("redistributors.cached_pending", "u1", ("cpus", "pending_bytes"),
          "the resident vPE's cached pending vLPIs in the VPT layout: only vINTIDs 8192 .. "
          "resident_limit - 1, zero on a CPU without one"),
    Entry("redistributors.cached_taken", "u1", ("cpus", "pending_bytes"),
          "vINTIDs taken while resident (their VPT bits are cleared at write-back): as "
          "cached_pending's range"),
]
_VIRTUAL_KEYS = {entry.key: ("its.virtual" if entry.key.startswith(("its.", "tables."))
                             else "redistributors.virtual") for entry in _VIRTUAL_ENTRIES}

#: Every key of ``its-core-snapshot-1``, in the order a snapshot lists them.
SCHEMA: dict[str, Entry] = {entry.key: entry for entry in [
    Entry("format", "str", (), f"always {FORMAT!r}"),
    Entry("its.layout", "str", (), "storage layout of the tables: flat, twolevel or hash "
                                   "(ITS.from_snapshot(layout=...) may choose another)"),
    Entry("its.num_cpus", "int", (), "redistributors (collection targets), 1..65536"),
    Entry("its.device_bits", "int", (), "DeviceID bits, 1..32 (flat: at most 20)"),
    Entry("its.event_bits", "int", (), "EventID bits, 1..32"),
    Entry("its.intid_bits", "int", (), "LPI INTID bits, 14..24"),
    Entry("its.stall_on_error", "bool", (), "ITS(stall_on_error=...)"),
    Entry("its.strict", "bool", (), "ITS.strict"),
    Entry("its.enabled", "bool", (), "GITS_CTLR.Enabled: only with GITS_CBASER, BASER0 and "
                                     "BASER1 Valid, and then, unless stalled, with "
                                     "GITS_CREADR = GITS_CWRITER"),
    Entry("its.stalled", "bool", (), "GITS_CREADR.Stalled"),
    *[Entry(f"its.{name}", "int", (), _REGISTER_MEANINGS.get(name, _BASER_MEANING))
      for name in ITS_REGISTERS],
    *[Entry(f"tables.{name}", dtype, (dimension,), meaning)
      for name, dtype, dimension, meaning in TABLE_ARRAYS],
    Entry("command_errors.offset", "u4", ("command_errors",),
          "queue byte offset of each failed command (a multiple of 32), oldest first"),
    Entry("command_errors.opcode", "u1", ("command_errors",), "its command number"),
    Entry("command_errors.code", "u4", ("command_errors",),
          "its error code (one of docs/reference.md's)"),
    Entry("command_errors.dropped", "int", (), "errors counted but not recorded (only "
                                               "once 2**20 are recorded)"),
    *_access_entries("access_errors.", "access_errors"),
    Entry("redistributors.num_cpus", "int", (), "redistributors, 1..65536 (an ITS's: "
                                                "its.num_cpus)"),
    Entry("redistributors.intid_bits", "int", (), "LPI INTID bits, 14..24 (an ITS's: "
                                                  "its.intid_bits)"),
    Entry("redistributors.strict", "bool", (), "Redistributors.strict"),
    Entry("redistributors.GICR_PROPBASER", "int", (),
          "as stored (no RES0 bit set); one register for every CPU, as KVM keeps it"),
    Entry("redistributors.GICR_CTLR", "u4", ("cpus",), "each CPU's GICR_CTLR: EnableLPIs or 0"),
    Entry("redistributors.GICR_PENDBASER", "u8", ("cpus",),
          "each CPU's GICR_PENDBASER as stored (no RES0 bit; PTZ reads as 0)"),
    Entry("redistributors.ptz", "b1", ("cpus",),
          "each CPU's PTZ as last written: enabling LPIs takes the pending table as zero "
          "(only while EnableLPIs is 0)"),
    Entry("redistributors.pending", "u1", ("cpus", "pending_bytes"),
          "each CPU's pending bitmap in the pending-table layout (bit INTID % 8 of byte "
          "INTID / 8): zero below INTID 8192 and on CPUs with EnableLPIs 0"),
    Entry("redistributors.config", "u1", ("intids",),
          "the LPI configuration cache by INTID (priority [7:2], enable [0]); zero below 8192"),
    *_access_entries("redistributors.access_errors.", "redistributors.access_errors"),
    *_VIRTUAL_ENTRIES,
]}

_GROUPS = {}
for _entry in SCHEMA.values():
    _GROUPS.setdefault(_entry.group, []).append(_entry.key)
del _entry

#: The numpy dtype of a scalar kind in an ``.npz`` (a 0-d member).
_NPZ_SCALAR = {"int": np.dtype(np.uint64), "bool": np.dtype(np.bool_), "str": np.dtype("U")}
_U64 = (1 << 64) - 1
_MAX_CPUS = 65536
_INTID_BITS = range(14, 25)
_GITS_FRAME_BYTES = 0x2_0000          # checked against its.ITS_REGION_BYTES by the tests
_GICR_FRAME_BYTES = 0x1_0000          # ... and redistributors.RD_FRAME_BYTES
_LPI_FIRST = 8192
_OFFSET = registers.GITS_CWRITER.field("Offset")
_STALLED = registers.GITS_CREADR.field("Stalled")
_VALID = registers.GITS_BASER0.field("Valid")
_INDIRECT = registers.GITS_BASER0.field("Indirect")
_CBASER_VALID = registers.GITS_CBASER.field("Valid")
_ENABLE_LPIS = registers.GICR_CTLR.field("EnableLPIs")
_PTZ = registers.GICR_PENDBASER.field("PTZ")


def _error(key: str, reason: str) -> RestoreError:
    return RestoreError("snapshot", None, key, reason)


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"a {value.ndim}-D {value.dtype} array of shape {value.shape}"
    return f"{type(value).__name__} {value!r}"[:120]


# ---------------------------------------------------------------------------- writing

def conform(key: str, value):
    """`value` as the schema's entry for `key` holds it: a Python int, bool or
    str, or a contiguous array of the entry's dtype (converted if needed, so
    callers pass fresh arrays: this does not copy one that already fits)."""
    entry = SCHEMA[key]
    if entry.kind == "int":
        return int(value)
    if entry.kind == "bool":
        return bool(value)
    if entry.kind == "str":
        return str(value)
    if entry.kind == "U":
        return np.asarray(value, dtype=str) if len(value) else np.empty(0, "U1")
    return np.ascontiguousarray(value, dtype=np.dtype(entry.kind))


def _access_log_entries(log, prefix: str) -> dict:
    rows = list(log)
    columns = list(zip(*rows)) if rows else [()] * len(_ACCESS_COLUMNS)
    return {f"{prefix}{name}": conform(f"{prefix}{name}", list(column))
            for (name, _, _), column in zip(_ACCESS_COLUMNS, columns)}


def _redistributor_entries(rd, with_log: bool) -> dict:
    state = rd.register_state()
    lpi = rd.lpi_state
    values = {
        "redistributors.num_cpus": rd.num_cpus,
        "redistributors.intid_bits": rd.intid_bits,
        "redistributors.strict": rd.strict,
        "redistributors.GICR_PROPBASER": state["GICR_PROPBASER"],
        "redistributors.GICR_CTLR": state["GICR_CTLR"],
        "redistributors.GICR_PENDBASER": state["GICR_PENDBASER"],
        "redistributors.ptz": state["ptz"],
        "redistributors.pending": lpi.pending_array.copy(),
        "redistributors.config": lpi.config_array.copy(),
    }
    entries = {key: conform(key, value) for key, value in values.items()}
    if with_log:
        entries.update(_access_log_entries(rd.access_errors, "redistributors.access_errors."))
    if rd.virtual is not None:
        virtual = {"redistributors.gic_version": rd.gic_version,
                   **{f"redistributors.{name}": value
                      for name, value in rd.virtual.snapshot_arrays().items()}}
        entries.update({key: conform(key, value) for key, value in virtual.items()})
    return entries


def snapshot_its(its, redistributors: bool = True) -> dict:
    """`ITS.snapshot`: the ITS's state (and, with `redistributors`, that of
    its redistributors) as a new dict of fresh arrays and scalars; a GICv4
    ITS adds the "its.virtual" keys.  ValueError if host code put GICv4
    virtual state in the tables of a GICv3 ITS (its snapshot has no keys for
    it)."""
    tables = its.tables
    gicv4 = its.gic_version != "3"
    if not gicv4 and (tables.num_virtual_events or tables.num_vpes):
        raise ValueError(f"{tables.num_virtual_events} virtual ITEs and {tables.num_vpes} "
                         f"vPEs: its-core-snapshot-1 has no keys for GICv4 virtual state")
    values = {
        "format": FORMAT,
        "its.layout": its.layout,
        "its.num_cpus": its.num_cpus,
        "its.device_bits": tables.device_bits,
        "its.event_bits": tables.event_bits,
        "its.intid_bits": tables.intid_bits,
        "its.stall_on_error": its.stall_on_error,
        "its.strict": its.strict,
        "its.enabled": its.enabled,
        "its.stalled": its.stalled,
        **{f"its.{name}": its.stored_register(name) for name in ITS_REGISTERS},
    }
    snapshot = {key: conform(key, value) for key, value in values.items()}
    arrays = tables.to_arrays()
    if gicv4:
        snapshot["its.gic_version"] = its.gic_version
        for name, dtype, _, _ in VIRTUAL_TABLE_ARRAYS:     # tables without virtual state
            arrays.setdefault(name, np.empty(0, dtype))
    for name, array in arrays.items():
        snapshot[f"tables.{name}"] = conform(f"tables.{name}", array)
    rows = its.errors.as_array()
    for name in ("offset", "opcode", "code"):
        snapshot[f"command_errors.{name}"] = conform(f"command_errors.{name}", rows[name])
    snapshot["command_errors.dropped"] = conform("command_errors.dropped", its.errors.dropped)
    snapshot.update(_access_log_entries(its.access_errors, "access_errors."))
    if redistributors:
        rd = its.redistributors
        snapshot.update(_redistributor_entries(rd, rd.access_errors is not its.access_errors))
    return snapshot


def snapshot_redistributors(rd) -> dict:
    """`Redistributors.snapshot`: their state, with their own access log."""
    return {"format": FORMAT, **_redistributor_entries(rd, True)}


# ---------------------------------------------------------------------------- validation

def _scalar(entry: Entry, value):
    """A scalar's value as a Python int/bool/str, or RestoreError."""
    if entry.kind == "int":
        if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
            value = int(value)
            if 0 <= value <= _U64:
                return value
            raise _error(entry.key, f"{value} does not fit 64 bits (0 .. 2**64 - 1)")
    elif entry.kind == "bool":
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
    elif isinstance(value, str):
        return str(value)
    raise _error(entry.key, f"expected a plain {entry.kind}, got {_describe(value)}")


def _check_format(value) -> None:
    if not isinstance(value, str) or value != FORMAT:
        raise _error("format", f"{_describe(value)} is not {FORMAT!r}: a snapshot of another "
                               "format or version")


def check_structure(snapshot) -> dict:
    """Check the structure of a snapshot against `SCHEMA`: the format string,
    no unknown key, every group (`Entry.group`) present whole or absent,
    scalars of their kind, arrays of their dtype and shape, the dimensions of
    every array consistent.  Returns the values (scalars as Python values,
    arrays as given) by key; RestoreError naming the key otherwise."""
    if not isinstance(snapshot, Mapping):
        raise _error("format", f"a snapshot is a dict, got {type(snapshot).__name__}")
    if "format" not in snapshot:
        raise _error("format", f"missing: not an {FORMAT} snapshot")
    _check_format(snapshot["format"])
    for key in snapshot:
        if key not in SCHEMA:
            raise _error(str(key), f"not a key of {FORMAT}")
    groups = {_group_of(key) for key in snapshot}
    if "redistributors.access_errors" in groups or "redistributors.virtual" in groups:
        groups.add("redistributors")
    if "its.virtual" in groups:
        groups.add("its")
    for group in groups:
        for key in _GROUPS[group]:
            if key not in snapshot:
                raise _error(key, "missing")
    values = {}
    for key, value in snapshot.items():
        entry = SCHEMA[key]
        if entry.scalar:
            values[key] = _scalar(entry, value)
    if "redistributors" in groups:                  # the scalars dimensions follow from
        if not 1 <= values["redistributors.num_cpus"] <= _MAX_CPUS:
            raise _error("redistributors.num_cpus", f"{values['redistributors.num_cpus']} is "
                                                    f"not in 1..{_MAX_CPUS}")
        if values["redistributors.intid_bits"] not in _INTID_BITS:
            raise _error("redistributors.intid_bits",
                         f"{values['redistributors.intid_bits']} is not in "
                         f"{_INTID_BITS.start}..{_INTID_BITS.stop - 1}")
    lengths = {}
    for key, value in snapshot.items():
        entry = SCHEMA[key]
        if entry.scalar:
            continue
        dtype_ok = isinstance(value, np.ndarray) and (
            value.dtype.kind == "U" if entry.kind == "U" else value.dtype == np.dtype(entry.kind))
        if not dtype_ok or value.ndim != len(entry.shape):
            wanted = "unicode" if entry.kind == "U" else str(np.dtype(entry.kind))
            raise _error(key, f"expected a {len(entry.shape)}-D {wanted} array, got "
                              f"{_describe(value)}")
        for axis, dimension in enumerate(entry.shape):
            if dimension in _DERIVED:
                expected = _DERIVED[dimension](values)
                if value.shape[axis] != expected:
                    raise _error(key, f"has shape {value.shape}: axis {axis} must be "
                                      f"{DIMENSIONS[dimension]} = {expected}")
            else:
                first = lengths.setdefault(dimension, (key, value.shape[axis]))
                if value.shape[axis] != first[1]:
                    raise _error(key, f"has {value.shape[axis]} rows but {first[0]} has "
                                      f"{first[1]} (both are per {dimension})")
        values[key] = value
    return values


def _groups(values: dict) -> set:
    return {_group_of(key) for key in values}


def _canonical(key: str, register: registers.Register, value: int, *,
               old: int | None = None) -> None:
    """RestoreError unless `value` is what `register` can hold after writes
    starting from `old` (default: its reset value): read-only fields as they
    were, no RES0 bit set."""
    old = register.reset if old is None else old
    if register.merge_write(old, value) != value:
        raise _error(key, f"{value:#x} is not a value {register.name} can hold (read-only "
                          f"fields differ from {old:#x}, or RES0 bits are set)")


def _check_its(values: dict) -> None:
    """The ITS's scalars and registers (everything but the tables and logs)."""
    layout = values["its.layout"]
    if layout not in LAYOUTS:
        raise _error("its.layout", f"{layout!r} is not one of {LAYOUTS}")
    if not 1 <= values["its.num_cpus"] <= _MAX_CPUS:
        raise _error("its.num_cpus", f"{values['its.num_cpus']} is not in 1..{_MAX_CPUS}")
    for key in ("its.device_bits", "its.event_bits"):
        if not 1 <= values[key] <= 32:
            raise _error(key, f"{values[key]} is not in 1..32")
    if layout == "flat" and values["its.device_bits"] > FLAT_MAX_DEVICE_BITS:
        raise _error("its.device_bits", f"{values['its.device_bits']} DeviceID bits in the flat "
                                        f"layout (at most {FLAT_MAX_DEVICE_BITS})")
    if values["its.intid_bits"] not in _INTID_BITS:
        raise _error("its.intid_bits", f"{values['its.intid_bits']} is not in "
                                       f"{_INTID_BITS.start}..{_INTID_BITS.stop - 1}")
    version = values.get("its.gic_version", "3")
    if version not in ("4.0", "4.1") and "its.gic_version" in values:
        raise _error("its.gic_version", f"{version!r} is not '4.0' or '4.1'")
    its_map = registers.its_register_map(version)
    gicv4, gicv41 = version != "3", version == "4.1"
    regs = {name: values[f"its.{name}"] for name in ITS_REGISTERS}
    for name, value in regs.items():
        width = registers.ITS_REGISTERS[name].width
        if value >> width:
            raise _error(f"its.{name}", f"{value:#x} does not fit {name}'s {width} bits")
    iidr = registers.GITS_IIDR_LAYOUT["Revision"].deposit(registers.GITS_IIDR.reset, int(gicv4))
    if regs["GITS_IIDR"] != iidr:
        raise _error("its.GITS_IIDR", f"{regs['GITS_IIDR']:#x} is not this model's "
                                      f"{iidr:#x}")
    # As `ITS` reports it (frontend/its.py): GICv4 adds 16-byte ITEs and its
    # virtual features.
    typer = registers.GITS_TYPER.encode(Physical=1, ITT_entry_size=(16 if gicv4 else 8) - 1,
                                        ID_bits=values["its.event_bits"] - 1,
                                        Devbits=values["its.device_bits"] - 1,
                                        Virtual=gicv4, VMOVP=gicv4, VSGI=gicv41, VMAPP=gicv41)
    if regs["GITS_TYPER"] != typer:
        raise _error("its.GITS_TYPER", f"{regs['GITS_TYPER']:#x} does not match its.device_bits "
                                       f"and its.event_bits (expected {typer:#x})")
    _canonical("its.GITS_CBASER", registers.GITS_CBASER, regs["GITS_CBASER"], old=0)
    for n in range(8):
        name = f"GITS_BASER{n}"
        _canonical(f"its.{name}", its_map[name], regs[name])
    if _INDIRECT.extract(regs["GITS_BASER1"]):
        raise _error("its.GITS_BASER1", "Indirect is set: the collection table is flat")
    queue_bytes = registers.cbaser_queue_bytes(regs["GITS_CBASER"])
    for name in ("GITS_CREADR", "GITS_CWRITER"):
        value = regs[name]
        if value & ~_OFFSET.mask:
            raise _error(f"its.{name}", f"{value:#x} has bits outside Offset (Stalled is "
                                        "its.stalled)")
        if value >= queue_bytes:
            raise _error(f"its.{name}", f"offset {value:#x} is beyond the {queue_bytes:#x}-byte "
                                        "queue GITS_CBASER describes")
    if values["its.enabled"]:
        for name, valid in (("GITS_CBASER", _CBASER_VALID), ("GITS_BASER0", _VALID),
                            ("GITS_BASER1", _VALID)):
            if not valid.extract(regs[name]):
                raise _error("its.enabled", f"enabled with {name}.Valid = 0")
        if not values["its.stalled"] and regs["GITS_CREADR"] != regs["GITS_CWRITER"]:
            raise _error("its.enabled", "enabled and not stalled with commands left between "
                                        "GITS_CREADR and GITS_CWRITER (a running ITS processes "
                                        "its queue)")


def _first(mask) -> int:
    return int(np.flatnonzero(mask)[0])


def _check_command_log(values: dict) -> None:
    offsets, codes = values["command_errors.offset"], values["command_errors.code"]
    count, dropped = offsets.shape[0], values["command_errors.dropped"]
    if count > MAX_ERRORS:
        raise _error("command_errors.offset", f"{count} errors: a log keeps at most {MAX_ERRORS}")
    if dropped and count < MAX_ERRORS:
        raise _error("command_errors.dropped", f"{dropped} dropped errors, but the log holds "
                                               f"{count} of {MAX_ERRORS}: errors are only "
                                               "dropped once it is full")
    bad = offsets % 32 != 0
    if bad.any():
        index = _first(bad)
        raise _error("command_errors.offset", f"row {index}: {int(offsets[index]):#x} is not a "
                                              "command's offset (a multiple of 32)")
    found = np.minimum(np.searchsorted(_ERROR_CODES, codes), _ERROR_CODES.size - 1)
    bad = _ERROR_CODES[found] != codes
    if bad.any():
        index = _first(bad)
        raise _error("command_errors.code", f"row {index}: {int(codes[index]):#x} is not an "
                                            "error code of this model")


_ERROR_CODES = np.array(sorted({**commands.ERROR_NAMES, **commands.GICV4_ERROR_NAMES}),
                        np.uint32)
_FRAME = re.compile(r"GICR(0|[1-9][0-9]{0,4})")
_SIZE_MASKS = np.array([0, 0xFF, 0xFFFF, 0, 0xFFFF_FFFF, 0, 0, 0, _U64], np.uint64)


def _check_access_log(values: dict, prefix: str, num_cpus: int) -> None:
    frames = values[f"{prefix}frame"]
    count = frames.shape[0]
    if count > ACCESS_ERRORS_KEPT:
        raise _error(f"{prefix}frame", f"{count} accesses: a log keeps at most "
                                       f"{ACCESS_ERRORS_KEPT}")
    if not count:
        return
    offsets, sizes = values[f"{prefix}offset"], values[f"{prefix}size"]
    writes, written = values[f"{prefix}write"], values[f"{prefix}value"]
    names, inverse = np.unique(frames, return_inverse=True)
    limits = []
    for name in names.tolist():
        match = _FRAME.fullmatch(name)
        if name == "GITS":
            limits.append(_GITS_FRAME_BYTES)
        elif match and int(match.group(1)) < num_cpus:
            limits.append(_GICR_FRAME_BYTES)
        else:
            index = _first(frames == name)
            raise _error(f"{prefix}frame", f"row {index}: {name!r} is not 'GITS', or 'GICR' and a "
                                           f"CPU number below {num_cpus}")
    bad = offsets >= np.array(limits, np.uint64)[inverse.reshape(-1)]
    if bad.any():
        index = _first(bad)
        raise _error(f"{prefix}offset", f"row {index}: offset {int(offsets[index]):#x} is "
                                        f"outside the {frames[index]} frame")
    bad = (sizes > 8) | (_SIZE_MASKS[np.minimum(sizes, 8)] == 0)
    if bad.any():
        index = _first(bad)
        raise _error(f"{prefix}size", f"row {index}: {int(sizes[index])} is not 1, 2, 4 or 8")
    bad = ((written & ~_SIZE_MASKS[sizes]) != 0) | (~writes & (written != 0))
    if bad.any():
        index = _first(bad)
        raise _error(f"{prefix}value", f"row {index}: {int(written[index]):#x} is not a "
                                       f"{int(sizes[index])}-byte "
                                       f"{'write' if writes[index] else 'read (0)'}")


def _check_redistributors(values: dict) -> None:
    _canonical("redistributors.GICR_PROPBASER", registers.GICR_PROPBASER,
               values["redistributors.GICR_PROPBASER"])
    ctlr = values["redistributors.GICR_CTLR"]
    bad = (ctlr & np.uint32(~_ENABLE_LPIS.mask & 0xFFFF_FFFF)) != 0
    if bad.any():
        index = _first(bad)
        raise _error("redistributors.GICR_CTLR", f"CPU {index}: {int(ctlr[index]):#x} is not "
                                                 "EnableLPIs or 0")
    enabled = ctlr != 0
    pendbaser = values["redistributors.GICR_PENDBASER"]
    register = registers.GICR_PENDBASER
    keep = np.uint64(register.mask & ~register.write_mask | _PTZ.mask)
    bad = (pendbaser & keep) != np.uint64(register.reset & ~register.write_mask & register.mask)
    if bad.any():
        index = _first(bad)
        raise _error("redistributors.GICR_PENDBASER", f"CPU {index}: {int(pendbaser[index]):#x} "
                     "is not a value GICR_PENDBASER holds (read-only or RES0 bits, or PTZ, set)")
    ptz = values["redistributors.ptz"]
    bad = ptz & enabled
    if bad.any():
        raise _error("redistributors.ptz", f"CPU {_first(bad)}: PTZ with EnableLPIs set (enabling "
                                           "LPIs consumes it)")
    pending = values["redistributors.pending"]
    bad = pending[:, :_LPI_FIRST // 8].any(axis=1) | (pending.any(axis=1) & ~enabled)
    if bad.any():
        cpu = _first(bad)
        what = ("INTIDs below 8192 pending" if pending[cpu, :_LPI_FIRST // 8].any()
                else "LPIs pending with EnableLPIs 0")
        raise _error("redistributors.pending", f"CPU {cpu}: {what}")
    if values["redistributors.config"][:_LPI_FIRST].any():
        raise _error("redistributors.config", "configuration bytes cached below INTID 8192")


_VPE_ADDRESS = np.uint64(((1 << 52) - 1) & ~0xFFFF)      # 64 KiB aligned, below 2**52


def _check_virtual_redistributors(values: dict) -> None:
    """The "redistributors.virtual" keys (GICv4 redistributors), vectorised."""
    key = "redistributors."
    version = values[key + "gic_version"]
    if version not in ("4.0", "4.1"):
        raise _error(key + "gic_version", f"{version!r} is not '4.0' or '4.1'")
    v41 = version == "4.1"
    num_cpus, intid_bits = values[key + "num_cpus"], values[key + "intid_bits"]
    ids = values[key + "vpe_id"]
    bad = np.zeros(ids.size, bool)
    bad[1:] = ids[1:] <= ids[:-1]
    checks = [
        ("vpe_id", bad, "not strictly increasing"),
        ("vpe_cpu", (values[key + "vpe_cpu"] < 0) | (values[key + "vpe_cpu"] >= num_cpus),
         f"not a CPU below {num_cpus}"),
        ("vpt_addr", (values[key + "vpt_addr"] & ~_VPE_ADDRESS) != 0,
         "not a 64 KiB aligned address below 2**52"),
        ("vpt_size", values[key + "vpt_size"] > intid_bits - 1,
         f"above intid_bits - 1 = {intid_bits - 1}"),
        ("vconf_addr", (values[key + "vconf_addr"] & ~_VPE_ADDRESS) != 0 if v41
         else values[key + "vconf_addr"] != 0,
         "not a 64 KiB aligned address below 2**52" if v41 else "not 0 (GICv4.0)"),
    ]
    doorbell = values[key + "default_doorbell"].astype(np.uint64)
    if v41:
        config = values[key + "vsgi_config"]
        checks += [
            ("default_doorbell", (doorbell != 1023) & ((doorbell < _LPI_FIRST)
                                                       | (doorbell >> np.uint64(intid_bits) != 0)),
             f"neither 1023 nor an LPI below 2**{intid_bits}"),
            ("vsgi_config", ((config[:, :, 0] & 0xF) != 0).any(axis=1)
             | (config[:, :, 1:] > 1).any(axis=(1, 2)),
             "a priority not a multiple of 16, or a group / enable not 0 or 1"),
        ]
    else:
        checks += [
            ("default_doorbell", doorbell != 1023, "not 1023 (GICv4.0)"),
            ("doorbell_armed", values[key + "doorbell_armed"], "set (GICv4.0)"),
            ("vsgi_pending", values[key + "vsgi_pending"] != 0, "not 0 (GICv4.0)"),
            ("vsgi_config", values[key + "vsgi_config"].any(axis=(1, 2)), "not 0 (GICv4.0)"),
        ]
    for name, mask, reason in checks:
        if np.any(mask):
            row = _first(mask)
            raise _error(key + name, f"row {row} (vPEID {int(ids[row])}): {reason}")
    # Per CPU: the VLPI registers and residency.
    prop_kept = registers.GICR_VPROPBASER_V41_KEPT if v41 else _U64
    pend_layout = (registers.GICR_VPENDBASER_V41_LAYOUT if v41
                   else registers.GICR_VPENDBASER_V40_LAYOUT)
    pend_kept = (registers.GICR_VPENDBASER_V41_KEPT if v41
                 else registers.GICR_VPENDBASER_V40_KEPT)
    vpend = values[key + "GICR_VPENDBASER"]
    resident = (vpend & np.uint64(pend_layout["Valid"].mask)) != 0
    limit, vpt = values[key + "resident_limit"], values[key + "resident_vpt"]
    resident_vpe, config = values[key + "resident_vpe"], values[key + "resident_config"]
    power = (limit & (limit - np.uint64(1))) == 0
    mapped = np.zeros(1 << 16, bool)
    mapped[ids[values[key + "vpe_mapped"]]] = True
    pend_vpe = ((vpend >> np.uint64(pend_layout["vPEID"].lsb)) & np.uint64(0xFFFF)).astype(
        np.int64) if v41 else np.full(vpend.size, -1)
    cpu_checks = [
        ("GICR_VPROPBASER", (values[key + "GICR_VPROPBASER"] & np.uint64(~prop_kept & _U64)) != 0,
         "sets bits a write does not keep"),
        ("GICR_VPENDBASER", (vpend & np.uint64(~pend_kept & _U64)) != 0,
         "sets bits a write does not keep"),
        ("GICR_VSGIR", values[key + "GICR_VSGIR"] > (0xFFFF if v41 else 0),
         "not a vPEID (GICv4.0: not 0)"),
        ("resident_limit", np.where(resident, (limit == 0) | ~power
                                    | (limit > np.uint64(1 << intid_bits)), limit != 0),
         "a resident vPE's limit is a power of two up to 2**intid_bits; 0 otherwise"),
        ("resident_vpt", np.where(resident, (vpt & ~_VPE_ADDRESS) != 0, vpt != 0),
         "a resident vPE's VPT is 64 KiB aligned below 2**52; 0 otherwise"),
        ("resident_vpe", np.where(resident & v41, (resident_vpe != pend_vpe)
                                  | ~mapped[np.clip(pend_vpe, 0, 0xFFFF)],
                                  resident_vpe != -1),
         "GICv4.1: the mapped vPEID of GICR_VPENDBASER; -1 otherwise"),
        ("resident_config", np.where(resident & v41, (config & ~_VPE_ADDRESS) != 0, config != 0),
         "GICv4.1: a resident vPE's 64 KiB aligned VCONF_addr; 0 otherwise"),
    ]
    for name, mask, reason in cpu_checks:
        if np.any(mask):
            raise _error(key + name, f"CPU {_first(mask)}: {reason}")
    # The caches: only the bytes of vINTIDs 8192 .. limit - 1 on resident CPUs.
    nbytes = values[key + "cached_pending"].shape[1]
    column = np.arange(nbytes, dtype=np.uint64)
    inside = (resident[:, None] & (column[None, :] >= np.uint64(_LPI_FIRST // 8))
              & (column[None, :] < (limit // np.uint64(8))[:, None]))
    for name in ("cached_pending", "cached_taken"):
        stray = (values[key + name] != 0) & ~inside
        if stray.any():
            raise _error(key + name, f"CPU {_first(stray.any(axis=1))}: bits outside the "
                                     "resident vPE's cached range")


def _check_logs(values: dict, num_cpus: int) -> None:
    groups = _groups(values)
    if "its" in groups:
        _check_command_log(values)
        _check_access_log(values, "access_errors.", num_cpus)
    if "redistributors.access_errors" in groups:
        _check_access_log(values, "redistributors.access_errors.", num_cpus)


# ---------------------------------------------------------------------------- building

def _access_errors(values: dict, prefix: str) -> list:
    columns = [values[f"{prefix}{name}"].tolist() for name, _, _ in _ACCESS_COLUMNS]
    return [AccessError(*row) for row in zip(*columns)]


def _load_redistributors(rd, values: dict) -> None:
    rd.load_state(values["redistributors.GICR_CTLR"].tolist(),
                  values["redistributors.GICR_PROPBASER"],
                  values["redistributors.GICR_PENDBASER"].tolist(),
                  values["redistributors.ptz"].tolist(),
                  values["redistributors.pending"], values["redistributors.config"])
    rd.strict = values["redistributors.strict"]


def _load_virtual(rd, values: dict) -> None:
    if rd.virtual is not None:
        rd.virtual.load_snapshot({entry.key[len("redistributors."):]: values[entry.key]
                                  for entry in _VIRTUAL_ENTRIES
                                  if _VIRTUAL_KEYS[entry.key] == "redistributors.virtual"
                                  and entry.kind != "str"})


def _new_redistributors(cls, values: dict, memory):
    rd = cls(memory, values["redistributors.num_cpus"], values["redistributors.intid_bits"],
             strict=values["redistributors.strict"],
             gic_version=values.get("redistributors.gic_version", "3"))
    _load_redistributors(rd, values)
    _load_virtual(rd, values)
    rd.access_errors.extend(_access_errors(values, "redistributors.access_errors."))
    return rd


def build_redistributors(cls, snapshot, memory):
    """`Redistributors.from_snapshot`: validate a Redistributors snapshot
    completely, then build ``cls(memory, ...)`` holding it."""
    values = check_structure(snapshot)
    groups = _groups(values)
    if "its" in groups:
        raise _error("its.layout", "an ITS's snapshot: ITS.from_snapshot reads it (a "
                                   "Redistributors snapshot has only redistributors.* keys)")
    for key in ("redistributors.num_cpus", "redistributors.access_errors.frame"):
        if _group_of(key) not in groups:
            raise _error(key, "missing")
    _check_redistributors(values)
    if "redistributors.virtual" in groups:
        _check_virtual_redistributors(values)
    _check_logs(values, values["redistributors.num_cpus"])
    return _new_redistributors(cls, values, memory)


def _check_vpes_agree(values: dict, rd) -> None:
    """GICv4: the ITS's vPEID -> CPU table (tables.vpe_id / vpe_cpu) is the
    set of mapped vPEs of the redistributors' attributes (the snapshot's own,
    or those of the given `rd`), with the same CPUs."""
    if rd is None:
        mapped = values["redistributors.vpe_mapped"]
        ids = values["redistributors.vpe_id"][mapped]
        cpus = values["redistributors.vpe_cpu"][mapped]
    else:
        ids = np.flatnonzero(rd.virtual.vpe_mapped).astype(np.uint16)
        cpus = rd.virtual.vpe_cpu[ids]
    if ids.size and not _VALID.extract(values["its.GITS_BASER2"]):
        raise _error("tables.vpe_id", "mapped vPEs with GITS_BASER2.Valid = 0")
    if not (np.array_equal(ids, values["tables.vpe_id"])
            and np.array_equal(cpus, values["tables.vpe_cpu"])):
        raise _error("tables.vpe_id", "the ITS's vPE table differs from the redistributors' "
                                      "mapped vPEs (vPEIDs or CPUs)")


def build_its(cls, snapshot, memory, redistributors=None, layout=None):
    """`ITS.from_snapshot`: validate an ITS snapshot completely, then build
    ``cls(memory, ...)`` holding it (attached to `redistributors` if given,
    with the tables in `layout` if given)."""
    values = check_structure(snapshot)
    groups = _groups(values)
    if "its" not in groups:
        raise _error("its.layout", "missing: a Redistributors snapshot "
                                   "(Redistributors.from_snapshot reads it), not an ITS's")
    with_rd = "redistributors" in groups
    if redistributors is not None and with_rd:
        raise ValueError("the snapshot has redistributor entries of its own: pass "
                         "redistributors= only with a snapshot(redistributors=False)")
    if redistributors is None and not with_rd:
        raise ValueError("the snapshot has no redistributor entries (snapshot(redistributors="
                         "False)): pass the Redistributors to attach to as redistributors=")
    _check_its(values)
    num_cpus, intid_bits = values["its.num_cpus"], values["its.intid_bits"]
    version = values.get("its.gic_version", "3")
    if with_rd:
        for key, value in (("redistributors.num_cpus", num_cpus),
                           ("redistributors.intid_bits", intid_bits)):
            if values[key] != value:
                raise _error(key, f"{values[key]} differs from the ITS's {value}")
        rd_version = values.get("redistributors.gic_version", "3")
        if rd_version != version:
            raise _error("redistributors.gic_version" if "redistributors.virtual" in groups
                         else "its.gic_version",
                         f"the redistributors are GICv{rd_version}, the ITS GICv{version}")
        _check_redistributors(values)
        if "redistributors.virtual" in groups:
            _check_virtual_redistributors(values)
    elif redistributors.gic_version != version:
        raise ValueError(f"the snapshot is of a GICv{version} ITS, the redistributors have "
                         f"gic_version={redistributors.gic_version!r}")
    _check_logs(values, num_cpus)
    own_log = "redistributors.access_errors" in groups
    rd = redistributors
    if own_log:                     # redistributors with a log of their own, as they were
        # Imported here: frontend/redistributors.py imports this module.
        from its_core.frontend.redistributors import Redistributors
        rd = _new_redistributors(Redistributors, values, memory)
    if version != "3":
        _check_vpes_agree(values, rd)
    declared = TABLE_ARRAYS + (VIRTUAL_TABLE_ARRAYS if version != "3" else ())
    its = cls(memory, num_cpus, values["its.layout"] if layout is None else layout,
              device_bits=values["its.device_bits"], event_bits=values["its.event_bits"],
              intid_bits=intid_bits, stall_on_error=values["its.stall_on_error"],
              strict=values["its.strict"], redistributors=rd, gic_version=version)
    tables = TranslationTables.from_arrays(
        {name: values[f"tables.{name}"] for name, _, _, _ in declared}, its.layout,
        device_bits=values["its.device_bits"], event_bits=values["its.event_bits"],
        intid_bits=intid_bits, num_cpus=num_cpus)
    # Everything has been checked: load.
    if with_rd and not own_log:
        _load_redistributors(its.redistributors, values)      # the ITS's own, sharing its log
        _load_virtual(its.redistributors, values)
    stalled = _STALLED.deposit(0, 1) if values["its.stalled"] else 0
    its.load_queue(values["its.GITS_CBASER"], values["its.GITS_CREADR"] | stalled,
                   values["its.GITS_CWRITER"])
    for n in range(8):
        its.load_baser(n, values[f"its.GITS_BASER{n}"])
    its.install_tables(tables, load_config=False)
    its.load_command_errors(values["command_errors.offset"], values["command_errors.opcode"],
                            values["command_errors.code"], values["command_errors.dropped"])
    its.access_errors.extend(_access_errors(values, "access_errors."))
    its.load_enabled(values["its.enabled"])
    return its


# ---------------------------------------------------------------------------- .npz members

def to_npz_members(snapshot: dict) -> dict:
    """The ``.npz`` members of a snapshot: one per key, scalars as 0-d arrays
    (int: uint64, bool: bool, str: unicode), arrays as they are."""
    members = {}
    for key, value in snapshot.items():
        entry = SCHEMA.get(key)
        if entry is not None and entry.scalar:
            members[key] = np.array(value, dtype=_NPZ_SCALAR[entry.kind] if entry.kind != "str"
                                    else None)
        else:
            members[key] = value
    return members


def from_npz_members(members: Mapping) -> dict:
    """A snapshot dict from ``.npz`` members (`to_npz_members`): each scalar
    key's 0-d member back to a Python value, RestoreError naming the key if it
    is not a 0-d array of its kind's dtype.  Arrays and unknown keys are
    passed on for `check_structure`."""
    snapshot = {}
    fmt = members.get("format")                      # another version: say so first
    if isinstance(fmt, np.ndarray) and fmt.ndim == 0 and fmt.dtype.kind == "U":
        _check_format(fmt.item())
    for key, member in members.items():
        entry = SCHEMA.get(key)
        if entry is None or not entry.scalar:
            snapshot[key] = member
            continue
        kind_ok = (member.dtype.kind == "U" if entry.kind == "str"
                   else member.dtype == _NPZ_SCALAR[entry.kind])
        if member.ndim != 0 or not kind_ok:
            wanted = "unicode" if entry.kind == "str" else str(_NPZ_SCALAR[entry.kind])
            raise _error(key, f"expected a 0-d {wanted} member, got {_describe(member)}")
        snapshot[key] = member.item()
    return snapshot


# ---------------------------------------------------------------------------- documentation

def schema_markdown() -> str:
    """The key and dimension tables of docs/save-format.md ("Host snapshots"),
    rendered from `SCHEMA` and `DIMENSIONS`."""
    def kind(entry: Entry) -> str:
        if entry.scalar:
            return entry.kind
        return "unicode" if entry.kind == "U" else str(np.dtype(entry.kind))

    lines = ["| key | type | shape | meaning |", "|---|---|---|---|"]
    for entry in SCHEMA.values():
        shape = "scalar" if entry.scalar else f"({', '.join(entry.shape)})"
        lines.append(f"| `{entry.key}` | {kind(entry)} | {shape} | {entry.meaning} |")
    lines += ["", "| dimension | length |", "|---|---|"]
    lines += [f"| `{name}` | {meaning} |" for name, meaning in DIMENSIONS.items()]
    return "\n".join(lines) + "\n"
