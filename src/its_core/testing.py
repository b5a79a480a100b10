"""Helpers for tests, benchmarks and simulators: a guest driver's bring-up.

`GuestMap` says where a guest put its ITS tables; `bring_up` programs an
`ITS` through MMIO exactly as a guest driver does (redistributors first,
then the ITS tables and queue, then GITS_CTLR.Enabled), with register values
built from the field layouts of `its_core.registers`.
"""

from __future__ import annotations

from dataclasses import dataclass

from its_core import registers as R
from its_core.registers import Cacheability, PageSize, Shareability

__all__ = ["GuestMap", "bring_up", "LPI_CONFIG_DEFAULT"]

#: Config byte a driver writes for every LPI: priority 0xA0, group bit, enabled.
LPI_CONFIG_DEFAULT = 0xA0 | 0x2 | 0x1

_ATTRS = dict(InnerCache=Cacheability.RaWb, OuterCache=Cacheability.SAME_AS_INNER,
              Shareability=Shareability.INNER_SHAREABLE)
_PAGE_BYTES = {PageSize.SIZE_4K: 4 << 10, PageSize.SIZE_16K: 16 << 10,
               PageSize.SIZE_64K: 64 << 10}


@dataclass(frozen=True)
class GuestMap:
    """Guest-physical placement of everything an ITS needs (64 KiB aligned).

    The defaults fit a 64 MiB guest with 16 DeviceID bits, 16 INTID bits and
    up to 8 CPUs; ITTs are handed out from `itt_base` by `itt_address`.
    """

    queue: int = 0x0001_0000            # command queue
    queue_pages: int = 16               # 4 KiB pages: 64 KiB = 2048 commands
    device_table: int = 0x0010_0000     # flat table, or level-1 table when indirect
    device_table_pages: int = 8         # flat: 8 x 64 KiB = 65536 DTEs
    page_size: PageSize = PageSize.SIZE_64K
    indirect: bool = False
    level2_tables: int = 0x0020_0000    # indirect: level-2 pages, one per level-1 entry
    level2_pages: int = 0               # indirect: level-1 entries 0..level2_pages-1 are valid
    level1_indexes: tuple = ()          # indirect: or exactly these level-1 entries
    collection_table: int = 0x0030_0000
    config_table: int = 0x0040_0000     # LPI configuration table
    pending_tables: int = 0x0080_0000   # one per CPU, `pending_stride` apart
    pending_stride: int = 0x0001_0000
    itt_base: int = 0x0100_0000
    itt_stride: int = 0x100             # bytes between consecutive devices' ITTs

    def itt_address(self, index: int) -> int:
        """ITT address of the `index`-th device the guest maps."""
        return self.itt_base + index * self.itt_stride

    @property
    def page_bytes(self) -> int:
        return _PAGE_BYTES[self.page_size]

    def baser0(self) -> int:
        return R.GITS_BASER_LAYOUT.encode(
            Valid=1, Indirect=int(self.indirect), Type=R.BaserType.DEVICES, Entry_Size=7,
            Page_Size=self.page_size, Size=self.device_table_pages - 1,
            Physical_Address=self.device_table >> 12, **_ATTRS)

    def baser1(self) -> int:
        return R.GITS_BASER_LAYOUT.encode(
            Valid=1, Type=R.BaserType.COLLECTIONS, Entry_Size=7, Page_Size=self.page_size,
            Size=0, Physical_Address=self.collection_table >> 12, **_ATTRS)

    def cbaser(self) -> int:
        return R.GITS_CBASER_LAYOUT.encode(Valid=1, Size=self.queue_pages - 1,
                                           Physical_Address=self.queue >> 12, **_ATTRS)

    def propbaser(self, intid_bits: int) -> int:
        return R.GICR_PROPBASER_LAYOUT.encode(IDbits=intid_bits - 1,
                                              Physical_Address=self.config_table >> 12, **_ATTRS)

    def pendbaser(self, cpu: int) -> int:
        return R.GICR_PENDBASER_LAYOUT.encode(
            PTZ=1, Physical_Address=(self.pending_tables + cpu * self.pending_stride) >> 16,
            **_ATTRS)


def bring_up(its, guest: GuestMap | None = None, *, intid_bits: int | None = None,
             enable: bool = True) -> GuestMap:
    """Program `its` as a guest driver does and return the `GuestMap` used.

    Writes the LPI configuration table (every LPI enabled at priority 0xA0),
    each CPU's PROPBASER/PENDBASER (PTZ) and EnableLPIs, the level-1
    descriptors of an indirect device table, BASER0/1 and CBASER, then sets
    GITS_CTLR.Enabled (unless `enable` is False).
    """
    guest = guest or GuestMap()
    memory = its.memory
    bits = intid_bits or its._lpi.intid_bits
    lpis = (1 << bits) - 8192
    memory.fill(guest.config_table, lpis, LPI_CONFIG_DEFAULT)
    rd = its.redistributors
    for cpu in range(its.num_cpus):
        rd.mmio_write(cpu, R.GICR_PROPBASER.offset, guest.propbaser(bits), 8)
        rd.mmio_write(cpu, R.GICR_PENDBASER.offset, guest.pendbaser(cpu), 8)
        rd.mmio_write(cpu, R.GICR_CTLR.offset, 1, 4)
    if guest.indirect:
        indexes = guest.level1_indexes or range(guest.level2_pages)
        for page, index in enumerate(indexes):
            memory.write_u64(guest.device_table + 8 * index,
                             (1 << 63) | (guest.level2_tables + page * guest.page_bytes))
    its.mmio_write(R.GITS_BASER0.offset, guest.baser0(), 8)
    its.mmio_write(R.GITS_BASER1.offset, guest.baser1(), 8)
    its.mmio_write(R.GITS_CBASER.offset, guest.cbaser(), 8)
    if enable:
        its.mmio_write(R.GITS_CTLR.offset, 1, 4)
    return guest


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
    lpi_limit = min(1 << tables.intid_bits, its._lpi.limit)
    intids = rng.integers(8192, lpi_limit, num_devices * per, dtype=np.uint64)
    icids = rng.integers(0, num_collections, num_devices * per, dtype=np.uint64)
    tables.load_devices(device_ids, np.full(num_devices, event_bits, np.uint8), itts,
                        np.full(num_devices, per, np.int64), events,
                        (intids << np.uint64(16)) | icids)
    for icid in range(num_collections):
        if icid % 8 != 7:
            tables.map_collection(icid, int(rng.integers(0, its.num_cpus)))
    its._lpi.load_config_many(intids.astype(np.uint32))
    chosen = rng.random(intids.size) < pending_fraction
    cpus = tables.collections_of(icids[chosen].astype(np.uint16))
    mapped = cpus >= 0
    its._lpi.pending_array[cpus[mapped], (intids[chosen][mapped] >> np.uint64(3)).astype(np.intp)] |= (
        np.uint8(1) << (intids[chosen][mapped] & np.uint64(7)).astype(np.uint8))
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
