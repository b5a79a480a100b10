"""What the host program passes in: one integer check everywhere, strict mode,
register values from byte addresses, and messages that say what to do.

The expectations come from the rules documented in its_core.validation and
docs/errors.md (ints, numpy integers and __index__ types accepted; bool and
float refused), from the register layouts in the architecture (where each
Physical_Address field sits) and from the issue's wording of each message.
"""

from __future__ import annotations

import enum
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

import its_core
from its_core import (ITS, GuestMap, GuestMemory, InvalidAccessError, ITSError, RestoreError,
                      TranslationTables, bring_up)
from its_core import registers as R
from its_core.registers import BaserType, PageSize

ROOT = pathlib.Path(__file__).resolve().parent.parent


class Colour(enum.IntEnum):
    RED = 3


def mapped_tables(layout):
    tables = TranslationTables(layout, device_bits=16, event_bits=8, num_cpus=4)
    tables.map_collection(1, 2)
    tables.map_device(7, 5)
    tables.map_event(7, 3, 8195, 1)
    return tables


def live_its(layout="flat", **kwargs):
    its = ITS(GuestMemory(64 << 20), 4, layout, **kwargs)
    bring_up(its)
    its.submit(its_core.commands.mapc(1, 2), its_core.commands.mapd(7, 0x100_0000, 5),
               its_core.commands.mapti(7, 3, 8195, 1))
    return its


# -- 2. one integer check -----------------------------------------------------------------------

NOT_INTEGERS = [3.0, 3.7, True, np.True_, "3", np.float64(3)]
INTEGERS = [3, np.uint8(3), np.int64(3), np.uint64(3), Colour.RED]


@pytest.mark.parametrize("event_id", INTEGERS)
def test_integer_kinds_translate_alike(layout, event_id):
    tables = mapped_tables(layout)
    assert tables.translate(7, event_id) == (8195, 2)
    assert tables.translate(np.uint32(7), event_id) == (8195, 2)


@pytest.mark.parametrize("bad", NOT_INTEGERS)
def test_scalar_table_calls_refuse_non_integers(layout, bad):
    tables = mapped_tables(layout)
    before = tables.export_events()
    calls = [
        lambda: tables.translate(7, bad),
        lambda: tables.translate(bad, 3),
        lambda: tables.map_event(7, bad, 8196, 1),
        lambda: tables.map_event(7, 4, bad, 1),
        lambda: tables.map_device(bad, 5),
        lambda: tables.map_device(8, 5, itt_addr=bad),
        lambda: tables.unmap_event(7, bad),
        lambda: tables.map_collection(bad, 1),
    ]
    for call in calls:
        with pytest.raises(TypeError, match="must be an integer"):
            call()
    after = tables.export_events()
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize("bad", NOT_INTEGERS)
def test_front_end_calls_refuse_non_integers(bad):
    its = live_its()
    calls = [
        lambda: its.msi(bad, 3),
        lambda: its.msi(7, bad),
        lambda: its.mmio_write(R.GITS_TRANSLATER.offset, bad, 4, device_id=7),
        lambda: its.mmio_write(R.GITS_TRANSLATER.offset, 3, 4, device_id=bad),
        lambda: its.mmio_read(bad, 4),
        lambda: its.mmio_write(R.GITS_CWRITER.offset, bad, 8),
        lambda: its.redistributors.mmio_write(bad, R.GICR_CTLR.offset, 1, 4),
        lambda: its.redistributors.mmio_read(0, bad, 4),
        lambda: its.pending(bad),
        lambda: its.acknowledge(bad),
        lambda: its.memory.read(bad, 4),
        lambda: R.GITS_CBASER.encode(Size=bad),
        lambda: its_core.commands.mapti(7, bad, 8196, 1),
    ]
    for call in calls:
        with pytest.raises(TypeError, match="must be an integer"):
            call()
    assert its.pending(2).tolist() == [] and len(its.errors) == 0


def test_one_bit_flags_take_bools():
    assert R.GITS_CBASER.encode(Valid=True) == 1 << 63
    assert its_core.commands.decode(its_core.commands.mapc(1, 2, valid=True)).fields["valid"] == 1


@pytest.mark.parametrize("call, name", [
    (lambda its: its.msi(-1, 3), "device_id"),
    (lambda its: its.msi(7, -4), "event_id"),
    (lambda its: its.mmio_read(-4, 4), "offset"),
    (lambda its: its.mmio_write(0, -4, 4), "value"),
    (lambda its: its.pending(-1), "cpu"),
    (lambda its: its.redistributors.mmio_write(0, 0, -1, 4), "value"),
    (lambda its: its.memory.read(0, -1), "access size"),
    (lambda its: R.GITS_CBASER.encode(Size=-4), "Size"),
])
def test_negative_values_say_they_must_be_non_negative(call, name):
    with pytest.raises(ValueError) as caught:
        call(live_its())
    assert name in str(caught.value) and "must be ≥ 0" in str(caught.value)
    assert "-0x" not in str(caught.value)


def test_ids_wider_than_32_bits_name_the_argument():
    its = live_its()
    with pytest.raises(ValueError, match="event_id 0x100000000 does not fit 32 bits"):
        its.msi(7, 1 << 32)
    with pytest.raises(ValueError, match="device_id"):
        its.translate(1 << 40, 3)


# -- 3. host mistakes surface -------------------------------------------------------------------

def test_doorbell_without_device_id_raises_and_changes_nothing():
    its = live_its()
    with pytest.raises(ValueError, match="device_id="):
        its.mmio_write(R.GITS_TRANSLATER.offset, 3, 4)
    assert its.pending(2).tolist() == [] and len(its.access_errors) == 0
    its.mmio_write(R.GITS_TRANSLATER.offset, 3, 4, device_id=7)
    assert its.pending(2).tolist() == [8195]


@pytest.mark.parametrize("access", [
    lambda its: its.mmio_read(0x0200, 4),                       # a hole
    lambda its: its.mmio_write(0x0200, 1, 4),
    lambda its: its.mmio_read(R.GITS_CTLR.offset, 8),           # wrong size
    lambda its: its.mmio_write(R.GITS_CBASER.offset + 2, 1, 2),  # misaligned / wrong size
    lambda its: its.redistributors.mmio_read(1, 0x0200, 4),     # GICR hole
    lambda its: its.redistributors.mmio_write(1, R.GICR_CTLR.offset, 1, 8),
])
def test_strict_mode_raises_where_the_default_records(access):
    relaxed = live_its()
    assert access(relaxed) in (0, None)
    assert len(relaxed.access_errors) == 1
    recorded = relaxed.access_errors[0]

    strict = live_its(strict=True)
    registers_before = strict.save_registers()
    with pytest.raises(InvalidAccessError) as caught:
        access(strict)
    assert caught.value.access == recorded
    assert len(strict.access_errors) == 0
    assert strict.save_registers() == registers_before
    assert f"{recorded.offset:#x}" in str(caught.value)


def test_strict_mode_can_be_switched_on_later():
    its = live_its()
    its.mmio_read(0x0200, 4)
    its.strict = True
    assert its.strict and its.redistributors.strict
    with pytest.raises(InvalidAccessError):
        its.mmio_read(0x0200, 4)
    with pytest.raises(InvalidAccessError):
        its.redistributors.mmio_read(0, 0x0200, 4)
    its.strict = False
    its.redistributors.mmio_read(0, 0x0200, 4)
    assert len(its.access_errors) == 2


def test_strict_mode_keeps_architecturally_ignored_writes_quiet():
    its = live_its(strict=True)
    typer = its.mmio_read(R.GITS_TYPER.offset, 8)
    its.mmio_write(R.GITS_TYPER.offset, 0, 8)                  # read-only register: WI
    its.mmio_write(R.GITS_CBASER.offset, 0, 8)                 # ignored while enabled
    assert its.mmio_read(R.GITS_TYPER.offset, 8) == typer
    assert its.mmio_read(R.GITS_TRANSLATER.offset, 4) == 0     # write-only: reads as zero


# -- 4. register values from byte addresses -----------------------------------------------------

@pytest.mark.parametrize("register, address, decode", [
    (R.GITS_CBASER, 0x4001_0000, R.cbaser_address),
    (R.GITS_CBASER, (1 << 52) - 4096, R.cbaser_address),
    (R.GICR_PROPBASER, 0x4000_3000, lambda v: v & R.GICR_PROPBASER.field("Physical_Address").mask),
    (R.GICR_PENDBASER, 0x4005_0000, lambda v: v & R.GICR_PENDBASER.field("Physical_Address").mask),
])
def test_encode_by_byte_address_round_trips(register, address, decode):
    value = register.encode(address=address)
    assert decode(value) == address
    assert register.decode(value)["Physical_Address"] == address >> register.field(
        "Physical_Address").lsb


@pytest.mark.parametrize("page_size, address", [
    (PageSize.SIZE_4K, 0x1234_5000),
    (PageSize.SIZE_16K, 0x1234_4000),
    (PageSize.SIZE_64K, 0x1234_0000),
    (PageSize.SIZE_64K, 0xA_1234_0000_0000),     # PA[51:48] = 0xA goes to bits [15:12]
])
def test_baser_by_byte_address(page_size, address):
    value = R.GITS_BASER0.encode(address=address, Page_Size=page_size, Valid=1,
                                 Type=BaserType.DEVICES)
    assert R.baser_address(value) == address
    assert R.baser_page_size(value) == {PageSize.SIZE_4K: 4096, PageSize.SIZE_16K: 16384,
                                        PageSize.SIZE_64K: 65536}[page_size]
    if address >> 48:
        assert (value >> 12) & 0xF == address >> 48


@pytest.mark.parametrize("register, address, words", [
    (R.GITS_CBASER, 0x4001_0800, "GITS_CBASER: address 0x40010800 is not aligned"),
    (R.GICR_PENDBASER, 0x4000_1000, "GICR_PENDBASER: address 0x40001000 is not aligned"),
    (R.GITS_CBASER, 1 << 52, "GITS_CBASER: address 0x10000000000000 does not fit 52 bits"),
    (R.GITS_CTLR, 0x1000, "GITS_CTLR holds no address"),
])
def test_bad_byte_addresses_name_the_register(register, address, words):
    with pytest.raises(ValueError, match=words):
        register.encode(address=address)


def test_baser_with_small_pages_refuses_addresses_above_48_bits():
    with pytest.raises(ValueError, match="GITS_BASER0.*48 bits"):
        R.GITS_BASER0.encode(address=1 << 48, Page_Size=PageSize.SIZE_4K)
    with pytest.raises(ValueError, match="not aligned to 0x4000"):
        R.GITS_BASER0.encode(address=0x1000, Page_Size=PageSize.SIZE_16K)


def test_address_and_physical_address_together_are_refused():
    with pytest.raises(ValueError, match="not both"):
        R.GITS_CBASER.encode(address=0x1000, Physical_Address=1)


def test_bring_up_is_public_and_works_from_byte_addresses():
    its = ITS(GuestMemory(64 << 20), 2)
    guest = bring_up(its, GuestMap(queue=0x2_0000, device_table=0x20_0000,
                                   collection_table=0x40_0000))
    assert its.enabled
    assert R.cbaser_address(its.register("GITS_CBASER")) == 0x2_0000
    assert R.baser_address(its.register("GITS_BASER0")) == 0x20_0000
    assert R.baser_address(its.register("GITS_BASER1")) == 0x40_0000
    from its_core import testing
    assert testing.bring_up is bring_up and guest.queue == 0x2_0000


def test_guest_map_refuses_a_shifted_address_at_the_register():
    its = ITS(GuestMemory(64 << 20), 2)
    with pytest.raises(ValueError, match="GITS_CBASER"):
        bring_up(its, GuestMap(queue=0x10 + 0x1_0000))       # not 4 KiB aligned


def test_submit_names_cbaser_when_the_queue_is_outside_memory():
    its = ITS(GuestMemory(16 << 20), 2)
    bring_up(its, GuestMap(queue=0x1_0000, itt_base=0x80_0000), enable=False)
    # The classic mistake: the byte address given as the shifted field.
    its.mmio_write(R.GITS_CBASER.offset,
                   R.GITS_CBASER.encode(Valid=1, Physical_Address=0x1_0000), 8)
    its.mmio_write(R.GITS_CTLR.offset, 1, 4)
    with pytest.raises(ITSError, match="GITS_CBASER.*outside guest memory.*address="):
        its.submit(its_core.commands.sync(0))


# -- 11. smaller things ---------------------------------------------------------------------------

def test_register_names_in_any_case():
    its = live_its()
    assert its.register("gits_ctlr") == its.register("GITS_CTLR") == its.mmio_read(0, 4)
    with pytest.raises(KeyError) as caught:
        its.register("GITS_CTRL")
    message = str(caught.value)
    assert "GITS_CTRL" in message and "GITS_CTLR" in message and "GITS_BASER7" in message


def test_restore_with_another_cpu_count_says_so():
    source = live_its()
    state = source.save()
    target = ITS(GuestMemory(source.memory.array.copy()), 2)
    with pytest.raises(RestoreError, match="saved from 4 CPUs but this ITS has 2"):
        target.restore(state)


def test_public_names_are_documented():
    assert "ITS" in its_core.__doc__
    assert its_core.registers is R and "registers" in its_core.__all__
    for member in ("OK", "NO_DEVICE", "ITS_DISABLED", "INTID_OUT_OF_RANGE"):
        assert member in its_core.TranslationStatus.__doc__
    for member in ("DEVICE_NOT_MAPPED", "CPU_OUT_OF_RANGE"):
        assert member in its_core.MappingFailure.__doc__
    for attribute in ("errors", "access_errors", "redistributors", "tables", "memory"):
        assert attribute in ITS.__doc__
        assert hasattr(live_its(), attribute)


def test_intid_bits_limits_are_explained_where_they_differ():
    TranslationTables("flat", intid_bits=32)
    with pytest.raises(ValueError, match="14..24"):
        ITS(GuestMemory(1 << 20), 1, intid_bits=25)
    assert "ICC_IAR1_EL1" in ITS.__doc__ and "24" in ITS.__doc__


# -- 1. the checkout does not shadow the installed package --------------------------------------

def test_public_module_paths_survive_the_layered_layout():
    import its_core.commands
    import its_core.reference
    import its_core.registers
    from its_core.abi import DTE
    from its_core.frontend import commands, registers
    assert its_core.commands is commands and its_core.registers is registers
    assert its_core.reference.ReferenceTables.__module__ == "its_core.core.reference"
    assert DTE is its_core.abi.entries.DTE


def test_import_from_the_repository_root_finds_a_working_package():
    result = subprocess.run([sys.executable, "-c", "import its_core; print(its_core.ITS)"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_an_unbuilt_source_tree_says_what_to_run(tmp_path):
    (tmp_path / "setup.py").write_text("")
    package = tmp_path / "src" / "its_core"
    shutil.copytree(ROOT / "src" / "its_core", package,
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    result = subprocess.run([sys.executable, "-c", "import its_core"], cwd=tmp_path / "src",
                            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "source tree" in last and "pip install ." in last
