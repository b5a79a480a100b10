"""Named, seeded workloads shared by the benchmarks and ``its-core bench``.

A workload is a set of devices with a fixed number of mapped events each,
DeviceIDs either dense (0..N-1) or scattered over the 32-bit space, and a
collection per (device + event) modulo `num_collections`.  Everything is
deterministic for a given seed.  Sizes and seeds are append-only, so
benchmark histories stay comparable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from its_core.core._core import TranslationTables

#: Patterns of access to the mapped pairs.
PATTERNS = ("random", "sequential")
LPI_FIRST_INTID = 8192


@dataclass(frozen=True)
class Workload:
    """Devices x events to map, and how DeviceIDs are spread."""

    name: str
    devices: int
    events: int
    sparse: bool = False           # DeviceIDs scattered over 32 bits
    num_collections: int = 64
    num_cpus: int = 8
    intid_bits: int = 20

    @property
    def device_bits(self) -> int:
        """Smallest DeviceID width that holds the workload (32 when sparse)."""
        return 32 if self.sparse else max(1, int(self.devices - 1).bit_length())

    @property
    def event_bits(self) -> int:
        return max(1, int(self.events - 1).bit_length())

    def layouts(self, layouts=("flat", "twolevel", "hash")) -> list[str]:
        """The layouts that can hold this workload (flat needs <= 20 DeviceID bits)."""
        return [name for name in layouts if not (name == "flat" and self.device_bits > 20)]


WORKLOADS = {
    "dense-1k": Workload("dense-1k", 1024, 32),
    "dense-64k": Workload("dense-64k", 65536, 32),
    "sparse-4k": Workload("sparse-4k", 4096, 32, sparse=True),
}


def device_ids(workload: Workload, seed: int = 0) -> np.ndarray:
    """The workload's DeviceIDs (uint32), in mapping order."""
    if not workload.sparse:
        return np.arange(workload.devices, dtype=np.uint32)
    rng = np.random.default_rng([seed, 0x1D])
    return rng.choice(1 << 32, size=workload.devices, replace=False).astype(np.uint32)


def mappings(workload: Workload, seed: int = 0):
    """(device_ids, event_ids, intids, icids) of every event, as uint32 arrays."""
    ids = device_ids(workload, seed)
    position = np.repeat(np.arange(workload.devices, dtype=np.int64), workload.events)
    events = np.tile(np.arange(workload.events, dtype=np.int64), workload.devices)
    lpi_space = (1 << workload.intid_bits) - LPI_FIRST_INTID
    intids = LPI_FIRST_INTID + (position * workload.events + events) % lpi_space
    icids = (position + events) % workload.num_collections
    return (ids[position], events.astype(np.uint32), intids.astype(np.uint32),
            icids.astype(np.uint32))


def build(workload: Workload, layout: str, seed: int = 0, tables_class=TranslationTables):
    """Tables of `tables_class` (the core or the reference) holding the workload."""
    tables = tables_class(layout, device_bits=workload.device_bits,
                          event_bits=max(16, workload.event_bits),
                          intid_bits=workload.intid_bits,
                          num_collections=workload.num_collections,
                          num_cpus=workload.num_cpus)
    for icid in range(workload.num_collections):
        tables.map_collection(icid, icid % workload.num_cpus)
    for device_id in device_ids(workload, seed).tolist():
        tables.map_device(device_id, workload.event_bits, 0)
    failures = tables.map_events(*mappings(workload, seed))
    if failures.any():
        raise RuntimeError(f"workload {workload.name} did not map cleanly")
    return tables


def access(workload: Workload, pattern: str, count: int, seed: int = 0):
    """(device_ids, event_ids) uint32 arrays of `count` mapped pairs.

    ``random``: uniform over every mapped pair; ``sequential``: every event of
    a device in turn, devices in ascending DeviceID order, repeated to `count`.
    """
    ids = device_ids(workload, seed)
    if pattern == "random":
        rng = np.random.default_rng([seed, 0xACC])
        position = rng.integers(0, workload.devices, count)
        events = rng.integers(0, workload.events, count)
    elif pattern == "sequential":
        ids = np.sort(ids)
        flat = np.arange(count, dtype=np.int64) % (workload.devices * workload.events)
        position, events = np.divmod(flat, workload.events)
    else:
        raise ValueError(f"pattern must be one of {PATTERNS}, got {pattern!r}")
    return ids[position].astype(np.uint32), events.astype(np.uint32)


def ceiling_tables(workload: Workload, seed: int = 0):
    """Arrays for `its_core.tools._ceiling.bare_translate`: the same mappings with
    no layout and no checks (devices indexed by position, not DeviceID).

    Returns (device_base, ites, collection_cpu, position_of) where
    `position_of(device_ids)` turns DeviceIDs into the bare loop's indices.
    """
    ids = device_ids(workload, seed)
    _, events, intids, icids = mappings(workload, seed)
    ites = (intids.astype(np.uint64) << np.uint64(16)) | icids.astype(np.uint64)
    device_base = np.arange(workload.devices, dtype=np.uint64) * np.uint64(workload.events)
    collection_cpu = (np.arange(65536) % workload.num_cpus).astype(np.int32)
    order = np.argsort(ids)
    sorted_ids = ids[order]

    def position_of(queried: np.ndarray) -> np.ndarray:
        return order[np.searchsorted(sorted_ids, queried)].astype(np.uint32)

    return device_base, ites, collection_cpu, position_of


def checked_ceiling_devices(workload: Workload, seed: int = 0):
    """(devices, device_bits) for `its_core.tools._ceiling.checked_translate`:
    one packed word per device position (first ITE index << 8 | EventID bits),
    for the same ITE array and positions as `ceiling_tables`."""
    device_bits = max(1, (workload.devices - 1).bit_length())
    devices = np.zeros(1 << device_bits, dtype=np.uint64)
    base = np.arange(workload.devices, dtype=np.uint64) * np.uint64(workload.events)
    devices[:workload.devices] = (base << np.uint64(8)) | np.uint64(workload.event_bits)
    return devices, device_bits

