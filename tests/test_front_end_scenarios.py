"""Scenario tests of the ITS front end, driven only through its guest-visible interface.

Each test behaves like a guest OS: it programs GITS_* and GICR_* registers,
places commands in the queue (with `its.submit` or by hand in guest memory
followed by a GITS_CWRITER write), rings GITS_TRANSLATER and reads pending
state back.  Expectations come from docs/front-end.md, hand-built bytes and
register values built from `its_core.registers` layouts -- never from the
ITS itself.
"""

from __future__ import annotations

import numpy as np
import pytest

import its_core
from its_core import GuestMemory, TranslationError
from its_core import TranslationStatus as TS
from its_core.frontend import commands as C
from its_core.frontend import registers as R
from its_core.frontend.registers import BaserType, PageSize

from front_end_helpers import (CT_ADDR, CTLR_ENABLED, CTLR_QUIESCENT, DT_ADDR, DT_L2_ADDR,
                               GICR_CTLR, GICR_PENDBASER, GICR_PROPBASER, GICR_TYPER,
                               GITS_BASER0, GITS_BASER1, GITS_CBASER, GITS_CREADR,
                               GITS_CTLR, GITS_CWRITER, GITS_IIDR, GITS_TRANSLATER, GITS_TYPER,
                               ITT_ADDR, MEM_BYTES, PROP_ADDR, STALLED, Setup,
                               baser_value, cbaser_value, make_setup, pendbaser_value,
                               program_its, propbaser_value, read64, write64)

ITS = its_core.ITS
NUM_CPUS = 4
LPI = 8192
BASER_VALID = 1 << 63
GARBAGE = bytes(range(0xA1, 0xA9))
OFFSET_MASK = R.GITS_CREADR_LAYOUT["Offset"].mask


@pytest.fixture(params=its_core.LAYOUTS)
def layout(request):
    return request.param


def itt(device_id: int) -> int:
    """ITT address used for a device in these tests (64 KiB each: up to 8192 events)."""
    return ITT_ADDR + (device_id % 512) * 0x10000


class Guest:
    """A guest driver: one ITS, its memory and bring-up, and its own queue write pointer."""

    def __init__(self, layout="flat", *, num_cpus=NUM_CPUS, mem_bytes=MEM_BYTES,
                 device_bits=16, event_bits=16, intid_bits=16, stall_on_error=False,
                 enable=True, enable_lpis=True, map_collections=True, **setup_kwargs):
        self.mem = GuestMemory(mem_bytes)
        self.its = ITS(self.mem, num_cpus=num_cpus, layout=layout, device_bits=device_bits,
                       event_bits=event_bits, intid_bits=intid_bits,
                       stall_on_error=stall_on_error)
        self.num_cpus = num_cpus
        self.setup: Setup = make_setup(num_cpus, intid_bits=intid_bits, **setup_kwargs)
        self.sent = 0                                # commands placed in the queue so far
        program_its(self.its, self.setup, enable=enable, enable_lpis=enable_lpis, mem=self.mem)
        if map_collections:                          # ICID n -> CPU n
            self.submit(*(C.mapc(cpu, cpu) for cpu in range(num_cpus)))

    # -- queue --------------------------------------------------------------------------

    def slot(self, index: int) -> int:
        """Queue byte offset of the index-th command ever placed in the queue."""
        return (index * 32) % self.setup.queue_bytes

    def submit(self, *packets) -> list[int]:
        """its.submit; returns the queue offsets the packets occupy."""
        offsets = [self.slot(self.sent + i) for i in range(len(packets))]
        self.its.submit(*packets)
        self.sent += len(packets)
        return offsets

    def enqueue(self, *packets) -> list[int]:
        """Write packets into the queue memory by hand (CWRITER not written)."""
        offsets = []
        for packet in packets:
            offset = self.slot(self.sent)
            self.mem.write(self.setup.queue_addr + offset, packet)
            offsets.append(offset)
            self.sent += 1
        return offsets

    def kick(self, retry: bool = False) -> None:
        """GITS_CWRITER = our write pointer (with Retry if asked)."""
        write64(self.its, GITS_CWRITER, self.slot(self.sent) | int(retry))

    def creadr(self) -> int:
        return read64(self.its, GITS_CREADR)

    # -- tables -------------------------------------------------------------------------

    def set_config(self, intid: int, byte: int) -> None:
        self.mem.write(self.setup.prop_addr + intid - LPI, bytes([byte]))

    def pending(self, cpu: int) -> list[int]:
        return [int(i) for i in self.its.pending(cpu)]

    def all_pending(self) -> list[list[int]]:
        return [self.pending(cpu) for cpu in range(self.num_cpus)]

    def errors(self) -> list[tuple[int, int, int]]:
        return [(e.offset, e.opcode, e.code) for e in self.its.errors]

    def ctlr(self) -> int:
        return self.its.mmio_read(GITS_CTLR, 4)

    def enable(self, on: bool = True) -> None:
        self.its.mmio_write(GITS_CTLR, int(on), 4)

    def rd_write(self, cpu, offset, value, size=8):
        self.its.redistributors.mmio_write(cpu, offset, value, size)

    def rd_read(self, cpu, offset, size=8):
        return self.its.redistributors.mmio_read(cpu, offset, size)

    def map_events(self, device_id, bits, events, icid=0):
        """MAPD + one MAPTI per (event, intid); asserts no error was recorded."""
        before = len(self.its.errors)
        self.submit(C.mapd(device_id, itt(device_id), bits),
                    *(C.mapti(device_id, e, intid, icid) for e, intid in events))
        assert len(self.its.errors) == before


def status(its, device_id, event_id):
    try:
        its.translate(device_id, event_id)
    except TranslationError as error:
        return error.status
    return TS.OK


def translation(its, device_id, event_id):
    intid, cpu = its.translate(device_id, event_id)
    return int(intid), int(cpu)


# =========================================================================================
# Registers
# =========================================================================================

@pytest.mark.parametrize("device_bits, event_bits", [(16, 16), (10, 8), (20, 32), (1, 1)])
def test_typer_reports_constructor_sizes(device_bits, event_bits):
    its = ITS(GuestMemory(1 << 20), num_cpus=2, layout="flat", device_bits=device_bits,
              event_bits=event_bits, intid_bits=16)
    expected = R.GITS_TYPER_LAYOUT.encode(Physical=1, ITT_entry_size=7, ID_bits=event_bits - 1,
                                          Devbits=device_bits - 1, PTA=0)
    assert its.mmio_read(GITS_TYPER, 8) == expected
    assert its.mmio_read(GITS_TYPER, 4) == expected & 0xFFFF_FFFF
    assert its.mmio_read(GITS_TYPER + 4, 4) == expected >> 32
    fields = R.GITS_TYPER_LAYOUT.decode(expected)
    assert fields["ITT_entry_size"] == 7 and fields["Physical"] == 1 and fields["PTA"] == 0


def test_identification_registers():
    g = Guest(enable=False, map_collections=False)
    its = g.its
    assert its.mmio_read(GITS_IIDR, 4) == (0x4B << 24) | 0x43B
    assert R.GITS_IIDR_LAYOUT.decode(its.mmio_read(GITS_IIDR, 4))["Revision"] == 0
    idregs = [reg for reg in R.ITS_REGISTERS if reg.offset >= 0xFFD0 and reg.offset < 0x10000]
    assert len(idregs) == 12
    for reg in idregs:
        assert its.mmio_read(reg.offset, 4) == reg.reset, reg.name
    assert its.mmio_read(0xFFE8, 4) == 0x3B                          # PIDR2: GICv3
    assert [its.mmio_read(0xFFF0 + 4 * i, 4) for i in range(4)] == [0x0D, 0xF0, 0x05, 0xB1]


def test_read_only_registers_ignore_writes_silently():
    g = Guest(enable=False, map_collections=False)
    its = g.its
    before = {off: its.mmio_read(off, 8) for off in (GITS_TYPER, GITS_CREADR)}
    iidr = its.mmio_read(GITS_IIDR, 4)
    errors = len(its.access_errors)
    its.mmio_write(GITS_TYPER, 0, 8)
    its.mmio_write(GITS_TYPER + 4, 0xFFFF_FFFF, 4)
    its.mmio_write(GITS_CREADR, 0x40, 8)
    its.mmio_write(GITS_IIDR, 0, 4)
    its.mmio_write(0xFFE8, 0x4B, 4)
    assert {off: its.mmio_read(off, 8) for off in before} == before
    assert its.mmio_read(GITS_IIDR, 4) == iidr
    assert its.mmio_read(0xFFE8, 4) == 0x3B
    assert len(its.access_errors) == errors


def test_ctlr_reset_value_and_quiescent():
    its = ITS(GuestMemory(1 << 20), num_cpus=1, layout="flat")
    assert its.mmio_read(GITS_CTLR, 4) == CTLR_QUIESCENT
    # Quiescent is read-only
    its.mmio_write(GITS_CTLR, 0, 4)
    assert its.mmio_read(GITS_CTLR, 4) == CTLR_QUIESCENT


def test_bring_up_reads_back(layout):
    g = Guest(layout, ptz=True)
    its, s = g.its, g.setup
    assert g.ctlr() == CTLR_ENABLED | CTLR_QUIESCENT
    assert read64(its, GITS_CBASER) == s.cbaser
    assert read64(its, GITS_BASER0) == s.baser0
    assert read64(its, GITS_BASER1) == s.baser1
    assert read64(its, GITS_CWRITER) == read64(its, GITS_CREADR) == 4 * 32
    for cpu in range(NUM_CPUS):
        assert g.rd_read(cpu, GICR_CTLR, 4) & 1 == 1
        assert g.rd_read(cpu, GICR_PROPBASER) == s.propbaser
        assert g.rd_read(cpu, GICR_PENDBASER) == s.pendbaser[cpu] & ~(1 << 62)   # PTZ reads 0
        assert g.rd_read(cpu, GICR_TYPER) == R.gicr_typer_value(cpu, cpu, direct_lpi=True,
                                                                last=cpu == NUM_CPUS - 1)
    assert g.errors() == []


def test_baser_read_only_fields_and_unimplemented_basers():
    g = Guest(enable=False, map_collections=False)
    its = g.its
    raw = R.GITS_BASER_LAYOUT.encode(Valid=1, Type=0, Entry_Size=0, Page_Size=PageSize.SIZE_4K,
                                     Size=3, Physical_Address=DT_ADDR >> 12, Indirect=1)
    write64(its, GITS_BASER0, raw)
    fields = R.GITS_BASER_LAYOUT.decode(read64(its, GITS_BASER0))
    assert fields["Type"] == BaserType.DEVICES and fields["Entry_Size"] == 7
    assert (fields["Valid"], fields["Indirect"]) == (1, 1)
    assert (fields["Size"], fields["Page_Size"]) == (3, 0)
    assert fields["Physical_Address"] << 12 == DT_ADDR
    raw1 = R.GITS_BASER_LAYOUT.encode(Valid=1, Type=1, Entry_Size=3, Indirect=1, Size=2,
                                      Page_Size=PageSize.SIZE_16K, Physical_Address=CT_ADDR >> 12)
    write64(its, GITS_BASER1, raw1)
    fields = R.GITS_BASER_LAYOUT.decode(read64(its, GITS_BASER1))
    assert fields["Type"] == BaserType.COLLECTIONS and fields["Entry_Size"] == 7
    assert fields["Indirect"] == 0                                   # RAZ/WI
    assert (fields["Valid"], fields["Size"], fields["Page_Size"]) == (1, 2, 1)
    errors = len(its.access_errors)
    for n in range(2, 8):
        offset = 0x100 + 8 * n
        write64(its, offset, (1 << 63) | 0x0107_0000_0000_0200)
        its.mmio_write(offset + 4, 0xFFFF_FFFF, 4)
        assert read64(its, offset) == 0
        assert its.mmio_read(offset, 4) == its.mmio_read(offset + 4, 4) == 0
    assert len(its.access_errors) == errors                          # RAZ/WI, not errors


def test_64bit_registers_as_32bit_halves(layout):
    g = Guest(layout, enable=False, map_collections=False)
    its, s = g.its, g.setup
    for offset, value in ((GITS_CBASER, cbaser_value(0x5_0000, 3)),
                          (GITS_BASER0, baser_value(BaserType.DEVICES, 0x60_0000, pages=2)),
                          (GITS_BASER1, baser_value(BaserType.COLLECTIONS, 0x70_0000,
                                                    page_size=PageSize.SIZE_4K))):
        write64(its, offset, 0)
        its.mmio_write(offset + 4, value >> 32, 4)
        assert read64(its, offset) == value & ~0xFFFF_FFFF
        its.mmio_write(offset, value & 0xFFFF_FFFF, 4)
        assert read64(its, offset) == value
        assert its.mmio_read(offset, 4) == value & 0xFFFF_FFFF
        assert its.mmio_read(offset + 4, 4) == value >> 32
    # CWRITER low half; the high half is RES0
    its.mmio_write(GITS_CWRITER, 0x60, 4)
    assert read64(its, GITS_CWRITER) == 0x60
    its.mmio_write(GITS_CWRITER + 4, 0xFFFF_FFFF, 4)
    assert read64(its, GITS_CWRITER) == 0x60
    assert its.mmio_read(GITS_CREADR + 4, 4) == 0
    # a queue built by halves works: 0x60 / 32 = 3 zeroed slots -> 3 unknown commands
    g.enable()
    assert g.ctlr() & CTLR_ENABLED
    assert g.errors() == [(0, 0, C.E_ITS_UNKNOWN_COMMAND), (32, 0, C.E_ITS_UNKNOWN_COMMAND),
                          (64, 0, C.E_ITS_UNKNOWN_COMMAND)]
    assert read64(its, GITS_CREADR) == 0x60


# Holes, wrong sizes, misaligned accesses: (offset, size)
BAD_ACCESSES = [
    (0x0010, 4), (0x0014, 4), (0x0040, 4), (0x0048, 8), (0x00A0, 8), (0x0098, 8),
    (0x0000, 8), (0x0000, 2), (0x0000, 1), (0x0004, 8), (0x0004, 2), (0x000C, 8),
    (0x0082, 4), (0x0081, 1), (0x0088, 2), (0x0089, 1), (0x0084, 8), (0x0104, 8),
    (0x0102, 2), (0x0140, 4), (0x0200, 8), (0xC000, 4), (0xFFD0, 8), (0xFFE8, 2),
    (0xFFFE, 2), (0x10000, 4), (0x10044, 4), (0x10042, 2), (0x10040, 8), (0x10040, 1),
    (0x10041, 1), (0x1FFFC, 4), (0x1FFF8, 8),
]


@pytest.mark.parametrize("offset, size", BAD_ACCESSES)
def test_invalid_accesses_are_raz_wi_and_recorded(offset, size):
    assert R.lookup(offset, size) is None                            # the table is right
    g = Guest(enable=False, map_collections=False)
    its = g.its
    watched = (GITS_CBASER, GITS_CWRITER, GITS_CREADR, GITS_BASER0, GITS_BASER1, GITS_TYPER)
    state = ({off: read64(its, off) for off in watched}, g.ctlr())
    n = len(its.access_errors)
    assert its.mmio_read(offset, size) == 0
    assert len(its.access_errors) == n + 1
    its.mmio_write(offset, (1 << (8 * size)) - 1, size)
    assert len(its.access_errors) == n + 2
    assert ({off: read64(its, off) for off in watched}, g.ctlr()) == state
    assert not g.ctlr() & CTLR_ENABLED


@pytest.mark.parametrize("missing", ["CBASER", "BASER0", "BASER1"])
def test_enable_refused_without_valid_tables(missing):
    g = Guest(enable=False, map_collections=False)
    its, s = g.its, g.setup
    offset, value = {"CBASER": (GITS_CBASER, s.cbaser), "BASER0": (GITS_BASER0, s.baser0),
                     "BASER1": (GITS_BASER1, s.baser1)}[missing]
    write64(its, offset, value & ~BASER_VALID)
    g.enable()
    assert g.ctlr() == CTLR_QUIESCENT                                # whole write dropped
    assert its.msi(0, 0) == TS.ITS_DISABLED
    write64(its, offset, value)
    g.enable()
    assert g.ctlr() == CTLR_ENABLED | CTLR_QUIESCENT


def test_cwriter_beyond_queue_is_ignored():
    g = Guest(queue_pages=1)                                         # 4 KiB: 128 slots
    its = g.its
    assert read64(its, GITS_CWRITER) == 128
    for bad in (0x1000, 0x1020, 0x2000, 0xFFFE0, 0x1001):
        write64(its, GITS_CWRITER, bad)
        assert read64(its, GITS_CWRITER) == 128
        assert g.creadr() == 128
    assert g.errors() == []
    # the last slot is inside: every zeroed slot 4..126 is an unknown command (opcode 0)
    write64(its, GITS_CWRITER, 0xFE0)
    assert read64(its, GITS_CWRITER) == g.creadr() == 0xFE0
    assert g.errors() == [(32 * i, 0, C.E_ITS_UNKNOWN_COMMAND) for i in range(4, 127)]


def test_cbaser_write_resets_creadr_and_cwriter_and_is_ignored_while_enabled(layout):
    g = Guest(layout)
    its, s = g.its, g.setup
    assert g.creadr() == 128
    other = cbaser_value(0x9_0000, 2)
    write64(its, GITS_CBASER, other)                                 # enabled: ignored
    assert read64(its, GITS_CBASER) == s.cbaser and g.creadr() == 128
    g.enable(False)
    its.mmio_write(GITS_CBASER + 4, s.cbaser >> 32, 4)               # accepted half write
    assert g.creadr() == 0 and read64(its, GITS_CWRITER) == 0        # KVM: both reset
    g.sent = 0
    g.enable()
    g.map_events(3, 2, [(1, 8200)])
    assert translation(its, 3, 1) == (8200, 0)
    assert g.creadr() == 64


def test_cwriter_retry_reads_zero():
    g = Guest()
    write64(g.its, GITS_CWRITER, 128 | 1)
    assert read64(g.its, GITS_CWRITER) == 128
    assert g.errors() == []


def test_baser_writes_ignored_while_enabled(layout):
    g = Guest(layout)
    its, s = g.its, g.setup
    g.map_events(1, 4, [(0, 8192)])
    write64(its, GITS_BASER0, s.baser0 & ~BASER_VALID)
    write64(its, GITS_BASER1, s.baser1 & ~BASER_VALID)
    its.mmio_write(GITS_BASER0, 0, 4)
    assert read64(its, GITS_BASER0) == s.baser0
    assert read64(its, GITS_BASER1) == s.baser1
    assert translation(its, 1, 0) == (8192, 0)


def test_baser0_valid0_drops_devices_and_their_pending(layout):
    g = Guest(layout)
    its, s = g.its, g.setup
    g.map_events(1, 4, [(0, 8192), (1, 8193)])
    g.map_events(2, 4, [(0, 8194)], icid=1)
    for d, e in ((1, 0), (1, 1), (2, 0)):
        assert its.msi(d, e) == TS.OK
    g.enable(False)
    assert its.msi(1, 0) == TS.ITS_DISABLED
    write64(its, GITS_BASER0, s.baser0 & ~BASER_VALID)
    assert read64(its, GITS_BASER0) == s.baser0 & ~BASER_VALID
    assert g.all_pending() == [[], [], [], []]
    write64(its, GITS_BASER0, s.baser0)
    g.enable()
    assert status(its, 1, 0) == TS.NO_DEVICE and status(its, 2, 0) == TS.NO_DEVICE
    assert its.msi(2, 0) == TS.NO_DEVICE
    g.map_events(2, 4, [(0, 8194)], icid=1)                          # collections survive
    assert translation(its, 2, 0) == (8194, 1)


def test_baser1_valid0_unmaps_collections(layout):
    g = Guest(layout)
    its, s = g.its, g.setup
    g.map_events(1, 4, [(0, 8192)], icid=2)
    assert its.msi(1, 0) == TS.OK
    g.enable(False)
    write64(its, GITS_BASER1, s.baser1 & ~BASER_VALID)
    write64(its, GITS_BASER1, s.baser1)
    g.enable()
    assert status(its, 1, 0) == TS.NO_COLLECTION
    assert its.msi(1, 0) == TS.NO_COLLECTION
    assert g.pending(2) == [8192]                                    # pending bits stay
    g.submit(C.mapc(2, 3))
    assert translation(its, 1, 0) == (8192, 3)
    assert g.errors() == []


def test_disable_stops_processing_until_reenabled():
    g = Guest()
    its = g.its
    g.map_events(1, 4, [(0, 8192)])
    g.enable(False)
    g.enqueue(C.int_(1, 0))
    g.kick()
    assert g.ctlr() == CTLR_QUIESCENT                                # disabled: quiescent
    assert read64(its, GITS_CWRITER) == g.slot(g.sent)
    assert g.creadr() == g.slot(g.sent - 1)                          # not processed
    assert g.pending(0) == []
    g.enable()
    assert g.creadr() == g.slot(g.sent)
    assert g.pending(0) == [8192]
    assert g.ctlr() == CTLR_ENABLED | CTLR_QUIESCENT


# =========================================================================================
# Commands
# =========================================================================================

def test_map_trigger_acknowledge(layout):
    g = Guest(layout)
    its = g.its
    g.set_config(8200, 0xA1)
    g.map_events(5, 4, [(3, 8200)], icid=2)
    assert translation(its, 5, 3) == (8200, 2)
    assert its.msi(5, 3) == TS.OK
    assert g.all_pending() == [[], [], [8200], []]
    assert its.acknowledge(2) == 8200
    assert g.all_pending() == [[], [], [], []]
    assert its.acknowledge(2) is None


def test_translater_doorbell(layout):
    g = Guest(layout)
    its = g.its
    g.map_events(7, 16, [(3, 8200), (0x1234, 8201), (0xFFFF, 8202)], icid=1)
    its.mmio_write(GITS_TRANSLATER, 3, 4, device_id=7)
    assert g.pending(1) == [8200]
    its.mmio_write(GITS_TRANSLATER, 0x1234, 2, device_id=7)
    its.mmio_write(GITS_TRANSLATER, 0xFFFF, 2, device_id=7)
    assert g.pending(1) == [8200, 8201, 8202]
    assert its.mmio_read(GITS_TRANSLATER, 4) == 0
    g.submit(C.clear(7, 3))
    n = len(its.access_errors)
    # A doorbell without its DeviceID is the embedding code's bug: it raises
    # and changes nothing (the LPI CLEAR removed stays not pending).
    for size in (4, 2):
        with pytest.raises(ValueError, match="device_id"):
            its.mmio_write(GITS_TRANSLATER, 3, size)
    assert len(its.access_errors) == n
    assert g.pending(1) == [8201, 8202]
    # unmapped: silently dropped, no command error
    its.mmio_write(GITS_TRANSLATER, 4, 4, device_id=7)
    its.mmio_write(GITS_TRANSLATER, 3, 4, device_id=8)
    assert g.pending(1) == [8201, 8202] and g.errors() == []


@pytest.mark.parametrize("size", [4, 2])
def test_translater_reads_as_zero_without_an_access_error(size):
    # docs/front-end.md: GITS_TRANSLATER "reads as 0"; only holes, wrong sizes and
    # misaligned accesses are recorded in access_errors (a 2- or 4-byte access is neither)
    g = Guest()
    n = len(g.its.access_errors)
    assert g.its.mmio_read(GITS_TRANSLATER, size) == 0
    assert len(g.its.access_errors) == n


def test_int_and_clear(layout):
    g = Guest(layout)
    g.map_events(1, 3, [(0, 8192), (1, 8193)], icid=3)
    g.submit(C.int_(1, 0), C.int_(1, 1), C.int_(1, 0))
    assert g.pending(3) == [8192, 8193]
    g.submit(C.clear(1, 0))
    assert g.pending(3) == [8193]
    g.submit(C.clear(1, 0))                                          # not pending: fine
    assert g.pending(3) == [8193] and g.errors() == []


def test_movi_moves_pending_between_cpus(layout):
    g = Guest(layout)
    its = g.its
    g.map_events(1, 3, [(0, 8192), (1, 8193)], icid=0)
    assert its.msi(1, 0) == TS.OK and its.msi(1, 1) == TS.OK
    g.submit(C.movi(1, 0, 2))
    assert g.all_pending() == [[8193], [], [8192], []]
    assert translation(its, 1, 0) == (8192, 2)
    g.submit(C.movi(1, 1, 1), C.movi(1, 0, 1))
    assert g.all_pending() == [[], [8192, 8193], [], []]
    # new CPU with LPIs disabled: the bit is not set there
    g.rd_write(3, GICR_CTLR, 0, 4)
    g.submit(C.movi(1, 0, 3))
    assert g.all_pending() == [[], [8193], [], []]
    assert translation(its, 1, 0) == (8192, 3)
    assert its.msi(1, 0) == TS.LPIS_DISABLED
    assert g.errors() == []


def test_discard_clears_pending_and_writes_zero_ite(layout):
    g = Guest(layout)
    its, mem = g.its, g.mem
    g.map_events(4, 5, [(9, 8300), (10, 8301)], icid=1)
    mem.write(itt(4) + 9 * 8, GARBAGE)
    mem.write(itt(4) + 10 * 8, GARBAGE)
    mem.write(itt(4) + 8 * 8, GARBAGE)
    assert its.msi(4, 9) == TS.OK and its.msi(4, 10) == TS.OK
    g.submit(C.discard(4, 9))
    assert mem.read(itt(4) + 9 * 8, 8) == bytes(8)
    assert mem.read(itt(4) + 8 * 8, 8) == GARBAGE
    assert mem.read(itt(4) + 10 * 8, 8) == GARBAGE
    assert g.pending(1) == [8301]
    assert status(its, 4, 9) == TS.NO_MAPPING and its.msi(4, 9) == TS.NO_MAPPING
    g.submit(C.mapti(4, 9, 8302, 2))                                 # the EventID is free again
    assert translation(its, 4, 9) == (8302, 2)
    assert g.errors() == []


@pytest.mark.parametrize("indirect", [False, True])
def test_mapd_v0_writes_zero_dte(layout, indirect):
    kwargs = dict(indirect=True, dt_page=PageSize.SIZE_4K, level2=(0, 2)) if indirect else {}
    g = Guest(layout, **kwargs)
    its, mem, s = g.its, g.mem, g.setup
    devices = (5, 2 * 512 + 7) if indirect else (5, 8191)
    for d in devices:
        g.map_events(d, 2, [(1, 8192 + d % 1000)])
        mem.write(s.dte_addr(d), GARBAGE)
        mem.write(s.dte_addr(d) + 8, GARBAGE)
    for d in devices:
        g.submit(C.mapd(d, 0, 1, valid=False))
        assert mem.read(s.dte_addr(d), 8) == bytes(8)
        assert mem.read(s.dte_addr(d) + 8, 8) == GARBAGE
        assert status(its, d, 1) == TS.NO_DEVICE
    if indirect:
        assert s.dte_addr(2 * 512 + 7) == DT_L2_ADDR + 4096 + 7 * 8  # by hand
        # unmapping a never-mapped device also writes the zero DTE
        mem.write(DT_L2_ADDR + 8 * 100, GARBAGE)
        g.submit(C.mapd(100, 0, 1, valid=False))
        assert mem.read(DT_L2_ADDR + 8 * 100, 8) == bytes(8)
    else:
        assert s.dte_addr(8191) == DT_ADDR + 8191 * 8
        mem.write(DT_ADDR + 8 * 100, GARBAGE)
        g.submit(C.mapd(100, 0, 1, valid=False))
        assert mem.read(DT_ADDR + 8 * 100, 8) == bytes(8)
    assert g.errors() == []


def test_mapd_remap_drops_events(layout):
    g = Guest(layout)
    its = g.its
    g.map_events(3, 4, [(0, 8192), (1, 8193)], icid=1)
    assert its.msi(3, 0) == TS.OK and its.msi(3, 1) == TS.OK
    g.submit(C.mapd(3, itt(3), 6))
    assert status(its, 3, 0) == TS.NO_MAPPING and status(its, 3, 1) == TS.NO_MAPPING
    assert status(its, 3, 63) == TS.NO_MAPPING and status(its, 3, 64) == TS.EVENT_OUT_OF_RANGE
    assert g.pending(1) == []
    g.submit(C.mapti(3, 0, 8192, 1))                                 # no ALREADY_MAPPED
    assert translation(its, 3, 0) == (8192, 1) and g.errors() == []


def test_mapc_unmap_then_remap(layout):
    g = Guest(layout)
    its = g.its
    g.map_events(1, 2, [(0, 8192)], icid=2)
    g.submit(C.mapc(2, 0, valid=False))
    assert status(its, 1, 0) == TS.NO_COLLECTION
    assert its.msi(1, 0) == TS.NO_COLLECTION
    g.submit(C.mapc(2, 0, valid=False))                              # unmapped: no error
    g.submit(C.mapc(2, 1))
    assert translation(its, 1, 0) == (8192, 1)
    assert its.msi(1, 0) == TS.OK and g.pending(1) == [8192]
    g.submit(C.mapc(2, 3))                                           # retarget: no bit moves
    assert g.all_pending() == [[], [8192], [], []]
    assert g.errors() == []


def test_movall(layout):
    g = Guest(layout)
    its = g.its
    g.map_events(1, 3, [(0, 8192), (1, 8193)], icid=0)
    g.map_events(2, 3, [(0, 8194)], icid=1)
    for d, e in ((1, 0), (1, 1), (2, 0)):
        assert its.msi(d, e) == TS.OK
    g.submit(C.movall(0, 0))
    assert g.all_pending() == [[8192, 8193], [8194], [], []]
    g.submit(C.movall(0, 1))
    assert g.all_pending() == [[], [8192, 8193, 8194], [], []]
    assert translation(its, 1, 0) == (8192, 0)                       # mappings untouched
    g.rd_write(3, GICR_CTLR, 0, 4)
    g.submit(C.movall(1, 3))                                         # target disabled
    assert g.all_pending() == [[], [], [], []]
    assert g.errors() == []


def test_inv_makes_config_edits_visible(layout):
    g = Guest(layout)
    its = g.its
    g.set_config(8192, 0x81)                                         # prio 0x80, enabled
    g.set_config(8193, 0x41)                                         # prio 0x40, enabled
    g.map_events(1, 2, [(0, 8192), (1, 8193)], icid=0)
    assert its.msi(1, 0) == TS.OK and its.msi(1, 1) == TS.OK
    g.set_config(8193, 0x40)                                         # disable 8193 in memory
    assert its.acknowledge(0) == 8193                                # cached config still on
    assert its.msi(1, 1) == TS.OK
    g.submit(C.sync(0))
    assert its.acknowledge(0) == 8193                                # SYNC reloads nothing
    assert its.msi(1, 1) == TS.OK
    g.submit(C.inv(1, 1))
    assert its.acknowledge(0) == 8192
    assert its.acknowledge(0) is None
    assert g.pending(0) == [8193]
    g.set_config(8193, 0x01)                                         # enable, priority 0
    g.submit(C.inv(1, 1))
    assert its.acknowledge(0) == 8193
    assert g.errors() == []


def test_invall_reloads_the_cpus_lpis_only(layout):
    g = Guest(layout)
    its = g.its
    g.submit(C.mapc(5, 0))
    g.map_events(1, 2, [(0, 8192), (1, 8193)], icid=0)
    g.map_events(2, 2, [(0, 8194)], icid=5)                          # another ICID, same CPU
    g.map_events(3, 2, [(0, 8195)], icid=1)                          # CPU 1
    for intid in (8192, 8193, 8194, 8195):
        g.set_config(intid, 0x11)
    for d, e in ((1, 0), (1, 1), (2, 0), (3, 0)):
        assert its.msi(d, e) == TS.OK
    assert its.acknowledge(0) is None and its.acknowledge(1) is None
    g.submit(C.invall(0))
    assert sorted(its.acknowledge(0) for _ in range(3)) == [8192, 8193, 8194]
    assert its.acknowledge(1) is None                                # CPU 1 not reloaded
    g.submit(C.invall(1))
    assert its.acknowledge(1) == 8195
    assert g.errors() == []


def test_acknowledge_priority_order_and_ties(layout):
    g = Guest(layout)
    its = g.its
    configs = {8192: 0xA1, 8193: 0x21, 8194: 0x23, 8195: 0x20, 8196: 0x03, 8197: 0xFF,
               8198: 0x02, 8199: 0x21}
    for intid, byte in configs.items():
        g.set_config(intid, byte)
    g.map_events(1, 4, [(e, 8192 + e) for e in range(8)], icid=2)
    for e in reversed(range(8)):
        assert its.msi(1, e) == TS.OK
    # enabled: 8196 (0x00), 8193/8194/8199 (0x20), 8192 (0xA0), 8197 (0xFC)
    assert [its.acknowledge(2) for _ in range(7)] == [8196, 8193, 8194, 8199, 8192, 8197, None]
    assert g.pending(2) == [8195, 8198]


def test_queue_wraps_over_several_laps(layout):
    g = Guest(layout, queue_pages=1)                                 # 128 slots
    its = g.its
    g.map_events(1, 10, [(e, 8192 + e) for e in range(40)], icid=1)
    start = g.sent
    stream, expected_errors = [], []
    for i in range(3 * 128 + 77):
        e = i % 40
        if i % 50 == 49:
            stream.append(C.int_(1, 600 + i % 7))                    # unmapped event
            expected_errors.append((g.slot(start + i), 0x03, C.E_ITS_INT_UNMAPPED_INTERRUPT))
        elif (i // 40) % 2 == 0:
            stream.append(C.int_(1, e))
        else:
            stream.append(C.clear(1, e))
    # submit in uneven batches, some larger than the queue
    for lo, hi in ((0, 5), (5, 200), (200, 330), (330, len(stream))):
        g.submit(*stream[lo:hi])
    total = g.sent
    assert read64(its, GITS_CWRITER) == g.slot(total) == g.creadr()
    assert g.errors() == expected_errors
    pending = set()
    for i in range(3 * 128 + 77):
        if i % 50 == 49:
            continue
        e = i % 40
        if (i // 40) % 2 == 0:
            pending.add(8192 + e)
        else:
            pending.discard(8192 + e)
    assert g.pending(1) == sorted(pending)
    # the queue memory holds the last packets at their wrapped slots
    for i in range(total - 5, total):
        data = g.mem.read(g.setup.queue_addr + g.slot(i), 32)
        assert data == stream[i - start]


def test_queue_hand_written_with_wrap():
    g = Guest(queue_pages=1)
    its = g.its
    g.map_events(2, 4, [(e, 9000 + e) for e in range(16)], icid=3)
    for lap in range(4):
        g.enqueue(*(C.int_(2, e) for e in range(16)))
        g.enqueue(*(C.clear(2, e) for e in range(0, 16, 2)))
        g.kick()
        assert g.creadr() == g.slot(g.sent)
        assert g.pending(3) == [9000 + e for e in range(1, 16, 2)]
        g.enqueue(*(C.clear(2, e) for e in range(16)), *(C.sync(3) for _ in range(100)))
        g.kick()
        assert g.pending(3) == []
    assert g.sent > 3 * 128 and g.errors() == []


# =========================================================================================
# Command errors: every path of docs/front-end.md
# =========================================================================================

def _mapped(g):
    """Device 1 (4 EventID bits): event 0 -> 8192 in ICID 0; event 1 -> 8193 in ICID 9 (unmapped).
    CPU 3 has LPIs disabled; ICID 3 -> CPU 3; event 2 -> 8194 in ICID 3."""
    g.submit(C.mapd(1, itt(1), 4), C.mapti(1, 0, 8192, 0), C.mapti(1, 1, 8193, 9),
             C.mapti(1, 2, 8194, 3))


ERROR_CASES = {
    # name: (packet, code); run after _mapped on a Guest with a 4 KiB collection table
    "mapd_device_oor_table": (C.mapd(8192, itt(2), 4), C.E_ITS_MAPD_DEVICE_OOR),
    "mapd_device_oor_v0": (C.mapd(8192, 0, 1, valid=False), C.E_ITS_MAPD_DEVICE_OOR),
    "mapd_device_oor_devbits": (C.mapd(2**16, itt(2), 4), C.E_ITS_MAPD_DEVICE_OOR),
    "mapd_device_oor_first": (C.mapd(2**32 - 1, itt(2), 17), C.E_ITS_MAPD_DEVICE_OOR),
    "mapd_ittsize": (C.mapd(2, itt(2), 17), C.E_ITS_MAPD_ITTSIZE_OOR),
    "mapc_procnum": (C.mapc(4, 4), C.E_ITS_MAPC_PROCNUM_OOR),
    "mapc_procnum_first": (C.mapc(512, 2**32 - 1), C.E_ITS_MAPC_PROCNUM_OOR),
    "mapc_collection": (C.mapc(512, 0), C.E_ITS_MAPC_COLLECTION_OOR),
    "mapti_unmapped_device": (C.mapti(2, 0, 8192, 0), C.E_ITS_MAPTI_UNMAPPED_DEVICE),
    "mapti_event_oor": (C.mapti(1, 16, 8192, 0), C.E_ITS_MAPTI_ID_OOR),
    "mapti_event_before_intid": (C.mapti(1, 16, 5, 600), C.E_ITS_MAPTI_ID_OOR),
    "mapti_intid_low": (C.mapti(1, 5, 8191, 0), C.E_ITS_MAPTI_PHYSICALID_OOR),
    "mapti_intid_high": (C.mapti(1, 5, 65536, 0), C.E_ITS_MAPTI_PHYSICALID_OOR),
    "mapti_intid_before_mapped": (C.mapti(1, 0, 3, 0), C.E_ITS_MAPTI_PHYSICALID_OOR),
    "mapti_already_mapped": (C.mapti(1, 0, 8200, 0), C.E_ITS_MAPTI_ID_ALREADY_MAPPED),
    "mapti_mapped_before_icid": (C.mapti(1, 0, 8200, 600), C.E_ITS_MAPTI_ID_ALREADY_MAPPED),
    "mapti_icid": (C.mapti(1, 5, 8200, 512), C.E_ITS_MAPC_COLLECTION_OOR),
    "mapi_unmapped_device": (C.mapi(2, 8192, 0), C.E_ITS_MAPTI_UNMAPPED_DEVICE),
    "mapi_event_oor": (C.mapi(1, 8192, 0), C.E_ITS_MAPTI_ID_OOR),
    "mapi_intid": (C.mapi(1, 7, 0), C.E_ITS_MAPTI_PHYSICALID_OOR),
    "movi_no_device": (C.movi(2, 0, 0), C.E_ITS_MOVI_UNMAPPED_INTERRUPT),
    "movi_event_oor": (C.movi(1, 16, 0), C.E_ITS_MOVI_UNMAPPED_INTERRUPT),
    "movi_no_ite": (C.movi(1, 5, 0), C.E_ITS_MOVI_UNMAPPED_INTERRUPT),
    "movi_old_collection": (C.movi(1, 1, 0), C.E_ITS_MOVI_UNMAPPED_COLLECTION),
    "movi_new_collection": (C.movi(1, 0, 9), C.E_ITS_MOVI_UNMAPPED_COLLECTION),
    "movi_new_collection_oor": (C.movi(1, 0, 65535), C.E_ITS_MOVI_UNMAPPED_COLLECTION),
    "discard_no_ite": (C.discard(1, 5), C.E_ITS_DISCARD_UNMAPPED_INTERRUPT),
    "discard_no_device": (C.discard(3, 0), C.E_ITS_DISCARD_UNMAPPED_INTERRUPT),
    "discard_collection": (C.discard(1, 1), C.E_ITS_DISCARD_UNMAPPED_INTERRUPT),
    "inv_no_ite": (C.inv(1, 5), C.E_ITS_INV_UNMAPPED_INTERRUPT),
    "inv_event_oor": (C.inv(1, 100), C.E_ITS_INV_UNMAPPED_INTERRUPT),
    "invall_unmapped": (C.invall(9), C.E_ITS_INVALL_UNMAPPED_COLLECTION),
    "invall_oor": (C.invall(65535), C.E_ITS_INVALL_UNMAPPED_COLLECTION),
    "int_no_ite": (C.int_(1, 5), C.E_ITS_INT_UNMAPPED_INTERRUPT),
    "int_collection": (C.int_(1, 1), C.E_ITS_INT_UNMAPPED_INTERRUPT),
    "int_lpis_disabled": (C.int_(1, 2), C.E_ITS_INT_LPIS_DISABLED),
    "clear_no_ite": (C.clear(4, 0), C.E_ITS_CLEAR_UNMAPPED_INTERRUPT),
    "clear_collection": (C.clear(1, 1), C.E_ITS_CLEAR_UNMAPPED_INTERRUPT),
    "movall_from": (C.movall(4, 0), C.E_ITS_MOVALL_PROCNUM_OOR),
    "movall_to": (C.movall(0, 2**32 - 1), C.E_ITS_MOVALL_PROCNUM_OOR),
    "unknown_0x00": (bytes(32), C.E_ITS_UNKNOWN_COMMAND),
    "unknown_0x02": (bytes([0x02]) + bytes(31), C.E_ITS_UNKNOWN_COMMAND),
    "unknown_vmapp": (bytes([0x29]) + b"\xff" * 31, C.E_ITS_UNKNOWN_COMMAND),
    "unknown_0xff": (b"\xff" * 32, C.E_ITS_UNKNOWN_COMMAND),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_command_error(layout, case):
    packet, code = ERROR_CASES[case]
    g = Guest(layout, ct_page=PageSize.SIZE_4K, enable_lpis={0, 1, 2})   # 512 ICIDs
    _mapped(g)
    g.submit(C.mapc(3, 3))
    assert g.errors() == []
    before = [(d, e, status(g.its, d, e)) for d in range(4) for e in range(4)]
    g.submit(C.sync(0))
    [offset] = g.submit(packet)
    g.submit(C.int_(1, 0))                                           # the queue goes on
    assert len(g.its.errors) == 1
    error = g.its.errors[-1]
    assert (error.code, error.opcode, error.offset) == (code, packet[0], offset)
    assert g.pending(0) == [8192]
    assert [(d, e, status(g.its, d, e)) for d in range(4) for e in range(4)] == before


def test_command_read_fault():
    g = Guest(map_collections=False, enable=False)
    outside = MEM_BYTES + 0x10000                                    # the queue is not in RAM
    write64(g.its, GITS_CBASER, cbaser_value(outside, 1))
    write64(g.its, GITS_CWRITER, 0)
    g.enable()
    assert g.ctlr() & CTLR_ENABLED
    write64(g.its, GITS_CWRITER, 64)
    codes = [(e.offset, e.code) for e in g.its.errors]
    assert codes == [(0, C.E_ITS_CMD_READ_FAULT), (32, C.E_ITS_CMD_READ_FAULT)]
    assert g.creadr() == 64


def test_command_read_fault_straddling_the_end_of_memory():
    mem_bytes = 8 << 20
    g = Guest(map_collections=False, mem_bytes=mem_bytes, queue_addr=mem_bytes - 4096,
              queue_pages=2, intid_bits=14, prop_addr=0x40_0000, pend_addr=0x50_0000)
    g.enqueue(*(C.mapc(cpu, cpu) for cpu in range(4)))
    g.sent = 130                                                     # two slots past the end
    g.kick()
    assert [(e.offset, e.code) for e in g.its.errors][-2:] == [(4096, C.E_ITS_CMD_READ_FAULT),
                                                               (4128, C.E_ITS_CMD_READ_FAULT)]
    assert len(g.its.errors) == 2 + (128 - 4)                        # zero slots: unknown
    assert all(e.code == C.E_ITS_UNKNOWN_COMMAND for e in list(g.its.errors)[:-2])
    assert g.creadr() == 4160
    assert g.errors()[0] == (128, 0, C.E_ITS_UNKNOWN_COMMAND)


# =========================================================================================
# Stall mode
# =========================================================================================

def test_stall_then_retry_after_fixing_the_lpi_enable(layout):
    g = Guest(layout, stall_on_error=True, enable_lpis={0, 1, 2})
    its = g.its
    g.map_events(1, 4, [(0, 8192), (1, 8193)], icid=3)               # CPU 3: LPIs disabled
    g.map_events(2, 4, [(0, 8194)], icid=0)
    offsets = g.submit(C.int_(2, 0), C.int_(1, 0), C.int_(1, 1))
    error = its.errors[-1]
    assert (error.code, error.opcode, error.offset) == (C.E_ITS_INT_LPIS_DISABLED, 3, offsets[1])
    assert len(its.errors) == 1
    assert g.creadr() == offsets[1] | STALLED
    assert g.ctlr() == CTLR_ENABLED                                  # not quiescent
    assert g.pending(0) == [8194]                                    # the one before ran
    g.kick()                                                         # no Retry: still stalled
    assert g.creadr() == offsets[1] | STALLED
    g.rd_write(3, GICR_CTLR, 1, 4)                                   # the guest fixes it
    assert g.creadr() == offsets[1] | STALLED
    g.kick(retry=True)
    assert g.creadr() == g.slot(g.sent)
    assert read64(its, GITS_CWRITER) == g.slot(g.sent)               # Retry reads 0
    assert g.pending(3) == [8192, 8193]
    assert g.ctlr() == CTLR_ENABLED | CTLR_QUIESCENT
    assert len(its.errors) == 1


def test_stall_then_retry_after_rewriting_the_command(layout):
    g = Guest(layout, stall_on_error=True)
    its = g.its
    g.map_events(1, 4, [(0, 8192)], icid=1)
    offsets = g.enqueue(C.mapti(1, 0, 8200, 1), C.int_(1, 0), C.mapti(1, 1, 8201, 2))
    g.kick()
    assert g.errors() == [(offsets[0], 0x0A, C.E_ITS_MAPTI_ID_ALREADY_MAPPED)]
    assert g.creadr() == offsets[0] | STALLED
    assert g.pending(1) == []
    # more commands queued while stalled are not executed
    more = g.enqueue(C.int_(1, 1))
    g.kick()
    assert g.creadr() == offsets[0] | STALLED
    assert status(its, 1, 1) == TS.NO_MAPPING
    g.mem.write(g.setup.queue_addr + offsets[0], C.sync(0))          # replace the bad command
    g.kick(retry=True)
    assert g.creadr() == g.slot(g.sent) == more[0] + 32
    assert g.pending(1) == [8192] and g.pending(2) == [8201]
    assert len(its.errors) == 1


def test_stall_retry_failing_again_stays_stalled():
    g = Guest(stall_on_error=True)
    offsets = g.submit(C.int_(5, 5), C.mapd(5, itt(5), 4))
    assert g.creadr() == offsets[0] | STALLED
    g.kick(retry=True)
    assert g.creadr() == offsets[0] | STALLED
    assert all(e.code == C.E_ITS_INT_UNMAPPED_INTERRUPT and e.offset == offsets[0]
               for e in g.its.errors)
    assert status(g.its, 5, 0) == TS.NO_DEVICE                       # MAPD not reached


def test_stall_mapd_fixed_by_writing_the_level1_descriptor(layout):
    g = Guest(layout, stall_on_error=True, indirect=True, dt_page=PageSize.SIZE_4K, level2=(0,))
    its, mem, s = g.its, g.mem, g.setup
    offsets = g.submit(C.mapd(600, itt(6), 4), C.mapti(600, 3, 8300, 2))
    assert (its.errors[-1].code, its.errors[-1].offset) == (C.E_ITS_MAPD_DEVICE_OOR, offsets[0])
    assert g.creadr() == offsets[0] | STALLED
    mem.write_u64(s.dt_addr + 8, (1 << 63) | (DT_L2_ADDR + 0x4000))
    g.kick(retry=True)
    assert g.creadr() == g.slot(g.sent)
    assert translation(its, 600, 3) == (8300, 2)


def test_without_stall_the_failing_command_is_skipped():
    g = Guest(stall_on_error=False, enable_lpis={0, 1, 2})
    g.map_events(1, 4, [(0, 8192)], icid=3)
    g.map_events(2, 4, [(0, 8194)], icid=0)
    offsets = g.submit(C.int_(1, 0), C.int_(2, 0))
    assert g.errors() == [(offsets[0], 3, C.E_ITS_INT_LPIS_DISABLED)]
    assert g.creadr() == g.slot(g.sent)
    assert g.pending(0) == [8194]


# =========================================================================================
# Doorbell
# =========================================================================================

def test_doorbell_statuses(layout):
    g = Guest(layout, device_bits=12, enable_lpis={0, 1, 2})
    its = g.its
    g.map_events(1, 3, [(0, 8192), (2, 8194), (3, 30000)], icid=0)
    g.submit(C.mapti(1, 1, 8193, 77), C.movi(1, 2, 3))              # ICID 77 never mapped
    assert g.errors() == []
    assert its.msi(4096, 0) == TS.DEVICE_OUT_OF_RANGE
    assert its.msi(2**32 - 1, 0) == TS.DEVICE_OUT_OF_RANGE
    assert its.msi(2, 0) == TS.NO_DEVICE
    assert its.msi(1, 8) == TS.EVENT_OUT_OF_RANGE
    assert its.msi(1, 2**32 - 1) == TS.EVENT_OUT_OF_RANGE
    assert its.msi(1, 4) == TS.NO_MAPPING
    assert its.msi(1, 1) == TS.NO_COLLECTION
    assert its.msi(1, 2) == TS.LPIS_DISABLED
    assert its.msi(1, 3) == TS.OK
    assert g.all_pending() == [[30000], [], [], []]
    # lower the LPI limit: PROPBASER is written through CPU 3 (its LPIs are disabled)
    g.rd_write(3, GICR_PROPBASER, propbaser_value(PROP_ADDR, 13))
    assert g.rd_read(0, GICR_PROPBASER) == propbaser_value(PROP_ADDR, 13)
    assert its.msi(1, 3) == TS.INTID_OUT_OF_RANGE
    assert its.msi(1, 0) == TS.OK
    g.submit(C.int_(1, 3))                                           # beyond the limit: nothing
    assert g.errors() == []
    assert g.all_pending() == [[8192, 30000], [], [], []]
    g.enable(False)
    assert its.msi(1, 0) == TS.ITS_DISABLED
    assert its.msi(2**32 - 1, 0) == TS.ITS_DISABLED


def test_msi_batch_equals_msi_loop(layout):
    results = []
    for batch in (False, True):
        g = Guest(layout, device_bits=8, enable_lpis={0, 1, 3})
        g.map_events(1, 4, [(e, 8192 + e) for e in range(0, 16, 2)], icid=2)
        g.map_events(2, 4, [(e, 9000 + e) for e in range(8)], icid=1)
        g.map_events(3, 2, [(0, 9100)], icid=7)
        devices = np.array([1, 1, 2, 2, 3, 4, 1, 256, 2, 1, 2, 3], dtype=np.uint32)
        events = np.array([0, 1, 3, 9, 0, 0, 14, 0, 7, 2, 3, 4], dtype=np.uint32)
        if batch:
            statuses = [int(s) for s in g.its.msi_batch(devices, events)]
        else:
            statuses = [int(g.its.msi(int(d), int(e))) for d, e in zip(devices, events)]
        results.append((statuses, g.all_pending()))
    assert results[0] == results[1]
    statuses, pending = results[0]
    assert statuses == [TS.LPIS_DISABLED, TS.NO_MAPPING, TS.OK, TS.NO_MAPPING,
                        TS.NO_COLLECTION, TS.NO_DEVICE, TS.LPIS_DISABLED,
                        TS.DEVICE_OUT_OF_RANGE, TS.OK, TS.LPIS_DISABLED, TS.OK,
                        TS.EVENT_OUT_OF_RANGE]
    assert pending == [[], [9003, 9007], [], []]


def test_msi_batch_while_disabled():
    g = Guest()
    g.map_events(1, 4, [(0, 8192)])
    g.enable(False)
    out = g.its.msi_batch(np.array([1, 1], np.uint32), np.array([0, 0], np.uint32))
    assert out.dtype == np.uint8 and list(out) == [TS.ITS_DISABLED, TS.ITS_DISABLED]
    assert g.pending(0) == []
    with pytest.raises(ValueError, match="differ in length"):           # still checked
        g.its.msi_batch(np.array([1, 1], np.uint32), np.array([0], np.uint32))


def test_msi_batch_reports_the_cpu_of_each_delivered_lpi(layout):
    g = Guest(layout)
    g.map_events(1, 4, [(0, 8192), (1, 8193)], icid=1)               # collection 1 -> CPU 1
    g.map_events(2, 4, [(0, 8194)], icid=2)                           # collection 2 -> CPU 2
    g.its.redistributors.mmio_write(2, R.GICR_CTLR.offset, 0, 4)      # CPU 2: LPIs disabled
    cpus = np.full(5, 99, np.int32)
    statuses = g.its.msi_batch(np.array([1, 1, 2, 1, 9], np.uint32),
                               np.array([0, 1, 0, 7, 0], np.uint32), cpus_out=cpus)
    assert list(statuses) == [TS.OK, TS.OK, TS.LPIS_DISABLED, TS.NO_MAPPING, TS.NO_DEVICE]
    assert cpus.tolist() == [1, 1, -1, -1, -1]
    assert g.pending(1) == [8192, 8193]
    for bad in (np.empty(4, np.int32), np.empty(5, np.int64), [0] * 5):
        with pytest.raises(ValueError, match="cpus_out"):
            g.its.msi_batch(np.array([1] * 5, np.uint32), np.zeros(5, np.uint32), cpus_out=bad)
    g.enable(False)
    g.its.msi_batch(np.array([1], np.uint32), np.array([0], np.uint32), cpus_out=cpus[:1])
    assert cpus[0] == -1


def test_msi_batch_while_disabled_does_not_translate():
    class Untouchable:
        def translate_batch(self, *args, **kwargs):
            raise AssertionError("a disabled ITS translated a batch")

    g = Guest()
    g.map_events(1, 4, [(0, 8192)])
    g.enable(False)
    tables, g.its.tables = g.its.tables, Untouchable()
    try:
        out = g.its.msi_batch(np.arange(1000, dtype=np.uint32) % 2, np.zeros(1000, np.uint32))
    finally:
        g.its.tables = tables
    assert (out == TS.ITS_DISABLED).all() and g.pending(0) == []


# =========================================================================================
# Redistributors
# =========================================================================================

def test_enable_lpis_loads_the_pending_table(layout):
    g = Guest(layout, enable_lpis=False, idbits=13)                  # limit 16384
    its, mem, s = g.its, g.mem, g.setup
    pend = s.pend_addr(1)
    mem.write(pend, b"\xff" * 1024)                                  # INTIDs 0..8191
    mem.write(pend + 1024, b"\x05")                                  # 8192, 8194
    mem.write(pend + 1500, b"\x80")                                  # 12007
    mem.write(pend + 2047, b"\x80")                                  # 16383
    mem.write(pend + 2048, b"\xff" * 16)                             # beyond the limit
    snapshot = mem.read(pend, 4096)
    g.rd_write(1, GICR_CTLR, 1, 4)
    assert g.all_pending() == [[], [8192, 8194, 12007, 16383], [], []]
    assert mem.read(pend, 4096) == snapshot                          # the table is not written
    g.rd_write(1, GICR_CTLR, 0, 4)
    assert g.pending(1) == []                                        # dropped
    assert mem.read(pend, 4096) == snapshot
    g.rd_write(1, GICR_CTLR, 1, 4)
    assert g.pending(1) == [8192, 8194, 12007, 16383]                # loaded again


def test_enable_lpis_with_ptz_ignores_the_table():
    g = Guest(enable_lpis=False, ptz=True)
    mem, s = g.mem, g.setup
    mem.write(s.pend_addr(0) + 1024, b"\xff")
    g.rd_write(0, GICR_CTLR, 1, 4)
    assert g.pending(0) == []
    assert g.rd_read(0, GICR_PENDBASER) == s.pendbaser[0] & ~(1 << 62)
    # PTZ acts at the moment of enabling: rewrite PENDBASER without it
    g.rd_write(0, GICR_CTLR, 0, 4)
    g.rd_write(0, GICR_PENDBASER, pendbaser_value(s.pend_addr(0), ptz=False))
    g.rd_write(0, GICR_CTLR, 1, 4)
    assert g.pending(0) == list(range(8192, 8200))


def test_enable_lpis_loads_config_for_all_lpis():
    g = Guest(enable_lpis={0})
    its = g.its
    g.map_events(1, 2, [(0, 8192), (1, 8193)], icid=1)               # CPU 1 is disabled
    g.set_config(8192, 0x31)
    g.set_config(8193, 0x11)
    g.submit(C.mapc(1, 0))
    assert its.msi(1, 0) == TS.OK and its.msi(1, 1) == TS.OK
    assert its.acknowledge(0) is None                                # config cached at MAPTI: 0
    g.rd_write(2, GICR_CTLR, 1, 4)                                   # any CPU: whole cache
    assert its.acknowledge(0) == 8193 and its.acknowledge(0) == 8192


def test_redistributor_bases_ignored_while_lpis_enabled():
    g = Guest(enable_lpis={0})
    s = g.setup
    g.rd_write(0, GICR_PROPBASER, propbaser_value(0x90_0000, 13))
    g.rd_write(0, GICR_PENDBASER, pendbaser_value(0x90_0000))
    assert g.rd_read(0, GICR_PROPBASER) == s.propbaser
    assert g.rd_read(0, GICR_PENDBASER) == s.pendbaser[0]
    g.rd_write(1, GICR_PENDBASER, pendbaser_value(0x90_0000))
    assert g.rd_read(1, GICR_PENDBASER) == pendbaser_value(0x90_0000)
    g.rd_write(1, GICR_PROPBASER, propbaser_value(0x90_0000, 13))
    assert g.rd_read(0, GICR_PROPBASER) == propbaser_value(0x90_0000, 13)   # shared
    # 32-bit halves
    g.rd_write(1, GICR_PENDBASER + 4, 1, 4)                          # PA bit 32
    assert g.rd_read(1, GICR_PENDBASER) == pendbaser_value(0x90_0000) | 1 << 32
    assert g.rd_read(1, GICR_PENDBASER + 4, 4) == 1
    assert g.rd_read(1, GICR_PENDBASER, 4) == pendbaser_value(0x90_0000) & 0xFFFF_FFFF


# =========================================================================================
# Reset
# =========================================================================================

def test_reset(layout):
    g = Guest(layout, stall_on_error=True)
    its, s = g.its, g.setup
    g.map_events(1, 4, [(0, 8192)], icid=1)
    assert its.msi(1, 0) == TS.OK
    g.submit(C.int_(9, 9))                                           # stalls, error recorded
    iidr = its.mmio_read(GITS_IIDR, 4)
    typer = read64(its, GITS_TYPER)
    assert len(its.errors) == 1
    its.reset()
    assert g.ctlr() == CTLR_QUIESCENT
    assert read64(its, GITS_BASER0) == s.baser0 & ~BASER_VALID
    assert read64(its, GITS_BASER1) == s.baser1 & ~BASER_VALID
    assert read64(its, GITS_CBASER) == 0
    assert read64(its, GITS_CREADR) == 0 and read64(its, GITS_CWRITER) == 0
    assert len(its.errors) == 0
    assert its.mmio_read(GITS_IIDR, 4) == iidr and read64(its, GITS_TYPER) == typer
    # redistributor state is kept
    assert g.pending(1) == [8192]
    assert g.rd_read(1, GICR_CTLR, 4) & 1 == 1
    assert g.rd_read(1, GICR_PROPBASER) == s.propbaser
    assert its.msi(1, 0) == TS.ITS_DISABLED
    g.enable()
    assert g.ctlr() == CTLR_QUIESCENT                                # CBASER/BASER not valid
    # bring the ITS up again: no devices, collections or mappings survived
    write64(its, GITS_CBASER, s.cbaser)
    write64(its, GITS_BASER0, s.baser0)
    write64(its, GITS_BASER1, s.baser1)
    g.enable()
    assert g.ctlr() == CTLR_ENABLED | CTLR_QUIESCENT
    assert status(its, 1, 0) == TS.NO_DEVICE
    g.sent = 0
    g.map_events(1, 4, [(0, 8192)], icid=1)
    assert status(its, 1, 0) == TS.NO_COLLECTION
    assert g.errors() == []


# =========================================================================================
# Table geometry from BASER / CBASER fields
# =========================================================================================

@pytest.mark.parametrize("page_size, page", [(PageSize.SIZE_4K, 4096), (PageSize.SIZE_16K, 16384),
                                             (PageSize.SIZE_64K, 65536), (3, 65536)])
@pytest.mark.parametrize("pages", [1, 2])
def test_flat_device_table_slots_follow_page_size_and_size(layout, page_size, page, pages):
    g = Guest(layout, dt_page=page_size, dt_pages=pages)
    slots = pages * page // 8
    g.mem.write(DT_ADDR + 8 * (slots - 1), GARBAGE)
    offsets = g.submit(C.mapd(slots - 1, 0, 1, valid=False), C.mapd(slots, 0, 1, valid=False))
    assert g.mem.read(DT_ADDR + 8 * (slots - 1), 8) == bytes(8)
    assert g.errors() == [(offsets[1], 0x08, C.E_ITS_MAPD_DEVICE_OOR)]


@pytest.mark.parametrize("page_size, page", [(PageSize.SIZE_4K, 4096), (PageSize.SIZE_16K, 16384),
                                             (PageSize.SIZE_64K, 65536)])
def test_indirect_device_table_geometry(layout, page_size, page):
    # level-1 table of one page; entries 0 and 3 valid
    g = Guest(layout, device_bits=20, indirect=True, dt_page=page_size, level2=(0, 3))
    per_page = page // 8
    level2 = [DT_L2_ADDR, DT_L2_ADDR + page]
    cases = [(0, level2[0]), (per_page - 1, level2[0] + 8 * (per_page - 1)),
             (3 * per_page + 5, level2[1] + 40)]
    for device_id, dte in cases:
        g.mem.write(dte, GARBAGE)
        g.submit(C.mapd(device_id, 0, 1, valid=False))
        assert g.mem.read(dte, 8) == bytes(8), device_id
    assert g.errors() == []
    bad = [per_page, 2 * per_page + 1, 4 * per_page]
    if page // 8 * per_page < 2**20:               # beyond the level-1 table itself
        bad.append(page // 8 * per_page)
    for device_id in bad:
        [offset] = g.submit(C.mapd(device_id, itt(1), 2))
        assert g.errors()[-1] == (offset, 0x08, C.E_ITS_MAPD_DEVICE_OOR), device_id


def test_indirect_level2_address_ignores_bits_outside_51_to_page():
    g = Guest(indirect=True, dt_page=PageSize.SIZE_4K, level2=(0,))
    # level-1 entry 1: junk in bits [62:52] and [11:0]
    g.mem.write_u64(DT_ADDR + 8, (1 << 63) | (0x7FF << 52) | 0x0030_0000 | 0xFFF)
    g.mem.write(0x0030_0000 + 8 * 7, GARBAGE)
    g.submit(C.mapd(512 + 7, 0, 1, valid=False))
    assert g.mem.read(0x0030_0000 + 8 * 7, 8) == bytes(8)
    assert g.errors() == []


def test_64k_baser_address_bits_15_12_are_pa_51_48():
    g = Guest(enable=False, map_collections=False, mem_bytes=MEM_BYTES)
    its = g.its
    # the same Physical_Address field: with 64 KiB pages bits [15:12] mean PA[51:48]
    field = (DT_ADDR >> 12) | 0x1
    for page_size, expect_inside in ((PageSize.SIZE_4K, True), (PageSize.SIZE_64K, False)):
        baser0 = R.GITS_BASER_LAYOUT.encode(Valid=1, Type=1, Entry_Size=7, Page_Size=page_size,
                                            Physical_Address=field)
        g.enable(False)
        write64(its, GITS_BASER0, baser0)
        g.enable()
        assert g.ctlr() & CTLR_ENABLED
        g.mem.write(DT_ADDR + 0x1000 + 8 * 3, GARBAGE)
        before = len(its.errors)
        g.submit(C.mapd(3, 0, 1, valid=False))
        if expect_inside:                           # table at DT_ADDR + 0x1000
            assert len(its.errors) == before
            assert g.mem.read(DT_ADDR + 0x1000 + 8 * 3, 8) == bytes(8)
        else:                                       # table at DT_ADDR + 2**48: no slot
            assert its.errors[-1].code == C.E_ITS_MAPD_DEVICE_OOR


@pytest.mark.parametrize("page_size, page", [(PageSize.SIZE_4K, 4096), (PageSize.SIZE_16K, 16384),
                                             (PageSize.SIZE_64K, 65536)])
@pytest.mark.parametrize("pages", [1, 3])
def test_collection_table_slots(page_size, page, pages):
    g = Guest(ct_page=page_size, ct_pages=pages, map_collections=False)
    slots = min(pages * page // 8, 65536)
    offsets = g.submit(C.mapc(slots - 1, 1), C.mapc(slots, 1) if slots < 65536 else C.sync(0),
                       C.mapd(1, itt(1), 2), C.mapti(1, 0, 8192, slots - 1),
                       C.mapti(1, 1, 8193, slots) if slots < 65536 else C.sync(0))
    expected = [] if slots >= 65536 else [(offsets[1], 0x09, C.E_ITS_MAPC_COLLECTION_OOR),
                                          (offsets[4], 0x0A, C.E_ITS_MAPC_COLLECTION_OOR)]
    assert g.errors() == expected
    assert translation(g.its, 1, 0) == (8192, 1)


def test_cbaser_size_sets_queue_length():
    g = Guest(queue_pages=3, map_collections=False)            # 12 KiB: 384 slots
    its = g.its
    write64(its, GITS_CWRITER, 3 * 4096)                       # = length: ignored
    assert read64(its, GITS_CWRITER) == 0
    g.sent = 383
    g.kick()                                                   # the last slot: 383 unknown
    assert g.creadr() == 383 * 32 and len(its.errors) == 383
    g.enqueue(C.mapc(0, 0), C.mapc(1, 1))                      # slot 383 and wrap to 0
    g.kick()
    assert g.creadr() == 32 and len(its.errors) == 383
    g.submit(C.mapd(1, itt(1), 1), C.mapti(1, 0, 8192, 1))
    assert translation(its, 1, 0) == (8192, 1)


def test_stalled_queue_cbaser_write_clears_stalled():
    g = Guest(stall_on_error=True)
    [offset] = g.submit(C.int_(9, 0))
    assert g.creadr() == offset | STALLED
    write64(g.its, GITS_CBASER, g.setup.cbaser)                # enabled: ignored
    assert g.creadr() == offset | STALLED
    g.enable(False)
    assert g.ctlr() == CTLR_QUIESCENT
    write64(g.its, GITS_CBASER, g.setup.cbaser)
    assert g.creadr() == 0
    write64(g.its, GITS_CWRITER, 0)
    g.sent = 0
    g.enable()
    g.map_events(2, 2, [(0, 8192)], icid=1)
    assert translation(g.its, 2, 0) == (8192, 1)


def test_gicr_ctlr_reads_enable_lpis():
    g = Guest(enable_lpis={1})
    assert [g.rd_read(c, GICR_CTLR, 4) & 1 for c in range(NUM_CPUS)] == [0, 1, 0, 0]
    g.rd_write(1, GICR_CTLR, 0, 4)
    g.rd_write(3, GICR_CTLR, 1, 4)
    assert [g.rd_read(c, GICR_CTLR, 4) & 1 for c in range(NUM_CPUS)] == [0, 0, 0, 1]


@pytest.mark.parametrize("intid_bits, idbits, limit", [
    (16, 15, 2**16), (16, 31, 2**16), (16, 13, 2**14), (16, 12, 2**13), (14, 31, 2**14),
    (20, 19, 2**20), (20, 16, 2**17),
])
def test_lpi_limit_from_propbaser_and_intid_bits(intid_bits, idbits, limit):
    g = Guest(intid_bits=intid_bits, idbits=idbits)
    its = g.its
    g.submit(C.mapd(1, itt(1), 3))
    offsets = g.submit(C.mapti(1, 0, limit - 1, 0), C.mapti(1, 1, limit, 0),
                       C.mapti(1, 2, 8192, 0))
    expected = [(offsets[1], 0x0A, C.E_ITS_MAPTI_PHYSICALID_OOR)]
    if limit <= 8192:                                # no LPI is in range at all
        expected = [(offsets[0], 0x0A, C.E_ITS_MAPTI_PHYSICALID_OOR)] + expected + \
            [(offsets[2], 0x0A, C.E_ITS_MAPTI_PHYSICALID_OOR)]
    assert g.errors() == expected
    if limit > 8192:
        assert its.msi(1, 0) == TS.OK and its.msi(1, 2) == TS.OK
        pending = its.pending(0)
        assert pending.dtype == np.uint32
        assert [int(i) for i in pending] == sorted({8192, limit - 1})


def test_pending_table_partly_outside_guest_memory():
    mem_bytes = 32 << 20
    pend = mem_bytes - 0x10000                       # CPU 0: bytes 0..65535 of 131072 inside
    g = Guest(mem_bytes=mem_bytes, intid_bits=20, pend_addr=pend, pend_stride=0x10000,
              enable_lpis=False)
    g.mem.write(pend + 1024, b"\x01")                # INTID 8192
    g.mem.write(pend + 0xFFFF, b"\x80")              # INTID 524287, the last byte inside
    for cpu in range(NUM_CPUS):                      # CPUs 1..3: tables wholly outside
        g.rd_write(cpu, GICR_CTLR, 1, 4)
    assert g.all_pending() == [[8192, 524287], [], [], []]


def test_config_table_partly_outside_guest_memory():
    mem_bytes = 32 << 20
    prop = mem_bytes - 4096                          # config of INTIDs 8192..12287 only
    g = Guest(mem_bytes=mem_bytes, prop_addr=prop)
    its = g.its
    g.mem.write(prop + 4095, b"\x05")                # INTID 12287: enabled
    g.map_events(1, 2, [(0, 12287), (1, 12288)], icid=1)
    assert its.msi(1, 0) == TS.OK and its.msi(1, 1) == TS.OK
    assert its.acknowledge(1) == 12287
    assert its.acknowledge(1) is None                # 12288's byte is outside: disabled
    assert g.pending(1) == [12288]
    g.rd_write(3, GICR_CTLR, 0, 4)
    g.rd_write(3, GICR_CTLR, 1, 4)                   # whole reload: still no exception
    assert its.msi(1, 0) == TS.OK
    assert its.acknowledge(1) == 12287
