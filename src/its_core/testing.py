"""Helpers for tests and benchmarks: random valid states and state comparison.

`random_state` fills an ITS with a random but valid state (vectorised, for
bulk save/restore tests); `assert_same_state` names the first difference
between two ITSs.  `GuestMap` and `bring_up` live in `its_core.frontend.bringup` (and
are exported by the package) and are re-exported here.
"""

from __future__ import annotations

from its_core.frontend.bringup import LPI_CONFIG_DEFAULT, GuestMap, bring_up

__all__ = ["GuestMap", "bring_up", "LPI_CONFIG_DEFAULT", "random_state", "assert_same_state"]


def random_state(its, num_devices: int, events_per_device: int, *, seed: int = 0,
                 guest: GuestMap | None = None, num_collections: int = 64,
                 pending_fraction: float = 0.01) -> GuestMap:
    """Bring `its` up and fill it with a random but valid state, vectorised.

    `num_devices` devices with DeviceIDs drawn from the slots of the device
    table, each with `events_per_device` mapped events (random distinct
    EventIDs within its ITT) to random LPIs and collections, every collection
    mapped but one in eight (so some events name an unmapped collection), and
    about `pending_fraction` of the events pending on their CPU.  Hundreds of
    thousands of events take well under a second.  Returns the `GuestMap`.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    tables = its.tables
    event_bits = max(1, int(events_per_device - 1).bit_length())
    itt_bytes = 8 << event_bits
    if guest is None:
        slots_needed = max(num_devices, 1)
        pages = min(256, -(-slots_needed * 8 // (64 << 10)) + 1)
        guest = GuestMap(device_table_pages=pages, itt_stride=max(256, itt_bytes))
    guest = bring_up(its, guest)
    if guest.itt_base + num_devices * guest.itt_stride > its.memory.end:
        raise ValueError("guest memory too small for that many ITTs")
    if guest.indirect:
        if guest.level1_indexes:
            raise ValueError("random_state draws DeviceIDs from level-1 entries 0..level2_pages-1")
        space = guest.level2_pages * (guest.page_bytes // 8)
    else:
        space = guest.device_table_pages * guest.page_bytes // 8
    space = min(space, 1 << tables.device_bits)
    if num_devices > space:
        raise ValueError(f"{num_devices} devices do not fit {space} device-table slots")
    device_ids = np.sort(rng.choice(space, num_devices, replace=False)).astype(np.uint32)
    itts = (guest.itt_base + np.arange(num_devices, dtype=np.uint64) * guest.itt_stride)
    per = events_per_device
    # Distinct random EventIDs per device: a random permutation's first `per`.
    events = np.argsort(rng.random((num_devices, 1 << event_bits)), axis=1)[:, :per]
    events = np.sort(events, axis=1).astype(np.uint32).reshape(-1)
    lpi_limit = min(1 << tables.intid_bits, its.lpi_state.limit)
    intids = rng.integers(8192, lpi_limit, num_devices * per, dtype=np.uint64)
    icids = rng.integers(0, num_collections, num_devices * per, dtype=np.uint64)
    tables.load_devices(device_ids, np.full(num_devices, event_bits, np.uint8), itts,
                        np.full(num_devices, per, np.int64), events,
                        (intids << np.uint64(16)) | icids)
    for icid in range(num_collections):
        if icid % 8 != 7:
            tables.map_collection(icid, int(rng.integers(0, its.num_cpus)))
    its.lpi_state.load_config_many(intids.astype(np.uint32))
    chosen = rng.random(intids.size) < pending_fraction
    cpus = tables.collections_of(icids[chosen].astype(np.uint16))
    mapped = cpus >= 0
    pending = intids[chosen][mapped]
    its.lpi_state.pending_array[cpus[mapped], (pending >> np.uint64(3)).astype(np.intp)] |= (
        np.uint8(1) << (pending & np.uint64(7)).astype(np.uint8))
    its.lpi_state.rebuild_index()       # the bitmap was written directly
    return guest


def assert_same_state(first, second) -> None:
    """Raise AssertionError naming the first difference between two ITSs:
    devices, events, collections, pending bits, EnableLPIs, ITS registers."""
    import numpy as np

    def differ(what, a, b):
        raise AssertionError(f"{what} differ:\n  first:  {a!r}\n  second: {b!r}")

    da, db = first.tables.devices(), second.tables.devices()
    if not np.array_equal(da, db):
        differ("devices", da, db)
    ea, eb = first.tables.export_events(), second.tables.export_events()
    for name, a, b in zip(("event DeviceIDs", "EventIDs", "ITEs"), ea, eb):
        if not np.array_equal(a, b):
            index = int(np.flatnonzero(a != b)[0]) if a.shape == b.shape else None
            differ(name + (f" (first at row {index})" if index is not None else ""),
                   a[index] if index is not None else a.shape,
                   b[index] if index is not None else b.shape)
    ca, cb = first.tables.collection_table(), second.tables.collection_table()
    if not (np.array_equal(ca[0], cb[0]) and np.array_equal(ca[1], cb[1])):
        differ("collections", ca, cb)
    if first.num_cpus != second.num_cpus:
        differ("CPU counts", first.num_cpus, second.num_cpus)
    for cpu in range(first.num_cpus):
        pa, pb = first.pending(cpu), second.pending(cpu)
        if not np.array_equal(pa, pb):
            differ(f"pending LPIs of CPU {cpu}", pa, pb)
        if first.redistributors.lpis_enabled(cpu) != second.redistributors.lpis_enabled(cpu):
            differ(f"EnableLPIs of CPU {cpu}", first.redistributors.lpis_enabled(cpu),
                   second.redistributors.lpis_enabled(cpu))
    ra, rb = first.save_registers(), second.save_registers()
    if ra != rb:
        differ("ITS registers", ra, rb)
