"""Several ITSs on one set of redistributors, the direct LPI registers, and
saving the redistributors once.

Expectations come from the architecture: LPIs from every ITS land in the same
pending tables (one bit per INTID per redistributor); the config cache,
EnableLPIs, PROPBASER and PENDBASER belong to the redistributors; GICR_SETLPIR
/ CLRLPIR set and clear one pending bit, INVLPIR / INVALLR reload config bytes
from the table in memory, SYNCR.Busy reads 0, GICR_TYPER.DirectLPI reads 1.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from its_core import (ITS, GuestMap, GuestMemory, InvalidAccessError, Redistributors,
                      bring_up, commands as C, registers as R)

NUM_CPUS = 4
MEMORY_BYTES = 96 << 20
#: The two ITSs keep their tables and queues apart; the LPI tables are the
#: redistributors' and are programmed once, by whichever bring-up runs first.
MAP_A = GuestMap()
MAP_B = GuestMap(queue=0x0002_0000, device_table=0x0050_0000, collection_table=0x0060_0000,
                 itt_base=0x0200_0000)
SETLPIR, CLRLPIR = R.GICR_SETLPIR.offset, R.GICR_CLRLPIR.offset
INVLPIR, INVALLR, SYNCR = R.GICR_INVLPIR.offset, R.GICR_INVALLR.offset, R.GICR_SYNCR.offset


def two_its(layouts=("flat", "hash"), memory=None):
    """Redistributors with two ITSs attached, both brought up, collection c -> CPU c."""
    memory = memory or GuestMemory(MEMORY_BYTES)
    rd = Redistributors(memory, NUM_CPUS)
    first = ITS(memory, NUM_CPUS, layouts[0], redistributors=rd)
    second = ITS(memory, NUM_CPUS, layouts[1], redistributors=rd)
    bring_up(first, MAP_A)
    bring_up(second, MAP_B)
    for its in (first, second):
        its.submit(*[C.mapc(cpu, cpu) for cpu in range(NUM_CPUS)])
    return memory, rd, first, second


def config_byte(memory, intid, value):
    memory.write(MAP_A.config_table + intid - 8192, bytes([value]))


def test_lpis_from_both_its_land_in_the_same_pending_tables():
    memory, rd, first, second = two_its()
    assert first.redistributors is rd and second.redistributors is rd
    first.submit(C.mapd(1, MAP_A.itt_address(0), 4), C.mapti(1, 0, 8200, 2))
    second.submit(C.mapd(1, MAP_B.itt_address(0), 4), C.mapti(1, 0, 8300, 2),
                  C.mapti(1, 1, 8301, 3))
    assert first.msi(1, 0) == second.msi(1, 0) == second.msi(1, 1) == 0
    assert rd.pending(2).tolist() == [8200, 8300] == first.pending(2).tolist()
    assert second.pending(3).tolist() == [8301]
    assert rd.acknowledge(2) == 8200 and first.acknowledge(2) == 8300
    assert len(first.errors) == len(second.errors) == 0


def test_commands_of_either_its_act_on_the_shared_lpi_side():
    memory, rd, first, second = two_its()
    first.submit(C.mapd(1, MAP_A.itt_address(0), 4), C.mapti(1, 0, 8200, 1))
    second.submit(C.mapd(7, MAP_B.itt_address(0), 4), C.mapti(7, 0, 8201, 1))
    first.msi(1, 0), second.msi(7, 0)
    second.submit(C.discard(7, 0))                 # clears only the LPI of its own event
    assert rd.pending(1).tolist() == [8200]
    second.submit(C.movall(1, 3))                   # moves the redistributor's pending state
    assert rd.pending(1).tolist() == [] and rd.pending(3).tolist() == [8200]
    config_byte(memory, 8200, 0xA2)                 # disabled in the table ...
    first.submit(C.inv(1, 0))                       # ... reloaded into the shared cache
    assert rd.acknowledge(3) is None and rd.pending(3).tolist() == [8200]
    second.submit(C.mapti(7, 1, 8202, 2))
    second.msi(7, 1)
    config_byte(memory, 8202, 0xA2)
    second.submit(C.invall(2))                      # INVALL: the LPIs of its events on CPU 2
    assert rd.acknowledge(2) is None and rd.pending(2).tolist() == [8202]
    assert len(first.errors) == len(second.errors) == 0


def test_disabling_lpis_on_a_cpu_affects_every_its():
    memory, rd, first, second = two_its()
    first.submit(C.mapd(1, MAP_A.itt_address(0), 4), C.mapti(1, 0, 8200, 2))
    second.submit(C.mapd(1, MAP_B.itt_address(0), 4), C.mapti(1, 0, 8300, 2))
    rd.mmio_write(2, R.GICR_CTLR.offset, 0, 4)
    assert first.msi(1, 0) == second.msi(1, 0) == 7           # LPIS_DISABLED
    assert not rd.lpis_enabled(2)


@pytest.mark.parametrize("change, words", [
    (lambda rd, memory: Redistributors(GuestMemory(MEMORY_BYTES), NUM_CPUS), "same GuestMemory"),
    (lambda rd, memory: Redistributors(memory, NUM_CPUS - 1), "3 CPUs"),
    (lambda rd, memory: Redistributors(memory, NUM_CPUS, intid_bits=20), "intid_bits=20"),
])
def test_attaching_to_redistributors_that_do_not_fit_is_refused(change, words):
    memory = GuestMemory(MEMORY_BYTES)
    rd = Redistributors(memory, NUM_CPUS)
    with pytest.raises(ValueError, match=words):
        ITS(memory, NUM_CPUS, "flat", redistributors=change(rd, memory))
    with pytest.raises(TypeError, match="Redistributors"):
        ITS(memory, NUM_CPUS, "flat", redistributors=object())


@pytest.mark.parametrize("args, error", [
    ((b"not memory", 4), TypeError),
    ((GuestMemory(1 << 20), 0), ValueError),
    ((GuestMemory(1 << 20), 4.0), TypeError),
    ((GuestMemory(1 << 20), 4, 25), ValueError),
])
def test_bad_redistributor_parameters(args, error):
    with pytest.raises(error):
        Redistributors(*args)


# -- the direct LPI registers ---------------------------------------------------------------

def test_gicr_typer_reports_direct_lpi_and_syncr_is_never_busy():
    memory, rd, first, _ = two_its()
    for cpu in range(NUM_CPUS):
        assert R.GICR_TYPER.decode(rd.mmio_read(cpu, R.GICR_TYPER.offset, 8))["DirectLPI"] == 1
        assert rd.mmio_read(cpu, SYNCR, 4) == 0
        assert rd.mmio_read(cpu, SETLPIR, 8) == 0                # write-only: reads as zero


def test_setlpir_and_clrlpir_set_and_clear_one_pending_bit():
    memory, rd, first, _ = two_its()
    rd.mmio_write(1, SETLPIR, 8195, 8)
    rd.mmio_write(1, SETLPIR, 9000, 4)                           # the low half holds the INTID
    assert rd.pending(1).tolist() == [8195, 9000] and rd.pending(0).tolist() == []
    rd.mmio_write(1, CLRLPIR, 8195, 8)
    assert rd.pending(1).tolist() == [9000]
    assert rd.acknowledge(1) == 9000
    assert len(rd.access_errors) == 0


@pytest.mark.parametrize("intid", [0, 31, 8191, 1 << 16, (1 << 32) - 1])
def test_direct_writes_of_non_lpis_are_ignored_and_recorded(intid):
    memory, rd, first, _ = two_its()
    before = len(rd.access_errors)
    rd.mmio_write(0, SETLPIR, intid, 8)
    assert rd.pending(0).tolist() == []
    assert len(rd.access_errors) == before + 1
    error = rd.access_errors[-1]
    assert (error.frame, error.offset, error.write) == ("GICR0", SETLPIR, True)


def test_direct_writes_while_lpis_are_disabled_are_ignored_and_recorded():
    memory = GuestMemory(MEMORY_BYTES)
    rd = Redistributors(memory, NUM_CPUS)
    for offset in (SETLPIR, CLRLPIR, INVLPIR, INVALLR):
        rd.mmio_write(2, offset, 8200, 8)
    assert rd.pending(2).tolist() == []
    assert [e.offset for e in rd.access_errors] == [SETLPIR, CLRLPIR, INVLPIR, INVALLR]
    assert all("EnableLPIs" in e.reason for e in rd.access_errors)


def test_invlpir_and_invallr_reload_configuration_bytes():
    memory, rd, first, _ = two_its()
    rd.mmio_write(0, SETLPIR, 8200, 8)
    rd.mmio_write(0, SETLPIR, 8201, 8)
    config_byte(memory, 8201, 0x11)                  # priority 0x10, enabled: beats 0xA0
    assert rd.acknowledge(0) == 8200                 # the cache still has 0xA0 for both
    rd.mmio_write(0, SETLPIR, 8200, 8)
    rd.mmio_write(0, INVLPIR, 8201, 8)
    assert rd.acknowledge(0) == 8201
    config_byte(memory, 8200, 0x10)                  # disabled in memory ...
    assert rd.acknowledge(0) == 8200                 # ... not yet in the cache
    rd.mmio_write(0, SETLPIR, 8200, 8)
    rd.mmio_write(3, INVALLR, 0, 8)                  # the config cache is shared
    assert rd.acknowledge(0) is None and rd.pending(0).tolist() == [8200]


def test_strict_redistributors_raise_on_ignored_direct_writes():
    memory = GuestMemory(MEMORY_BYTES)
    rd = Redistributors(memory, NUM_CPUS, strict=True)
    with pytest.raises(InvalidAccessError, match="EnableLPIs"):
        rd.mmio_write(0, SETLPIR, 8200, 8)
    assert len(rd.access_errors) == 0


# -- saving the redistributors once -------------------------------------------------------------

def test_migration_of_two_its_on_shared_redistributors():
    memory, rd, first, second = two_its(("twolevel", "hash"))
    rng = np.random.default_rng(7)
    for its, guest, base in ((first, MAP_A, 8192), (second, MAP_B, 12288)):
        its.submit(*[C.mapd(device, guest.itt_address(device), 5) for device in range(8)])
        its.submit(*[C.mapti(device, event, base + 32 * device + event, (device + event) % 4)
                     for device in range(8) for event in range(32)])
        pairs = rng.integers(0, [8, 32], size=(40, 2))
        statuses = its.msi_batch(pairs[:, 0].astype(np.uint32), pairs[:, 1].astype(np.uint32))
        assert (statuses == 0).all()
    rd.mmio_write(3, SETLPIR, 16000, 8)                         # a direct LPI too
    pending = [rd.pending(cpu).tolist() for cpu in range(NUM_CPUS)]
    assert sum(map(len, pending)) > 40

    rd_state = rd.save()
    assert set(rd_state) == {"GICR_CTLR", "GICR_PROPBASER", "GICR_PENDBASER"}
    first_state = first.save(redistributors=False)
    second_state = second.save(redistributors=False)
    assert not set(first_state) & set(rd_state)

    copy = GuestMemory(np.array(memory.array))
    rd2 = Redistributors(copy, NUM_CPUS)
    first2 = ITS(copy, NUM_CPUS, "hash", redistributors=rd2)       # other layouts
    second2 = ITS(copy, NUM_CPUS, "flat", redistributors=rd2)
    rd2.restore(rd_state)
    first2.restore(first_state)
    second2.restore(second_state)

    assert [rd2.pending(cpu).tolist() for cpu in range(NUM_CPUS)] == pending
    for old, new in ((first, first2), (second, second2)):
        assert new.save_registers() == old.save_registers()
        for device in range(8):
            for event in (0, 17, 31):
                assert new.translate(device, event) == old.translate(device, event)
    assert rd2.save() == rd_state


def test_redistributor_restore_is_checked_before_anything_changes():
    memory, rd, first, _ = two_its()
    rd.mmio_write(1, SETLPIR, 8200, 8)
    state = rd.save()
    for bad in ({**state, "GICR_CTLR": [1] * (NUM_CPUS - 1)},
                {**state, "GICR_PENDBASER": [MEMORY_BYTES] * NUM_CPUS},
                "not a dict"):
        with pytest.raises(Exception) as caught:
            rd.restore(bad)
        assert type(caught.value).__name__ == "RestoreError"
        assert rd.pending(1).tolist() == [8200]


# -- highest_pending and the priority mask -------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(lpis=st.dictionaries(st.integers(8192, 8192 + 511),
                            st.tuples(st.integers(0, 255), st.booleans()), max_size=40),
       mask=st.integers(0, 255))
def test_highest_pending_is_the_best_enabled_lpi_below_the_mask(lpis, mask):
    """Against a brute-force reading of the rule: enabled (config bit 0), priority
    = config & 0xFC strictly below the mask, lowest priority value, then lowest INTID."""
    memory = GuestMemory(MEMORY_BYTES)
    rd = Redistributors(memory, 2)
    bring_up(ITS(memory, 2, "flat", redistributors=rd), MAP_A)
    for intid, (config, pending) in lpis.items():
        config_byte(memory, intid, config)
        if pending:
            rd.mmio_write(1, SETLPIR, intid, 8)
    rd.mmio_write(1, INVALLR, 0, 8)
    candidates = sorted((config & 0xFC, intid) for intid, (config, pending) in lpis.items()
                        if pending and config & 1 and (config & 0xFC) < mask)
    expected = (candidates[0][1], candidates[0][0]) if candidates else None
    before = rd.pending(1).tolist()
    assert rd.highest_pending(1, priority_mask=mask) == expected
    assert rd.pending(1).tolist() == before                       # no side effect
    taken = rd.acknowledge(1, priority_mask=mask)
    assert taken == (expected[0] if expected else None)
    assert rd.pending(1).tolist() == [i for i in before if i != taken]


def test_priority_mask_is_checked():
    memory, rd, first, _ = two_its()
    for bad, error in ((256, ValueError), (-1, ValueError), (1.5, TypeError)):
        with pytest.raises(error, match="priority_mask"):
            rd.highest_pending(0, priority_mask=bad)
        with pytest.raises(error, match="priority_mask"):
            first.acknowledge(0, priority_mask=bad)
