"""GICv4 / GICv4.1 command and register encodings (executed and modelled by a GICv4 ITS).

Expectations are doubleword values written out by hand: the worked encodings of
gicv4-digest 3.2, 5.3 and 6 (Linux's its_build_v*_cmd builders), and, where the
digest gives no worked value, images built by hand from its field table (3.2).
None is produced by the code under test.  The last part checks that a GICv3 ITS
(this model) still treats every GICv4 command as an unknown command.
"""

from __future__ import annotations

import re
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from its_core import ITS, GuestMemory
from its_core.frontend import commands as C
from its_core.frontend import registers as R
from its_core.frontend.reference_its import ReferenceITS
from its_core.frontend.registers import BaserType, Cacheability, PageSize, Shareability

from front_end_helpers import GITS_CREADR, ITT_ADDR, STALLED, bring_up, read64


def image(dw0=0, dw1=0, dw2=0, dw3=0) -> bytes:
    """32-byte command image from four doubleword values, built with struct."""
    return struct.pack("<QQQQ", dw0, dw1, dw2, dw3)


U16 = st.integers(0, 2**16 - 1)
U32 = st.integers(0, 2**32 - 1)
RDBASE = st.integers(0, 2**36 - 1)                       # DW2[51:16]
ADDR_64K = st.integers(0, 2**36 - 1).map(lambda x: x << 16)   # PA[51:16], 64 KiB aligned
FLAG = st.booleans()


# =========================================================================================
# Worked encodings from the digest (3.2): Linux's builders, values before LE storage
# =========================================================================================

def test_vmapp_v40_worked_encoding():
    # VMAPP vPEID 3 -> RD 1, VPT 0x4001_0000, size 15.
    expected = (0x29, 0x0000000300000000, 0x8000000000010000, 0x000000004001000F)
    assert C.encode_dwords("VMAPP", vpe_id=3, rdbase=1, vpt_addr=0x4001_0000,
                           vpt_size=15) == expected
    assert C.vmapp(3, 1, 0x4001_0000, 15) == image(*expected)
    assert C.vmapp(3, 1, 0x4001_0000, 15) == bytes.fromhex(
        "2900000000000000"      # DW0: command 0x29
        "0000000003000000"      # DW1: vPEID 3
        "0000010000000080"      # DW2: RDbase 1, V = 1
        "0f00014000000000")     # DW3: VPT 0x4001_0000, VPT_size 15


def test_vmapti_worked_encoding():
    # VMAPTI dev 5, event 2 -> vPE 3, vINTID 8200, doorbell 8292.
    expected = (0x000000050000002A, 0x0000000300000002, 0x0000206400002008, 0)
    assert C.encode_dwords("VMAPTI", device_id=5, event_id=2, vpe_id=3, vintid=8200,
                           dbell_pintid=8292) == expected
    assert C.vmapti(5, 2, 3, 8200, 8292) == image(*expected)


def test_vmovi_worked_encoding():
    # VMOVI dev 5, event 2 -> vPE 4, D = 1, doorbell 1023 (DW1, DW2 from the digest;
    # DW0 = command | DeviceID << 32 by the field table).
    expected = (0x0000000500000021, 0x0000000400000002, 0x000003FF00000001, 0)
    assert C.vmovi(5, 2, 4, 1023) == image(*expected)
    assert C.vmovi(5, 2, 4, C.NO_DOORBELL, doorbell_valid=True) == image(*expected)
    assert C.NO_DOORBELL == 1023


def test_vsgi_worked_encoding():
    # VSGI vPE 3, SGI 5, priority 0xA0, group 1, enable, no clear.
    expected = (0x0000000500A00523, 0x0000000300000000, 0, 0)
    assert C.encode_dwords("VSGI", vpe_id=3, vintid=5, priority=0xA0, group=1,
                           enable=1) == expected
    assert C.vsgi(3, 5, 0xA0, group=True, enable=True) == image(*expected)
    # Clear = 1 (DW0[9]) alone, as Linux's deactivation sends it.
    assert C.vsgi(3, 5, 0, group=False, enable=False, clear=True) == image(
        0x0000000500000223, 0x0000000300000000)


# -- images built by hand from the field table (no worked value in the digest) -----------

def test_vmapp_v41_image():
    # vPE 3 -> RD 1, VPT 0x4001_0000 size 15, VCONF 0x5000_0000, default doorbell 8292,
    # Alloc 1, PTZ 0: DW0 = VCONF[51:16] | Alloc [8] | 0x29.
    expected = (0x0000000050000129, 0x0000000300002064, 0x8000000000010000,
                0x000000004001000F)
    assert C.vmapp_v41(3, 1, 0x4001_0000, 15, 0x5000_0000, 8292, alloc=True) == image(*expected)
    # PTZ [9], an 8-bit VPT_size, unmap (V = 0).
    assert C.vmapp_v41(0xFFFF, 0, 0x1_0000, 0xFF, 0, 0, alloc=False, ptz=True,
                       valid=False) == image(0x229, 0x0000FFFF00000000, 0, 0x100FF)


def test_vmovp_images():
    # v4.0: SequenceNumber DW0[47:32], ITSList DW1[15:0], vPEID DW1[47:32], RDbase DW2[51:16].
    assert C.vmovp(3, 2, sequence_number=7, its_list=0b101) == image(
        0x0000000700000022, 0x0000000300000005, 0x0000000000020000)
    assert C.vmovp(3, 2) == image(0x22, 0x0000000300000000, 0x0000000000020000)
    # v4.1: DB DW2[63] and Default_Doorbell DW3[31:0] in addition.
    assert C.vmovp_v41(3, 2, 8292) == image(
        0x22, 0x0000000300000000, 0x8000000000020000, 0x0000000000002064)
    assert C.vmovp_v41(3, 2, 8292, default_doorbell_valid=False) == image(
        0x22, 0x0000000300000000, 0x0000000000020000, 0x0000000000002064)


def test_vpe_only_commands_images():
    for fn, code in ((C.vsync, 0x25), (C.vinvall, 0x2D), (C.invdb, 0x2E)):
        assert fn(3) == image(code, 0x0000000300000000)
        assert fn(0xFFFF) == image(code, 0x0000FFFF00000000)


def test_vmapi_image():
    # VMAPI dev 5, event 8200 (vINTID = EventID) -> vPE 3, no doorbell.
    assert C.vmapi(5, 8200, 3, 1023) == image(
        0x000000050000002B, 0x0000000300002008, 0x000003FF00000000)


def test_command_numbers_of_gicv4_commands():
    assert C.GICV4_OPCODES == {
        "VMOVI": 0x21, "VMOVP": 0x22, "VSGI": 0x23, "VSYNC": 0x25, "VMAPP": 0x29,
        "VMAPTI": 0x2A, "VMAPI": 0x2B, "VINVALL": 0x2D, "INVDB": 0x2E,
    }
    assert {name: spec.code for name, spec in C.GICV4_COMMAND_TABLE.items()} == {
        **C.GICV4_OPCODES, "VMAPP_V41": 0x29, "VMOVP_V41": 0x22}
    assert C.GICV4_COMMAND_TABLE["VMAPP_V41"].mnemonic == "VMAPP"
    # The processor's tables stay physical: a GICv3 ITS runs none of these.
    assert set(C.OPCODES).isdisjoint(C.GICV4_COMMAND_TABLE)
    assert all(row[1] < 0x20 for row in C.FIELD_ROWS)


# =========================================================================================
# decode and its gic_version keyword
# =========================================================================================

SAMPLES = {   # name -> (packet, GIC versions whose ITS knows the layout)
    "VMAPP": (C.vmapp(3, 1, 0x4001_0000, 15), {"4.0"}),
    "VMAPP_V41": (C.vmapp_v41(3, 1, 0x4001_0000, 15, 0x5000_0000, 8292, True), {"4.1"}),
    "VMAPTI": (C.vmapti(5, 2, 3, 8200, 8292), {"4.0", "4.1"}),
    "VMAPI": (C.vmapi(5, 8200, 3, 1023), {"4.0", "4.1"}),
    "VMOVI": (C.vmovi(5, 2, 4, 1023), {"4.0", "4.1"}),
    "VMOVP": (C.vmovp(3, 2, 7, 5), {"4.0"}),
    "VMOVP_V41": (C.vmovp_v41(3, 2, 8292), {"4.1"}),
    "VSYNC": (C.vsync(3), {"4.0", "4.1"}),
    "VINVALL": (C.vinvall(3), {"4.0", "4.1"}),
    "INVDB": (C.invdb(3), {"4.1"}),
    "VSGI": (C.vsgi(3, 5, 0xA0, True, True), {"4.1"}),
}


def test_samples_cover_every_gicv4_layout():
    assert set(SAMPLES) == set(C.GICV4_COMMAND_TABLE)


def test_decode_worked_encodings_by_version():
    assert C.decode(SAMPLES["VMAPP"][0], gic_version="4.0") == C.Command(
        "VMAPP", 0x29, {"vpe_id": 3, "rdbase": 1, "vpt_addr": 0x4001_0000, "vpt_size": 15,
                        "valid": 1})
    # The same bytes on a GICv4.1 ITS: the v4.1 layout, its extra fields all zero.
    assert C.decode(SAMPLES["VMAPP"][0], gic_version="4.1") == C.Command(
        "VMAPP_V41", 0x29, {"vpe_id": 3, "rdbase": 1, "vpt_addr": 0x4001_0000,
                            "vpt_size": 15, "vconf_addr": 0, "default_doorbell": 0,
                            "alloc": 0, "ptz": 0, "valid": 1})
    assert C.decode(SAMPLES["VMAPTI"][0], gic_version="4.1").fields == {
        "device_id": 5, "event_id": 2, "vpe_id": 3, "vintid": 8200, "dbell_pintid": 8292}
    assert C.decode(SAMPLES["VSGI"][0], gic_version="4.1").fields == {
        "vpe_id": 3, "vintid": 5, "priority": 0xA0, "group": 1, "enable": 1, "clear": 0}
    assert C.decode(SAMPLES["VMOVI"][0], gic_version="4.0").fields == {
        "device_id": 5, "event_id": 2, "vpe_id": 4, "dbell_pintid": 1023, "doorbell_valid": 1}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_decode_by_gic_version(name):
    packet, versions = SAMPLES[name]
    mnemonic = C.GICV4_COMMAND_TABLE[name].mnemonic
    # GICv3 (the default): every GICv4 command is unknown, as it always was.
    assert C.decode(packet) == C.Command(C.UNKNOWN, packet[0], {"opcode": packet[0]})
    assert C.decode(packet, gic_version="3") == C.decode(packet)
    for version in ("4.0", "4.1"):
        cmd = C.decode(packet, gic_version=version)
        if version in versions:
            assert cmd.name == name
            assert C.encode(cmd.name, **cmd.fields) == packet
        elif name in ("VSGI", "INVDB"):                 # GICv4.1 only: unknown on 4.0
            assert cmd.name == C.UNKNOWN
        else:                                           # the other layout of the number
            assert cmd.name != name and cmd.name.startswith(mnemonic)


@pytest.mark.parametrize("version", ["4", "v4.1", 4.0, 3, None, "4.2"])
def test_decode_rejects_unknown_gic_versions(version):
    with pytest.raises(ValueError, match="gic_version"):
        C.decode(bytes(32), gic_version=version)
    with pytest.raises(ValueError, match="gic_version"):
        C.decode_dwords((0x29, 0, 0, 0), gic_version=version)


def test_physical_commands_decode_alike_in_every_version():
    for packet in (C.mapti(7, 3, 8192, 1), C.mapd(1, 0x100, 2), C.movall(1, 2)):
        decoded = [C.decode(packet, gic_version=v) for v in C.GIC_VERSIONS]
        assert decoded == [C.decode(packet)] * 3


@pytest.mark.parametrize("version", C.GIC_VERSIONS)
@given(packet=st.binary(min_size=32, max_size=32))
def test_decode_any_packet_and_reencode_canonical_form(version, packet):
    cmd = C.decode(packet, gic_version=version)
    assert cmd.code == packet[0]
    if cmd.name == C.UNKNOWN:
        assert cmd.fields == {"opcode": packet[0]}
        return
    spec = {**C.COMMAND_TABLE, **C.GICV4_COMMAND_TABLE}[cmd.name]
    assert version in spec.gic_versions
    dwords = struct.unpack("<4Q", packet)
    assert C.encode(cmd.name, **cmd.fields) == image(
        *(d & m for d, m in zip(dwords, spec.dword_masks)))


# =========================================================================================
# Round trips over the field ranges
# =========================================================================================

@given(U16, RDBASE, ADDR_64K, st.integers(0, 31), FLAG)
def test_vmapp_round_trip(vpe_id, rdbase, vpt_addr, vpt_size, valid):
    cmd = C.decode(C.vmapp(vpe_id, rdbase, vpt_addr, vpt_size, valid), gic_version="4.0")
    assert cmd == C.Command("VMAPP", 0x29, {"vpe_id": vpe_id, "rdbase": rdbase,
                                            "vpt_addr": vpt_addr, "vpt_size": vpt_size,
                                            "valid": int(valid)})


@given(U16, RDBASE, ADDR_64K, st.integers(0, 255), ADDR_64K, U32, FLAG, FLAG, FLAG)
def test_vmapp_v41_round_trip(vpe_id, rdbase, vpt_addr, vpt_size, vconf_addr,
                              default_doorbell, alloc, ptz, valid):
    packet = C.vmapp_v41(vpe_id, rdbase, vpt_addr, vpt_size, vconf_addr, default_doorbell,
                         alloc, ptz=ptz, valid=valid)
    assert C.decode(packet, gic_version="4.1") == C.Command("VMAPP_V41", 0x29, {
        "vpe_id": vpe_id, "rdbase": rdbase, "vpt_addr": vpt_addr, "vpt_size": vpt_size,
        "vconf_addr": vconf_addr, "default_doorbell": default_doorbell, "alloc": int(alloc),
        "ptz": int(ptz), "valid": int(valid)})


@given(U32, U32, U16, U32, U32, FLAG, st.sampled_from(["4.0", "4.1"]))
def test_event_commands_round_trip(device_id, event_id, vpe_id, vintid, doorbell, d, version):
    assert C.decode(C.vmapti(device_id, event_id, vpe_id, vintid, doorbell),
                    gic_version=version).fields == {
        "device_id": device_id, "event_id": event_id, "vpe_id": vpe_id, "vintid": vintid,
        "dbell_pintid": doorbell}
    assert C.decode(C.vmapi(device_id, event_id, vpe_id, doorbell),
                    gic_version=version).fields == {
        "device_id": device_id, "event_id": event_id, "vpe_id": vpe_id,
        "dbell_pintid": doorbell}
    assert C.decode(C.vmovi(device_id, event_id, vpe_id, doorbell, d),
                    gic_version=version).fields == {
        "device_id": device_id, "event_id": event_id, "vpe_id": vpe_id,
        "dbell_pintid": doorbell, "doorbell_valid": int(d)}


@given(U16, RDBASE, U16, U16, U32, FLAG)
def test_vmovp_round_trip(vpe_id, rdbase, sequence_number, its_list, default_doorbell, db):
    assert C.decode(C.vmovp(vpe_id, rdbase, sequence_number, its_list),
                    gic_version="4.0") == C.Command("VMOVP", 0x22, {
        "vpe_id": vpe_id, "rdbase": rdbase, "sequence_number": sequence_number,
        "its_list": its_list})
    assert C.decode(C.vmovp_v41(vpe_id, rdbase, default_doorbell, sequence_number, its_list,
                                default_doorbell_valid=db),
                    gic_version="4.1") == C.Command("VMOVP_V41", 0x22, {
        "vpe_id": vpe_id, "rdbase": rdbase, "sequence_number": sequence_number,
        "its_list": its_list, "default_doorbell": default_doorbell,
        "default_doorbell_valid": int(db)})


@given(U16, st.sampled_from(["4.0", "4.1"]))
def test_vpe_only_commands_round_trip(vpe_id, version):
    assert C.decode(C.vsync(vpe_id), gic_version=version) == C.Command(
        "VSYNC", 0x25, {"vpe_id": vpe_id})
    assert C.decode(C.vinvall(vpe_id), gic_version=version) == C.Command(
        "VINVALL", 0x2D, {"vpe_id": vpe_id})
    assert C.decode(C.invdb(vpe_id), gic_version="4.1") == C.Command(
        "INVDB", 0x2E, {"vpe_id": vpe_id})


@given(U16, st.integers(0, 15), st.integers(0, 15).map(lambda p: p << 4), FLAG, FLAG, FLAG)
def test_vsgi_round_trip(vpe_id, vintid, priority, group, enable, clear):
    assert C.decode(C.vsgi(vpe_id, vintid, priority, group, enable, clear),
                    gic_version="4.1") == C.Command("VSGI", 0x23, {
        "vpe_id": vpe_id, "vintid": vintid, "priority": priority, "group": int(group),
        "enable": int(enable), "clear": int(clear)})


def test_encode_many_gicv4_matches_one_by_one():
    device_ids = np.array([5, 6, 0xFFFF_FFFF], np.uint64)
    vintids = np.array([8200, 8201, 2**32 - 1], np.uint64)
    out = C.encode_many("VMAPTI", device_id=device_ids, event_id=2, vpe_id=3, vintid=vintids,
                        dbell_pintid=1023)
    assert out.astype("<u8").tobytes() == b"".join(
        C.vmapti(int(d), 2, 3, int(v), 1023) for d, v in zip(device_ids, vintids))
    out = C.encode_many("VMAPP_V41", vpe_id=[1, 2], rdbase=0, vpt_addr=[0x1_0000, 0x2_0000],
                        vpt_size=15, vconf_addr=0x5000_0000, default_doorbell=8292, alloc=1)
    assert out.tolist() == [
        [0x0000000050000129, 0x0000000100002064, 1 << 63, 0x1_000F],
        [0x0000000050000129, 0x0000000200002064, 1 << 63, 0x2_000F]]
    with pytest.raises(ValueError, match=re.escape("VSGI.priority")):
        C.encode_many("VSGI", vpe_id=0, vintid=0, priority=[0x10, 0x11], group=0, enable=0)
    with pytest.raises(ValueError, match=re.escape("VMAPP.vpt_size")):
        C.encode_many("VMAPP", vpe_id=0, rdbase=0, vpt_addr=0, vpt_size=[15, 32])


# =========================================================================================
# Out-of-range values: ValueError naming the command and field
# =========================================================================================

OK_VMAPP = dict(vpe_id=3, rdbase=1, vpt_addr=0x4001_0000, vpt_size=15)
OK_V41 = dict(OK_VMAPP, vconf_addr=0x5000_0000, default_doorbell=8292, alloc=1)
OK_EVENT = dict(device_id=5, event_id=2, vpe_id=3, dbell_pintid=8292)
OK_VMOVP = dict(vpe_id=3, rdbase=2)
OK_VSGI = dict(vpe_id=3, vintid=5, priority=0xA0, group=1, enable=1)

BAD_VALUES = [
    ("VMAPP", OK_VMAPP, "vpe_id", 2**16),
    ("VMAPP", OK_VMAPP, "vpe_id", -1),
    ("VMAPP", OK_VMAPP, "rdbase", 2**36),
    ("VMAPP", OK_VMAPP, "vpt_addr", 0x4001_1000),     # not 64 KiB aligned
    ("VMAPP", OK_VMAPP, "vpt_addr", 1 << 52),         # beyond PA[51:16]
    ("VMAPP", OK_VMAPP, "vpt_size", 32),              # [4:0] in the v4.0 layout
    ("VMAPP", OK_VMAPP, "valid", 2),
    ("VMAPP_V41", OK_V41, "vpt_size", 256),           # [7:0] in the v4.1 layout
    ("VMAPP_V41", OK_V41, "vconf_addr", 0x5000_8000),
    ("VMAPP_V41", OK_V41, "vconf_addr", 1 << 52),
    ("VMAPP_V41", OK_V41, "default_doorbell", 2**32),
    ("VMAPP_V41", OK_V41, "alloc", 2),
    ("VMAPP_V41", OK_V41, "ptz", 2),
    ("VMAPTI", dict(OK_EVENT, vintid=8200), "vintid", 2**32),
    ("VMAPTI", dict(OK_EVENT, vintid=8200), "dbell_pintid", 2**32),
    ("VMAPTI", dict(OK_EVENT, vintid=8200), "device_id", 2**32),
    ("VMAPI", OK_EVENT, "event_id", 2**32),
    ("VMAPI", OK_EVENT, "vpe_id", 2**16),
    ("VMOVI", OK_EVENT, "doorbell_valid", 2),
    ("VMOVI", OK_EVENT, "dbell_pintid", -1),
    ("VMOVP", OK_VMOVP, "sequence_number", 2**16),
    ("VMOVP", OK_VMOVP, "its_list", 2**16),
    ("VMOVP", OK_VMOVP, "rdbase", 2**36),
    ("VMOVP_V41", dict(OK_VMOVP, default_doorbell=8292), "default_doorbell", 2**32),
    ("VMOVP_V41", dict(OK_VMOVP, default_doorbell=8292), "default_doorbell_valid", 2),
    ("VSYNC", dict(vpe_id=0), "vpe_id", 2**16),
    ("VINVALL", dict(vpe_id=0), "vpe_id", 2**16),
    ("INVDB", dict(vpe_id=0), "vpe_id", -1),
    ("VSGI", OK_VSGI, "vintid", 16),
    ("VSGI", OK_VSGI, "priority", 0xA1),              # only the top nibble is carried
    ("VSGI", OK_VSGI, "priority", 0x100),
    ("VSGI", OK_VSGI, "group", 2),
    ("VSGI", OK_VSGI, "enable", 2),
    ("VSGI", OK_VSGI, "clear", 2),
]


@pytest.mark.parametrize("name,good,field,value", BAD_VALUES,
                         ids=[f"{n}.{f}={v:#x}" for n, _, f, v in BAD_VALUES])
def test_out_of_range_values_raise_value_error_naming_the_field(name, good, field, value):
    C.encode(name, **good)                              # the baseline is fine
    with pytest.raises(ValueError, match=re.escape(f"{name}.{field} ")):
        C.encode(name, **dict(good, **{field: value}))


def test_encoder_functions_check_ranges_too():
    with pytest.raises(ValueError, match=re.escape("VMAPP.vpt_size")):
        C.vmapp(3, 1, 0x4001_0000, 16 + 16)
    with pytest.raises(ValueError, match="multiple of 16"):
        C.vsgi(3, 5, 0xA8, True, True)
    with pytest.raises(ValueError, match=re.escape("VMAPP_V41.vconf_addr")):
        C.vmapp_v41(3, 1, 0x4001_0000, 15, 0x1234, 8292, True)
    with pytest.raises(ValueError, match="missing field 'alloc'"):
        C.encode("VMAPP_V41", **OK_VMAPP, vconf_addr=0, default_doorbell=0)
    with pytest.raises(ValueError, match="unexpected field"):
        C.encode("VMAPP", **OK_VMAPP, vconf_addr=0)    # a v4.1 field in the v4.0 layout
    with pytest.raises(TypeError):
        C.vsync(3.0)


# =========================================================================================
# GICv4 registers and fields, declared as data
# =========================================================================================

def bits(hi, lo=None):
    lo = hi if lo is None else lo
    return ((1 << (hi - lo + 1)) - 1) << lo


def test_gits_sgir_worked_encoding():
    # vPE 3, SGI 5 -> 0x0000000300000005 (digest 6); ITS_base + 0x20020, 64-bit, WO.
    assert R.GITS_SGIR.encode(vPEID=3, vINTID=5) == 0x0000000300000005
    assert (R.GITS_SGIR.offset, R.GITS_SGIR.width, R.GITS_SGIR.access) == (0x20020, 64, "WO")
    assert R.GITS_SGIR.sizes == {8}
    assert R.GITS_SGIR.res0 == ~(bits(47, 32) | bits(3, 0)) & (2**64 - 1)


def test_vpendbaser_v40_linux_schedule_value():
    # Linux's v4.0 schedule: VPT 0x4001_0000, RaWaWb, InnerShareable, PendingLast, IDAI,
    # Valid -> 0xE000000040010780 (digest 5.3).
    assert R.GICR_VPENDBASER_V40.encode(
        address=0x4001_0000, InnerCache=Cacheability.RaWaWb,
        Shareability=Shareability.INNER_SHAREABLE, PendingLast=1, IDAI=1,
        Valid=1) == 0xE000000040010780


def test_vlpi_frame_layouts():
    assert R.VLPI_FRAME == 0x20000 and R.SGIR_FRAME == 0x20000
    v40 = R.GICV4_GICR_REGISTERS["4.0"]
    assert {reg.name: (reg.offset, reg.width) for reg in v40} == {
        "GICR_VPROPBASER": (0x20070, 64), "GICR_VPENDBASER": (0x20078, 64)}
    v41 = R.GICV4_GICR_REGISTERS["4.1"]
    assert {reg.name: (reg.offset, reg.width, reg.access) for reg in v41} == {
        "GICR_INVLPIR": (0x00A0, 64, "WO"), "GICR_INVALLR": (0x00B0, 64, "WO"),
        "GICR_VPROPBASER": (0x20070, 64, "RW"), "GICR_VPENDBASER": (0x20078, 64, "RW"),
        "GICR_VSGIR": (0x20080, 32, "RW"), "GICR_VSGIPENDR": (0x20088, 32, "RO")}
    assert {f.name: f.mask for f in R.GICR_VPROPBASER_V40.layout} == {
        "IDbits": bits(4, 0), "InnerCache": bits(9, 7), "Shareability": bits(11, 10),
        "Physical_Address": bits(51, 12), "OuterCache": bits(58, 56)}
    assert {f.name: f.mask for f in R.GICR_VPROPBASER_V41.layout} == {
        "Size": bits(6, 0), "InnerCache": bits(9, 7), "Shareability": bits(11, 10),
        "Physical_Address": bits(51, 12), "Z": bits(52), "Page_Size": bits(54, 53),
        "Indirect": bits(55), "OuterCache": bits(58, 56), "Entry_Size": bits(61, 59),
        "Valid": bits(63)}
    assert {f.name: f.mask for f in R.GICR_VPENDBASER_V40.layout} == {
        "InnerCache": bits(9, 7), "Shareability": bits(11, 10),
        "Physical_Address": bits(51, 16), "OuterCache": bits(58, 56), "Dirty": bits(60),
        "PendingLast": bits(61), "IDAI": bits(62), "Valid": bits(63)}
    assert {f.name: f.mask for f in R.GICR_VPENDBASER_V41.layout} == {
        "vPEID": bits(15, 0), "vGrp1En": bits(58), "vGrp0En": bits(59), "Dirty": bits(60),
        "PendingLast": bits(61), "Doorbell": bits(62), "Valid": bits(63)}
    assert R.GICR_VPENDBASER_V40.read_only == R.GICR_VPENDBASER_V41.read_only == bits(60)
    assert R.GICR_VPROPBASER_V41.read_only == bits(61, 59)
    assert {f.name: f.mask for f in R.GICR_VSGIR.layout} == {"vPEID": bits(15, 0)}
    assert {f.name: f.mask for f in R.GICR_VSGIPENDR.layout} == {
        "Pending": bits(15, 0), "Busy": bits(31)}
    # GICv4.1 INVLPIR {V [63], vPEID [47:32], vINTID [31:0]}, INVALLR {V, vPEID}.
    assert R.GICR_INVLPIR_V41.encode(V=1, vPEID=3, INTID=8200) == 1 << 63 | 3 << 32 | 8200
    assert R.GICR_INVALLR_V41.encode(V=1, vPEID=3) == 1 << 63 | 3 << 32
    assert R.GICR_INVALLR_V41.res0 == ~(bits(63) | bits(47, 32)) & (2**64 - 1)


def test_vpe_table_baser():
    assert BaserType.VPES == 2
    baser2 = R.GITS_BASER2_VPES
    assert baser2.offset == 0x110 and baser2.field("Type").extract(baser2.reset) == 2
    assert [reg.name for reg in R.GICV4_ITS_REGISTERS["4.0"]] == ["GITS_BASER2"]
    assert [reg.name for reg in R.GICV4_ITS_REGISTERS["4.1"]] == ["GITS_BASER2", "GITS_SGIR"]
    # QEMU's GICv4 BASER2 reset (digest 2.1): Type 2, 8-byte entries, 64 KiB pages.
    qemu = baser2.decode(0x0207000000000200)
    assert (qemu["Type"], qemu["Entry_Size"] + 1, qemu["Page_Size"]) == (
        BaserType.VPES, 8, PageSize.SIZE_64K)


def test_typer_fields_for_gicv4():
    # QEMU GICv4 GICR_TYPER of CPU0 of 1 (digest 1.2 / 9): PLPIS, VLPIS, Last, CommonLPIAff 1.
    typer = R.GICR_TYPER.decode(0x0000000001000013)
    assert (typer["PLPIS"], typer["VLPIS"], typer["Last"], typer["CommonLPIAff"]) == (1, 1, 1, 1)
    assert (typer["RVPEID"], typer["VSGI"], typer["Dirty"], typer["DirectLPI"]) == (0, 0, 0, 0)
    assert R.GICR_TYPER.field("VSGI").mask == bits(26)
    assert R.GICR_TYPER.field("RVPEID").mask == bits(7)
    assert R.GICR_TYPER.field("VLPIS").mask == bits(1)
    gits = {f.name: f.mask for f in R.GITS_TYPER.layout}
    assert (gits["Virtual"], gits["VMOVP"], gits["VSGI"], gits["VMAPP"], gits["SVPET"],
            gits["nID"]) == (bits(1), bits(37), bits(39), bits(40), bits(42, 41), bits(43))
    assert R.GICV4_FIELDS == {
        "GITS_TYPER": ("Virtual", "VMOVP", "VSGI", "VMAPP", "SVPET", "nID"),
        "GICR_TYPER": ("VLPIS", "Dirty", "RVPEID", "VSGI")}


# =========================================================================================
# A GICv3 ITS (this model) is unchanged: every GICv4 command is an unknown command
# =========================================================================================

MEM_BYTES = 32 << 20
#: Every GICv4 layout, plus an all-ones image of each GICv4 command number.
GICV4_PACKETS = {**{name: packet for name, (packet, _) in SAMPLES.items()},
                 **{f"ones_{code:#04x}": bytes([code]) + b"\xff" * 31
                    for code in sorted(set(C.GICV4_OPCODES.values()))}}
UNKNOWN_PHYSICAL = bytes([0x02]) + bytes(31)            # the unknown command of today


def _run(packet: bytes, *, stall: bool):
    """A two-CPU guest with one mapped device runs `packet` then INT (dev 1, event 0).
    Returns what a guest can observe."""
    mem = GuestMemory(MEM_BYTES)
    its = ITS(mem, num_cpus=2, stall_on_error=stall)
    setup = bring_up(its, mem, 2, map_collections=True)
    its.submit(C.mapd(1, ITT_ADDR, 4), C.mapti(1, 0, 8192, 0), C.mapti(1, 1, 8193, 1))
    assert len(its.errors) == 0
    creadr = read64(its, GITS_CREADR)
    before = mem.array.copy()
    its.submit(packet, C.int_(1, 0))
    before[setup.queue_addr + creadr:setup.queue_addr + creadr + 64] = np.frombuffer(
        packet + C.int_(1, 0), np.uint8)               # the two queue slots written
    return dict(
        creadr_before=creadr,
        creadr=read64(its, GITS_CREADR),
        errors=[(e.offset, e.opcode, e.code) for e in its.errors],
        pending=[its.pending(cpu).tolist() for cpu in range(2)],
        translations=[its.translate(1, event) for event in range(2)],
        memory_unchanged=bool(np.array_equal(before, mem.array)),
        typer=read64(its, R.GITS_TYPER.offset),
    )


@pytest.mark.parametrize("name", sorted(GICV4_PACKETS))
def test_gicv3_its_skips_a_gicv4_command_as_unknown(name):
    packet = GICV4_PACKETS[name]
    seen = _run(packet, stall=False)
    start = seen["creadr_before"]
    assert seen["errors"] == [(start, packet[0], C.E_ITS_UNKNOWN_COMMAND)]
    assert seen["creadr"] == start + 64                   # skipped, and the INT ran
    assert seen["pending"] == [[8192], []]
    assert seen["translations"] == [(8192, 0), (8193, 1)]
    assert seen["memory_unchanged"]
    # ... exactly what an unknown physical number does today, opcode aside.
    baseline = _run(UNKNOWN_PHYSICAL, stall=False)
    baseline["errors"] = [(o, packet[0], c) for o, _, c in baseline["errors"]]
    assert seen == baseline


@pytest.mark.parametrize("name", sorted(GICV4_PACKETS))
def test_gicv3_its_stalls_on_a_gicv4_command_as_on_unknown(name):
    packet = GICV4_PACKETS[name]
    seen = _run(packet, stall=True)
    start = seen["creadr_before"]
    assert seen["errors"] == [(start, packet[0], C.E_ITS_UNKNOWN_COMMAND)]
    assert seen["creadr"] == start | STALLED              # stopped at it: the INT waits
    assert seen["pending"] == [[], []]
    assert seen["memory_unchanged"]
    baseline = _run(UNKNOWN_PHYSICAL, stall=True)
    baseline["errors"] = [(o, packet[0], c) for o, _, c in baseline["errors"]]
    assert seen == baseline


@pytest.mark.parametrize("name", sorted(GICV4_PACKETS))
def test_reference_its_treats_a_gicv4_command_as_unknown(name):
    ref = ReferenceITS(GuestMemory(1 << 20), 1)
    assert ref.execute(GICV4_PACKETS[name]) == C.E_ITS_UNKNOWN_COMMAND


def test_gicv3_its_reports_no_gicv4_capability_and_has_no_gicv4_registers():
    mem = GuestMemory(MEM_BYTES)
    its = ITS(mem, num_cpus=2)
    typer = R.GITS_TYPER.decode(its.mmio_read(R.GITS_TYPER.offset, 8))
    assert all(typer[name] == 0 for name in R.GICV4_FIELDS["GITS_TYPER"])
    assert typer["Physical"] == 1
    assert R.GITS_PIDR2.decode(its.mmio_read(R.GITS_PIDR2.offset, 4))["ArchRev"] == 3
    for cpu in range(2):
        gicr = R.GICR_TYPER.decode(its.redistributors.mmio_read(cpu, R.GICR_TYPER.offset, 8))
        assert all(gicr[name] == 0 for name in R.GICV4_FIELDS["GICR_TYPER"])
    # GITS_BASER2 stays unimplemented (RAZ/WI), whatever the vPE-table declaration says.
    its.mmio_write(R.GITS_BASER2.offset, R.GITS_BASER2_VPES.reset | 1 << 63, 8)
    assert its.mmio_read(R.GITS_BASER2.offset, 8) == 0
    # GITS_SGIR's frame lies outside a GICv3 ITS's 128 KiB region; the VLPI frame
    # outside the 64 KiB RD_base frame the redistributors decode.
    with pytest.raises(ValueError, match="outside"):
        its.mmio_write(R.GITS_SGIR.offset, 0x0000000300000005, 8)
    for reg in R.GICV4_GICR_REGISTERS["4.1"]:
        if reg.offset >= R.VLPI_FRAME:
            with pytest.raises(ValueError, match="outside"):
                its.redistributors.mmio_read(0, reg.offset, reg.nbytes)
    # The GICv3 maps hold none of the GICv4-only registers.
    assert R.lookup(R.GITS_SGIR.offset, 8) is None
    assert all(R.lookup_gicr(reg.offset, reg.nbytes) is None
               for reg in R.GICV4_GICR_REGISTERS["4.1"] if reg.offset >= R.VLPI_FRAME)
    assert R.GICR_INVLPIR.res0 & bits(63) and R.GICR_INVALLR.res0 == 2**64 - 1
