"""Save and restore in the KVM ITS table ABI rev0 (docs/save-format.md).

Every expectation here is computed independently of `its_core`: table entries
are assembled with integer arithmetic from the bit positions the doc gives
(never with `its_core.abi.entries`), stored as little-endian words with `struct`, and
saved tables are compared byte for byte -- usually over the *whole* guest
memory, so a save that writes one byte too many is caught as surely as one
that writes a wrong value.  Failing saves and restores must leave guest
memory and the ITS exactly as they were.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

import its_core
from its_core import GuestMemory, ITSError, RestoreError, SaveError
from its_core import TranslationStatus as TS
from its_core.frontend import commands as C
from its_core.frontend.registers import PageSize
from its_core.testing import GuestMap, assert_same_state, bring_up, random_state

ITS = its_core.ITS
MEM_BYTES = 64 << 20
NUM_CPUS = 4
LPI = 8192
V = 1 << 63
UNMAPPED = 0xFFFF_FFFF
FORMAT = "kvm-its-rev0"

# Guest-physical map (GuestMap's defaults; every table 64 KiB aligned).
QUEUE = 0x0001_0000
DT = 0x0010_0000            # flat device table (8 x 64 KiB) or level-1 table
L2 = 0x0020_0000            # level-2 pages
CT = 0x0030_0000            # collection table
PROP = 0x0040_0000          # LPI configuration table
PEND = 0x0080_0000          # pending tables, PEND_STRIDE apart
PEND_STRIDE = 0x0001_0000
ITT = 0x0100_0000           # ITTs

# Register offsets.
GITS_CTLR, GITS_CWRITER, GITS_CREADR = 0x0000, 0x0088, 0x0090
GITS_BASER0, GITS_BASER1 = 0x0100, 0x0108
GICR_CTLR, GICR_PROPBASER, GICR_PENDBASER = 0x0000, 0x0070, 0x0078
CONFIG_DEFAULT = 0xA3       # priority 0xA0, group, enabled (what bring_up writes)

ITS_REGISTER_NAMES = ("GITS_IIDR", "GITS_CBASER", "GITS_CREADR", "GITS_CWRITER",
                      *(f"GITS_BASER{n}" for n in range(8)))


# ----------------------------------------------------------------------------------------
# Entries and register values, by hand from docs/save-format.md and the digest.

def dte(next_: int, itt: int, event_bits: int) -> int:
    """V [63], next [62:49], ITT_addr [48:5] = ITT >> 8, Size [4:0] = bits - 1."""
    assert itt % 256 == 0 and 0 <= next_ < 1 << 14 and 1 <= event_bits <= 32
    return V | next_ << 49 | (itt >> 8) << 5 | (event_bits - 1)


def ite(next_: int, intid: int, icid: int) -> int:
    """next [63:48], pINTID [47:16], ICID [15:0]."""
    assert 0 <= next_ < 1 << 16 and 0 <= intid < 1 << 32 and 0 <= icid < 1 << 16
    return next_ << 48 | intid << 16 | icid


def cte(target: int, icid: int) -> int:
    """V [63], RDBase [47:16] (CPU number, 0xFFFFFFFF = unmapped), ICID [15:0]."""
    return V | target << 16 | icid


def l1(page: int) -> int:
    """Level-1 descriptor: V [63], level-2 page address in [51:12]."""
    return V | page


_PAGE_CODE = {4096: 0, 16384: 1, 65536: 2}
DEVICES, COLLECTIONS = 1, 4                      # GITS_BASER.Type


def baser(addr: int, table_type: int, *, page: int = 0x10000, pages: int = 1,
          indirect: bool = False, valid: bool = True) -> int:
    """Valid [63], Indirect [62], Type [58:56], Entry_Size [52:48] = 7,
    Physical_Address [47:12] in place (64 KiB pages: PA[51:48] in [15:12]),
    Page_Size [9:8], Size [7:0] = pages - 1."""
    assert addr % page == 0 and addr < (1 << 52 if page == 0x10000 else 1 << 48)
    high = (addr >> 48) << 12
    return (int(valid) << 63 | int(indirect) << 62 | table_type << 56 | 7 << 48
            | (addr & (2**48 - 1)) | high | _PAGE_CODE[page] << 8 | (pages - 1))


def cbaser(addr: int = QUEUE, pages: int = 16) -> int:
    return V | addr | (pages - 1)


IIDR = 0x4B << 24 | 0x43B                        # ProductID 'K', Implementer Arm, Revision 0


def propbaser(addr: int = PROP, idbits: int = 16) -> int:
    return addr | (idbits - 1)


def pendbaser(cpu: int) -> int:
    return PEND + cpu * PEND_STRIDE


def its_registers(baser0: int, baser1: int, *, iidr: int = IIDR, cbaser_value: int | None = None,
                  creadr: int = 0, cwriter: int = 0) -> dict:
    regs = {"GITS_IIDR": iidr, "GITS_CBASER": cbaser() if cbaser_value is None else cbaser_value,
            "GITS_CREADR": creadr, "GITS_CWRITER": cwriter,
            "GITS_BASER0": baser0, "GITS_BASER1": baser1}
    regs.update({f"GITS_BASER{n}": 0 for n in range(2, 8)})
    return regs


def full_state(baser0: int, baser1: int, *, ctlr: int = 1, num_cpus: int = NUM_CPUS,
               idbits: int = 16, **kwargs) -> dict:
    """A whole `save()` dict built by hand."""
    return {"format": FORMAT, "GITS_CTLR": ctlr, **its_registers(baser0, baser1, **kwargs),
            "GICR_CTLR": [1] * num_cpus,
            "GICR_PROPBASER": [propbaser(PROP, idbits)] * num_cpus,
            "GICR_PENDBASER": [pendbaser(cpu) for cpu in range(num_cpus)]}


# ----------------------------------------------------------------------------------------
# Memory and state helpers.

def put(mem: GuestMemory, addr: int, *words: int) -> None:
    mem.write(addr, struct.pack(f"<{len(words)}Q", *words))


def word(mem: GuestMemory, addr: int) -> int:
    return struct.unpack("<Q", mem.read(addr, 8))[0]


def new_memory(size: int = MEM_BYTES, intid_bits: int = 16) -> GuestMemory:
    """Guest memory with an LPI configuration table (every LPI enabled)."""
    mem = GuestMemory(size)
    mem.fill(PROP, (1 << intid_bits) - LPI, CONFIG_DEFAULT)
    return mem


def set_words(image: np.ndarray, addr: int, *values: int) -> None:
    """Store little-endian words into a uint8 copy of guest memory (base 0)."""
    image[addr:addr + 8 * len(values)] = np.frombuffer(struct.pack(f"<{len(values)}Q", *values),
                                                       np.uint8)


def garbage(rng: np.random.Generator, nbytes: int) -> bytes:
    """Random bytes with every 8-byte word's V bit set (looks like valid entries)."""
    data = rng.integers(0, 256, nbytes, dtype=np.uint8)
    data[7::8] |= 0x80
    return data.tobytes()


def outcome(its, device_id: int, event_id: int):
    """(intid, cpu) of a translation, or its failure status."""
    intids, cpus, statuses = its.translate_batch(np.array([device_id], np.uint32),
                                                 np.array([event_id], np.uint32))
    status = TS(int(statuses[0]))
    return (int(intids[0]), int(cpus[0])) if status == TS.OK else status


def devices_of(its) -> list[tuple[int, int, int, int]]:
    """(DeviceID, EventID bits, ITT address, events) of every mapped device."""
    return [(int(r["device_id"]), int(r["event_bits"]), int(r["itt_addr"]), int(r["num_events"]))
            for r in its.tables.devices()]


def events(its, device_id: int) -> list[tuple[int, int, int]]:
    """(EventID, INTID, ICID) of a device's events."""
    return [tuple(int(x) for x in row) for row in zip(*its.tables.events_of(device_id))]


def collections(its) -> dict[int, int]:
    icids, cpus = its.tables.collection_table()
    return dict(zip(icids.tolist(), cpus.tolist()))


def capture(its) -> dict:
    """Everything observable about an ITS (tables, LPI side, registers)."""
    rd = its.redistributors
    return {
        "snapshot": its.tables.snapshot(),
        "events": [a.tolist() for a in its.tables.export_events()],
        "devices": devices_of(its),
        "collections": [a.tolist() for a in its.tables.collection_table()],
        "referenced": its.tables.referenced_icids().tolist(),
        "pending": [its.pending(cpu).tolist() for cpu in range(its.num_cpus)],
        "lpis": [rd.lpis_enabled(cpu) for cpu in range(its.num_cpus)],
        "gicr": [(rd.mmio_read(cpu, GICR_CTLR, 4), rd.mmio_read(cpu, GICR_PROPBASER, 8),
                  rd.mmio_read(cpu, GICR_PENDBASER, 8)) for cpu in range(its.num_cpus)],
        "registers": its.save_registers(),
        "enabled": its.enabled,
        "stalled": its.stalled,
        "config": its._lpi.config_array.tobytes(),
        "layout": its.layout,
    }


def enable(its) -> None:
    its.mmio_write(GITS_CTLR, 1, 4)
    assert its.enabled


def disable(its) -> None:
    its.mmio_write(GITS_CTLR, 0, 4)
    assert not its.enabled


def errors(its) -> list[str]:
    return [e.name for e in its.errors]


# ========================================================================================
# Hand-built golden images, restored.

def write_golden_flat(mem: GuestMemory) -> None:
    """A flat image exercising every scanning rule.

    device 3: 4 EventID bits, ITT at ITT
        EventID 0 -> LPI 8192, collection 0, next 1
        EventID 1: pINTID 0 (invalid) with garbage next/ICID: steps by one
        EventID 2 -> LPI 9000, collection 2 (named, unmapped), next 0 = last
        EventID 5: a valid-looking ITE after the last one: never read
    slot 4: a valid DTE that DTE 3's next jumps over: never read
    slot 5: V = 0 with garbage in every other field (DTE 3's next lands here)
    device 6: 1 EventID bit, ITT at ITT + 0x100
        EventID 0: invalid with garbage, EventID 1 -> LPI 8193, collection 1, last
    DTE 6 has next 0: the scan ends; slot 9 holds a valid DTE that is never read
    collections: 0 -> CPU 1, 2 named-unmapped, 1 -> CPU 3, terminator, then a
    valid-looking CTE for ICID 9 that is never read.
    """
    put(mem, DT + 3 * 8, dte(2, ITT, 4))
    put(mem, DT + 4 * 8, dte(0, ITT + 0x300, 1))        # jumped over by DTE 3's next
    put(mem, DT + 5 * 8, dte(1000, ITT + 0x400, 7) & ~V)
    put(mem, DT + 6 * 8, dte(0, ITT + 0x100, 1))
    put(mem, DT + 9 * 8, dte(0, ITT + 0x200, 2))
    put(mem, ITT, ite(1, 8192, 0), ite(7, 0, 0x33), ite(0, 9000, 2))
    put(mem, ITT + 5 * 8, ite(0, 8195, 0))
    put(mem, ITT + 0x100, ite(5, 0, 7), ite(0, 8193, 1))
    put(mem, ITT + 0x200, ite(0, 8194, 0))
    put(mem, CT, cte(1, 0), cte(UNMAPPED, 2), cte(3, 1), 0, cte(2, 9))


GOLDEN_FLAT_BASER0 = baser(DT, DEVICES, pages=8)
GOLDEN_CT_BASER1 = baser(CT, COLLECTIONS)


def check_golden_flat(its) -> None:
    assert devices_of(its) == [(3, 4, ITT, 2), (6, 1, ITT + 0x100, 1)]
    assert events(its, 3) == [(0, 8192, 0), (2, 9000, 2)]
    assert events(its, 6) == [(1, 8193, 1)]
    assert events(its, 9) == []
    assert collections(its) == {0: 1, 1: 3}
    assert outcome(its, 3, 0) == (8192, 1)
    assert outcome(its, 3, 1) == TS.NO_MAPPING
    assert outcome(its, 3, 2) == TS.NO_COLLECTION
    assert outcome(its, 3, 5) == TS.NO_MAPPING
    assert outcome(its, 3, 16) == TS.EVENT_OUT_OF_RANGE
    assert outcome(its, 6, 0) == TS.NO_MAPPING
    assert outcome(its, 6, 1) == (8193, 3)
    for absent in (0, 4, 5, 9):
        assert outcome(its, absent, 0) == TS.NO_DEVICE


def test_golden_flat_restore(layout):
    mem = new_memory()
    write_golden_flat(mem)
    its = ITS(mem, NUM_CPUS, layout)
    its.restore(full_state(GOLDEN_FLAT_BASER0, GOLDEN_CT_BASER1))
    assert its.enabled
    check_golden_flat(its)
    # Collection 2 is known but unmapped: a MAPC makes its event work.
    assert its.msi(3, 2) == TS.NO_COLLECTION
    its.submit(C.mapc(2, 0))
    assert errors(its) == []
    assert outcome(its, 3, 2) == (9000, 0)
    assert its.msi(3, 2) == TS.OK
    assert its.pending(0).tolist() == [9000]
    assert its.msi(6, 1) == TS.OK
    assert its.pending(3).tolist() == [8193]


def test_golden_flat_restore_by_parts(layout):
    """restore_registers + restore_tables + GITS_CTLR, as userspace does it."""
    mem = new_memory()
    its = ITS(mem, NUM_CPUS, layout)
    bring_up(its, GuestMap(), enable=False)
    write_golden_flat(mem)
    regs = its_registers(GOLDEN_FLAT_BASER0, GOLDEN_CT_BASER1)
    its.restore_registers(regs)
    for name in ITS_REGISTER_NAMES:
        if name not in ("GITS_CREADR", "GITS_CWRITER"):
            assert its.register(name) == regs[name], name
    its.restore_tables()
    assert not its.enabled
    check_golden_flat(its)
    enable(its)
    assert its.msi(6, 1) == TS.OK and its.pending(3).tolist() == [8193]
    # The restored device table (8 x 64 KiB = 65536 slots) is the one MAPD uses.
    its.submit(C.mapd(65535, ITT + 0x900, 2))
    assert errors(its) == []
    assert its.tables.lookup_device(65535) is not None


def test_golden_flat_resave_is_canonical(layout):
    """Restoring the golden image and saving it again gives the canonical
    image: every stale or unreachable entry of the device table and of the
    saved ITTs reads zero, `next` values are recomputed."""
    mem = new_memory()
    write_golden_flat(mem)
    its = ITS(mem, NUM_CPUS, layout)
    its.restore(full_state(GOLDEN_FLAT_BASER0, GOLDEN_CT_BASER1))
    before = mem.array.copy()
    its.save_tables()
    expected = before.copy()
    expected[DT:DT + 8 * 0x10000] = 0
    set_words(expected, DT + 3 * 8, dte(3, ITT, 4))
    set_words(expected, DT + 6 * 8, dte(0, ITT + 0x100, 1))
    expected[ITT:ITT + 16 * 8] = 0
    set_words(expected, ITT, ite(2, 8192, 0), 0, ite(0, 9000, 2))
    expected[ITT + 0x100:ITT + 0x100 + 2 * 8] = 0
    set_words(expected, ITT + 0x100, 0, ite(0, 8193, 1))
    set_words(expected, CT, cte(1, 0), cte(3, 1), cte(UNMAPPED, 2), 0)
    assert np.array_equal(mem.array, expected)


def test_golden_flat_mapd_uses_restored_table(layout):
    mem = new_memory()
    write_golden_flat(mem)
    its = ITS(mem, NUM_CPUS, layout)
    state = full_state(baser(DT, DEVICES, pages=1), GOLDEN_CT_BASER1)    # 8192 slots
    its.restore(state)
    check_golden_flat(its)
    its.submit(C.mapd(8191, ITT + 0x800, 2), C.mapd(8192, ITT + 0x900, 2))
    assert errors(its) == ["E_ITS_MAPD_DEVICE_OOR"]
    assert [d[0] for d in devices_of(its)] == [3, 6, 8191]


def test_restored_ites_load_their_config_byte(layout):
    """A restored ITE loads its LPI's config byte (as MAPTI does): an LPI
    whose config byte says 'disabled' is not acknowledged."""
    mem = new_memory()
    its = ITS(mem, NUM_CPUS, layout)
    bring_up(its, GuestMap(), enable=False)     # config cache: every LPI enabled
    write_golden_flat(mem)
    mem.write(PROP + (8192 - LPI), bytes([0x40]))   # LPI 8192: priority 0x40, disabled
    its.restore_registers(its_registers(GOLDEN_FLAT_BASER0, GOLDEN_CT_BASER1))
    its.restore_tables()
    enable(its)
    assert its.msi(3, 0) == TS.OK
    assert its.pending(1).tolist() == [8192]
    assert its.acknowledge(1) is None           # disabled by the reloaded config byte
    assert its.msi(6, 1) == TS.OK
    assert its.acknowledge(3) == 8193


def test_restore_does_not_consult_propbaser_for_pintid(layout):
    """pINTID is checked against 2**intid_bits, not the PROPBASER limit."""
    mem = new_memory()
    put(mem, DT, dte(0, ITT, 1))
    put(mem, ITT, ite(0, 20000, 0))
    put(mem, CT, cte(2, 0))
    its = ITS(mem, NUM_CPUS, layout)
    its.restore(full_state(baser(DT, DEVICES), GOLDEN_CT_BASER1, idbits=14))   # limit 16384
    assert events(its, 0) == [(0, 20000, 0)]
    assert outcome(its, 0, 0) == (20000, 2)
    assert its.msi(0, 0) == TS.INTID_OUT_OF_RANGE


@pytest.mark.parametrize("page", [4096, 16384, 65536])
def test_golden_two_level_restore(layout, page):
    """Level-1 descriptors and level-2 pages of 4, 16 and 64 KiB."""
    pp = page // 8                                   # DeviceIDs per level-2 page
    mem = new_memory()
    p1, p3, p4, p0 = (L2 + k * page for k in range(4))
    low = (page - 1) & ~0x800                        # bits below the page size: ignored
    put(mem, DT, l1(p0) & ~V, l1(p1), 0, l1(p3) | low, l1(p4))
    for slot in range(0, pp, max(1, pp // 64)):      # page of an invalid descriptor: ignored
        put(mem, p0 + 8 * slot, dte(0, ITT + 0x300, 1))
    # page 1: DTE 2 -> next 5 lands on a V=0 slot (garbage) -> steps to 8;
    # DTE 8's next leaves the page: the scan goes on at descriptor 3, from its first ID.
    put(mem, p1 + 2 * 8, dte(5, ITT, 2))
    put(mem, p1 + 7 * 8, dte(3, ITT + 0x500, 9) & ~V)
    put(mem, p1 + 8 * 8, dte(pp, ITT + 0x100, 3))
    # page 3: slot 0 empty, slot 1 the last device (next 0 ends everything);
    # slot 3 and page 4 hold valid DTEs that are never read.
    put(mem, p3 + 1 * 8, dte(0, ITT + 0x200, 1))
    put(mem, p3 + 3 * 8, dte(0, ITT + 0x300, 1))
    put(mem, p4, dte(0, ITT + 0x300, 1))
    put(mem, ITT + 3 * 8, ite(0, 8300, 0))
    put(mem, ITT + 0x100, ite(7, 8301, 1))
    put(mem, ITT + 0x100 + 3 * 8, ite(0, 8309, 1))     # jumped over: never read
    put(mem, ITT + 0x100 + 7 * 8, ite(0, 8302, 1))
    put(mem, ITT + 0x200 + 8, ite(0, 8303, 0))
    put(mem, ITT + 0x300, ite(0, 8304, 0))
    put(mem, CT, cte(0, 0), cte(2, 1), 0)
    its = ITS(mem, NUM_CPUS, layout)
    its.restore(full_state(baser(DT, DEVICES, page=page, indirect=True), GOLDEN_CT_BASER1))
    assert devices_of(its) == [(pp + 2, 2, ITT, 1), (pp + 8, 3, ITT + 0x100, 2),
                               (3 * pp + 1, 1, ITT + 0x200, 1)]
    assert events(its, pp + 2) == [(3, 8300, 0)]
    assert events(its, pp + 8) == [(0, 8301, 1), (7, 8302, 1)]
    assert events(its, 3 * pp + 1) == [(1, 8303, 0)]
    assert outcome(its, pp + 8, 7) == (8302, 2)
    assert outcome(its, 3 * pp + 3, 0) == TS.NO_DEVICE
    assert outcome(its, 4 * pp, 0) == TS.NO_DEVICE
    assert outcome(its, 0, 0) == TS.NO_DEVICE
    # The restored BASER0 drives MAPD: descriptor 3 is valid, 2 is not.
    its.submit(C.mapd(3 * pp + 9, ITT + 0x400, 1), C.mapd(2 * pp, ITT + 0x400, 1))
    assert errors(its) == ["E_ITS_MAPD_DEVICE_OOR"]
    assert its.tables.lookup_device(3 * pp + 9) is not None
    # Saving again: every valid level-2 page is zeroed and rewritten; the page of
    # the invalid descriptor and the level-1 table are not touched.
    before = mem.array.copy()
    its.save_tables()
    expected = before.copy()
    for page_addr in (p1, p3, p4):
        expected[page_addr:page_addr + page] = 0
    set_words(expected, p1 + 2 * 8, dte(6, ITT, 2))
    set_words(expected, p1 + 8 * 8, dte(2 * pp - 7, ITT + 0x100, 3))
    set_words(expected, p3 + 1 * 8, dte(8, ITT + 0x200, 1))
    set_words(expected, p3 + 9 * 8, dte(0, ITT + 0x400, 1))
    expected[ITT:ITT + 0x20] = 0
    set_words(expected, ITT + 3 * 8, ite(0, 8300, 0))
    expected[ITT + 0x100:ITT + 0x140] = 0
    set_words(expected, ITT + 0x100, ite(7, 8301, 1))
    set_words(expected, ITT + 0x100 + 7 * 8, ite(0, 8302, 1))
    expected[ITT + 0x200:ITT + 0x210] = 0
    set_words(expected, ITT + 0x208, ite(0, 8303, 0))
    expected[ITT + 0x400:ITT + 0x410] = 0
    set_words(expected, CT, cte(0, 0), cte(2, 1), 0)
    assert np.array_equal(mem.array, expected)


def test_golden_dte_gap_over_next_cap(layout):
    """Devices 20000 IDs apart: DTE 1 has next 16383, the scan steps through
    zero slots one by one to device 20001."""
    mem = new_memory()
    put(mem, DT + 1 * 8, dte(16383, ITT, 2))
    put(mem, DT + 20001 * 8, dte(0, ITT + 0x100, 3))
    put(mem, ITT + 8, ite(0, 8200, 0))
    put(mem, ITT + 0x100 + 6 * 8, ite(0, 8201, 0))
    put(mem, CT, cte(3, 0), 0)
    its = ITS(mem, NUM_CPUS, layout)
    its.restore(full_state(GOLDEN_FLAT_BASER0, GOLDEN_CT_BASER1))
    assert devices_of(its) == [(1, 2, ITT, 1), (20001, 3, ITT + 0x100, 1)]
    assert outcome(its, 20001, 6) == (8201, 3)
    assert outcome(its, 1, 1) == (8200, 3)


def test_saved_dte_gap_over_next_cap(layout):
    mem = new_memory()
    its = ITS(mem, NUM_CPUS, layout)
    bring_up(its)
    mem.write(DT, garbage(np.random.default_rng(1), 8 * 0x10000))
    its.submit(C.mapd(1, ITT, 2), C.mapd(20001, ITT + 0x100, 3), C.mapc(0, 3),
               C.mapti(1, 1, 8200, 0), C.mapti(20001, 6, 8201, 0))
    assert errors(its) == []
    its.save_tables()
    table = np.frombuffer(mem.read(DT, 8 * 0x10000), "<u8")
    expected = np.zeros(65536, np.uint64)
    expected[1] = dte(16383, ITT, 2)
    expected[20001] = dte(0, ITT + 0x100, 3)
    assert np.array_equal(table, expected)
    other = ITS(GuestMemory(np.array(mem.array)), NUM_CPUS, "hash" if layout != "hash" else "flat")
    other.restore(its.save())
    assert_same_state(its, other)


@pytest.mark.parametrize("event_bits", [17, 18])
def test_golden_ite_gap_over_next_cap(layout, event_bits):
    """An ITE gap over 65535 in a device with >= 17 EventID bits."""
    mem = new_memory()
    put(mem, DT + 4 * 8, dte(0, ITT, event_bits))
    put(mem, ITT + 5 * 8, ite(65535, 8200, 1))
    put(mem, ITT + 70005 * 8, ite(0, 8201, 1))
    put(mem, CT, cte(2, 1), 0)
    its = ITS(mem, NUM_CPUS, layout, event_bits=event_bits)
    its.restore(full_state(baser(DT, DEVICES), GOLDEN_CT_BASER1))
    assert devices_of(its) == [(4, event_bits, ITT, 2)]
    assert events(its, 4) == [(5, 8200, 1), (70005, 8201, 1)]
    assert outcome(its, 4, 65540) == TS.NO_MAPPING


def _ite_gap_state(its, dense: bool) -> list[int]:
    """Device 4 (17 EventID bits) with a gap over 65535 between mapped events.
    dense: 32768 events first (a dense slab in the core), else two (sparse)."""
    event_ids = [5, 70005]
    if dense:
        event_ids = list(range(0, 32768 * 2, 2))[:32767] + [32766 + 67000]
    ids = np.array(event_ids, np.uint32)
    its.tables.map_events(np.full(ids.size, 4, np.uint32), ids,
                          (8192 + ids % 1000).astype(np.uint32), np.ones(ids.size, np.uint16))
    return event_ids


@pytest.mark.parametrize("dense", [False, True], ids=["sparse", "dense"])
def test_saved_ite_gap_over_next_cap(layout, dense):
    mem = new_memory()
    its = ITS(mem, NUM_CPUS, layout, event_bits=17)
    bring_up(its)
    its.submit(C.mapd(4, ITT, 17), C.mapc(1, 2))
    mem.write(ITT, garbage(np.random.default_rng(2), 8 << 17))
    mem.write(ITT + (8 << 17), b"\xEE" * 64)
    event_ids = _ite_gap_state(its, dense)
    assert errors(its) == []
    its.save_tables()
    itt = np.frombuffer(mem.read(ITT, 8 << 17), "<u8")
    expected = np.zeros(1 << 17, np.uint64)
    for here, there in zip(event_ids, event_ids[1:] + [None]):
        step = 0 if there is None else min(there - here, 65535)
        expected[here] = ite(step, 8192 + here % 1000, 1)
    assert np.array_equal(itt, expected)
    assert mem.read(ITT + (8 << 17), 64) == b"\xEE" * 64          # nothing past the ITT
    other = ITS(GuestMemory(np.array(mem.array)), NUM_CPUS, layout, event_bits=17)
    other.restore(its.save())
    assert_same_state(its, other)
    assert outcome(other, 4, event_ids[-1]) == (8192 + event_ids[-1] % 1000, 2)


def test_golden_full_collection_table(layout):
    """512 CTEs fill a 4 KiB collection table: no terminator; the scan stops
    at the end of the table (a valid-looking CTE just after it is not read)."""
    mem = new_memory()
    order = np.random.default_rng(3).permutation(512).tolist()
    put(mem, CT, *[cte(icid % NUM_CPUS, icid) for icid in order])
    put(mem, CT + 4096, cte(1, 600))
    put(mem, DT, dte(0, ITT, 1))
    put(mem, ITT, ite(1, 8192, 511), ite(0, 8193, 600 % 512))
    its = ITS(mem, NUM_CPUS, layout)
    its.restore(full_state(baser(DT, DEVICES), baser(CT, COLLECTIONS, page=4096)))
    assert collections(its) == {icid: icid % NUM_CPUS for icid in range(512)}
    assert outcome(its, 0, 0) == (8192, 511 % NUM_CPUS)
    assert its.tables.collection_cpu(600) is None


def test_saved_full_collection_table(layout):
    mem = new_memory()
    its = ITS(mem, NUM_CPUS, layout)
    bring_up(its, enable=False)
    its.mmio_write(GITS_BASER1, baser(CT, COLLECTIONS, page=4096), 8)
    enable(its)
    mem.write(CT, garbage(np.random.default_rng(4), 4096 + 64))
    its.submit(*[C.mapc(icid, (icid * 7) % NUM_CPUS) for icid in reversed(range(512))],
               C.mapc(512, 0))
    assert errors(its) == ["E_ITS_MAPC_COLLECTION_OOR"]
    after_table = mem.read(CT + 4096, 64)
    its.save_tables()
    table = np.frombuffer(mem.read(CT, 4096), "<u8")
    assert table.tolist() == [cte((icid * 7) % NUM_CPUS, icid) for icid in range(512)]
    assert mem.read(CT + 4096, 64) == after_table                   # no terminator
    other = ITS(GuestMemory(np.array(mem.array)), NUM_CPUS, layout)
    other.restore(its.save())
    assert_same_state(its, other)


def test_unmapped_collection_round_trip(layout):
    """A collection named by events but unmapped is saved with target
    0xFFFFFFFF; restored, its events give NO_COLLECTION until a MAPC."""
    mem = new_memory()
    its = ITS(mem, NUM_CPUS, layout)
    bring_up(its)
    its.submit(C.mapd(1, ITT, 3), C.mapc(4, 1), C.mapti(1, 2, 8300, 4), C.mapti(1, 3, 8301, 6),
               C.mapc(4, 0, valid=False))
    assert errors(its) == []
    state = its.save()
    assert [word(mem, CT + 8 * k) for k in range(3)] == [cte(UNMAPPED, 4), cte(UNMAPPED, 6), 0]
    other = ITS(GuestMemory(np.array(mem.array)), NUM_CPUS, layout)
    other.restore(state)
    assert collections(other) == {}
    assert outcome(other, 1, 2) == TS.NO_COLLECTION
    assert other.msi(1, 3) == TS.NO_COLLECTION
    other.submit(C.mapc(6, 2))
    assert outcome(other, 1, 3) == (8301, 2)
    assert other.msi(1, 3) == TS.OK and other.pending(2).tolist() == [8301]


# ========================================================================================
# Saves compared byte for byte.

def worked_example(layout):
    """docs/save-format.md's worked example.  The doc does not say which event
    names collection 5; here it is device 2's EventID 1 (LPI 8199)."""
    mem = GuestMemory(MEM_BYTES)
    its = ITS(mem, NUM_CPUS, layout)
    bring_up(its)
    its.submit(C.mapd(2, 0x1000200, 2), C.mapd(7, 0x1000000, 5), C.mapc(1, 2), C.mapc(3, 1),
               C.mapti(7, 3, 8197, 1), C.mapti(7, 9, 8198, 3), C.mapti(2, 1, 8199, 5))
    assert errors(its) == []
    return mem, its


def test_worked_example_byte_for_byte(layout):
    mem, its = worked_example(layout)
    before = mem.array.copy()
    its.save_tables()
    table = {0x100010: 0x800A000000200041, 0x100038: 0x8000000000200004,
             0x1000018: 0x0006000020050001, 0x1000048: 0x0000000020060003,
             CT + 0: 0x8000000000020001, CT + 8: 0x8000000000010003,
             CT + 16: 0x8000FFFFFFFF0005, CT + 24: 0}
    for addr, value in table.items():
        assert word(mem, addr) == value, hex(addr)
    # ... and nothing else but zeroing: the whole flat table, both whole ITTs.
    expected = before.copy()
    expected[DT:DT + 8 * 0x10000] = 0
    expected[0x1000000:0x1000000 + 32 * 8] = 0
    expected[0x1000200:0x1000200 + 4 * 8] = 0
    set_words(expected, 0x1000208, ite(0, 8199, 5))
    for addr, value in table.items():
        set_words(expected, addr, value)
    assert np.array_equal(mem.array, expected)


def test_worked_example_entries_by_formula():
    """The doc's table values agree with the bit positions it states."""
    assert dte(5, 0x1000200, 2) == 0x800A000000200041
    assert dte(0, 0x1000000, 5) == 0x8000000000200004
    assert ite(6, 8197, 1) == 0x0006000020050001
    assert ite(0, 8198, 3) == 0x0000000020060003
    assert cte(2, 1) == 0x8000000000020001
    assert cte(UNMAPPED, 5) == 0x8000FFFFFFFF0005
    # digest 7.2 examples
    assert dte(3, 0x40000, 5) == 0x8006000000008004
    assert ite(2, 8192, 1) == 0x0002000020000001
    assert cte(2, 5) == 0x8000000000020005


def test_save_twice_is_identical(layout):
    mem, its = worked_example(layout)
    its.save()
    first = mem.array.copy()
    its.save()
    assert np.array_equal(mem.array, first)


def test_save_zeroes_stale_garbage(layout):
    """Every slot of the flat table that holds no saved device, and every
    slot of each saved ITT that holds no event, reads zero after saving;
    bytes outside those are untouched."""
    rng = np.random.default_rng(5)
    mem = GuestMemory(MEM_BYTES)
    its = ITS(mem, NUM_CPUS, layout)
    bring_up(its)
    mem.write(DT, garbage(rng, 8 * 0x10000 + 256))        # also 256 bytes past the table
    mem.write(ITT, garbage(rng, 0x1000))
    its.submit(
        C.mapc(0, 1), C.mapc(1, 2),
        C.mapd(10, ITT, 4), C.mapti(10, 1, 8300, 0), C.mapti(10, 9, 8301, 1),
        C.mapti(10, 15, 8302, 0), C.discard(10, 9),
        C.mapd(11, ITT + 0x100, 2),                          # no events
        C.mapd(12, ITT + 0x200, 6), C.mapti(12, 0, 8303, 0), C.mapti(12, 63, 8304, 0),
        C.mapd(12, ITT + 0x200, 3),                          # remapped: events dropped
        C.mapti(12, 7, 8305, 1),
        C.mapd(13, ITT + 0x400, 4), C.mapti(13, 2, 8306, 0),
        C.mapd(13, ITT + 0x400, 4, valid=False),             # unmapped
    )
    assert errors(its) == []
    before = mem.array.copy()
    its.save_tables()
    expected = before.copy()
    expected[DT:DT + 8 * 0x10000] = 0
    set_words(expected, DT + 10 * 8, dte(1, ITT, 4), dte(1, ITT + 0x100, 2), dte(0, ITT + 0x200, 3))
    expected[ITT:ITT + 16 * 8] = 0
    set_words(expected, ITT + 1 * 8, ite(14, 8300, 0))
    set_words(expected, ITT + 15 * 8, ite(0, 8302, 0))
    expected[ITT + 0x100:ITT + 0x100 + 4 * 8] = 0
    expected[ITT + 0x200:ITT + 0x200 + 8 * 8] = 0           # the 3-bit ITT only
    set_words(expected, ITT + 0x200 + 7 * 8, ite(0, 8305, 1))
    set_words(expected, CT, cte(1, 0), cte(2, 1), 0)
    assert np.array_equal(mem.array, expected)
    # and the garbage left around does not come back
    other = ITS(GuestMemory(np.array(mem.array)), NUM_CPUS, layout)
    other.restore(its.save())
    assert_same_state(its, other)
    assert devices_of(other) == [(10, 4, ITT, 2), (11, 2, ITT + 0x100, 0), (12, 3, ITT + 0x200, 1)]


@pytest.mark.parametrize("page_size", [PageSize.SIZE_4K, PageSize.SIZE_64K])
def test_save_two_level_zeroes_valid_pages(layout, page_size):
    rng = np.random.default_rng(6)
    page = {PageSize.SIZE_4K: 4096, PageSize.SIZE_64K: 65536}[page_size]
    pp = page // 8
    guest = GuestMap(indirect=True, page_size=page_size, level2_pages=3, device_table_pages=1)
    mem = GuestMemory(MEM_BYTES)
    mem.write(L2, garbage(rng, 6 * page))
    its = ITS(mem, NUM_CPUS, layout)
    bring_up(its, guest)
    put(mem, DT + 4 * 8, l1(L2 + 4 * page) & ~V)              # invalid: its page is left alone
    its.submit(C.mapc(0, 3), C.mapd(5, ITT, 1), C.mapd(2 * pp + 1, ITT + 0x100, 2),
               C.mapti(5, 1, 9000, 0), C.mapd(4 * pp, ITT + 0x200, 1))
    assert errors(its) == ["E_ITS_MAPD_DEVICE_OOR"]
    before = mem.array.copy()
    its.save_tables()
    expected = before.copy()
    expected[L2:L2 + 3 * page] = 0
    set_words(expected, L2 + 5 * 8, dte(2 * pp + 1 - 5, ITT, 1))
    set_words(expected, L2 + 2 * page + 8, dte(0, ITT + 0x100, 2))
    expected[ITT:ITT + 16] = 0
    set_words(expected, ITT + 8, ite(0, 9000, 0))
    expected[ITT + 0x100:ITT + 0x120] = 0
    set_words(expected, CT, cte(3, 0), 0)
    assert np.array_equal(mem.array, expected)


def test_level2_pages_zeroed_without_devices(layout):
    rng = np.random.default_rng(7)
    guest = GuestMap(indirect=True, level2_pages=2, device_table_pages=1)
    mem = GuestMemory(MEM_BYTES)
    mem.write(L2, garbage(rng, 3 * 0x10000))
    its = ITS(mem, NUM_CPUS, layout)
    bring_up(its, guest)
    before = mem.array.copy()
    its.save_tables()
    expected = before.copy()
    expected[L2:L2 + 2 * 0x10000] = 0
    set_words(expected, CT, 0)
    assert np.array_equal(mem.array, expected)


def test_collections_in_icid_order_then_terminator(layout):
    mem = GuestMemory(MEM_BYTES)
    its = ITS(mem, NUM_CPUS, layout)
    bring_up(its)
    mem.write(CT, b"\xFF" * 128)
    its.submit(C.mapc(9, 2), C.mapc(3, 1), C.mapc(7, 0), C.mapc(1, 3), C.mapd(0, ITT, 3),
               C.mapti(0, 0, 8192, 5), C.mapti(0, 1, 8193, 3), C.mapti(0, 2, 8194, 7),
               C.mapc(7, 0, valid=False))
    assert errors(its) == []
    its.save_tables()
    assert [word(mem, CT + 8 * k) for k in range(7)] == [
        cte(3, 1), cte(1, 3), cte(UNMAPPED, 5), cte(UNMAPPED, 7), cte(2, 9), 0, 2**64 - 1]


def test_save_without_anything_writes_terminator_only(layout):
    mem = GuestMemory(MEM_BYTES)
    its = ITS(mem, NUM_CPUS, layout)
    bring_up(its)
    mem.write(CT, b"\xFF" * 16)
    before = mem.array.copy()
    its.save_tables()
    expected = before.copy()
    expected[DT:DT + 8 * 0x10000] = 0
    set_words(expected, CT, 0)
    assert np.array_equal(mem.array, expected)


def test_save_returns_register_dict(layout):
    mem, its = worked_example(layout)
    state = its.save()
    assert state["format"] == FORMAT
    assert json.loads(json.dumps(state)) == state
    rd = its.redistributors
    for name in ("GITS_CTLR", *ITS_REGISTER_NAMES):
        assert state[name] == its.register(name), name
    assert state["GITS_BASER0"] == GuestMap().baser0()
    assert state["GITS_BASER1"] == GuestMap().baser1()
    assert state["GITS_IIDR"] & 0xF000 == 0                  # Revision 0
    assert state["GICR_CTLR"] == [1] * NUM_CPUS
    assert state["GICR_PROPBASER"] == [rd.mmio_read(c, GICR_PROPBASER, 8) for c in range(NUM_CPUS)]
    assert state["GICR_PENDBASER"] == [rd.mmio_read(c, GICR_PENDBASER, 8) for c in range(NUM_CPUS)]
    assert [p & ~0xFFFF for p in state["GICR_PENDBASER"]] == [pendbaser(c) for c in range(NUM_CPUS)]


# ========================================================================================
# SaveError: checks first, nothing written.

def assert_save_refused(its, table: str, device_or_id=None, field: str | None = None,
                        whole_save: bool = True) -> SaveError:
    mem = its.memory
    before, state = mem.array.copy(), capture(its)
    calls = (its.save_tables, its.save) if whole_save else (its.save_tables,)
    for call in calls:
        with pytest.raises(SaveError) as info:
            call()
        error = info.value
        assert error.table == table, error
        if device_or_id is not None:
            assert error.id == device_or_id, error
        if field is not None:
            assert error.field == field, error
        assert np.array_equal(mem.array, before), "memory changed by a refused save"
        assert capture(its) == state
    return error


def test_save_error_device_beyond_flat_table(layout):
    mem = GuestMemory(MEM_BYTES)
    its = ITS(mem, NUM_CPUS, layout)
    bring_up(its, GuestMap(device_table_pages=1))            # 8192 slots
    mem.write(DT, b"\xAB" * 0x10000)
    its.submit(C.mapd(5, ITT, 2), C.mapc(0, 0), C.mapti(5, 1, 8192, 0))
    its.tables.map_device(9000, 2, ITT + 0x100)
    assert_save_refused(its, "device", 9000, "slot")


def test_save_error_device_without_level1_descriptor(layout):
    mem = GuestMemory(MEM_BYTES)
    its = ITS(mem, NUM_CPUS, layout)
    bring_up(its, GuestMap(indirect=True, level2_pages=2, device_table_pages=1))
    its.submit(C.mapd(3, ITT, 2), C.mapd(8192 + 4, ITT + 0x100, 2))
    assert errors(its) == []
    put(mem, DT + 8, 0)                                      # the guest drops descriptor 1
    assert_save_refused(its, "device", 8196, "slot")


def test_save_error_device_mapped_beyond_descriptors(layout):
    mem = GuestMemory(MEM_BYTES)
    its = ITS(mem, NUM_CPUS, layout)
    bring_up(its, GuestMap(indirect=True, level2_pages=1, device_table_pages=1))
    its.submit(C.mapd(3, ITT, 2))
    its.tables.map_device(3 * 8192 + 1, 2, ITT + 0x100)
    assert_save_refused(its, "device", 3 * 8192 + 1, "slot")


def test_save_error_itt_outside_memory(layout):
    mem = GuestMemory(MEM_BYTES)
    its = ITS(mem, NUM_CPUS, layout)
    bring_up(its)
    its.submit(C.mapd(3, ITT, 2), C.mapd(4, MEM_BYTES - 0x100, 8))   # 2 KiB ITT, 256 B inside
    assert errors(its) == []
    assert_save_refused(its, "device", 4, "ITT_addr")


@pytest.mark.parametrize("itt", [ITT + 0x10, 1 << 52, MEM_BYTES, 2**64 - 256])
def test_save_error_bad_itt_address(layout, itt):
    mem = GuestMemory(MEM_BYTES)
    its = ITS(mem, NUM_CPUS, layout)
    bring_up(its)
    its.submit(C.mapd(3, ITT + 0x1000, 2))
    its.tables.map_device(7, 1, itt)
    assert_save_refused(its, "device", 7, "ITT_addr")


def test_save_error_too_many_collections(layout):
    mem = GuestMemory(MEM_BYTES)
    its = ITS(mem, NUM_CPUS, layout)
    bring_up(its)
    its.submit(*[C.mapc(icid, icid % NUM_CPUS) for icid in range(600)])
    assert errors(its) == []
    disable(its)
    its.mmio_write(GITS_BASER1, baser(CT, COLLECTIONS, page=4096), 8)   # 512 slots now
    assert len(collections(its)) == 600
    assert_save_refused(its, "collection")


def test_save_error_too_many_named_collections(layout):
    """Unmapped collections that events name need slots too."""
    mem = GuestMemory(MEM_BYTES)
    its = ITS(mem, NUM_CPUS, layout)
    bring_up(its, enable=False)
    its.mmio_write(GITS_BASER1, baser(CT, COLLECTIONS, page=4096), 8)   # 512 slots
    enable(its)
    its.submit(*[C.mapc(icid, 0) for icid in range(511)], C.mapd(0, ITT, 2),
               C.mapti(0, 0, 8192, 511))
    assert errors(its) == []
    its.save_tables()                                        # 512: exactly full
    its.submit(C.mapc(511, 1), C.mapc(511, 0, valid=False))
    its.tables.map_event(0, 1, 8193, 600)                    # an ICID beyond the table
    assert_save_refused(its, "collection")


def test_save_error_baser0_not_valid(layout):
    mem = GuestMemory(MEM_BYTES)
    its = ITS(mem, NUM_CPUS, layout)
    bring_up(its, enable=False)
    its.mmio_write(GITS_BASER0, baser(DT, DEVICES, pages=8, valid=False), 8)
    its.tables.map_device(1, 2, ITT)
    assert_save_refused(its, "device", 1)


def test_save_error_baser1_not_valid_with_named_collections(layout):
    mem = GuestMemory(MEM_BYTES)
    its = ITS(mem, NUM_CPUS, layout)
    bring_up(its)
    its.submit(C.mapc(2, 1), C.mapd(1, ITT, 2), C.mapti(1, 0, 8192, 2))
    disable(its)
    its.mmio_write(GITS_BASER1, baser(CT, COLLECTIONS, valid=False), 8)
    assert collections(its) == {} and events(its, 1) == [(0, 8192, 2)]
    assert_save_refused(its, "collection", 2)


def test_save_without_valid_tables_and_nothing_to_hold(layout):
    mem = GuestMemory(MEM_BYTES)
    its = ITS(mem, NUM_CPUS, layout)
    bring_up(its, enable=False)
    its.mmio_write(GITS_BASER0, baser(DT, DEVICES, valid=False), 8)
    its.mmio_write(GITS_BASER1, baser(CT, COLLECTIONS, valid=False), 8)
    mem.write(DT, b"\xCC" * 64)
    mem.write(CT, b"\xCC" * 64)
    before = mem.array.copy()
    its.save_tables()
    assert np.array_equal(mem.array, before)


SMALL_MAP = GuestMap(queue=0x10000, queue_pages=1, device_table=0x100000, device_table_pages=8,
                     collection_table=0x90000, config_table=0x20000, pending_tables=0x40000,
                     pending_stride=0x10000, itt_base=0xA0000)


def test_save_error_flat_table_outside_memory(layout):
    mem = GuestMemory(0x140000)                 # the 512 KiB table ends at 0x180000
    its = ITS(mem, NUM_CPUS, layout)
    bring_up(its, SMALL_MAP)
    its.submit(C.mapd(0, 0xA0000, 2), C.mapc(0, 0), C.mapti(0, 1, 8192, 0))
    assert errors(its) == []
    assert_save_refused(its, "device")


def test_save_error_level2_page_outside_memory(layout):
    mem = GuestMemory(MEM_BYTES)
    its = ITS(mem, NUM_CPUS, layout)
    bring_up(its, GuestMap(indirect=True, level2_pages=1, device_table_pages=1))
    put(mem, DT + 8, l1(MEM_BYTES))                          # descriptor 1 -> outside
    its.submit(C.mapd(3, ITT, 2))
    assert errors(its) == []
    assert_save_refused(its, "level1", 1, "Address")


def test_save_error_collection_table_outside_memory(layout):
    mem = GuestMemory(MEM_BYTES)
    its = ITS(mem, NUM_CPUS, layout)
    bring_up(its, enable=False)
    its.mmio_write(GITS_BASER1, baser(MEM_BYTES, COLLECTIONS), 8)
    enable(its)
    its.submit(C.mapd(3, ITT, 2))
    its.tables.map_collection(1, 1)
    assert_save_refused(its, "collection")


def test_save_error_pending_table_outside_memory_writes_nothing(layout):
    mem = GuestMemory(MEM_BYTES)
    its = ITS(mem, NUM_CPUS, layout)
    bring_up(its, GuestMap(pending_tables=MEM_BYTES - 2 * 0x10000))   # CPUs 2, 3 outside
    its.submit(C.mapd(3, ITT, 2), C.mapc(0, 0), C.mapti(3, 1, 8192, 0))
    mem.write(DT, b"\x55" * 64)
    before = mem.array.copy()
    with pytest.raises(SaveError) as info:
        its.save()
    assert info.value.table == "pending" and info.value.id == 2
    assert np.array_equal(mem.array, before)
    its.save_tables()                           # the tables alone can be saved
    assert word(mem, DT + 3 * 8) == dte(0, ITT, 2)
    for cpu in (2, 3):                          # CPUs with LPIs disabled are not saved
        its.redistributors.mmio_write(cpu, GICR_CTLR, 0, 4)
    state = its.save()
    assert state["GICR_CTLR"] == [1, 1, 0, 0]


# ========================================================================================
# RestoreError: every check of the doc; the ITS stays exactly as it was.

BASE_BASER0 = baser(DT, DEVICES)                                     # 8192 slots
BASE_BASER1 = baser(CT, COLLECTIONS, page=4096)                      # 512 slots


def write_base_image(mem: GuestMemory) -> None:
    """A small valid flat image: devices 1 (3 bits) and 4 (2 bits)."""
    put(mem, DT + 1 * 8, dte(3, ITT, 3))
    put(mem, DT + 4 * 8, dte(0, ITT + 0x100, 2))
    put(mem, ITT, ite(5, 8192, 1))
    put(mem, ITT + 5 * 8, ite(0, 8193, 2))
    put(mem, ITT + 0x100 + 2 * 8, ite(0, 8194, 1))
    put(mem, CT, cte(0, 1), cte(UNMAPPED, 2), 0)


def victim(layout, mem: GuestMemory, **kwargs):
    """A disabled ITS with some state of its own (tables elsewhere in memory)."""
    kwargs.setdefault("device_bits", 12)
    its = ITS(mem, NUM_CPUS, layout, **kwargs)
    bring_up(its, GuestMap(device_table=0x500000, device_table_pages=1,
                           collection_table=0x600000, itt_base=0x2000000))
    its.submit(C.mapd(7, 0x2000000, 4), C.mapc(0, 2), C.mapc(3, 1), C.mapti(7, 1, 8500, 0),
               C.mapti(7, 2, 8501, 3), C.int_(7, 1))
    assert errors(its) == [] and its.pending(2).tolist() == [8500]
    disable(its)
    return its


def test_base_image_restores(layout):
    mem = new_memory()
    write_base_image(mem)
    its = victim(layout, mem)
    its.restore(full_state(BASE_BASER0, BASE_BASER1))
    assert devices_of(its) == [(1, 3, ITT, 2), (4, 2, ITT + 0x100, 1)]
    assert collections(its) == {1: 0}
    assert outcome(its, 1, 5) == TS.NO_COLLECTION
    assert outcome(its, 4, 2) == (8194, 0)
    assert outcome(its, 7, 1) == TS.NO_DEVICE
    assert its.pending(2).tolist() == []        # pending state now comes from the tables


def test_restore_keeps_pending_bits_of_lpis_the_old_mappings_used(layout):
    """The victim (disabled, still holding mappings) has LPIs 8500 and 8501 mapped; the
    saved pending tables mark those INTIDs pending, and the saved device table is not
    valid.  Pending state is the pending tables', whatever the old mappings were: the
    old devices must not be dropped with their pending bits after the tables were read."""
    mem = new_memory()
    put(mem, CT, cte(0, 1), 0)
    set_bit = lambda cpu, intid: mem.write(  # noqa: E731
        pendbaser(cpu) + intid // 8, bytes([mem.read(pendbaser(cpu) + intid // 8, 1)[0]
                                            | 1 << intid % 8]))
    set_bit(2, 8500)
    set_bit(1, 8501)
    set_bit(0, 8192)
    its = victim(layout, mem)
    its.restore(full_state(BASE_BASER0 & ~V, BASE_BASER1))
    assert devices_of(its) == []
    assert [its.pending(cpu).tolist() for cpu in range(NUM_CPUS)] == [[8192], [8501], [8500], []]


def test_dte_next_past_the_flat_table_ends_the_scan(layout):
    """KVM's table scan stops when `next` leaves the table: the DTE itself is
    restored, nothing after it is read (here a valid DTE that would otherwise
    be found), and the image is not rejected."""
    mem = new_memory()
    write_base_image(mem)
    put(mem, DT + 4 * 8, dte(8188, ITT + 0x100, 2))         # 4 + 8188 = 8192 slots: past
    put(mem, DT + 8191 * 8, dte(0, ITT + 0x200, 1))         # never reached
    its = victim(layout, mem)
    its.restore(full_state(BASE_BASER0, BASE_BASER1))
    assert devices_of(its) == [(1, 3, ITT, 2), (4, 2, ITT + 0x100, 1)]
    assert outcome(its, 4, 2) == (8194, 0)


def _mutate(addr, value):
    return lambda mem, state: put(mem, addr, value)


def _set_register(name, value):
    def mutate(mem, state):
        state[name] = value
    return mutate


TABLE_ERRORS = {
    # name: (mutation, table, field, id)
    "cte-target-cpu": (_mutate(CT, cte(NUM_CPUS, 1)), "collection", "RDBase", 1),
    "cte-target-huge": (_mutate(CT + 8, cte(UNMAPPED - 1, 2)), "collection", "RDBase", 2),
    "cte-duplicate": (_mutate(CT + 16, cte(3, 1)), "collection", "ICID", 1),
    "cte-icid-beyond-table": (_mutate(CT + 16, cte(0, 512)), "collection", "ICID", 512),
    "dte-device-id-beyond-device-bits": (
        lambda mem, state: (put(mem, DT + 4 * 8, dte(4096 - 4, ITT + 0x100, 2)),
                            put(mem, DT + 4096 * 8, dte(0, ITT + 0x200, 1))),
        "device", "DeviceID", 4096),
    "dte-size-beyond-event-bits": (_mutate(DT + 4 * 8, dte(0, ITT + 0x100, 17)),
                                   "device", "Size", 4),
    "dte-itt-partly-outside": (_mutate(DT + 4 * 8, dte(0, MEM_BYTES - 0x100, 6)),
                               "device", "ITT_addr", 4),
    "dte-itt-far-outside": (_mutate(DT + 4 * 8, V | (2**44 - 1) << 5 | 1),
                            "device", "ITT_addr", 4),
    "ite-pintid-below-8192": (_mutate(ITT + 0x100 + 16, ite(0, 8191, 1)), "itt", "pINTID", (4, 2)),
    "ite-pintid-1": (_mutate(ITT + 0x100 + 16, ite(0, 1, 1)), "itt", "pINTID", (4, 2)),
    "ite-pintid-beyond-intid-bits": (_mutate(ITT + 0x100 + 16, ite(0, 1 << 16, 1)),
                                     "itt", "pINTID", (4, 2)),
    "ite-icid-not-restored": (_mutate(ITT + 0x100 + 16, ite(0, 8194, 3)), "itt", "ICID", (4, 2)),
    "ite-next-past-itt": (_mutate(ITT + 5 * 8, ite(3, 8193, 2)), "itt", "next", (1, 5)),
    "ite-next-past-itt-first": (_mutate(ITT, ite(8, 8192, 1)), "itt", "next", (1, 0)),
    "level1-table-outside": (_set_register("GITS_BASER0",
                                           baser(MEM_BYTES - 0x1000, DEVICES, page=4096, pages=2,
                                                 indirect=True)),
                             "level1", None, None),
    "level2-page-outside": (lambda mem, state: (
        put(mem, L2 - 0x10000, 0, l1(MEM_BYTES + 0x8000)),
        state.update(GITS_BASER0=baser(L2 - 0x10000, DEVICES, indirect=True))),
        "level1", "Address", 1),
    "collection-table-outside": (_set_register("GITS_BASER1", baser(MEM_BYTES, COLLECTIONS)),
                                 "collection", None, None),
}

REGISTER_ERRORS = {
    "iidr-revision-1": (_set_register("GITS_IIDR", IIDR | 1 << 12), "Revision"),
    "iidr-revision-15": (_set_register("GITS_IIDR", IIDR | 15 << 12), "Revision"),
    "creadr-beyond-queue": (lambda m, s: s.update(GITS_CBASER=cbaser(QUEUE, 1), GITS_CREADR=4096),
                            "Offset"),
    "cwriter-beyond-queue": (lambda m, s: s.update(GITS_CBASER=cbaser(QUEUE, 2), GITS_CWRITER=8192),
                             "Offset"),
}


def _check_restore_error(error: RestoreError, table, field, ident) -> None:
    assert error.table == table, error
    if field is not None:
        assert error.field == field, error
    if ident is not None:
        assert error.id == ident, error
    assert isinstance(error, ITSError)


@pytest.mark.parametrize("case", sorted(TABLE_ERRORS))
def test_restore_error_tables(layout, case):
    mutate, table, field, ident = TABLE_ERRORS[case]
    mem = new_memory()
    write_base_image(mem)
    state = full_state(BASE_BASER0, BASE_BASER1)
    mutate(mem, state)
    its = victim(layout, mem)
    twin = victim(layout, GuestMemory(np.array(mem.array)))
    before, memory = capture(its), mem.array.copy()
    with pytest.raises(RestoreError) as info:
        its.restore(state)
    _check_restore_error(info.value, table, field, ident)
    assert capture(its) == before
    assert np.array_equal(mem.array, memory)
    assert_same_state(its, twin)
    # By parts: restore_registers succeeds, restore_tables fails and changes nothing.
    its.restore_registers({k: state[k] for k in ITS_REGISTER_NAMES})
    before = capture(its)
    with pytest.raises(RestoreError) as info:
        its.restore_tables()
    _check_restore_error(info.value, table, field, ident)
    assert capture(its) == before
    assert np.array_equal(mem.array, memory)


@pytest.mark.parametrize("case", sorted(REGISTER_ERRORS))
def test_restore_error_registers(layout, case):
    mutate, field = REGISTER_ERRORS[case]
    mem = new_memory()
    write_base_image(mem)
    state = full_state(BASE_BASER0, BASE_BASER1)
    mutate(mem, state)
    its = victim(layout, mem)
    before, memory = capture(its), mem.array.copy()
    with pytest.raises(RestoreError) as info:
        its.restore(state)
    _check_restore_error(info.value, "registers", field, None)
    assert capture(its) == before
    with pytest.raises(RestoreError) as info:
        its.restore_registers({k: state[k] for k in ITS_REGISTER_NAMES})
    _check_restore_error(info.value, "registers", field, None)
    assert capture(its) == before
    assert np.array_equal(mem.array, memory)


def test_restore_queue_offsets_at_the_limit_are_fine(layout):
    mem = new_memory()
    write_base_image(mem)
    its = victim(layout, mem)
    its.restore(full_state(BASE_BASER0, BASE_BASER1, ctlr=0, cbaser_value=cbaser(QUEUE, 1),
                           creadr=4096 - 32, cwriter=4096 - 32))
    assert its.register("GITS_CREADR") == 4096 - 32
    assert its.register("GITS_CWRITER") == 4096 - 32


def _malformed_cases():
    good = full_state(BASE_BASER0, BASE_BASER1)
    cases = {"not-a-dict": [("GITS_CTLR", 1)], "none": None, "empty": {}}
    for name in ITS_REGISTER_NAMES:
        cases[f"missing-{name}"] = {k: v for k, v in good.items() if k != name}
        for label, value in (("str", "0"), ("float", 1.0), ("bool", True), ("negative", -1),
                             ("none", None)):
            cases[f"{name}-{label}"] = {**good, name: value}
    cases["GITS_IIDR-33-bits"] = {**good, "GITS_IIDR": 1 << 32}
    cases["GITS_BASER0-65-bits"] = {**good, "GITS_BASER0": 1 << 64}
    cases["GITS_CBASER-65-bits"] = {**good, "GITS_CBASER": 1 << 64}
    cases["format-missing"] = {k: v for k, v in good.items() if k != "format"}
    cases["format-wrong"] = {**good, "format": "kvm-its-rev1"}
    cases["ctlr-missing"] = {k: v for k, v in good.items() if k != "GITS_CTLR"}
    cases["ctlr-str"] = {**good, "GITS_CTLR": "1"}
    cases["ctlr-33-bits"] = {**good, "GITS_CTLR": 1 << 32}
    cases["ctlr-negative"] = {**good, "GITS_CTLR": -1}
    cases["ctlr-bool"] = {**good, "GITS_CTLR": True}
    for name in ("GICR_CTLR", "GICR_PROPBASER", "GICR_PENDBASER"):
        cases[f"{name}-missing"] = {k: v for k, v in good.items() if k != name}
        cases[f"{name}-short"] = {**good, name: good[name][:-1]}
        cases[f"{name}-long"] = {**good, name: good[name] + good[name][:1]}
        cases[f"{name}-scalar"] = {**good, name: good[name][0]}
        cases[f"{name}-tuple"] = {**good, name: tuple(good[name])}
        cases[f"{name}-str-item"] = {**good, name: ["1"] + good[name][1:]}
        cases[f"{name}-bool-item"] = {**good, name: [True] + good[name][1:]}
        cases[f"{name}-negative-item"] = {**good, name: [-1] + good[name][1:]}
    cases["GICR_CTLR-33-bits"] = {**good, "GICR_CTLR": [1 << 32] + good["GICR_CTLR"][1:]}
    cases["GICR_PENDBASER-65-bits"] = {**good,
                                       "GICR_PENDBASER": [1 << 64] + good["GICR_PENDBASER"][1:]}
    return cases


MALFORMED = _malformed_cases()


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_restore_error_malformed_state(case):
    mem = new_memory()
    write_base_image(mem)
    its = victim("flat", mem)
    before, memory = capture(its), mem.array.copy()
    with pytest.raises(RestoreError) as info:
        its.restore(MALFORMED[case])
    assert info.value.table == "registers", info.value
    assert capture(its) == before
    assert np.array_equal(mem.array, memory)


REGISTER_ONLY_CASES = sorted(c for c in MALFORMED if c.startswith(("missing-GITS", "GITS_"))
                             or c in ("not-a-dict", "none", "empty"))


@pytest.mark.parametrize("case", REGISTER_ONLY_CASES)
def test_restore_registers_error_malformed(case):
    mem = new_memory()
    its = victim("flat", mem)
    before = capture(its)
    with pytest.raises(RestoreError) as info:
        its.restore_registers(MALFORMED[case])
    assert info.value.table == "registers", info.value
    assert capture(its) == before


def test_restore_error_pending_table_outside_memory(layout):
    mem = new_memory()
    write_base_image(mem)
    state = full_state(BASE_BASER0, BASE_BASER1)
    state["GICR_PENDBASER"][3] = MEM_BYTES - 0x10000 + 0x10000
    its = victim(layout, mem)
    before = capture(its)
    with pytest.raises(RestoreError) as info:
        its.restore(state)
    assert info.value.table == "pending" and info.value.id == 3
    assert capture(its) == before
    # with EnableLPIs clear on that CPU its table is not needed
    state["GICR_CTLR"][3] = 0
    its.restore(state)
    assert not its.redistributors.lpis_enabled(3)
    assert devices_of(its) == [(1, 3, ITT, 2), (4, 2, ITT + 0x100, 1)]


def test_restore_error_pending_table_outside_memory_fresh_its(layout):
    """The pending-table location is validated against the LPI limit of the
    PROPBASER being restored, also on a fresh ITS (whose own limit is 2)."""
    mem = new_memory()
    write_base_image(mem)
    state = full_state(BASE_BASER0, BASE_BASER1)
    state["GICR_PENDBASER"][3] = MEM_BYTES                   # wholly outside guest memory
    its = ITS(mem, NUM_CPUS, layout)
    before, memory = capture(its), mem.array.copy()
    with pytest.raises(RestoreError) as info:
        its.restore(state)
    assert info.value.table == "pending" and info.value.id == 3
    assert capture(its) == before
    assert np.array_equal(mem.array, memory)


def test_restore_pending_table_checked_against_restored_limit(layout):
    """Only bytes 1024 .. limit/8 of a pending table are read, with the limit
    of the restored PROPBASER (here 2**14: bytes 1024..2048); a table whose
    first 4 KiB are inside guest memory is fine, whatever limit the ITS had
    before the restore."""
    size = MEM_BYTES - 0x10000 + 0x1000
    mem = GuestMemory(size)
    mem.fill(PROP, (1 << 16) - LPI, CONFIG_DEFAULT)
    write_base_image(mem)
    last = MEM_BYTES - 0x10000                                # 4 KiB of it inside memory
    mem.write(last + 1024, bytes([0x01]))                     # LPI 8192 pending on CPU 3
    state = full_state(BASE_BASER0, BASE_BASER1, idbits=14)
    state["GICR_PENDBASER"][3] = last
    its = victim(layout, mem)                                 # its own limit is 2**16
    its.restore(state)
    assert its.redistributors.lpi_limit == 1 << 14
    assert its.pending(3).tolist() == [8192]
    assert devices_of(its) == [(1, 3, ITT, 2), (4, 2, ITT + 0x100, 1)]


def test_restore_error_fewer_cpus(layout):
    mem = new_memory()
    write_base_image(mem)
    put(mem, CT, cte(3, 1))
    its = ITS(mem, 2, layout)
    with pytest.raises(RestoreError) as info:
        its.restore(full_state(BASE_BASER0, BASE_BASER1, num_cpus=2))
    assert (info.value.table, info.value.field) == ("collection", "RDBase")
    assert devices_of(its) == [] and not its.enabled


# ========================================================================================
# Restoring while enabled.

def test_restore_refused_while_enabled(layout):
    mem = new_memory()
    write_base_image(mem)
    its = victim(layout, mem)
    enable(its)
    before = capture(its)
    state = full_state(BASE_BASER0, BASE_BASER1)
    for call, arg in ((its.restore, (state,)), (its.restore_registers,
                                                 ({k: state[k] for k in ITS_REGISTER_NAMES},)),
                      (its.restore_tables, ())):
        with pytest.raises(ITSError) as info:
            call(*arg)
        assert not isinstance(info.value, RestoreError)
        assert capture(its) == before
    assert outcome(its, 7, 1) == (8500, 2)


# ========================================================================================
# Pending tables.

def _pending_its(layout, idbits=14):
    """ITS with intid_bits 16 but a PROPBASER limit of 2**idbits; INTs on CPUs."""
    mem = GuestMemory(MEM_BYTES)
    its = ITS(mem, NUM_CPUS, layout)
    bring_up(its, intid_bits=idbits)
    limit = 1 << idbits
    its.submit(C.mapd(1, ITT, 6), *[C.mapc(cpu, cpu) for cpu in range(NUM_CPUS)])
    expected = {cpu: set() for cpu in range(NUM_CPUS)}
    rng = np.random.default_rng(8)
    intids = rng.choice(np.arange(LPI, limit), 40, replace=False).tolist()
    for event_id, intid in enumerate(intids):
        cpu = event_id % NUM_CPUS
        its.submit(C.mapti(1, event_id, intid, cpu))
        if event_id % 3:
            its.submit(C.int_(1, event_id))
            expected[cpu].add(intid)
    assert errors(its) == []
    for cpu in range(NUM_CPUS):
        assert its.pending(cpu).tolist() == sorted(expected[cpu])
    return mem, its, expected


@pytest.mark.parametrize("idbits", [14, 16])
def test_save_pending_tables_writes_only_lpi_bytes(layout, idbits):
    mem, its, expected = _pending_its(layout, idbits)
    its.redistributors.mmio_write(3, GICR_CTLR, 0, 4)        # CPU 3: LPIs disabled
    expected[3] = set()
    mem.write(PEND, b"\xFF" * (NUM_CPUS * PEND_STRIDE))
    before = mem.array.copy()
    its.save_pending_tables()
    end = (1 << idbits) // 8
    want = before.copy()
    for cpu in range(3):
        bitmap = np.zeros(end - 1024, np.uint8)
        for intid in expected[cpu]:
            bitmap[intid // 8 - 1024] |= 1 << (intid % 8)
        start = PEND + cpu * PEND_STRIDE
        want[start + 1024:start + end] = bitmap
    assert np.array_equal(mem.array, want)


def test_restore_pending_tables_reads_lpi_bytes(layout):
    mem, its, expected = _pending_its(layout, 14)
    its.redistributors.mmio_write(3, GICR_CTLR, 0, 4)
    its.save_pending_tables()
    table0 = PEND
    mem.write(table0, b"\xFF" * 1024)                          # INTIDs < 8192: never read
    mem.write(table0 + 2048, b"\xFF" * 64)                     # beyond the 16384 limit
    mem.write(table0 + 1024 + 5, bytes([0x81]))                # LPIs 8232 and 8239
    mem.write(PEND + 3 * PEND_STRIDE + 1024, b"\xFF" * 8)      # CPU 3 disabled: not read
    mem.write(PEND + 1 * PEND_STRIDE + 1024, bytes(1024))      # CPU 1: nothing pending
    its.restore_pending_tables()
    byte5 = {intid for intid in expected[0] if intid // 8 != 1029}
    assert its.pending(0).tolist() == sorted(byte5 | {8232, 8239})
    assert its.pending(1).tolist() == []
    assert its.pending(2).tolist() == sorted(expected[2])
    assert its.pending(3).tolist() == []


def test_pending_round_trip_through_save_and_restore(layout):
    mem, its, expected = _pending_its(layout, 16)
    state = its.save()
    other = ITS(GuestMemory(np.array(mem.array)), NUM_CPUS, "flat" if layout != "flat" else "hash")
    other.restore(state)
    for cpu in range(NUM_CPUS):
        assert other.pending(cpu).tolist() == sorted(expected[cpu])
    assert_same_state(its, other)


# ========================================================================================
# Migration.

MIGRATIONS = [(src, dst) for src in its_core.LAYOUTS for dst in its_core.LAYOUTS if src != dst]


def _all_pairs(its):
    device_ids, event_ids, _ = its.tables.export_events()
    return device_ids, event_ids


@pytest.mark.parametrize("indirect", [False, True], ids=["flat-table", "two-level"])
@pytest.mark.parametrize("src,dst", MIGRATIONS)
def test_migration(src, dst, indirect):
    mem = GuestMemory(MEM_BYTES)
    its = ITS(mem, NUM_CPUS, src)
    guest = (GuestMap(indirect=True, level2_pages=3, device_table_pages=1, itt_stride=0x100)
             if indirect else GuestMap(device_table_pages=2, itt_stride=0x100))
    random_state(its, 400, 20, seed=11, guest=guest, num_collections=40, pending_fraction=0.2)
    # some command-made state on top
    its.submit(C.mapc(7, 2), C.mapc(9, 3, valid=False), C.mapc(45, 1))
    state = its.save()
    state = json.loads(json.dumps(state))
    copy = GuestMemory(np.array(mem.array))
    other = ITS(copy, NUM_CPUS, dst)
    other.restore(state)
    assert_same_state(its, other)
    assert sum(len(its.pending(cpu)) for cpu in range(NUM_CPUS)) > 0
    for cpu in range(NUM_CPUS):
        assert np.array_equal(its.pending(cpu), other.pending(cpu))
    devs, evs = _all_pairs(its)
    rng = np.random.default_rng(12)
    devs = np.concatenate([devs, rng.integers(0, 1 << 16, 4000).astype(np.uint32)])
    evs = np.concatenate([evs, rng.integers(0, 64, 4000).astype(np.uint32)])
    for a, b in zip(its.translate_batch(devs, evs), other.translate_batch(devs, evs)):
        assert np.array_equal(a, b)
    # Commands keep working, identically.
    routed = np.flatnonzero(its.translate_batch(devs, evs)[2] == TS.OK)
    d0, e0 = int(devs[routed[0]]), int(evs[routed[0]])      # DISCARD needs a mapped collection
    d1 = int(devs[len(devs) // 3])
    used = set(zip(*[a.tolist() for a in _all_pairs(its)]))
    free_event = next(e for e in range(32) if (d1, e) not in used)
    for each in (its, other):
        each.submit(C.discard(d0, e0), C.mapti(d1, free_event, 9999, 7), C.int_(d1, free_event),
                    C.movi(d1, free_event, 45), C.mapd(0xFFFF, ITT, 2), C.movall(0, 1))
    assert [tuple(e) for e in its.errors] == [tuple(e) for e in other.errors]
    assert_same_state(its, other)
    assert outcome(other, d1, free_event) == (9999, 1)
    assert outcome(other, d0, e0) == TS.NO_MAPPING
    statuses = its.msi_batch(devs[:500], evs[:500])
    assert np.array_equal(statuses, other.msi_batch(devs[:500], evs[:500]))
    assert_same_state(its, other)


def test_registers_round_trip(layout):
    mem, its = worked_example(layout)
    regs = its.save_registers()
    other = ITS(GuestMemory(np.array(mem.array)), NUM_CPUS, layout)
    other.restore_registers(regs)
    got = other.save_registers()
    assert got["GITS_CTLR"] & 1 == 0                         # CTLR is not restored here
    assert {k: v for k, v in got.items() if k != "GITS_CTLR"} == \
        {k: v for k, v in regs.items() if k != "GITS_CTLR"}


def test_restore_runs_commands_between_creadr_and_cwriter(layout):
    """Commands already executed (before CREADR) are not run again; those
    between CREADR and CWRITER run when GITS_CTLR is restored (or written)."""
    mem = GuestMemory(MEM_BYTES)
    its = ITS(mem, NUM_CPUS, layout)
    bring_up(its)
    its.submit(C.mapd(1, ITT, 3), C.mapc(0, 0), C.mapti(1, 0, 8200, 0), C.int_(1, 0))
    assert its.acknowledge(0) == 8200 and its.pending(0).tolist() == []
    disable(its)
    creadr = its.register("GITS_CREADR")
    mem.write(QUEUE + creadr, C.mapti(1, 2, 8202, 0) + C.int_(1, 2))
    its.mmio_write(GITS_CWRITER, creadr + 64, 8)            # stored, not processed
    assert its.register("GITS_CREADR") == creadr
    state = its.save()
    assert state["GITS_CTLR"] & 1 == 0
    # the state as if the ITS had been enabled when saved
    for ctlr, runs_at_restore in ((state["GITS_CTLR"] | 1, True), (state["GITS_CTLR"], False)):
        other = ITS(GuestMemory(np.array(mem.array)), NUM_CPUS, layout)
        other.restore({**state, "GITS_CTLR": ctlr})
        if not runs_at_restore:
            assert events(other, 1) == [(0, 8200, 0)]
            enable(other)
        assert events(other, 1) == [(0, 8200, 0), (2, 8202, 0)]
        assert other.pending(0).tolist() == [8202]           # INT 1/0 was not run again
        assert other.register("GITS_CREADR") == creadr + 64


def test_stalled_queue_round_trip(layout):
    mem = GuestMemory(MEM_BYTES)
    its = ITS(mem, NUM_CPUS, layout, stall_on_error=True)
    bring_up(its)
    its.submit(C.mapc(0, 1), C.mapti(5, 0, 8200, 0), C.mapd(6, ITT, 1))   # MAPTI: no device 5
    assert its.stalled
    state = its.save()
    assert state["GITS_CREADR"] & 1 == 1
    other = ITS(GuestMemory(np.array(mem.array)), NUM_CPUS, layout, stall_on_error=True)
    other.restore(state)
    assert other.stalled and other.enabled
    assert_same_state(its, other)
    for each in (its, other):
        each.memory.write(QUEUE + (each.register("GITS_CREADR") & ~1), C.mapd(5, ITT + 0x100, 1))
        each.mmio_write(GITS_CWRITER, each.register("GITS_CWRITER") | 1, 8)   # Retry
        assert not each.stalled
    assert_same_state(its, other)
    assert devices_of(other) == [(5, 1, ITT + 0x100, 0), (6, 1, ITT, 0)]


def test_round_trip_with_memory_not_at_zero(layout):
    """Guest memory starting at 2 GiB: every address is guest-physical."""
    import dataclasses
    base = 0x8000_0000
    shifted = {name: base + getattr(GuestMap(), name) for name in (
        "queue", "device_table", "level2_tables", "collection_table", "config_table",
        "pending_tables", "itt_base")}
    for indirect in (False, True):
        guest = dataclasses.replace(GuestMap(), indirect=indirect, level2_pages=2,
                                    device_table_pages=1 if indirect else 8, **shifted)
        mem = GuestMemory(MEM_BYTES, base=base)
        its = ITS(mem, NUM_CPUS, layout)
        random_state(its, 100, 10, seed=13, guest=guest, pending_fraction=0.3)
        state = its.save()
        other = ITS(GuestMemory(np.array(mem.array), base=base), NUM_CPUS,
                    "hash" if layout != "hash" else "flat")
        other.restore(state)
        assert_same_state(its, other)


def test_emptied_sparse_device_saves_an_empty_itt(layout):
    mem = GuestMemory(MEM_BYTES)
    its = ITS(mem, NUM_CPUS, layout)
    bring_up(its)
    its.submit(C.mapd(1, ITT, 16), C.mapc(0, 1), C.mapti(1, 5, 8200, 0),
               C.mapti(1, 60000, 8201, 0), C.discard(1, 5), C.discard(1, 60000))
    assert errors(its) == []
    mem.write(ITT, b"\xFF" * (8 << 16))
    state = its.save()
    assert not mem.array[ITT:ITT + (8 << 16)].any()
    assert word(mem, DT + 8) == dte(0, ITT, 16)
    other = ITS(GuestMemory(np.array(mem.array)), NUM_CPUS, layout)
    other.restore(state)
    assert_same_state(its, other)
    its.submit(C.mapti(1, 7, 8300, 0), C.mapti(1, 65535, 8301, 0))
    its.save()
    assert word(mem, ITT + 7 * 8) == ite(65528, 8300, 0)
    assert word(mem, ITT + 65535 * 8) == ite(0, 8301, 0)


def test_addresses_above_2_48(layout):
    """Tables, ITTs, queue and LPI tables above 2**48: BASER (64 KiB pages)
    holds PA[51:48] in bits [15:12], the DTE's ITT_addr [48:5] holds ITT
    bits [51:8]."""
    base = 1 << 48
    for indirect in (False, True):
        mem = GuestMemory(MEM_BYTES, base=base)
        mem.fill(base + PROP, (1 << 16) - LPI, CONFIG_DEFAULT)
        its = ITS(mem, NUM_CPUS, layout)
        rd = its.redistributors
        for cpu in range(NUM_CPUS):
            rd.mmio_write(cpu, GICR_PROPBASER, base + PROP | 15, 8)
            rd.mmio_write(cpu, GICR_PENDBASER, base + pendbaser(cpu) | 1 << 62, 8)
            rd.mmio_write(cpu, GICR_CTLR, 1, 4)
        if indirect:
            put(mem, base + DT, l1(base + L2))
        its.mmio_write(GITS_BASER0, baser(base + DT, DEVICES, indirect=indirect), 8)
        its.mmio_write(GITS_BASER1, baser(base + CT, COLLECTIONS), 8)
        its.mmio_write(0x80, cbaser(base + QUEUE), 8)
        enable(its)
        its.submit(C.mapd(5, base + ITT, 4), C.mapc(1, 1), C.mapti(5, 3, 9000, 1), C.int_(5, 3),
                   C.mapd(7, base + ITT + 0x100, 2), C.mapti(7, 0, 9001, 1))
        assert errors(its) == []
        state = its.save()
        dt = base + (L2 if indirect else DT)
        assert word(mem, dt + 5 * 8) == dte(2, base + ITT, 4) == V | 2 << 49 | (
            1 << 45 | (ITT >> 8) << 5) | 3
        assert word(mem, dt + 7 * 8) == dte(0, base + ITT + 0x100, 2)
        assert word(mem, base + ITT + 3 * 8) == ite(0, 9000, 1)
        assert word(mem, base + CT) == cte(1, 1)
        other = ITS(GuestMemory(np.array(mem.array), base=base), NUM_CPUS, layout)
        other.restore(state)
        assert_same_state(its, other)
        assert other.pending(1).tolist() == [9000]
