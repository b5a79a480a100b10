"""Bring an ITS up from byte addresses, as a guest driver does.

`GuestMap` says where a guest put its ITS tables, queue and LPI tables, as
**byte addresses**; `bring_up` programs an `ITS` through MMIO exactly as a
guest driver does (redistributors first, then the ITS tables and queue,
then GITS_CTLR.Enabled).  Register values are built by the register layouts
from those byte addresses (`Register.encode(address=...)`), which check
alignment and range, so a byte address can never be mistaken for the
shifted ``Physical_Address`` field.

>>> from its_core import ITS, GuestMemory, GuestMap, bring_up
>>> its = ITS(GuestMemory(64 << 20), num_cpus=2)
>>> guest = bring_up(its, GuestMap(queue=0x1_0000, device_table=0x10_0000))
>>> its.enabled, hex(guest.queue)
(True, '0x10000')
"""

from __future__ import annotations

from dataclasses import dataclass

from its_core.frontend import registers as R
from its_core.frontend.registers import Cacheability, PageSize, Shareability

__all__ = ["GuestMap", "bring_up", "LPI_CONFIG_DEFAULT"]

#: Config byte a driver writes for every LPI: priority 0xA0, group bit, enabled.
LPI_CONFIG_DEFAULT = 0xA0 | 0x2 | 0x1

_ATTRS = dict(InnerCache=Cacheability.RaWb, OuterCache=Cacheability.SAME_AS_INNER,
              Shareability=Shareability.INNER_SHAREABLE)
_PAGE_BYTES = {PageSize.SIZE_4K: 4 << 10, PageSize.SIZE_16K: 16 << 10,
               PageSize.SIZE_64K: 64 << 10}


@dataclass(frozen=True)
class GuestMap:
    """Guest-physical placement of everything an ITS needs, as byte addresses.

    Every field that is an address is a plain byte address (``0x10_0000``,
    not ``0x10_0000 >> 12``); the register values are derived from them by
    `baser0`, `baser1`, `cbaser`, `propbaser` and `pendbaser`, which refuse
    misaligned or too-wide addresses with a ValueError naming the register.
    The defaults fit a 64 MiB guest with 16 DeviceID bits, 16 INTID bits and
    up to 8 CPUs; ITTs are handed out from `itt_base` by `itt_address`.

    Alignment: the queue, collection table and LPI configuration table 4 KiB;
    the device table and level-2 tables `page_size`; pending tables 64 KiB;
    ITTs 256 bytes.
    """

    queue: int = 0x0001_0000            # command queue
    queue_pages: int = 16               # 4 KiB pages: 64 KiB = 2048 commands
    device_table: int = 0x0010_0000     # flat table, or level-1 table when indirect
    device_table_pages: int = 8         # pages of `page_size`: 8 x 64 KiB = 65536 DTEs
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

    def __post_init__(self) -> None:
        if self.page_size not in _PAGE_BYTES:
            raise ValueError(f"page_size must be a PageSize, got {self.page_size!r}")
        for name in ("queue_pages", "device_table_pages"):
            if not 1 <= getattr(self, name) <= 256:
                raise ValueError(f"{name} must be in 1..256, got {getattr(self, name)}")
        if self.itt_base % 256 or self.itt_stride % 256:
            raise ValueError("itt_base and itt_stride must be multiples of 256 bytes")

    def itt_address(self, index: int) -> int:
        """ITT address of the `index`-th device the guest maps."""
        return self.itt_base + index * self.itt_stride

    @property
    def page_bytes(self) -> int:
        """Bytes per device-table page (`page_size`)."""
        return _PAGE_BYTES[self.page_size]

    def baser0(self) -> int:
        """GITS_BASER0: the device table (flat, or level 1 when `indirect`)."""
        return R.GITS_BASER0.encode(
            address=self.device_table, Valid=1, Indirect=int(self.indirect),
            Type=R.BaserType.DEVICES, Entry_Size=7, Page_Size=self.page_size,
            Size=self.device_table_pages - 1, **_ATTRS)

    def baser1(self) -> int:
        """GITS_BASER1: a one-page collection table."""
        return R.GITS_BASER1.encode(
            address=self.collection_table, Valid=1, Type=R.BaserType.COLLECTIONS,
            Entry_Size=7, Page_Size=self.page_size, Size=0, **_ATTRS)

    def cbaser(self) -> int:
        """GITS_CBASER: the command queue of `queue_pages` 4 KiB pages."""
        return R.GITS_CBASER.encode(address=self.queue, Valid=1, Size=self.queue_pages - 1,
                                    **_ATTRS)

    def propbaser(self, intid_bits: int) -> int:
        """GICR_PROPBASER: the LPI configuration table, `intid_bits` INTID bits."""
        return R.GICR_PROPBASER.encode(address=self.config_table, IDbits=intid_bits - 1,
                                       **_ATTRS)

    def pendbaser(self, cpu: int) -> int:
        """GICR_PENDBASER of `cpu`: its pending table, zeroed by the ITS (PTZ)."""
        return R.GICR_PENDBASER.encode(
            address=self.pending_tables + cpu * self.pending_stride, PTZ=1, **_ATTRS)


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
    bits = intid_bits or its.lpi_state.intid_bits
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


