"""Save and restore of a GICv4 ITS: its-core-rev1 (docs/save-format.md, docs/gicv4.md).

Round trips: hypothesis-generated GICv4 command streams (the GICv4
differential test's operations, run on the ITS and the reference model,
which must agree throughout), then save, restore into a fresh ITS on a
copy of guest memory and compare the whole state with the differential
test's helpers; then save again: byte-exact.  4.0 and 4.1, flat and
two-level device and vPE tables, every storage layout.

Hostile images: hand-built entry bytes (the bit positions written out here,
from the format's definition, not taken from the code) for every restore
rule: RestoreError naming the entry, the ITS and redistributors unchanged.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import its_core
import test_gicv4_differential as D
from front_end_helpers import (GITS_BASER0, GITS_BASER1, GITS_CBASER, GITS_CTLR, GITS_CWRITER,
                               baser_value, cbaser_value, pendbaser_value, propbaser_value)
from its_core import GuestMemory
from its_core.errors import RestoreError, SaveError
from its_core.frontend import commands as C
from its_core.frontend import registers as R
from its_core.frontend.reference_its import ReferenceITS
from its_core.frontend.registers import BaserType, PageSize

GITS_BASER2 = R.GITS_BASER2_VPES.offset
L1_VALID = 1 << 63
#: ITTs of devices 5, 6, 7: 8 KiB apart (the largest, 9 EventID bits x 16 bytes, fits).
ITT_OF = {5: 0x8000, 6: 0xA000, 7: 0xC000}
#: Level-2 pages of the two-level device table (DeviceIDs 0..511, 512..1023) and
#: of the two-level vPE table.
DT_PAGES = (0x6000, 0x7000)
VT_PAGES = (0xE000, 0xF000)
MAPD_OPCODE, VMAPP_OPCODE = 0x08, 0x29
ROUND_TRIP = settings(max_examples=int(os.environ.get("REV1_EXAMPLES", 12)), deadline=None,
                      database=None, suppress_health_check=list(HealthCheck))


def make_system(version: str, indirect: bool = False, layout: str = "flat", seed: int = 0):
    """A GICv4 ITS (storage `layout`) and a ReferenceITS programmed alike (as
    the differential test's `make_pair`, with non-overlapping ITTs and, with
    `indirect`, two-level device and vPE tables)."""
    mems = [GuestMemory(D.MEM), GuestMemory(D.MEM)]
    for mem in mems:
        D.fill(mem, seed)
        if indirect:
            for l1, pages in ((D.DT, DT_PAGES), (D.VT, VT_PAGES)):
                for index, page in enumerate(pages):
                    mem.write_u64(l1 + 8 * index, L1_VALID | page)
    its = its_core.ITS(mems[0], num_cpus=D.NUM_CPUS, device_bits=D.DEVICE_BITS,
                       event_bits=D.EVENT_BITS, intid_bits=D.INTID_BITS, gic_version=version,
                       layout=layout)
    ref = ReferenceITS(mems[1], D.NUM_CPUS, device_bits=D.DEVICE_BITS, event_bits=D.EVENT_BITS,
                       intid_bits=D.INTID_BITS, gic_version=version)
    propbaser = propbaser_value(D.PROP, D.INTID_BITS - 1)
    baser0 = baser_value(BaserType.DEVICES, D.DT, page_size=PageSize.SIZE_4K, indirect=indirect)
    baser1 = baser_value(BaserType.COLLECTIONS, D.CT, page_size=PageSize.SIZE_4K)
    baser2 = baser_value(BaserType.VPES, D.VT, page_size=PageSize.SIZE_4K, indirect=indirect)
    rd = its.redistributors
    for cpu in range(D.NUM_CPUS):
        rd.mmio_write(cpu, D.GICR_PROPBASER, propbaser, 8)
        rd.mmio_write(cpu, D.GICR_PENDBASER, pendbaser_value(D.PEND + cpu * 0x10000, ptz=True), 8)
        rd.mmio_write(cpu, D.GICR_CTLR, 1, 4)
    its.mmio_write(GITS_CBASER, cbaser_value(D.QUEUE), 8)
    its.mmio_write(GITS_CWRITER, 0, 8)
    its.mmio_write(GITS_BASER0, baser0, 8)
    its.mmio_write(GITS_BASER1, baser1, 8)
    its.mmio_write(GITS_BASER2, baser2, 8)
    its.mmio_write(GITS_CTLR, 1, 4)
    ref.propbaser = propbaser
    ref.pendbaser = [pendbaser_value(D.PEND + cpu * 0x10000, ptz=True) for cpu in range(D.NUM_CPUS)]
    for cpu in range(D.NUM_CPUS):
        ref.enable_lpis(cpu)
    ref.baser0, ref.baser1 = baser0, baser1
    ref.write_baser2(its.stored_register("GITS_BASER2"))
    ref.enabled = True
    warm = [C.mapc(0, 0), C.mapc(1, 1), C.mapd(5, ITT_OF[5], 4), C.mapd(6, ITT_OF[6], 4),
            C.mapti(6, 0, 8292, 0)]
    if version == "4.1":
        warm += [C.vmapp_v41(3, 0, D.VPT_A, 13, D.VCONF, 8293, alloc=True),
                 C.vmapp_v41(4, 1, D.VPT_B, 13, D.VCONF, C.NO_DOORBELL, alloc=True)]
    else:
        warm += [C.vmapp(3, 0, D.VPT_A, 13), C.vmapp(4, 1, D.VPT_B, 13)]
    warm += [C.vmapti(5, 1, 3, 8200, 8292), C.vmapti(5, 2, 4, 9000, C.NO_DOORBELL)]
    for packet in warm:
        assert D.apply_command(its, ref, packet) == 0
    return its, ref, mems


def fresh_its(version: str, memory: GuestMemory, layout: str = "flat"):
    return its_core.ITS(memory, num_cpus=D.NUM_CPUS, device_bits=D.DEVICE_BITS,
                        event_bits=D.EVENT_BITS, intid_bits=D.INTID_BITS, gic_version=version,
                        layout=layout)


def full_state(its) -> dict:
    """Everything a round trip must preserve: the differential test's GICv4
    state, the tables, each CPU's pending LPIs and best virtual interrupt,
    the ITS registers."""
    rd = its.redistributors
    return {**D.fast_state(its), "tables": its.tables.snapshot(),
            "pending": [its.pending(cpu).tolist() for cpu in range(D.NUM_CPUS)],
            "highest_virtual": [rd.highest_pending_virtual(cpu) for cpu in range(D.NUM_CPUS)],
            "registers": its.save_registers()}


def copy_of(memory: GuestMemory) -> GuestMemory:
    twin = GuestMemory(memory.size)
    twin.array[:] = memory.array
    return twin


# -- round trips ------------------------------------------------------------------------

def rev1_operations(version: str):
    """The differential test's operations, with MAPD on the non-overlapping ITTs
    and VMAPPs whose tables lie inside guest memory made more frequent (a
    VPT outside memory makes `save` refuse: tested below)."""
    mapd = st.builds(lambda device, bits, valid: C.mapd(device, ITT_OF[device], bits, valid),
                     st.sampled_from([5, 6, 7]), st.sampled_from([2, 4, 9]),
                     st.sampled_from([True, True, False]))
    if version == "4.1":
        vmapp = st.builds(C.vmapp_v41, st.sampled_from([3, 4, 5, 100]), st.integers(0, 1),
                          st.sampled_from([D.VPT_A, D.VPT_B, D.VPT_C]), st.sampled_from([12, 13]),
                          st.just(D.VCONF), D.doorbell, st.booleans(), st.booleans(),
                          st.sampled_from([True, True, False]))
    else:
        vmapp = st.builds(C.vmapp, st.sampled_from([3, 4, 5, 100]), st.integers(0, 1),
                          st.sampled_from([D.VPT_A, D.VPT_B, D.VPT_C]), st.sampled_from([12, 13]),
                          st.sampled_from([True, True, False]))
    physical = D.physical_packets().filter(lambda packet: packet[0] != MAPD_OPCODE)
    return st.one_of(D.operations(version).filter(
        lambda op: not (op[0] == "cmd" and op[1][0] == MAPD_OPCODE)),
        st.tuples(st.just("cmd"), st.one_of(mapd, physical, vmapp)))


def skipped(its, op) -> bool:
    """Operations whose effect a restore does not reproduce, by design
    (docs/save-format.md, "What a round trip preserves"): on 4.0 a
    GICR_VPROPBASER write while a vPE is resident (the cached range keeps
    the IDbits of the schedule, a restore takes the saved register's); on
    4.1 a VMAPP while some vPE is resident (a remap may move the VPT the
    cache was loaded from)."""
    virtual = its.redistributors.virtual
    if its.gic_version == "4.0":
        return op[0] in ("vprop", "schedule") and bool(virtual.resident[op[1]])
    return op[0] == "cmd" and op[1][0] == VMAPP_OPCODE and bool(virtual.resident.any())


def round_trip(its, mems, layout: str) -> None:
    """save -> restore into a fresh ITS on a copy of memory -> same state;
    save again -> the same dict and the same bytes."""
    before = mems[0].array.copy()
    try:
        state = its.save()
    except SaveError:
        assert np.array_equal(mems[0].array, before), "a refused save wrote guest memory"
        return
    expected = full_state(its)
    copy = copy_of(mems[0])
    twin = fresh_its(its.gic_version, copy, layout)
    twin.restore(state)
    got = full_state(twin)
    for key in expected:
        assert got[key] == expected[key], key
    assert np.array_equal(copy.array, mems[0].array), "restore wrote guest memory"
    assert twin.save() == state
    diff = np.flatnonzero(copy.array != mems[0].array)
    assert diff.size == 0, f"second save differs at {[hex(a) for a in diff[:8].tolist()]}"


@pytest.mark.parametrize("layout", ["flat", "twolevel", "hash"])
@pytest.mark.parametrize("indirect", [False, True], ids=["flat_tables", "two_level_tables"])
@pytest.mark.parametrize("version", ["4.0", "4.1"])
@ROUND_TRIP
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_round_trip_after_random_streams(version, indirect, layout, data, seed):
    its, ref, mems = make_system(version, indirect, layout, seed)
    for op in data.draw(st.lists(rev1_operations(version), min_size=1, max_size=30)):
        if not skipped(its, op):
            D.apply(its, ref, op)
    D.check_same(its, ref, mems)
    round_trip(its, mems, layout)


@pytest.mark.parametrize("version", ["4.0", "4.1"])
def test_round_trip_with_a_resident_vpe_and_vsgis(version):
    """A resident vPE with vLPIs taken and delivered while resident, an armed
    default doorbell and configured, pending vSGIs (4.1): everything comes back."""
    its, ref, mems = make_system(version, seed=7)
    for mem in mems:                     # vPE 4 has nothing pending: its deschedule arms
        mem.array[D.VPT_B:D.VPT_B + 0x800] = 0
    ops = [("schedule", 0, 3), ("msi", 5, 1), ("ack_virtual", 0), ("ack_virtual", 0),
           ("msi", 5, 1)]
    if version == "4.1":
        ops += [("cmd", C.vsgi(4, 2, 0xA0, True, True)), ("cmd", C.vsgi(4, 9, 0x30, True, False)),
                ("sgir", R.GITS_SGIR_LAYOUT.encode(vPEID=4, vINTID=9)),
                ("schedule", 1, 4), ("deschedule", 1, True)]
    for op in ops:
        D.apply(its, ref, op)
    assert its.redistributors.virtual.resident[0]
    if version == "4.1":
        assert its.redistributors.virtual.doorbell_armed[4]
    round_trip(its, mems, "flat")


def test_a_refused_save_writes_nothing():
    """A vPE whose VPT lies outside guest memory cannot be saved (its VTE
    could not be restored): SaveError naming it, memory untouched."""
    its, ref, mems = make_system("4.0")
    D.apply_command(its, ref, C.vmapp(9, 0, D.VPT_OUTSIDE, 13))
    before = mems[0].array.copy()
    with pytest.raises(SaveError, match="vpe table 0x9: VPT_addr"):
        its.save()
    assert np.array_equal(mems[0].array, before)


@pytest.mark.parametrize("version", ["4.0", "4.1"])
def test_split_save_of_redistributors_and_its(version):
    """rd.save() + its.save(redistributors=False), restored as rd.restore()
    then its.restore() (4.0: residency needs no vPE table), or all at once."""
    its, ref, mems = make_system(version, seed=3)
    D.apply(its, ref, ("schedule", 0, 3))
    D.apply(its, ref, ("msi", 5, 1))
    expected = full_state(its)
    rd_state = its.redistributors.save()
    its_state = its.save(redistributors=False)
    assert set(rd_state) >= {"GICR_VPROPBASER", "GICR_VPENDBASER"}
    assert not any(name.startswith("GICR_") for name in its_state)
    twin = fresh_its(version, copy_of(mems[0]))
    if version == "4.0":
        twin.redistributors.restore(rd_state)
        twin.restore(its_state)
    else:
        with pytest.raises(RestoreError, match="resident vPE 3 is not mapped"):
            twin.redistributors.restore(rd_state)
        twin.restore({**its_state, **rd_state})
    got = full_state(twin)
    for key in expected:
        assert got[key] == expected[key], key


def test_revisions_are_not_interchangeable():
    """rev0 into a GICv4 ITS and rev1 into a GICv3 ITS: RestoreError naming the revision."""
    v4, _, mems = make_system("4.0")
    rev1 = v4.save()
    v3 = its_core.ITS(copy_of(mems[0]), num_cpus=D.NUM_CPUS, device_bits=D.DEVICE_BITS,
                      event_bits=D.EVENT_BITS, intid_bits=D.INTID_BITS)
    with pytest.raises(RestoreError, match="revision 1"):
        v3.restore(rev1)
    v3_state = its_core.ITS(GuestMemory(D.MEM), num_cpus=D.NUM_CPUS).save()
    fresh = fresh_its("4.1", GuestMemory(D.MEM))
    with pytest.raises(RestoreError, match="revision 0"):
        fresh.restore(v3_state)
    # a rev1 dict whose GITS_IIDR claims revision 0
    iidr = R.GITS_IIDR_LAYOUT["Revision"].deposit(rev1["GITS_IIDR"], 0)
    with pytest.raises(RestoreError, match="Revision"):
        fresh_its("4.0", copy_of(mems[0])).restore({**rev1, "GITS_IIDR": iidr})


# -- hand-built images -----------------------------------------------------------------

def ite_bytes(word0: int, word1: int) -> bytes:
    return word0.to_bytes(8, "little") + word1.to_bytes(8, "little")


def itt_entry(next_: int, intid: int, low: int) -> int:
    """dword0 of a rev1 ITE: next [63:48], INTID [47:16], ICID / vPEID [15:0]."""
    return next_ << 48 | intid << 16 | low


def vte0(vpt: int, size: int, cpu: int, valid: int = 1) -> int:
    """GICv4.0 VTE / v4.1 dword0: Valid [0], VPT_size [5:1], VPT_addr [41:6]
    (address >> 16), RDbase [57:42]."""
    return valid | size << 1 | (vpt >> 16) << 6 | cpu << 42


def saved_image(version: str):
    """A small saved state (no resident vPE) and the memory it was saved to:
    device 5 (4 EventID bits, ITT 0x8000) with virtual ITEs at EventIDs 1
    (vINTID 8200, vPE 3, doorbell 8292) and 2 (vINTID 9000, vPE 4, none);
    device 6 with physical EventID 0 -> 8292 in collection 0; vPEs 3 and 4."""
    its, ref, mems = make_system(version, seed=11)
    return its.save(), mems[0]


def restore_refused(version: str, memory: GuestMemory, state: dict, match: str):
    """Restore into a fresh ITS: RestoreError matching `match`, nothing changed."""
    twin = fresh_its(version, copy_of(memory))
    before = full_state(twin)
    memory_before = twin.memory.array.copy()
    with pytest.raises(RestoreError, match=match):
        twin.restore(state)
    assert full_state(twin) == before
    assert np.array_equal(twin.memory.array, memory_before)
    assert not twin.enabled


@pytest.mark.parametrize("version", ["4.0", "4.1"])
def test_the_saved_bytes_are_the_format(version):
    """The entries of `saved_image`, byte for byte, from the definition."""
    state, mem = saved_image(version)
    itt = ITT_OF[5]
    assert mem.read(itt + 16, 16) == ite_bytes(itt_entry(1, 8200, 3), 1 << 63 | 8292)
    assert mem.read(itt + 32, 16) == ite_bytes(itt_entry(0, 9000, 4), 1 << 63 | 1023)
    assert mem.read(itt, 16) == bytes(16)                          # EventID 0: unmapped
    assert mem.read(ITT_OF[6], 16) == ite_bytes(itt_entry(0, 8292, 0), 0)
    entry = 32 if version == "4.1" else 8
    vte3 = mem.read(D.VT + 3 * entry, entry)
    assert vte3[:8] == vte0(D.VPT_A, 13, 0).to_bytes(8, "little")
    assert mem.read(D.VT + 4 * entry, 8) == vte0(D.VPT_B, 13, 1).to_bytes(8, "little")
    assert mem.read(D.VT, 3 * entry) == bytes(3 * entry)           # unused slots zeroed
    if version == "4.1":
        # dword1 VCONF_addr in place, dword2 default doorbell 8293, no vSGI state
        assert vte3[8:] == (D.VCONF.to_bytes(8, "little") + (8293).to_bytes(8, "little")
                            + bytes(8))
    assert state["format"] == "its-core-rev1"
    assert R.GITS_IIDR_LAYOUT["Revision"].extract(state["GITS_IIDR"]) == 1


def _vte_addr(version: str, vpe_id: int) -> int:
    return D.VT + vpe_id * (32 if version == "4.1" else 8)


HOSTILE_VTES = [
    # (description, vPEID, dword0, match)
    ("VPT_size above intid_bits - 1", 3, vte0(D.VPT_A, 14, 0), r"vpe table 0x3: VPT_size"),
    ("RDbase beyond num_cpus", 3, vte0(D.VPT_A, 13, 2), r"vpe table 0x3: RDbase"),
    ("VPT outside memory", 3, vte0(D.VPT_OUTSIDE, 13, 0), r"vpe table 0x3: VPT_addr"),
    ("RES0 bit set", 3, vte0(D.VPT_A, 13, 0) | 1 << 60, r"vpe table 0x3: RES0"),
]


@pytest.mark.parametrize("case", HOSTILE_VTES, ids=[case[0] for case in HOSTILE_VTES])
@pytest.mark.parametrize("version", ["4.0", "4.1"])
def test_hostile_vtes(version, case):
    _, vpe_id, word0, match = case
    state, mem = saved_image(version)
    mem.write_u64(_vte_addr(version, vpe_id), word0)
    restore_refused(version, mem, state, match)


HOSTILE_VTES_V41 = [
    # (description, dword index, value, match)
    ("VCONF_addr outside memory", 1, D.VPT_OUTSIDE, r"vpe table 0x3: VCONF_addr"),
    ("dword1 RES0 bits", 1, D.VCONF | 1 << 55, r"vpe table 0x3: RES0"),
    ("default doorbell neither 1023 nor an LPI", 2, 1022, r"vpe table 0x3: Default_Doorbell"),
    ("default doorbell beyond the INTID bits", 2, 1 << D.INTID_BITS,
     r"vpe table 0x3: Default_Doorbell"),
]


@pytest.mark.parametrize("case", HOSTILE_VTES_V41, ids=[case[0] for case in HOSTILE_VTES_V41])
def test_hostile_v41_vtes(case):
    _, dword, value, match = case
    state, mem = saved_image("4.1")
    mem.write_u64(_vte_addr("4.1", 3) + 8 * dword, value)
    restore_refused("4.1", mem, state, match)


def test_v41_vte_vsgi_fields_come_back():
    """A hand-built v4.1 VTE's vSGI fields: enable [15:0] of dword1, group
    [63:48] and pending [47:32] of dword2, one priority nibble per vSGI in dword3."""
    state, mem = saved_image("4.1")
    addr = _vte_addr("4.1", 4)
    mem.write_u64(addr + 8, 1 << 63 | D.VCONF | 1 << 5)              # armed, vSGI 5 enabled
    mem.write_u64(addr + 16, 1 << 53 | 1 << 37 | 1023)               # vSGI 5 group 1, pending
    mem.write_u64(addr + 24, 0xC << 20)                              # vSGI 5 priority 0xC0
    twin = fresh_its("4.1", copy_of(mem))
    twin.restore(state)
    virtual = twin.redistributors.virtual
    assert bool(virtual.doorbell_armed[4])
    assert int(virtual.vsgi_pending[4]) == 1 << 5
    assert virtual.vsgi_config[4, 5].tolist() == [0xC0, 1, 1]
    assert virtual.vsgi_config[4, :5].sum() == 0 and virtual.vsgi_config[4, 6:].sum() == 0


HOSTILE_ITES = [
    # (description, EventID of device 5, dword0, dword1, match)
    ("vINTID below 8192", 1, itt_entry(1, 8191, 3), 1 << 63 | 8292, r"itt table \(5, 1\): vINTID"),
    ("vINTID beyond the INTID bits", 1, itt_entry(1, 1 << D.INTID_BITS, 3), 1 << 63 | 8292,
     r"itt table \(5, 1\): vINTID"),
    ("doorbell 1022", 1, itt_entry(1, 8200, 3), 1 << 63 | 1022, r"itt table \(5, 1\): Doorbell"),
    ("doorbell beyond the INTID bits", 1, itt_entry(1, 8200, 3), 1 << 63 | 1 << D.INTID_BITS,
     r"itt table \(5, 1\): Doorbell"),
    ("dword1 RES0 bits", 1, itt_entry(1, 8200, 3), 1 << 63 | 1 << 40 | 8292,
     r"itt table \(5, 1\): dword1"),
    ("physical ITE with a doorbell", 2, itt_entry(0, 9000, 0), 8292, r"itt table \(5, 2\): dword1"),
    ("physical ITE in an unknown collection", 2, itt_entry(0, 9000, 7), 0,
     r"itt table \(5, 2\): ICID"),
    ("next past the ITT", 2, itt_entry(14, 9000, 4), 1 << 63 | 1023, r"itt table \(5, 2\): next"),
]


@pytest.mark.parametrize("case", HOSTILE_ITES, ids=[case[0] for case in HOSTILE_ITES])
@pytest.mark.parametrize("version", ["4.0", "4.1"])
def test_hostile_virtual_ites(version, case):
    _, event_id, word0, word1, match = case
    state, mem = saved_image(version)
    mem.write(ITT_OF[5] + 16 * event_id, ite_bytes(word0, word1))
    restore_refused(version, mem, state, match)


def test_hostile_dtes_and_tables():
    """rev0's DTE rules with 16-byte ITTs, and tables outside memory."""
    state, mem = saved_image("4.0")
    # DTE 5 (V [63], next [62:49] = 1 to device 6, ITT_addr [48:5], Size [4:0]):
    # 5 EventID bits at the last 256 bytes of memory -- 32 x 8-byte rev0 ITEs
    # would fit, 32 x 16 bytes do not
    hostile = copy_of(mem)
    hostile.write_u64(D.DT + 5 * 8, 1 << 63 | 1 << 49 | ((D.MEM - 0x100) >> 8) << 5 | 4)
    restore_refused("4.0", hostile, state, r"device table 0x5: ITT_addr")
    # the vPE table beyond memory
    baser2 = R.GITS_BASER_LAYOUT["Physical_Address"].deposit(state["GITS_BASER2"], D.MEM >> 12)
    restore_refused("4.0", mem, {**state, "GITS_BASER2": baser2}, r"GITS_BASER2")


@pytest.mark.parametrize("version", ["4.0", "4.1"])
def test_hostile_vlpi_registers(version):
    its, ref, mems = make_system(version, seed=5)
    D.apply(its, ref, ("schedule", 0, 3))
    state = its.save()
    vpend = state["GICR_VPENDBASER"]
    restore_refused(version, mems[0], {**state, "GICR_VPENDBASER": vpend[:1]}, "GICR_VPENDBASER")
    restore_refused(version, mems[0], {**state, "GICR_VPENDBASER": [vpend[0] | 1 << 60, 0]},
                    "GICR_VPENDBASER")
    if version == "4.1":
        unmapped = R.GICR_VPENDBASER_V41_LAYOUT["vPEID"].deposit(vpend[0], 77)
        restore_refused(version, mems[0], {**state, "GICR_VPENDBASER": [unmapped, 0]},
                        "resident vPE 77 is not mapped")
        restore_refused(version, mems[0], {**state, "GICR_VSGIR": [1 << 20, 0]}, "GICR_VSGIR")
    else:
        outside = R.GICR_VPENDBASER_V40_LAYOUT["Physical_Address"].deposit(
            vpend[0], D.VPT_OUTSIDE >> 16)
        restore_refused(version, mems[0], {**state, "GICR_VPENDBASER": [outside, 0]},
                        "Physical_Address")
    missing = {k: v for k, v in state.items() if k != "GICR_VPROPBASER"}
    restore_refused(version, mems[0], missing, "GICR_VPROPBASER")


@pytest.mark.parametrize("version", ["4.0", "4.1"])
@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(flips=st.lists(st.tuples(st.integers(0, 0x3FF), st.integers(0, 7)), min_size=1,
                      max_size=8))
def test_random_bit_flips_in_the_rev1_tables(version, flips):
    """Bit flips anywhere in the device table, the ITTs or the vPE table:
    RestoreError or a valid state, never a crash."""
    state, mem = saved_image(version)
    regions = [D.DT, ITT_OF[5], ITT_OF[6], D.VT]
    hostile = copy_of(mem)
    for offset, bit in flips:
        addr = regions[offset % len(regions)] + (offset // len(regions)) * 4
        hostile.array[addr] ^= 1 << bit
    twin = fresh_its(version, hostile)
    try:
        twin.restore(state)
    except RestoreError:
        assert not twin.enabled and twin.tables.num_devices == 0


# -- its-core dump ------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["4.0", "4.1"])
def test_dump_decodes_a_rev1_image(version, tmp_path):
    """`its-core dump` of `saved_image` (plus a resident vPE on CPU 0): the
    virtual ITEs as virtual, the VTEs, the VLPI registers; JSON alike."""
    import io
    import json

    from its_core.abi import dump
    its, ref, mems = make_system(version, seed=11)
    D.apply(its, ref, ("schedule", 0, 3))
    state = its.save()
    image, regs = tmp_path / "image.bin", tmp_path / "regs.json"
    image.write_bytes(mems[0].array.tobytes())
    regs.write_text(json.dumps(state))
    out = io.StringIO()
    assert dump.main(str(image), 0, str(regs), False, out) == 0
    text = out.getvalue()
    assert "DeviceID 0x5: ITT 0x8000, 4 EventID bits, 0 events, 2 virtual events" in text
    assert "EventID 1 -> virtual: vLPI 8200 of vPE 3 (doorbell LPI 8292)" in text
    assert "EventID 2 -> virtual: vLPI 9000 of vPE 4 (no doorbell)" in text
    assert "EventID 0 -> LPI 8292, collection 0 (CPU 0)" in text
    assert f"GICv{version} vPE table at 0x4000, vPEs (2):" in text
    assert "vPE 3 -> CPU 0: VPT 0x40000, VPT_size 13" in text
    assert "vPE 4 -> CPU 1: VPT 0x50000, VPT_size 13" in text
    if version == "4.1":
        assert "VCONF 0x70000, default doorbell LPI 8293" in text
    assert "(a vPE is resident)" in text.splitlines()[-2]             # CPU 0
    out = io.StringIO()
    assert dump.main(str(image), 0, str(regs), True, out) == 0
    listing = json.loads(out.getvalue())
    assert listing["gic_version"] == version
    assert listing["devices"][0]["virtual_events"] == [
        {"event_id": 1, "vintid": 8200, "vpe_id": 3, "doorbell": 8292},
        {"event_id": 2, "vintid": 9000, "vpe_id": 4, "doorbell": None}]
    assert [vpe["vpe_id"] for vpe in listing["vpes"]] == [3, 4]
    # a hostile VTE: the dump names the image and the entry
    hostile = bytearray(image.read_bytes())
    entry = 32 if version == "4.1" else 8
    # VPT_size 16: above the scratch ITS's 16 INTID bits - 1
    hostile[D.VT + 3 * entry:D.VT + 3 * entry + 8] = vte0(D.VPT_A, 16, 0).to_bytes(8, "little")
    image.write_bytes(bytes(hostile))
    assert dump.main(str(image), 0, str(regs), False, io.StringIO()) == 2


@pytest.mark.parametrize("version", ["4.0", "4.1"])
def test_the_step_by_step_interface(version):
    """save_tables / save_registers / save_pending_tables, then restore_registers,
    restore_tables, restore_pending_tables into a fresh ITS: the tables, the vPE
    table and each mapped vPE's attributes come back (no VLPI registers: those
    are the redistributors' part of `save`)."""
    its, ref, mems = make_system(version, seed=9)
    its.save_tables()
    its.save_pending_tables()
    regs = its.save_registers()
    assert R.GITS_IIDR_LAYOUT["Revision"].extract(regs["GITS_IIDR"]) == 1
    twin = fresh_its(version, copy_of(mems[0]))
    twin.restore_registers(regs)
    twin.restore_tables()
    assert twin.tables.snapshot() == its.tables.snapshot()
    assert twin.redistributors.virtual.vpe_state() == its.redistributors.virtual.vpe_state()


@pytest.mark.parametrize("version", ["4.0", "4.1"])
def test_a_saved_baser2_cannot_change_the_entry_size(version):
    """GITS_BASER2.Entry_Size is read-only: a state claiming another one is
    restored with the ITS's (8 or 32 bytes), as the BASER write keeps it."""
    its, ref, mems = make_system(version, seed=12)
    state = its.save()
    baser2 = R.GITS_BASER_LAYOUT["Entry_Size"].deposit(state["GITS_BASER2"], 0)
    twin = fresh_its(version, copy_of(mems[0]))
    twin.restore({**state, "GITS_BASER2": baser2})
    assert twin.stored_register("GITS_BASER2") == state["GITS_BASER2"]
    assert full_state(twin) == full_state(its)


def test_v41_a_vpe_armed_by_one_cpu_while_resident_on_another():
    """vPE 4 resident on CPU 0 and CPU 1 (the guest's mistake); CPU 1
    deschedules it with nothing pending: its default doorbell is armed while
    CPU 0 still holds it resident.  The round trip keeps both."""
    its, ref, mems = make_system("4.1", seed=13)
    for mem in mems:
        mem.array[D.VPT_B:D.VPT_B + 0x800] = 0
    for op in (("schedule", 0, 4), ("schedule", 1, 4), ("deschedule", 1, True)):
        D.apply(its, ref, op)
    virtual = its.redistributors.virtual
    assert virtual.resident[0] and not virtual.resident[1] and virtual.doorbell_armed[4]
    round_trip(its, mems, "flat")


@pytest.mark.parametrize("version", ["4.0", "4.1"])
def test_commands_use_16_byte_itt_entries(version):
    """GITS_TYPER.ITT_entry_size = 15: MAPTI / VMAPTI need the whole 16-byte
    entry inside guest memory (EventID 16 of an ITT 256 bytes below the end of
    memory is not: 0x100 + 16 x 16 > 0x100; with 8-byte entries it would be),
    and DISCARD zeroes all 16 bytes; the reference model agrees."""
    its, ref, mems = make_system(version, seed=14)
    itt = D.MEM - 0x100
    assert D.apply_command(its, ref, C.mapd(7, itt, 5)) == 0
    assert D.apply_command(its, ref, C.mapti(7, 16, 8300, 0)) == C.E_ITS_MAPTI_ID_OOR
    assert D.apply_command(its, ref, C.vmapti(7, 16, 3, 8300, 1023)) == C.E_ITS_VMAPTI_ID_OOR
    assert D.apply_command(its, ref, C.mapti(7, 15, 8300, 0)) == 0
    assert D.apply_command(its, ref, C.vmapti(7, 3, 3, 8301, 1023)) == 0
    for mem in mems:
        mem.write(itt + 3 * 16, b"\xa5" * 16)
    assert D.apply_command(its, ref, C.discard(7, 3)) == 0
    assert mems[0].read(itt + 3 * 16, 16) == mems[1].read(itt + 3 * 16, 16) == bytes(16)
