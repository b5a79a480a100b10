"""Self-tests of ReferenceITS: hand-computed effects and error codes of every command.

These do not need `its_core.ITS`; they pin the oracle itself to
docs/front-end.md with expectations worked out by hand (addresses, bytes,
pending sets) rather than by running the model twice.
"""

from __future__ import annotations

import pytest

from its_core import TranslationStatus as TS
from its_core.frontend import commands as C
from its_core.frontend.guest_memory import GuestMemory
from its_core.frontend.reference_its import ReferenceITS
from its_core.frontend.registers import BaserType, PageSize

from front_end_helpers import baser_value, pendbaser_value, propbaser_value

MEM = 4 << 20
DT = 0x10_0000
CT = 0x18_0000
PROP = 0x20_0000
PEND0 = 0x30_0000
PEND1 = 0x31_0000
ITT = 0x3F_0000
GARBAGE = b"\xa5" * 8


def make(num_cpus=2, *, device_bits=16, event_bits=8, intid_bits=16, dt_pages=1,
         dt_page=PageSize.SIZE_4K, ct_pages=1, ct_page=PageSize.SIZE_4K, lpis=True,
         mem_bytes=MEM, idbits=15, indirect=False):
    """A reference with a flat 4 KiB device table (512 DeviceIDs), 512 collections."""
    mem = GuestMemory(mem_bytes)
    ref = ReferenceITS(mem, num_cpus, device_bits=device_bits, event_bits=event_bits,
                       intid_bits=intid_bits)
    ref.baser0 = baser_value(BaserType.DEVICES, DT, page_size=dt_page, pages=dt_pages,
                             indirect=indirect)
    ref.baser1 = baser_value(BaserType.COLLECTIONS, CT, page_size=ct_page, pages=ct_pages)
    ref.propbaser = propbaser_value(PROP, idbits)
    ref.pendbaser = [pendbaser_value(PEND0 + 0x10000 * cpu) for cpu in range(num_cpus)]
    ref.enabled = True
    if lpis:
        for cpu in range(num_cpus):
            ref.enable_lpis(cpu)
    return ref, mem


def run(ref, *packets):
    return [ref.execute(p) for p in packets]


def mapped(ref, *, device=1, events=((0, 8192, 0),), bits=8, itt=ITT, collections=((0, 0),)):
    """MAPC + MAPD + MAPTI, all expected to succeed."""
    packets = [C.mapc(icid, cpu) for icid, cpu in collections]
    packets.append(C.mapd(device, itt, bits))
    packets += [C.mapti(device, e, intid, icid) for e, intid, icid in events]
    assert run(ref, *packets) == [0] * len(packets)


# -- MAPD ---------------------------------------------------------------------------------

def test_mapd_flat_slots_and_zero_dte():
    ref, mem = make()
    mem.write(DT + 8 * 511, GARBAGE)
    mem.write(DT + 8 * 510, GARBAGE)
    assert ref.execute(C.mapd(511, ITT, 4, valid=False)) == 0
    assert mem.read(DT + 8 * 511, 8) == bytes(8)          # zero DTE at base + 511 * 8
    assert mem.read(DT + 8 * 510, 8) == GARBAGE             # neighbours untouched
    assert ref.execute(C.mapd(512, ITT, 4)) == C.E_ITS_MAPD_DEVICE_OOR   # 4096 / 8 = 512
    assert ref.execute(C.mapd(512, ITT, 4, valid=False)) == C.E_ITS_MAPD_DEVICE_OOR
    assert ref.execute(C.mapd(2**32 - 1, ITT, 4)) == C.E_ITS_MAPD_DEVICE_OOR
    assert ref.execute(C.mapd(3, ITT, 4)) == 0
    assert ref.snapshot()["devices"] == {3: (4, ITT)}
    assert mem.read(DT + 8 * 3, 8) == bytes(8)             # V=1 writes nothing (memory was 0)


def test_mapd_device_bits_limit():
    ref, _ = make(device_bits=4, dt_page=PageSize.SIZE_64K)
    assert ref.execute(C.mapd(15, ITT, 2)) == 0
    assert ref.execute(C.mapd(16, ITT, 2)) == C.E_ITS_MAPD_DEVICE_OOR


def test_mapd_flat_dte_outside_memory():
    # 1 MiB of memory; table at 0xF0000 of 2 x 64 KiB pages: only 0x10000 bytes are inside.
    mem = GuestMemory(1 << 20)
    ref = ReferenceITS(mem, 1)
    ref.baser0 = baser_value(BaserType.DEVICES, 0xF0000, page_size=PageSize.SIZE_64K, pages=2)
    assert ref.execute(C.mapd(8191, 0, 1, valid=False)) == 0
    assert ref.execute(C.mapd(8192, 0, 1)) == C.E_ITS_MAPD_DEVICE_OOR


def test_mapd_indirect_slots():
    ref, mem = make(device_bits=20, indirect=True)          # 4 KiB pages: 512 IDs per L1 entry
    l2a, l2b = 0x11_0000, 0x11_2000
    mem.write_u64(DT + 0, (1 << 63) | l2a)
    mem.write_u64(DT + 8, l2b)                               # bit 63 clear: invalid
    # bits above 51 and below the page size are ignored: page = l2b
    mem.write_u64(DT + 16, (1 << 63) | (0x7F << 52) | l2b | 0xABC)
    mem.write_u64(DT + 24, (1 << 63) | (MEM + 0x1000))      # level-2 page outside memory
    for addr in (l2a + 8 * 5, l2b + 8 * 3):
        mem.write(addr, GARBAGE)
    assert ref.execute(C.mapd(5, ITT, 1, valid=False)) == 0
    assert mem.read(l2a + 40, 8) == bytes(8)
    assert ref.execute(C.mapd(512 + 7, ITT, 1)) == C.E_ITS_MAPD_DEVICE_OOR
    assert ref.execute(C.mapd(1024 + 3, ITT, 1, valid=False)) == 0
    assert mem.read(l2b + 24, 8) == bytes(8)
    assert ref.execute(C.mapd(1536, ITT, 1)) == C.E_ITS_MAPD_DEVICE_OOR
    # level-1 table is 4096 bytes = 512 descriptors: index 512 has no slot
    mem.write_u64(DT + 4096, (1 << 63) | l2a)
    assert ref.execute(C.mapd(512 * 512, ITT, 1)) == C.E_ITS_MAPD_DEVICE_OOR
    assert ref.execute(C.mapd(511 * 512, ITT, 1)) == C.E_ITS_MAPD_DEVICE_OOR   # descriptor = 0


def test_mapd_itt_size():
    ref, _ = make(event_bits=8)
    assert ref.execute(C.mapd(1, ITT, 9)) == C.E_ITS_MAPD_ITTSIZE_OOR
    assert ref.execute(C.mapd(1, ITT, 9, valid=False)) == 0
    assert ref.execute(C.mapd(1, ITT, 8)) == 0
    # slot check comes first
    assert ref.execute(C.mapd(600, ITT, 9)) == C.E_ITS_MAPD_DEVICE_OOR


def test_mapd_remap_and_unmap_drop_events_and_pending():
    ref, _ = make()
    mapped(ref, events=((0, 8192, 0), (1, 8193, 0)))
    assert ref.msi(1, 0) == TS.OK and ref.msi(1, 1) == TS.OK
    assert ref.pending(0) == [8192, 8193]
    assert ref.execute(C.mapd(1, ITT, 4)) == 0              # remap
    assert ref.pending(0) == []
    assert ref.translation_status(1, 0)[0] == TS.NO_MAPPING
    assert ref.execute(C.mapti(1, 0, 8194, 0)) == 0
    assert ref.msi(1, 0) == TS.OK
    assert ref.execute(C.mapd(1, 0, 1, valid=False)) == 0
    assert ref.pending(0) == [] and ref.translation_status(1, 0)[0] == TS.NO_DEVICE


def test_mapd_drop_with_unmapped_collection_clears_nothing():
    ref, _ = make()
    mapped(ref, events=((0, 8192, 0),), collections=((0, 0), (1, 0)))
    assert ref.msi(1, 0) == TS.OK
    assert ref.execute(C.mapc(0, 0, valid=False)) == 0
    assert ref.execute(C.mapd(1, ITT, 4, valid=False)) == 0
    assert ref.pending(0) == [8192]                         # not on any "target CPU"


# -- MAPC -----------------------------------------------------------------------------------

def test_mapc_checks_and_effects():
    ref, _ = make(num_cpus=2)
    assert ref.execute(C.mapc(0, 2)) == C.E_ITS_MAPC_PROCNUM_OOR
    assert ref.execute(C.mapc(512, 2)) == C.E_ITS_MAPC_PROCNUM_OOR    # CPU first
    assert ref.execute(C.mapc(512, 1)) == C.E_ITS_MAPC_COLLECTION_OOR  # 4096 / 8 = 512
    assert ref.execute(C.mapc(511, 1)) == 0
    assert ref.execute(C.mapc(600, 2**32 - 1, valid=False)) == 0      # V=0: no checks
    assert ref.execute(C.mapc(7, 0, valid=False)) == 0                 # not mapped: no error
    assert ref.snapshot()["collections"] == {511: 1}


def test_mapc_retarget_moves_no_pending_and_remap_restores():
    ref, _ = make()
    mapped(ref)
    assert ref.msi(1, 0) == TS.OK
    assert ref.execute(C.mapc(0, 1)) == 0
    assert ref.pending(0) == [8192] and ref.pending(1) == []
    assert ref.translate(1, 0) == (8192, 1)
    assert ref.execute(C.mapc(0, 0, valid=False)) == 0
    assert ref.msi(1, 0) == TS.NO_COLLECTION
    assert ref.execute(C.mapc(0, 1)) == 0
    assert ref.translate(1, 0) == (8192, 1)


# -- MAPTI / MAPI ---------------------------------------------------------------------------

def test_mapti_checks_in_order():
    ref, mem = make(event_bits=8)
    assert ref.execute(C.mapti(1, 0, 8192, 0)) == C.E_ITS_MAPTI_UNMAPPED_DEVICE
    assert ref.execute(C.mapd(1, ITT, 4)) == 0
    assert ref.execute(C.mapti(1, 16, 8192, 600)) == C.E_ITS_MAPTI_ID_OOR      # 2**4
    assert ref.execute(C.mapti(1, 15, 8191, 600)) == C.E_ITS_MAPTI_PHYSICALID_OOR
    assert ref.execute(C.mapti(1, 15, 65536, 0)) == C.E_ITS_MAPTI_PHYSICALID_OOR  # limit
    assert ref.execute(C.mapti(1, 15, 8192, 512)) == C.E_ITS_MAPC_COLLECTION_OOR
    assert ref.execute(C.mapti(1, 15, 65535, 511)) == 0
    assert ref.execute(C.mapti(1, 15, 8191, 0)) == C.E_ITS_MAPTI_PHYSICALID_OOR
    assert ref.execute(C.mapti(1, 15, 8200, 600)) == C.E_ITS_MAPTI_ID_ALREADY_MAPPED
    assert ref.snapshot()["events"] == {(1, 15): (65535, 511)}     # old mapping kept


def test_mapti_itt_must_be_in_memory():
    ref, _ = make(event_bits=8)
    itt = MEM - 0x100                                        # 32 ITEs fit before the end
    assert ref.execute(C.mapd(2, itt, 8)) == 0
    assert ref.execute(C.mapti(2, 31, 8192, 0)) == 0
    assert ref.execute(C.mapti(2, 32, 8193, 0)) == C.E_ITS_MAPTI_ID_OOR
    assert ref.execute(C.mapd(3, MEM, 8)) == 0               # ITT wholly outside
    assert ref.execute(C.mapti(3, 0, 8192, 0)) == C.E_ITS_MAPTI_ID_OOR


def test_mapti_limit_follows_propbaser_idbits():
    ref, _ = make(idbits=13)                                 # limit 2**14
    assert ref.execute(C.mapd(1, ITT, 8)) == 0
    assert ref.execute(C.mapti(1, 0, 16383, 0)) == 0
    assert ref.execute(C.mapti(1, 1, 16384, 0)) == C.E_ITS_MAPTI_PHYSICALID_OOR
    ref.propbaser = propbaser_value(PROP, 31)                # capped by intid_bits = 16
    assert ref.execute(C.mapti(1, 1, 65536, 0)) == C.E_ITS_MAPTI_PHYSICALID_OOR
    assert ref.execute(C.mapti(1, 1, 65535, 0)) == 0


def test_mapti_loads_config_and_mapi_uses_event_id():
    ref, mem = make(event_bits=16)
    mem.write(PROP + 8197 - 8192, b"\x41")
    assert ref.execute(C.mapd(1, 0x22_0000, 14)) == 0
    assert ref.execute(C.mapi(1, 8197, 0)) == 0
    assert ref.config[8197] == 0x41
    assert ref.snapshot()["events"] == {(1, 8197): (8197, 0)}
    assert ref.execute(C.mapi(1, 5, 0)) == C.E_ITS_MAPTI_PHYSICALID_OOR    # INTID 5
    assert ref.execute(C.mapi(1, 8197, 0)) == C.E_ITS_MAPTI_ID_ALREADY_MAPPED


# -- MOVI ---------------------------------------------------------------------------------------

def test_movi_checks():
    ref, _ = make()
    mapped(ref, collections=((0, 0), (1, 1)))
    assert ref.execute(C.movi(9, 0, 1)) == C.E_ITS_MOVI_UNMAPPED_INTERRUPT
    assert ref.execute(C.movi(1, 1, 1)) == C.E_ITS_MOVI_UNMAPPED_INTERRUPT
    assert ref.execute(C.movi(1, 300, 1)) == C.E_ITS_MOVI_UNMAPPED_INTERRUPT
    assert ref.execute(C.movi(1, 0, 2)) == C.E_ITS_MOVI_UNMAPPED_COLLECTION
    assert ref.execute(C.mapc(0, 0, valid=False)) == 0
    assert ref.execute(C.movi(1, 0, 1)) == C.E_ITS_MOVI_UNMAPPED_COLLECTION
    assert ref.snapshot()["events"] == {(1, 0): (8192, 0)}


def test_movi_pending_follows():
    ref, _ = make()
    mapped(ref, events=((0, 8192, 0), (1, 8193, 0)), collections=((0, 0), (1, 1)))
    assert ref.msi(1, 0) == TS.OK and ref.msi(1, 1) == TS.OK
    assert ref.execute(C.movi(1, 0, 1)) == 0
    assert ref.pending(0) == [8193] and ref.pending(1) == [8192]
    assert ref.translate(1, 0) == (8192, 1)
    ref.disable_lpis(0)
    assert ref.execute(C.movi(1, 0, 0)) == 0                 # target has LPIs disabled
    assert ref.pending(0) == [] and ref.pending(1) == []
    assert ref.execute(C.movi(1, 1, 1)) == 0                 # not pending: nothing to move
    assert ref.pending(1) == []


# -- DISCARD ------------------------------------------------------------------------------------

def test_discard():
    ref, mem = make()
    mapped(ref, events=((3, 8192, 0), (4, 8193, 0)))
    mem.write(ITT + 3 * 8, GARBAGE)
    mem.write(ITT + 4 * 8, GARBAGE)
    assert ref.msi(1, 3) == TS.OK and ref.msi(1, 4) == TS.OK
    assert ref.execute(C.discard(1, 3)) == 0
    assert mem.read(ITT + 24, 8) == bytes(8) and mem.read(ITT + 32, 8) == GARBAGE
    assert ref.pending(0) == [8193]
    assert ref.translation_status(1, 3)[0] == TS.NO_MAPPING
    assert ref.execute(C.discard(1, 3)) == C.E_ITS_DISCARD_UNMAPPED_INTERRUPT
    assert ref.execute(C.mapc(0, 0, valid=False)) == 0
    assert ref.execute(C.discard(1, 4)) == C.E_ITS_DISCARD_UNMAPPED_INTERRUPT
    assert mem.read(ITT + 32, 8) == GARBAGE


# -- INV / INVALL -------------------------------------------------------------------------------

def test_inv_reloads_one_byte_without_collection_check():
    ref, mem = make()
    mapped(ref, events=((0, 8192, 0), (1, 8193, 0)))
    mem.write(PROP, b"\x11\x22")
    assert ref.config[8192] == 0 and ref.config[8193] == 0
    assert ref.execute(C.mapc(0, 0, valid=False)) == 0
    assert ref.execute(C.inv(1, 0)) == 0
    assert ref.config[8192] == 0x11 and ref.config[8193] == 0
    assert ref.execute(C.inv(1, 2)) == C.E_ITS_INV_UNMAPPED_INTERRUPT
    assert ref.execute(C.inv(2, 0)) == C.E_ITS_INV_UNMAPPED_INTERRUPT


def test_invall_reloads_events_routed_to_the_cpu():
    ref, mem = make()
    mapped(ref, events=((0, 8192, 0), (1, 8193, 5), (2, 8194, 1)),
           collections=((0, 0), (5, 0), (1, 1)))
    mem.write(PROP, b"\x11\x22\x33\x44")
    assert ref.execute(C.invall(0)) == 0
    assert [ref.config[i] for i in (8192, 8193, 8194, 8195)] == [0x11, 0x22, 0, 0]
    assert ref.execute(C.invall(7)) == C.E_ITS_INVALL_UNMAPPED_COLLECTION
    assert ref.execute(C.invall(1)) == 0
    assert ref.config[8194] == 0x33 and ref.config[8195] == 0


# -- INT / CLEAR / SYNC / MOVALL ----------------------------------------------------------------

def test_int_and_clear():
    ref, _ = make()
    mapped(ref, events=((0, 8192, 0), (1, 8193, 1)), collections=((0, 0), (1, 1)))
    assert ref.execute(C.int_(1, 0)) == 0
    assert ref.pending(0) == [8192]
    assert ref.execute(C.int_(1, 2)) == C.E_ITS_INT_UNMAPPED_INTERRUPT
    ref.disable_lpis(1)
    assert ref.execute(C.int_(1, 1)) == C.E_ITS_INT_LPIS_DISABLED
    assert ref.execute(C.clear(1, 0)) == 0
    assert ref.pending(0) == []
    assert ref.execute(C.clear(1, 7)) == C.E_ITS_CLEAR_UNMAPPED_INTERRUPT
    assert ref.execute(C.mapc(0, 0, valid=False)) == 0
    assert ref.execute(C.int_(1, 0)) == C.E_ITS_INT_UNMAPPED_INTERRUPT
    assert ref.execute(C.clear(1, 0)) == C.E_ITS_CLEAR_UNMAPPED_INTERRUPT


def test_int_beyond_limit_is_silent():
    ref, _ = make(idbits=15)
    mapped(ref, events=((0, 40000, 0),))
    ref.propbaser = propbaser_value(PROP, 13)                # limit drops to 16384
    assert ref.execute(C.int_(1, 0)) == 0
    assert ref.pending(0) == []
    assert ref.msi(1, 0) == TS.INTID_OUT_OF_RANGE


def test_sync_and_unknown_commands():
    ref, _ = make()
    assert ref.execute(C.sync(0)) == 0
    assert ref.execute(C.sync(2**32 - 1)) == 0
    for opcode in (0x00, 0x02, 0x06, 0x07, 0x10, 0x21, 0x2A, 0xFF):
        assert ref.execute(bytes([opcode]) + bytes(31)) == C.E_ITS_UNKNOWN_COMMAND
    assert ref.execute_slot(MEM - 16) == C.E_ITS_CMD_READ_FAULT
    assert ref.execute_slot(MEM - 32) == C.E_ITS_UNKNOWN_COMMAND   # zeros: opcode 0


def test_movall():
    ref, _ = make(num_cpus=3)
    mapped(ref, events=((0, 8192, 0), (1, 8193, 1), (2, 8194, 0)),
           collections=((0, 0), (1, 1)))
    for e in range(3):
        assert ref.msi(1, e) == TS.OK
    assert ref.execute(C.movall(0, 3)) == C.E_ITS_MOVALL_PROCNUM_OOR
    assert ref.execute(C.movall(3, 0)) == C.E_ITS_MOVALL_PROCNUM_OOR
    assert ref.execute(C.movall(0, 0)) == 0
    assert ref.pending(0) == [8192, 8194]
    assert ref.execute(C.movall(0, 1)) == 0
    assert ref.pending(0) == [] and ref.pending(1) == [8192, 8193, 8194]
    assert ref.translate(1, 0) == (8192, 0)                  # ITEs/CTEs not rewritten
    ref.disable_lpis(2)
    assert ref.execute(C.movall(1, 2)) == 0                  # target disabled: bits lost
    assert ref.pending(1) == [] and ref.pending(2) == []


# -- doorbell -----------------------------------------------------------------------------------

def test_msi_statuses_in_order():
    ref, _ = make(device_bits=10, dt_page=PageSize.SIZE_64K, idbits=15)
    mapped(ref, events=((0, 8192, 0), (1, 8193, 1), (2, 30000, 0)),
           collections=((0, 0),), bits=2)
    assert ref.msi(1024, 0) == TS.DEVICE_OUT_OF_RANGE
    assert ref.msi(2, 0) == TS.NO_DEVICE
    assert ref.msi(1, 4) == TS.EVENT_OUT_OF_RANGE
    assert ref.msi(1, 3) == TS.NO_MAPPING
    assert ref.msi(1, 1) == TS.NO_COLLECTION
    ref.propbaser = propbaser_value(PROP, 13)
    assert ref.msi(1, 2) == TS.INTID_OUT_OF_RANGE
    ref.disable_lpis(0)
    assert ref.msi(1, 2) == TS.LPIS_DISABLED                 # before the INTID check
    ref.enabled = False
    assert ref.msi(2, 0) == TS.ITS_DISABLED
    assert all(ref.pending(c) == [] for c in range(2))


def test_msi_pends_even_when_config_disabled():
    ref, _ = make()
    mapped(ref)
    assert ref.config[8192] == 0
    assert ref.msi(1, 0) == TS.OK
    assert ref.pending(0) == [8192]
    assert ref.acknowledge(0) is None                        # but not deliverable


# -- redistributors -----------------------------------------------------------------------------

def test_enable_lpis_loads_pending_range_only():
    ref, mem = make(num_cpus=2, lpis=False, idbits=13)       # limit 16384: bytes 1024..2047
    mem.write(PEND0, b"\xff" * 1024)                         # INTIDs < 8192: never read
    mem.write(PEND0 + 1024, b"\x81")                         # 8192, 8199
    mem.write(PEND0 + 2047, b"\x80")                         # 16383
    mem.write(PEND0 + 2048, b"\xff")                         # 16384.. beyond the limit
    mem.write(PROP, b"\x05")
    mem.write(PROP + 8191, b"\x07")                          # INTID 16383
    mem.write(PROP + 8192, b"\x09")                          # INTID 16384: beyond the limit
    ref.enable_lpis(0)
    assert ref.pending(0) == [8192, 8199, 16383]
    assert ref.config[8192] == 0x05 and ref.config[16383] == 0x07
    assert 16384 not in ref.config
    ref.pendbaser[1] = pendbaser_value(PEND0, ptz=True)
    ref.enable_lpis(1)
    assert ref.pending(1) == []
    ref.disable_lpis(1)                                      # PTZ was consumed by the enable
    ref.enable_lpis(1)
    assert ref.pending(1) == [8192, 8199, 16383]
    ref.disable_lpis(0)
    assert ref.pending(0) == []


def test_enable_lpis_pending_table_partly_outside_memory():
    # memory ends 1536 bytes into CPU 0's pending table: bytes 1536.. load as 0
    ref, mem = make(num_cpus=1, lpis=False, mem_bytes=PEND0 + 1536)
    mem.write(PEND0 + 1030, b"\x01")                         # INTID 8240
    mem.write(PEND0 + 1535, b"\x80")                         # INTID 12287
    ref.enable_lpis(0)
    assert ref.pending(0) == [8240, 12287]


def test_enable_lpis_config_table_partly_outside_memory():
    # 4 KiB of configuration inside memory: INTIDs 8192..12287; the rest load as 0
    ref, mem = make(num_cpus=1, lpis=False, mem_bytes=PROP + 4096)
    mem.write(PROP + 4095, b"\x03")
    mem.write(PROP, b"\x05")
    ref.enable_lpis(0)                                       # pending table wholly outside
    assert ref.pending(0) == []
    assert ref.config[8192] == 0x05 and ref.config[12287] == 0x03
    assert ref.config[12288] == 0 and ref.config[65535] == 0


def test_acknowledge_priority_ties_and_enable_bit():
    ref, mem = make()
    mem.write(PROP, bytes([0x41, 0x21, 0x23, 0x20, 0x22]))   # 8192..8196
    events = tuple((e, 8192 + e, 0) for e in range(5))
    mapped(ref, events=events)
    for e in range(5):
        assert ref.msi(1, e) == TS.OK
    # enabled: 8192 (prio 0x40), 8193 (0x20), 8194 (0x20); 8195/8196 disabled
    assert [ref.acknowledge(0) for _ in range(4)] == [8193, 8194, 8192, None]
    assert ref.pending(0) == [8195, 8196]


def test_baser_valid_zero_drops_devices_and_collections():
    ref, _ = make()
    mapped(ref, events=((0, 8192, 0),))
    assert ref.msi(1, 0) == TS.OK
    ref.write_baser0(ref.baser0 & ~(1 << 63))
    assert ref.snapshot()["devices"] == {} and ref.pending(0) == []
    mapped(ref, device=2, collections=((0, 0), (3, 1)))
    ref.write_baser1(ref.baser1 & ~(1 << 63))
    assert ref.snapshot()["collections"] == {}
    assert ref.snapshot()["events"] == {(2, 0): (8192, 0)}


def test_reset_keeps_redistributor_state():
    ref, _ = make()
    mapped(ref)
    assert ref.msi(1, 0) == TS.OK
    baser0 = ref.baser0
    ref.reset()
    assert ref.snapshot() == {"devices": {}, "events": {}, "collections": {}}
    assert ref.baser0 == baser0 & ~(1 << 63)
    assert ref.pending(0) == [8192] and ref.lpis_enabled == [True, True]
    assert ref.msi(1, 0) == TS.ITS_DISABLED


@pytest.mark.parametrize("page_size, page", [(PageSize.SIZE_4K, 4096), (PageSize.SIZE_16K, 16384),
                                             (PageSize.SIZE_64K, 65536), (3, 65536)])
def test_collection_slots_follow_page_size(page_size, page):
    ref, _ = make(ct_page=page_size, ct_pages=2)
    slots = 2 * page // 8
    assert ref.execute(C.mapc(slots - 1, 0)) == 0
    assert ref.execute(C.mapc(slots, 0)) == C.E_ITS_MAPC_COLLECTION_OOR


def test_enable_lpis_reloads_the_whole_config_cache():
    # an LPI beyond a lowered limit keeps no stale configuration after a reload
    ref, mem = make(num_cpus=2, idbits=15)
    mem.write(PROP + 20000 - 8192, b"\x01")
    mapped(ref, events=((0, 20000, 0), (1, 8192, 0)))
    assert ref.config[20000] == 0x01
    ref.disable_lpis(1)
    ref.propbaser = propbaser_value(PROP, 13)                # limit 16384
    ref.enable_lpis(1)
    assert ref.config.get(20000, 0) == 0
    assert ref.config[8192] == 0
