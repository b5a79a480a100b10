"""Measurements behind ``its-core bench``: translation throughput per layout.

Each measurement is the best of `repeat` timed runs (the least disturbed
one), over the same seeded pairs for every layout, the bare-loop ceiling and
the pure-Python reference model, so the rows of one workload compare directly.
"""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from its_core._ceiling import bare_translate
from its_core._version import __version__
from its_core.reference import ReferenceTables
from its_core.workloads import Workload, access, build, ceiling_tables

REFERENCE_PAIRS = 20_000
SCALAR_CALLS = 50_000


@dataclass
class Result:
    """One row of the report."""

    workload: str
    layout: str                  # a layout name, "ceiling" or "reference"
    pattern: str
    batch_per_s: float           # translations per second, batch API
    scalar_per_s: float | None   # calls per second, scalar API (random pattern only)
    nbytes: int | None
    build_s: float | None
    extra: dict = field(default_factory=dict)

    @property
    def ns_per_translation(self) -> float:
        return 1e9 / self.batch_per_s


def best_time(function, repeat: int) -> float:
    """Shortest wall time of `repeat` calls of `function()` (after one warm-up)."""
    function()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def _scalar_rate(translate, device_ids, event_ids, repeat) -> float:
    pairs = list(zip(device_ids[:SCALAR_CALLS].tolist(), event_ids[:SCALAR_CALLS].tolist()))

    def loop():
        for device_id, event_id in pairs:
            translate(device_id, event_id)

    return len(pairs) / best_time(loop, repeat)


def run_workload(workload: Workload, layouts, patterns, pairs: int, repeat: int, seed: int,
                 progress=None, reference: bool = True) -> list[Result]:
    """Measure every layout of one workload (plus ceiling and reference)."""
    results = []
    built, build_seconds = {}, {}
    for layout in workload.layouts(layouts):
        start = time.perf_counter()
        built[layout] = build(workload, layout, seed)
        build_seconds[layout] = time.perf_counter() - start
    reference_tables = (build(workload, "hash", seed, tables_class=ReferenceTables)
                        if reference else None)
    device_base, ites, collection_cpu, position_of = ceiling_tables(workload, seed)
    for pattern in patterns:
        device_ids, event_ids = access(workload, pattern, pairs, seed)
        intids = np.empty(pairs, np.uint32)
        cpus = np.empty(pairs, np.int32)
        positions = position_of(device_ids)
        elapsed = best_time(lambda: bare_translate(device_base, ites, collection_cpu, positions,
                                                   event_ids, intids, cpus), repeat)
        results.append(Result(workload.name, "ceiling", pattern, pairs / elapsed, None,
                              None, None))
        if progress:
            progress()
        out = (np.empty(pairs, np.uint32), np.empty(pairs, np.int32), np.empty(pairs, np.uint8))
        for layout, tables in built.items():
            elapsed = best_time(lambda: tables.translate_batch(device_ids, event_ids, out=out),
                                repeat)
            if not (np.array_equal(out[0], intids) and np.array_equal(out[1], cpus)):
                raise AssertionError(f"{layout} disagrees with the ceiling on {workload.name}")
            scalar = (_scalar_rate(tables.translate, device_ids, event_ids, repeat)
                      if pattern == "random" else None)
            results.append(Result(workload.name, layout, pattern, pairs / elapsed, scalar,
                                  tables.nbytes, build_seconds[layout]))
            if progress:
                progress()
        if reference_tables is not None:
            count = min(pairs, REFERENCE_PAIRS)
            elapsed = best_time(lambda: reference_tables.translate_batch(
                device_ids[:count], event_ids[:count]), 1)
            scalar = (_scalar_rate(reference_tables.translate, device_ids[:count],
                                   event_ids[:count], 1) if pattern == "random" else None)
            results.append(Result(workload.name, "reference", pattern, count / elapsed, scalar,
                                  None, None))
            if progress:
                progress()
    return results


def machine_info() -> dict:
    """What the figures were measured on."""
    import os
    return {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "its_core": __version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }


def as_json(results: list[Result]) -> list[dict]:
    rows = []
    for result in results:
        row = asdict(result)
        row["ns_per_translation"] = result.ns_per_translation
        rows.append(row)
    return rows
