"""Save and restore an ITS in the KVM ITS table ABI, revision 0 (a GICv4
ITS: its-core-rev1, `abi/rev1.py`, which reuses the planners here).

Saving writes the device table (flat or two-level), every ITT and the
collection table into the guest memory the guest allocated through
GITS_BASER0/1, and each CPU's pending bitmap into its GICR_PENDBASER table;
the registers come back as a JSON-serialisable dict.  Restoring reads them
back, following KVM's scanning rules, into fresh tables that replace the old
ones only when every entry has passed (docs/save-format.md).

Everything is checked before anything is written: `SaveError` means guest
memory was not touched, `RestoreError` means the ITS is exactly as before.
Entries are computed by native kernels (`_abi.pyx`) and numpy, and written
through views of the caller's buffer: no bytes objects, no per-entry Python.
"""

from __future__ import annotations

import functools

import numpy as np

from its_core.abi import entries as abi
from its_core.frontend import registers
from its_core.abi._abi import (check_itts, collection_entries, level2_pages, save_dtes,
                               save_itts, scan_collections, scan_devices, zero_ranges)
from its_core.core._core import TranslationTables
from its_core.errors import ITSError, RestoreError, SaveError

NO_SLOT = (1 << 64) - 1
_VALID = registers.GITS_BASER0.field("Valid")
_INDIRECT = registers.GITS_BASER0.field("Indirect")
_REVISION = registers.GITS_IIDR.field("Revision")
_OFFSET = registers.GITS_CWRITER.field("Offset")

#: Registers of `save_registers`, in the order `restore_registers` applies them
#: (GITS_CTLR is saved but restored last, by `restore`).
ITS_REGISTER_ORDER = ("GITS_IIDR", "GITS_CBASER", "GITS_CREADR", "GITS_CWRITER",
                      *(f"GITS_BASER{n}" for n in range(8)))
GICR_REGISTER_NAMES = ("GICR_CTLR", "GICR_PROPBASER", "GICR_PENDBASER")


def is_register_value(value, width: int) -> bool:
    """True if a saved state's entry `value` is a register value of `width`
    bits: an int (not a bool) in 0 .. 2**width - 1.  The one check of every
    register value read back from a state dict (restore, dump)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << width


class _Table:
    """What a GITS_BASER value says about its table (`_table` makes them)."""

    __slots__ = ("valid", "indirect", "base", "nbytes", "page_bytes")

    def __init__(self, value: int):
        self.valid = bool(_VALID.extract(value))
        self.indirect = bool(_INDIRECT.extract(value))
        self.base = registers.baser_address(value)
        self.nbytes = registers.baser_table_bytes(value)
        self.page_bytes = registers.baser_page_size(value)

    @property
    def slots(self) -> int:
        return self.nbytes // abi.ENTRY_BYTES


@functools.lru_cache(maxsize=256)
def _table(value: int) -> _Table:
    """The `_Table` of a GITS_BASER value (decoded once per value: a save or
    restore of a small state would otherwise spend much of its time here)."""
    return _Table(value)


# ---------------------------------------------------------------------------- save

def _plan_device_table(its, table: _Table, records: np.ndarray, ite_bytes: int = abi.ENTRY_BYTES):
    """Check every device can be saved; return the ranges to zero (addresses,
    lengths; None without a table) and the address of each device's DTE.
    `ite_bytes`: 8 (rev0, ITTs checked natively) or 16 (its-core-rev1)."""
    memory = its.memory
    ids = records["device_id"]
    if not table.valid:
        if ids.size:
            raise SaveError("device", int(ids[0]), "slot",
                            "no device table: GITS_BASER0.Valid is 0")
        return None, np.empty(0, np.uint64)
    if not memory.contains(table.base, table.nbytes):
        raise SaveError("device" if not table.indirect else "level1", None, "GITS_BASER0",
                        f"table {table.base:#x}+{table.nbytes:#x} outside guest memory")
    if table.indirect:                       # the native two-level walk (frontend/_devtable)
        indices, pages, inside = level2_pages(its.guest_window, table.base, table.nbytes,
                                              table.page_bytes)
        outside = np.flatnonzero(~inside)
        if outside.size:
            index, page = int(indices[outside[0]]), int(pages[outside[0]])
            raise SaveError("level1", index, "Address",
                            f"level-2 page {page:#x} outside guest memory")
        zero = (pages, np.full(pages.size, table.page_bytes, np.uint64))
    else:
        zero = (np.array([table.base], np.uint64), np.array([table.nbytes], np.uint64))
    slots = its.device_table_slots(ids)
    missing = np.flatnonzero(slots == NO_SLOT)
    if missing.size:
        raise SaveError("device", int(ids[missing[0]]), "slot",
                        "DeviceID has no slot in the device table")
    if ite_bytes == abi.ENTRY_BYTES:
        bad, misplaced = check_itts(its.guest_window, records)
    else:
        bad, misplaced = _check_itts_numpy(memory, records, ite_bytes)
    if bad >= 0:
        device_id, itt = int(ids[bad]), int(records["itt_addr"][bad])
        size = ite_bytes << int(records["event_bits"][bad])
        reason = (f"{itt:#x} is not a 256-byte aligned address below 2**52" if misplaced
                  else f"ITT {itt:#x}+{size:#x} outside guest memory")
        raise SaveError("device", device_id, "ITT_addr", reason)
    return zero, slots


def _check_itts_numpy(memory, records: np.ndarray, ite_bytes: int) -> tuple[int, bool]:
    """`check_itts` for ITT entries of `ite_bytes`: ``(index, misplaced)`` of
    the first device whose ITT cannot be saved, or ``(-1, False)``."""
    itts = records["itt_addr"].astype(np.uint64)
    misplaced = ((itts & np.uint64(0xFF)) != 0) | ((itts >> np.uint64(52)) != 0)
    sizes = np.uint64(ite_bytes) << records["event_bits"].astype(np.uint64)
    ends = itts + sizes
    outside = (itts < np.uint64(memory.base)) | (ends < itts) | (ends > np.uint64(memory.end))
    bad = np.flatnonzero(misplaced | outside)
    if not bad.size:
        return -1, False
    return int(bad[0]), bool(misplaced[bad[0]])


def _plan_collection_table(its, table: _Table) -> np.ndarray:
    """Check the collections fit; return the CTE words (with any terminator)."""
    ctes = collection_entries(its.tables)
    if not table.valid:
        if ctes.size:
            raise SaveError("collection", int(ctes[0] & np.uint64(abi.CTE["ICID"].max)), "slot",
                            "no collection table: GITS_BASER1.Valid is 0")
        return ctes
    if ctes.size > table.slots:
        raise SaveError("collection", None, "GITS_BASER1",
                        f"{ctes.size} collections do not fit {table.slots} slots")
    if ctes.size < table.slots:
        ctes = np.append(ctes, np.uint64(0))          # terminator
    if not its.memory.contains(table.base, ctes.size * abi.ENTRY_BYTES):
        raise SaveError("collection", None, "GITS_BASER1",
                        f"table {table.base:#x} outside guest memory")
    return ctes


def _refuse_virtual_state(its) -> None:
    """SaveError if host code put GICv4 virtual state in the ITS's tables: a
    GICv3 ITS saves KVM ABI rev0, which has no place for it."""
    tables = its.tables
    if tables.num_virtual_events or tables.num_vpes:
        raise SaveError("device", None, "virtual",
                        f"{tables.num_virtual_events} virtual ITEs and {tables.num_vpes} vPEs: "
                        f"KVM ABI rev0 holds no virtual state")


def save_tables(its) -> None:
    """Device table, every ITT and the collection table -> guest memory."""
    _refuse_virtual_state(its)
    devices = _table(its.stored_register("GITS_BASER0"))
    collections = _table(its.stored_register("GITS_BASER1"))
    records = its.tables.device_records()
    zero, slots = _plan_device_table(its, devices, records)
    ctes = _plan_collection_table(its, collections)
    # Everything has been checked: write.
    if zero is not None:
        zero_ranges(its.guest_window, *zero)
    save_dtes(its.guest_window, slots, records)
    save_itts(its.guest_window, its.tables, records)
    if ctes.size:
        its.memory.view(collections.base, ctes.size, "<u8")[:] = ctes


def _plan_pending(rd) -> list[tuple[int, int]]:
    """(cpu, table address) of every CPU with LPIs enabled, checked."""
    start, end = rd.lpi_state.pending_span()
    plan = []
    for cpu in range(rd.num_cpus):
        if not rd.lpis_enabled(cpu):
            continue
        addr = rd.pendbaser_address(cpu)
        if end > start and not rd.memory.contains(addr + start, end - start):
            raise SaveError("pending", cpu, "GICR_PENDBASER",
                            f"pending table {addr:#x} outside guest memory")
        plan.append((cpu, addr))
    return plan


def save_pending_tables(its) -> None:
    """Pending bitmap of each CPU with LPIs enabled -> its pending table
    (bytes 1024 up to the LPI limit / 8 only)."""
    rd = its.redistributors
    for cpu, addr in _plan_pending(rd):
        rd.lpi_state.save_pending(cpu, addr)


def _redistributor_registers(rd) -> dict:
    """The GICR_* registers of every CPU, by mnemonic: one list entry per CPU."""
    return {name: [rd.mmio_read(cpu, registers.GICR_REGISTERS[name].offset,
                                registers.GICR_REGISTERS[name].nbytes)
                   for cpu in range(rd.num_cpus)]
            for name in GICR_REGISTER_NAMES}


def save_redistributors(rd) -> dict:
    """Pending tables of the CPUs with LPIs enabled -> guest memory; the
    GICR_* registers as a JSON-serialisable dict (`Redistributors.save`)."""
    for cpu, addr in _plan_pending(rd):
        rd.lpi_state.save_pending(cpu, addr)
    return _redistributor_registers(rd)


def save_registers(its) -> dict:
    """The ITS registers a restore needs, by mnemonic (plus GITS_TYPER, which
    is read-only: it tells a reader the DeviceID and EventID widths)."""
    names = ("GITS_CTLR",) + ITS_REGISTER_ORDER + ("GITS_TYPER",)
    return {name: its.register(name) for name in names}


def save(its, redistributors: bool = True) -> dict:
    """Tables (and, with `redistributors`, pending tables) into guest memory;
    the registers of the ITS (and of the redistributors' LPI side) as a
    JSON-serialisable dict.  Everything is checked before anything is written."""
    rd = its.redistributors
    pending = _plan_pending(rd) if redistributors else []
    save_tables(its)
    for cpu, addr in pending:
        rd.lpi_state.save_pending(cpu, addr)
    state = {"format": abi.FORMAT, **save_registers(its)}
    if redistributors:
        state.update(_redistributor_registers(rd))
    return state


# ---------------------------------------------------------------------------- restore

def _build_tables(its, baser0: int, baser1: int) -> TranslationTables:
    """Fresh tables holding what guest memory says, or RestoreError."""
    old = its.tables
    tables = TranslationTables(old.layout, device_bits=old.device_bits,
                               event_bits=old.event_bits, intid_bits=old.intid_bits,
                               num_collections=old.num_collections, num_cpus=old.num_cpus)
    devices, collections = _table(baser0), _table(baser1)
    known = np.zeros(65536, np.uint8)
    if collections.valid:
        icids, cpus = scan_collections(its.guest_window, collections.base, collections.nbytes,
                                       its.num_cpus, old.num_collections, tables)
        known[icids] = 1
    if devices.valid:
        if devices.indirect and not its.memory.contains(devices.base, devices.nbytes):
            raise RestoreError("level1", None, "GITS_BASER0",
                               f"table {devices.base:#x}+{devices.nbytes:#x} outside guest memory")
        scan_devices(its.guest_window, tables, devices.base, devices.nbytes, devices.page_bytes,
                     devices.indirect, known)
    return tables


def restore_tables(its) -> None:
    """Guest memory -> core structures, all-or-nothing."""
    if its.enabled:
        raise ITSError("restore_tables: the ITS is enabled; restore before GITS_CTLR")
    if its.gic_version != "3":
        from its_core.abi import rev1
        return rev1.restore_tables(its)
    its.install_tables(_build_tables(its, its.stored_register("GITS_BASER0"),
                                     its.stored_register("GITS_BASER1")))


def _check_pending(rd, cpu: int, addr: int, span: tuple[int, int] | None = None) -> None:
    """RestoreError unless bytes `span` (default: the current limit's) of the
    pending table at `addr` lie inside guest memory."""
    start, end = span or rd.lpi_state.pending_span()
    if end > start and not rd.memory.contains(addr + start, end - start):
        raise RestoreError("pending", cpu, "GICR_PENDBASER",
                           f"pending table {addr:#x} outside guest memory")


def restore_pending_tables(its) -> None:
    """Pending tables -> pending bitmaps of the CPUs with LPIs enabled."""
    rd = its.redistributors
    cpus = [cpu for cpu in range(rd.num_cpus) if rd.lpis_enabled(cpu)]
    for cpu in cpus:
        _check_pending(rd, cpu, rd.pendbaser_address(cpu))
    for cpu in cpus:
        rd.lpi_state.load_pending(cpu, rd.pendbaser_address(cpu))


def _checked_registers(its, regs: dict) -> dict:
    """The ITS register values of `regs`, validated (RestoreError otherwise);
    GITS_IIDR.Revision must be the ITS's (0: rev0 on GICv3, 1: its-core-rev1
    on GICv4)."""
    revision = abi.REVISION if its.gic_version == "3" else abi.REV1_REVISION
    if not isinstance(regs, dict):
        raise RestoreError("registers", None, "state", "expected a dict of register values")
    values = {}
    for name in ITS_REGISTER_ORDER:
        if name not in regs:
            raise RestoreError("registers", name, name, "missing")
        value = regs[name]
        width = registers.ITS_REGISTERS[name].width
        if not is_register_value(value, width):
            raise RestoreError("registers", name, name, f"{value!r} is not a {width}-bit value")
        values[name] = value
    if _REVISION.extract(values["GITS_IIDR"]) != revision:
        raise RestoreError("registers", "GITS_IIDR", "Revision",
                           f"table ABI revision {_REVISION.extract(values['GITS_IIDR'])} "
                           f"is not supported (only {revision})")
    queue_bytes = registers.cbaser_queue_bytes(values["GITS_CBASER"])
    for name in ("GITS_CREADR", "GITS_CWRITER"):
        if _OFFSET.extract(values[name]) * 32 >= queue_bytes:
            raise RestoreError("registers", name, "Offset",
                               f"offset {_OFFSET.extract(values[name]) * 32:#x} "
                               f"outside the {queue_bytes:#x}-byte queue")
    return values


def _apply_its_registers(its, values: dict) -> None:
    """Userspace-style writes, in the documented order, ITS disabled."""
    its.load_queue(values["GITS_CBASER"], values["GITS_CREADR"], values["GITS_CWRITER"])
    for n in range(8):
        its.load_baser(n, values[f"GITS_BASER{n}"])


def restore_registers(its, regs: dict) -> None:
    """Every ITS register but GITS_CTLR (IIDR, CBASER, CREADR, CWRITER, BASERs)."""
    if its.enabled:
        raise ITSError("restore_registers: the ITS is enabled; restore before GITS_CTLR")
    _apply_its_registers(its, _checked_registers(its, regs))


def _checked_redistributors(rd, state: dict) -> dict:
    """The GICR_* lists of `state`, validated against `rd` (RestoreError
    otherwise), with every pending table that will be read inside memory."""
    gicr = {}
    for name in GICR_REGISTER_NAMES:
        column = state.get(name)
        width = registers.GICR_REGISTERS[name].width
        if isinstance(column, list) and len(column) != rd.num_cpus:
            raise RestoreError("registers", name, name,
                               f"the state was saved from {len(column)} CPUs but this ITS has "
                               f"{rd.num_cpus}: restore into an ITS with "
                               f"num_cpus={len(column)}")
        if not isinstance(column, list) or not all(is_register_value(v, width) for v in column):
            raise RestoreError("registers", name, name,
                               f"expected {rd.num_cpus} {width}-bit values, one per CPU")
        gicr[name] = column
    pend_field = registers.GICR_PENDBASER.field("Physical_Address")
    enable_field = registers.GICR_CTLR.field("EnableLPIs")
    # The pending bytes that will be read are those below the limit the saved
    # PROPBASER sets (one register for every CPU: the last write wins).
    id_bits = registers.GICR_PROPBASER.field("IDbits").extract(gicr["GICR_PROPBASER"][-1])
    limit = 1 << min(id_bits + 1, rd.lpi_state.intid_bits)
    first = rd.lpi_state.pending_span()[0]
    span = (first, max(first, limit // 8))
    for cpu in range(rd.num_cpus):
        if enable_field.extract(gicr["GICR_CTLR"][cpu]):
            _check_pending(rd, cpu, gicr["GICR_PENDBASER"][cpu] & pend_field.mask, span)
    return gicr


def _apply_redistributors(rd, gicr: dict) -> None:
    """The guest's writes of a checked GICR state: EnableLPIs off, the table
    registers, then EnableLPIs (which loads the pending tables and config)."""
    rd.load_lpi_registers(gicr["GICR_CTLR"], gicr["GICR_PROPBASER"], gicr["GICR_PENDBASER"])


def restore_redistributors(rd, state: dict) -> None:
    """`Redistributors.restore`: validated, then applied (signalled once, at the end)."""
    if not isinstance(state, dict):
        raise RestoreError("registers", None, "state", "expected a dict of GICR_* registers")
    gicr = _checked_redistributors(rd, state)
    vlpi = None
    if rd.virtual is not None:                  # GICv4: the VLPI registers too (abi/rev1.py)
        from its_core.abi import rev1
        vlpi = rev1.checked_vlpi_registers(rd, state)
        if vlpi is None:
            raise RestoreError("registers", "GICR_VPENDBASER", "GICR_VPENDBASER",
                               "missing: GICv4 redistributors' state holds the VLPI registers")
    with rd.deferred_signals():
        _apply_redistributors(rd, gicr)
        if vlpi is not None:
            rev1.apply_vlpi_registers(rd, vlpi)


def restore(its, state: dict) -> None:
    """The whole sequence: redistributors (when `state` holds their GICR_*
    registers), ITS registers but CTLR, tables, GITS_CTLR.  Everything is
    validated before anything changes."""
    if its.enabled:
        raise ITSError("restore: the ITS is enabled; restore into a fresh or reset ITS")
    gicv4 = its.gic_version != "3"
    expected = abi.REV1_FORMAT if gicv4 else abi.FORMAT
    if not isinstance(state, dict) or state.get("format") != expected:
        found = state.get("format") if isinstance(state, dict) else None
        revision = {abi.FORMAT: "revision 0 (KVM's rev0)",
                    abi.REV1_FORMAT: "revision 1 (its-core-rev1)"}.get(found)
        raise RestoreError("registers", "format", "format",
                           f"not a {expected!r} register state"
                           + (f": a {'GICv4' if gicv4 else 'GICv3'} ITS does not restore "
                              f"{revision}" if revision else ""))
    if gicv4:
        from its_core.abi import rev1
        return rev1.restore(its, state)
    values = _checked_registers(its, state)
    rd = its.redistributors
    with_redistributors = any(name in state for name in GICR_REGISTER_NAMES)
    gicr = _checked_redistributors(rd, state) if with_redistributors else None
    ctlr = state.get("GITS_CTLR")
    if not is_register_value(ctlr, 32):
        raise RestoreError("registers", "GITS_CTLR", "GITS_CTLR", f"{ctlr!r} is not a 32-bit value")
    tables = _build_tables(its, values["GITS_BASER0"], values["GITS_BASER1"])
    # Everything has passed: apply, signalling the redistributors' changes once.
    with rd.deferred_signals():
        if gicr is not None:
            _apply_redistributors(rd, gicr)
        # The restored tables go in before the BASER writes, so a saved BASER
        # with Valid = 0 drops (the empty) restored mappings, never the old
        # ones with the pending bits just read from the pending tables.
        its.install_tables(tables)
        _apply_its_registers(its, values)
        its.mmio_write(registers.GITS_CTLR.offset, ctlr & registers.GITS_CTLR.write_mask, 4)
