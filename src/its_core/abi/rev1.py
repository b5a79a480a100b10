"""Save and restore a GICv4 ITS in its-core-rev1, this project's own revision.

KVM's rev0 has no virtual state, so a GICv4 ITS (GITS_IIDR.Revision = 1)
saves rev0 plus a vPE table and virtual ITEs (docs/save-format.md,
"its-core-rev1 (GICv4)"; the entries are declared in `abi/entries.py`):

* the device table and the collection table exactly as rev0 (same DTEs,
  CTEs and level-1 descriptors, same zeroing);
* each ITT with 16-byte ITEs (GITS_TYPER.ITT_entry_size = 15): dword0 is
  rev0's ITE (the vINTID and vPEID of a virtual one in its INTID and ICID
  fields), dword1 Virtual and the doorbell;
* one VTE per vPE of the ITS's vPEID -> CPU table in the vPE table
  GITS_BASER2 describes (flat or two-level; the flat table, or every valid
  level-2 page, zeroed first);
* the redistributors' pending tables as rev0 (doorbells are physical LPIs),
  each resident vPE's cached pending vLPIs written into its VPT, and the
  VLPI registers in the register dict.

This path is numpy over the core's canonical arrays (`to_arrays` /
`from_arrays`) plus two native walks (`_abi.walk_device_table`,
`walk_itts_rev1`); the rev0 path of a GICv3 ITS (`saverestore`) is not
touched.  As rev0: everything is checked before anything is written
(`SaveError`: guest memory untouched) and a restore validates everything
before it changes anything (`RestoreError`: ITS and redistributors exactly
as before).
"""

from __future__ import annotations

import numpy as np

from its_core.abi import entries as abi
from its_core.abi import saverestore as rev0
from its_core.abi._abi import (level2_pages, save_dtes, scan_collections, scatter_u64,
                               walk_device_table, walk_itts_rev1, zero_ranges)
from its_core.core._core import TranslationTables
from its_core.errors import RestoreError, SaveError
from its_core.frontend import commands as C
from its_core.frontend import registers
from its_core.frontend.virtual import NUM_VSGIS, VPE_SPACE

LPI_FIRST_INTID = 8192
_ITE0, _ITE1 = abi.REV1_ITE0, abi.REV1_ITE1
_VTE0, _VTE1, _VTE2 = abi.VTE0, abi.VTE1_V41, abi.VTE2_V41
_VIRTUAL = np.uint64(_ITE1["Virtual"].mask)

#: The per-CPU VLPI registers a rev1 state holds, by GIC version.
VLPI_REGISTER_NAMES = {"4.0": ("GICR_VPROPBASER", "GICR_VPENDBASER"),
                       "4.1": ("GICR_VPROPBASER", "GICR_VPENDBASER", "GICR_VSGIR")}


def _u(value) -> np.uint64:
    return np.uint64(value)


def _contains(memory, addrs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Vectorised `GuestMemory.contains` (bool per range); uint64 inputs."""
    addrs = addrs.astype(np.uint64)
    lengths = lengths.astype(np.uint64)
    end = addrs + lengths
    return (addrs >= _u(memory.base)) & (end >= addrs) & (end <= _u(memory.end))


# ---------------------------------------------------------------------------- the vPE table

class _VpeTable:
    """What GITS_BASER2 says about the vPE table of a GICv4 ITS of `version`:
    entries of `abi.VTE_BYTES[version]` (the read-only Entry_Size, whatever a
    saved value claims: a restore's BASER write keeps the read-only fields)."""

    def __init__(self, value: int, version: str):
        table = rev0._Table(value)
        self.valid, self.indirect, self.base = table.valid, table.indirect, table.base
        self.nbytes, self.page_bytes = table.nbytes, table.page_bytes
        self.entry_bytes = abi.VTE_BYTES[version]


def _vpe_pages(its, table: _VpeTable, error) -> tuple[np.ndarray, np.ndarray]:
    """Indirect table: (level-1 indices, level-2 page addresses) of the valid
    descriptors, every page inside guest memory (`error(kind, id, field,
    reason)` raised otherwise)."""
    if not its.memory.contains(table.base, table.nbytes):
        raise error("vpe_level1", None, "GITS_BASER2",
                    f"table {table.base:#x}+{table.nbytes:#x} outside guest memory")
    indices, pages, inside = level2_pages(its.guest_window, table.base, table.nbytes,
                                          table.page_bytes)
    outside = np.flatnonzero(~inside)
    if outside.size:
        raise error("vpe_level1", int(indices[outside[0]]), "Address",
                    f"level-2 page {int(pages[outside[0]]):#x} outside guest memory")
    return indices, pages


def _vpe_slots(its, table: _VpeTable, vpe_ids: np.ndarray) -> np.ndarray:
    """Guest address of each vPE's VTE (SaveError for one without a slot)."""
    entry = table.entry_bytes
    if not table.valid:
        if vpe_ids.size:
            raise SaveError("vpe", int(vpe_ids[0]), "slot",
                            "no vPE table: GITS_BASER2.Valid is 0")
        return np.empty(0, np.uint64)
    ids = vpe_ids.astype(np.uint64)
    if not table.indirect:
        if not its.memory.contains(table.base, table.nbytes):
            raise SaveError("vpe", None, "GITS_BASER2",
                            f"table {table.base:#x}+{table.nbytes:#x} outside guest memory")
        missing = np.flatnonzero(ids >= _u(table.nbytes // entry))
        if missing.size:
            raise SaveError("vpe", int(ids[missing[0]]), "slot",
                            f"vPEID beyond the vPE table ({table.nbytes // entry} entries)")
        return _u(table.base) + ids * _u(entry)
    indices, pages = _vpe_pages(its, table, SaveError)
    per_page = _u(table.page_bytes // entry)
    wanted = ids // per_page
    position = np.minimum(np.searchsorted(indices, wanted), max(indices.size - 1, 0))
    found = (indices[position] == wanted) if indices.size else np.zeros(ids.size, bool)
    missing = np.flatnonzero(~found)
    if missing.size:
        raise SaveError("vpe", int(ids[missing[0]]), "slot",
                        "no valid level-1 descriptor for the vPEID")
    return pages[position] + (ids % per_page) * _u(entry)


def _vpe_zero_ranges(its, table: _VpeTable):
    """The ranges a save zeroes: the flat table, or every valid level-2 page."""
    if not table.valid:
        return np.empty(0, np.uint64), np.empty(0, np.uint64)
    if not table.indirect:
        return np.array([table.base], np.uint64), np.array([table.nbytes], np.uint64)
    _, pages = _vpe_pages(its, table, SaveError)
    return pages, np.full(pages.size, table.page_bytes, np.uint64)


def _vpt_bytes(vpt_sizes: np.ndarray) -> np.ndarray:
    """Bytes of each VPT: 2**(VPT_size + 1) bits."""
    return (np.uint64(1) << (vpt_sizes.astype(np.uint64) + _u(1))) // _u(8)


def _config_bytes(vpt_sizes: np.ndarray) -> np.ndarray:
    """Bytes of each v4.1 vLPI configuration table: one per vINTID 8192..limit-1."""
    limit = np.uint64(1) << (vpt_sizes.astype(np.uint64) + _u(1))
    return np.where(limit > _u(LPI_FIRST_INTID), limit - _u(LPI_FIRST_INTID), _u(0))


def _vte_words(its, vpe_ids: np.ndarray, cpus: np.ndarray) -> np.ndarray:
    """The VTEs of `vpe_ids` ((n, 1) or (n, 4) uint64 dwords), after checking
    each can be restored (SaveError otherwise)."""
    virtual = its.redistributors.virtual
    vpt, size = virtual.vpt_addr[vpe_ids], virtual.vpt_size[vpe_ids]
    bad = np.flatnonzero(~_contains(its.memory, vpt, _vpt_bytes(size)))
    if bad.size:
        vpe_id = int(vpe_ids[bad[0]])
        raise SaveError("vpe", vpe_id, "VPT_addr",
                        f"VPT {int(vpt[bad[0]]):#x} (VPT_size {int(size[bad[0]])}) "
                        f"outside guest memory")
    word0 = (_u(1) | (size.astype(np.uint64) << _u(_VTE0["VPT_size"].lsb))
             | ((vpt >> _u(abi.VPT_ADDR_SHIFT)) << _u(_VTE0["VPT_addr"].lsb))
             | (cpus.astype(np.uint64) << _u(_VTE0["RDbase"].lsb)))
    if not virtual.is_v41:
        return word0[:, None]
    vconf = virtual.vconf_addr[vpe_ids]
    bad = np.flatnonzero(~_contains(its.memory, vconf, _config_bytes(size)))
    if bad.size:
        raise SaveError("vpe", int(vpe_ids[bad[0]]), "VCONF_addr",
                        f"vLPI configuration table {int(vconf[bad[0]]):#x} outside guest memory")
    config = virtual.vsgi_config[vpe_ids].astype(np.uint64)        # (n, 16, 3)
    bit = np.uint64(1) << np.arange(NUM_VSGIS, dtype=np.uint64)
    enable = (config[:, :, 2] * bit).sum(axis=1, dtype=np.uint64)
    group = (config[:, :, 1] * bit).sum(axis=1, dtype=np.uint64)
    nibble = _u(4) * np.arange(NUM_VSGIS, dtype=np.uint64)
    priority = ((config[:, :, 0] >> _u(abi.VSGI_PRIORITY_SHIFT)) << nibble).sum(
        axis=1, dtype=np.uint64)
    word1 = ((virtual.doorbell_armed[vpe_ids].astype(np.uint64) << _u(_VTE1["Armed"].lsb))
             | (vconf & _u(_VTE1["VCONF_addr"].mask)) | enable)
    word2 = ((group << _u(_VTE2["vSGI_Group"].lsb))
             | (virtual.vsgi_pending[vpe_ids].astype(np.uint64) << _u(_VTE2["vSGI_Pending"].lsb))
             | virtual.default_doorbell[vpe_ids].astype(np.uint64))
    return np.stack((word0, word1, word2, priority), axis=1)


# ---------------------------------------------------------------------------- save

def _ctes(its, arrays: dict) -> np.ndarray:
    """CTE words by ICID: the mapped collections and the unmapped ones a
    physical event names (RDBase all ones), as rev0's `collection_entries`
    (which reads ITE words, so would take a virtual ITE's vPEID for an ICID)."""
    icids, cpus = arrays["collection_icid"], arrays["collection_cpu"]
    named = np.union1d(icids, np.unique(arrays["icid"])).astype(np.uint64)
    target = np.full(named.size, _u(abi.CTE_UNMAPPED_TARGET))
    target[np.searchsorted(named, icids.astype(np.uint64))] = cpus.astype(np.uint64)
    return (_u(abi.CTE["V"].mask) | (target << _u(abi.CTE["RDBase"].lsb)) | named)


def _itt_entries(arrays: dict):
    """(addresses, dword0s, dword1s) of every ITE, physical and virtual, each
    with its `next` (EventID distance within its device, capped, 0 = last)."""
    phys_rows = np.repeat(np.arange(arrays["device_id"].size),
                          arrays["num_events"].astype(np.intp))
    # The records and the canonical device arrays are both by DeviceID.
    virtual_ids = arrays.get("virtual_device_id", np.empty(0, np.uint32))
    virt_rows = np.searchsorted(arrays["device_id"], virtual_ids)
    rows = np.concatenate((phys_rows, virt_rows))
    events = np.concatenate((arrays["event_id"], arrays.get("virtual_event_id",
                                                            np.empty(0, np.uint32))))
    low = np.concatenate((arrays["icid"].astype(np.uint64),
                          arrays.get("virtual_vpe_id", np.empty(0, np.uint16)).astype(np.uint64)))
    intids = np.concatenate((arrays["intid"], arrays.get("virtual_intid",
                                                         np.empty(0, np.uint32))))
    word1 = np.concatenate((np.zeros(phys_rows.size, np.uint64),
                            _VIRTUAL | arrays.get("virtual_doorbell",
                                                  np.empty(0, np.uint32)).astype(np.uint64)))
    order = np.lexsort((events, rows))
    rows, events, low, intids, word1 = rows[order], events[order], low[order], intids[order], \
        word1[order]
    events64 = events.astype(np.uint64)
    step = np.zeros(rows.size, np.uint64)
    if rows.size > 1:
        same = rows[1:] == rows[:-1]
        step[:-1] = np.where(same, np.minimum(events64[1:] - events64[:-1],
                                              _u(abi.ITE_NEXT_MAX)), _u(0))
    word0 = (step << _u(_ITE0["next"].lsb)) | (intids.astype(np.uint64) << _u(
        _ITE0["INTID"].lsb)) | low
    itts = arrays["itt_addr"][rows]
    addrs = itts + events64 * _u(abi.REV1_ITE_BYTES)
    return addrs, word0, word1


def _plan_resident(rd) -> list[int]:
    """CPUs of `rd` with a resident vPE, each checked (SaveError): its cached
    VPT range inside guest memory, on 4.1 the vPE mapped, and no other cache
    disagreeing on the same VPT bytes."""
    virtual = rd.virtual
    cpus = []
    for cpu in range(rd.num_cpus):
        span = virtual.resident_range(cpu)
        if span is None:
            continue
        vpt, limit = span
        vpe_id = int(virtual.resident_vpe[cpu])
        if virtual.is_v41 and not virtual.vpe_mapped[vpe_id]:
            raise SaveError("vpe", vpe_id, "GICR_VPENDBASER",
                            f"CPU {cpu}: the resident vPE is not mapped (a restore could not "
                            f"find its VPT)")
        first, end = LPI_FIRST_INTID // 8, limit // 8
        if end > first and not rd.memory.contains(vpt + first, end - first):
            raise SaveError("vpe", None, "GICR_VPENDBASER",
                            f"CPU {cpu}: the resident vPE's VPT {vpt:#x} outside guest memory")
        cpus.append(cpu)
    _check_shared_vpts(virtual, cpus)
    return cpus


def _check_shared_vpts(virtual, cpus: list[int]) -> None:
    """SaveError if two resident caches stand for overlapping VPT bytes and
    disagree there (a guest made one VPT resident on two redistributors, and
    acknowledged or received vLPIs on one of them): one VPT cannot hold both."""
    spans = [(cpu, *virtual.resident_range(cpu)) for cpu in cpus]
    for index, (cpu_a, vpt_a, limit_a) in enumerate(spans):
        for cpu_b, vpt_b, limit_b in spans[index + 1:]:
            start = max(vpt_a, vpt_b) + LPI_FIRST_INTID // 8
            end = min(vpt_a + limit_a // 8, vpt_b + limit_b // 8)
            if end <= start:
                continue
            bits_a = virtual.cached_bits(cpu_a, (start - vpt_a) * 8, (end - vpt_a) * 8)
            bits_b = virtual.cached_bits(cpu_b, (start - vpt_b) * 8, (end - vpt_b) * 8)
            if not np.array_equal(bits_a, bits_b):
                raise SaveError("vpe", None, "GICR_VPENDBASER",
                                f"CPUs {cpu_a} and {cpu_b} cache the VPT bytes "
                                f"{start:#x}..{end:#x} with different pending vLPIs")


def vlpi_registers(rd) -> dict:
    """The VLPI registers of every CPU, by mnemonic, one list entry per CPU."""
    virtual = rd.virtual
    regs = {"GICR_VPROPBASER": [int(v) for v in virtual.vpropbaser],
            "GICR_VPENDBASER": [int(v) for v in virtual.vpendbaser]}
    if virtual.is_v41:
        regs["GICR_VSGIR"] = [int(v) for v in virtual.vsgir]
    return regs


def save_redistributors(rd) -> dict:
    """`Redistributors.save` of GICv4 redistributors: rev0's pending tables
    and GICR_* registers, each resident vPE's cache written into its VPT,
    and the VLPI registers."""
    resident = _plan_resident(rd)
    pending = rev0._plan_pending(rd)
    for cpu, addr in pending:
        rd.lpi_state.save_pending(cpu, addr)
    for cpu in resident:
        rd.virtual.write_back_cache(cpu)
    return {**rev0._redistributor_registers(rd), **vlpi_registers(rd)}


def save(its, redistributors: bool = True) -> dict:
    """The rev1 `ITS.save`: everything checked, then written (`SaveError`:
    guest memory untouched)."""
    rd = its.redistributors
    tables = its.tables
    arrays = tables.to_arrays()
    devices = rev0._table(its.stored_register("GITS_BASER0"))
    collections = rev0._table(its.stored_register("GITS_BASER1"))
    vpe_table = _VpeTable(its.stored_register("GITS_BASER2"), its.gic_version)
    records = tables.device_records()
    zero, slots = rev0._plan_device_table(its, devices, records, abi.REV1_ITE_BYTES)
    ctes = _ctes(its, arrays)
    if not collections.valid:
        if ctes.size:
            raise SaveError("collection", int(ctes[0] & _u(abi.CTE["ICID"].max)), "slot",
                            "no collection table: GITS_BASER1.Valid is 0")
    else:
        if ctes.size > collections.slots:
            raise SaveError("collection", None, "GITS_BASER1",
                            f"{ctes.size} collections do not fit {collections.slots} slots")
        if ctes.size < collections.slots:
            ctes = np.append(ctes, _u(0))
        if not its.memory.contains(collections.base, ctes.size * abi.ENTRY_BYTES):
            raise SaveError("collection", None, "GITS_BASER1",
                            f"table {collections.base:#x} outside guest memory")
    vpe_ids, vpe_cpus = tables.vpe_table()
    vte_slots = _vpe_slots(its, vpe_table, vpe_ids)
    vtes = _vte_words(its, vpe_ids, vpe_cpus)
    vpe_zero = _vpe_zero_ranges(its, vpe_table)
    pending = rev0._plan_pending(rd) if redistributors else []
    resident = _plan_resident(rd) if redistributors else []
    itt_addrs, word0, word1 = _itt_entries(arrays)
    # Everything has been checked: write.
    if zero is not None:
        zero_ranges(its.guest_window, *zero)
    save_dtes(its.guest_window, slots, records)
    zero_ranges(its.guest_window, arrays["itt_addr"],
                np.uint64(abi.REV1_ITE_BYTES) << arrays["event_bits"].astype(np.uint64))
    scatter_u64(its.guest_window, itt_addrs, word0)
    scatter_u64(its.guest_window, itt_addrs + _u(8), word1)
    if ctes.size and collections.valid:
        its.memory.view(collections.base, ctes.size, "<u8")[:] = ctes
    zero_ranges(its.guest_window, *vpe_zero)
    for dword in range(vtes.shape[1]):
        scatter_u64(its.guest_window, vte_slots + _u(8 * dword),
                    np.ascontiguousarray(vtes[:, dword]))
    for cpu, addr in pending:
        rd.lpi_state.save_pending(cpu, addr)
    for cpu in resident:
        rd.virtual.write_back_cache(cpu)
    state = {"format": abi.REV1_FORMAT, **rev0.save_registers(its)}
    if redistributors:
        state.update(rev0._redistributor_registers(rd))
        state.update(vlpi_registers(rd))
    return state


# ---------------------------------------------------------------------------- restore

def _first_error(checks, describe) -> None:
    """Raise the RestoreError of the first row failing any check: `checks` is
    a list of (bad mask, field, reason(row)) and `describe(row)` gives the
    (table, id) of a row."""
    first, chosen = None, None
    for bad, field, reason in checks:
        rows = np.flatnonzero(bad)
        if rows.size and (first is None or rows[0] < first):
            first, chosen = int(rows[0]), (field, reason)
    if first is not None:
        table, ident = describe(first)
        raise RestoreError(table, ident, chosen[0], chosen[1](first))


def _read_vtes(its, baser2: int) -> dict:
    """The valid VTEs of the vPE table `baser2` describes, checked: arrays
    by vPEID (RestoreError naming the entry otherwise)."""
    virtual = its.redistributors.virtual
    table = _VpeTable(baser2, its.gic_version)
    dwords = 4 if virtual.is_v41 else 1
    empty = np.empty((0, dwords), np.uint64)
    if not table.valid:
        ids, words = np.empty(0, np.uint64), empty
    elif not table.indirect:
        if not its.memory.contains(table.base, table.nbytes):
            raise RestoreError("vpe", None, "GITS_BASER2",
                               f"table {table.base:#x}+{table.nbytes:#x} outside guest memory")
        count = min(table.nbytes // table.entry_bytes, VPE_SPACE)
        words = its.memory.view(table.base, count * dwords, "<u8").reshape(count, dwords)
        ids = np.arange(count, dtype=np.uint64)
    else:
        indices, pages = _vpe_pages(its, table, RestoreError)
        per_page = table.page_bytes // table.entry_bytes
        keep = indices * _u(per_page) < _u(VPE_SPACE)
        indices, pages = indices[keep], pages[keep]
        words = np.concatenate([its.memory.view(int(page), per_page * dwords, "<u8").reshape(
            per_page, dwords) for page in pages.tolist()]) if pages.size else empty
        ids = (np.repeat(indices * _u(per_page), per_page)
               + np.tile(np.arange(per_page, dtype=np.uint64), indices.size))
        inside = ids < _u(VPE_SPACE)
        ids, words = ids[inside], words[inside]
    valid = (words[:, 0] & _u(_VTE0["Valid"].mask)) != 0
    ids, words = ids[valid], np.array(words[valid])
    word0 = words[:, 0]
    size = (word0 >> _u(_VTE0["VPT_size"].lsb)) & _u(_VTE0["VPT_size"].max)
    vpt = ((word0 >> _u(_VTE0["VPT_addr"].lsb)) & _u(_VTE0["VPT_addr"].max)) << _u(
        abi.VPT_ADDR_SHIFT)
    cpu = (word0 >> _u(_VTE0["RDbase"].lsb)) & _u(_VTE0["RDbase"].max)
    intid_bits = its.tables.intid_bits
    size_ok = size <= _u(intid_bits - 1)
    checks = [
        (word0 & ~_u(_VTE0.field_mask) != 0, "RES0",
         lambda r: f"{int(word0[r]):#x} sets RES0 bits"),
        (~size_ok, "VPT_size",
         lambda r: f"{int(size[r])} is above intid_bits - 1 = {intid_bits - 1}"),
        (cpu >= _u(its.num_cpus), "RDbase",
         lambda r: f"target CPU {int(cpu[r])} does not exist (num_cpus={its.num_cpus})"),
        (size_ok & ~_contains(its.memory, vpt, _vpt_bytes(np.minimum(size, _u(31))))
         , "VPT_addr", lambda r: f"VPT {int(vpt[r]):#x} outside guest memory"),
    ]
    result = {"vpe_id": ids.astype(np.uint16), "cpu": cpu.astype(np.int32),
              "vpt_addr": vpt, "vpt_size": size.astype(np.uint8),
              "vconf_addr": np.zeros(ids.size, np.uint64),
              "default_doorbell": np.full(ids.size, C.NO_DOORBELL, np.uint32),
              "armed": np.zeros(ids.size, bool), "vsgi_pending": None, "vsgi_config": None}
    if virtual.is_v41:
        word1, word2, word3 = words[:, 1], words[:, 2], words[:, 3]
        vconf = word1 & _u(_VTE1["VCONF_addr"].mask)
        doorbell = word2 & _u(_VTE2["Default_Doorbell"].max)
        doorbell_ok = (doorbell == _u(C.NO_DOORBELL)) | (
            (doorbell >= _u(LPI_FIRST_INTID)) & (doorbell < _u(1 << intid_bits)))
        checks += [
            (word1 & ~_u(_VTE1.field_mask) != 0, "RES0",
             lambda r: f"dword1 {int(word1[r]):#x} sets RES0 bits"),
            (size_ok & ~_contains(its.memory, vconf, _config_bytes(np.minimum(size, _u(31)))),
             "VCONF_addr",
             lambda r: f"vLPI configuration table {int(vconf[r]):#x} outside guest memory"),
            (~doorbell_ok, "Default_Doorbell",
             lambda r: f"{int(doorbell[r])} is neither 1023 nor an LPI below 2**{intid_bits}"),
        ]
        bit = np.arange(NUM_VSGIS, dtype=np.uint64)
        enable = (word1[:, None] >> bit) & _u(1)
        group = (word2[:, None] >> (bit + _u(_VTE2["vSGI_Group"].lsb))) & _u(1)
        priority = ((word3[:, None] >> (_u(4) * bit)) & _u(0xF)) << _u(abi.VSGI_PRIORITY_SHIFT)
        result.update(
            vconf_addr=vconf, default_doorbell=doorbell.astype(np.uint32),
            armed=(word1 >> _u(_VTE1["Armed"].lsb)) & _u(1) != 0,
            vsgi_pending=((word2 >> _u(_VTE2["vSGI_Pending"].lsb))
                          & _u(_VTE2["vSGI_Pending"].max)).astype(np.uint16),
            vsgi_config=np.stack((priority, group, enable), axis=2).astype(np.uint8))
    _first_error(checks, lambda r: ("vpe", int(ids[r])))
    return result


def _build(its, values: dict) -> tuple[TranslationTables, dict]:
    """Fresh tables and the vPE attributes guest memory holds (RestoreError)."""
    old = its.tables
    memory, window = its.memory, its.guest_window
    devices, collections = rev0._table(values["GITS_BASER0"]), rev0._table(values["GITS_BASER1"])
    known = np.zeros(65536, bool)
    icids = np.empty(0, np.uint16)
    cpus = np.empty(0, np.int32)
    if collections.valid:
        icids, cpus = scan_collections(window, collections.base, collections.nbytes,
                                       its.num_cpus, old.num_collections)
        known[icids] = True
    vpes = _read_vtes(its, values["GITS_BASER2"])
    device_ids = dtes = np.empty(0, np.uint64)
    if devices.valid:
        if devices.indirect and not memory.contains(devices.base, devices.nbytes):
            raise RestoreError("level1", None, "GITS_BASER0",
                               f"table {devices.base:#x}+{devices.nbytes:#x} outside guest memory")
        device_ids, dtes = walk_device_table(window, devices.base, devices.nbytes,
                                             devices.page_bytes, devices.indirect)
    bits = (dtes & _u(abi.DTE["Size"].max)) + _u(1)
    itts = ((dtes >> _u(abi.DTE["ITT_addr"].lsb)) & _u(abi.DTE["ITT_addr"].max)) << _u(
        abi.ITT_ADDR_SHIFT)
    bits_ok = bits <= _u(old.event_bits)
    _first_error([
        (device_ids >> _u(old.device_bits) != 0, "DeviceID",
         lambda r: f"beyond {old.device_bits} DeviceID bits"),
        (~bits_ok, "Size", lambda r: f"{int(bits[r])} EventID bits, more than {old.event_bits}"),
        (bits_ok & ~_contains(memory, itts, _u(abi.REV1_ITE_BYTES) << np.minimum(bits, _u(32))),
         "ITT_addr", lambda r: f"ITT {int(itts[r]):#x}+"
                               f"{abi.REV1_ITE_BYTES << int(bits[r]):#x} outside guest memory"),
    ], lambda r: ("device", int(device_ids[r])))
    rows, events, word0, word1 = walk_itts_rev1(window, device_ids, itts,
                                                bits.astype(np.uint8))
    virtual = (word1 & _VIRTUAL) != 0
    intid = (word0 >> _u(_ITE0["INTID"].lsb)) & _u(_ITE0["INTID"].max)
    low = word0 & _u(_ITE0["ICID_or_vPEID"].max)
    doorbell = word1 & _u(_ITE1["Doorbell"].max)
    limit = _u(1 << old.intid_bits)
    lpi = (intid >= _u(LPI_FIRST_INTID)) & (intid < limit)
    physical = ~virtual
    _first_error([
        (physical & ~lpi, "pINTID",
         lambda r: f"{int(intid[r])} is not an LPI below 2**{old.intid_bits}"),
        (physical & ~known[low.astype(np.intp)], "ICID",
         lambda r: f"collection {int(low[r])} is not in the collection table"),
        (physical & (word1 != 0), "dword1",
         lambda r: f"{int(word1[r]):#x}: a physical ITE's dword1 is 0"),
        (virtual & (word1 & ~_u(_ITE1.field_mask) != 0), "dword1",
         lambda r: f"{int(word1[r]):#x} sets RES0 bits"),
        (virtual & ~lpi, "vINTID",
         lambda r: f"{int(intid[r])} is not an LPI below 2**{old.intid_bits}"),
        (virtual & ~((doorbell == _u(C.NO_DOORBELL))
                     | ((doorbell >= _u(LPI_FIRST_INTID)) & (doorbell < limit))), "Doorbell",
         lambda r: f"{int(doorbell[r])} is neither 1023 nor an LPI below 2**{old.intid_bits}"),
    ], lambda r: ("itt", (int(device_ids[rows[r]]), int(events[r]))))
    arrays = {
        "device_id": device_ids.astype(np.uint32),
        "event_bits": bits.astype(np.uint8),
        "itt_addr": itts,
        "num_events": np.bincount(rows[physical], minlength=device_ids.size).astype(np.uint32),
        "event_id": events[physical],
        "intid": intid[physical].astype(np.uint32),
        "icid": low[physical].astype(np.uint16),
        "collection_icid": np.sort(icids[cpus >= 0]),
        "collection_cpu": cpus[cpus >= 0][np.argsort(icids[cpus >= 0], kind="stable")],
    }
    if virtual.any() or vpes["vpe_id"].size:
        arrays.update({
            "virtual_device_id": device_ids[rows[virtual]].astype(np.uint32),
            "virtual_event_id": events[virtual],
            "virtual_intid": intid[virtual].astype(np.uint32),
            "virtual_vpe_id": low[virtual].astype(np.uint16),
            "virtual_doorbell": doorbell[virtual].astype(np.uint32),
            "vpe_id": vpes["vpe_id"],
            "vpe_cpu": vpes["cpu"],
        })
    tables = TranslationTables.from_arrays(
        arrays, old.layout, device_bits=old.device_bits, event_bits=old.event_bits,
        intid_bits=old.intid_bits, num_collections=old.num_collections, num_cpus=old.num_cpus)
    return tables, vpes


def checked_vlpi_registers(rd, state: dict, mapped=None) -> dict | None:
    """The VLPI register lists of `state`, validated (RestoreError), or None
    when `state` has none.  `mapped` (bool array by vPEID) says which vPEs
    will be mapped (default: those mapped now): a v4.1 VPENDBASER with
    Valid = 1 needs its vPE mapped (its VPT is the vPE's); a v4.0 one its
    cached VPT range inside guest memory."""
    virtual = rd.virtual
    names = VLPI_REGISTER_NAMES[rd.gic_version]
    present = [name for name in names if name in state]
    if not present:
        return None
    gicr = {}
    for name in names:
        column = state.get(name)
        width = 32 if name == "GICR_VSGIR" else 64
        if (not isinstance(column, list) or len(column) != rd.num_cpus
                or not all(rev0.is_register_value(v, width) for v in column)):
            raise RestoreError("registers", name, name,
                               f"expected {rd.num_cpus} {width}-bit values, one per CPU")
        gicr[name] = column
    v41 = virtual.is_v41
    kept_prop = registers.GICR_VPROPBASER_V41_KEPT if v41 else (1 << 64) - 1
    pend = registers.GICR_VPENDBASER_V41_LAYOUT if v41 else registers.GICR_VPENDBASER_V40_LAYOUT
    kept_pend = (registers.GICR_VPENDBASER_V41_KEPT if v41
                 else registers.GICR_VPENDBASER_V40_KEPT)
    mapped = virtual.vpe_mapped if mapped is None else mapped
    for cpu in range(rd.num_cpus):
        prop, value = gicr["GICR_VPROPBASER"][cpu], gicr["GICR_VPENDBASER"][cpu]
        if prop & ~kept_prop:
            raise RestoreError("registers", "GICR_VPROPBASER", "GICR_VPROPBASER",
                               f"CPU {cpu}: {prop:#x} sets bits a write does not keep")
        if value & ~kept_pend:
            raise RestoreError("registers", "GICR_VPENDBASER", "GICR_VPENDBASER",
                               f"CPU {cpu}: {value:#x} sets bits a write does not keep")
        if v41 and gicr["GICR_VSGIR"][cpu] & ~registers.GICR_VSGIR_LAYOUT["vPEID"].mask:
            raise RestoreError("registers", "GICR_VSGIR", "GICR_VSGIR",
                               f"CPU {cpu}: {gicr['GICR_VSGIR'][cpu]:#x} sets RES0 bits")
        if not pend["Valid"].extract(value):
            continue
        if v41:
            vpe_id = pend["vPEID"].extract(value)
            if not mapped[vpe_id]:
                raise RestoreError("registers", "GICR_VPENDBASER", "vPEID",
                                   f"CPU {cpu}: resident vPE {vpe_id} is not mapped")
        else:
            idbits = registers.GICR_VPROPBASER_V40_LAYOUT["IDbits"].extract(prop)
            limit = 1 << min(idbits + 1, rd.lpi_state.intid_bits)
            vpt = value & pend["Physical_Address"].mask
            first, end = LPI_FIRST_INTID // 8, limit // 8
            if end > first and not rd.memory.contains(vpt + first, end - first):
                raise RestoreError("registers", "GICR_VPENDBASER", "Physical_Address",
                                   f"CPU {cpu}: resident VPT {vpt:#x} outside guest memory")
    return gicr


def apply_vlpi_registers(rd, gicr: dict) -> None:
    rd.virtual.load_registers(gicr["GICR_VPROPBASER"], gicr["GICR_VPENDBASER"],
                              gicr.get("GICR_VSGIR"))


def restore(its, state: dict) -> None:
    """The rev1 `ITS.restore`: everything validated, then applied."""
    values = rev0._checked_registers(its, state)
    rd = its.redistributors
    with_redistributors = any(name in state for name in rev0.GICR_REGISTER_NAMES)
    gicr = rev0._checked_redistributors(rd, state) if with_redistributors else None
    ctlr = state.get("GITS_CTLR")
    if not rev0.is_register_value(ctlr, 32):
        raise RestoreError("registers", "GITS_CTLR", "GITS_CTLR", f"{ctlr!r} is not a 32-bit value")
    tables, vpes = _build(its, values)
    mapped = rd.virtual.vpe_mapped.copy()
    mapped[vpes["vpe_id"]] = True
    vlpi = checked_vlpi_registers(rd, state, mapped) if with_redistributors else None
    if with_redistributors and vlpi is None:
        raise RestoreError("registers", "GICR_VPENDBASER", "GICR_VPENDBASER",
                           "missing: a GICv4 state's redistributor part holds the VLPI registers")
    # Everything has passed: apply, signalling the redistributors' changes once.
    with rd.deferred_signals():
        if gicr is not None:
            rev0._apply_redistributors(rd, gicr)
        its.install_tables(tables)
        rev0._apply_its_registers(its, values)
        rd.virtual.load_vpes(vpes["vpe_id"], vpes["cpu"], vpes["vpt_addr"], vpes["vpt_size"],
                             vpes["vconf_addr"], vpes["default_doorbell"], vpes["armed"],
                             vpes["vsgi_pending"], vpes["vsgi_config"])
        if vlpi is not None:
            apply_vlpi_registers(rd, vlpi)
        its.mmio_write(registers.GITS_CTLR.offset, ctlr & registers.GITS_CTLR.write_mask, 4)


def save_tables(its) -> None:
    """The rev1 `ITS.save_tables`: device table, ITTs, collection table and
    vPE table -> guest memory (`save` without the redistributors)."""
    save(its, redistributors=False)


def restore_tables(its) -> None:
    """The rev1 `ITS.restore_tables`: the tables and the vPE table the stored
    GITS_BASER0/1/2 describe -> the ITS, all-or-nothing."""
    values = {f"GITS_BASER{n}": its.stored_register(f"GITS_BASER{n}") for n in range(3)}
    tables, vpes = _build(its, values)
    its.install_tables(tables)
    its.redistributors.virtual.load_vpes(
        vpes["vpe_id"], vpes["cpu"], vpes["vpt_addr"], vpes["vpt_size"], vpes["vconf_addr"],
        vpes["default_doorbell"], vpes["armed"], vpes["vsgi_pending"], vpes["vsgi_config"])
