"""Tests of the command encoders/decoder against hand-built images (digest 3.2-3.3, 4.1)."""

import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from its_core.frontend import commands as C


def image(dw0=0, dw1=0, dw2=0, dw3=0):
    """32-byte command image from four doubleword values, built with struct."""
    return struct.pack("<QQQQ", dw0, dw1, dw2, dw3)


U32 = st.integers(0, 2**32 - 1)
U16 = st.integers(0, 2**16 - 1)


# -- command numbers -------------------------------------------------------------------

def test_command_numbers_match_digest_table():
    assert C.OPCODES == {
        "MOVI": 0x01, "INT": 0x03, "CLEAR": 0x04, "SYNC": 0x05, "MAPD": 0x08,
        "MAPC": 0x09, "MAPTI": 0x0A, "MAPI": 0x0B, "INV": 0x0C, "INVALL": 0x0D,
        "MOVALL": 0x0E, "DISCARD": 0x0F,
    }
    assert {name: spec.code for name, spec in C.COMMAND_TABLE.items()} == C.OPCODES
    assert C.OPCODE_NAMES[0x2A] == "VMAPTI" and C.OPCODE_NAMES[0x0A] == "MAPTI"


# -- encoders against hand-built images ------------------------------------------------------

def test_mapd_image():
    # DeviceID DW0[63:32]; Size DW1[4:0] = bits - 1; V DW2[63]; ITT_addr DW2[51:8].
    assert C.mapd(0x1234, 0x4_0000, 5) == image(0x08 | 0x1234 << 32, 4, 1 << 63 | 0x4_0000)
    assert C.mapd(0xFFFF_FFFF, 0xF_FFFF_FFFF_FF00, 32) == image(
        0x08 | 0xFFFF_FFFF << 32, 31, 1 << 63 | 0xF_FFFF_FFFF_FF00)
    assert C.mapd(3, 0, 1, valid=False) == image(0x08 | 3 << 32, 0, 0)


def test_mapd_image_spelled_out_in_bytes():
    expected = bytes.fromhex(
        "0800000034120000"      # DW0: cmd 0x08, DeviceID 0x1234
        "0400000000000000"      # DW1: Size 4
        "0000040000000080"      # DW2: ITT 0x40000, V=1
        "0000000000000000")
    assert C.mapd(0x1234, 0x4_0000, 5) == expected


def test_mapc_image():
    # ICID DW2[15:0]; target DW2[47:16]; V DW2[63].
    assert C.mapc(5, 2) == image(0x09, 0, 1 << 63 | 2 << 16 | 5)
    assert C.mapc(0xFFFF, 0xFFFF_FFFF) == image(0x09, 0, 1 << 63 | 0xFFFF_FFFF << 16 | 0xFFFF)
    assert C.mapc(7, 0, valid=False) == image(0x09, 0, 7)


def test_mapti_image():
    assert C.mapti(7, 3, 8192, 1) == image(0x0A | 7 << 32, 8192 << 32 | 3, 1)
    assert C.mapti(7, 3, 8192, 1) == bytes.fromhex(
        "0a00000007000000" "0300000000200000" "0100000000000000" "0000000000000000")


def test_device_event_commands_images():
    for fn, code in ((C.discard, 0x0F), (C.inv, 0x0C), (C.int_, 0x03), (C.clear, 0x04)):
        assert fn(0xABCD_0123, 0x8765_4321) == image(code | 0xABCD_0123 << 32, 0x8765_4321)
    assert C.mapi(9, 0x1FFF, 0x22) == image(0x0B | 9 << 32, 0x1FFF, 0x22)
    assert C.movi(9, 4, 0xFFFF) == image(0x01 | 9 << 32, 4, 0xFFFF)


def test_collection_and_target_commands_images():
    assert C.invall(0x1234) == image(0x0D, 0, 0x1234)
    assert C.sync(3) == image(0x05, 0, 3 << 16)
    assert C.movall(1, 2) == image(0x0E, 0, 1 << 16, 2 << 16)
    assert C.movall(0xFFFF_FFFF, 0) == image(0x0E, 0, 0xFFFF_FFFF << 16, 0)


def test_every_encoder_returns_32_bytes():
    packets = [C.mapd(0, 0, 1), C.mapc(0, 0), C.mapti(0, 0, 0, 0), C.mapi(0, 0, 0),
               C.movi(0, 0, 0), C.discard(0, 0), C.inv(0, 0), C.invall(0), C.int_(0, 0),
               C.clear(0, 0), C.sync(0), C.movall(0, 0)]
    assert [len(p) for p in packets] == [32] * 12
    assert sorted(p[0] for p in packets) == sorted(C.OPCODES.values())


def test_generic_encode_matches_encoders():
    assert C.encode("MAPTI", device_id=1, event_id=2, intid=8200, icid=3) == C.mapti(1, 2, 8200, 3)
    assert C.encode("MAPD", device_id=1, itt_addr=0x100, num_event_bits=2) == C.mapd(1, 0x100, 2)
    assert C.encode_dwords("SYNC", cpu=1) == (0x05, 0, 1 << 16, 0)


# -- range checks ------------------------------------------------------------------------------

@pytest.mark.parametrize("call,field", [
    (lambda: C.mapd(2**32, 0, 1), "device_id"),
    (lambda: C.mapd(-1, 0, 1), "device_id"),
    (lambda: C.mapd(0, 0x101, 1), "itt_addr"),           # not 256-byte aligned
    (lambda: C.mapd(0, 1 << 52, 1), "itt_addr"),         # beyond PA[51:8]
    (lambda: C.mapd(0, 0, 0), "num_event_bits"),         # Size would be -1
    (lambda: C.mapd(0, 0, 33), "num_event_bits"),        # Size 32 does not fit [4:0]
    (lambda: C.mapd(0, 0, 1, valid=2), "valid"),
    (lambda: C.mapc(2**16, 0), "icid"),
    (lambda: C.mapc(0, 2**32), "cpu"),
    (lambda: C.mapti(0, 2**32, 8192, 0), "event_id"),
    (lambda: C.mapti(0, 0, 2**32, 0), "intid"),
    (lambda: C.mapti(0, 0, 8192, -1), "icid"),
    (lambda: C.mapi(0, 0, 2**16), "icid"),
    (lambda: C.movi(2**40, 0, 0), "device_id"),
    (lambda: C.discard(0, -5), "event_id"),
    (lambda: C.inv(0, 2**32), "event_id"),
    (lambda: C.int_(2**32, 0), "device_id"),
    (lambda: C.clear(0, 2**33), "event_id"),
    (lambda: C.invall(2**16), "icid"),
    (lambda: C.sync(2**32), "cpu"),
    (lambda: C.movall(2**32, 0), "from_cpu"),
    (lambda: C.movall(0, 2**32), "to_cpu"),
])
def test_out_of_range_values_raise_value_error_naming_the_field(call, field):
    with pytest.raises(ValueError, match=field):
        call()


def test_non_integer_values_are_type_errors():
    with pytest.raises(TypeError):
        C.mapti(0, 0, 8192.0, 0)


def test_generic_encode_errors():
    with pytest.raises(ValueError, match="unknown command"):
        C.encode("VINT", device_id=0)                 # no such command (GICv4 has none)
    with pytest.raises(ValueError, match="unknown command"):
        C.encode("vmapti", device_id=0)               # names are the upper-case mnemonics
    with pytest.raises(ValueError, match="missing field 'event_id'"):
        C.encode("VMAPTI", device_id=0)               # a GICv4 command is known to encode
    with pytest.raises(ValueError, match="missing"):
        C.encode("MAPTI", device_id=0, event_id=0, intid=8192)
    with pytest.raises(ValueError, match="unexpected"):
        C.encode("INV", device_id=0, event_id=0, icid=1)


# -- decoder on hand-built images ----------------------------------------------------------------

def test_decode_hand_built_images():
    cmd = C.decode(image(0x0A | 7 << 32, 8192 << 32 | 3, 1))
    assert cmd.name == "MAPTI" and cmd.code == 0x0A
    assert cmd.fields == {"device_id": 7, "event_id": 3, "intid": 8192, "icid": 1}

    cmd = C.decode(image(0x08 | 0x1234 << 32, 4, 1 << 63 | 0x4_0000))
    assert cmd == C.Command("MAPD", 0x08, {"device_id": 0x1234, "itt_addr": 0x4_0000,
                                           "num_event_bits": 5, "valid": 1})
    assert C.decode(image(0x0E, 0, 1 << 16, 2 << 16)).fields == {"from_cpu": 1, "to_cpu": 2}


def test_decode_ignores_res0_bits():
    dirty = image(0x0C | 0xFFFF_FF00 | 5 << 32, 0xFFFF_FFFF_0000_0009, ~0 & (2**64 - 1), 2**64 - 1)
    assert C.decode(dirty) == C.Command("INV", 0x0C, {"device_id": 5, "event_id": 9})


def test_decode_target_reads_bits_47_16_only():
    # RDbase is architecturally DW2[51:16]; the model (like KVM) reads [47:16].
    dw2 = 1 << 63 | 0xF << 48 | 0x1234_5678 << 16 | 0x42
    assert C.decode(image(0x09, 0, dw2)).fields == {"icid": 0x42, "cpu": 0x1234_5678, "valid": 1}
    assert C.decode(image(0x05, 0, 0xF << 48 | 6 << 16)).fields == {"cpu": 6}
    assert C.decode(image(0x0E, 0, 0xF << 48 | 1 << 16, 0xF << 48 | 2 << 16)).fields == {
        "from_cpu": 1, "to_cpu": 2}


@pytest.mark.parametrize("code", [0x00, 0x02, 0x06, 0x07, 0x10, 0x21, 0x22, 0x2A, 0x2E, 0xFF])
def test_decode_unknown_command(code):
    cmd = C.decode(image(code | 0x1234 << 32, 5, 6, 7))
    assert cmd.name == C.UNKNOWN == "UNKNOWN"
    assert cmd.code == code and cmd.fields == {"opcode": code}


def test_decode_accepts_any_32_byte_buffer():
    raw = C.mapc(1, 2)
    expected = C.decode(raw)
    assert C.decode(bytearray(raw)) == expected
    assert C.decode(memoryview(raw)) == expected
    assert C.decode(np.frombuffer(raw, np.uint8)) == expected
    assert C.decode(np.frombuffer(raw, "<u8")) == expected
    padded = np.zeros(64, np.uint8)
    padded[::2] = np.frombuffer(raw, np.uint8)            # non-contiguous view
    assert C.decode(padded[::2]) == expected


@pytest.mark.parametrize("n", [0, 31, 33, 64])
def test_decode_wrong_length(n):
    with pytest.raises(ValueError):
        C.decode(bytes(n))


def test_decode_dwords():
    assert C.decode_dwords((0x05, 0, 9 << 16, 0)) == C.Command("SYNC", 5, {"cpu": 9})
    with pytest.raises(ValueError):
        C.decode_dwords((0, 0, 0))
    with pytest.raises(ValueError):
        C.decode_dwords((1 << 64, 0, 0, 0))


# -- round trips over the full field ranges -------------------------------------------------------

ITT = st.integers(0, 2**44 - 1).map(lambda x: x << 8)


@given(U32, ITT, st.integers(1, 32), st.booleans())
def test_mapd_round_trip(device_id, itt_addr, bits, valid):
    cmd = C.decode(C.mapd(device_id, itt_addr, bits, valid))
    assert cmd.name == "MAPD"
    assert cmd.fields == {"device_id": device_id, "itt_addr": itt_addr,
                          "num_event_bits": bits, "valid": int(valid)}


@given(U16, U32, st.booleans())
def test_mapc_round_trip(icid, cpu, valid):
    assert C.decode(C.mapc(icid, cpu, valid)).fields == {"icid": icid, "cpu": cpu,
                                                         "valid": int(valid)}


@given(U32, U32, U32, U16)
def test_mapti_round_trip(device_id, event_id, intid, icid):
    assert C.decode(C.mapti(device_id, event_id, intid, icid)) == C.Command(
        "MAPTI", 0x0A, {"device_id": device_id, "event_id": event_id, "intid": intid,
                        "icid": icid})


@given(U32, U32, U16)
def test_mapi_movi_round_trip(device_id, event_id, icid):
    for fn, name in ((C.mapi, "MAPI"), (C.movi, "MOVI")):
        cmd = C.decode(fn(device_id, event_id, icid))
        assert cmd.name == name
        assert cmd.fields == {"device_id": device_id, "event_id": event_id, "icid": icid}


@given(U32, U32)
def test_device_event_round_trip(device_id, event_id):
    for fn, name in ((C.discard, "DISCARD"), (C.inv, "INV"), (C.int_, "INT"),
                     (C.clear, "CLEAR")):
        cmd = C.decode(fn(device_id, event_id))
        assert (cmd.name, cmd.fields) == (name, {"device_id": device_id, "event_id": event_id})


@given(U16, U32, U32)
def test_collection_target_round_trip(icid, a, b):
    assert C.decode(C.invall(icid)).fields == {"icid": icid}
    assert C.decode(C.sync(a)).fields == {"cpu": a}
    assert C.decode(C.movall(a, b)).fields == {"from_cpu": a, "to_cpu": b}


@given(st.binary(min_size=32, max_size=32))
def test_decode_any_packet_and_reencode_canonical_form(packet):
    cmd = C.decode(packet)
    assert cmd.code == packet[0]
    if cmd.name == C.UNKNOWN:
        assert cmd.fields == {"opcode": packet[0]}
        return
    # Re-encoding gives the packet with every RES0 bit cleared.
    masks = C.COMMAND_TABLE[cmd.name].dword_masks
    dwords = struct.unpack("<4Q", packet)
    assert C.encode(cmd.name, **cmd.fields) == image(*(d & m for d, m in zip(dwords, masks)))


# -- the table as data -------------------------------------------------------------------------------

def test_field_rows_flatten_the_table():
    rows = [r for r in C.FIELD_ROWS if r[0] == "MAPD"]
    assert rows == [
        ("MAPD", 0x08, "device_id", 0, 32, 32, 0, 0),
        ("MAPD", 0x08, "itt_addr", 2, 8, 44, 8, 0),
        ("MAPD", 0x08, "num_event_bits", 1, 0, 5, 0, 1),
        ("MAPD", 0x08, "valid", 2, 63, 1, 0, 0),
    ]
    assert len(C.FIELD_ROWS) == sum(len(s.fields) for s in C.COMMAND_TABLE.values())


def test_table_uses_arm_mnemonics():
    mapti = {f.name: f.field.name for f in C.COMMAND_TABLE["MAPTI"].fields}
    assert mapti == {"device_id": "DeviceID", "event_id": "EventID", "intid": "pINTID",
                     "icid": "ICID"}
    movall = {f.name: (f.dword, f.field.name) for f in C.COMMAND_TABLE["MOVALL"].fields}
    assert movall == {"from_cpu": (2, "RDbase1"), "to_cpu": (3, "RDbase2")}


# -- error codes -------------------------------------------------------------------------------------

KVM_CODES = {
    "E_ITS_MOVI_UNMAPPED_INTERRUPT": 0x010107,
    "E_ITS_MOVI_UNMAPPED_COLLECTION": 0x010109,
    "E_ITS_INT_UNMAPPED_INTERRUPT": 0x010307,
    "E_ITS_CLEAR_UNMAPPED_INTERRUPT": 0x010507,
    "E_ITS_MAPD_DEVICE_OOR": 0x010801,
    "E_ITS_MAPD_ITTSIZE_OOR": 0x010802,
    "E_ITS_MAPC_PROCNUM_OOR": 0x010902,
    "E_ITS_MAPC_COLLECTION_OOR": 0x010903,
    "E_ITS_MAPTI_UNMAPPED_DEVICE": 0x010A04,
    "E_ITS_MAPTI_ID_OOR": 0x010A05,
    "E_ITS_MAPTI_PHYSICALID_OOR": 0x010A06,
    "E_ITS_INV_UNMAPPED_INTERRUPT": 0x010C07,
    "E_ITS_INVALL_UNMAPPED_COLLECTION": 0x010D09,
    "E_ITS_MOVALL_PROCNUM_OOR": 0x010E01,
    "E_ITS_DISCARD_UNMAPPED_INTERRUPT": 0x010F07,
}


def test_kvm_error_codes_match_digest():
    for name, value in KVM_CODES.items():
        assert getattr(C, name) == value
        assert C.ERROR_NAMES[value] == name


def test_project_error_codes():
    assert C.E_ITS_UNKNOWN_COMMAND == 0x0100FF
    assert C.E_ITS_CMD_READ_FAULT == 0x0100FE
    assert C.E_ITS_MAPTI_ID_ALREADY_MAPPED == 0x010A08
    assert C.E_ITS_INT_LPIS_DISABLED == 0x010310
    assert C.PROJECT_ERROR_CODES.isdisjoint(KVM_CODES.values())
    assert set(C.ERROR_NAMES) == set(KVM_CODES.values()) | C.PROJECT_ERROR_CODES
    assert all(code >> 16 == 0x01 for code in C.ERROR_NAMES)


def test_error_code_helper():
    assert C.error_code(0x0A, 0x05) == 0x010A05
    assert C.error_code(0x00, 0xFF) == 0x0100FF
    with pytest.raises(ValueError):
        C.error_code(0x100, 0)
    with pytest.raises(ValueError):
        C.error_code(0, -1)
    assert C.error_name(0x010A04) == "E_ITS_MAPTI_UNMAPPED_DEVICE"
    assert "0x" in C.error_name(0x01FFFF)
