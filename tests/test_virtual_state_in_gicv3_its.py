"""Host code can put GICv4 virtual state (virtual ITEs, vPEs) straight into the
tables of a GICv3 ITS through `its.tables`; the ITS does not execute GICv4 yet.
It must then neither act on a virtual ITE as if it were an interrupt nor write
it out: its physical commands report the event as unmapped, and `save()` and
`snapshot()` refuse, changing nothing."""

import numpy as np
import pytest

from its_core import ITS, GuestMap, GuestMemory, SaveError, bring_up
from its_core import commands as C


@pytest.fixture()
def its_with_virtual_event():
    its = ITS(GuestMemory(32 << 20), 2, "hash")
    guest = bring_up(its, GuestMap())
    its.submit(C.mapc(0, 1), C.mapd(5, guest.itt_address(0), 4), C.mapti(5, 1, 8200, 0))
    its.tables.map_vpe(3, 1)
    its.tables.map_virtual_event(5, 2, 8300, 3, 1023)
    assert not len(its.errors)
    return its


@pytest.mark.parametrize("packet, code", [
    (C.int_(5, 2), C.E_ITS_INT_UNMAPPED_INTERRUPT),
    (C.clear(5, 2), C.E_ITS_CLEAR_UNMAPPED_INTERRUPT),
    (C.discard(5, 2), C.E_ITS_DISCARD_UNMAPPED_INTERRUPT),
    (C.movi(5, 2, 0), C.E_ITS_MOVI_UNMAPPED_INTERRUPT),
])
def test_physical_commands_see_no_interrupt(its_with_virtual_event, packet, code):
    its = its_with_virtual_event
    its.submit(packet)
    assert [error.code for error in its.errors] == [code]
    assert its.tables.virtual_event(5, 2) == (8300, 3, 1023)     # untouched
    assert its.pending(1).tolist() == []
    its.submit(C.int_(5, 1))                                     # the physical one still works
    assert its.pending(1).tolist() == [8200]


def test_mapti_over_a_virtual_event_is_already_mapped(its_with_virtual_event):
    its = its_with_virtual_event
    its.submit(C.mapti(5, 2, 8400, 0))
    assert [error.code for error in its.errors] == [C.E_ITS_MAPTI_ID_ALREADY_MAPPED]
    assert its.tables.virtual_event(5, 2) == (8300, 3, 1023)


def test_save_and_snapshot_refuse_and_write_nothing(its_with_virtual_event):
    its = its_with_virtual_event
    before = its.memory.array.copy()
    with pytest.raises(SaveError, match="virtual ITEs and 1 vPEs"):
        its.save()
    with pytest.raises(SaveError, match="KVM ABI rev0 holds no virtual state"):
        its.save_tables()
    assert np.array_equal(its.memory.array, before)
    with pytest.raises(ValueError, match="no keys for GICv4 virtual state"):
        its.snapshot()
    its.submit(C.mapd(5, 0, 4, valid=False))          # MAPD unmap drops the virtual ITE too
    its.tables.unmap_vpe(3)
    its.save()
    assert its.snapshot()["format"] == "its-core-snapshot-1"


def test_mapped_config_load_skips_virtual_ites(its_with_virtual_event):
    """A restore's bulk config load reads the bytes of physical LPIs only: a
    vINTID's number says nothing about the physical configuration table."""
    its = its_with_virtual_event
    rd = its.redistributors
    config_table = rd.propbaser_address
    cached_8300 = int(rd.lpi_state.config_array[8300])
    its.memory.array[config_table + 8300 - 8192] = cached_8300 ^ 0x11   # would-be byte of 8300
    its.memory.array[config_table + 8200 - 8192] = 0xB1                # the physical LPI's
    rd.lpi_state.load_mapped_config(its.tables)
    assert rd.lpi_state.config_array[8200] == 0xB1
    assert rd.lpi_state.config_array[8300] == cached_8300
