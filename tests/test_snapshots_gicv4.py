"""Host snapshots of GICv4 state (its-core-snapshot-1's "its.virtual" and
"redistributors.virtual" keys, docs/save-format.md).

A snapshot taken after a hypothesis-generated GICv4 stream rebuilds an ITS
whose whole state equals the original's, and which then keeps agreeing with
(a copy of) the reference model under further operations.  Pickle,
deepcopy, the .npz file and the split ITS / Redistributors snapshots carry
it too.  Hostile values of every GICv4 key: RestoreError naming the key,
nothing built, a given Redistributors untouched.
"""

from __future__ import annotations

import copy
import os
import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import its_core
import its_core.snapshot
import test_gicv4_differential as D
from its_core.errors import RestoreError
from its_core.frontend.redistributors import Redistributors
from test_save_restore_rev1 import copy_of, full_state, make_system

SNAPSHOT_STREAMS = settings(max_examples=int(os.environ.get("REV1_EXAMPLES", 12)),
                            deadline=None, database=None, suppress_health_check=list(HealthCheck))


def same(a, b) -> None:
    got, expected = full_state(a), full_state(b)
    for key in expected:
        assert got[key] == expected[key], key


def twin_of(its, ref, mems, snapshot, layout=None):
    """An ITS rebuilt from `snapshot` on a copy of memory, and a copy of the
    reference with its own copy of memory: a second (ITS, reference) pair."""
    ref2 = copy.deepcopy(ref)
    mems2 = [copy_of(mems[0]), ref2.mem]
    twin = its_core.ITS.from_snapshot(snapshot, mems2[0], layout=layout)
    return twin, ref2, mems2


@pytest.mark.parametrize("layout", ["flat", "twolevel", "hash"])
@pytest.mark.parametrize("version", ["4.0", "4.1"])
@SNAPSHOT_STREAMS
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_snapshot_after_random_streams_then_keep_going(version, layout, data, seed):
    its, ref, mems = make_system(version, False, layout, seed)
    ops = data.draw(st.lists(D.operations(version), min_size=1, max_size=25))
    for op in ops:
        D.apply(its, ref, op)
    twin, ref2, mems2 = twin_of(its, ref, mems, its.snapshot(),
                                layout=data.draw(st.sampled_from([None, "hash", "flat"])))
    same(twin, its)
    for op in data.draw(st.lists(D.operations(version), min_size=1, max_size=15)):
        D.apply(twin, ref2, op)
        D.check_same(twin, ref2, mems2)


@pytest.mark.parametrize("version", ["4.0", "4.1"])
def test_pickle_and_deepcopy(version):
    its, ref, mems = make_system(version, seed=4)
    for op in (("schedule", 0, 3), ("msi", 5, 1), ("ack_virtual", 0), ("schedule", 1, 4)):
        D.apply(its, ref, op)
    for twin in (copy.deepcopy(its), pickle.loads(pickle.dumps(its))):
        assert twin.gic_version == version and twin.redistributors.gic_version == version
        same(twin, its)
        assert np.array_equal(twin.memory.array, its.memory.array)
        # the copy runs on: a delivery to the resident vPE lands in its cache
        assert twin.msi(5, 1) == its.msi(5, 1)
        same(twin, its)
    rd = copy.deepcopy(its.redistributors)
    assert rd.virtual.pending_virtual(0) == its.redistributors.virtual.pending_virtual(0)


@pytest.mark.parametrize("version", ["4.0", "4.1"])
def test_npz_file_and_split_snapshots(version, tmp_path):
    its, ref, mems = make_system(version, seed=6)
    D.apply(its, ref, ("schedule", 0, 3))
    path = tmp_path / "its.npz"
    its_core.snapshot.save(str(path), its)
    same(its_core.snapshot.load(str(path), copy_of(mems[0])), its)
    rd_snapshot = its.redistributors.snapshot()
    assert rd_snapshot["redistributors.gic_version"] == version
    its_snapshot = its.snapshot(redistributors=False)
    assert its_snapshot["its.gic_version"] == version
    assert not any(key.startswith("redistributors.") for key in its_snapshot)
    memory = copy_of(mems[0])
    rd = Redistributors.from_snapshot(rd_snapshot, memory)
    same(its_core.ITS.from_snapshot(its_snapshot, memory, redistributors=rd), its)
    with pytest.raises(ValueError, match="GICv"):
        its_core.ITS.from_snapshot(its_snapshot, memory,
                                   redistributors=Redistributors(memory, D.NUM_CPUS,
                                                                 D.INTID_BITS))


def test_a_gicv3_snapshot_has_no_gicv4_keys():
    its = its_core.ITS(its_core.GuestMemory(1 << 20), num_cpus=2)
    assert not any(key.endswith("gic_version") or "vpe" in key or "virtual" in key
                   for key in its.snapshot())


def _hostile(version):
    its, ref, mems = make_system(version, seed=8)
    for op in (("schedule", 0, 3), ("msi", 5, 1)):
        D.apply(its, ref, op)
    return its, mems[0]


def _with(snapshot, key, change):
    bad = dict(snapshot)
    value = bad[key]
    bad[key] = change(value.copy() if isinstance(value, np.ndarray) else value)
    return bad


def _set(index, value):
    def change(array):
        array[index] = value
        return array
    return change


# (key, change, versions) -- each makes the snapshot invalid
HOSTILE = [
    ("its.gic_version", lambda v: "4.2", ("4.0", "4.1")),
    ("redistributors.gic_version", lambda v: "4.1" if v == "4.0" else "4.0", ("4.0", "4.1")),
    ("its.GITS_IIDR", lambda v: v & ~0xF000, ("4.0", "4.1")),            # Revision 0
    ("its.GITS_TYPER", lambda v: v & ~0xF0 | 0x70, ("4.0", "4.1")),       # 8-byte ITEs
    ("redistributors.vpe_cpu", _set(0, D.NUM_CPUS), ("4.0", "4.1")),
    ("redistributors.vpt_addr", _set(0, 0x1234), ("4.0", "4.1")),
    ("redistributors.vpt_size", _set(0, D.INTID_BITS), ("4.0", "4.1")),
    ("redistributors.vpe_id", lambda v: v[::-1].copy(), ("4.0", "4.1")),
    ("redistributors.vpe_mapped", _set(0, False), ("4.0", "4.1")),        # table disagrees
    ("redistributors.default_doorbell", _set(0, 1022), ("4.0", "4.1")),
    ("redistributors.vconf_addr", _set(0, 0x10), ("4.0", "4.1")),
    ("redistributors.vsgi_pending", _set(0, 1), ("4.0",)),
    ("redistributors.vsgi_config", _set((0, 3, 0), 0x11), ("4.0", "4.1")),
    ("redistributors.vsgi_config", _set((0, 3, 2), 2), ("4.1",)),
    ("redistributors.GICR_VPENDBASER", _set(0, 1 << 55), ("4.0", "4.1")),
    ("redistributors.GICR_VSGIR", _set(0, 1 << 20), ("4.0", "4.1")),
    ("redistributors.resident_limit", _set(0, 12345), ("4.0", "4.1")),
    ("redistributors.resident_limit", _set(1, 1 << 14), ("4.0", "4.1")),   # not resident
    ("redistributors.resident_vpt", _set(0, 0x100), ("4.0", "4.1")),
    ("redistributors.resident_vpe", _set(0, 4), ("4.1",)),
    ("redistributors.resident_vpe", _set(0, 3), ("4.0",)),
    ("redistributors.cached_pending", _set((0, 3), 1), ("4.0", "4.1")),    # below 8192
    ("redistributors.cached_taken", _set((1, 1500), 1), ("4.0", "4.1")),   # not resident
    ("tables.virtual_intid", _set(0, 100), ("4.0", "4.1")),
    ("tables.virtual_doorbell", _set(0, 1022), ("4.0", "4.1")),
    ("tables.vpe_cpu", _set(0, 1), ("4.0", "4.1")),
]


@pytest.mark.parametrize("version,case", [(version, case) for case in HOSTILE
                                          for version in case[2]],
                         ids=[f"{version}-{case[0]}-{n}" for n, case in enumerate(HOSTILE)
                              for version in case[2]])
def test_hostile_gicv4_snapshots(version, case):
    key, change, _ = case
    its, memory = _hostile(version)
    snapshot = its.snapshot()
    with pytest.raises(RestoreError) as error:
        its_core.ITS.from_snapshot(_with(snapshot, key, change), copy_of(memory))
    assert error.value.table == "snapshot"
    # the key at fault; a rule between two keys may name the other: the
    # gic_version pair, the ITS's and the redistributors' vPEs, and (4.1) an
    # unmapped vPE that a CPU holds resident
    assert error.value.field == key or {error.value.field, key} <= {
        "its.gic_version", "redistributors.gic_version", "tables.vpe_id", "tables.vpe_cpu",
        "redistributors.vpe_mapped", "redistributors.resident_vpe"}, (error.value.field, key)


@pytest.mark.parametrize("version", ["4.0", "4.1"])
def test_a_refused_its_snapshot_leaves_given_redistributors_alone(version):
    its, memory = _hostile(version)
    rd = Redistributors.from_snapshot(its.redistributors.snapshot(), copy_of(memory))
    before = rd.snapshot()
    bad = _with(its.snapshot(redistributors=False), "tables.vpe_cpu", _set(0, 1))
    with pytest.raises(RestoreError, match="tables.vpe_id"):
        its_core.ITS.from_snapshot(bad, rd.memory, redistributors=rd)
    after = rd.snapshot()
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert np.array_equal(value, after[key]) if isinstance(value, np.ndarray) \
            else value == after[key], key
