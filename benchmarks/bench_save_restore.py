"""Save and restore throughput on 65 536 devices x 32 events (2 M ITEs).

Groups ``save-tables`` and ``restore-tables`` each hold a plain numpy copy
of the same number of 8-byte entries, so the table reads as a ratio to a
memory copy measured in the same run.  Groups ``snapshot`` and
``from-snapshot`` (host snapshots: `ITS.snapshot`, `ITS.from_snapshot`) each
hold a numpy copy of the snapshot's own arrays (every array of the dict,
copied into new arrays, as `snapshot` makes new ones).  Groups
``sparse-save`` and ``sparse-restore`` (4096 devices over 32-bit DeviceIDs,
a two-level guest device table: `its-core bench`'s sparse-4k workload) each
hold a numpy fill of as many bytes as the KVM rev0 format makes
`save_tables` read or write, or `restore_tables` read, in guest memory
(`its_core.tools.bench.format_bytes`).
"""

from functools import partial

import numpy as np
import pytest

from its_core import ITS, GuestMemory
from its_core.abi.snapshot_format import FORMAT
from its_core.testing import assert_same_state, random_state
from its_core.tools import bench

DEVICES = 65_536
EVENTS = 32
ENTRIES = DEVICES * EVENTS


@pytest.fixture(scope="module")
def saved():
    """layout -> (its, state) with the tables saved into its guest memory."""
    result = {}
    for layout in ("flat", "twolevel", "hash"):
        its = ITS(GuestMemory(64 << 20), 4, layout)
        random_state(its, DEVICES, EVENTS, seed=7)
        result[layout] = (its, its.save())
    return result


@pytest.mark.parametrize("group", ["save-tables", "restore-tables"])
def test_numpy_copy(benchmark, group):
    """The yardstick: copying ENTRIES 8-byte words."""
    source = np.arange(ENTRIES, dtype=np.uint64)
    target = np.empty_like(source)
    benchmark.group = group
    benchmark.extra_info["entries"] = ENTRIES
    benchmark(np.copyto, target, source)
    assert np.array_equal(target, source)


@pytest.mark.parametrize("layout", ["flat", "twolevel", "hash"])
def test_save_tables(benchmark, saved, layout):
    its, _ = saved[layout]
    benchmark.group = "save-tables"
    benchmark.extra_info["entries"] = its.tables.num_events
    before = its.memory.array.copy()
    benchmark(its.save_tables)
    assert np.array_equal(its.memory.array, before)      # saving again changes nothing


@pytest.mark.parametrize("layout", ["flat", "twolevel", "hash"])
def test_restore_tables(benchmark, saved, layout):
    its, state = saved[layout]
    target = ITS(GuestMemory(np.array(its.memory.array)), 4, layout)
    target.restore(state)
    target.mmio_write(0, 0, 4)                           # disabled: restore_tables allowed
    benchmark.group = "restore-tables"
    benchmark.extra_info["entries"] = its.tables.num_events
    benchmark(target.restore_tables)
    target.mmio_write(0, 1, 4)
    assert_same_state(its, target)


@pytest.fixture(scope="module")
def snapshots(saved):
    """layout -> (its, its.snapshot()) of the same states."""
    return {layout: (its, its.snapshot()) for layout, (its, _) in saved.items()}


def _copy_arrays(arrays):
    return [np.copy(array) for array in arrays]


@pytest.mark.parametrize("group", ["snapshot", "from-snapshot"])
def test_snapshot_numpy_copy(benchmark, snapshots, group):
    """The yardstick: a numpy copy of every array of the snapshot."""
    _, snapshot = snapshots["flat"]
    arrays = [value for value in snapshot.values() if isinstance(value, np.ndarray)]
    benchmark.group = group
    benchmark.extra_info["entries"] = int(snapshot["tables.event_id"].size)
    benchmark.extra_info["bytes"] = sum(array.nbytes for array in arrays)
    copies = benchmark(_copy_arrays, arrays)
    assert all(np.array_equal(a, b) for a, b in zip(arrays, copies))


@pytest.mark.parametrize("layout", ["flat", "twolevel", "hash"])
def test_snapshot(benchmark, snapshots, layout):
    its, _ = snapshots[layout]
    benchmark.group = "snapshot"
    benchmark.extra_info["entries"] = its.tables.num_events
    snapshot = benchmark(its.snapshot)
    assert snapshot["format"] == FORMAT and snapshot["tables.event_id"].size == ENTRIES


@pytest.mark.parametrize("layout", ["flat", "twolevel", "hash"])
def test_from_snapshot(benchmark, snapshots, layout):
    its, snapshot = snapshots[layout]
    memory = GuestMemory(np.array(its.memory.array))
    benchmark.group = "from-snapshot"
    benchmark.extra_info["entries"] = its.tables.num_events
    twin = benchmark(ITS.from_snapshot, snapshot, memory)
    assert_same_state(its, twin)


@pytest.fixture(scope="module")
def bulk_states():
    """Random small states (the default guest layout), each on its own guest
    memory, made (untimed) once: `its_core.tools.bench.bulk_sources`."""
    return bench.bulk_sources("flat")


@pytest.mark.parametrize("layout", ["flat", "twolevel", "hash"])
def test_bulk_round_trips(benchmark, bulk_states, layout):
    """`save()` then `restore()` into a fresh ITS of another layout, for each of
    BULK_STATES small states; round trips per second = BULK_STATES / time."""
    sources = []
    for its in bulk_states:
        source = ITS(its.memory, 4, layout)
        source.restore(its.save())              # the state, in this layout
        sources.append(source)
    round_trips = partial(bench.bulk_round_trips, sources, bench.BULK_LAYOUTS[layout])

    benchmark.group = "bulk"
    benchmark.extra_info["round_trips"] = bench.BULK_STATES
    restored = benchmark(round_trips)
    for source, fresh in zip(sources, restored):
        assert_same_state(source, fresh)


@pytest.fixture(scope="module")
def sparse_its():
    """layout -> a brought-up ITS holding the sparse-4k workload, its tables
    saved (made on first use; one layout's guest memory at a time)."""
    from its_core.tools import bench
    from its_core.tools.workloads import WORKLOADS

    cache = {}

    def get(layout):
        if layout not in cache:
            cache.clear()
            its, mapti = bench._its_with_devices(WORKLOADS["sparse-4k"], layout, 0)
            its.submit_many(mapti)
            its.mmio_write(0, 0, 4)                      # disabled: restore_tables allowed
            its.save_tables()
            cache[layout] = its
        return cache[layout]
    return get


@pytest.mark.parametrize("group", ["sparse-save", "sparse-restore"])
def test_sparse_numpy_fill(benchmark, sparse_its, group):
    """The yardstick: a numpy fill of the guest bytes the format requires."""
    from its_core.tools import bench

    save_bytes, restore_bytes = bench.format_bytes(sparse_its("hash"))
    target = np.empty(save_bytes if group == "sparse-save" else restore_bytes, np.uint8)
    benchmark.group = group
    benchmark.extra_info["bytes"] = target.size
    benchmark(target.fill, 0)
    assert not target.any()


@pytest.mark.parametrize("layout", ["twolevel", "hash"])
def test_sparse_save_tables(benchmark, sparse_its, layout):
    its = sparse_its(layout)
    benchmark.group = "sparse-save"
    benchmark.extra_info["entries"] = its.tables.num_events
    before = its.tables.snapshot()
    benchmark(its.save_tables)
    assert its.tables.snapshot() == before


@pytest.mark.parametrize("layout", ["twolevel", "hash"])
def test_sparse_restore_tables(benchmark, sparse_its, layout):
    its = sparse_its(layout)
    before = its.tables.snapshot()
    benchmark.group = "sparse-restore"
    benchmark.extra_info["entries"] = its.tables.num_events
    benchmark(its.restore_tables)
    assert its.tables.snapshot() == before
