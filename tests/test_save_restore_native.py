"""The native fast paths of save and restore against the plain paths they
replace: each is checked against an expectation computed another way
(numpy over the same inputs, or the per-item call the fast path batches)."""

from __future__ import annotations

import numpy as np
import pytest

from its_core import GuestMemory, ITS
from its_core.frontend import commands as C
from its_core.testing import GuestMap, bring_up, random_state

LAYOUTS = ["flat", "twolevel", "hash"]


def _its_with_sparse_device(layout: str, seed: int) -> ITS:
    """A random state plus a device whose EventIDs are too spread for a slab
    (so the tables keep it in the sparse map) and events sharing LPIs."""
    its = ITS(GuestMemory(64 << 20), 4, layout, event_bits=20, intid_bits=16)
    guest = random_state(its, 40, 12, seed=seed, pending_fraction=0.0)
    itt = guest.itt_base + 40 * guest.itt_stride
    its.submit(C.mapd(0xFFF, itt, 20))
    for event_id in (0, 7, 70_000, 500_000, (1 << 20) - 1):
        its.submit(C.mapti(0xFFF, event_id, 8192 + event_id % 4000, 1))
    its.submit(C.mapti(0xFFF, 9, 8192, 2))               # an LPI two events share
    assert not len(its.errors)
    return its


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("prop_inside", [True, False], ids=["prop-inside", "prop-straddles"])
def test_load_mapped_config_matches_load_config_many(layout, prop_inside):
    its = _its_with_sparse_device(layout, seed=3)
    lpi = its.lpi_state
    rng = np.random.default_rng(11)
    if not prop_inside:
        # PROPBASER near the end of memory: only the first INTIDs' bytes exist.
        prop = its.memory.end - 0x1000
        lpi.set_propbaser(prop, 15)
    else:
        prop = lpi.prop_addr
    span = min(lpi.config_array.size - 8192, its.memory.end - prop)
    its.memory.view(prop, span, "u1")[:] = rng.integers(0, 256, span, dtype=np.uint8)
    scrambled = rng.integers(0, 256, lpi.config_array.size, dtype=np.uint8)
    lpi.config_array[:] = scrambled
    lpi.load_config_many(its.tables.mapped_intids())
    expected = lpi.config_array.copy()
    lpi.config_array[:] = scrambled
    version = lpi.version
    lpi.load_mapped_config(its.tables)
    assert np.array_equal(lpi.config_array, expected)
    assert lpi.version > version


def test_load_mapped_config_of_empty_tables_changes_nothing():
    its = ITS(GuestMemory(16 << 20), 2, "flat")
    lpi = its.lpi_state
    before, version = lpi.config_array.copy(), lpi.version
    lpi.load_mapped_config(its.tables)
    assert np.array_equal(lpi.config_array, before) and lpi.version == version


def test_empty_flat_tables_share_nothing_once_written():
    """Empty flat directories read one shared all-empty array: a mapping in
    one must never show in another, new or reset."""
    from its_core.core._core import TranslationTables

    first = TranslationTables("flat", device_bits=12)
    second = TranslationTables("flat", device_bits=12)
    first.map_device(5, 3, 0x1000)
    first.map_event(5, 1, 8200, 0)
    third = TranslationTables("flat", device_bits=12)
    assert first.device_ids().tolist() == [5]
    assert second.device_ids().tolist() == [] and third.device_ids().tolist() == []
    second.map_device(7, 2, 0x2000)
    first.reset()
    assert first.device_ids().tolist() == [] and second.device_ids().tolist() == [7]
    assert TranslationTables("flat", device_bits=12).device_ids().tolist() == []


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("offsets", [(0,), (1,), (3,), (4,), (5,), (8190, 8191),
                                     (0, 1, 2, 3, 4, 7)], ids=str)
def test_restore_finds_dtes_at_every_offset_of_a_level2_page(layout, offsets):
    """The walk skips invalid DTEs several at a time: a valid one at any
    offset of a 64 KiB level-2 page (of several pages in use) is still found."""
    guest = GuestMap(device_table_pages=1, indirect=True, level2_pages=3)
    its = ITS(GuestMemory(64 << 20), 4, "flat")
    bring_up(its, guest)
    per_page = guest.page_bytes // 8
    device_ids = [page * per_page + offset for page in (0, 2) for offset in offsets]
    its.submit(C.mapc(0, 1))
    for index, device_id in enumerate(device_ids):
        its.submit(C.mapd(device_id, guest.itt_address(index), 2),
                   C.mapti(device_id, 1, 8192 + index, 0))
    assert not len(its.errors)
    state = its.save()
    twin = ITS(its.memory, 4, layout)
    twin.restore(state)
    assert twin.tables.device_ids().tolist() == device_ids
    assert [twin.translate(device_id, 1)[0] for device_id in device_ids] == \
        [8192 + index for index in range(len(device_ids))]
