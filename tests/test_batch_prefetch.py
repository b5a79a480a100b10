"""translate_batch over tables larger than the caches takes the group-prefetching
loop (`batch_prefetching`); it must give, pair for pair, what the reference model
gives: every status, sparse and slab devices, group and chunk boundaries, runs of
one device (plain-loop chunks) next to jumps (prefetched chunks)."""

from __future__ import annotations

import numpy as np
import pytest

from its_core import TranslationTables
from its_core.core._core import PREFETCH_MIN_BYTES, TranslationStatus
from its_core.core.reference import ReferenceTables

DEVICE_BITS = 24
EVENT_BITS = 20
DENSE_DEVICES = 2500          # x 256 events in slabs: a 5 MiB ITE pool
SPARSE_DEVICES = 12           # events scattered over 20 bits: the sparse map


def _populate(tables, rng_seed=11):
    rng = np.random.default_rng(rng_seed)
    for icid in range(40):
        if icid % 13 != 5:                                 # a few collections stay unmapped
            tables.map_collection(icid, icid % 4)
    devices = np.sort(rng.choice(1 << DEVICE_BITS, DENSE_DEVICES + SPARSE_DEVICES,
                                 replace=False)).astype(np.uint32)
    sparse = devices[rng.choice(len(devices), SPARSE_DEVICES, replace=False)]
    rows = {"device": [], "event": [], "intid": [], "icid": []}
    for device_id in devices.tolist():
        if device_id in sparse:
            tables.map_device(device_id, EVENT_BITS, 0)
            events = rng.choice(1 << EVENT_BITS, 300, replace=False)
        else:
            tables.map_device(device_id, 8, 0)
            events = rng.choice(256, 230, replace=False)   # some slab slots stay free
        rows["device"].append(np.full(len(events), device_id))
        rows["event"].append(events)
    count = sum(len(events) for events in rows["event"])
    device_ids = np.concatenate(rows["device"]).astype(np.uint32)
    event_ids = np.concatenate(rows["event"]).astype(np.uint32)
    intids = rng.integers(8192, 1 << 16, count).astype(np.uint32)
    icids = rng.integers(0, 40, count).astype(np.uint32)
    failures = tables.map_events(device_ids, event_ids, intids, icids)
    assert not np.asarray(failures).any()
    return devices, sparse, device_ids, event_ids


def _queries(devices, mapped_devices, mapped_events, seed):
    """Chunks of random jumps and of runs on one device, with every failure mixed in."""
    rng = np.random.default_rng(seed)
    parts = []
    for chunk in range(40):
        size = int(rng.integers(1, 700))
        if chunk % 3 == 2:                                  # a run on one device
            device_ids = np.full(size, rng.choice(devices), np.uint32)
            event_ids = rng.integers(0, 300, size).astype(np.uint32)
        else:
            pick = rng.integers(0, len(mapped_devices), size)
            device_ids = mapped_devices[pick].copy()
            event_ids = mapped_events[pick].copy()
            noise = rng.random(size)
            device_ids[noise < 0.05] = rng.integers(0, 1 << DEVICE_BITS,
                                                    int((noise < 0.05).sum()))
            out_of_range = (noise >= 0.05) & (noise < 0.08)
            device_ids[out_of_range] = rng.integers(1 << DEVICE_BITS, 1 << 32,
                                                    int(out_of_range.sum()))
            bumped = (noise >= 0.08) & (noise < 0.14)
            event_ids[bumped] = rng.integers(0, 1 << 32, int(bumped.sum()))
        parts.append((device_ids, event_ids))
    return (np.concatenate([p[0] for p in parts]).astype(np.uint32),
            np.concatenate([p[1] for p in parts]).astype(np.uint32))


@pytest.fixture(scope="module")
def reference():
    tables = ReferenceTables("hash", device_bits=DEVICE_BITS, event_bits=EVENT_BITS,
                             num_cpus=4)
    return tables, _populate(tables)


@pytest.mark.parametrize("layout", ["twolevel", "hash"])
def test_prefetching_loop_matches_the_reference(layout, reference):
    model, (devices, sparse, mapped_devices, mapped_events) = reference
    tables = TranslationTables(layout, device_bits=DEVICE_BITS, event_bits=EVENT_BITS,
                               num_cpus=4)
    _populate(tables)
    assert tables.batch_prefetching and tables.nbytes >= PREFETCH_MIN_BYTES
    device_ids, event_ids = _queries(devices, mapped_devices, mapped_events, seed=5)
    intids, cpus, statuses = tables.translate_batch(device_ids, event_ids, threads=1)
    want_intids, want_cpus, want_statuses = model.translate_batch(device_ids, event_ids)
    np.testing.assert_array_equal(statuses, want_statuses)
    np.testing.assert_array_equal(intids, want_intids)
    np.testing.assert_array_equal(cpus, want_cpus)
    seen = {TranslationStatus(status) for status in np.unique(statuses).tolist()}
    assert seen == {TranslationStatus.OK, TranslationStatus.NO_DEVICE,
                    TranslationStatus.DEVICE_OUT_OF_RANGE, TranslationStatus.EVENT_OUT_OF_RANGE,
                    TranslationStatus.NO_MAPPING, TranslationStatus.NO_COLLECTION}
    on_sparse = np.isin(device_ids, sparse) & (statuses == TranslationStatus.OK)
    assert on_sparse.any()                                   # the sparse map was walked


@pytest.mark.parametrize("layout", ["flat", "twolevel", "hash"])
def test_small_and_large_tables_give_the_same_answers(layout):
    """The same mappings in tables under and over the prefetching threshold
    (flat's directory alone grows with device_bits) translate alike, at every
    batch length around a group and a chunk."""
    small = TranslationTables(layout, device_bits=12, event_bits=8, num_cpus=4)
    large = TranslationTables(layout, device_bits=20, event_bits=8, num_cpus=4)
    rng = np.random.default_rng(2)
    device_ids = np.sort(rng.choice(1 << 12, 400, replace=False))
    intids = rng.integers(8192, 9000, 20_000)
    for tables in (small, large):
        for icid in range(8):
            tables.map_collection(icid, icid % 4)
        for device_id in device_ids.tolist():
            tables.map_device(device_id, 6, 0)
        tables.map_events(np.repeat(device_ids, 50), np.tile(np.arange(50), 400), intids,
                          np.tile(np.arange(50) % 9, 400))
    if layout == "flat":
        assert large.batch_prefetching and not small.batch_prefetching
    for length in (1, 63, 64, 65, 511, 512, 513, 1500):
        queries = (rng.integers(0, 1 << 12, length).astype(np.uint32),
                   rng.integers(0, 70, length).astype(np.uint32))
        for want, got in zip(small.translate_batch(*queries), large.translate_batch(*queries)):
            np.testing.assert_array_equal(got, want)


def test_threshold_is_reported_per_table():
    tables = TranslationTables("hash", device_bits=16, event_bits=8)
    assert not tables.batch_prefetching                     # a few KiB
    flat = TranslationTables("flat", device_bits=20, event_bits=8)
    assert flat.batch_prefetching                           # 2**20 records of 24 bytes
