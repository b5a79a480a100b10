"""GICv4.0 / GICv4.1 semantics of the reference model (ReferenceITS, gic_version="4.0"/"4.1").

Every expectation is worked out by hand from gicv4-digest (byte = VPT + vINTID // 8,
bit = vINTID % 8; command dwords from its §3.2 worked encodings; register values
from its §5.2/§5.3), never by running the model twice.  One test per corner case
of the digest's §8 table (``test_cNN_...``) states the behaviour chosen; then
Linux-style command sequences for v4.0 and v4.1, bad input, and the unchanged
GICv3 model.
"""

from __future__ import annotations

import struct

import pytest

from its_core import TranslationStatus as TS
from its_core.frontend import commands as C
from its_core.frontend import registers as R
from its_core.frontend.guest_memory import GuestMemory
from its_core.frontend.reference_its import ReferenceITS, VirtualStatus as VS
from its_core.frontend.registers import BaserType, PageSize

from front_end_helpers import baser_value, pendbaser_value, propbaser_value

# Guest memory at the digest's addresses: 8 MiB from 1 GiB.
BASE = 0x4000_0000
MEM_BYTES = 8 << 20
VPT_A = 0x4001_0000            # the digest's VPT (64 KiB aligned)
VPT_B = 0x4002_0000
VCONF = 0x4003_0000            # vLPI configuration table (v4.0 VPROPBASER, v4.1 VCONF_addr)
DT = 0x4004_0000               # 4 KiB flat device table: 512 DeviceIDs
CT = 0x4004_1000               # 4 KiB collection table
VT = 0x4004_2000               # 4 KiB flat vPE table (GITS_BASER2): 512 vPEIDs
VPE_CONF = 0x4004_3000         # v4.1 vPE Configuration table (GICR_VPROPBASER)
ITT = 0x4004_4000
PROP = 0x4005_0000             # physical LPI configuration table
PEND = (0x4006_0000, 0x4007_0000)

DEVICE = 5
EVENT = 2
VPE = 3
VINTID = 8200                  # byte VPT + 1025, bit 0
DOORBELL = 8292                # physical LPI; config byte PROP + 100
ENABLED_A0 = 0xA0 | 1          # priority 0xA0, enabled
NONE = C.NO_DOORBELL

VPEND = R.GICR_VPENDBASER_V40_LAYOUT
VPEND41 = R.GICR_VPENDBASER_V41_LAYOUT


def packet(*dwords: int) -> bytes:
    """A command from its four doublewords (little-endian), as the queue holds it."""
    return struct.pack("<4Q", *dwords)


def make(version="4.0", num_cpus=2, *, intid_bits=16, idbits=15, vpe_pages=1, lpis=True):
    """A GICv4 reference: devices, collections, a vPE table, physical LPIs on every CPU.

    The doorbells 8292 and 8293 are enabled with priority 0xA0 in the physical
    configuration table before EnableLPIs loads it.
    """
    mem = GuestMemory(MEM_BYTES, base=BASE)
    ref = ReferenceITS(mem, num_cpus, event_bits=14, intid_bits=intid_bits, gic_version=version)
    ref.baser0 = baser_value(BaserType.DEVICES, DT, page_size=PageSize.SIZE_4K)
    ref.baser1 = baser_value(BaserType.COLLECTIONS, CT, page_size=PageSize.SIZE_4K)
    ref.write_baser2(baser_value(BaserType.VPES, VT, page_size=PageSize.SIZE_4K,
                                 pages=vpe_pages))
    ref.propbaser = propbaser_value(PROP, idbits)
    ref.pendbaser = [pendbaser_value(PEND[cpu]) for cpu in range(num_cpus)]
    mem.write(PROP + 100, bytes([ENABLED_A0, ENABLED_A0]))       # 8292, 8293
    ref.enabled = True
    if lpis:
        for cpu in range(num_cpus):
            ref.enable_lpis(cpu)
    return ref, mem


def run(ref, *packets):
    return [ref.execute(p) for p in packets]


def vpt_byte(mem, vpt, vintid):
    """The VPT byte holding vINTID's bit (hand offset: vpt + vintid // 8)."""
    return mem.read(vpt + vintid // 8, 1)[0]


def vpt_bit(mem, vpt, vintid):
    return vpt_byte(mem, vpt, vintid) >> (vintid % 8) & 1


def map_vpe_and_event(ref, *, vpe=VPE, cpu=0, vpt=VPT_A, size=15, vintid=VINTID,
                      doorbell=DOORBELL, device=DEVICE, event=EVENT, bits=4):
    """MAPD + VMAPP (v4.0 or v4.1 layout) + VMAPTI, all expected to succeed."""
    if ref.gic_version == "4.1":
        vmapp = C.vmapp_v41(vpe, cpu, vpt, size, VCONF, NONE, alloc=True)
    else:
        vmapp = C.vmapp(vpe, cpu, vpt, size)
    assert run(ref, C.mapd(device, ITT, bits), vmapp,
               C.vmapti(device, event, vpe, vintid, doorbell)) == [0, 0, 0]


def vprop40(addr=VCONF, idbits=15):
    """GICR_VPROPBASER (v4.0) as Linux writes it: PA | IDbits | RaWb | InnerShareable."""
    return R.GICR_VPROPBASER_V40_LAYOUT.encode(
        Physical_Address=addr >> 12, IDbits=idbits,
        InnerCache=R.Cacheability.RaWb, Shareability=R.Shareability.INNER_SHAREABLE)


def schedule40(ref, cpu, vpt=VPT_A, *, idbits=15):
    """Linux's v4.0 schedule: VPROPBASER, then VPENDBASER = VPT | RaWaWb | IS | PL | IDAI | V."""
    ref.write_vpropbaser(cpu, vprop40(idbits=idbits))
    ref.write_vpendbaser(cpu, VPEND.encode(
        Physical_Address=vpt >> 16, InnerCache=R.Cacheability.RaWaWb,
        Shareability=R.Shareability.INNER_SHAREABLE, PendingLast=1, IDAI=1, Valid=1))


def deschedule40(ref, cpu):
    """Linux's v4.0 deschedule: read VPENDBASER, clear Valid, write it back."""
    ref.write_vpendbaser(cpu, ref.read_vpendbaser(cpu) & ~VPEND["Valid"].mask)
    return ref.read_vpendbaser(cpu)


def vprop41(table=VPE_CONF):
    """GICR_VPROPBASER (v4.1) as Linux builds it from BASER2: Valid, 4 KiB pages, flat, 1 page."""
    return R.GICR_VPROPBASER_V41_LAYOUT.encode(
        Valid=1, Page_Size=PageSize.SIZE_4K, Physical_Address=table >> 12, Size=0,
        InnerCache=R.Cacheability.RaWb, Shareability=R.Shareability.INNER_SHAREABLE)


def schedule41(ref, cpu, vpe=VPE):
    ref.write_vpropbaser(cpu, vprop41())
    ref.write_vpendbaser(cpu, VPEND41.encode(Valid=1, vGrp1En=1, vPEID=vpe))


# == §8 corner cases ==========================================================================

def test_c01_vmapp_unmap_with_ites_still_naming_the_vpe():
    ref, mem = make()
    map_vpe_and_event(ref)
    mem.write(ITT + 16 * EVENT, b"\xa5" * 16)            # 16-byte ITEs on GICv4
    assert ref.execute(C.vmapp(VPE, 0, VPT_A, 15, valid=False)) == 0
    assert ref.virtual_ite(DEVICE, EVENT) == (VINTID, VPE, DOORBELL)    # ITE stays
    assert ref.msi(DEVICE, EVENT) == VS.VIRTUAL_NO_VPE
    assert ref.execute(C.int_(DEVICE, EVENT)) == 0                      # no effect
    assert vpt_byte(mem, VPT_A, VINTID) == 0 and ref.pending(0) == []
    # DISCARD: the architecture (QEMU 7.2 keeps the ITE): the mapping goes, ITE zeroed.
    assert ref.execute(C.discard(DEVICE, EVENT)) == 0
    assert ref.virtual_ite(DEVICE, EVENT) is None
    assert mem.read(ITT + 16 * EVENT, 16) == bytes(16)
    assert ref.execute(C.discard(DEVICE, EVENT)) == C.E_ITS_DISCARD_UNMAPPED_INTERRUPT


def test_c02_vmapp_on_a_mapped_vpe_overwrites_without_state_transfer():
    ref, mem = make()
    map_vpe_and_event(ref)
    assert ref.msi(DEVICE, EVENT) == VS.VIRTUAL                          # bit in VPT A
    assert ref.execute(C.vmapp(VPE, 1, VPT_B, 14)) == 0
    assert ref.snapshot()["vpes"] == {VPE: (1, VPT_B, 14, 0, NONE)}
    assert vpt_bit(mem, VPT_A, VINTID) == 1 and vpt_bit(mem, VPT_B, VINTID) == 0
    assert ref.msi(DEVICE, EVENT) == VS.VIRTUAL
    assert vpt_bit(mem, VPT_B, VINTID) == 1
    assert ref.pending(1) == [DOORBELL]                                  # new RD 1


def test_c03_vmapp_unmap_with_rdbase_beyond_cpus_is_accepted():
    ref, _ = make()
    assert ref.execute(C.vmapp(VPE, 0, VPT_A, 15)) == 0
    assert ref.execute(C.vmapp(VPE, 7, VPT_A, 15, valid=False)) == 0
    assert ref.snapshot()["vpes"] == {}
    assert ref.execute(C.vmapp(VPE, 2, VPT_A, 15)) == C.E_ITS_VMAPP_RDBASE_OOR   # 2 CPUs


def test_c04_vmapp_vpt_size_beyond_id_bits():
    ref, _ = make()                                       # ID_bits 15 (16 INTID bits)
    assert ref.execute(C.vmapp(VPE, 0, VPT_A, 16)) == C.E_ITS_VMAPP_VPT_SIZE_OOR
    assert ref.execute(C.vmapp(VPE, 0, VPT_A, 16, valid=False)) == C.E_ITS_VMAPP_VPT_SIZE_OOR
    assert ref.snapshot()["vpes"] == {}
    ref41, _ = make("4.1")
    for size in (0x20, 0x80, 16):                         # v4.1 bits [7:5], or just too big
        assert ref41.execute(C.vmapp_v41(VPE, 0, VPT_A, size, VCONF, NONE, alloc=True)) \
            == C.E_ITS_VMAPP_VPT_SIZE_OOR
    small, _ = make(intid_bits=14)                        # ID_bits 13
    assert small.execute(C.vmapp(VPE, 0, VPT_A, 14)) == C.E_ITS_VMAPP_VPT_SIZE_OOR
    assert small.execute(C.vmapp(VPE, 0, VPT_A, 13)) == 0


def test_c05_vmapti_to_a_vpeid_without_a_valid_entry():
    ref, mem = make()
    assert run(ref, C.mapd(DEVICE, ITT, 4), C.vmapti(DEVICE, EVENT, 7, VINTID, DOORBELL)) \
        == [0, 0]
    assert ref.msi(DEVICE, EVENT) == VS.VIRTUAL_NO_VPE                   # dropped
    assert vpt_byte(mem, VPT_A, VINTID) == 0 and ref.pending(0) == []
    # 4 KiB / 8 bytes = 512 vPE slots: vPEID 512 has none.
    assert ref.execute(C.vmapti(DEVICE, EVENT + 1, 512, VINTID, DOORBELL)) \
        == C.E_ITS_VMAPTI_VPEID_OOR
    assert ref.execute(C.vmapp(7, 0, VPT_A, 15)) == 0
    assert ref.msi(DEVICE, EVENT) == VS.VIRTUAL
    assert vpt_byte(mem, VPT_A, VINTID) == 0b1                            # byte 1025, bit 0


def test_c06_vintid_beyond_vpt_size():
    ref, mem = make()
    # VPT_size 13: vINTIDs below 2**14 = 16384.
    map_vpe_and_event(ref, size=13, vintid=16384)
    assert ref.msi(DEVICE, EVENT) == VS.VIRTUAL_INTID_OUT_OF_RANGE
    assert ref.execute(C.int_(DEVICE, EVENT)) == 0
    assert vpt_byte(mem, VPT_A, 16384) == 0 and ref.pending(0) == []    # byte 2048, no doorbell
    assert ref.execute(C.vmapp(4, 0, VPT_B, 15)) == 0
    assert ref.execute(C.vmovi(DEVICE, EVENT, 4, NONE)) == C.E_ITS_VMOVI_VIRTUALID_OOR
    assert ref.virtual_ite(DEVICE, EVENT) == (16384, VPE, DOORBELL)


def test_c07_vmapti_or_mapti_over_an_existing_mapping_is_refused():
    ref, _ = make()
    assert run(ref, C.mapc(0, 0), C.mapd(DEVICE, ITT, 4), C.mapti(DEVICE, 0, 9000, 0),
               C.vmapp(VPE, 0, VPT_A, 15), C.vmapti(DEVICE, 1, VPE, VINTID, NONE)) == [0] * 5
    assert ref.execute(C.vmapti(DEVICE, 0, VPE, VINTID, NONE)) \
        == C.E_ITS_VMAPTI_ID_ALREADY_MAPPED                               # over physical
    # VMAPI (vINTID = EventID): device 6 with 14 EventID bits, event 8192 already virtual.
    assert run(ref, C.mapd(6, 0x4010_0000, 14), C.vmapi(6, 8192, VPE, NONE)) == [0, 0]
    assert ref.execute(C.vmapi(6, 8192, VPE, NONE)) == C.E_ITS_VMAPTI_ID_ALREADY_MAPPED
    assert ref.execute(C.mapi(6, 8192, 0)) == C.E_ITS_MAPTI_ID_ALREADY_MAPPED
    assert ref.execute(C.mapti(DEVICE, 1, 9001, 0)) == C.E_ITS_MAPTI_ID_ALREADY_MAPPED
    snapshot = ref.snapshot()
    assert snapshot["events"] == {(DEVICE, 0): (9000, 0)}
    assert snapshot["virtual_events"] == {(DEVICE, 1): (VINTID, VPE, NONE),
                                          (6, 8192): (8192, VPE, NONE)}


def test_c08_doorbell_that_is_neither_1023_nor_an_lpi():
    ref, _ = make()
    assert run(ref, C.mapd(DEVICE, ITT, 4), C.mapd(6, 0x4010_0000, 14),
               C.vmapp(VPE, 0, VPT_A, 15)) == [0, 0, 0]
    for doorbell in (0, 1022, 1024, 8191, 65536):
        assert ref.execute(C.vmapti(DEVICE, EVENT, VPE, VINTID, doorbell)) \
            == C.E_ITS_VMAPTI_DOORBELL_OOR
        assert ref.execute(C.vmapi(6, 8192, VPE, doorbell)) == C.E_ITS_VMAPTI_DOORBELL_OOR
    assert ref.snapshot()["virtual_events"] == {}
    assert ref.execute(C.vmapti(DEVICE, EVENT, VPE, VINTID, 65535)) == 0   # 2**16 - 1: an LPI
    # VMOVI: D = 1 checks the doorbell before any lookup (even of an unmapped event) ...
    assert ref.execute(C.vmovi(DEVICE, 9, VPE, 5000)) == C.E_ITS_VMOVI_DOORBELL_OOR
    assert ref.execute(C.vmovi(DEVICE, 9, VPE, NONE)) == C.E_ITS_VMOVI_UNMAPPED_INTERRUPT
    # ... D = 0 ignores the field.
    assert ref.execute(C.vmovi(DEVICE, EVENT, VPE, 5000, doorbell_valid=False)) == 0


def test_c09_vmovi_with_d0_keeps_the_doorbell():
    ref, _ = make()
    map_vpe_and_event(ref)
    assert ref.execute(C.vmapp(4, 1, VPT_B, 15)) == 0
    assert ref.execute(C.vmovi(DEVICE, EVENT, 4, 8293, doorbell_valid=False)) == 0
    assert ref.virtual_ite(DEVICE, EVENT) == (VINTID, 4, DOORBELL)
    assert ref.msi(DEVICE, EVENT) == VS.VIRTUAL
    assert ref.pending(1) == [DOORBELL]                                    # old doorbell, new RD


def test_c10_vmovi_between_vpes_sharing_a_vpt_moves_nothing():
    ref, mem = make()
    map_vpe_and_event(ref)
    assert ref.execute(C.vmapp(4, 1, VPT_A, 15)) == 0                     # same VPT
    assert ref.msi(DEVICE, EVENT) == VS.VIRTUAL
    assert ref.acknowledge(0) == DOORBELL
    assert ref.execute(C.vmovi(DEVICE, EVENT, 4, 8293)) == 0
    assert ref.virtual_ite(DEVICE, EVENT) == (VINTID, 4, 8293)
    assert vpt_bit(mem, VPT_A, VINTID) == 1
    assert ref.pending(0) == [] and ref.pending(1) == []                  # nothing rung


def test_c11_vmovi_moves_a_pending_vlpi_and_rings_the_new_doorbell():
    ref, mem = make()
    map_vpe_and_event(ref)
    assert ref.execute(C.vmapp(4, 1, VPT_B, 15)) == 0
    assert ref.msi(DEVICE, EVENT) == VS.VIRTUAL
    assert ref.acknowledge(0) == DOORBELL
    assert ref.execute(C.vmovi(DEVICE, EVENT, 4, 8293)) == 0
    assert vpt_byte(mem, VPT_A, VINTID) == 0
    assert vpt_byte(mem, VPT_B, VINTID) == 0b1                            # 0x4002_0000 + 1025
    assert ref.pending(0) == [] and ref.pending(1) == [8293]
    # Not pending: nothing moves, nothing rings.
    assert ref.execute(C.vmovi(DEVICE, EVENT, VPE, DOORBELL)) == 0       # B bit -> A
    assert ref.acknowledge(0) == DOORBELL and ref.acknowledge(1) == 8293
    assert ref.execute(C.clear(DEVICE, EVENT)) == 0
    assert ref.execute(C.vmovi(DEVICE, EVENT, 4, 8293)) == 0
    assert vpt_byte(mem, VPT_B, VINTID) == 0 and ref.pending(1) == []


def test_c12_doorbell_rings_on_every_event_whatever_the_vlpi_enable():
    ref, mem = make()
    map_vpe_and_event(ref)
    mem.write(VCONF + VINTID - 8192, bytes([0xA0]))                       # vLPI disabled
    assert ref.msi(DEVICE, EVENT) == VS.VIRTUAL
    assert ref.pending(0) == [DOORBELL]
    assert ref.acknowledge(0) == DOORBELL
    assert vpt_bit(mem, VPT_A, VINTID) == 1
    assert ref.execute(C.int_(DEVICE, EVENT)) == 0                        # bit already set
    assert ref.pending(0) == [DOORBELL]


def test_c13_doorbell_beyond_propbaser_or_lpis_disabled_is_lost():
    ref, mem = make(idbits=13)                             # physical LPIs below 16384
    map_vpe_and_event(ref, doorbell=20000)
    assert ref.msi(DEVICE, EVENT) == VS.VIRTUAL
    assert vpt_bit(mem, VPT_A, VINTID) == 1 and ref.pending(0) == []
    ref, mem = make()
    map_vpe_and_event(ref)
    ref.disable_lpis(0)
    assert ref.execute(C.int_(DEVICE, EVENT)) == 0         # a physical INT would fail here
    assert vpt_bit(mem, VPT_A, VINTID) == 1 and ref.pending(0) == []


def test_c14_resident_on_another_rd_counts_as_not_resident():
    ref, mem = make()
    map_vpe_and_event(ref, cpu=1)                          # vPE entry: RD 1
    schedule40(ref, 0)                                     # but VPT A resident on CPU 0
    assert ref.msi(DEVICE, EVENT) == VS.VIRTUAL
    assert vpt_bit(mem, VPT_A, VINTID) == 1                # memory, not CPU 0's cache
    assert ref.pending(1) == [DOORBELL]
    assert ref.pending_virtual(0) == []
    deschedule40(ref, 0)                                   # write-back keeps the bit
    assert vpt_bit(mem, VPT_A, VINTID) == 1


def test_c15_vmovp_only_retargets_the_vpe():
    ref, mem = make()
    map_vpe_and_event(ref)
    assert ref.msi(DEVICE, EVENT) == VS.VIRTUAL
    assert ref.acknowledge(0) == DOORBELL
    assert ref.execute(C.vmovp(VPE, 1, sequence_number=9, its_list=0xFFFF)) == 0
    assert ref.snapshot()["vpes"] == {VPE: (1, VPT_A, 15, 0, NONE)}
    assert vpt_byte(mem, VPT_A, VINTID) == 0b1             # VPT untouched
    assert ref.pending(0) == [] and ref.pending(1) == []
    assert ref.msi(DEVICE, EVENT) == VS.VIRTUAL
    assert ref.pending(1) == [DOORBELL]
    assert ref.execute(C.vmovp(VPE, 2)) == C.E_ITS_VMOVP_RDBASE_OOR
    assert ref.execute(C.vmovp(9, 0)) == C.E_ITS_VMOVP_UNMAPPED_VPE


def test_c16_vmovp_and_vmapp_while_resident_leave_the_cache():
    ref, mem = make()
    map_vpe_and_event(ref)
    schedule40(ref, 0)
    assert ref.msi(DEVICE, EVENT) == VS.VIRTUAL
    assert ref.pending_virtual(0) == [VINTID] and vpt_byte(mem, VPT_A, VINTID) == 0
    assert ref.execute(C.vmovp(VPE, 1)) == 0
    assert ref.pending_virtual(0) == [VINTID]
    assert ref.execute(C.int_(DEVICE, EVENT)) == 0      # now not resident (RD 1)
    assert vpt_bit(mem, VPT_A, VINTID) == 1 and ref.pending(1) == [DOORBELL]
    assert ref.execute(C.vmapp(VPE, 0, VPT_A, 15, valid=False)) == 0
    assert ref.pending_virtual(0) == [VINTID]


def test_c17_vinvall_and_inv_change_nothing_configuration_is_read_when_used():
    ref, mem = make()
    map_vpe_and_event(ref)
    mem.write(VCONF + VINTID - 8192, bytes([0xA0]))        # disabled
    schedule40(ref, 0)
    assert ref.msi(DEVICE, EVENT) == VS.VIRTUAL
    assert ref.acknowledge_virtual(0) is None
    before = ref.snapshot()
    assert run(ref, C.vinvall(VPE), C.inv(DEVICE, EVENT)) == [0, 0]
    assert ref.snapshot() == before
    mem.write(VCONF + VINTID - 8192, bytes([ENABLED_A0]))  # no INV needed
    assert ref.acknowledge_virtual(0) == VINTID
    assert ref.execute(C.vinvall(9)) == C.E_ITS_VINVALL_UNMAPPED_VPE


def test_c18_vsync_succeeds_for_any_vpeid():
    ref, _ = make()
    assert run(ref, C.vsync(9), C.vsync(0xFFFF)) == [0, 0]


@pytest.mark.parametrize("name", ["VSGI", "INVDB"])
def test_c19_vsgi_and_invdb_are_unknown_on_a_v40_its(name):
    packets = {"VSGI": C.vsgi(VPE, 5, 0xA0, True, True), "INVDB": C.invdb(VPE)}
    ref, _ = make("4.0")
    assert ref.execute(packets[name]) == C.E_ITS_UNKNOWN_COMMAND
    ref41, _ = make("4.1")
    assert ref41.execute(packets[name]) == {"VSGI": C.E_ITS_VSGI_UNMAPPED_VPE,
                                            "INVDB": C.E_ITS_INVDB_UNMAPPED_VPE}[name]


def test_c20_vpendbaser_write_while_valid_is_ignored():
    ref, mem = make()
    map_vpe_and_event(ref)
    schedule40(ref, 0)
    value = ref.read_vpendbaser(0)
    assert value == 0xE000000040010780                     # the digest's Linux value
    ref.write_vpendbaser(0, value ^ (0x3 << 16))           # another PA, still Valid
    assert ref.read_vpendbaser(0) == value
    low = R.merge_half(value, 0, 0x0002_0780)              # a 32-bit low-half write
    ref.write_vpendbaser(0, low)
    assert ref.read_vpendbaser(0) == value
    assert ref.msi(DEVICE, EVENT) == VS.VIRTUAL
    assert ref.pending_virtual(0) == [VINTID]              # still resident


def test_c21_pendinglast_forced_and_idai_ignored_on_schedule():
    ref, mem = make()
    map_vpe_and_event(ref)
    mem.write(VPT_A + 1025, bytes([0b101]))                # vINTIDs 8200, 8202 pending
    ref.write_vpropbaser(0, vprop40())
    written = VPEND.encode(Physical_Address=VPT_A >> 16, IDAI=1, PendingLast=0, Valid=1)
    ref.write_vpendbaser(0, written)
    assert ref.read_vpendbaser(0) == written | 1 << 61      # PendingLast reads 1
    assert ref.pending_virtual(0) == [8200, 8202]           # IDAI = 1: the VPT is read anyway


def test_c22_dirty_always_reads_zero():
    ref, _ = make()
    map_vpe_and_event(ref)
    ref.write_vpropbaser(0, vprop40())
    dirty = 1 << 60
    ref.write_vpendbaser(0, VPEND.encode(Physical_Address=VPT_A >> 16, Valid=1) | dirty)
    assert ref.read_vpendbaser(0) == 0xA000000040010000    # Valid | PendingLast | PA
    ref.write_vpendbaser(0, VPEND.encode(Physical_Address=VPT_A >> 16) | dirty)
    assert ref.read_vpendbaser(0) & dirty == 0


def test_c23_vpropbaser_idbits_smaller_than_vpt_size():
    ref, mem = make()
    map_vpe_and_event(ref, vintid=20000)                   # VPT_size 15
    mem.write(VPT_A + 2100, b"\x01")                        # vINTID 16800 pending in memory
    schedule40(ref, 0, idbits=13)                           # resident limit 2**14 = 16384
    assert ref.pending_virtual(0) == []                     # 16800 not loaded
    assert ref.msi(DEVICE, EVENT) == VS.VIRTUAL_INTID_OUT_OF_RANGE
    assert vpt_byte(mem, VPT_A, 20000) == 0 and ref.pending(0) == []   # byte 2500
    deschedule40(ref, 0)
    assert mem.read(VPT_A + 2100, 1) == b"\x01"             # untouched by the write-back
    assert ref.msi(DEVICE, EVENT) == VS.VIRTUAL             # not resident: set anyway
    assert vpt_byte(mem, VPT_A, 20000) == 1 << 0           # 20000 = 2500 * 8


def test_c24_vlpi_priority_unshifted_ties_to_lowest_vintid():
    ref, mem = make()
    map_vpe_and_event(ref)
    # 8200: 0xA3 (0xA0 after & 0xFC); 8201: 0xA1 (0xA0): a tie, so 8200 first;
    # 8202: 0x91 (0x90); 8203: disabled 0x10.
    mem.write(VCONF + 8, bytes([0xA3, 0xA1, 0x91, 0x10]))
    mem.write(VPT_A + 1025, bytes([0b1111]))
    schedule40(ref, 0)
    assert ref.pending_virtual(0) == [8200, 8201, 8202, 8203]
    assert [ref.acknowledge_virtual(0) for _ in range(4)] == [8202, 8200, 8201, None]
    assert ref.pending_virtual(0) == [8203]


def test_c25_acknowledge_takes_the_vlpi_and_nothing_else_moves():
    ref, mem = make()
    map_vpe_and_event(ref)
    mem.write(VCONF + 8, bytes([ENABLED_A0]))
    mem.write(VPT_A + 1025, b"\x01")
    schedule40(ref, 0)
    physical = [ref.pending(cpu) for cpu in range(2)]
    assert ref.acknowledge_virtual(0) == VINTID
    assert ref.pending_virtual(0) == [] and [ref.pending(cpu) for cpu in range(2)] == physical
    value = deschedule40(ref, 0)
    assert VPEND["PendingLast"].extract(value) == 0
    assert vpt_byte(mem, VPT_A, VINTID) == 0                # written back cleared


# == Linux-style sequences ======================================================================

def test_linux_v40_sequence_from_the_digest_encodings():
    ref, mem = make()
    mem.write(VCONF + VINTID - 8192, bytes([ENABLED_A0]))
    assert run(ref, C.mapd(DEVICE, ITT, 4)) == [0]
    # VMAPP vPE 3 -> RD 1, VPT 0x4001_0000, size 15 (digest 3.2), then VINVALL, VSYNC.
    assert run(ref, packet(0x29, 0x0000000300000000, 0x8000000000010000, 0x000000004001000F),
               packet(0x2D, 0x0000000300000000, 0, 0),
               packet(0x25, 0x0000000300000000, 0, 0)) == [0, 0, 0]
    assert ref.snapshot()["vpes"] == {3: (1, 0x4001_0000, 15, 0, NONE)}
    # VMAPTI dev 5, event 2 -> vPE 3, vINTID 8200, doorbell 8292.
    assert ref.execute(packet(0x000000050000002A, 0x0000000300000002,
                              0x0000206400002008, 0)) == 0
    assert ref.virtual_ite(5, 2) == (8200, 3, 8292)
    # Non-resident delivery: VPT byte 0x4001_0000 + 1025 bit 0, doorbell 8292 on RD 1.
    assert ref.msi(5, 2) == VS.VIRTUAL
    assert mem.read(0x4001_0000 + 1025, 1) == b"\x01"
    assert ref.pending(1) == [8292] and ref.pending(0) == []
    assert ref.acknowledge(1) == 8292
    assert ref.msi(5, 2) == VS.VIRTUAL and ref.pending(1) == [8292]      # rung again
    assert ref.acknowledge(1) == 8292
    # Schedule on CPU 1 (VPROPBASER then VPENDBASER 0xE000000040010780).
    ref.write_vpropbaser(1, vprop40())
    ref.write_vpendbaser(1, 0xE000000040010780)
    assert ref.read_vpendbaser(1) == 0xE000000040010780
    assert ref.pending_virtual(1) == [8200]
    assert ref.msi(5, 2) == VS.VIRTUAL and ref.pending(1) == []          # no doorbell
    assert ref.acknowledge_virtual(1) == 8200
    assert ref.acknowledge_virtual(1) is None
    # Deschedule: nothing pending -> PendingLast 0; VPT bit written back cleared.
    assert deschedule40(ref, 1) == 0x4000000040010780
    assert mem.read(0x4001_0000 + 1025, 1) == b"\x00"
    # Resident, disabled vLPI pending at deschedule: PendingLast 0, bit written back set.
    ref.write_vpendbaser(1, 0xE000000040010780)
    mem.write(VCONF + 8, bytes([0xA0]))
    assert ref.execute(C.int_(5, 2)) == 0
    assert deschedule40(ref, 1) == 0x4000000040010780
    assert mem.read(0x4001_0000 + 1025, 1) == b"\x01"
    # Enabled: PendingLast 1.
    mem.write(VCONF + 8, bytes([ENABLED_A0]))
    ref.write_vpendbaser(1, 0xE000000040010780)
    assert deschedule40(ref, 1) == 0x6000000040010780
    # VMAPP vPE 4 -> RD 0 with VPT B; VMOVI event 2 -> vPE 4, D = 1, doorbell 8293.
    assert ref.execute(C.vmapp(4, 0, VPT_B, 15)) == 0
    assert ref.execute(packet(0x0000000500000021, 0x0000000400000002,
                              0x0000206500000001, 0)) == 0
    assert mem.read(0x4001_0000 + 1025, 1) == b"\x00"
    assert mem.read(VPT_B + 1025, 1) == b"\x01"
    assert ref.pending(0) == [8293]
    # VMOVP vPE 4 -> RD 1: only the vPE's RD changes.
    assert ref.execute(C.vmovp(4, 1)) == 0
    assert ref.snapshot()["vpes"][4] == (1, VPT_B, 15, 0, NONE)
    # The digest's VMOVI: event 2 -> vPE 4 with doorbell 1023 (disable the doorbell).
    assert ref.execute(packet(0x0000000500000021, 0x0000000400000002,
                              0x000003FF00000001, 0)) == 0
    assert ref.acknowledge(0) == 8293
    assert ref.msi(5, 2) == VS.VIRTUAL and ref.pending(1) == []
    # Linux unmaps: DISCARD, then VMAPP V = 0.
    assert run(ref, C.discard(5, 2), C.vmapp(4, 1, VPT_B, 15, valid=False)) == [0, 0]
    assert mem.read(VPT_B + 1025, 1) == b"\x00"              # DISCARD cleared the bit
    assert ref.snapshot()["virtual_events"] == {} and 4 not in ref.snapshot()["vpes"]


def test_linux_v41_sequence_default_doorbell_invdb_and_vsgis():
    ref, mem = make("4.1")
    mem.write(VCONF + VINTID - 8192, bytes([ENABLED_A0]))
    mem.write(PROP + 100, bytes([0xA0]))                     # doorbell 8292 disabled ...
    ref.disable_lpis(0)
    ref.enable_lpis(0)                                       # ... and so cached
    # VMAPP v4.1: vPE 3 -> RD 0, VPT A size 15, VCONF_addr, Default_Doorbell 8292, Alloc.
    assert ref.execute(packet(VCONF | 1 << 8 | 0x29, 3 << 32 | 8292, 1 << 63,
                              VPT_A | 15)) == 0
    assert ref.snapshot()["vpes"] == {3: (0, VPT_A, 15, VCONF, 8292)}
    # VMAPTI with no per-vLPI doorbell (Linux on v4.1).
    assert run(ref, C.mapd(DEVICE, ITT, 4), C.vmapti(DEVICE, EVENT, 3, VINTID, NONE),
               C.vinvall(3), C.vsync(3)) == [0] * 4
    # Never scheduled: no default doorbell requested yet.
    assert ref.msi(DEVICE, EVENT) == VS.VIRTUAL
    assert vpt_bit(mem, VPT_A, VINTID) == 1 and ref.pending(0) == []
    # Schedule: VPROPBASER from BASER2, VPENDBASER = Valid | vGrp1En | vPEID.
    schedule41(ref, 0)
    assert ref.read_vpendbaser(0) == 0xA400000000000003      # Valid, PendingLast, vGrp1En, 3
    assert ref.pending_virtual(0) == [VINTID]
    assert ref.acknowledge_virtual(0) == VINTID
    # Deschedule about to block: PendingLast 0, Doorbell 1.
    ref.write_vpendbaser(0, VPEND41.encode(Doorbell=1, vGrp1En=1, vPEID=3))
    assert ref.read_vpendbaser(0) == 0x4400000000000003      # PendingLast 0: doorbell armed
    assert vpt_bit(mem, VPT_A, VINTID) == 0
    assert ref.msi(DEVICE, EVENT) == VS.VIRTUAL
    assert ref.pending(0) == [DOORBELL]                      # the default doorbell
    assert ref.acknowledge(0) is None                        # its cached config: disabled
    mem.write(PROP + 100, bytes([ENABLED_A0]))
    assert ref.acknowledge(0) is None
    assert ref.execute(C.invdb(3)) == 0                      # reload the doorbell's config
    assert ref.acknowledge(0) == DOORBELL
    assert ref.msi(DEVICE, EVENT) == VS.VIRTUAL and ref.pending(0) == []   # rang once
    # vSGIs: configure SGI 5 (the digest's VSGI), make it pending through GITS_SGIR.
    assert ref.execute(packet(0x0000000500A00523, 0x0000000300000000, 0, 0)) == 0
    ref.write_sgir(0x0000000300000005)
    ref.write_vsgir(1, 3)
    assert ref.read_vsgipendr(1) == 1 << 5                   # Busy 0, Pending bit 5
    schedule41(ref, 0)
    assert ref.pending_virtual(0) == [5, VINTID]
    mem.write(VCONF + 8, bytes([0x91]))                      # vLPI 8200 priority 0x90
    assert ref.acknowledge_virtual(0) == VINTID
    assert ref.acknowledge_virtual(0) == 5                   # 0xA0
    assert ref.read_vsgipendr(1) == 0
    # Deschedule without a doorbell (PendingLast = 1 written): nothing armed.
    ref.write_vpendbaser(0, VPEND41.encode(PendingLast=1, Doorbell=1, vPEID=3))
    assert ref.read_vpendbaser(0) == 0x0000000000000003
    ref.write_sgir(0x0000000300000005)
    assert ref.pending(0) == []
    # VSGI Clear = 1 clears pending, keeps the configuration.
    assert ref.execute(C.vsgi(3, 5, 0, False, False, clear=True)) == 0
    assert ref.read_vsgipendr(1) == 0
    assert ref.snapshot()["vsgis"][3][1][5] == (0xA0, 1, 1)
    # VMOVP v4.1 with DB: RD 1 and a new default doorbell.
    assert ref.execute(C.vmovp_v41(3, 1, 8293)) == 0
    assert ref.snapshot()["vpes"][3] == (1, VPT_A, 15, VCONF, 8293)


def test_v41_pendinglast_counts_enabled_vsgis_and_refuses_the_doorbell():
    ref, _ = make("4.1")
    map_vpe_and_event(ref)
    assert ref.execute(C.vsgi(VPE, 2, 0x40, True, True)) == 0
    ref.write_sgir(VPE << 32 | 2)
    schedule41(ref, 0)
    ref.write_vpendbaser(0, VPEND41.encode(Doorbell=1, vPEID=VPE))
    assert ref.read_vpendbaser(0) == 0x2000000000000003      # PendingLast 1, no Doorbell
    assert ref.snapshot()["doorbells_armed"] == []


def test_v41_residency_is_by_vpeid():
    ref, mem = make("4.1")
    map_vpe_and_event(ref)                                   # vPE 3 on RD 0, VPT A
    assert ref.execute(C.vmapp_v41(4, 0, VPT_B, 15, VCONF, NONE, alloc=True)) == 0
    assert ref.execute(C.vmapti(DEVICE, EVENT + 1, 4, VINTID, DOORBELL)) == 0
    schedule41(ref, 0, vpe=4)                                # vPE 4 resident on RD 0
    assert ref.msi(DEVICE, EVENT) == VS.VIRTUAL              # vPE 3: not resident
    assert vpt_bit(mem, VPT_A, VINTID) == 1 and ref.pending(0) == [DOORBELL]
    assert ref.pending_virtual(0) == []
    assert ref.msi(DEVICE, EVENT + 1) == VS.VIRTUAL          # vPE 4: its cache
    assert ref.pending_virtual(0) == [VINTID] and vpt_bit(mem, VPT_B, VINTID) == 0


def test_v41_default_doorbell_only_for_enabled_interrupts():
    ref, mem = make("4.1")
    assert ref.execute(C.vmapp_v41(VPE, 0, VPT_A, 15, VCONF, DOORBELL, alloc=True)) == 0
    assert run(ref, C.mapd(DEVICE, ITT, 4), C.vmapti(DEVICE, EVENT, VPE, VINTID, NONE)) == [0, 0]
    schedule41(ref, 0)
    ref.write_vpendbaser(0, VPEND41.encode(Doorbell=1, vPEID=VPE))
    assert ref.snapshot()["doorbells_armed"] == [VPE]
    mem.write(VCONF + 8, bytes([0xA0]))                      # vLPI disabled
    assert ref.msi(DEVICE, EVENT) == VS.VIRTUAL and ref.pending(0) == []
    ref.write_sgir(VPE << 32 | 1)                            # vSGI 1 not enabled
    assert ref.pending(0) == []
    assert ref.execute(C.vsgi(VPE, 1, 0, False, True)) == 0
    ref.write_sgir(VPE << 32 | 1)                            # enabled now
    assert ref.pending(0) == [DOORBELL]
    assert ref.snapshot()["doorbells_armed"] == []


def test_snapshot_holds_the_virtual_state():
    ref, mem = make()
    map_vpe_and_event(ref)
    mem.write(VPT_A + 1026, b"\x02")                         # vINTID 8209 pending
    schedule40(ref, 1)
    assert ref.snapshot() == {
        "devices": {DEVICE: (4, ITT)}, "events": {}, "collections": {},
        "vpes": {VPE: (0, VPT_A, 15, 0, NONE)},
        "virtual_events": {(DEVICE, EVENT): (VINTID, VPE, DOORBELL)},
        "vpropbaser": [0, vprop40()],
        "vpendbaser": [0, 0xE000000040010780],
        "virtual_pending": [None, [8209]],
    }
    ref41, _ = make("4.1")
    map_vpe_and_event(ref41)
    assert ref41.execute(C.vsgi(VPE, 15, 0xF0, False, True)) == 0
    ref41.write_sgir(VPE << 32 | 15)
    snapshot = ref41.snapshot()
    assert snapshot["vpes"] == {VPE: (0, VPT_A, 15, VCONF, NONE)}
    assert snapshot["vsgis"] == {VPE: (1 << 15, ((0, 0, 0),) * 15 + ((0xF0, 0, 1),))}
    assert snapshot["doorbells_armed"] == []


# == bad input ==================================================================================

def test_vpeid_beyond_the_vpe_table():
    ref, _ = make()                                          # 512 slots
    assert ref.execute(C.vmapp(511, 0, VPT_A, 15)) == 0
    assert ref.execute(C.vmapp(512, 0, VPT_A, 15)) == C.E_ITS_VMAPP_VPEID_OOR
    assert ref.execute(C.vmapp(512, 0, VPT_A, 15, valid=False)) == C.E_ITS_VMAPP_VPEID_OOR
    two_pages, _ = make(vpe_pages=2)
    assert two_pages.execute(C.vmapp(1023, 0, VPT_A, 15)) == 0
    assert two_pages.execute(C.vmapp(1024, 0, VPT_A, 15)) == C.E_ITS_VMAPP_VPEID_OOR
    # BASER2 Valid = 0: no entries at all, and the mapped vPEs are gone.
    ref.write_baser2(baser_value(BaserType.VPES, VT, page_size=PageSize.SIZE_4K, valid=False))
    assert ref.snapshot()["vpes"] == {}
    assert ref.execute(C.vmapp(0, 0, VPT_A, 15)) == C.E_ITS_VMAPP_VPEID_OOR


def test_vpe_table_entry_outside_guest_memory():
    ref, _ = make()
    end = BASE + MEM_BYTES
    ref.write_baser2(baser_value(BaserType.VPES, end - 0x1000, page_size=PageSize.SIZE_4K,
                                 pages=2))
    assert ref.execute(C.vmapp(511, 0, VPT_A, 15)) == 0       # last entry of the first page
    assert ref.execute(C.vmapp(512, 0, VPT_A, 15)) == C.E_ITS_VMAPP_VPEID_OOR


def test_doorbells_that_are_not_lpis_in_v41_vmapp_and_vmovp():
    ref, _ = make("4.1")
    assert ref.execute(C.vmapp_v41(VPE, 0, VPT_A, 15, VCONF, 8191, alloc=True)) \
        == C.E_ITS_VMAPP_DOORBELL_OOR
    assert ref.execute(C.vmapp_v41(VPE, 0, VPT_A, 15, VCONF, 8191, alloc=True,
                                   valid=False)) == 0
    assert ref.execute(C.vmapp_v41(VPE, 0, VPT_A, 15, VCONF, NONE, alloc=True)) == 0
    assert ref.execute(C.vmovp_v41(VPE, 1, 70000)) == C.E_ITS_VMOVP_DOORBELL_OOR
    assert ref.execute(C.vmovp_v41(VPE, 1, 70000, default_doorbell_valid=False)) == 0
    assert ref.snapshot()["vpes"][VPE] == (1, VPT_A, 15, VCONF, NONE)


def test_vmapti_checks_in_qemu_order():
    ref, _ = make()
    assert ref.execute(C.vmapti(DEVICE, 0, VPE, VINTID, NONE)) == C.E_ITS_VMAPTI_UNMAPPED_DEVICE
    assert ref.execute(C.mapd(DEVICE, ITT, 4)) == 0
    assert ref.execute(C.vmapti(DEVICE, 16, 512, 5, 7)) == C.E_ITS_VMAPTI_ID_OOR
    assert ref.execute(C.vmapti(DEVICE, 0, 512, 8191, 7)) == C.E_ITS_VMAPTI_VIRTUALID_OOR
    assert ref.execute(C.vmapti(DEVICE, 0, 512, 65536, 7)) == C.E_ITS_VMAPTI_VIRTUALID_OOR
    assert ref.execute(C.vmapti(DEVICE, 0, 512, VINTID, 7)) == C.E_ITS_VMAPTI_DOORBELL_OOR
    assert ref.execute(C.vmapti(DEVICE, 0, 512, VINTID, NONE)) == C.E_ITS_VMAPTI_VPEID_OOR
    assert ref.execute(C.vmapi(DEVICE, 3, VPE, NONE)) == C.E_ITS_VMAPTI_VIRTUALID_OOR   # 3
    assert ref.snapshot()["virtual_events"] == {}


def test_vmovi_error_paths():
    ref, _ = make()
    assert run(ref, C.mapc(0, 0), C.mapd(DEVICE, ITT, 4), C.mapti(DEVICE, 0, 9000, 0)) \
        == [0, 0, 0]
    assert ref.execute(C.vmovi(DEVICE, 0, VPE, NONE)) == C.E_ITS_VMOVI_NOT_VIRTUAL
    assert ref.execute(C.vmapti(DEVICE, 1, VPE, VINTID, NONE)) == 0   # vPE 3 not mapped
    assert ref.execute(C.vmapp(4, 0, VPT_B, 15)) == 0
    assert ref.execute(C.vmovi(DEVICE, 1, 4, NONE)) == C.E_ITS_VMOVI_UNMAPPED_VPE    # old
    assert ref.execute(C.vmapp(VPE, 0, VPT_A, 15)) == 0
    assert ref.execute(C.vmovi(DEVICE, 1, 9, NONE)) == C.E_ITS_VMOVI_UNMAPPED_VPE    # new
    assert ref.virtual_ite(DEVICE, 1) == (VINTID, VPE, NONE)


def test_physical_movi_on_a_virtual_ite_is_refused():
    ref, _ = make()
    map_vpe_and_event(ref)
    assert ref.execute(C.mapc(0, 1)) == 0
    assert ref.execute(C.movi(DEVICE, EVENT, 0)) == C.E_ITS_MOVI_VIRTUAL_INTERRUPT
    assert ref.virtual_ite(DEVICE, EVENT) == (VINTID, VPE, DOORBELL)


def test_clear_on_a_virtual_ite_resident_and_not():
    ref, mem = make()
    map_vpe_and_event(ref)
    assert ref.execute(C.int_(DEVICE, EVENT)) == 0
    assert ref.acknowledge(0) == DOORBELL
    assert ref.execute(C.clear(DEVICE, EVENT)) == 0
    assert vpt_byte(mem, VPT_A, VINTID) == 0 and ref.pending(0) == []    # never a doorbell
    mem.write(VPT_A + 1025, b"\x01")
    schedule40(ref, 0)
    assert ref.execute(C.clear(DEVICE, EVENT)) == 0
    assert ref.pending_virtual(0) == []
    deschedule40(ref, 0)
    assert vpt_byte(mem, VPT_A, VINTID) == 0


def test_mapd_drops_virtual_ites_and_leaves_vlpi_pending_state():
    ref, mem = make()
    map_vpe_and_event(ref)
    assert ref.msi(DEVICE, EVENT) == VS.VIRTUAL
    assert ref.execute(C.mapd(DEVICE, ITT, 4)) == 0           # remap
    assert ref.virtual_ite(DEVICE, EVENT) is None
    assert ref.msi(DEVICE, EVENT) == TS.NO_MAPPING
    assert vpt_bit(mem, VPT_A, VINTID) == 1
    assert ref.execute(C.vmapti(DEVICE, EVENT, VPE, VINTID, NONE)) == 0
    assert ref.execute(C.mapd(DEVICE, ITT, 4, valid=False)) == 0
    assert ref.snapshot()["virtual_events"] == {}
    assert ref.msi(DEVICE, EVENT) == TS.NO_DEVICE


def test_v41_schedule_needs_vpropbaser_a_slot_and_a_mapped_vpe():
    ref, _ = make("4.1")
    map_vpe_and_event(ref)
    ref.write_vpendbaser(0, VPEND41.encode(Valid=1, vPEID=VPE))       # VPROPBASER.Valid = 0
    assert ref.read_vpendbaser(0) == 0
    ref.write_vpropbaser(0, vprop41())
    assert R.GICR_VPROPBASER_V41_LAYOUT["Entry_Size"].extract(ref.vpropbaser[0]) == 0
    ref.write_vpendbaser(0, VPEND41.encode(Valid=1, vPEID=9))         # not mapped
    assert ref.read_vpendbaser(0) == 0
    assert ref.execute(C.vmapp_v41(600, 0, VPT_B, 15, VCONF, NONE, alloc=True)) \
        == C.E_ITS_VMAPP_VPEID_OOR
    ref.write_vpendbaser(0, VPEND41.encode(Valid=1, vPEID=VPE))
    assert ref.pending_virtual(0) == []
    assert VPEND41["Valid"].extract(ref.read_vpendbaser(0)) == 1
    # A vPEID beyond the one-page (512-entry) vPE Configuration table on CPU 1,
    # inside a 5-page vPE table (640 32-byte v4.1 entries; the reference keeps
    # vPEs as model state, so the pages it spans are never written).
    two, _ = make("4.1", vpe_pages=5)
    assert two.execute(C.vmapp_v41(600, 1, VPT_B, 15, VCONF, NONE, alloc=True)) == 0
    two.write_vpropbaser(1, vprop41())
    two.write_vpendbaser(1, VPEND41.encode(Valid=1, vPEID=600))
    assert two.read_vpendbaser(1) == 0


def test_v41_vpendbaser_write_while_valid_is_ignored():
    ref, _ = make("4.1")
    map_vpe_and_event(ref)
    schedule41(ref, 0)
    value = ref.read_vpendbaser(0)
    ref.write_vpendbaser(0, value ^ 1)                        # another vPEID, still Valid
    assert ref.read_vpendbaser(0) == value


def test_sgir_and_vsgir_on_other_versions_and_unmapped_vpes():
    ref40, _ = make("4.0")
    map_vpe_and_event(ref40)
    ref40.write_sgir(VPE << 32 | 5)
    ref40.write_vsgir(0, VPE)
    assert ref40.read_vsgipendr(0) == 0
    ref41, _ = make("4.1")
    ref41.write_sgir(VPE << 32 | 5)                          # vPE not mapped: ignored
    map_vpe_and_event(ref41)
    ref41.write_vsgir(0, VPE)
    assert ref41.read_vsgipendr(0) == 0


# == GICv3 unchanged ===============================================================================

@pytest.mark.parametrize("name", sorted(C.GICV4_COMMAND_TABLE))
def test_v3_reference_treats_every_gicv4_command_as_unknown(name):
    spec = C.GICV4_COMMAND_TABLE[name]
    params = {f.name: 0 for f in spec.fields}
    params.update({k: v for k, v in {"vintid": 8192, "dbell_pintid": NONE,
                                     "default_doorbell": NONE, "vpe_id": VPE}.items()
                   if k in params})
    if name == "VSGI":
        params["vintid"] = 5
    mem = GuestMemory(MEM_BYTES, base=BASE)
    ref = ReferenceITS(mem, 2, event_bits=8)
    assert ref.gic_version == "3"
    before = ref.snapshot()
    assert ref.execute(C.encode(name, **params)) == C.E_ITS_UNKNOWN_COMMAND
    assert ref.snapshot() == before == {"devices": {}, "events": {}, "collections": {}}


def test_gic_version_is_checked():
    with pytest.raises(ValueError, match="gic_version"):
        ReferenceITS(GuestMemory(4096), 1, gic_version="4")


def test_gicv4_error_codes_have_names_outside_the_kvm_table():
    assert C.E_ITS_VMAPP_VPT_SIZE_OOR == 0x012901
    assert C.E_ITS_VMAPTI_ID_ALREADY_MAPPED == 0x012A08
    assert C.E_ITS_MOVI_VIRTUAL_INTERRUPT == 0x01010C
    assert C.error_name(0x012D0D) == "E_ITS_VINVALL_UNMAPPED_VPE"
    assert set(C.GICV4_ERROR_NAMES).isdisjoint(C.ERROR_NAMES)
    assert all(code >> 16 == 0x01 for code in C.GICV4_ERROR_NAMES)
