"""GICv4 virtual ITEs and the vPE table in the translation core, with
hand-built expectations: the ITE word, each MappingFailure in its check
order, nothing changed on failure, translation statuses, the batch outputs
(both loops), snapshots, pickling and hostile canonical arrays."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from its_core import MappingError, MappingFailure, TranslationError, TranslationTables
from its_core.core._core import (PREFETCH_MIN_BYTES, TABLE_ARRAYS, VIRTUAL_TABLE_ARRAYS,
                                 TranslationStatus)
from its_core.core.reference import ReferenceTables
from its_core.errors import RestoreError

S = TranslationStatus
F = MappingFailure
LAYOUTS = ["flat", "twolevel", "hash"]


def _tables(layout="flat", **kwargs):
    params = dict(device_bits=16, event_bits=16, intid_bits=16, num_collections=16, num_cpus=4)
    params.update(kwargs)
    tables = TranslationTables(layout, **params)
    tables.map_device(5, 8, 0x1000)
    tables.map_collection(1, 2)
    tables.map_event(5, 1, 8200, 1)
    return tables


def _failure(call, *args):
    with pytest.raises(MappingError) as info:
        call(*args)
    return info.value.reason


def test_new_enum_values_are_appended():
    assert [int(status) for status in S] == list(range(11))
    assert (S.VIRTUAL, S.VIRTUAL_NO_VPE) == (9, 10)
    assert [int(failure) for failure in F] == list(range(1, 14))
    assert (F.EVENT_IS_VIRTUAL, F.EVENT_NOT_VIRTUAL, F.VPE_ID_OUT_OF_RANGE,
            F.DOORBELL_NOT_LPI) == (10, 11, 12, 13)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_virtual_ite_word(layout):
    """vINTID 8300 = 0x206C, vPEID 7: bit 63 | 0x206C << 16 | 7."""
    tables = _tables(layout)
    tables.map_virtual_event(5, 2, 8300, 7, 8292)
    device_ids, event_ids, ites = tables.export_events()
    assert device_ids.tolist() == [5, 5] and event_ids.tolist() == [1, 2]
    assert ites.tolist() == [0x0000_0000_2008_0001, 0x8000_0000_206C_0007]
    assert tables.virtual_event(5, 2) == (8300, 7, 8292)
    assert tables.lookup_event(5, 2) is None                     # not a physical mapping
    assert tables.virtual_event(5, 1) is None                    # not a virtual mapping
    assert (tables.num_events, tables.num_virtual_events) == (1, 1)


def test_highest_vintid_and_vpe_id_fill_their_fields():
    tables = _tables(intid_bits=32)
    tables.map_virtual_event(5, 3, 2**32 - 1, 65535, 1023)
    assert tables.export_events()[2].tolist()[-1] == 0x8000_FFFF_FFFF_FFFF
    assert tables.virtual_event(5, 3) == (2**32 - 1, 65535, 1023)


def test_map_virtual_event_failures_in_order():
    tables = _tables()
    before = tables.snapshot()
    call = tables.map_virtual_event
    assert _failure(call, 1 << 16, 0, 8192, 0, 1023) == F.DEVICE_ID_OUT_OF_RANGE
    assert _failure(call, 6, 0, 0, 99999, 0) == F.DEVICE_NOT_MAPPED
    assert _failure(call, 5, 256, 0, 99999, 0) == F.EVENT_ID_OUT_OF_RANGE
    assert _failure(call, 5, 1, 8191, 99999, 0) == F.INTID_NOT_LPI
    assert _failure(call, 5, 2, 1 << 16, 0, 1023) == F.INTID_NOT_LPI
    assert _failure(call, 5, 1, 8192, 99999, 0) == F.DOORBELL_NOT_LPI
    assert _failure(call, 5, 2, 8192, 0, 1022) == F.DOORBELL_NOT_LPI
    assert _failure(call, 5, 2, 8192, 0, 1 << 16) == F.DOORBELL_NOT_LPI
    assert _failure(call, 5, 1, 8192, 99999, 1023) == F.EVENT_ALREADY_MAPPED  # physical there
    assert _failure(call, 5, 2, 8192, 65536, 8192) == F.VPE_ID_OUT_OF_RANGE
    assert _failure(call, 5, 2, 8192, -1, 8192) == F.VPE_ID_OUT_OF_RANGE
    assert tables.snapshot() == before and tables.num_virtual_events == 0
    tables.map_virtual_event(5, 2, 8192, 0, 8192)
    assert _failure(call, 5, 2, 8193, 1, 1023) == F.EVENT_ALREADY_MAPPED      # virtual there
    assert _failure(tables.map_event, 5, 2, 8193, 1) == F.EVENT_ALREADY_MAPPED
    assert tables.virtual_event(5, 2) == (8192, 0, 8192)


def test_arguments_are_checked_at_the_boundary():
    tables = _tables()
    for name, args in (("vintid", (5, 2, 8192.0, 0, 1023)), ("vpe_id", (5, 2, 8192, True, 1023)),
                       ("doorbell", (5, 2, 8192, 0, "1023")), ("event_id", (5, None, 8192, 0))):
        with pytest.raises(TypeError, match=name):
            tables.map_virtual_event(*args)
    with pytest.raises(TypeError, match="doorbell"):
        tables.move_virtual_event(5, 1, 0, 1023.0)
    with pytest.raises(TypeError, match="vpe_id"):
        tables.map_vpe(None, 0)
    with pytest.raises(ValueError, match="vpe_ids"):
        tables.map_virtual_events([5], [2], [8192], [2**32], [1023])
    with pytest.raises(ValueError, match="doorbells"):
        tables.map_virtual_events([5], [2], [8192], [0], [-1])
    with pytest.raises(ValueError, match="differ in length"):
        tables.map_virtual_events([5], [2], [8192], [0], [1023, 1023])
    assert tables.num_virtual_events == 0


def test_move_virtual_event_and_its_failures():
    tables = _tables()
    tables.map_virtual_event(5, 2, 8300, 7, 8292)
    call = tables.move_virtual_event
    before = tables.snapshot()
    assert _failure(call, 1 << 20, 2, 8, 5) == F.DOORBELL_NOT_LPI      # doorbell first (C8)
    assert _failure(call, 1 << 20, 2, 8, None) == F.DEVICE_ID_OUT_OF_RANGE
    assert _failure(call, 6, 2, 8) == F.DEVICE_NOT_MAPPED
    assert _failure(call, 5, 256, 8) == F.EVENT_ID_OUT_OF_RANGE
    assert _failure(call, 5, 3, 8) == F.EVENT_NOT_MAPPED
    assert _failure(call, 5, 1, 8) == F.EVENT_NOT_VIRTUAL
    assert _failure(call, 5, 2, 65536) == F.VPE_ID_OUT_OF_RANGE
    assert tables.snapshot() == before
    assert call(5, 2, 8) == (7, 8292)                                 # D = 0 keeps the doorbell
    assert tables.virtual_event(5, 2) == (8300, 8, 8292)
    assert call(5, 2, 8, 1023) == (8, 8292)
    assert tables.virtual_event(5, 2) == (8300, 8, 1023)


def test_physical_commands_on_a_virtual_ite():
    tables = _tables()
    tables.map_virtual_event(5, 2, 8300, 7, 8292)
    before = tables.snapshot()
    assert _failure(tables.move_event, 5, 2, 1) == F.EVENT_IS_VIRTUAL     # MOVI skips
    assert _failure(tables.move_event, 5, 2, 99) == F.EVENT_IS_VIRTUAL    # before the ICID
    assert tables.snapshot() == before
    assert tables.unmap_event(5, 2) == (8300, 7, 8292)       # DISCARD, vPE never mapped (C1)
    assert tables.virtual_event(5, 2) is None and tables.num_virtual_events == 0
    assert _failure(tables.unmap_event, 5, 2) == F.EVENT_NOT_MAPPED
    tables.map_virtual_event(5, 2, 8301, 7, 1023)            # the doorbell entry went too
    assert tables.virtual_event(5, 2) == (8301, 7, 1023)
    tables.map_virtual_event(5, 200, 8302, 7, 8193)
    tables.map_device(5, 8)                                   # MAPD remap drops both kinds
    assert (tables.num_events, tables.num_virtual_events) == (0, 0)
    assert tables.virtual_event(5, 2) is None
    tables.map_virtual_event(5, 2, 8303, 1, 1023)
    assert tables.unmap_device(5) and tables.num_virtual_events == 0


def test_vpe_table():
    tables = _tables()
    assert tables.vpe_cpu(3) is None and tables.unmap_vpe(3) is False
    assert _failure(tables.map_vpe, 3, 4) == F.CPU_OUT_OF_RANGE
    assert _failure(tables.map_vpe, 65536, 4) == F.CPU_OUT_OF_RANGE        # CPU checked first
    assert _failure(tables.map_vpe, 65536, 3) == F.VPE_ID_OUT_OF_RANGE
    assert _failure(tables.unmap_vpe, -1) == F.VPE_ID_OUT_OF_RANGE
    tables.map_vpe(3, 1)
    tables.map_vpe(65535, 3)
    tables.map_vpe(3, 2)                                                   # re-target (VMOVP)
    assert tables.vpe_cpu(3) == 2 and tables.vpe_cpu(65536) is None
    ids, cpus = tables.vpe_table()
    assert ids.dtype == np.uint16 and ids.tolist() == [3, 65535] and cpus.tolist() == [2, 3]
    assert tables.unmap_vpe(3) is True and tables.unmap_vpe(3) is False
    assert tables.vpe_table()[0].tolist() == [65535]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_translation_of_virtual_pairs(layout):
    tables = _tables(layout)
    tables.map_virtual_event(5, 2, 8300, 7, 1023)
    tables.map_virtual_event(5, 3, 8301, 8, 8292)
    tables.map_vpe(7, 3)
    with pytest.raises(TranslationError) as info:
        tables.translate(5, 2)
    assert info.value.status == S.VIRTUAL
    with pytest.raises(TranslationError) as info:
        tables.translate(5, 3)
    assert info.value.status == S.VIRTUAL_NO_VPE
    assert tables.translate(5, 1) == (8200, 2)
    devices = np.array([5, 5, 5, 5, 6], np.uint32)
    events = np.array([1, 2, 3, 4, 0], np.uint32)
    intids, cpus, statuses, vpe_ids = tables.translate_batch(devices, events, with_vpe_ids=True)
    assert statuses.tolist() == [S.OK, S.VIRTUAL, S.VIRTUAL_NO_VPE, S.NO_MAPPING, S.NO_DEVICE]
    assert intids.tolist() == [8200, 8300, 8301, 0, 0]
    assert cpus.tolist() == [2, 3, -1, -1, -1]
    assert vpe_ids.dtype == np.int32 and vpe_ids.tolist() == [-1, 7, 8, -1, -1]
    three = tables.translate_batch(devices, events)
    assert len(three) == 3 and three[2].tolist() == statuses.tolist()
    out = (np.zeros(5, np.uint32), np.zeros(5, np.int32), np.zeros(5, np.uint8),
           np.full(5, 12345, np.int32))
    assert tables.translate_batch(devices, events, out, threads=2) is not None
    assert out[3].tolist() == [-1, 7, 8, -1, -1] and out[1].tolist() == [2, 3, -1, -1, -1]
    tables.unmap_vpe(7)
    tables.map_vpe(8, 0)
    assert tables.translate_batch(devices, events)[1].tolist() == [2, -1, 0, -1, -1]


def test_out_quadruple_is_checked():
    tables = _tables()
    good = (np.zeros(2, np.uint32), np.zeros(2, np.int32), np.zeros(2, np.uint8))
    for bad in (np.zeros(2, np.uint16), np.zeros(3, np.int32), np.zeros(2, np.int64)):
        with pytest.raises(ValueError, match="vpe_ids"):
            tables.translate_batch([5, 5], [1, 2], good + (bad,))
    with pytest.raises(ValueError, match="quadruple"):
        tables.translate_batch([5, 5], [1, 2], good + (np.zeros(2, np.int32),) * 2)


def test_map_virtual_events_reports_rows():
    tables = _tables()
    failures = tables.map_virtual_events(
        np.array([5, 5, 5, 9, 5, 5], np.uint32), [2, 2, 1, 0, 3, 4],
        [8192, 8193, 8194, 8195, 100, 8196], [0, 0, 0, 0, 0, 70000],
        [1023, 1023, 1023, 1023, 1023, 1023])
    assert failures.tolist() == [0, F.EVENT_ALREADY_MAPPED, F.EVENT_ALREADY_MAPPED,
                                 F.DEVICE_NOT_MAPPED, F.INTID_NOT_LPI, F.VPE_ID_OUT_OF_RANGE]
    assert tables.num_virtual_events == 1


def test_gicv3_tables_keep_todays_arrays_snapshot_and_size():
    tables = _tables()
    fresh = TranslationTables("flat", device_bits=16, event_bits=16, intid_bits=16,
                              num_collections=16, num_cpus=4)
    size = fresh.nbytes
    assert sorted(tables.to_arrays()) == sorted(name for name, _, _, _ in TABLE_ARRAYS)
    assert sorted(tables.snapshot()) == ["collections", "devices", "events"]
    fresh.unmap_vpe(5)                                        # no virtual state made
    assert fresh.nbytes == size
    fresh.map_vpe(5, 0)
    assert fresh.nbytes >= size + 65536 * 4
    assert sorted(fresh.to_arrays()) == sorted(
        name for name, _, _, _ in TABLE_ARRAYS + VIRTUAL_TABLE_ARRAYS)
    fresh.unmap_vpe(5)
    assert sorted(fresh.to_arrays()) == sorted(name for name, _, _, _ in TABLE_ARRAYS)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_arrays_and_pickle_carry_virtual_state(layout):
    tables = _tables(layout)
    tables.map_device(9, 16)
    tables.map_virtual_event(9, 40000, 8300, 7, 8292)         # a sparse device
    tables.map_virtual_event(5, 0, 8301, 65535, 1023)
    tables.map_event(9, 3, 8400, 1)
    tables.map_vpe(65535, 1)
    arrays = tables.to_arrays()
    assert arrays["num_events"].tolist() == [1, 1]            # physical rows only
    assert arrays["event_id"].tolist() == [1, 3]
    assert arrays["virtual_device_id"].tolist() == [5, 9]
    assert arrays["virtual_event_id"].tolist() == [0, 40000]
    assert arrays["virtual_intid"].tolist() == [8301, 8300]
    assert arrays["virtual_vpe_id"].tolist() == [65535, 7]
    assert arrays["virtual_doorbell"].tolist() == [1023, 8292]
    assert arrays["vpe_id"].tolist() == [65535] and arrays["vpe_cpu"].tolist() == [1]
    for name, dtype, _, _ in VIRTUAL_TABLE_ARRAYS:
        assert arrays[name].dtype == np.dtype(dtype)
    for other in LAYOUTS:
        copy = TranslationTables.from_arrays(arrays, other, device_bits=16, event_bits=16,
                                             num_collections=16, num_cpus=4)
        assert copy.snapshot() == tables.snapshot()
        assert copy.translate_batch([9, 5], [40000, 0], with_vpe_ids=True)[3].tolist() \
            == [7, 65535]
    clone = pickle.loads(pickle.dumps(tables))
    assert clone.snapshot() == tables.snapshot()
    assert clone.num_virtual_events == 2 and clone.num_events == 2
    assert tables.snapshot()["virtual_events"] == {(5, 0): (8301, 65535, 1023),
                                                   (9, 40000): (8300, 7, 8292)}
    assert tables.snapshot()["vpes"] == {65535: 1}


def _virtual_arrays():
    tables = _tables()
    tables.map_device(9, 4)
    tables.map_virtual_event(5, 2, 8300, 7, 8292)
    tables.map_virtual_event(9, 15, 8301, 8, 1023)
    tables.map_vpe(7, 3)
    return tables.to_arrays()


def _restore(arrays):
    return TranslationTables.from_arrays(arrays, "hash", device_bits=16, event_bits=16,
                                         num_collections=16, num_cpus=4)


@pytest.mark.parametrize("name, value, reason", [
    ("virtual_device_id", [5, 6], "device not mapped"),
    ("virtual_event_id", [2, 16], "EventID beyond"),
    ("virtual_event_id", [1, 15], "already mapped"),          # physical (5, 1) is there
    ("virtual_intid", [8300, 8191], "not an LPI"),
    ("virtual_intid", [8300, 1 << 16], "not an LPI"),
    ("virtual_doorbell", [8292, 1024], "doorbell"),
    ("vpe_cpu", [4], "not in 0..3"),
])
def test_hostile_virtual_arrays_are_refused(name, value, reason):
    arrays = _virtual_arrays()
    assert _restore(arrays).snapshot()["vpes"] == {7: 3}
    arrays[name] = np.array(value, arrays[name].dtype)
    with pytest.raises(RestoreError, match=reason) as info:
        _restore(arrays)
    assert f"tables.{name}" in str(info.value)


def test_hostile_virtual_array_shapes_are_refused():
    arrays = _virtual_arrays()
    arrays["virtual_device_id"] = np.array([9, 5], np.uint32)
    arrays["virtual_event_id"] = np.array([15, 2], np.uint32)
    with pytest.raises(RestoreError, match="tables.virtual_event_id.*not strictly increasing"):
        _restore(arrays)
    arrays = _virtual_arrays()
    arrays["vpe_id"] = np.array([7, 7], np.uint16)
    arrays["vpe_cpu"] = np.array([3, 3], np.int32)
    with pytest.raises(RestoreError, match="tables.vpe_id.*not strictly increasing"):
        _restore(arrays)
    arrays = _virtual_arrays()
    del arrays["virtual_doorbell"]                            # all or none
    with pytest.raises(RestoreError, match="tables.virtual_doorbell.*missing"):
        _restore(arrays)
    arrays = _virtual_arrays()
    arrays["virtual_vpe_id"] = arrays["virtual_vpe_id"].astype(np.uint32)
    with pytest.raises(RestoreError, match="tables.virtual_vpe_id"):
        _restore(arrays)
    arrays = _virtual_arrays()
    arrays["virtual_intid"] = arrays["virtual_intid"][:1]
    with pytest.raises(RestoreError, match="tables.virtual_intid.*rows"):
        _restore(arrays)


def test_physical_views_skip_virtual_ites():
    tables = _tables(intid_bits=20)
    tables.map_virtual_event(5, 2, (1 << 20) - 1, 15, 1023)   # vINTID above every pINTID used
    assert tables.mapped_intids().tolist() == [8200]
    assert tables.referenced_icids().tolist() == [1]
    assert tables.intids_targeting(2).tolist() == [8200]
    event_ids, intids, icids = tables.events_of(5)
    assert event_ids.tolist() == [1] and intids.tolist() == [8200]
    devices, events, vintids, vpe_ids, doorbells = tables.virtual_events()
    assert (devices.tolist(), events.tolist(), vintids.tolist(), vpe_ids.tolist(),
            doorbells.tolist()) == ([5], [2], [(1 << 20) - 1], [15], [1023])


# -- the group-prefetching loop ---------------------------------------------------

DEVICE_BITS = 22
DEVICES = 2000                       # x 256 ITE slots: a 4 MiB pool with the directory


def _big(tables, rng_seed=3):
    """Devices with slabs of physical and virtual ITEs and two sparse devices;
    a few vPEs and collections unmapped."""
    rng = np.random.default_rng(rng_seed)
    for icid in range(16):
        if icid != 5:
            tables.map_collection(icid, icid % 4)
    for vpe_id in range(16):
        if vpe_id != 9:
            tables.map_vpe(vpe_id, (vpe_id + 1) % 4)
    devices = np.sort(rng.choice(1 << DEVICE_BITS, DEVICES, replace=False)).astype(np.uint32)
    rows = []
    for index, device_id in enumerate(devices.tolist()):
        if index % 500 == 7:
            tables.map_device(device_id, 20)
            events = rng.choice(1 << 20, 200, replace=False)
        else:
            tables.map_device(device_id, 8)
            events = rng.choice(256, 230, replace=False)
        rows.append((np.full(len(events), device_id), events))
    device_ids = np.concatenate([r[0] for r in rows]).astype(np.uint32)
    event_ids = np.concatenate([r[1] for r in rows]).astype(np.uint32)
    virtual = rng.random(device_ids.size) < 0.4
    count = device_ids.size
    intids = rng.integers(8192, 1 << 16, count)
    assert not tables.map_events(device_ids[~virtual], event_ids[~virtual], intids[~virtual],
                                 rng.integers(0, 16, count)[~virtual]).any()
    assert not tables.map_virtual_events(device_ids[virtual], event_ids[virtual],
                                         intids[virtual], rng.integers(0, 16, count)[virtual],
                                         np.full(count, 1023)[virtual]).any()
    return devices, device_ids, event_ids


def test_prefetching_loop_handles_virtual_ites():
    tables = TranslationTables("hash", device_bits=DEVICE_BITS, event_bits=20, num_cpus=4)
    devices, device_ids, event_ids = _big(tables)
    assert tables.batch_prefetching and tables.nbytes >= PREFETCH_MIN_BYTES
    rng = np.random.default_rng(8)
    pick = rng.integers(0, device_ids.size, 30_000)
    queries = (device_ids[pick].copy(), event_ids[pick].copy())
    queries[1][::7] = rng.integers(0, 256, queries[1][::7].size)        # some unmapped
    runs = np.repeat(device_ids[pick[:40]], 64), np.tile(np.arange(64, dtype=np.uint32), 40)
    queries = (np.concatenate([queries[0], runs[0]]), np.concatenate([queries[1], runs[1]]))
    got = tables.translate_batch(*queries, with_vpe_ids=True, threads=1)
    # The same answers pair by pair, from small tables (the plain loop) and the reference.
    model = ReferenceTables("hash", device_bits=DEVICE_BITS, event_bits=20, num_cpus=4)
    _big(model)
    sample = slice(0, 6000)
    want = model.translate_batch(queries[0][sample], queries[1][sample], with_vpe_ids=True)
    for got_array, want_array in zip(got, want):
        np.testing.assert_array_equal(got_array[sample], want_array)
    for index in range(0, queries[0].size, 97):                         # scalar path
        device_id, event_id = int(queries[0][index]), int(queries[1][index])
        status = got[2][index]
        if status == S.OK:
            assert tables.translate(device_id, event_id) == (got[0][index], got[1][index])
        elif status in (S.VIRTUAL, S.VIRTUAL_NO_VPE):
            vintid, vpe_id, _ = tables.virtual_event(device_id, event_id)
            assert (got[0][index], got[3][index]) == (vintid, vpe_id)
            assert got[1][index] == (-1 if vpe_id == 9 else (vpe_id + 1) % 4)
    seen = set(np.unique(got[2]).tolist())
    assert {S.OK, S.VIRTUAL, S.VIRTUAL_NO_VPE, S.NO_MAPPING, S.NO_COLLECTION} <= seen
    sparse = np.isin(queries[0], devices[7::500]) & (got[2] == S.VIRTUAL)
    assert sparse.any()                                                  # sparse map walked
