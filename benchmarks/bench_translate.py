"""Translation throughput: every layout, the bare-loop and checked ceilings and the
reference.

Run with ``python -m pytest benchmarks --benchmark-enable`` (see
benchmarks/README.md).  In the normal test run benchmarks are disabled and
each body runs once, checking its results, as a smoke test.

Groups are ``translate-batch/<workload>/<pattern>`` and
``translate-scalar/<workload>``; within a group every row translates the same
pairs, so the table reads as a ratio to the ceiling and to the reference.
"""

import numpy as np
import pytest

from its_core import TranslationStatus
from its_core.tools._ceiling import bare_translate, checked_translate
from its_core.core.reference import ReferenceTables
from its_core.tools.workloads import (PATTERNS, WORKLOADS, access, build, ceiling_tables,
                                     checked_ceiling_devices)

BATCH_PAIRS = 200_000          # pairs per batch call (all rows of a group)
REFERENCE_PAIRS = 20_000       # the reference model is timed on a prefix
SCALAR_CALLS = 20_000

CASES = [(workload, layout) for workload in WORKLOADS.values() for layout in workload.layouts()]


@pytest.fixture(scope="module")
def tables_cache():
    return {}


def tables_for(cache, workload, layout, tables_class=None):
    """The workload's tables (the reference model when `tables_class` is given)."""
    key = (workload.name, layout, tables_class)
    if key not in cache:
        cache[key] = build(workload, layout, **({"tables_class": tables_class}
                                                 if tables_class else {}))
    return cache[key]


@pytest.fixture(scope="module")
def expected_cache():
    """Expected (intids, cpus) per (workload, pattern), from the bare loop."""
    return {}


def expected_for(cache, workload, pattern):
    key = (workload.name, pattern)
    if key not in cache:
        device_ids, event_ids = access(workload, pattern, BATCH_PAIRS)
        device_base, ites, collection_cpu, position_of = ceiling_tables(workload)
        intids = np.empty(BATCH_PAIRS, np.uint32)
        cpus = np.empty(BATCH_PAIRS, np.int32)
        bare_translate(device_base, ites, collection_cpu, position_of(device_ids), event_ids,
                       intids, cpus)
        cache[key] = (device_ids, event_ids, intids, cpus,
                      (device_base, ites, collection_cpu, position_of(device_ids)))
    return cache[key]


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("workload", WORKLOADS.values(), ids=lambda w: w.name)
def test_ceiling(benchmark, expected_cache, workload, pattern):
    device_ids, event_ids, intids, cpus, arrays = expected_for(expected_cache, workload, pattern)
    device_base, ites, collection_cpu, positions = arrays
    out_intids = np.empty_like(intids)
    out_cpus = np.empty_like(cpus)
    benchmark.group = f"translate-batch/{workload.name}/{pattern}"
    benchmark.extra_info["pairs"] = BATCH_PAIRS
    benchmark(bare_translate, device_base, ites, collection_cpu, positions, event_ids,
              out_intids, out_cpus)
    assert np.array_equal(out_intids, intids) and np.array_equal(out_cpus, cpus)


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("workload", WORKLOADS.values(), ids=lambda w: w.name)
def test_checked_ceiling(benchmark, expected_cache, workload, pattern):
    """The bare loop plus the checks and status array every correct ITS needs:
    a layout's gap to this row is the layout's own."""
    device_ids, event_ids, intids, cpus, arrays = expected_for(expected_cache, workload, pattern)
    _, ites, collection_cpu, positions = arrays
    devices, device_bits = checked_ceiling_devices(workload)
    out = (np.empty_like(intids), np.empty_like(cpus), np.empty(BATCH_PAIRS, np.uint8))
    benchmark.group = f"translate-batch/{workload.name}/{pattern}"
    benchmark.extra_info["pairs"] = BATCH_PAIRS
    benchmark(checked_translate, devices, device_bits, ites, collection_cpu, positions,
              event_ids, *out)
    assert np.array_equal(out[0], intids) and np.array_equal(out[1], cpus)
    assert not out[2].any()


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("workload,layout", CASES, ids=lambda v: getattr(v, "name", v))
def test_batch(benchmark, tables_cache, expected_cache, workload, layout, pattern):
    tables = tables_for(tables_cache, workload, layout)
    device_ids, event_ids, intids, cpus, _ = expected_for(expected_cache, workload, pattern)
    out = (np.empty(BATCH_PAIRS, np.uint32), np.empty(BATCH_PAIRS, np.int32),
           np.empty(BATCH_PAIRS, np.uint8))
    benchmark.group = f"translate-batch/{workload.name}/{pattern}"
    benchmark.extra_info["pairs"] = BATCH_PAIRS
    benchmark.extra_info["nbytes"] = tables.nbytes
    benchmark(tables.translate_batch, device_ids, event_ids, out=out, threads=1)   # vs the ceiling
    assert (out[2] == TranslationStatus.OK).all()
    assert np.array_equal(out[0], intids) and np.array_equal(out[1], cpus)


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("workload", WORKLOADS.values(), ids=lambda w: w.name)
def test_reference_batch(benchmark, tables_cache, expected_cache, workload, pattern):
    reference = tables_for(tables_cache, workload, "hash", ReferenceTables)
    device_ids, event_ids, intids, cpus, _ = expected_for(expected_cache, workload, pattern)
    benchmark.group = f"translate-batch/{workload.name}/{pattern}"
    benchmark.extra_info["pairs"] = REFERENCE_PAIRS
    out = benchmark.pedantic(reference.translate_batch,
                             (device_ids[:REFERENCE_PAIRS], event_ids[:REFERENCE_PAIRS]),
                             rounds=3, iterations=1)
    assert np.array_equal(out[0], intids[:REFERENCE_PAIRS])
    assert np.array_equal(out[1], cpus[:REFERENCE_PAIRS])


def _scalar_loop(translate, pairs):
    for device_id, event_id in pairs:
        translate(device_id, event_id)


@pytest.mark.parametrize("workload,layout", CASES, ids=lambda v: getattr(v, "name", v))
def test_scalar(benchmark, tables_cache, expected_cache, workload, layout):
    tables = tables_for(tables_cache, workload, layout)
    device_ids, event_ids, intids, cpus, _ = expected_for(expected_cache, workload, "random")
    pairs = list(zip(device_ids[:SCALAR_CALLS].tolist(), event_ids[:SCALAR_CALLS].tolist()))
    benchmark.group = f"translate-scalar/{workload.name}"
    benchmark.extra_info["calls"] = SCALAR_CALLS
    benchmark(_scalar_loop, tables.translate, pairs)
    assert tables.translate(*pairs[-1]) == (intids[SCALAR_CALLS - 1], cpus[SCALAR_CALLS - 1])


@pytest.mark.parametrize("workload", WORKLOADS.values(), ids=lambda w: w.name)
def test_reference_scalar(benchmark, tables_cache, expected_cache, workload):
    reference = tables_for(tables_cache, workload, "hash", ReferenceTables)
    device_ids, event_ids, intids, cpus, _ = expected_for(expected_cache, workload, "random")
    pairs = list(zip(device_ids[:SCALAR_CALLS].tolist(), event_ids[:SCALAR_CALLS].tolist()))
    benchmark.group = f"translate-scalar/{workload.name}"
    benchmark.extra_info["calls"] = SCALAR_CALLS
    benchmark.pedantic(_scalar_loop, (reference.translate, pairs), rounds=3, iterations=1)
    assert reference.translate(*pairs[0]) == (intids[0], cpus[0])


GUARD_CALLS = 10_000
SMALL_BATCH = 64


@pytest.mark.parametrize("layout", ("flat", "twolevel", "hash"))
def test_small_batch(benchmark, tables_cache, expected_cache, layout):
    """A 64-pair batch: the call's fixed cost, which the thread guard adds to."""
    workload = WORKLOADS["dense-1k"]
    tables = tables_for(tables_cache, workload, layout)
    device_ids, event_ids, intids, cpus, _ = expected_for(expected_cache, workload, "random")
    pairs = (device_ids[:SMALL_BATCH].copy(), event_ids[:SMALL_BATCH].copy())
    out = (np.empty(SMALL_BATCH, np.uint32), np.empty(SMALL_BATCH, np.int32),
           np.empty(SMALL_BATCH, np.uint8))
    benchmark.group = "thread-guard"
    benchmark(tables.translate_batch, *pairs, out=out)
    assert np.array_equal(out[0], intids[:SMALL_BATCH])


def test_guard_pin_cycle(benchmark, tables_cache):
    """The guard's fixed cost per batch (one pin and unpin), timed over
    GUARD_CALLS cycles: compare with test_small_batch per call."""
    tables = tables_for(tables_cache, WORKLOADS["dense-1k"], "flat")
    benchmark.group = "thread-guard"
    benchmark.extra_info["calls"] = GUARD_CALLS
    benchmark(tables.guard.cycle_pins, GUARD_CALLS)
    assert tables.guard.pinned == 0


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("workload,layout", [(w, layout) for w in WORKLOADS.values()
                                             if not w.sparse for layout in w.layouts()],
                         ids=lambda v: getattr(v, "name", v))
def test_batch_threads(benchmark, tables_cache, expected_cache, workload, layout, threads):
    """The random batch split across `threads` (translate_batch threads=): the
    two rows of a group are the one- and two-thread rates on the same pairs."""
    tables = tables_for(tables_cache, workload, layout)
    device_ids, event_ids, intids, cpus, _ = expected_for(expected_cache, workload, "random")
    out = (np.empty(BATCH_PAIRS, np.uint32), np.empty(BATCH_PAIRS, np.int32),
           np.empty(BATCH_PAIRS, np.uint8))
    benchmark.group = f"translate-threads/{workload.name}/{layout}"
    benchmark.extra_info["pairs"] = BATCH_PAIRS
    benchmark(tables.translate_batch, device_ids, event_ids, out=out, threads=threads)
    assert np.array_equal(out[0], intids) and np.array_equal(out[1], cpus)
