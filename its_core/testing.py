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
    level2_pages: int = 0               # indirect: how many level-1 entries are valid
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
        for index in range(guest.level2_pages):
            memory.write_u64(guest.device_table + 8 * index,
                             (1 << 63) | (guest.level2_tables + index * guest.page_bytes))
    its.mmio_write(R.GITS_BASER0.offset, guest.baser0(), 8)
    its.mmio_write(R.GITS_BASER1.offset, guest.baser1(), 8)
    its.mmio_write(R.GITS_CBASER.offset, guest.cbaser(), 8)
    if enable:
        its.mmio_write(R.GITS_CTLR.offset, 1, 4)
    return guest
