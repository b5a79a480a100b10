"""translate_batch and msi_batch split across threads (threads=): the results
are those of one thread, bit for bit, in every layout; bad values raise."""

from __future__ import annotations

import numpy as np
import pytest

from its_core import ITS, GuestMemory, TranslationTables, bring_up, GuestMap
from its_core import commands as C
from its_core.core._core import AUTO_THREADS_MIN_PAIRS, batch_threads


def _tables(layout):
    tables = TranslationTables(layout, device_bits=20 if layout == "flat" else 24,
                               event_bits=8, num_cpus=4)
    rng = np.random.default_rng(3)
    for icid in range(16):
        tables.map_collection(icid, icid % 4)
    devices = np.sort(rng.choice(1 << 20, 300, replace=False))
    for device_id in devices.tolist():
        tables.map_device(device_id, 7)
    rows = 300 * 60
    tables.map_events(np.repeat(devices, 60), rng.integers(0, 128, rows),
                      rng.integers(8192, 60000, rows), rng.integers(0, 20, rows))
    return tables, devices


@pytest.mark.parametrize("layout", ["flat", "twolevel", "hash"])
@pytest.mark.parametrize("threads", [2, 3, 8])
def test_split_batches_equal_one_thread(layout, threads):
    tables, devices = _tables(layout)
    rng = np.random.default_rng(threads)
    pairs = 50_001
    device_ids = np.where(rng.random(pairs) < 0.9, rng.choice(devices, pairs),
                          rng.integers(0, 1 << 20, pairs)).astype(np.uint32)
    event_ids = rng.integers(0, 200, pairs).astype(np.uint32)
    single = tables.translate_batch(device_ids, event_ids, threads=1)
    split = tables.translate_batch(device_ids, event_ids, threads=threads)
    for one, many in zip(single, split):
        np.testing.assert_array_equal(one, many)
    assert len(set(single[2].tolist())) > 2                 # several statuses in play
    assert tables.guard.pinned == 0


def test_automatic_choice_splits_only_large_batches():
    assert batch_threads(None, AUTO_THREADS_MIN_PAIRS - 1) == 1
    assert batch_threads(None, 10 * AUTO_THREADS_MIN_PAIRS) >= 1
    assert batch_threads(4, 3) == 3                        # never more parts than pairs
    assert batch_threads(np.int64(2), 100) == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", None.__class__])
def test_bad_thread_counts_raise(bad):
    tables, _ = _tables("hash")
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        tables.translate_batch([1], [2], threads=bad)


def test_msi_batch_with_threads_loses_no_pending_bit():
    memory = GuestMemory(64 << 20)
    its = ITS(memory, 2, "twolevel")
    guest = bring_up(its, GuestMap())
    its.submit(C.mapc(0, 0), C.mapc(1, 1), C.mapd(7, guest.itt_address(0), 12),
               *[C.mapti(7, event_id, 8192 + event_id, event_id % 2)
                 for event_id in range(4096)])
    events = np.tile(np.arange(4096, dtype=np.uint32), 8)
    cpus = np.empty(events.size, np.int32)
    statuses = its.msi_batch(np.full(events.size, 7, np.uint32), events, cpus_out=cpus,
                             threads=4)
    assert (statuses == 0).all()
    np.testing.assert_array_equal(cpus, events % 2)
    pending = np.concatenate([its.pending(0), its.pending(1)])
    np.testing.assert_array_equal(np.sort(pending), np.arange(8192, 8192 + 4096))
    with pytest.raises(ValueError, match="threads"):
        its.msi_batch([7], [0], threads=0)
