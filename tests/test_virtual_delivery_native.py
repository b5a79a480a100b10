"""The native vLPI delivery of `ITS.msi_batch` (frontend/_vlpi.pyx) and what
it reads from the core: `translate_batch`'s ``virtual_ites`` output and the
doorbell cached in each virtual ITE word, including past the point where the
cache is full (DOORBELL_CODES distinct doorbells), with expectations computed
from the mappings the test makes (the differential tests in
test_gicv4_differential.py compare the same path with the reference model)."""

from __future__ import annotations

import numpy as np
import pytest

import its_core
from its_core import GuestMemory, TranslationTables
from its_core.core._core import TranslationStatus
from its_core.frontend import commands as C
from its_core.frontend import registers as R
from its_core.frontend.bringup import GuestMap, bring_up
from its_core.frontend.virtual import VirtualStatus

#: Distinct doorbells a TranslationTables caches in its ITE words (_types.pxd:
#: codes 1 .. 0x7FFF; 0 = look in the doorbell map).
DOORBELL_CODES = 0x7FFF
VPE_TABLE, VPT = 0x0200_0000, 0x0201_0000        # above GuestMap()'s default layout
MEMORY = 0x0204_0000


@pytest.mark.parametrize("layout", ["flat", "twolevel", "hash"])
def test_virtual_ites_output_holds_the_words_of_virtual_pairs_only(layout):
    tables = TranslationTables(layout, device_bits=16, event_bits=16, intid_bits=16,
                               num_collections=16, num_cpus=4)
    tables.map_device(5, 8, 0x1000)
    tables.map_collection(1, 2)
    tables.map_event(5, 1, 8200, 1)
    tables.map_virtual_event(5, 2, 8300, 7, 8292)
    tables.map_vpe(7, 3)
    sentinel = np.uint64(0xDEAD_BEEF)
    words = np.full(4, sentinel, np.uint64)
    out = (np.empty(4, np.uint32), np.empty(4, np.int32), np.empty(4, np.uint8), words)
    intids, cpus, statuses, _ = tables.translate_batch([5, 5, 5, 6], [1, 2, 3, 0], out=out)
    assert statuses.tolist() == [TranslationStatus.OK, TranslationStatus.VIRTUAL,
                                 TranslationStatus.NO_MAPPING, TranslationStatus.NO_DEVICE]
    word = int(words[1])
    assert word >> 63 == 1 and (word >> 16) & 0xFFFF_FFFF == 8300 and word & 0xFFFF == 7
    assert words[[0, 2, 3]].tolist() == [int(sentinel)] * 3       # not written
    assert (intids[1], cpus[1]) == (8300, 3)


def test_virtual_ites_output_is_checked():
    tables = TranslationTables("flat", device_bits=8, event_bits=8, intid_bits=14,
                               num_collections=4, num_cpus=1)
    with pytest.raises(ValueError, match="virtual_ites has length 2, expected 3"):
        tables.translate_batch([0, 0, 0], [0, 0, 0],
                               out=(np.empty(3, np.uint32), np.empty(3, np.int32),
                                    np.empty(3, np.uint8), np.empty(2, np.uint64)))


@pytest.mark.parametrize("layout", ["flat", "hash"])
def test_doorbells_beyond_the_cached_codes_stay_exact(layout):
    """DOORBELL_CODES + 3 virtual events, each with its own doorbell: the last
    three have no code in their word and are found in the doorbell map."""
    count = DOORBELL_CODES + 3
    tables = TranslationTables(layout, device_bits=8, event_bits=16, intid_bits=16,
                               num_collections=4, num_cpus=2)
    tables.map_device(1, 16, 0x1000)
    events = np.arange(count, dtype=np.uint32)
    doorbells = (8192 + events).astype(np.uint32)
    tables.map_virtual_events(np.full(count, 1), events, 8192 + events, events % 3, doorbells)
    for event in (0, DOORBELL_CODES - 1, DOORBELL_CODES, count - 1):
        assert tables.virtual_event(1, event) == (8192 + event, event % 3, 8192 + event)
    device_ids, event_ids, ites = tables.export_events()
    assert not ((ites >> np.uint64(48)) & np.uint64(0x7FFF)).any()     # codes never leak
    tables.move_virtual_event(1, count - 1, 2, 9000)
    tables.move_virtual_event(1, 0, 2)                                  # D = 0: kept
    assert tables.virtual_event(1, count - 1) == (8192 + count - 1, 2, 9000)
    assert tables.virtual_event(1, 0) == (8192, 2, 8192)


def _gicv4_its(layout: str) -> its_core.ITS:
    """A brought-up GICv4.0 ITS (two CPUs, 16 INTID bits) with device 1
    (16 EventID bits) and vPE 3 on CPU 1, VPT at VPT (VPT_size 15)."""
    its = its_core.ITS(GuestMemory(MEMORY), 2, layout, gic_version="4.0")
    guest = bring_up(its, GuestMap(), enable=False)
    baser2 = R.GITS_BASER2_VPES
    its.mmio_write(baser2.offset, baser2.encode(address=VPE_TABLE, Valid=1,
                                                Type=R.BaserType.VPES,
                                                Page_Size=R.PageSize.SIZE_64K, Size=0), 8)
    its.mmio_write(R.GITS_CTLR.offset, 1, 4)
    its.submit(C.mapd(1, guest.itt_address(0), 16), C.vmapp(3, 1, VPT, 15))
    assert len(its.errors) == 0
    return its


@pytest.mark.parametrize("layout", ["flat", "twolevel", "hash"])
def test_msi_batch_rings_cached_and_uncached_doorbells(layout):
    its = _gicv4_its(layout)
    count = DOORBELL_CODES + 3
    events = np.arange(count, dtype=np.uint32)
    its.submit_many(C.encode_many("VMAPTI", device_id=np.ones(count, np.uint32),
                                  event_id=events, vpe_id=np.full(count, 3, np.uint32),
                                  vintid=8192 + events, dbell_pintid=8192 + events))
    assert len(its.errors) == 0 and its.tables.num_virtual_events == count
    batch = np.array([0, 1, DOORBELL_CODES - 1, DOORBELL_CODES, count - 1, 1], np.uint32)
    cpus = np.empty(batch.size, np.int32)
    statuses = its.msi_batch(np.ones(batch.size, np.uint32), batch, cpus_out=cpus)
    assert statuses.tolist() == [VirtualStatus.VIRTUAL] * batch.size
    assert cpus.tolist() == [1] * batch.size
    expected = sorted(set((8192 + batch).tolist()))
    assert its.pending(1).tolist() == expected and its.pending(0).tolist() == []
    vpt = its.memory.array[VPT - its.memory.base:VPT - its.memory.base + 8192]
    bits = np.flatnonzero(np.unpackbits(vpt, bitorder="little"))
    assert bits.tolist() == expected                    # vINTID = doorbell here


def test_msi_batch_statuses_for_dropped_vlpis():
    """vPE unmapped -> VIRTUAL_NO_VPE, vINTID beyond VPT_size -> OUT_OF_RANGE,
    physical pairs in the same batch delivered as before."""
    its = _gicv4_its("flat")
    its.submit(C.mapc(0, 0), C.mapti(1, 0, 8200, 0),
               C.vmapti(1, 1, 3, 8300, C.NO_DOORBELL),
               C.vmapp(4, 0, VPT + 0x10000, 13), C.vmapti(1, 2, 4, 20000, 8250),
               C.vmapti(1, 3, 5, 8301, C.NO_DOORBELL))          # vPE 5 never mapped
    assert len(its.errors) == 0
    cpus = np.empty(5, np.int32)
    statuses = its.msi_batch([1, 1, 1, 1, 1], [0, 1, 2, 3, 4], cpus_out=cpus)
    assert statuses.tolist() == [TranslationStatus.OK, VirtualStatus.VIRTUAL,
                                 VirtualStatus.VIRTUAL_INTID_OUT_OF_RANGE,
                                 VirtualStatus.VIRTUAL_NO_VPE, TranslationStatus.NO_MAPPING]
    assert cpus.tolist() == [0, 1, -1, -1, -1]
    assert its.pending(0).tolist() == [8200] and its.pending(1).tolist() == []
    base = its.memory.base
    assert its.memory.array[VPT - base + 8300 // 8] == 1 << (8300 % 8)
    assert not its.memory.array[VPT + 0x10000 - base:VPT + 0x20000 - base].any()
