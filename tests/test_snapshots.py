"""Host snapshots (docs/save-format.md, "Host snapshots (its-core-snapshot-1)") and
pickling / copying of TranslationTables, Redistributors, ITS and GuestMemory.

* Round trips of random states in every layout (and across layouts) through
  `ITS.snapshot` / `ITS.from_snapshot`, `its_core.snapshot.save` / `load`
  (.npz), pickle and deepcopy must give back the same state: tables, registers,
  Enabled and the stall state, both error logs, pending bitmaps, config cache,
  EnableLPIs, PTZ, `strict`, `stall_on_error`; a copy is independent of the
  original; redistributors shared by several ITSs stay shared.
* Bad input -- another format, missing or extra keys, wrong dtypes or shapes,
  hostile contents, damaged files -- raises `RestoreError` naming the key, never
  anything else; hypothesis corrupts valid snapshots and files at random.
"""

from __future__ import annotations

import copy
import io
import pathlib
import pickle
import re
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import its_core
from its_core import (ITS, GuestMap, GuestMemory, Redistributors, RestoreError,
                      TranslationTables, commands as C, registers as R)
from its_core.abi import snapshot_format
from its_core.frontend import its as its_module, redistributors as rd_module
from its_core.testing import assert_same_state, random_state

from conftest import colliding_ids, make_tables

ROOT = pathlib.Path(__file__).resolve().parent.parent
LAYOUTS = its_core.LAYOUTS
NUM_CPUS = 4
MEMORY_BYTES = 24 << 20
MAP_A = GuestMap()
MAP_B = GuestMap(queue=0x0002_0000, device_table=0x0050_0000, collection_table=0x0060_0000,
                 itt_base=0x0120_0000)
WIDE_ITT = 0x0060_0000          # a 16-EventID-bit ITT: the sparse event map
WIDE_DEVICE = 0xFFF0
DISABLED_CPU = 3                 # LPIs disabled, PTZ set for the next enable
VARIANTS = ("running", "stalled", "disabled", "strict")


# ---------------------------------------------------------------------------- states

def populated(layout: str, seed: int = 0, variant: str = "running", *, memory=None,
              redistributors=None, guest: GuestMap = MAP_A, devices: int = 300,
              events: int = 20) -> ITS:
    """An ITS in a random but valid state with a bit of everything: dense and
    sparse devices, pending LPIs, unmapped collections named by events, command
    errors, invalid accesses on both frames, a CPU with LPIs disabled and PTZ set,
    and per `variant` a stalled queue, a disabled ITS or strict mode."""
    memory = memory or GuestMemory(MEMORY_BYTES)
    its = ITS(memory, NUM_CPUS, layout, stall_on_error=variant == "stalled",
              redistributors=redistributors)
    random_state(its, devices, events, seed=seed, guest=guest)
    its.submit(C.mapd(WIDE_DEVICE, WIDE_ITT, 16), C.mapti(WIDE_DEVICE, 3, 9000, 1),
               C.mapti(WIDE_DEVICE, 40_000 + seed, 9001, 7))
    its.submit(C.mapti(0x7FFF, 1, 8200, 0))               # no such device: an error
    its.mmio_read(0x6, 2)                                  # a hole: an invalid access
    its.redistributors.mmio_write(1, 0x4, 0x55, 4)        # a GICR hole
    rd = its.redistributors
    if redistributors is None:
        rd.mmio_write(DISABLED_CPU, R.GICR_CTLR.offset, 0, 4)
        rd.mmio_write(DISABLED_CPU, R.GICR_PENDBASER.offset, guest.pendbaser(DISABLED_CPU), 8)
    if variant == "stalled":
        its.submit(C.mapti(0x7FFE, 1, 8200, 0), C.sync(0))  # stops at the failed MAPTI
        assert its.stalled
    elif variant == "disabled":
        its.mmio_write(R.GITS_CTLR.offset, 0, 4)
    elif variant == "strict":
        its.strict = True
    return its


def snapshots_equal(first: dict, second: dict, *, ignore=()) -> None:
    """Assert two snapshot dicts hold the same keys, kinds, dtypes and values."""
    assert sorted(first) == sorted(second)
    for key in first:
        if key in ignore:
            continue
        a, b = first[key], second[key]
        assert type(a) is type(b), key
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape, key
            assert np.array_equal(a, b), key
        else:
            assert a == b, key


def assert_same(first: ITS, second: ITS, *, layout_may_differ: bool = False) -> None:
    """Everything a snapshot carries is the same in both ITSs."""
    assert_same_state(first, second)
    assert first.enabled == second.enabled and first.stalled == second.stalled
    assert first.strict == second.strict and first.stall_on_error == second.stall_on_error
    assert np.array_equal(first.errors.as_array(), second.errors.as_array())
    assert first.errors.dropped == second.errors.dropped
    assert list(first.access_errors) == list(second.access_errors)
    assert ((first.access_errors is first.redistributors.access_errors)
            == (second.access_errors is second.redistributors.access_errors))
    rd_a, rd_b = first.redistributors, second.redistributors
    assert rd_a.register_state() == rd_b.register_state()
    assert rd_a.strict == rd_b.strict
    assert list(rd_a.access_errors) == list(rd_b.access_errors)
    assert np.array_equal(rd_a.lpi_state.pending_array, rd_b.lpi_state.pending_array)
    assert np.array_equal(rd_a.lpi_state.config_array, rd_b.lpi_state.config_array)
    assert rd_a.lpi_limit == rd_b.lpi_limit
    for cpu in range(first.num_cpus):
        assert rd_a.highest_pending(cpu) == rd_b.highest_pending(cpu)
    snapshots_equal(first.snapshot(), second.snapshot(),
                    ignore=("its.layout",) if layout_may_differ else ())
    if not layout_may_differ:
        assert first.layout == second.layout


@pytest.fixture(scope="module")
def states():
    """(layout, variant) -> a populated ITS (read-only in the tests)."""
    return {(layout, variant): populated(layout, seed, variant)
            for seed, (layout, variant) in enumerate(
                (layout, variant) for layout in LAYOUTS for variant in VARIANTS)}


@pytest.fixture(scope="module")
def valid():
    """A valid snapshot of a small populated ITS (copy it before changing it)."""
    return populated("hash", 5, devices=40, events=8).snapshot()


# ---------------------------------------------------------------------------- the contract

def test_snapshot_is_a_dict_of_arrays_and_plain_scalars(states):
    its = states[("flat", "running")]
    snapshot = its.snapshot()
    assert snapshot["format"] == "its-core-snapshot-1" == its_core.snapshot.FORMAT
    for key, value in snapshot.items():
        assert isinstance(value, np.ndarray) or type(value) in (int, bool, str), key
    # a GICv3 ITS: no "its.virtual" / "redistributors.virtual" (GICv4) keys
    assert set(snapshot) == {key for key, entry in snapshot_format.SCHEMA.items()
                             if not key.startswith("redistributors.access_errors.")
                             and not entry.group.endswith(".virtual")}
    assert its.snapshot(redistributors=False).keys() == {
        key for key in snapshot if not key.startswith("redistributors.")}


def test_a_snapshot_copies_and_never_aliases_the_its(states):
    its = states[("twolevel", "running")]
    before = its.snapshot()
    snapshot = its.snapshot()
    live = [its.lpi_state.pending_array, its.lpi_state.config_array]
    for value in snapshot.values():
        if isinstance(value, np.ndarray):
            assert not any(np.shares_memory(value, array) for array in live)
            if value.size and value.dtype.kind != "U":
                value[...] = 0 if value.dtype.kind != "b" else False
    snapshots_equal(its.snapshot(), before)


# ---------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("variant", VARIANTS)
def test_round_trip_through_from_snapshot(states, layout, variant):
    its = states[(layout, variant)]
    copy_ = ITS.from_snapshot(its.snapshot(), GuestMemory(MEMORY_BYTES))
    assert_same(its, copy_)
    assert copy_.access_errors is copy_.redistributors.access_errors       # still one log
    assert copy_.redistributors.on_signal is None


@pytest.mark.parametrize("target", LAYOUTS)
def test_round_trip_into_another_layout(states, layout, target):
    its = states[(layout, "running")]
    copy_ = ITS.from_snapshot(its.snapshot(), GuestMemory(MEMORY_BYTES), layout=target)
    assert copy_.layout == target
    assert_same(its, copy_, layout_may_differ=True)
    assert copy_.snapshot()["its.layout"] == target


def test_round_trip_through_an_npz_file(states, layout, tmp_path):
    its = states[(layout, "stalled")]
    path = tmp_path / "state.snapshot"                  # written exactly there, any suffix
    its_core.snapshot.save(path, its)
    assert path.exists()
    copy_ = its_core.snapshot.load(path, GuestMemory(MEMORY_BYTES))
    assert_same(its, copy_)
    with np.load(path, allow_pickle=False) as archive:
        assert sorted(archive.files) == sorted(its.snapshot())
        assert archive["format"].shape == () and archive["format"].dtype.kind == "U"
        assert str(archive["format"]) == "its-core-snapshot-1"
        assert archive["its.num_cpus"].dtype == np.uint64
    layout_changed = its_core.snapshot.load(path, GuestMemory(MEMORY_BYTES), layout="hash")
    assert_same(its, layout_changed, layout_may_differ=True)


def test_npz_through_file_objects(states):
    its = states[("hash", "disabled")]
    buffer = io.BytesIO()
    its_core.snapshot.save(buffer, its)
    buffer.seek(0)
    assert_same(its, its_core.snapshot.load(buffer, GuestMemory(MEMORY_BYTES)))


@pytest.mark.parametrize("variant", ["running", "strict"])
def test_round_trip_through_pickle_and_deepcopy(states, layout, variant):
    its = states[(layout, variant)]
    for copy_ in (pickle.loads(pickle.dumps(its)), copy.deepcopy(its)):
        assert_same(its, copy_)
        assert copy_.memory is not its.memory
        assert np.array_equal(copy_.memory.array, its.memory.array)
        assert copy_.access_errors is copy_.redistributors.access_errors
        copy_.strict = not copy_.strict                   # passed on, as to its own
        assert copy_.redistributors.strict == copy_.strict


def test_translation_tables_pickle_and_deepcopy(layout):
    tables = make_tables(layout, num_collections=40, num_cpus=3, intid_bits=20,
                         event_bits=20)
    rng = np.random.default_rng(4)
    for device_id in rng.choice(1 << 10, 60, replace=False).tolist():
        bits = int(rng.integers(1, 21))
        tables.map_device(device_id, bits, itt_addr=device_id << 8)
        for event_id in set(rng.integers(0, 1 << bits, 6).tolist()):
            tables.map_event(device_id, event_id, int(rng.integers(8192, 1 << 20)),
                             int(rng.integers(0, 40)))
    tables.map_collection(3, 2)
    tables.map_collection(39, 0)
    for copy_ in (pickle.loads(pickle.dumps(tables)), copy.deepcopy(tables)):
        assert copy_ is not tables and copy_.layout == layout
        for name in ("device_bits", "event_bits", "intid_bits", "num_collections", "num_cpus",
                     "num_events", "num_devices"):
            assert getattr(copy_, name) == getattr(tables, name), name
        assert copy_.snapshot() == tables.snapshot()
        for a, b in zip(copy_.export_events(), tables.export_events()):
            assert np.array_equal(a, b)
        copy_.unmap_collection(3)
        assert tables.collection_cpu(3) == 2


@pytest.mark.parametrize("layout_name", ["twolevel", "hash"])
def test_tables_with_wide_scattered_ids_round_trip(layout_name):
    tables = make_tables(layout_name, device_bits=32, num_collections=64)
    rng = np.random.default_rng(9)
    device_ids = rng.choice(1 << 32, 3000, replace=False).tolist()
    device_ids += colliding_ids(range(0, 64, 5), 6)        # long probe clusters in a hash
    for device_id in dict.fromkeys(device_ids):
        bits = int(rng.integers(1, 17))
        tables.map_device(device_id, bits)
        for event_id in set(rng.integers(0, 1 << bits, int(rng.integers(0, 5))).tolist()):
            tables.map_event(device_id, event_id, int(rng.integers(8192, 1 << 16)),
                             int(rng.integers(0, 64)))
    tables.map_collection(5, 1)
    devices, events, _ = tables.export_events()
    expected = tables.translate_batch(devices, events)
    for target in LAYOUTS[1:]:
        copy_ = TranslationTables.from_arrays(tables.to_arrays(), target, device_bits=32,
                                              num_collections=64, num_cpus=4)
        assert copy_.snapshot() == tables.snapshot()
        for a, b in zip(copy_.translate_batch(devices, events), expected):
            assert np.array_equal(a, b)
        copy_.map_device(12345, 3)                          # and it keeps working
        copy_.map_event(12345, 1, 8200, 5)
        assert copy_.translate(12345, 1) == (8200, 1)
        gone = list(dict.fromkeys(device_ids))[::7]          # deletions shift clusters
        for device_id in gone:
            copy_.unmap_device(device_id)
            assert copy_.lookup_device(device_id) is None
        kept = ~np.isin(devices, np.array(gone, np.uint32))
        for a, b in zip(copy_.translate_batch(devices[kept], events[kept]), expected):
            assert np.array_equal(a, b[kept])


def test_sorted_order_sorts():
    from its_core.core._layouts import sorted_order
    rng = np.random.default_rng(2)
    for size, high in ((0, 1), (5, 10), (300, 1 << 8), (5000, 1 << 16), (70000, 1 << 32),
                       (4000, 3)):
        ids = rng.integers(0, high, size, dtype=np.uint64).astype(np.uint32)
        assert np.array_equal(sorted_order(ids), np.argsort(ids, kind="stable"))


def test_to_arrays_follows_table_arrays(states):
    arrays = states[("hash", "running")].tables.to_arrays()
    assert list(arrays) == [name for name, _, _, _ in its_core.core._core.TABLE_ARRAYS]
    for name, dtype, _, _ in its_core.core._core.TABLE_ARRAYS:
        assert arrays[name].dtype == np.dtype(dtype) and arrays[name].flags.c_contiguous
        assert snapshot_format.SCHEMA[f"tables.{name}"].kind == dtype


def test_the_copy_is_independent_of_the_original(layout):
    its = populated(layout, 11)
    twin = ITS.from_snapshot(its.snapshot(), GuestMemory(MEMORY_BYTES))
    frozen = twin.snapshot()
    device = int(its.tables.device_ids()[0])
    its.submit(C.discard(device, int(its.tables.events_of(device)[0][0])),
               C.mapc(5, 0), C.mapti(0x7FFF, 1, 8200, 0))
    its.msi(WIDE_DEVICE, 3)
    its.mmio_read(0x6, 2)
    its.acknowledge(0)
    its.redistributors.mmio_write(DISABLED_CPU, R.GICR_CTLR.offset, 1, 4)
    snapshots_equal(twin.snapshot(), frozen)
    before = its.snapshot()
    twin.submit(C.mapd(WIDE_DEVICE, WIDE_ITT, 4, valid=False))
    twin.mmio_write(R.GITS_CTLR.offset, 0, 4)
    twin.redistributors.mmio_write(0, R.GICR_CTLR.offset, 0, 4)
    snapshots_equal(its.snapshot(), before)


def test_a_copy_keeps_working(layout):
    its = populated(layout, 12)
    twin = pickle.loads(pickle.dumps(its))
    devices, events, _ = its.tables.export_events()
    assert np.array_equal(its.msi_batch(devices[:500], events[:500]),
                          twin.msi_batch(devices[:500], events[:500]))
    for cpu in range(NUM_CPUS):
        assert its.acknowledge(cpu) == twin.acknowledge(cpu)
    its.submit(C.mapti(WIDE_DEVICE, 5, 8300, 1), C.sync(0))
    twin.submit(C.mapti(WIDE_DEVICE, 5, 8300, 1), C.sync(0))
    assert_same(its, twin)


# ---------------------------------------------------------------------------- shared objects

def two_its(memory=None):
    memory = memory or GuestMemory(MEMORY_BYTES)
    rd = Redistributors(memory, NUM_CPUS)
    first = populated("flat", 21, memory=memory, redistributors=rd, guest=MAP_A)
    second = populated("hash", 22, memory=memory, redistributors=rd, guest=MAP_B,
                       devices=100)
    rd.mmio_write(2, 0x8, 0, 4)                            # a write to GICR_TYPER: RO, fine
    rd.mmio_read(2, 0x2, 2)                                # the redistributors' own log
    return memory, rd, first, second


def test_deepcopy_of_two_its_keeps_their_redistributors_and_memory_shared():
    memory, rd, first, second = two_its()
    a, b = copy.deepcopy([first, second])
    assert a.redistributors is b.redistributors and a.redistributors is not rd
    assert a.memory is b.memory is a.redistributors.memory and a.memory is not memory
    assert a.access_errors is not a.redistributors.access_errors
    assert list(a.redistributors.access_errors) == list(rd.access_errors) != []
    assert_same(first, a)
    assert_same(second, b)
    a2, b2 = pickle.loads(pickle.dumps([first, second]))
    assert a2.redistributors is b2.redistributors and a2.memory is b2.memory
    assert_same(first, a2)
    assert_same(second, b2)
    # LPIs of both land in the one pending bitmap of the copies, as in the originals.
    a.redistributors.lpi_state.reset_pending()
    for its in (a, b):
        devices, events, _ = its.tables.export_events()
        its.msi_batch(devices, events)
    assert np.array_equal(a.pending(0), b.pending(0))


def test_deepcopy_with_a_memo_keeps_the_memory(states):
    its = states[("flat", "running")]
    twin = copy.deepcopy(its, memo={id(its.memory): its.memory})
    assert twin.memory is its.memory and twin.redistributors.memory is its.memory
    assert twin.redistributors is not its.redistributors
    assert_same(its, twin)
    memory, rd, first, second = two_its()
    a, b = copy.deepcopy([first, second], memo={id(memory): memory})
    assert a.memory is b.memory is memory and a.redistributors is b.redistributors is not rd


def test_on_signal_is_not_carried(layout):
    its = populated(layout, 13)
    signalled = []
    its.redistributors.on_signal = signalled.append
    for twin in (pickle.loads(pickle.dumps(its)), copy.deepcopy(its),
                 ITS.from_snapshot(its.snapshot(), GuestMemory(MEMORY_BYTES)),
                 copy.deepcopy(its.redistributors)):
        twin = getattr(twin, "redistributors", twin)
        assert twin.on_signal is None
    assert its.redistributors.on_signal is not None
    twin = copy.deepcopy(its)
    twin.redistributors.on_signal = signalled.append         # and can be set on the copy
    twin.redistributors.lpi_state.reset_pending()
    twin.redistributors.signal_changes()
    assert signalled


def test_from_snapshot_attaches_to_given_redistributors():
    memory, rd, first, second = two_its()
    target = GuestMemory(MEMORY_BYTES)
    rd2 = Redistributors.from_snapshot(rd.snapshot(), target)
    a = ITS.from_snapshot(first.snapshot(redistributors=False), target, redistributors=rd2)
    b = ITS.from_snapshot(second.snapshot(redistributors=False), target, redistributors=rd2)
    assert a.redistributors is b.redistributors is rd2
    assert_same(first, a)
    assert_same(second, b)
    # ... and a full snapshot of an attached ITS rebuilds redistributors of its own.
    alone = ITS.from_snapshot(first.snapshot(), GuestMemory(MEMORY_BYTES))
    assert alone.access_errors is not alone.redistributors.access_errors
    assert_same(first, alone)


def test_from_snapshot_refuses_redistributors_that_do_not_fit():
    memory, rd, first, _ = two_its()
    snapshot = first.snapshot(redistributors=False)
    with pytest.raises(ValueError, match="no redistributor entries"):
        ITS.from_snapshot(snapshot, memory)
    with pytest.raises(ValueError, match="redistributor entries of its own"):
        ITS.from_snapshot(first.snapshot(), memory, redistributors=rd)
    with pytest.raises(ValueError, match="same GuestMemory"):
        ITS.from_snapshot(snapshot, GuestMemory(MEMORY_BYTES), redistributors=rd)
    with pytest.raises(ValueError, match="CPUs"):
        ITS.from_snapshot(snapshot, memory, redistributors=Redistributors(memory, 2))
    with pytest.raises(TypeError):
        ITS.from_snapshot(snapshot, memory, redistributors=object())
    with pytest.raises(TypeError):
        ITS.from_snapshot(first.snapshot(), bytearray(16))
    with pytest.raises(ValueError, match="layout"):
        ITS.from_snapshot(first.snapshot(), memory, layout="tree")


def test_a_refused_snapshot_leaves_the_given_redistributors_alone():
    memory, rd, first, _ = two_its()
    before = rd.snapshot()
    snapshot = first.snapshot(redistributors=False)
    snapshot["tables.intid"] = snapshot["tables.intid"].copy()
    snapshot["tables.intid"][-1] = 5
    with pytest.raises(RestoreError, match="tables.intid"):
        ITS.from_snapshot(snapshot, memory, redistributors=rd)
    snapshots_equal(rd.snapshot(), before)


def test_redistributors_round_trip():
    memory, rd, _, _ = two_its()
    rd.strict = True
    for twin in (Redistributors.from_snapshot(rd.snapshot(), GuestMemory(MEMORY_BYTES)),
                 pickle.loads(pickle.dumps(rd)), copy.deepcopy(rd)):
        snapshots_equal(rd.snapshot(), twin.snapshot())
        assert twin.strict and list(twin.access_errors) == list(rd.access_errors)
        for cpu in range(NUM_CPUS):
            assert np.array_equal(twin.pending(cpu), rd.pending(cpu))
            assert twin.lpis_enabled(cpu) == rd.lpis_enabled(cpu)
    buffer = io.BytesIO()
    its_core.snapshot.write(buffer, rd.snapshot())
    buffer.seek(0)
    twin = Redistributors.from_snapshot(its_core.snapshot.read(buffer), memory)
    snapshots_equal(rd.snapshot(), twin.snapshot())


def test_snapshots_of_one_kind_are_not_read_as_the_other(states):
    its = states[("flat", "running")]
    with pytest.raises(RestoreError, match="its.layout"):
        Redistributors.from_snapshot(its.snapshot(), its.memory)
    with pytest.raises(RestoreError, match="its.layout"):
        ITS.from_snapshot(its.redistributors.snapshot(), its.memory)


def test_ptz_and_disabled_lpis_survive(states):
    its = states[("flat", "running")]
    twin = copy.deepcopy(its)
    assert twin.redistributors.register_state()["ptz"][DISABLED_CPU]
    assert not twin.redistributors.lpis_enabled(DISABLED_CPU)
    # Enabling LPIs takes the pending table as zero in both.
    for each in (its, twin):
        each.memory.fill(MAP_A.pending_tables + DISABLED_CPU * MAP_A.pending_stride + 1024,
                         64, 0xFF)
    fresh = copy.deepcopy(its)
    fresh.redistributors.mmio_write(DISABLED_CPU, R.GICR_CTLR.offset, 1, 4)
    assert fresh.pending(DISABLED_CPU).size == 0


# ---------------------------------------------------------------------------- guest memory

def test_guest_memory_pickles_by_value():
    owned = GuestMemory(8192, base=0x4000)
    owned.write_u64(0x4010, 0x1122)
    buffer = bytearray(4096)
    wrapping = GuestMemory(buffer, base=0x10_0000)
    wrapping.write_u64(0x10_0008, 7)
    array = np.zeros(512, np.uint64)
    over_numpy = GuestMemory(array)
    array[1] = 9
    for memory in (owned, wrapping, over_numpy):
        for twin in (pickle.loads(pickle.dumps(memory)), copy.deepcopy(memory)):
            assert (twin.base, twin.size) == (memory.base, memory.size)
            assert np.array_equal(twin.array, memory.array)
            assert type(twin.source) is type(memory.source)
            if twin.source is not None:
                assert twin.source is not memory.source
                twin.write_u64(twin.base, 0xAB)              # aliases its own copy ...
                assert bytes(memoryview(twin.source).cast("B")[:1]) == b"\xab"
                assert bytes(memoryview(memory.source).cast("B")[:1]) != b"\xab"   # ... only
            twin.fill(twin.base, 16, 0xEE)
            assert memory.read(memory.base, 1) != b"\xee"
    a, b = copy.deepcopy([wrapping, wrapping])
    assert a is b
    with pytest.raises(TypeError):
        pickle.dumps(GuestMemory(memoryview(bytearray(16))))


# ---------------------------------------------------------------------------- bad snapshots

def changed(snapshot: dict, key: str, value) -> dict:
    result = dict(snapshot)
    result[key] = value
    return result


def element(snapshot: dict, key: str, index, value) -> dict:
    array = snapshot[key].copy()
    array[index] = value
    return changed(snapshot, key, array)


def refused(snapshot, key: str, match: str = "", **kwargs):
    with pytest.raises(RestoreError) as caught:
        ITS.from_snapshot(snapshot, GuestMemory(MEMORY_BYTES), **kwargs)
    error = caught.value
    assert error.table == "snapshot" and error.field == key, str(error)
    assert str(error).startswith(f"snapshot: {key}: ")
    assert re.search(match, error.reason), error.reason
    return error


def test_another_format_is_refused(valid):
    refused(changed(valid, "format", "its-core-snapshot-2"), "format", "another format")
    refused(changed(valid, "format", "kvm-its-rev0"), "format")
    refused(changed(valid, "format", 1), "format")
    refused({k: v for k, v in valid.items() if k != "format"}, "format", "missing")
    refused([("format", "its-core-snapshot-1")], "format", "dict")


def test_missing_and_extra_keys_are_refused(valid):
    refused({k: v for k, v in valid.items() if k != "tables.intid"}, "tables.intid", "missing")
    refused({k: v for k, v in valid.items() if k != "its.GITS_BASER3"}, "its.GITS_BASER3",
            "missing")
    refused({k: v for k, v in valid.items() if k != "redistributors.ptz"},
            "redistributors.ptz", "missing")
    refused(changed(valid, "tables.colour", np.zeros(3)), "tables.colour", "not a key")
    refused(changed(valid, "redistributors.access_errors.frame", np.array(["GITS"])),
            "redistributors.access_errors.offset", "missing")


@pytest.mark.parametrize("key, value", [
    ("tables.device_id", lambda a: a.astype(np.uint64)),
    ("tables.intid", lambda a: a.astype(np.int64)),
    ("tables.event_id", lambda a: a.astype(">u4")),
    ("tables.icid", lambda a: a.astype(np.uint32)),
    ("redistributors.pending", lambda a: a.astype(bool)),
    ("redistributors.ptz", lambda a: a.astype(np.uint8)),
    ("access_errors.frame", lambda a: a.astype(object)),
    ("tables.itt_addr", lambda a: a.tolist()),
    ("tables.device_id", lambda a: a.reshape(1, -1)),
    ("redistributors.pending", lambda a: a[:, :-1]),
    ("redistributors.pending", lambda a: a[:-1]),
    ("redistributors.config", lambda a: a[:-8]),
    ("redistributors.GICR_CTLR", lambda a: a[:2]),
    ("tables.num_events", lambda a: a[:-1]),
    ("tables.intid", lambda a: a[:-1]),
    ("command_errors.code", lambda a: np.append(a, a[:1])),
    ("access_errors.size", lambda a: np.append(a, a[:1])),
])
def test_wrong_dtypes_and_shapes_are_refused(valid, key, value):
    refused(changed(valid, key, value(valid[key])), key)


@pytest.mark.parametrize("key, value, match", [
    ("its.num_cpus", True, "plain int"),
    ("its.num_cpus", 4.0, "plain int"),
    ("its.num_cpus", "4", "plain int"),
    ("its.enabled", 1, "plain bool"),
    ("its.layout", b"hash", "plain str"),
    ("its.GITS_CBASER", 1 << 64, "64 bits"),
    ("its.GITS_CBASER", -1, "64 bits"),
    ("its.GITS_IIDR", 1 << 40, "32 bits"),
    ("command_errors.dropped", None, "plain int"),
])
def test_scalars_of_the_wrong_kind_are_refused(valid, key, value, match):
    refused(changed(valid, key, value), key, match)


def test_numpy_scalars_are_accepted(valid):
    snapshot = changed(valid, "its.num_cpus", np.uint16(NUM_CPUS))
    snapshot["its.enabled"] = np.bool_(valid["its.enabled"])
    ITS.from_snapshot(snapshot, GuestMemory(MEMORY_BYTES))


def _regs(valid):
    return {name: valid[f"its.{name}"] for name in snapshot_format.ITS_REGISTERS}


def test_hostile_contents_are_refused(valid):
    devices = valid["tables.device_id"]
    refused(element(valid, "tables.device_id", 1, devices[0]), "tables.device_id",
            "not strictly increasing")
    refused(element(valid, "tables.device_id", -1, 1 << 16), "tables.device_id",
            "below 2\\*\\*device_bits")
    refused(element(valid, "tables.event_bits", 0, 0), "tables.event_bits", "1..16")
    refused(element(valid, "tables.event_bits", 0, 17), "tables.event_bits", "1..16")
    refused(element(valid, "tables.num_events", 0, valid["tables.num_events"][0] - 1),
            "tables.num_events", "sum to")
    refused(element(valid, "tables.num_events", 0, 1 << 20), "tables.num_events", "fit")
    first = int(valid["tables.num_events"][0])
    refused(element(valid, "tables.event_id", 1, valid["tables.event_id"][0]),
            "tables.event_id", "not strictly increasing")
    refused(element(valid, "tables.event_id", 0, valid["tables.event_id"][first - 1] + 1),
            "tables.event_id", "not strictly increasing")
    refused(element(valid, "tables.event_id", first - 1, 1 << 20), "tables.event_id",
            "beyond the device's ITT")
    refused(element(valid, "tables.intid", 3, 8191), "tables.intid", "not an LPI")
    refused(element(valid, "tables.intid", 3, 1 << 16), "tables.intid", "not an LPI")
    icids = valid["tables.collection_icid"]
    refused(element(valid, "tables.collection_icid", 1, icids[0]), "tables.collection_icid",
            "not strictly increasing")
    refused(element(valid, "tables.collection_cpu", 0, NUM_CPUS), "tables.collection_cpu",
            "not in 0..3")
    refused(element(valid, "tables.collection_cpu", 0, -1), "tables.collection_cpu")


def test_hostile_registers_are_refused(valid):
    regs = _regs(valid)
    refused(changed(valid, "its.GITS_IIDR", regs["GITS_IIDR"] ^ 1), "its.GITS_IIDR",
            "this model's")
    refused(changed(valid, "its.GITS_TYPER", R.GITS_TYPER.reset ^ (1 << 13)), "its.GITS_TYPER")
    baser0 = R.GITS_BASER0
    refused(changed(valid, "its.GITS_BASER0",
                    baser0.field("Type").deposit(regs["GITS_BASER0"], 4)),
            "its.GITS_BASER0", "can hold")
    refused(changed(valid, "its.GITS_BASER5", 1), "its.GITS_BASER5", "can hold")
    refused(changed(valid, "its.GITS_BASER1",
                    baser0.field("Indirect").deposit(regs["GITS_BASER1"], 1)),
            "its.GITS_BASER1", "Indirect")
    refused(changed(valid, "its.GITS_CBASER", regs["GITS_CBASER"] | (1 << 56)),
            "its.GITS_CBASER", "RES0")
    queue = R.cbaser_queue_bytes(regs["GITS_CBASER"])
    refused(changed(valid, "its.GITS_CREADR", queue), "its.GITS_CREADR", "beyond")
    refused(changed(valid, "its.GITS_CWRITER", queue + 32), "its.GITS_CWRITER", "beyond")
    refused(changed(valid, "its.GITS_CREADR", 1), "its.GITS_CREADR", "outside Offset")
    assert valid["its.enabled"]
    refused(changed(valid, "its.GITS_BASER1",
                    R.GITS_BASER1.field("Valid").deposit(regs["GITS_BASER1"], 0)),
            "its.enabled", "GITS_BASER1.Valid")
    refused(changed(valid, "its.GITS_CREADR", (regs["GITS_CWRITER"] + 32) % queue),
            "its.enabled", "CREADR")
    stalled = changed(valid, "its.GITS_CREADR", (regs["GITS_CWRITER"] + 32) % queue)
    stalled["its.stalled"] = True
    ITS.from_snapshot(stalled, GuestMemory(MEMORY_BYTES))         # a stalled queue may
    refused(changed(valid, "its.layout", "tree"), "its.layout")
    refused(changed(valid, "its.num_cpus", 0), "its.num_cpus")
    refused(changed(valid, "its.intid_bits", 30), "its.intid_bits")
    refused(changed(valid, "its.event_bits", 33), "its.event_bits")
    wide = changed(valid, "its.layout", "flat")
    wide["its.device_bits"] = 24
    refused(wide, "its.device_bits", "flat")
    refused(changed(valid, "redistributors.num_cpus", 2), "redistributors.GICR_CTLR")
    refused(changed(valid, "redistributors.intid_bits", 17), "redistributors.pending")
    refused(changed(valid, "redistributors.num_cpus", 0), "redistributors.num_cpus")
    refused(changed(valid, "redistributors.intid_bits", 40), "redistributors.intid_bits")


def test_hostile_redistributor_state_is_refused(valid):
    refused(element(valid, "redistributors.GICR_CTLR", 0, 3), "redistributors.GICR_CTLR",
            "EnableLPIs")
    pend = valid["redistributors.GICR_PENDBASER"]
    refused(element(valid, "redistributors.GICR_PENDBASER", 0, pend[0] | (1 << 62)),
            "redistributors.GICR_PENDBASER", "PTZ")
    refused(element(valid, "redistributors.GICR_PENDBASER", 0, pend[0] | 1),
            "redistributors.GICR_PENDBASER")
    refused(element(valid, "redistributors.ptz", 0, True), "redistributors.ptz", "EnableLPIs")
    refused(changed(valid, "redistributors.GICR_PROPBASER", 1 << 63),
            "redistributors.GICR_PROPBASER")
    refused(element(valid, "redistributors.pending", (0, 3), 1), "redistributors.pending",
            "below 8192")
    refused(element(valid, "redistributors.pending", (DISABLED_CPU, 2000), 1),
            "redistributors.pending", "EnableLPIs 0")
    refused(element(valid, "redistributors.config", 100, 0xA1), "redistributors.config")


def test_hostile_logs_are_refused(valid):
    assert valid["command_errors.code"].size and valid["access_errors.frame"].size
    refused(element(valid, "command_errors.code", 0, 0x12345), "command_errors.code",
            "not an error code")
    refused(element(valid, "command_errors.offset", 0, 8), "command_errors.offset",
            "multiple of 32")
    refused(changed(valid, "command_errors.dropped", 1), "command_errors.dropped", "full")
    frames = valid["access_errors.frame"]
    wide = changed(valid, "access_errors.frame", frames.astype("U8"))
    for frame in ("FOO", "GICR4", "GICR01", "gits", "", "GICR-1", "GICR1 "):
        refused(element(wide, "access_errors.frame", 0, frame), "access_errors.frame")
    refused(element(valid, "access_errors.size", 0, 3), "access_errors.size")
    refused(element(valid, "access_errors.size", 0, 16), "access_errors.size")
    refused(element(valid, "access_errors.offset", 0, 0x2_0000), "access_errors.offset")
    write = int(np.flatnonzero(valid["access_errors.write"])[0])
    gicr = int(np.flatnonzero(np.char.startswith(frames, "GICR"))[0])
    refused(element(valid, "access_errors.offset", gicr, 0x1_0000), "access_errors.offset")
    refused(element(valid, "access_errors.value", write, 1 << 40), "access_errors.value")
    read = int(np.flatnonzero(~valid["access_errors.write"])[0])
    refused(element(valid, "access_errors.value", read, 1), "access_errors.value", "read")


def test_tables_from_arrays_checks_what_the_its_cannot_hold():
    tables = make_tables("hash", num_collections=8)
    tables.map_device(3, 4)
    tables.map_event(3, 2, 8200, 5)
    tables.map_collection(1, 2)
    arrays = tables.to_arrays()
    kwargs = dict(device_bits=10, event_bits=16, num_collections=8, num_cpus=4)
    bad = dict(arrays, icid=np.array([8], np.uint16))
    with pytest.raises(RestoreError, match="tables.icid: .*num_collections = 8"):
        TranslationTables.from_arrays(bad, "flat", **kwargs)
    bad = dict(arrays, collection_icid=np.array([9], np.uint16))
    with pytest.raises(RestoreError, match="tables.collection_icid"):
        TranslationTables.from_arrays(bad, "flat", **kwargs)
    with pytest.raises(RestoreError, match="tables.colour"):
        TranslationTables.from_arrays(dict(arrays, colour=arrays["icid"]), "flat", **kwargs)
    with pytest.raises(RestoreError, match="tables.icid: missing"):
        TranslationTables.from_arrays({k: v for k, v in arrays.items() if k != "icid"},
                                      "flat", **kwargs)
    copy_ = TranslationTables.from_arrays(arrays, "twolevel", **kwargs)
    assert copy_.snapshot() == tables.snapshot()


# ---------------------------------------------------------------------------- random damage

def _interesting(dtype: np.dtype):
    if dtype.kind == "b":
        return st.booleans()
    if dtype.kind == "U":
        return st.sampled_from(["", "GITS", "GICR0", "GICR3", "GICR4", "x" * 9])
    info = np.iinfo(dtype)
    special = [0, 1, 2, 31, 32, 8191, 8192, 1 << 15, (1 << 16) - 1, 1 << 16, 1 << 20,
               1 << 31, info.max, info.min]
    return st.one_of(st.sampled_from([v for v in special if info.min <= v <= info.max]),
                     st.integers(info.min, info.max))


def check_usable(its: ITS) -> None:
    """A loaded state is a state: it snapshots and loads again, identically, and
    translates, delivers and acknowledges."""
    again = ITS.from_snapshot(its.snapshot(), GuestMemory(MEMORY_BYTES))
    snapshots_equal(its.snapshot(), again.snapshot())
    devices, events, _ = its.tables.export_events()
    its.translate_batch(devices, events)
    its.msi_batch(devices, events)
    for cpu in range(its.num_cpus):
        its.redistributors.highest_pending(cpu)
        its.acknowledge(cpu)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_a_corrupted_snapshot_is_refused_or_valid(valid, data):
    snapshot = dict(valid)
    key = data.draw(st.sampled_from(sorted(valid)), label="key")
    action = data.draw(st.sampled_from(["element", "element", "element", "dtype", "shape",
                                        "drop", "scalar", "extra"]), label="action")
    value = snapshot[key]
    if action == "drop":
        del snapshot[key]
    elif action == "extra":
        snapshot[f"{key}_"] = value
    elif isinstance(value, np.ndarray):
        if action == "element" and value.size:
            array = value.copy()
            flat = array.reshape(-1)
            flat[data.draw(st.integers(0, flat.size - 1))] = data.draw(_interesting(array.dtype))
            snapshot[key] = array
        elif action == "dtype":
            dtype = data.draw(st.sampled_from(["u1", "u2", "u4", "u8", "i4", "i8", "b1", "f8",
                                               "<U4", "O"]))
            try:
                snapshot[key] = value.astype(dtype)
            except (TypeError, ValueError):             # unicode to numbers, say
                return
        else:
            shape = data.draw(st.sampled_from(["shorter", "longer", "2-D", "0-D"]))
            snapshot[key] = {"shorter": lambda: value[:-1], "longer": lambda: np.concatenate(
                [value, value[:1]]), "2-D": lambda: value.reshape(1, *value.shape),
                "0-D": lambda: value.reshape(-1)[:1].reshape(())}[shape]()
    else:
        snapshot[key] = data.draw(st.one_of(
            st.integers(-2, 1 << 65), st.sampled_from([0, 1, 4, 8, 14, 16, 20, 24, 32, 33]),
            st.booleans(), st.sampled_from(["flat", "twolevel", "hash", "tree", ""]),
            st.none()))
    try:
        its = ITS.from_snapshot(snapshot, GuestMemory(MEMORY_BYTES))
    except RestoreError as error:
        assert error.field in valid or error.field in snapshot or error.field == "format"
        event("refused")
        return
    event("loaded")
    check_usable(its)


# ---------------------------------------------------------------------------- damaged files

@pytest.fixture(scope="module")
def npz_bytes(valid):
    buffer = io.BytesIO()
    its_core.snapshot.write(buffer, valid)
    return buffer.getvalue()


def load_bytes(data: bytes) -> ITS:
    return its_core.snapshot.load(io.BytesIO(data), GuestMemory(MEMORY_BYTES))


def test_the_valid_file_loads(npz_bytes, valid):
    snapshots_equal(load_bytes(npz_bytes).snapshot(), valid)


@pytest.mark.parametrize("data", [b"", b"hello, world\n", b"PK\x03\x04" + b"\0" * 40,
                                  b"\x93NUMPY" + b"\xff" * 100])
def test_files_that_are_not_npz_archives_are_refused(data):
    with pytest.raises(RestoreError, match="^snapshot: file: "):
        load_bytes(data)


def test_a_single_npy_or_a_pickle_is_refused():
    buffer = io.BytesIO()
    np.save(buffer, np.arange(4))
    with pytest.raises(RestoreError, match="not an .npz"):
        load_bytes(buffer.getvalue())
    with pytest.raises(RestoreError, match="file"):
        load_bytes(pickle.dumps({"format": "its-core-snapshot-1"}))


def test_truncated_files_are_refused(npz_bytes):
    for length in (1, 4, 30, 100, len(npz_bytes) // 3, len(npz_bytes) // 2,
                   len(npz_bytes) - 100, len(npz_bytes) - 22, len(npz_bytes) - 1):
        with pytest.raises(RestoreError):
            load_bytes(npz_bytes[:length])


def _archive(members: dict, raw: dict | None = None) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **members)
    if raw:
        with zipfile.ZipFile(buffer, "a") as archive:
            for name, data in raw.items():
                archive.writestr(name, data)
    return buffer.getvalue()


def test_object_members_are_refused_without_unpickling(valid):
    members = snapshot_format.to_npz_members(valid)
    members["tables.itt_addr"] = np.array([object()] * valid["tables.itt_addr"].size)
    with pytest.raises(RestoreError, match="tables.itt_addr: an object array"):
        load_bytes(_archive(members))
    members = snapshot_format.to_npz_members(valid)
    members["evil"] = np.array([{"a": 1}], dtype=object)
    with pytest.raises(RestoreError, match="evil: an object array"):
        load_bytes(_archive(members))


def test_members_of_the_wrong_kind_are_refused(valid):
    for key, value, match in (("format", np.array("its-core-snapshot-0"), "another format"),
                              ("format", np.array(["its-core-snapshot-1"]), "0-d"),
                              ("its.num_cpus", np.array(4, np.int64), "0-d uint64"),
                              ("its.enabled", np.array(1, np.uint64), "0-d bool"),
                              ("tables.icid", np.array(1, np.uint16), "1-D")):
        members = dict(snapshot_format.to_npz_members(valid), **{key: value})
        with pytest.raises(RestoreError, match=f"^snapshot: {re.escape(key)}: .*{match}"):
            load_bytes(_archive(members))
    members = dict(snapshot_format.to_npz_members(valid), format=np.array("its-core-snapshot-2"))
    members["its.num_cpus"] = np.array([4, 4])          # another version: its format is named
    with pytest.raises(RestoreError, match="^snapshot: format: .*another format"):
        load_bytes(_archive(members))
    members = snapshot_format.to_npz_members(valid)
    with pytest.raises(RestoreError, match="file: member 'notes' is not a .npy"):
        load_bytes(_archive(members, {"notes": b"hello"}))
    del members["tables.icid"]
    with pytest.raises(RestoreError, match="tables.icid: missing"):
        load_bytes(_archive(members))


def test_a_header_promising_more_than_the_archive_holds_is_refused(valid):
    members = snapshot_format.to_npz_members(valid)
    del members["tables.intid"]
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<u4", "fortran_order": False,
                                                  "shape": (1 << 40,)})
    data = _archive(members, {"tables.intid.npy": header.getvalue() + b"\0" * 64})
    with pytest.raises(RestoreError, match="tables.intid: its header declares"):
        load_bytes(data)


def test_random_byte_damage_is_refused_or_valid(npz_bytes):
    rng = np.random.default_rng(3)
    outcomes = set()
    for _ in range(60):
        data = bytearray(npz_bytes)
        for position in rng.integers(0, len(data), int(rng.integers(1, 4))):
            data[position] ^= int(rng.integers(1, 256))
        try:
            its = load_bytes(bytes(data))
        except RestoreError:
            outcomes.add("refused")
            continue
        outcomes.add("loaded")
        check_usable(its)
    assert "refused" in outcomes


def test_random_files_are_refused():
    rng = np.random.default_rng(4)
    for size in (10, 1000, 100_000):
        with pytest.raises(RestoreError):
            load_bytes(rng.bytes(size))


def test_write_refuses_what_is_not_a_snapshot(tmp_path, valid):
    path = tmp_path / "x.npz"
    with pytest.raises(ValueError, match="tables.intid"):
        its_core.snapshot.write(path, changed(valid, "tables.intid", [1, 2]))
    assert not path.exists()
    with pytest.raises(TypeError):
        its_core.snapshot.save(path, valid)
    with pytest.raises(FileNotFoundError):
        its_core.snapshot.load(tmp_path / "missing.npz", GuestMemory(MEMORY_BYTES))


# ---------------------------------------------------------------------------- the format, once

def test_the_documented_format_is_the_schema():
    text = (ROOT / "docs" / "save-format.md").read_text()
    assert snapshot_format.schema_markdown() in text, \
        "docs/save-format.md: paste snapshot_format.schema_markdown() into 'Host snapshots'"
    assert "## Host snapshots (its-core-snapshot-1)" in text


def test_schema_constants_match_the_front_end():
    assert snapshot_format._GITS_FRAME_BYTES == its_module.ITS_REGION_BYTES
    assert snapshot_format._GICR_FRAME_BYTES == rd_module.RD_FRAME_BYTES
    assert snapshot_format._MAX_CPUS == rd_module.MAX_CPUS
    assert snapshot_format._INTID_BITS == rd_module.INTID_BITS_RANGE
    for entry in snapshot_format.SCHEMA.values():
        for dimension in entry.shape:
            assert dimension in snapshot_format.DIMENSIONS, entry.key


def test_the_module_is_public():
    assert "snapshot" in its_core.__all__
    import its_core.snapshot as module
    assert module is its_core.snapshot
    assert callable(module.save) and callable(module.load)
