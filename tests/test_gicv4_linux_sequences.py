"""Linux's GICv4.0 and GICv4.1 command sequences on the fast ITS.

The sequences of tests/test_gicv4_reference.py (``test_linux_v4*``), run on
`its_core.ITS(..., gic_version=...)` the way a guest hypervisor drives it:
commands written into the command queue as the doublewords Linux's
its_build_v*_cmd encode (the digest's §3.2 worked encodings, written out as
hand-computed dwords where it gives them), GICR_VPROPBASER / GICR_VPENDBASER
written through the redistributors' VLPI frame (the values of the digest's
§5.3, e.g. 0xE000000040010780), doorbells through GITS_TRANSLATER and, for
GICv4.1, GITS_SGIR, GICR_VSGIR and GICR_VSGIPENDR through MMIO.

Expectations: the guest-visible end state worked out by hand from the digest
(VPT bytes: byte VPT + vINTID // 8, bit vINTID % 8; doorbells pending;
`highest_pending_virtual`; GICR_VPENDBASER read-backs; GITS_CREADR; the
command error log) and, after every step, the reference model run on its own
copy of guest memory (`ReferenceITS`, the oracle): same error codes, same
vPE table, virtual ITEs, VLPI registers, resident caches, vSGIs, physical
pending LPIs and every byte of guest memory.
"""

from __future__ import annotations

import struct

import numpy as np

import its_core
from its_core.frontend import commands as C
from its_core.frontend import registers as R
from its_core.frontend.guest_memory import GuestMemory
from its_core.frontend.reference_its import ReferenceITS, VirtualStatus as VS
from its_core.frontend.registers import BaserType, PageSize

from front_end_helpers import (GICR_CTLR, GICR_PENDBASER, GICR_PROPBASER, GITS_BASER0,
                               GITS_BASER1, GITS_CBASER, GITS_CREADR, GITS_CTLR, GITS_CWRITER,
                               GITS_TRANSLATER, baser_value, cbaser_value, pendbaser_value,
                               propbaser_value)
from test_gicv4_differential import fast_state

# The reference tests' guest layout: 8 MiB from 1 GiB, the digest's addresses.
BASE = 0x4000_0000
MEM_BYTES = 8 << 20
VPT_A = 0x4001_0000
VPT_B = 0x4002_0000
VCONF = 0x4003_0000
DT, CT, VT, VPE_CONF = 0x4004_0000, 0x4004_1000, 0x4004_2000, 0x4004_3000
ITT = 0x4004_4000
PROP = 0x4005_0000
PEND = (0x4006_0000, 0x4007_0000)
QUEUE = 0x4010_0000                 # 4 KiB: 128 commands
ENABLED_A0 = 0xA1                   # priority 0xA0, enabled
NONE = C.NO_DOORBELL
NUM_CPUS = 2

GICR_VPROPBASER = R.GICR_VPROPBASER_V40.offset          # RD_base + 0x20070
GICR_VPENDBASER = R.GICR_VPENDBASER_V40.offset          # RD_base + 0x20078
GICR_VSGIR = R.GICR_VSGIR.offset
GICR_VSGIPENDR = R.GICR_VSGIPENDR.offset
GITS_SGIR = R.GITS_SGIR.offset
GITS_BASER2 = R.GITS_BASER2_VPES.offset


def packet(*dwords: int) -> bytes:
    """A command from its four doublewords (little-endian), as the queue holds it."""
    return struct.pack("<4Q", *dwords)


class Guest:
    """One guest driving the fast ITS, mirrored step by step on the oracle."""

    def __init__(self, version: str):
        self.version = version
        self.mems = [GuestMemory(MEM_BYTES, base=BASE), GuestMemory(MEM_BYTES, base=BASE)]
        for mem in self.mems:
            mem.write(PROP + 100, bytes([ENABLED_A0, ENABLED_A0]))    # LPIs 8292, 8293
        self.its = its_core.ITS(self.mems[0], num_cpus=NUM_CPUS, event_bits=14,
                                intid_bits=16, gic_version=version)
        self.rd = self.its.redistributors
        self.ref = ReferenceITS(self.mems[1], NUM_CPUS, event_bits=14, intid_bits=16,
                                gic_version=version)
        baser0 = baser_value(BaserType.DEVICES, DT, page_size=PageSize.SIZE_4K)
        baser1 = baser_value(BaserType.COLLECTIONS, CT, page_size=PageSize.SIZE_4K)
        baser2 = baser_value(BaserType.VPES, VT, page_size=PageSize.SIZE_4K)
        for cpu in range(NUM_CPUS):
            self.rd.mmio_write(cpu, GICR_PROPBASER, propbaser_value(PROP, 15), 8)
            self.rd.mmio_write(cpu, GICR_PENDBASER, pendbaser_value(PEND[cpu]), 8)
            self.rd.mmio_write(cpu, GICR_CTLR, 1, 4)
        self.its.mmio_write(GITS_CBASER, cbaser_value(QUEUE), 8)
        self.its.mmio_write(GITS_BASER0, baser0, 8)
        self.its.mmio_write(GITS_BASER1, baser1, 8)
        self.its.mmio_write(GITS_BASER2, baser2, 8)
        self.its.mmio_write(GITS_CTLR, 1, 4)
        self.ref.baser0, self.ref.baser1 = baser0, baser1
        self.ref.write_baser2(baser2)
        self.ref.propbaser = propbaser_value(PROP, 15)
        self.ref.pendbaser = [pendbaser_value(PEND[cpu]) for cpu in range(NUM_CPUS)]
        for cpu in range(NUM_CPUS):
            self.ref.enable_lpis(cpu)
        self.ref.enabled = True
        self.commands = 0
        self.check()

    # -- the guest's accesses -------------------------------------------------------------

    def cmd(self, *packets: bytes) -> list[int]:
        """Write `packets` at CWRITER and advance it (one write); the error codes
        (0 = none), the same on both models."""
        before = len(self.its.errors)
        cwriter = self.its.mmio_read(GITS_CWRITER, 8)
        for index, data in enumerate(packets):
            self.mems[0].write(QUEUE + (cwriter + 32 * index) % 0x1000, data)
        self.its.mmio_write(GITS_CWRITER, (cwriter + 32 * len(packets)) % 0x1000, 8)
        self.commands += len(packets)
        assert self.its.mmio_read(GITS_CREADR, 8) == self.commands * 32 % 0x1000
        fast = {error.offset: error.code for error in self.its.errors[before:]}
        codes = [fast.get((cwriter + 32 * index) % 0x1000, 0) for index in range(len(packets))]
        self.mems[1].array[QUEUE - BASE:QUEUE - BASE + 0x1000] = \
            self.mems[0].array[QUEUE - BASE:QUEUE - BASE + 0x1000]
        assert codes == [self.ref.execute(data) for data in packets]
        self.check()
        return codes

    def write(self, address: int, data: bytes) -> None:
        for mem in self.mems:
            mem.write(address, data)

    def vprop(self, cpu: int, value: int) -> None:
        self.rd.mmio_write(cpu, GICR_VPROPBASER, value, 8)
        self.ref.write_vpropbaser(cpu, value)
        self.check()

    def vpend(self, cpu: int, value: int) -> None:
        self.rd.mmio_write(cpu, GICR_VPENDBASER, value, 8)
        self.ref.write_vpendbaser(cpu, value)
        self.check()

    def read_vpend(self, cpu: int) -> int:
        value = self.rd.mmio_read(cpu, GICR_VPENDBASER, 8)
        assert value == self.ref.read_vpendbaser(cpu)
        return value

    def deschedule40(self, cpu: int) -> int:
        """Linux's v4.0 deschedule: read VPENDBASER, clear Valid, write it back."""
        self.vpend(cpu, self.read_vpend(cpu) & ~(1 << 63))
        return self.read_vpend(cpu)

    def doorbell(self, device_id: int, event_id: int):
        """A device's GITS_TRANSLATER write."""
        status = self.its.mmio_write(GITS_TRANSLATER, event_id, 4, device_id=device_id)
        assert status == self.ref.msi(device_id, event_id)
        self.check()
        return status

    def ack(self, cpu: int):
        taken = self.its.acknowledge(cpu)
        assert taken == self.ref.acknowledge(cpu)
        self.check()
        return taken

    def ack_virtual(self, cpu: int):
        best = self.rd.highest_pending_virtual(cpu)
        taken = self.rd.acknowledge_virtual(cpu)
        assert taken == self.ref.acknowledge_virtual(cpu)
        assert (best is None) == (taken is None) and (best is None or best[0] == taken)
        self.check()
        return taken

    def sgir(self, value: int) -> None:
        self.its.mmio_write(GITS_SGIR, value, 8)
        self.ref.write_sgir(value)
        self.check()

    def vsgipendr(self, cpu: int, vpe_id: int) -> int:
        """GICR_VSGIR = vPEID, then GICR_VSGIPENDR (Busy must read 0)."""
        self.rd.mmio_write(cpu, GICR_VSGIR, vpe_id, 4)
        self.ref.write_vsgir(cpu, vpe_id)
        value = self.rd.mmio_read(cpu, GICR_VSGIPENDR, 4)
        assert value == self.ref.read_vsgipendr(cpu) and not value >> 31
        return value

    # -- what is compared ---------------------------------------------------------------------

    def byte(self, address: int) -> int:
        return int(self.mems[0].array[address - BASE])

    def pending(self, cpu: int) -> list[int]:
        return self.its.pending(cpu).tolist()

    def state(self) -> dict:
        return fast_state(self.its)

    def check(self) -> None:
        expected, got = self.ref.snapshot(), fast_state(self.its)
        for key, value in got.items():
            if key == "vsgis":
                value = {k: (p, [tuple(c) for c in cfg]) for k, (p, cfg) in value.items()}
                expected[key] = {k: (p, [tuple(c) for c in cfg])
                                 for k, (p, cfg) in expected[key].items()}
            assert value == expected[key], key
        for cpu in range(NUM_CPUS):
            assert self.pending(cpu) == self.ref.pending(cpu), f"pending on CPU {cpu}"
        diff = np.flatnonzero(self.mems[0].array != self.mems[1].array)
        assert diff.size == 0, f"guest memory differs at {[hex(BASE + a) for a in diff[:8]]}"


def vprop40(addr=VCONF, idbits=15):
    """GICR_VPROPBASER (v4.0) as Linux writes it: PA | RaWb | InnerShareable | IDbits."""
    return addr | 0b011 << 7 | 0b01 << 10 | idbits          # 0x40030000 | 0x180 | 0x400 | 15


def test_vprop40_is_the_layouts_value():
    assert vprop40() == R.GICR_VPROPBASER_V40_LAYOUT.encode(
        Physical_Address=VCONF >> 12, IDbits=15, InnerCache=R.Cacheability.RaWb,
        Shareability=R.Shareability.INNER_SHAREABLE) == 0x4003_058F


def test_linux_v40_sequence_on_the_fast_its():
    g = Guest("4.0")
    g.write(VCONF + 8200 - 8192, bytes([ENABLED_A0]))
    assert g.cmd(C.mapd(5, ITT, 4)) == [0]
    # VMAPP vPE 3 -> RD 1, VPT 0x4001_0000, size 15 (digest 3.2); VINVALL; VSYNC.
    assert g.cmd(packet(0x29, 0x0000000300000000, 0x8000000000010000, 0x000000004001000F),
                 packet(0x2D, 0x0000000300000000, 0, 0),
                 packet(0x25, 0x0000000300000000, 0, 0)) == [0, 0, 0]
    assert g.state()["vpes"] == {3: (1, 0x4001_0000, 15, 0, NONE)}
    assert g.its.tables.vpe_cpu(3) == 1
    # VMAPTI dev 5, event 2 -> vPE 3, vINTID 8200, doorbell 8292 (digest 3.2).
    assert g.cmd(packet(0x000000050000002A, 0x0000000300000002, 0x0000206400002008, 0)) == [0]
    assert g.its.tables.virtual_event(5, 2) == (8200, 3, 8292)
    # Non-resident: VPT byte 0x4001_0000 + 1025 bit 0, doorbell 8292 pending on RD 1.
    assert g.doorbell(5, 2) == VS.VIRTUAL
    assert g.byte(0x4001_0000 + 1025) == 0x01
    assert g.pending(1) == [8292] and g.pending(0) == []
    assert g.ack(1) == 8292
    assert g.doorbell(5, 2) == VS.VIRTUAL and g.pending(1) == [8292]   # rung again
    assert g.ack(1) == 8292
    # Schedule on CPU 1: VPROPBASER, then VPENDBASER 0xE000000040010780 (digest 5.3).
    g.vprop(1, vprop40())
    g.vpend(1, 0xE000000040010780)
    assert g.read_vpend(1) == 0xE000000040010780            # PendingLast 1, Dirty 0
    assert g.rd.highest_pending_virtual(1) == (8200, 0xA0)
    assert g.rd.highest_pending_virtual(0) is None
    assert g.doorbell(5, 2) == VS.VIRTUAL and g.pending(1) == []        # no doorbell
    assert g.ack_virtual(1) == 8200
    assert g.ack_virtual(1) is None and g.rd.highest_pending_virtual(1) is None
    # Deschedule: nothing pending -> PendingLast 0; the VPT bit written back cleared.
    assert g.deschedule40(1) == 0x4000000040010780
    assert g.byte(0x4001_0000 + 1025) == 0x00
    # Resident, the vLPI disabled, INT: pending but not served; written back set.
    g.vpend(1, 0xE000000040010780)
    g.write(VCONF + 8, bytes([0xA0]))
    assert g.cmd(packet(0x0000000500000003, 0x0000000000000002, 0, 0)) == [0]   # INT 5, 2
    assert g.rd.highest_pending_virtual(1) is None
    assert g.deschedule40(1) == 0x4000000040010780          # PendingLast 0: disabled
    assert g.byte(0x4001_0000 + 1025) == 0x01
    # Enabled: PendingLast 1 at the next deschedule.
    g.write(VCONF + 8, bytes([ENABLED_A0]))
    g.vpend(1, 0xE000000040010780)
    assert g.rd.highest_pending_virtual(1) == (8200, 0xA0)
    assert g.deschedule40(1) == 0x6000000040010780
    # VMAPP vPE 4 -> RD 0, VPT B; VMOVI event 2 -> vPE 4, D = 1, doorbell 8293.
    assert g.cmd(packet(0x29, 0x0000000400000000, 0x8000000000000000,
                        0x000000004002000F)) == [0]
    assert g.cmd(packet(0x0000000500000021, 0x0000000400000002,
                        0x0000206500000001, 0)) == [0]
    assert g.byte(0x4001_0000 + 1025) == 0x00 and g.byte(0x4002_0000 + 1025) == 0x01
    assert g.pending(0) == [8293]
    # VMOVP vPE 4 -> RD 1 (VMOVP = 1: one command, ITSList/SequenceNumber 0).
    assert g.cmd(packet(0x22, 0x0000000400000000, 0x0000000000010000, 0)) == [0]
    assert g.state()["vpes"][4] == (1, VPT_B, 15, 0, NONE)
    assert g.byte(0x4002_0000 + 1025) == 0x01               # the VPT travels with the vPE
    # The digest's VMOVI: event 2 -> vPE 4 with doorbell 1023 (doorbell off).
    assert g.cmd(packet(0x0000000500000021, 0x0000000400000002,
                        0x000003FF00000001, 0)) == [0]
    assert g.state()["virtual_events"] == {(5, 2): (8200, 4, NONE)}
    assert g.ack(0) == 8293
    assert g.doorbell(5, 2) == VS.VIRTUAL and g.pending(1) == [] and g.pending(0) == []
    # Errors (digest §9 step 7): VSGI and INVDB are unknown on a v4.0 ITS; VMAPP with
    # VPT_size 16 > ID_bits 15 is refused; CREADR moves past all three.
    assert g.cmd(packet(0x0000000500A00523, 0x0000000300000000, 0, 0),
                 packet(0x2E, 0x0000000300000000, 0, 0),
                 packet(0x29, 0x0000000500000000, 0x8000000000000000,
                        0x0000000040020010)) == [C.E_ITS_UNKNOWN_COMMAND,
                                                 C.E_ITS_UNKNOWN_COMMAND,
                                                 C.E_ITS_VMAPP_VPT_SIZE_OOR]
    assert 5 not in g.state()["vpes"]
    # Linux unmaps: DISCARD, then VMAPP V = 0.
    assert g.cmd(packet(0x000000050000000F, 0x0000000000000002, 0, 0),
                 packet(0x29, 0x0000000400000000, 0x0000000000010000,
                        0x000000004002000F)) == [0, 0]
    assert g.byte(0x4002_0000 + 1025) == 0x00               # DISCARD cleared the bit
    assert g.state()["virtual_events"] == {} and 4 not in g.state()["vpes"]
    assert [(e.offset, e.code) for e in g.its.errors] == [
        (0x140, C.E_ITS_UNKNOWN_COMMAND), (0x160, C.E_ITS_UNKNOWN_COMMAND),
        (0x180, C.E_ITS_VMAPP_VPT_SIZE_OOR)]                # commands 11, 12, 13
    assert g.its.mmio_read(GITS_CREADR, 8) == 15 * 32       # 15 commands, none stalled


def test_linux_v41_sequence_on_the_fast_its():
    g = Guest("4.1")
    g.write(VCONF + 8200 - 8192, bytes([ENABLED_A0]))
    # The vPE's default doorbell 8292 disabled in the physical table, then cached so.
    g.write(PROP + 100, bytes([0xA0]))
    g.rd.mmio_write(0, GICR_CTLR, 0, 4)
    g.ref.disable_lpis(0)
    g.rd.mmio_write(0, GICR_CTLR, 1, 4)
    g.ref.enable_lpis(0)
    # VMAPP v4.1: vPE 3 -> RD 0, VPT A size 15, VCONF_addr, Default_Doorbell 8292, Alloc.
    assert g.cmd(packet(0x0000000040030129, 0x0000000300002064, 0x8000000000000000,
                        0x000000004001000F)) == [0]
    assert g.state()["vpes"] == {3: (0, VPT_A, 15, VCONF, 8292)}
    # MAPD; VMAPTI dev 5, event 2 -> vPE 3, vINTID 8200, no per-vLPI doorbell; VINVALL; VSYNC.
    assert g.cmd(C.mapd(5, ITT, 4),
                 packet(0x000000050000002A, 0x0000000300000002, 0x000003FF00002008, 0),
                 packet(0x2D, 0x0000000300000000, 0, 0),
                 packet(0x25, 0x0000000300000000, 0, 0)) == [0, 0, 0, 0]
    # Never scheduled: no default doorbell requested yet.
    assert g.doorbell(5, 2) == VS.VIRTUAL
    assert g.byte(VPT_A + 1025) == 0x01 and g.pending(0) == []
    # Schedule: VPROPBASER from BASER2 (Valid, 4 KiB pages, flat, one page), then
    # VPENDBASER = Valid | vGrp1En | vPEID 3.
    vprop41 = 1 << 63 | VPE_CONF | 0b011 << 7 | 0b01 << 10   # Valid | PA | RaWb | IS
    g.vprop(0, vprop41)
    g.vpend(0, 0x8400000000000003)
    assert g.read_vpend(0) == 0xA400000000000003             # PendingLast reads 1
    assert g.rd.highest_pending_virtual(0) == (8200, 0xA0)
    assert g.ack_virtual(0) == 8200
    # Deschedule about to block: PendingLast 0, Doorbell 1 -> armed (reads back 0x44..).
    g.vpend(0, 0x4400000000000003)
    assert g.read_vpend(0) == 0x4400000000000003
    assert g.byte(VPT_A + 1025) == 0x00                      # taken: written back cleared
    assert g.doorbell(5, 2) == VS.VIRTUAL
    assert g.pending(0) == [8292]                            # the default doorbell, once
    assert g.ack(0) is None                                  # its cached config: disabled
    g.write(PROP + 100, bytes([ENABLED_A0]))
    assert g.ack(0) is None
    assert g.cmd(packet(0x2E, 0x0000000300000000, 0, 0)) == [0]   # INVDB: reload it
    assert g.ack(0) == 8292
    assert g.doorbell(5, 2) == VS.VIRTUAL and g.pending(0) == []  # not armed any more
    # vSGIs: the digest's VSGI (SGI 5, priority 0xA0, group 1, enable), GITS_SGIR.
    assert g.cmd(packet(0x0000000500A00523, 0x0000000300000000, 0, 0)) == [0]
    g.sgir(0x0000000300000005)
    assert g.vsgipendr(1, 3) == 1 << 5                       # Busy 0, Pending bit 5
    g.vprop(0, vprop41)
    g.vpend(0, 0x8400000000000003)
    assert g.rd.highest_pending_virtual(0) == (5, 0xA0)      # SGI 5 before vLPI 8200 (0xA0)
    g.write(VCONF + 8, bytes([0x91]))                        # vLPI 8200: priority 0x90
    # GICv4.1 invalidation as Linux issues it: GICR_INVLPIR {V, vPEID 3, vINTID 8200}.
    g.rd.mmio_write(0, R.GICR_INVLPIR.offset, 0x8000000300002008, 8)
    g.ref.write_invlpir(0, 0x8000000300002008)
    assert g.rd.highest_pending_virtual(0) == (8200, 0x90)
    assert g.ack_virtual(0) == 8200
    assert g.ack_virtual(0) == 5
    assert g.vsgipendr(1, 3) == 0
    # Deschedule with Doorbell = 1 but PendingLast = 1 written (not blocking): no doorbell;
    # PendingLast reads 0 (nothing pending), vGrp1En and the vPEID as written.
    g.vpend(0, 0x6400000000000003)
    assert g.read_vpend(0) == 0x0400000000000003
    g.sgir(0x0000000300000005)
    assert g.pending(0) == []
    assert g.vsgipendr(0, 3) == 1 << 5
    # VSGI Clear = 1 (SGI 5): pending cleared, configuration kept.
    assert g.cmd(packet(0x0000000500000223, 0x0000000300000000, 0, 0)) == [0]
    assert g.vsgipendr(1, 3) == 0
    assert g.state()["vsgis"][3][1][5] == (0xA0, 1, 1)
    # VMOVP v4.1 with DB = 1: RD 1 and Default_Doorbell 8293.
    assert g.cmd(packet(0x22, 0x0000000300000000, 0x8000000000010000, 8293)) == [0]
    assert g.state()["vpes"][3] == (1, VPT_A, 15, VCONF, 8293)
    assert len(g.its.errors) == 0
    assert g.its.mmio_read(GITS_CREADR, 8) == 9 * 32
