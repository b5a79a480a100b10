"""Shared helpers for the front-end tests: a guest driver's bring-up, as data.

`make_setup` decides where every table lives and what each register is
programmed with; `program_its` writes those values through MMIO exactly as a
guest driver would (redistributors first, then the ITS registers, then
GITS_CTLR.Enabled), and `program_reference` hands the same values to a
`ReferenceITS`.  `bring_up` is make + program for the common case.

The register values are built from the field layouts of `its_core.registers`
(never bare hex) and carry the read-only fields the ITS reports (BASER Type
and Entry_Size) and KVM's table attributes, so a correct ITS reads back
exactly what was written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from its_core.frontend import registers as R
from its_core.frontend.registers import Cacheability, PageSize, Shareability

# GICR offsets (RD_base frame).
GICR_CTLR = 0x0000
GICR_TYPER = 0x0008
GICR_PROPBASER = 0x0070
GICR_PENDBASER = 0x0078

# ITS offsets.
GITS_CTLR = R.GITS_CTLR.offset
GITS_IIDR = R.GITS_IIDR.offset
GITS_TYPER = R.GITS_TYPER.offset
GITS_CBASER = R.GITS_CBASER.offset
GITS_CWRITER = R.GITS_CWRITER.offset
GITS_CREADR = R.GITS_CREADR.offset
GITS_BASER0 = R.GITS_BASER0.offset
GITS_BASER1 = R.GITS_BASER1.offset
GITS_TRANSLATER = R.GITS_TRANSLATER.offset

PTZ = 1 << 62
CTLR_ENABLED = 1
CTLR_QUIESCENT = 1 << 31
STALLED = 1

# Default guest-physical map (all 64 KiB aligned).
MEM_BYTES = 64 << 20
QUEUE_ADDR = 0x0001_0000
DT_ADDR = 0x0010_0000          # device table (level 1 when indirect)
DT_L2_ADDR = 0x0020_0000       # level-2 device-table pages
CT_ADDR = 0x0030_0000          # collection table
PROP_ADDR = 0x0040_0000        # LPI configuration table (1 MiB: up to 20 INTID bits)
PEND_ADDR = 0x0080_0000        # pending tables, one per CPU
ITT_ADDR = 0x0100_0000         # ITTs from here

_ATTRS = dict(InnerCache=Cacheability.RaWb, OuterCache=Cacheability.SAME_AS_INNER,
              Shareability=Shareability.INNER_SHAREABLE)
PAGE_BYTES = {PageSize.SIZE_4K: 4 << 10, PageSize.SIZE_16K: 16 << 10,
              PageSize.SIZE_64K: 64 << 10, 3: 64 << 10}


def baser_value(table_type: int, addr: int, *, page_size: int = PageSize.SIZE_64K,
                pages: int = 1, indirect: bool = False, valid: bool = True) -> int:
    """A GITS_BASER<n> value as a driver writes it (Type/Entry_Size as reported)."""
    page = PAGE_BYTES[page_size]
    assert addr % page == 0 and addr < 1 << 48
    return R.GITS_BASER_LAYOUT.encode(
        Valid=valid, Indirect=indirect, Type=table_type, Entry_Size=7, Page_Size=page_size,
        Size=pages - 1, Physical_Address=addr >> 12, **_ATTRS)


def cbaser_value(addr: int, pages: int = 1, valid: bool = True) -> int:
    assert addr % 4096 == 0
    return R.GITS_CBASER_LAYOUT.encode(Valid=valid, Size=pages - 1,
                                       Physical_Address=addr >> 12, **_ATTRS)


def propbaser_value(addr: int, idbits: int) -> int:
    assert addr % 4096 == 0
    return R.GICR_PROPBASER_LAYOUT.encode(IDbits=idbits, Physical_Address=addr >> 12, **_ATTRS)


def pendbaser_value(addr: int, ptz: bool = False) -> int:
    assert addr % 0x10000 == 0
    return R.GICR_PENDBASER_LAYOUT.encode(PTZ=ptz, Physical_Address=addr >> 16, **_ATTRS)


def l1_descriptor(level2_addr: int) -> int:
    """A valid level-1 descriptor of an indirect device table."""
    return (1 << 63) | level2_addr


@dataclass
class Setup:
    """Register values and table addresses of one guest bring-up."""

    num_cpus: int
    cbaser: int
    baser0: int
    baser1: int
    propbaser: int
    pendbaser: list[int]
    #: (guest address, 64-bit value) words to store before enabling (level-1 descriptors).
    words: list[tuple[int, int]] = field(default_factory=list)

    @property
    def queue_addr(self) -> int:
        return R.cbaser_address(self.cbaser)

    @property
    def queue_bytes(self) -> int:
        return R.cbaser_queue_bytes(self.cbaser)

    @property
    def queue_slots(self) -> int:
        return self.queue_bytes // 32

    @property
    def dt_addr(self) -> int:
        return R.baser_address(self.baser0)

    @property
    def dt_page(self) -> int:
        return R.baser_page_size(self.baser0)

    @property
    def ct_addr(self) -> int:
        return R.baser_address(self.baser1)

    @property
    def prop_addr(self) -> int:
        return self.propbaser & R.GICR_PROPBASER_LAYOUT["Physical_Address"].mask

    def pend_addr(self, cpu: int) -> int:
        return self.pendbaser[cpu] & R.GICR_PENDBASER_LAYOUT["Physical_Address"].mask

    def dte_addr(self, device_id: int) -> int:
        """Where DeviceID's DTE is (assumes it has a slot)."""
        if not R.GITS_BASER_LAYOUT["Indirect"].extract(self.baser0):
            return self.dt_addr + 8 * device_id
        per_page = self.dt_page // 8
        index = device_id // per_page
        descriptor = dict(self.words)[self.dt_addr + 8 * index]
        level2 = descriptor & ((1 << 52) - 1) & ~(self.dt_page - 1)
        return level2 + 8 * (device_id % per_page)


def make_setup(num_cpus: int, *, intid_bits: int = 16, idbits: int | None = None,
               queue_addr: int = QUEUE_ADDR, queue_pages: int = 16,
               dt_addr: int = DT_ADDR, dt_page: int = PageSize.SIZE_64K, dt_pages: int = 1,
               indirect: bool = False, level2: tuple[int, ...] = (0,),
               dt_l2_addr: int = DT_L2_ADDR,
               ct_addr: int = CT_ADDR, ct_page: int = PageSize.SIZE_64K, ct_pages: int = 1,
               prop_addr: int = PROP_ADDR, pend_addr: int = PEND_ADDR,
               pend_stride: int | None = None, ptz: bool = False) -> Setup:
    """Register values for a bring-up.

    ``idbits`` is GICR_PROPBASER.IDbits (default ``intid_bits - 1``).  With
    ``indirect`` the level-1 entries listed in ``level2`` point to level-2
    pages placed one after the other from ``dt_l2_addr``.
    """
    if idbits is None:
        idbits = intid_bits - 1
    if pend_stride is None:
        pend_stride = max(0x10000, (2 ** intid_bits // 8 + 0xFFFF) & ~0xFFFF)
    setup = Setup(
        num_cpus=num_cpus,
        cbaser=cbaser_value(queue_addr, queue_pages),
        baser0=baser_value(R.BaserType.DEVICES, dt_addr, page_size=dt_page, pages=dt_pages,
                           indirect=indirect),
        baser1=baser_value(R.BaserType.COLLECTIONS, ct_addr, page_size=ct_page, pages=ct_pages),
        propbaser=propbaser_value(prop_addr, idbits),
        pendbaser=[pendbaser_value(pend_addr + cpu * pend_stride, ptz) for cpu in range(num_cpus)],
    )
    if indirect:
        page = PAGE_BYTES[dt_page]
        for n, index in enumerate(level2):
            setup.words.append((dt_addr + 8 * index, l1_descriptor(dt_l2_addr + n * page)))
    return setup


def store_words(mem, setup: Setup) -> None:
    for addr, value in setup.words:
        mem.write_u64(addr, value)


def write64(its, offset: int, value: int) -> None:
    its.mmio_write(offset, value, 8)


def read64(its, offset: int) -> int:
    return its.mmio_read(offset, 8)


def program_redistributors(its, setup: Setup, *, enable_lpis=True) -> None:
    """PROPBASER, PENDBASER and EnableLPIs of every CPU, as a driver does."""
    rd = its.redistributors
    for cpu in range(setup.num_cpus):
        rd.mmio_write(cpu, GICR_PROPBASER, setup.propbaser, 8)
        rd.mmio_write(cpu, GICR_PENDBASER, setup.pendbaser[cpu], 8)
    for cpu in range(setup.num_cpus):
        if enable_lpis is True or (enable_lpis and cpu in enable_lpis):
            rd.mmio_write(cpu, GICR_CTLR, 1, 4)


def program_its(its, setup: Setup, *, enable: bool = True, enable_lpis=True,
                mem=None) -> None:
    """Program the redistributors and the ITS registers; optionally set Enabled.

    ``enable_lpis``: True for every CPU, False for none, or a collection of CPUs.
    ``mem``: the ITS's guest memory, needed only for an indirect device table.
    """
    if setup.words:
        assert mem is not None, "an indirect device table needs its level-1 descriptors"
        store_words(mem, setup)
    program_redistributors(its, setup, enable_lpis=enable_lpis)
    write64(its, GITS_CBASER, setup.cbaser)
    write64(its, GITS_CWRITER, 0)
    write64(its, GITS_BASER0, setup.baser0)
    write64(its, GITS_BASER1, setup.baser1)
    if enable:
        its.mmio_write(GITS_CTLR, CTLR_ENABLED, 4)


def program_reference(ref, setup: Setup, *, enable: bool = True, enable_lpis=True,
                      store: bool = True) -> None:
    """Give a ReferenceITS the same state `program_its` gives an ITS.

    ``store``: write the level-1 descriptors into the reference's memory too
    (False when both models share one GuestMemory).
    """
    if store:
        store_words(ref.mem, setup)
    ref.propbaser = setup.propbaser
    ref.pendbaser = list(setup.pendbaser)
    for cpu in range(setup.num_cpus):
        if enable_lpis is True or (enable_lpis and cpu in enable_lpis):
            ref.enable_lpis(cpu)
    ref.baser0 = setup.baser0
    ref.baser1 = setup.baser1
    ref.enabled = enable


def bring_up(its, mem, num_cpus: int, *, enable: bool = True, enable_lpis=True,
             map_collections: bool = False, **kwargs) -> Setup:
    """make_setup + program_its; optionally MAPC ICID n -> CPU n for every CPU."""
    from its_core.frontend import commands

    setup = make_setup(num_cpus, **kwargs)
    program_its(its, setup, enable=enable, enable_lpis=enable_lpis, mem=mem)
    if map_collections:
        its.submit(*(commands.mapc(cpu, cpu) for cpu in range(num_cpus)))
    return setup
