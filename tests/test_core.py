"""Unit tests of its_core.TranslationTables with hand-computed expectations.

Every test that takes the `layout` fixture runs once per storage layout
("flat", "twolevel", "hash"): all layouts must behave identically.
"""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest

import its_core
from conftest import colliding_ids, make_tables
from its_core import (ITSError, MappingError, MappingFailure, TranslationError, TranslationStatus,
                      TranslationTables)
from its_core.core._core import _as_id_array

S = TranslationStatus
F = MappingFailure
MiB = 1 << 20


def status_of(tables, device_id, event_id):
    """TranslationStatus of one scalar translation."""
    try:
        tables.translate(device_id, event_id)
    except TranslationError as error:
        return error.status
    return S.OK


def batch(tables, pairs, dtype=np.uint32):
    device_ids = np.array([d for d, _ in pairs], dtype)
    event_ids = np.array([e for _, e in pairs], dtype)
    return tables.translate_batch(device_ids, event_ids)


def check_all(tables, expected, cpu_of_icid):
    """Every (device, event) -> (intid, icid) of `expected` translates right."""
    keys = sorted(expected)
    intids, cpus, statuses = batch(tables, keys)
    assert statuses.tolist() == [S.OK] * len(keys)
    assert intids.tolist() == [expected[key][0] for key in keys]
    assert cpus.tolist() == [cpu_of_icid[expected[key][1]] for key in keys]


# ---------------------------------------------------------------------------
# Package surface


def test_layouts_and_enums():
    assert its_core.LAYOUTS == ("flat", "twolevel", "hash")
    assert [int(s) for s in (S.OK, S.NO_DEVICE, S.EVENT_OUT_OF_RANGE, S.NO_MAPPING,
                             S.NO_COLLECTION, S.DEVICE_OUT_OF_RANGE)] == [0, 1, 2, 3, 4, 5]
    assert [int(f) for f in (F.DEVICE_ID_OUT_OF_RANGE, F.EVENT_BITS_OUT_OF_RANGE,
                             F.DEVICE_NOT_MAPPED, F.EVENT_ID_OUT_OF_RANGE, F.INTID_NOT_LPI,
                             F.EVENT_ALREADY_MAPPED, F.ICID_OUT_OF_RANGE, F.EVENT_NOT_MAPPED,
                             F.CPU_OUT_OF_RANGE)] == list(range(1, 10))
    assert issubclass(MappingError, ValueError) and issubclass(MappingError, ITSError)
    assert issubclass(TranslationError, LookupError) and issubclass(TranslationError, ITSError)


# ---------------------------------------------------------------------------
# Constructor validation


def test_bad_layout_name():
    for name in ("linear", "", "FLAT", "two-level"):
        with pytest.raises(ValueError):
            TranslationTables(name)


@pytest.mark.parametrize("device_bits", [0, -1, 33, 64])
def test_device_bits_out_of_range(layout, device_bits):
    with pytest.raises(ValueError):
        TranslationTables(layout, device_bits=device_bits)


def test_flat_device_bits_limit():
    with pytest.raises(ValueError):
        TranslationTables("flat", device_bits=21)
    with pytest.raises(ValueError):
        TranslationTables("flat", device_bits=32)
    assert TranslationTables("flat", device_bits=20).device_bits == 20
    for layout in ("twolevel", "hash"):
        assert TranslationTables(layout, device_bits=21).device_bits == 21
        assert TranslationTables(layout, device_bits=32).device_bits == 32


@pytest.mark.parametrize("name,bad,good", [
    ("event_bits", [0, -1, 33], [1, 32]),
    ("intid_bits", [0, 13, 33], [14, 32]),
    ("num_collections", [0, -1, 65537], [1, 65536]),
    ("num_cpus", [0, -1], [1, 1024]),
])
def test_other_constructor_arguments(layout, name, bad, good):
    for value in bad:
        with pytest.raises(ValueError):
            TranslationTables(layout, device_bits=8, **{name: value})
    for value in good:
        assert getattr(TranslationTables(layout, device_bits=8, **{name: value}), name) == value


def test_constructor_attributes_and_empty_state(layout):
    tables = TranslationTables(layout, device_bits=12, event_bits=20, intid_bits=24,
                               num_collections=100, num_cpus=3)
    assert (tables.layout, tables.device_bits, tables.event_bits, tables.intid_bits,
            tables.num_collections, tables.num_cpus) == (layout, 12, 20, 24, 100, 3)
    assert tables.num_devices == 0 and tables.num_events == 0
    assert tables.nbytes > 0
    assert tables.snapshot() == {"devices": {}, "events": {}, "collections": {}}
    assert tables.device_ids().tolist() == []
    assert len(tables.devices()) == 0
    assert layout in repr(tables)


# ---------------------------------------------------------------------------
# Basic mapping and translation


def test_map_and_translate(layout):
    tables = make_tables(layout)
    tables.map_collection(3, 2)
    tables.map_device(5, 4, itt_addr=0xDEAD_0000)
    tables.map_event(5, 7, 8200, 3)
    assert tables.translate(5, 7) == (8200, 2)
    assert tables.lookup_device(5) == (4, 0xDEAD_0000)
    assert tables.lookup_device(6) is None
    assert tables.lookup_event(5, 7) == (8200, 3)
    assert tables.lookup_event(5, 6) is None
    assert tables.lookup_event(5, 16) is None          # beyond the ITT
    assert tables.lookup_event(-1, 0) is None
    assert tables.collection_cpu(3) == 2
    assert tables.collection_cpu(4) is None
    assert tables.collection_cpu(-1) is None
    assert tables.num_devices == 1 and tables.num_events == 1
    # Several devices and events: nothing bleeds between them.
    tables.map_collection(0, 0)
    tables.map_device(6, 1)
    tables.map_event(6, 1, 65535, 0)
    tables.map_event(5, 0, 8192, 0)
    tables.map_event(5, 15, 9000, 3)
    assert tables.translate(6, 1) == (65535, 0)
    assert tables.translate(5, 0) == (8192, 0)
    assert tables.translate(5, 15) == (9000, 2)
    assert status_of(tables, 6, 0) == S.NO_MAPPING
    assert tables.num_devices == 2 and tables.num_events == 4


def test_numpy_integer_arguments(layout):
    tables = make_tables(layout)
    tables.map_collection(np.uint16(1), np.int8(3))
    tables.map_device(np.int64(9), np.uint8(5), np.uint64(2**64 - 1))
    tables.map_event(np.uint32(9), np.int32(31), np.uint32(40000), np.int64(1))
    assert tables.translate(np.uint32(9), np.int64(31)) == (40000, 3)
    assert tables.lookup_device(9) == (5, 2**64 - 1)


def test_non_integer_arguments_rejected(layout):
    tables = make_tables(layout)
    tables.map_device(1, 4)
    with pytest.raises(TypeError):
        tables.map_event(1.0, 0, 8192, 0)
    with pytest.raises(TypeError):
        tables.map_event(1, 0, "8192", 0)
    with pytest.raises(TypeError):
        tables.map_collection(0, 1.5)
    assert tables.num_events == 0 and tables.snapshot()["collections"] == {}


def test_itt_addr_must_fit_64_bits(layout):
    tables = make_tables(layout)
    for itt_addr in (-1, 2**64):
        with pytest.raises(ValueError):
            tables.map_device(1, 4, itt_addr)
    assert tables.num_devices == 0
    tables.map_device(1, 4, 2**64 - 1)
    assert tables.lookup_device(1) == (4, 2**64 - 1)


# ---------------------------------------------------------------------------
# Translation statuses


def _status_tables(layout):
    """device_bits 8; device 2 has 3 EventID bits; event 7 -> ICID 4 (unmapped)."""
    tables = make_tables(layout, device_bits=8, event_bits=8)
    tables.map_device(2, 3)
    tables.map_event(2, 7, 9000, 4)
    tables.map_event(2, 6, 9001, 5)
    tables.map_collection(5, 3)
    return tables


STATUS_CASES = [
    ((256, 0), S.DEVICE_OUT_OF_RANGE),
    ((2**32 - 1, 0), S.DEVICE_OUT_OF_RANGE),
    ((1, 0), S.NO_DEVICE),
    ((255, 7), S.NO_DEVICE),
    ((2, 8), S.EVENT_OUT_OF_RANGE),
    ((2, 2**32 - 1), S.EVENT_OUT_OF_RANGE),
    ((2, 0), S.NO_MAPPING),
    ((2, 5), S.NO_MAPPING),
    ((2, 7), S.NO_COLLECTION),
    ((2, 6), S.OK),
]


def test_translate_statuses(layout):
    tables = _status_tables(layout)
    for (device_id, event_id), status in STATUS_CASES:
        if status == S.OK:
            assert tables.translate(device_id, event_id) == (9001, 3)
            continue
        with pytest.raises(TranslationError) as info:
            tables.translate(device_id, event_id)
        assert info.value.status == status
        assert isinstance(info.value.status, TranslationStatus)
        assert (info.value.device_id, info.value.event_id) == (device_id, event_id)
        assert isinstance(info.value, LookupError) and isinstance(info.value, ITSError)


def test_translate_batch_statuses(layout):
    tables = _status_tables(layout)
    pairs = [pair for pair, _ in STATUS_CASES]
    intids, cpus, statuses = batch(tables, pairs)
    assert (intids.dtype, cpus.dtype, statuses.dtype) == (np.uint32, np.int32, np.uint8)
    assert statuses.tolist() == [int(status) for _, status in STATUS_CASES]
    assert intids.tolist() == [0] * 9 + [9001]
    assert cpus.tolist() == [-1] * 9 + [3]
    # Mapping the collection makes the NO_COLLECTION event translate.
    tables.map_collection(4, 0)
    intids, cpus, statuses = batch(tables, [(2, 7), (2, 6)])
    assert statuses.tolist() == [S.OK, S.OK]
    assert intids.tolist() == [9000, 9001] and cpus.tolist() == [0, 3]


def test_translate_batch_empty(layout):
    tables = _status_tables(layout)
    for dtype in (np.uint32, np.int64):
        intids, cpus, statuses = tables.translate_batch(np.empty(0, dtype), np.empty(0, dtype))
        assert intids.shape == cpus.shape == statuses.shape == (0,)


def test_translation_error_pickles():
    error = TranslationError(S.NO_MAPPING, 3, 4)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.status, copy.device_id, copy.event_id) == (S.NO_MAPPING, 3, 4)
    assert str(copy) == str(error)


def test_mapping_error_pickles():
    """MappingError must survive pickling (e.g. crossing a multiprocessing pool),
    like TranslationError does."""
    tables = make_tables("hash")
    with pytest.raises(MappingError) as info:
        tables.map_event(1, 0, 8192, 0)
    copy = pickle.loads(pickle.dumps(info.value))
    assert copy.reason == F.DEVICE_NOT_MAPPED
    assert copy.operation == "map_event"
    assert str(copy) == str(info.value)


# ---------------------------------------------------------------------------
# Mapping failures: the reason, the exception types, and no change of state


def _failure_tables(layout):
    """device_bits 8, event_bits 10, intid_bits 16, 16 collections, 4 CPUs."""
    tables = make_tables(layout, device_bits=8, event_bits=10, intid_bits=16,
                         num_collections=16, num_cpus=4)
    tables.map_collection(0, 0)
    tables.map_collection(1, 3)
    tables.map_device(1, 4, itt_addr=0x1000)       # EventIDs 0..15
    tables.map_event(1, 0, 8192, 0)
    tables.map_event(1, 15, 65535, 1)
    tables.map_device(2, 10)                       # EventIDs 0..1023
    for event_id in range(0, 1024, 100):
        tables.map_event(2, event_id, 10000 + event_id, 1)
    tables.map_device(200, 1)
    return tables


FAILURE_CASES = [
    # map_device
    ("map_device", (256, 4), F.DEVICE_ID_OUT_OF_RANGE),
    ("map_device", (-1, 4), F.DEVICE_ID_OUT_OF_RANGE),
    ("map_device", (2**32, 4), F.DEVICE_ID_OUT_OF_RANGE),
    ("map_device", (2**64 + 1, 4), F.DEVICE_ID_OUT_OF_RANGE),
    ("map_device", (3, 0), F.EVENT_BITS_OUT_OF_RANGE),
    ("map_device", (3, 11), F.EVENT_BITS_OUT_OF_RANGE),
    ("map_device", (3, -1), F.EVENT_BITS_OUT_OF_RANGE),
    ("map_device", (1, 11), F.EVENT_BITS_OUT_OF_RANGE),   # a mapped device keeps its events
    ("map_device", (2, 2**70), F.EVENT_BITS_OUT_OF_RANGE),
    # unmap_device
    ("unmap_device", (256,), F.DEVICE_ID_OUT_OF_RANGE),
    ("unmap_device", (-1,), F.DEVICE_ID_OUT_OF_RANGE),
    # map_event
    ("map_event", (256, 0, 8192, 0), F.DEVICE_ID_OUT_OF_RANGE),
    ("map_event", (-1, 0, 8192, 0), F.DEVICE_ID_OUT_OF_RANGE),
    ("map_event", (3, 0, 8192, 0), F.DEVICE_NOT_MAPPED),
    ("map_event", (1, 16, 8192, 0), F.EVENT_ID_OUT_OF_RANGE),
    ("map_event", (1, -1, 8192, 0), F.EVENT_ID_OUT_OF_RANGE),
    ("map_event", (200, 2, 8192, 0), F.EVENT_ID_OUT_OF_RANGE),
    ("map_event", (1, 1, 8191, 0), F.INTID_NOT_LPI),
    ("map_event", (1, 1, 0, 0), F.INTID_NOT_LPI),
    ("map_event", (1, 1, -8192, 0), F.INTID_NOT_LPI),
    ("map_event", (1, 1, 65536, 0), F.INTID_NOT_LPI),
    ("map_event", (1, 1, 2**64 + 8192, 0), F.INTID_NOT_LPI),
    ("map_event", (1, 0, 8193, 0), F.EVENT_ALREADY_MAPPED),
    ("map_event", (2, 500, 9999, 1), F.EVENT_ALREADY_MAPPED),
    ("map_event", (1, 1, 8193, 16), F.ICID_OUT_OF_RANGE),
    ("map_event", (1, 1, 8193, -1), F.ICID_OUT_OF_RANGE),
    ("map_event", (1, 1, 8193, 65536), F.ICID_OUT_OF_RANGE),
    # unmap_event
    ("unmap_event", (300, 0), F.DEVICE_ID_OUT_OF_RANGE),
    ("unmap_event", (3, 0), F.DEVICE_NOT_MAPPED),
    ("unmap_event", (1, 16), F.EVENT_ID_OUT_OF_RANGE),
    ("unmap_event", (1, -1), F.EVENT_ID_OUT_OF_RANGE),
    ("unmap_event", (1, 1), F.EVENT_NOT_MAPPED),
    ("unmap_event", (2, 501), F.EVENT_NOT_MAPPED),
    # move_event
    ("move_event", (-5, 0, 0), F.DEVICE_ID_OUT_OF_RANGE),
    ("move_event", (3, 0, 0), F.DEVICE_NOT_MAPPED),
    ("move_event", (1, 16, 0), F.EVENT_ID_OUT_OF_RANGE),
    ("move_event", (1, 1, 0), F.EVENT_NOT_MAPPED),
    ("move_event", (1, 0, 16), F.ICID_OUT_OF_RANGE),
    ("move_event", (1, 0, -1), F.ICID_OUT_OF_RANGE),
    # map_collection / unmap_collection
    ("map_collection", (0, 4), F.CPU_OUT_OF_RANGE),
    ("map_collection", (0, -1), F.CPU_OUT_OF_RANGE),
    ("map_collection", (16, 0), F.ICID_OUT_OF_RANGE),
    ("map_collection", (-1, 0), F.ICID_OUT_OF_RANGE),
    ("unmap_collection", (16,), F.ICID_OUT_OF_RANGE),
    ("unmap_collection", (-1,), F.ICID_OUT_OF_RANGE),
]


@pytest.mark.parametrize("operation,args,reason", FAILURE_CASES,
                         ids=[f"{op}{args}-{reason.name}" for op, args, reason in FAILURE_CASES])
def test_mapping_failure_changes_nothing(layout, operation, args, reason):
    tables = _failure_tables(layout)
    before = tables.snapshot()
    counts = (tables.num_devices, tables.num_events)
    probes = [(1, 0), (1, 15), (2, 0), (2, 500), (200, 0), (3, 0)]
    translations_before = batch(tables, probes)
    with pytest.raises(MappingError) as info:
        getattr(tables, operation)(*args)
    error = info.value
    assert error.reason == reason
    assert isinstance(error.reason, MappingFailure)
    assert error.operation == operation
    assert isinstance(error, ValueError) and isinstance(error, ITSError)
    assert tables.snapshot() == before
    assert (tables.num_devices, tables.num_events) == counts
    for got, want in zip(batch(tables, probes), translations_before):
        np.testing.assert_array_equal(got, want)


def test_map_event_check_order(layout):
    """KVM's order: DeviceID range, device mapped, EventID range, INTID, existing
    mapping, ICID.  Each call breaks the checked rule and every later one."""
    tables = _failure_tables(layout)
    before = tables.snapshot()
    cases = [
        ((256, 99, 0, 99), F.DEVICE_ID_OUT_OF_RANGE),
        ((3, 99, 0, 99), F.DEVICE_NOT_MAPPED),
        ((1, 16, 0, 99), F.EVENT_ID_OUT_OF_RANGE),
        ((1, 0, 0, 99), F.INTID_NOT_LPI),          # event 0 is mapped: INTID comes first
        ((1, 0, 8200, 99), F.EVENT_ALREADY_MAPPED),  # ... and the mapping before the ICID
        ((1, 1, 8200, 99), F.ICID_OUT_OF_RANGE),
    ]
    for args, reason in cases:
        with pytest.raises(MappingError) as info:
            tables.map_event(*args)
        assert info.value.reason == reason, args
    assert tables.snapshot() == before


def test_other_check_orders(layout):
    tables = _failure_tables(layout)
    before = tables.snapshot()
    cases = [
        ("map_collection", (99, 99), F.CPU_OUT_OF_RANGE),     # CPU before ICID
        ("map_collection", (99, 0), F.ICID_OUT_OF_RANGE),
        ("map_device", (300, 0), F.DEVICE_ID_OUT_OF_RANGE),   # DeviceID before EventID bits
        ("move_event", (1, 1, 99), F.EVENT_NOT_MAPPED),       # mapping before ICID
        ("move_event", (3, 99, 99), F.DEVICE_NOT_MAPPED),
        ("move_event", (1, 99, 99), F.EVENT_ID_OUT_OF_RANGE),
        ("unmap_event", (3, 99), F.DEVICE_NOT_MAPPED),
    ]
    for operation, args, reason in cases:
        with pytest.raises(MappingError) as info:
            getattr(tables, operation)(*args)
        assert info.value.reason == reason, (operation, args)
    assert tables.snapshot() == before


# ---------------------------------------------------------------------------
# Device, event and collection life cycles


def test_mapd_remap_drops_events(layout):
    tables = _failure_tables(layout)
    assert tables.num_events == 2 + 11
    tables.map_device(2, 6, itt_addr=0x2000)
    assert tables.lookup_device(2) == (6, 0x2000)
    assert tables.num_events == 2
    assert tables.num_devices == 3
    assert all(len(array) == 0 for array in tables.events_of(2))
    assert status_of(tables, 2, 0) == S.NO_MAPPING
    assert status_of(tables, 2, 63) == S.NO_MAPPING
    assert status_of(tables, 2, 64) == S.EVENT_OUT_OF_RANGE      # the new ITT is smaller
    tables.map_event(2, 0, 12345, 0)                            # was mapped before: free now
    assert tables.translate(2, 0) == (12345, 0)
    # Device 1 was untouched; remapping it with the same size also empties it.
    assert tables.translate(1, 15) == (65535, 3)
    tables.map_device(1, 4, itt_addr=0x1000)
    assert status_of(tables, 1, 15) == S.NO_MAPPING
    assert status_of(tables, 1, 0) == S.NO_MAPPING
    assert tables.num_events == 1
    # A larger ITT after the remap.
    tables.map_device(1, 10)
    tables.map_event(1, 1000, 8192, 1)
    assert tables.translate(1, 1000) == (8192, 3)


def test_unmap_device(layout):
    tables = _failure_tables(layout)
    before = tables.snapshot()
    assert tables.unmap_device(3) is False
    assert tables.unmap_device(255) is False
    assert tables.snapshot() == before
    assert tables.num_devices == 3
    assert tables.unmap_device(2) is True
    assert tables.num_devices == 2 and tables.num_events == 2
    assert status_of(tables, 2, 0) == S.NO_DEVICE
    assert tables.lookup_device(2) is None
    assert tables.device_ids().tolist() == [1, 200]
    assert tables.unmap_device(2) is False
    # Remapping gives an empty ITT: the old events do not come back.
    tables.map_device(2, 10)
    assert status_of(tables, 2, 0) == S.NO_MAPPING
    assert tables.translate(1, 0) == (8192, 0)


def test_unmap_event(layout):
    tables = _failure_tables(layout)
    assert tables.unmap_event(1, 15) == (65535, 1)
    assert tables.num_events == 12
    assert status_of(tables, 1, 15) == S.NO_MAPPING
    assert tables.lookup_event(1, 15) is None
    tables.map_event(1, 15, 20000, 0)
    assert tables.translate(1, 15) == (20000, 0)
    for event_id in range(0, 1024, 100):
        assert tables.unmap_event(2, event_id) == (10000 + event_id, 1)
    assert tables.num_events == 2
    assert all(len(array) == 0 for array in tables.events_of(2))
    assert tables.lookup_device(2) == (10, 0)


def test_collection_resolved_at_translation_time(layout):
    tables = _failure_tables(layout)
    assert tables.translate(2, 300) == (10300, 3)
    assert tables.unmap_collection(1) is True
    assert tables.unmap_collection(1) is False
    assert tables.unmap_collection(9) is False
    assert tables.collection_cpu(1) is None
    # The ITEs still name ICID 1 ...
    assert tables.lookup_event(2, 300) == (10300, 1)
    assert status_of(tables, 2, 300) == S.NO_COLLECTION
    assert status_of(tables, 1, 15) == S.NO_COLLECTION
    assert tables.translate(1, 0) == (8192, 0)
    # ... and translate again, to the new CPU, once ICID 1 is routed again.
    tables.map_collection(1, 2)
    assert tables.translate(2, 300) == (10300, 2)
    assert tables.translate(1, 15) == (65535, 2)
    # Re-targeting a mapped collection takes effect immediately too.
    tables.map_collection(1, 0)
    assert tables.translate(2, 1000) == (11000, 0)
    assert tables.collection_table()[1].tolist() == [0, 0]


def test_move_event(layout):
    tables = _failure_tables(layout)
    assert tables.move_event(1, 15, 0) == 1
    assert tables.lookup_event(1, 15) == (65535, 0)
    assert tables.translate(1, 15) == (65535, 0)
    assert tables.num_events == 13
    assert tables.move_event(1, 15, 7) == 0                 # to an unmapped collection
    assert status_of(tables, 1, 15) == S.NO_COLLECTION
    tables.map_collection(7, 1)
    assert tables.translate(1, 15) == (65535, 1)
    assert tables.move_event(1, 15, 7) == 7                 # no-op move
    assert tables.translate(1, 15) == (65535, 1)
    assert tables.move_event(2, 1000, 15) == 1
    assert tables.lookup_event(2, 1000) == (11000, 15)
    assert tables.lookup_event(2, 900) == (10900, 1)        # neighbours untouched


def test_collection_table_and_snapshot(layout):
    tables = _failure_tables(layout)
    tables.map_collection(15, 2)
    icids, cpus = tables.collection_table()
    assert icids.dtype == np.uint16 and cpus.dtype == np.int32
    assert icids.tolist() == [0, 1, 15] and cpus.tolist() == [0, 3, 2]
    snapshot = tables.snapshot()
    assert snapshot["collections"] == {0: 0, 1: 3, 15: 2}
    assert snapshot["devices"] == {1: (4, 0x1000), 2: (10, 0), 200: (1, 0)}
    expected_events = {(1, 0): (8192, 0), (1, 15): (65535, 1)}
    expected_events.update({(2, e): (10000 + e, 1) for e in range(0, 1024, 100)})
    assert snapshot["events"] == expected_events


def test_devices_and_events_of(layout):
    tables = make_tables(layout, device_bits=10)
    for device_id, bits, itt in ((700, 3, 0x7000), (5, 8, 0x50), (1023, 1, 2**64 - 1), (0, 16, 0)):
        tables.map_device(device_id, bits, itt)
    tables.map_event(5, 200, 30000, 3)
    tables.map_event(5, 2, 8192, 63)
    tables.map_event(5, 31, 8193, 0)
    tables.map_event(0, 65535, 9999, 7)
    tables.map_event(0, 0, 9998, 8)
    devices = tables.devices()
    assert devices.dtype.names == ("device_id", "event_bits", "itt_addr", "num_events")
    assert devices["device_id"].tolist() == [0, 5, 700, 1023]
    assert devices["event_bits"].tolist() == [16, 8, 3, 1]
    assert devices["itt_addr"].tolist() == [0, 0x50, 0x7000, 2**64 - 1]
    assert devices["num_events"].tolist() == [2, 3, 0, 0]
    ids = tables.device_ids()
    assert ids.dtype == np.uint32 and ids.tolist() == [0, 5, 700, 1023]
    event_ids, intids, icids = tables.events_of(5)
    assert (event_ids.dtype, intids.dtype, icids.dtype) == (np.uint32, np.uint32, np.uint16)
    assert event_ids.tolist() == [2, 31, 200]
    assert intids.tolist() == [8192, 8193, 30000]
    assert icids.tolist() == [63, 0, 3]
    event_ids, intids, icids = tables.events_of(0)
    assert event_ids.tolist() == [0, 65535] and intids.tolist() == [9998, 9999]
    assert icids.tolist() == [8, 7]
    for absent in (700, 6, -1, 2**40):
        assert [len(array) for array in tables.events_of(absent)] == [0, 0, 0]
    assert tables.num_devices == 4 and tables.num_events == 5
    assert tables.nbytes > 0


def test_reset(layout):
    tables = _failure_tables(layout)
    tables.reset()
    assert tables.num_devices == 0 and tables.num_events == 0
    assert tables.snapshot() == {"devices": {}, "events": {}, "collections": {}}
    assert status_of(tables, 1, 0) == S.NO_DEVICE
    assert tables.collection_cpu(0) is None
    assert tables.device_bits == 8 and tables.num_collections == 16
    # The tables are usable again, and old state does not resurface.
    tables.map_device(1, 4)
    assert status_of(tables, 1, 0) == S.NO_MAPPING
    tables.map_event(1, 0, 8200, 0)
    assert status_of(tables, 1, 0) == S.NO_COLLECTION
    tables.map_collection(0, 1)
    assert tables.translate(1, 0) == (8200, 1)


def test_map_events_bulk(layout):
    """Row by row, same checks and order as map_event; failures are reported
    per row (0 = mapped) and change nothing; later rows see earlier ones."""
    tables = _failure_tables(layout)
    before = tables.snapshot()
    rows = [
        # (device, event, intid, icid) -> expected code
        ((1, 1, 9001, 0), 0),
        ((1, 1, 9002, 0), F.EVENT_ALREADY_MAPPED),      # sees the row above
        ((256, 0, 8192, 0), F.DEVICE_ID_OUT_OF_RANGE),
        ((3, 0, 8192, 0), F.DEVICE_NOT_MAPPED),
        ((1, 16, 8192, 0), F.EVENT_ID_OUT_OF_RANGE),
        ((1, 2, 8191, 0), F.INTID_NOT_LPI),
        ((1, 2, 65536, 99), F.INTID_NOT_LPI),           # INTID before ICID
        ((1, 0, 9003, 99), F.EVENT_ALREADY_MAPPED),     # existing mapping before ICID
        ((1, 2, 9004, 16), F.ICID_OUT_OF_RANGE),
        ((1, 2, 9005, 1), 0),
        ((2, 1023, 65535, 0), 0),
        ((200, 1, 8192, 15), 0),
    ]
    columns = [np.array([row[0][k] for row in rows], np.int64) for k in range(4)]
    failures = tables.map_events(*columns)
    assert failures.dtype == np.uint8
    assert failures.tolist() == [int(code) for _, code in rows]
    expected = dict(before["events"])
    expected.update({(1, 1): (9001, 0), (1, 2): (9005, 1), (2, 1023): (65535, 0),
                     (200, 1): (8192, 15)})
    assert tables.snapshot()["events"] == expected
    assert tables.num_events == len(expected)
    assert tables.translate(1, 1) == (9001, 0)
    assert tables.translate(1, 2) == (9005, 3)
    assert status_of(tables, 200, 1) == S.NO_COLLECTION
    # Lists and uint32 arrays work too; empty input does nothing.
    assert tables.map_events([1], [3], [9006], [1]).tolist() == [0]
    assert tables.translate(1, 3) == (9006, 3)
    empty = np.empty(0, np.uint32)
    assert tables.map_events(empty, empty, empty, empty).tolist() == []


def test_map_events_bulk_rejects_bad_arrays(layout):
    tables = _failure_tables(layout)
    before = tables.snapshot()
    good = np.array([1, 1], np.int64)
    events = np.array([1, 2], np.int64)
    intids = np.array([9000, 9001], np.int64)
    for bad_call in (
        lambda: tables.map_events(good, events, intids, np.array([0, -1], np.int64)),
        lambda: tables.map_events(good, events, np.array([9000, 2**32], np.int64), good),
        lambda: tables.map_events(np.array([1, -1]), events, intids, good),
        lambda: tables.map_events(good, events, intids, good[:1]),
        lambda: tables.map_events(good, events.astype(np.float64), intids, good),
    ):
        with pytest.raises(ValueError):
            bad_call()
        assert tables.snapshot() == before


def test_intids_targeting(layout):
    tables = _failure_tables(layout)
    # CPU 0 <- ICID 0; CPU 3 <- ICID 1; event (1,0) is ICID 0, the rest ICID 1.
    assert tables.intids_targeting(0).tolist() == [8192]
    assert sorted(tables.intids_targeting(3).tolist()) == sorted(
        [65535] + [10000 + e for e in range(0, 1024, 100)])
    assert tables.intids_targeting(1).tolist() == []
    tables.map_collection(0, 3)
    tables.map_event(200, 1, 8192, 0)                   # an LPI shared by two events
    assert sorted(tables.intids_targeting(3).tolist()) == sorted(
        [8192, 8192, 65535] + [10000 + e for e in range(0, 1024, 100)])
    assert tables.intids_targeting(0).tolist() == []
    tables.unmap_collection(1)
    assert tables.intids_targeting(3).tolist() == [8192, 8192]
    tables.unmap_device(200)
    assert tables.intids_targeting(3).tolist() == [8192]
    assert tables.intids_targeting(3).dtype == np.uint32


# ---------------------------------------------------------------------------
# IDs that do not fit 32 bits, and the array interface


@pytest.mark.parametrize("device_id,event_id", [(-1, 0), (0, -1), (2**32, 0), (0, 2**32),
                                                (-(2**31), 0), (2**32 + 5, 2**32 + 5)])
def test_translate_rejects_ids_beyond_32_bits(layout, device_id, event_id):
    tables = make_tables(layout)
    tables.map_device(0, 4)
    with pytest.raises(ValueError):
        tables.translate(device_id, event_id)


def test_translate_rejects_ids_beyond_64_bits():
    """The docstring promises ValueError for any ID that does not fit 32 bits,
    and the reference model raises ValueError here too -- also for IDs that do
    not even fit 64 bits."""
    failures = []
    for layout in its_core.LAYOUTS:
        tables = make_tables(layout)
        for device_id, event_id in [(2**63, 0), (0, 2**64), (-(2**63) - 1, 0), (2**100, 2**100)]:
            try:
                tables.translate(device_id, event_id)
            except ValueError:
                continue
            except Exception as error:          # noqa: BLE001  (collected for the report)
                failures.append((layout, device_id, event_id, type(error).__name__))
            else:
                failures.append((layout, device_id, event_id, "no error"))
    assert failures == []


def test_translate_accepts_full_32_bit_ids():
    tables = TranslationTables("hash", device_bits=32, event_bits=32, intid_bits=32)
    tables.map_collection(0, 7)
    tables.map_device(2**32 - 1, 32)
    tables.map_event(2**32 - 1, 2**32 - 1, 2**32 - 1, 0)
    assert tables.translate(2**32 - 1, 2**32 - 1) == (2**32 - 1, 7)
    assert status_of(tables, 2**32 - 2, 2**32 - 1) == S.NO_DEVICE


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int8])
def test_translate_batch_rejects_negative(layout, dtype):
    tables = make_tables(layout)
    good = np.array([0, 1, 2], dtype)
    bad = np.array([0, -1, 2], dtype)
    with pytest.raises(ValueError):
        tables.translate_batch(bad, good)
    with pytest.raises(ValueError):
        tables.translate_batch(good, bad)


@pytest.mark.parametrize("dtype", [np.int64, np.uint64])
def test_translate_batch_rejects_beyond_32_bits(layout, dtype):
    tables = make_tables(layout)
    good = np.array([0, 1], dtype)
    for value in (2**32, 2**33 + 1, 2**63 - 1):
        bad = np.array([0, value], dtype)
        with pytest.raises(ValueError):
            tables.translate_batch(bad, good)
        with pytest.raises(ValueError):
            tables.translate_batch(good, bad)
    # The largest 32-bit value is fine in either dtype.
    edge = np.array([2**32 - 1, 0], dtype)
    _, _, statuses = tables.translate_batch(edge, good)
    assert statuses.tolist() == [S.DEVICE_OUT_OF_RANGE, S.NO_DEVICE]


def test_translate_batch_rejects_bad_shapes_and_dtypes(layout):
    tables = make_tables(layout)
    ints = np.arange(4, dtype=np.uint32)
    for bad in (np.arange(4, dtype=np.float64), np.arange(4, dtype=np.float32),
                np.array([0.0, 1.5, 2.0, 3.0]), np.array(["a", "b", "c", "d"]),
                np.ones(4, dtype=bool), np.arange(4, dtype=np.complex128)):
        with pytest.raises(ValueError):
            tables.translate_batch(bad, ints)
        with pytest.raises(ValueError):
            tables.translate_batch(ints, bad)
    with pytest.raises(ValueError):                        # lengths differ
        tables.translate_batch(ints, ints[:3])
    with pytest.raises(ValueError):
        tables.translate_batch(np.arange(5, dtype=np.int64), np.arange(4, dtype=np.int64))
    with pytest.raises(ValueError):                        # not one-dimensional
        tables.translate_batch(ints.reshape(2, 2), ints.reshape(2, 2))
    with pytest.raises(ValueError):
        tables.translate_batch(np.uint32(1), np.uint32(1))


def test_translate_batch_input_dtypes_agree(layout):
    tables = _status_tables(layout)
    pairs = [pair for pair, _ in STATUS_CASES if pair[0] < 2**31 and pair[1] < 2**31]
    expected = batch(tables, pairs, np.uint32)
    for dtype in (np.int64, np.uint64, np.int32):
        for got, want in zip(batch(tables, pairs, dtype), expected):
            np.testing.assert_array_equal(got, want)
    # Plain Python lists of ints work as well.
    got = tables.translate_batch([d for d, _ in pairs], [e for _, e in pairs])
    for got_array, want in zip(got, expected):
        np.testing.assert_array_equal(got_array, want)
    # Narrow dtypes (int16 DeviceIDs, uint8 EventIDs).
    got = tables.translate_batch(np.array([2, 2], np.int16), np.array([6, 7], np.uint8))
    assert got[2].tolist() == [S.OK, S.NO_COLLECTION]


def test_uint32_input_used_in_place(layout):
    array = np.arange(10, dtype=np.uint32)
    assert _as_id_array(array, "device_ids") is array
    tables = _status_tables(layout)
    # Read-only and strided uint32 inputs are accepted as they are.
    device_ids = np.array([2, 99, 2, 99, 2, 99], np.uint32)[::2]
    event_ids = np.array([6, 7, 0], np.uint32)
    event_ids.flags.writeable = False
    assert not device_ids.flags.c_contiguous
    intids, cpus, statuses = tables.translate_batch(device_ids, event_ids)
    assert statuses.tolist() == [S.OK, S.NO_COLLECTION, S.NO_MAPPING]
    assert intids.tolist() == [9001, 0, 0] and cpus.tolist() == [3, -1, -1]
    # Converted inputs are left untouched.
    wide = np.array([2, 2], np.int64)
    tables.translate_batch(wide, np.array([6, 7], np.int64))
    assert wide.dtype == np.int64 and wide.tolist() == [2, 2]


def test_translate_batch_out(layout):
    tables = _status_tables(layout)
    out = (np.full(3, 77, np.uint32), np.full(3, 77, np.int32), np.full(3, 77, np.uint8))
    returned = tables.translate_batch(np.array([2, 2, 1], np.uint32),
                                      np.array([6, 7, 0], np.uint32), out=out)
    assert all(got is mine for got, mine in zip(returned, out))
    assert out[0].tolist() == [9001, 0, 0]
    assert out[1].tolist() == [3, -1, -1]
    assert out[2].tolist() == [S.OK, S.NO_COLLECTION, S.NO_DEVICE]
    # Reused: every element is rewritten.
    returned = tables.translate_batch(np.array([1, 2, 2], np.int64),
                                      np.array([0, 8, 6], np.int64), out=list(out))
    assert all(got is mine for got, mine in zip(returned, out))
    assert out[0].tolist() == [0, 0, 9001]
    assert out[1].tolist() == [-1, -1, 3]
    assert out[2].tolist() == [S.NO_DEVICE, S.EVENT_OUT_OF_RANGE, S.OK]


def test_translate_batch_out_rejected(layout):
    tables = _status_tables(layout)
    ids = np.zeros(3, np.uint32)
    good = (np.zeros(3, np.uint32), np.zeros(3, np.int32), np.zeros(3, np.uint8))
    read_only = np.zeros(3, np.uint8)
    read_only.flags.writeable = False
    bad_outs = [
        (np.zeros(3, np.int64), good[1], good[2]),         # wrong dtypes
        (good[0], np.zeros(3, np.uint32), good[2]),
        (good[0], good[1], np.zeros(3, np.int8)),
        (np.zeros(4, np.uint32), good[1], good[2]),         # wrong lengths
        (good[0], np.zeros(2, np.int32), good[2]),
        (good[0], good[1], np.zeros(4, np.uint8)),
        (np.zeros(6, np.uint32)[::2], good[1], good[2]),    # not contiguous
        (good[0], good[1], read_only),                      # not writeable
        (good[0].reshape(1, 3), good[1], good[2]),          # not 1-D
        (good[0], good[1]),                                 # not a triple
        (list(good[0]), good[1], good[2]),                  # not an ndarray
        5,                                                  # not even a sequence
    ]
    for out in bad_outs:
        with pytest.raises(ValueError):
            tables.translate_batch(ids, ids, out=out)
    assert good[0].tolist() == [0, 0, 0]


# ---------------------------------------------------------------------------
# Storage: large ITTs, slab growth, compaction, the sparse map


def test_large_itt_stays_small(layout):
    tables = TranslationTables(layout, device_bits=10, event_bits=32, intid_bits=32,
                               num_collections=65536, num_cpus=8)
    tables.map_collection(0, 1)
    tables.map_collection(65535, 7)
    tables.map_device(7, 32)
    before = tables.nbytes
    expected = {0: (8192, 0), 2**31: (2**31, 65535), 2**32 - 1: (2**32 - 1, 0)}
    for event_id, (intid, icid) in expected.items():
        tables.map_event(7, event_id, intid, icid)
    assert tables.nbytes - before < MiB
    assert tables.translate(7, 0) == (8192, 1)
    assert tables.translate(7, 2**31) == (2**31, 7)
    assert tables.translate(7, 2**32 - 1) == (2**32 - 1, 1)
    for event_id in (1, 2**31 - 1, 2**31 + 1, 2**32 - 2, 32, 4096):
        assert status_of(tables, 7, event_id) == S.NO_MAPPING
    event_ids, intids, icids = tables.events_of(7)
    assert event_ids.tolist() == [0, 2**31, 2**32 - 1]
    assert intids.tolist() == [8192, 2**31, 2**32 - 1]
    assert icids.tolist() == [0, 65535, 0]
    assert tables.num_events == 3
    with pytest.raises(MappingError) as info:
        tables.map_device(8, 33)
    assert info.value.reason == F.EVENT_BITS_OUT_OF_RANGE
    # Unmapping and moving in the huge ITT.
    assert tables.unmap_event(7, 2**31) == (2**31, 65535)
    assert status_of(tables, 7, 2**31) == S.NO_MAPPING
    assert tables.move_event(7, 2**32 - 1, 65535) == 0
    assert tables.translate(7, 2**32 - 1) == (2**32 - 1, 7)
    # A second huge device with the same EventIDs is independent.
    tables.map_device(8, 32)
    tables.map_event(8, 2**32 - 1, 70000, 0)
    assert tables.translate(8, 2**32 - 1) == (70000, 1)
    assert tables.translate(7, 2**32 - 1) == (2**32 - 1, 7)
    assert tables.nbytes - before < MiB
    # Remapping drops the events of that device only.
    tables.map_device(7, 32)
    assert status_of(tables, 7, 0) == S.NO_MAPPING
    assert status_of(tables, 7, 2**32 - 1) == S.NO_MAPPING
    assert tables.translate(8, 2**32 - 1) == (70000, 1)
    assert tables.num_events == 1


def test_slab_growth_and_compaction(layout):
    """2000 devices x 40 events, then rounds of unmapping half of them and
    remapping them with other event patterns; every translation is checked
    against a dict, and memory is reused rather than growing without bound."""
    tables = TranslationTables(layout, device_bits=16 if layout == "flat" else 32,
                               event_bits=16, intid_bits=24, num_collections=16, num_cpus=4)
    cpu_of_icid = {icid: icid % 4 for icid in range(16)}
    for icid, cpu in cpu_of_icid.items():
        tables.map_collection(icid, cpu)
    # hash: IDs scattered over 32 bits; twolevel: a few dozen pages; flat: 0..1999.
    stride = {"flat": 1, "twolevel": 37, "hash": 2654435761}[layout]
    devices = [(index * stride) % 2**tables.device_bits for index in range(2000)]
    rng = random.Random(2024)
    expected = {}
    per_device = {}

    def fill(device_id, pattern):
        tables.map_device(device_id, 9)
        if pattern == 0:
            event_ids = range(40)                          # 32-slot slab, then 64
        elif pattern == 1:
            event_ids = [(7 * k) % 512 for k in range(40)]  # grows to 512 slots
        else:
            event_ids = list(range(70, 0, -1))             # 128 slots at once
        keys = []
        for event_id in event_ids:
            intid = 8192 + (device_id * 131 + event_id) % 1000000
            icid = (device_id + event_id) % 16
            tables.map_event(device_id, event_id, intid, icid)
            expected[(device_id, event_id)] = (intid, icid)
            keys.append((device_id, event_id))
        per_device[device_id] = keys

    for device_id in devices:
        fill(device_id, 0)
    assert tables.num_events == 80000
    check_all(tables, expected, cpu_of_icid)
    for round_ in range(4):
        half = rng.sample(devices, len(devices) // 2)
        for device_id in half:
            assert tables.unmap_device(device_id) is True
            for key in per_device.pop(device_id):
                expected.pop(key, None)
        assert tables.num_devices == 1000
        assert tables.num_events == len(expected)
        # Unmapped devices do not translate; mapped ones still do.
        _, _, statuses = batch(tables, [(d, 0) for d in half[:50]])
        assert statuses.tolist() == [S.NO_DEVICE] * 50
        check_all(tables, expected, cpu_of_icid)
        for device_id in half:
            fill(device_id, rng.randrange(3))
        assert tables.num_devices == 2000
        assert tables.num_events == len(expected)
        # Some single-event churn inside live slabs as well.
        for device_id in rng.sample(devices, 100):
            key = per_device[device_id][rng.randrange(len(per_device[device_id]))]
            if key in expected:
                assert tables.unmap_event(*key) == expected.pop(key)
        check_all(tables, expected, cpu_of_icid)
    assert tables.num_events == len(expected)
    snapshot = tables.snapshot()
    assert snapshot["events"] == expected
    assert snapshot["devices"] == {device_id: (9, 0) for device_id in devices}


def test_pool_memory_is_reused(layout):
    """A steady workload (the same number of devices and events at all times)
    keeps a bounded footprint: released slabs are reclaimed by compaction.
    Without reuse, 12 rounds would add 6000 dead slabs of 64 ITEs to the 1000
    live ones and the pool would keep growing."""
    tables = TranslationTables(layout, device_bits=12, event_bits=8, intid_bits=24,
                               num_collections=4, num_cpus=4)
    tables.map_collection(0, 0)
    rng = random.Random(11)

    def fill(device_id):
        tables.map_device(device_id, 8)
        for event_id in range(40):
            tables.map_event(device_id, event_id, 8192 + device_id * 64 + event_id, 0)

    for device_id in range(1000):
        fill(device_id)
    first = tables.nbytes
    sizes = []
    for _ in range(12):
        half = rng.sample(range(1000), 500)
        for device_id in half:
            tables.unmap_device(device_id)
        for device_id in half:
            fill(device_id)
        sizes.append(tables.nbytes)
    assert tables.num_events == 40000
    assert max(sizes) < 3 * first
    pairs = [(d, e) for d in range(1000) for e in (0, 33, 39, 40)]
    intids, _, statuses = batch(tables, pairs)
    assert statuses.tolist() == [S.OK if e < 40 else S.NO_MAPPING for _, e in pairs]
    assert intids.tolist() == [8192 + d * 64 + e if e < 40 else 0 for d, e in pairs]


def test_dense_slab_beyond_4096(layout):
    """A device with thousands of dense events keeps growing its slab."""
    tables = make_tables(layout, event_bits=16, intid_bits=20)
    tables.map_collection(2, 1)
    tables.map_device(3, 14)
    expected = {}
    for event_id in range(4100):
        tables.map_event(3, event_id, 8192 + event_id, 2)
        expected[(3, event_id)] = (8192 + event_id, 2)
    tables.map_event(3, 16000, 500000, 2)
    expected[(3, 16000)] = (500000, 2)
    tables.map_event(3, 16383, 500001, 2)
    expected[(3, 16383)] = (500001, 2)
    check_all(tables, expected, {2: 1})
    for event_id in (4100, 4101, 10000, 15999, 16382):
        assert status_of(tables, 3, event_id) == S.NO_MAPPING
    assert tables.snapshot()["events"] == expected


def test_sparse_then_dense(layout):
    tables = make_tables(layout, event_bits=20, intid_bits=24, num_collections=8)
    for icid in range(8):
        tables.map_collection(icid, icid % 4)
    cpu_of_icid = {icid: icid % 4 for icid in range(8)}
    expected = {}

    def map_event(device_id, event_id, icid):
        intid = 8192 + device_id * 100000 + event_id
        tables.map_event(device_id, event_id, intid, icid)
        expected[(device_id, event_id)] = (intid, icid)

    # Devices 3 and 4 get the same spread-out EventIDs; device 5 stays dense.
    for device_id in (3, 4, 5):
        tables.map_device(device_id, 20)
    for event_id in (0, 5000, 100000):
        map_event(3, event_id, 1)
        map_event(4, event_id, 2)
    for event_id in range(60):
        map_event(5, event_id, 3)
    check_all(tables, expected, cpu_of_icid)
    for event_id in (1, 4999, 5001, 99999, 100001, 2**20 - 1):
        assert status_of(tables, 3, event_id) == S.NO_MAPPING
    # Now many dense EventIDs on the spread-out device.
    for event_id in range(1, 3000):
        if event_id != 5000:
            map_event(3, event_id, event_id % 8)
    for event_id in range(200000, 200000 + 500):
        map_event(4, event_id, 5)
    check_all(tables, expected, cpu_of_icid)
    assert tables.num_events == len(expected)
    event_ids, intids, icids = tables.events_of(3)
    keys = sorted(key for key in expected if key[0] == 3)
    assert event_ids.tolist() == [e for _, e in keys]
    assert intids.tolist() == [expected[key][0] for key in keys]
    assert icids.tolist() == [expected[key][1] for key in keys]
    # Unmap and move inside the sparse device.
    for event_id in range(0, 3000, 3):
        assert tables.unmap_event(3, event_id) == expected.pop((3, event_id))
    for event_id in range(1, 3000, 3):
        assert tables.move_event(3, event_id, 7) == expected[(3, event_id)][1]
        expected[(3, event_id)] = (expected[(3, event_id)][0], 7)
    check_all(tables, expected, cpu_of_icid)
    for event_id in range(0, 3000, 3):
        assert status_of(tables, 3, event_id) == S.NO_MAPPING
    # Remapping device 3 drops all of its events, and only those.
    tables.map_device(3, 20)
    expected = {key: value for key, value in expected.items() if key[0] != 3}
    assert all(len(array) == 0 for array in tables.events_of(3))
    check_all(tables, expected, cpu_of_icid)
    assert status_of(tables, 3, 100000) == S.NO_MAPPING
    assert tables.snapshot()["events"] == expected
    for cpu in range(4):
        assert sorted(tables.intids_targeting(cpu).tolist()) == sorted(
            intid for intid, icid in expected.values() if cpu_of_icid[icid] == cpu)
    # Spread-out again after the remap: none of the old events comes back.
    map_event(3, 7000, 0)
    map_event(3, 1, 0)
    event_ids, _, _ = tables.events_of(3)
    assert event_ids.tolist() == [1, 7000]
    for event_id in (0, 2, 5000, 100000, 2998):
        assert status_of(tables, 3, event_id) == S.NO_MAPPING
    tables.map_event(3, 100000, 8192, 0)                # free again: no EVENT_ALREADY_MAPPED
    expected[(3, 100000)] = (8192, 0)
    check_all(tables, expected, cpu_of_icid)
    assert tables.snapshot()["events"] == expected
    assert tables.num_events == len(expected)
    # Unmapping device 4 leaves device 5 (and device 3).
    assert tables.unmap_device(4) is True
    expected = {key: value for key, value in expected.items() if key[0] != 4}
    check_all(tables, expected, cpu_of_icid)
    assert tables.num_events == len(expected) == 60 + 3
    # A new device 4 that becomes sparse does not inherit the old events.
    tables.map_device(4, 20)
    map_event(4, 150000, 6)
    event_ids, intids, _ = tables.events_of(4)
    assert event_ids.tolist() == [150000]
    for event_id in (0, 5000, 100000, 200000, 200499):
        assert status_of(tables, 4, event_id) == S.NO_MAPPING
    assert tables.snapshot()["events"] == expected
    assert sorted(tables.intids_targeting(2).tolist()) == [expected[(4, 150000)][0]]


@pytest.mark.parametrize("count", [1, 17, 32, 33, 64, 100, 1000])
def test_dense_to_sparse_keeps_events(layout, count):
    """When a far EventID pushes a device out of its dense slab into the
    sparse map, every event the slab held (anywhere in it) comes along."""
    tables = make_tables(layout, event_bits=20, intid_bits=24, num_collections=4)
    tables.map_collection(1, 2)
    tables.map_device(9, 20)
    tables.map_device(10, 6)                            # a dense neighbour
    tables.map_event(10, 63, 70000, 1)
    expected = {}
    for index in range(count):
        event_id = (index * 37) % (count * 2) if count > 1 else 0
        if (9, event_id) not in expected:
            tables.map_event(9, event_id, 9000 + event_id, 1)
            expected[(9, event_id)] = (9000 + event_id, 1)
    top = max(e for _, e in expected)
    for event_id in (top + 200000, 2**20 - 1):            # far beyond any slab
        tables.map_event(9, event_id, 8192, 1)
        expected[(9, event_id)] = (8192, 1)
    check_all(tables, expected, {1: 2})
    assert tables.translate(10, 63) == (70000, 2)
    event_ids, _, _ = tables.events_of(9)
    assert event_ids.tolist() == sorted(e for _, e in expected)
    assert tables.num_events == len(expected) + 1


def test_first_event_far_out(layout):
    """A device whose first event is far beyond the first slab."""
    tables = make_tables(layout, event_bits=24, intid_bits=24)
    tables.map_collection(0, 2)
    tables.map_device(1, 24)
    tables.map_event(1, 2**24 - 1, 9000, 0)
    tables.map_event(1, 0, 9001, 0)
    tables.map_event(1, 31, 9002, 0)
    assert tables.translate(1, 2**24 - 1) == (9000, 2)
    assert tables.translate(1, 0) == (9001, 2)
    assert tables.translate(1, 31) == (9002, 2)
    assert status_of(tables, 1, 2**24 - 2) == S.NO_MAPPING
    assert tables.events_of(1)[0].tolist() == [0, 31, 2**24 - 1]


# ---------------------------------------------------------------------------
# Wide DeviceIDs: the hash and two-level directories


def _scattered_device_ids():
    rng = random.Random(77)
    ids = {0, 1, 2**32 - 1, 2**32 - 2, 2**31, 1023, 1024}
    ids.update(colliding_ids([62, 63, 0, 1], per_slot=4))   # one cluster wrapping the end
    while len(ids) < 150:
        ids.add(rng.randrange(2**32))
    return sorted(ids)


@pytest.mark.parametrize("order", ["forward", "backward", "shuffled", "cluster"])
def test_hash_scattered_ids_deletion_orders(order):
    tables = TranslationTables("hash", device_bits=32, event_bits=8, intid_bits=32,
                               num_collections=4, num_cpus=4)
    for icid in range(4):
        tables.map_collection(icid, 3 - icid)
    ids = _scattered_device_ids()
    expected = {}
    bits_of = {}
    for index, device_id in enumerate(ids):
        bits_of[device_id] = 1 + index % 8
        tables.map_device(device_id, 1 + index % 8, itt_addr=device_id)
        for event_id in {0, (2**(1 + index % 8)) - 1}:
            intid = 8192 + (device_id ^ event_id) % (2**32 - 8192)
            tables.map_event(device_id, event_id, intid, index % 4)
            expected[(device_id, event_id)] = (intid, index % 4)
    cpu_of_icid = {icid: 3 - icid for icid in range(4)}
    check_all(tables, expected, cpu_of_icid)
    assert tables.device_ids().tolist() == ids
    if order == "forward":
        doomed = list(ids)
    elif order == "backward":
        doomed = ids[::-1]
    elif order == "shuffled":
        doomed = random.Random(5).sample(ids, len(ids))
    else:
        # The colliding cluster first, middle members before the heads.
        cluster = colliding_ids([62, 63, 0, 1], per_slot=4)
        doomed = cluster[1::2] + cluster[0::2]
        doomed += [device_id for device_id in ids if device_id not in doomed]
    remaining = set(ids)
    for step, device_id in enumerate(doomed):
        assert tables.unmap_device(device_id) is True
        remaining.discard(device_id)
        expected = {key: value for key, value in expected.items() if key[0] != device_id}
        assert status_of(tables, device_id, 0) == S.NO_DEVICE
        assert tables.num_devices == len(remaining)
        if step % 5 == 0 or len(remaining) < 20:
            check_all(tables, expected, cpu_of_icid)
            assert tables.device_ids().tolist() == sorted(remaining)
            for device_id_left in sorted(remaining)[:10]:
                assert tables.lookup_device(device_id_left) == (bits_of[device_id_left],
                                                                device_id_left)
    assert tables.num_devices == 0 and tables.num_events == 0
    # Everything can be mapped again afterwards.
    for device_id in ids[:40]:
        tables.map_device(device_id, 2)
        tables.map_event(device_id, 3, 8192, 1)
    _, cpus, statuses = batch(tables, [(d, 3) for d in ids[:40]])
    assert statuses.tolist() == [S.OK] * 40 and cpus.tolist() == [2] * 40


def test_hash_cluster_deletion_orders():
    """18 DeviceIDs in one probe cluster that wraps around the end of a fresh
    64-bucket directory (homes 62, 63, 0, 1), deleted one at a time in many
    orders; after every deletion all the others must still be found."""
    cluster = colliding_ids([62, 63, 0, 1], per_slot=4) + [2**32 - 1, 0x8000_0000]
    cluster = list(dict.fromkeys(cluster))                  # 0 is one of the slot-0 IDs
    rng = random.Random(99)
    orders = [cluster, cluster[::-1]] + [rng.sample(cluster, len(cluster)) for _ in range(20)]
    for order in orders:
        tables = TranslationTables("hash", device_bits=32, event_bits=4, intid_bits=32,
                                   num_collections=1, num_cpus=1)
        tables.map_collection(0, 0)
        for device_id in cluster:
            tables.map_device(device_id, 4, itt_addr=device_id)
            tables.map_event(device_id, device_id % 16, 8192 + device_id % 100000, 0)
        remaining = list(cluster)
        for device_id in order:
            assert tables.unmap_device(device_id) is True
            remaining.remove(device_id)
            assert status_of(tables, device_id, device_id % 16) == S.NO_DEVICE
            assert tables.unmap_device(device_id) is False
            intids, _, statuses = batch(tables, [(d, d % 16) for d in remaining])
            assert statuses.tolist() == [S.OK] * len(remaining)
            assert intids.tolist() == [8192 + d % 100000 for d in remaining]
            assert [tables.lookup_device(d) for d in remaining] == [(4, d) for d in remaining]
        assert tables.num_devices == 0


@pytest.mark.parametrize("layout32", ["twolevel", "hash"])
def test_wide_ids_interleaved_map_unmap(layout32):
    tables = TranslationTables(layout32, device_bits=32, event_bits=8, intid_bits=32,
                               num_collections=2, num_cpus=2)
    tables.map_collection(0, 1)
    tables.map_collection(1, 0)
    rng = random.Random(9)
    ids = _scattered_device_ids()[:100]
    live = {}
    for step in range(600):
        device_id = rng.choice(ids)
        if device_id in live and rng.random() < 0.5:
            assert tables.unmap_device(device_id) is True
            del live[device_id]
        else:
            event_id = rng.randrange(16)
            tables.map_device(device_id, 4)
            tables.map_event(device_id, event_id, 8192 + step, step % 2)
            live[device_id] = (event_id, 8192 + step, 1 - step % 2)
        if step % 20 == 0:
            pairs = [(d, e) for d, (e, _, _) in sorted(live.items())]
            intids, cpus, statuses = batch(tables, pairs)
            assert statuses.tolist() == [S.OK] * len(pairs)
            assert intids.tolist() == [live[d][1] for d, _ in pairs]
            assert cpus.tolist() == [live[d][2] for d, _ in pairs]
            absent = [d for d in ids if d not in live]
            _, _, statuses = batch(tables, [(d, 0) for d in absent])
            assert statuses.tolist() == [S.NO_DEVICE] * len(absent)
    assert tables.num_devices == len(live)
    assert tables.device_ids().tolist() == sorted(live)


def test_twolevel_pages_reused():
    tables = TranslationTables("twolevel", device_bits=32, event_bits=8, intid_bits=32,
                               num_collections=4, num_cpus=4)
    tables.map_collection(1, 2)
    page = lambda number, offset: (number << 10) | offset  # noqa: E731  (1024 devices a page)
    for device_id in (5, 6, page(3, 1), 2**32 - 1):
        tables.map_device(device_id, 4)
        tables.map_event(device_id, 1, 8192 + device_id % 1000, 1)
    assert tables.translate(2**32 - 1, 1) == (8192 + (2**32 - 1) % 1000, 2)
    assert tables.translate(5, 1) == (8197, 2)
    assert status_of(tables, 7, 1) == S.NO_DEVICE           # same page, not mapped
    assert status_of(tables, page(3, 0), 1) == S.NO_DEVICE
    assert status_of(tables, page(2, 5), 1) == S.NO_DEVICE  # page never allocated
    # Emptying page 0 frees it; a device on a new page takes it over without
    # the tables growing, and nothing of page 0's devices shows through.
    assert tables.unmap_device(5) is True
    assert tables.translate(6, 1) == (8198, 2)
    assert tables.unmap_device(6) is True
    nbytes = tables.nbytes
    newcomer = page(2**21, 7)
    tables.map_device(newcomer, 4)
    tables.map_event(newcomer, 2, 9999, 1)
    assert tables.nbytes == nbytes
    assert tables.translate(newcomer, 2) == (9999, 2)
    for device_id in (page(2**21, 5), page(2**21, 6), 5, 6):
        assert status_of(tables, device_id, 1) == S.NO_DEVICE
    # The freed page is not reachable through its old level-1 slot any more:
    # DeviceIDs 0..1023 see no device, in particular not the newcomer.
    for device_id in (0, 7, 1023):
        assert status_of(tables, device_id, 2) == S.NO_DEVICE
        assert tables.lookup_device(device_id) is None
    assert tables.device_ids().tolist() == sorted([page(3, 1), 2**32 - 1, newcomer])
    assert tables.lookup_device(page(2**21, 5)) is None
    # A page that no freed page can serve makes the tables grow.
    tables.map_device(page(2**21 + 1, 0), 4)
    assert tables.nbytes > nbytes
    # The untouched devices still translate.
    assert tables.translate(page(3, 1), 1) == (8192 + page(3, 1) % 1000, 2)
    assert tables.translate(2**32 - 1, 1) == (8192 + (2**32 - 1) % 1000, 2)
    assert tables.num_devices == 4 and tables.num_events == 3


def test_twolevel_fill_whole_pages():
    tables = TranslationTables("twolevel", device_bits=14, event_bits=4, intid_bits=16,
                               num_collections=1, num_cpus=1)
    tables.map_collection(0, 0)
    ids = list(range(1024, 3072)) + [2**14 - 1]
    for device_id in ids:
        tables.map_device(device_id, 4)
        tables.map_event(device_id, device_id % 16, 8192 + device_id, 0)
    intids, _, statuses = batch(tables, [(d, d % 16) for d in ids])
    assert statuses.tolist() == [S.OK] * len(ids)
    assert intids.tolist() == [8192 + d for d in ids]
    # Free the first of the two full pages, then fill a third from scratch.
    for device_id in range(1024, 2048):
        tables.unmap_device(device_id)
    for device_id in range(8192, 9216):
        tables.map_device(device_id, 4)
        tables.map_event(device_id, 0, 8192 + device_id, 0)
    pairs = ([(d, d % 16) for d in range(2048, 3072)] + [(d, 0) for d in range(8192, 9216)])
    intids, _, statuses = batch(tables, pairs)
    assert statuses.tolist() == [S.OK] * len(pairs)
    assert intids.tolist() == [8192 + d for d, _ in pairs]
    _, _, statuses = batch(tables, [(d, d % 16) for d in range(1024, 2048)])
    assert statuses.tolist() == [S.NO_DEVICE] * 1024
    assert tables.num_devices == 2049


def test_flat_full_device_space():
    tables = TranslationTables("flat", device_bits=20, event_bits=4, intid_bits=24,
                               num_collections=1, num_cpus=1)
    tables.map_collection(0, 0)
    for device_id in (0, 1, 2**19, 2**20 - 1):
        tables.map_device(device_id, 2)
        tables.map_event(device_id, 3, 8192 + device_id, 0)
    intids, _, statuses = batch(tables, [(0, 3), (1, 3), (2**19, 3), (2**20 - 1, 3), (2**20, 3),
                                         (2, 3)])
    assert statuses.tolist() == [S.OK] * 4 + [S.DEVICE_OUT_OF_RANGE, S.NO_DEVICE]
    assert intids.tolist() == [8192, 8193, 8192 + 2**19, 8192 + 2**20 - 1, 0, 0]
    with pytest.raises(MappingError) as info:
        tables.map_device(2**20, 2)
    assert info.value.reason == F.DEVICE_ID_OUT_OF_RANGE


def test_hash_small_device_space():
    """The hash layout still enforces device_bits below 32."""
    tables = TranslationTables("hash", device_bits=3, event_bits=4, num_collections=1,
                               num_cpus=1)
    tables.map_collection(0, 0)
    for device_id in range(8):
        tables.map_device(device_id, 1)
        tables.map_event(device_id, 1, 9000 + device_id, 0)
    with pytest.raises(MappingError) as info:
        tables.map_device(8, 1)
    assert info.value.reason == F.DEVICE_ID_OUT_OF_RANGE
    intids, _, statuses = batch(tables, [(d, 1) for d in range(10)])
    assert statuses.tolist() == [S.OK] * 8 + [S.DEVICE_OUT_OF_RANGE] * 2
    assert intids.tolist() == [9000 + d for d in range(8)] + [0, 0]


def test_layouts_agree_on_a_scripted_history():
    """The same operations give the same snapshot and translations in every layout."""
    results = []
    for layout in its_core.LAYOUTS:
        tables = TranslationTables(layout, device_bits=12, event_bits=16, intid_bits=20,
                                   num_collections=32, num_cpus=4)
        rng = random.Random(3)
        for icid in range(0, 32, 3):
            tables.map_collection(icid, icid % 4)
        for step in range(3000):
            device_id = rng.randrange(4096)
            choice = rng.random()
            try:
                if choice < 0.2:
                    tables.map_device(device_id % 300, rng.choice([3, 6, 10, 16]))
                elif choice < 0.7:
                    tables.map_event(device_id % 300, rng.randrange(2**rng.choice([3, 6, 10, 16])),
                                     rng.randrange(8192, 2**20), rng.randrange(32))
                elif choice < 0.8:
                    tables.unmap_device(device_id % 300)
                elif choice < 0.9:
                    tables.move_event(device_id % 300, rng.randrange(64), rng.randrange(32))
                else:
                    tables.unmap_event(device_id % 300, rng.randrange(64))
            except MappingError:
                pass
        pairs = [(d, e) for d in range(0, 300, 2) for e in (0, 5, 63, 700, 40000)]
        results.append((tables.snapshot(), [a.tolist() for a in batch(tables, pairs)]))
    assert results[0][0]["events"]                         # the history did map events
    assert results[0] == results[1] == results[2]


def test_load_devices_refuses_rows_the_core_would_refuse(layout):
    """The bulk loader is the trusted path behind restore: it must still refuse any
    ITE word that map_event would refuse, so nothing out of range reaches the stores
    (an INTID at or above 2**intid_bits would index past the pending bitmaps)."""
    from its_core import TranslationStatus, TranslationTables

    def load(ites, events=(3,)):
        tables = TranslationTables(layout, device_bits=16, event_bits=8, intid_bits=16,
                                   num_collections=8)
        tables.load_devices([5], [4], [0x1000], [len(events)], list(events), ites)
        return tables

    good = load([8200 << 16 | 2])
    assert good.translate_batch([5], [3])[2][0] == TranslationStatus.NO_COLLECTION
    assert good.lookup_event(5, 3) == (8200, 2)
    for bad in ([100 << 16 | 1],             # not an LPI
                [(1 << 16) << 16 | 1],       # INTID == 2**intid_bits
                [(1 << 40) << 16 | 1],       # INTID far beyond
                [8200 << 16 | 9]):           # ICID beyond num_collections
        with pytest.raises(ValueError):
            load(bad)
    with pytest.raises(ValueError):
        load([8200 << 16, 8201 << 16], events=(3, 3))       # EventIDs not increasing
    with pytest.raises(ValueError):
        load([8200 << 16], events=(16,))                     # EventID beyond 2**4
