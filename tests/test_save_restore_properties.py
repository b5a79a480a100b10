"""Property tests of save/restore (docs/save-format.md) with hypothesis.

* Round trips: random command streams (devices with random EventID widths,
  sparse EventIDs, unmapped collections, pending LPIs) build a state on an ITS
  of one layout with a flat or two-level device table; save -> JSON -> copy of
  guest memory -> restore into a fresh ITS of another layout must give the
  same state, and saving the restored ITS must write the same bytes again.
* Corruption: bit flips, hostile 8-byte entries and truncated memory applied
  to a saved image must give a `RestoreError` that leaves the ITS untouched,
  or a restored state that is internally consistent; never another exception.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import struct

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import its_core
from its_core import GuestMemory, RestoreError, SaveError
from its_core import TranslationStatus as TS
from its_core.frontend import commands as C
from its_core.frontend.registers import PageSize
from its_core.testing import GuestMap, assert_same_state, bring_up, random_state

ITS = its_core.ITS
LAYOUTS = its_core.LAYOUTS
NUM_CPUS = 4
LPI = 8192
INTID_BITS = 16
EVENT_BITS = 18                 # the ITS's EventID width: room for very sparse devices
MEM_BYTES = 16 << 20
V = 1 << 63

# Guest map of these tests (16 MiB).
QUEUE = 0x1_0000
DT = 0x10_0000
L2 = 0x20_0000
L2_PAGES = 4
CT = 0x30_0000
PROP = 0x40_0000
PEND = 0x50_0000
ITT = 0x60_0000                 # small devices: 32 KiB each (up to 12 EventID bits)
ITT_STRIDE = 0x8000
BIG_ITT = 0xC0_0000             # the one wide device: 2 MiB (18 EventID bits)
NUM_SLOTS = 8                   # device slots; the last one is the wide device

KINDS = ("flat", "two-level-4k", "two-level-64k")
_PAGE = {"flat": PageSize.SIZE_64K, "two-level-4k": PageSize.SIZE_4K,
         "two-level-64k": PageSize.SIZE_64K}
_PAGE_BYTES = {PageSize.SIZE_4K: 4096, PageSize.SIZE_64K: 65536}
INVALID_L2 = 2                  # level-1 descriptor the tests leave invalid


def guest_map(kind: str) -> GuestMap:
    indirect = kind != "flat"
    return GuestMap(queue=QUEUE, queue_pages=16, device_table=DT, device_table_pages=1,
                    page_size=_PAGE[kind], indirect=indirect, level2_tables=L2,
                    level2_pages=L2_PAGES if indirect else 0, collection_table=CT,
                    config_table=PROP, pending_tables=PEND, pending_stride=0x1_0000,
                    itt_base=ITT, itt_stride=ITT_STRIDE)


def id_space(kind: str) -> int:
    """DeviceIDs the device table can hold."""
    if kind == "flat":
        return 0x1_0000 // 8
    return L2_PAGES * _PAGE_BYTES[_PAGE[kind]] // 8


def itt_of(slot: int) -> int:
    return BIG_ITT if slot == NUM_SLOTS - 1 else ITT + slot * ITT_STRIDE


def max_bits_of(slot: int) -> int:
    return EVENT_BITS if slot == NUM_SLOTS - 1 else 12


def new_its(kind: str, layout: str, mem: GuestMemory | None = None):
    mem = mem or GuestMemory(MEM_BYTES)
    its = ITS(mem, NUM_CPUS, layout, device_bits=16, event_bits=EVENT_BITS,
              intid_bits=INTID_BITS)
    return mem, its


def fresh(layout: str, mem: GuestMemory):
    return ITS(mem, NUM_CPUS, layout, device_bits=16, event_bits=EVENT_BITS,
               intid_bits=INTID_BITS)


def capture(its) -> dict:
    rd = its.redistributors
    return {
        "snapshot": its.tables.snapshot(),
        "pending": [its.pending(cpu).tolist() for cpu in range(its.num_cpus)],
        "lpis": [rd.lpis_enabled(cpu) for cpu in range(its.num_cpus)],
        "gicr": [(rd.mmio_read(cpu, 0x0, 4), rd.mmio_read(cpu, 0x70, 8),
                  rd.mmio_read(cpu, 0x78, 8)) for cpu in range(its.num_cpus)],
        "registers": its.save_registers(),
        "enabled": its.enabled,
        "config": its._lpi.config_array.tobytes(),
    }


# ----------------------------------------------------------------------------------------
# Random command streams.

events_st = st.lists(st.one_of(st.integers(0, 63), st.integers(0, (1 << EVENT_BITS) - 1)),
                     min_size=1, max_size=8)
slot_st = st.integers(0, NUM_SLOTS - 1)
icid_st = st.integers(0, 11)
cpu_st = st.integers(0, NUM_CPUS - 1)
intid_st = st.one_of(st.integers(LPI, LPI + 63), st.integers(LPI, (1 << INTID_BITS) - 1))


def ops_st(num_events: int):
    event = st.integers(0, num_events - 1)
    return st.lists(st.one_of(
        st.tuples(st.just("mapd"), slot_st, st.integers(1, EVENT_BITS)),
        st.tuples(st.just("unmapd"), slot_st),
        st.tuples(st.just("mapc"), icid_st, cpu_st),
        st.tuples(st.just("unmapc"), icid_st),
        st.tuples(st.just("mapti"), slot_st, event, intid_st, icid_st),
        st.tuples(st.just("mapti"), slot_st, event, intid_st, icid_st),
        st.tuples(st.just("mapti"), slot_st, event, intid_st, icid_st),
        st.tuples(st.just("discard"), slot_st, event),
        st.tuples(st.just("movi"), slot_st, event, icid_st),
        st.tuples(st.just("int"), slot_st, event),
        st.tuples(st.just("clear"), slot_st, event),
        st.tuples(st.just("movall"), cpu_st, cpu_st),
        st.tuples(st.just("inv"), slot_st, event),
        st.tuples(st.just("invall"), icid_st),
    ), min_size=1, max_size=60)


@st.composite
def scenario_st(draw):
    """(kind, source layout, other layout, DeviceIDs, EventID pool, command ops).

    The ops start with a set-up that maps devices of random widths (the last
    slot up to 18 EventID bits), collections (some left unmapped) and events
    at dense or very sparse EventIDs, makes some LPIs pending, then go on
    with a random stream of every command."""
    kind = draw(st.sampled_from(KINDS))
    src = draw(st.sampled_from(LAYOUTS))
    dst = draw(st.sampled_from([layout for layout in LAYOUTS if layout != src]))
    device_ids = draw(st.lists(st.integers(0, id_space(kind) - 1), min_size=NUM_SLOTS,
                               max_size=NUM_SLOTS, unique=True))
    setup, pool = [], []
    for icid in range(12):
        cpu = draw(st.one_of(st.none(), cpu_st))
        if cpu is not None:
            setup.append(("mapc", icid, cpu))
    for slot in range(NUM_SLOTS):
        wide = slot == NUM_SLOTS - 1
        if draw(st.integers(0, 3)) < (1 if wide else 2):
            continue
        bits = draw(st.integers(13, EVENT_BITS) if wide else st.integers(1, max_bits_of(slot)))
        setup.append(("mapd", slot, bits))
        count = draw(st.integers(0, 10))
        ids = draw(st.lists(st.one_of(st.integers(0, 31), st.integers(0, (1 << bits) - 1)),
                            min_size=count, max_size=count, unique=True).map(
            lambda xs, b=bits: [x % (1 << b) for x in xs]))
        for event_id in ids:
            if event_id not in pool:
                pool.append(event_id)
            setup.append(("mapti", slot, pool.index(event_id), draw(intid_st), draw(icid_st)))
            if draw(st.integers(0, 3)) == 0:
                setup.append(("int", slot, pool.index(event_id)))
    if not pool:
        pool = draw(events_st)
    ops = draw(ops_st(len(pool)))
    ops = ops[:draw(st.integers(0, len(ops)))]
    return kind, src, dst, device_ids, pool, setup + ops


def packets(ops, device_ids, event_ids):
    out = []
    for op in ops:
        name = op[0]
        if name == "mapd":
            slot, bits = op[1], min(op[2], max_bits_of(op[1]))
            out.append(C.mapd(device_ids[slot], itt_of(slot), bits))
        elif name == "unmapd":
            out.append(C.mapd(device_ids[op[1]], itt_of(op[1]), 1, valid=False))
        elif name == "mapc":
            out.append(C.mapc(op[1], op[2]))
        elif name == "unmapc":
            out.append(C.mapc(op[1], 0, valid=False))
        elif name == "mapti":
            out.append(C.mapti(device_ids[op[1]], event_ids[op[2]], op[3], op[4]))
        elif name == "discard":
            out.append(C.discard(device_ids[op[1]], event_ids[op[2]]))
        elif name == "movi":
            out.append(C.movi(device_ids[op[1]], event_ids[op[2]], op[3]))
        elif name == "int":
            out.append(C.int_(device_ids[op[1]], event_ids[op[2]]))
        elif name == "clear":
            out.append(C.clear(device_ids[op[1]], event_ids[op[2]]))
        elif name == "movall":
            out.append(C.movall(op[1], op[2]))
        elif name == "inv":
            out.append(C.inv(device_ids[op[1]], event_ids[op[2]]))
        elif name == "invall":
            out.append(C.invall(op[1]))
    return out


def build(kind, layout, device_ids, event_ids, ops):
    mem, its = new_its(kind, layout)
    bring_up(its, guest_map(kind))
    if kind != "flat":
        mem.write_u64(DT + 8 * INVALID_L2, 0)         # a hole in the level-1 table
    # stale garbage where the tables go: saving must make it unreachable
    rng = np.random.default_rng(len(ops))
    mem.write(ITT, rng.integers(0, 256, NUM_SLOTS * ITT_STRIDE, dtype=np.uint8).tobytes())
    its.submit(*packets(ops, device_ids, event_ids))
    return mem, its


def grid(device_ids, event_ids):
    devs = np.repeat(np.array(device_ids, np.uint32), len(event_ids) + 2)
    evs = np.tile(np.array(list(event_ids) + [1, (1 << EVENT_BITS) - 1], np.uint32),
                  len(device_ids))
    return devs, evs


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario_st())
def test_round_trip_from_commands(scenario):
    kind, src, dst, device_ids, event_ids, ops = scenario
    mem, its = build(kind, src, device_ids, event_ids, ops)
    state = json.loads(json.dumps(its.save()))
    copy = GuestMemory(np.array(mem.array))
    other = fresh(dst, copy)
    other.restore(state)
    assert_same_state(its, other)
    devs, evs = grid(device_ids, event_ids)
    for a, b in zip(its.translate_batch(devs, evs), other.translate_batch(devs, evs)):
        assert np.array_equal(a, b)
    # Saving the restored ITS writes exactly the same image.
    other.save()
    assert np.array_equal(copy.array, mem.array)
    # And both keep running identically.
    more = packets(ops[::-1], device_ids, event_ids)
    known = len(its.errors)
    assert len(other.errors) == 0
    its.submit(*more)
    other.submit(*more)
    assert [tuple(e) for e in its.errors[known:]] == [tuple(e) for e in other.errors[:]]
    assert_same_state(its, other)
    assert np.array_equal(its.msi_batch(devs, evs), other.msi_batch(devs, evs))
    assert_same_state(its, other)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(KINDS), st.sampled_from(LAYOUTS), st.sampled_from(LAYOUTS),
       st.integers(1, 300), st.integers(1, 40), st.integers(0, 2**32 - 1))
def test_round_trip_bulk(kind, src, dst, num_devices, per_device, seed):
    """random_state: many devices, every collection mapped but one in eight."""
    mem, its = new_its(kind, src)
    guest = dataclasses.replace(guest_map(kind),
                                itt_stride=max(256, 8 << max(1, (per_device - 1).bit_length())))
    random_state(its, num_devices, per_device, seed=seed, guest=guest, num_collections=24,
                 pending_fraction=0.3)
    state = its.save()
    other = fresh(dst, GuestMemory(np.array(mem.array)))
    other.restore(state)
    assert_same_state(its, other)


# ----------------------------------------------------------------------------------------
# Corruption.

@functools.lru_cache(maxsize=None)
def base_image(kind: str):
    """A saved image (memory bytes, state, entry addresses) for fuzzing."""
    mem, its = new_its(kind, "flat")
    bring_up(its, guest_map(kind))
    rng = np.random.default_rng(99)
    space = id_space(kind)
    device_ids = sorted(rng.choice(space, NUM_SLOTS, replace=False).tolist())
    if kind != "flat":
        per_page = space // L2_PAGES
        device_ids = [d for d in device_ids if d // per_page != INVALID_L2] or [0]
        mem.write_u64(DT + 8 * INVALID_L2, 0)
    cmds = [C.mapc(icid, icid % NUM_CPUS) for icid in range(6)]
    for slot, device_id in enumerate(device_ids):
        bits = 16 if slot == len(device_ids) - 1 else int(rng.integers(1, 9))
        itt = BIG_ITT if slot == len(device_ids) - 1 else ITT + slot * ITT_STRIDE
        cmds.append(C.mapd(device_id, itt, bits))
        chosen = rng.choice(1 << bits, min(6, 1 << bits), replace=False).tolist()
        if bits == 16:
            chosen = [3, 3 + 70000 % (1 << 16), 40000]
        for event_id in chosen:
            cmds.append(C.mapti(device_id, event_id, int(rng.integers(LPI, 1 << INTID_BITS)),
                                int(rng.integers(0, 8))))        # ICIDs 6, 7 unmapped
            if rng.random() < 0.3:
                cmds.append(C.int_(device_id, event_id))
    its.submit(*cmds)
    state = its.save()
    image = mem.array.copy()
    words = image.view("<u8")
    entries = {"dte": [], "ite": [], "cte": [], "l1": []}
    if kind == "flat":
        entries["dte"] = [DT + 8 * int(i)
                          for i in np.flatnonzero(words[DT // 8:(DT + 0x10000) // 8])]
    else:
        page = _PAGE_BYTES[_PAGE[kind]]
        entries["l1"] = [DT + 8 * i for i in range(L2_PAGES + 2)]
        entries["dte"] = [L2 + 8 * int(i)
                          for i in np.flatnonzero(words[L2 // 8:(L2 + L2_PAGES * page) // 8])]
    entries["ite"] = [ITT + 8 * int(i)
                      for i in np.flatnonzero(words[ITT // 8:(BIG_ITT + (8 << 16)) // 8])]
    entries["cte"] = [CT + 8 * i for i in range(10)]
    assert entries["dte"] and entries["ite"]
    return image, state, entries


def hostile_word(draw, what: str) -> int:
    if what == "dte":
        next_ = draw(st.one_of(st.sampled_from([0, 1, 16383]), st.integers(0, 16383)))
        itt = draw(st.one_of(st.sampled_from([ITT >> 8, BIG_ITT >> 8, (MEM_BYTES >> 8) - 1,
                                              MEM_BYTES >> 8, 2**44 - 1]),
                             st.integers(0, 2**44 - 1), st.integers(0, MEM_BYTES >> 8)))
        size = draw(st.one_of(st.sampled_from([0, EVENT_BITS - 1, EVENT_BITS, 31]),
                              st.integers(0, 31)))
        valid = draw(st.booleans())
        return int(valid) << 63 | next_ << 49 | itt << 5 | size
    if what == "ite":
        next_ = draw(st.one_of(st.sampled_from([0, 1, 65535]), st.integers(0, 65535)))
        intid = draw(st.one_of(st.sampled_from([0, 1, LPI - 1, LPI, (1 << INTID_BITS) - 1,
                                                1 << INTID_BITS, 2**32 - 1]),
                               st.integers(0, 2**32 - 1), st.integers(LPI, (1 << INTID_BITS) - 1)))
        icid = draw(st.one_of(st.integers(0, 12), st.integers(0, 65535)))
        return next_ << 48 | intid << 16 | icid
    if what == "cte":
        target = draw(st.one_of(st.integers(0, NUM_CPUS + 1), st.just(0xFFFF_FFFF),
                                st.integers(0, 2**32 - 1)))
        icid = draw(st.one_of(st.integers(0, 12), st.integers(0, 65535)))
        return int(draw(st.booleans())) << 63 | target << 16 | icid
    address = draw(st.one_of(st.integers(0, MEM_BYTES * 2), st.integers(0, 2**52 - 1)))
    return int(draw(st.booleans())) << 63 | (address & ~0xFFF & (2**52 - 1))


@st.composite
def corruption_st(draw):
    kind = draw(st.sampled_from(KINDS))
    layout = draw(st.sampled_from(LAYOUTS))
    image, state, entries = base_image(kind)
    changes = []
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["flip", "entry", "random-word"]))
        kinds = [k for k in entries if entries[k]]
        what = draw(st.sampled_from(kinds))
        addr = draw(st.sampled_from(entries[what]))
        if how == "flip":
            changes.append((addr + draw(st.integers(0, 7)), None, draw(st.integers(0, 7))))
        elif how == "entry":
            changes.append((addr, hostile_word(draw, what), None))
        else:
            changes.append((addr, draw(st.integers(0, 2**64 - 1)), None))
    # truncated memory: anywhere, or past the last ITT (the restore may then succeed)
    truncate = draw(st.one_of(st.none(), st.none(), st.integers(0x10_0000, MEM_BYTES - 1),
                              st.integers(BIG_ITT + (8 << 16), MEM_BYTES - 1)))
    return kind, layout, changes, truncate


def check_consistent(its, mem: GuestMemory) -> None:
    """Internal consistency of a restored state."""
    rd = its.redistributors
    for cpu in range(NUM_CPUS):             # restore validated every pending table it read
        if rd.lpis_enabled(cpu) and rd.lpi_limit // 8 > 1024:
            assert mem.contains(rd.pendbaser_address(cpu) + 1024, rd.lpi_limit // 8 - 1024), cpu
    tables = its.tables
    snap = tables.snapshot()
    assert set(snap["collections"].values()) <= set(range(NUM_CPUS))
    for device_id, (bits, itt) in snap["devices"].items():
        assert 0 <= device_id < 1 << 16
        assert 1 <= bits <= EVENT_BITS
        assert itt % 256 == 0 and mem.contains(itt, 8 << bits)
    device_ids, event_ids, _ = tables.export_events()
    for (device_id, event_id), (intid, icid) in snap["events"].items():
        assert device_id in snap["devices"]
        assert event_id < 1 << snap["devices"][device_id][0]
        assert LPI <= intid < 1 << INTID_BITS
    if device_ids.size:
        intids, cpus, statuses = its.translate_batch(device_ids, event_ids)
        for k, (device_id, event_id) in enumerate(zip(device_ids.tolist(), event_ids.tolist())):
            intid, icid = snap["events"][(device_id, event_id)]
            if icid in snap["collections"]:
                assert statuses[k] == TS.OK
                assert (int(intids[k]), int(cpus[k])) == (intid, snap["collections"][icid])
            else:
                assert statuses[k] == TS.NO_COLLECTION
        statuses = its.msi_batch(device_ids, event_ids)
        if its.enabled:
            assert set(statuses.tolist()) <= {TS.OK, TS.NO_COLLECTION, TS.LPIS_DISABLED,
                                              TS.INTID_OUT_OF_RANGE}
        else:                     # e.g. a CBASER that is not Valid: the CTLR write is dropped
            assert set(statuses.tolist()) == {TS.ITS_DISABLED}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corruption_st())
def test_corrupt_images(corruption):
    kind, layout, changes, truncate = corruption
    image, state, _ = base_image(kind)
    data = image.copy()
    for addr, value, bit in changes:
        if value is None:
            data[addr] ^= 1 << bit
        else:
            data[addr:addr + 8] = np.frombuffer(struct.pack("<Q", value), np.uint8)
    if truncate is not None:
        data = data[:truncate].copy()
    mem = GuestMemory(data)
    its = fresh(layout, mem)
    before, memory = capture(its), mem.array.copy()
    try:
        its.restore(json.loads(json.dumps(state)))
    except RestoreError as error:
        assert error.table in ("device", "level1", "itt", "collection", "pending", "registers")
        assert capture(its) == before
        assert np.array_equal(mem.array, memory)
        return
    assert its.enabled
    check_consistent(its, mem)
    # What restore accepted can be saved back (or is refused cleanly).
    snapshot = mem.array.copy()
    try:
        its.save_tables()
    except SaveError:
        assert np.array_equal(mem.array, snapshot)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(KINDS), st.sampled_from(LAYOUTS),
       st.sampled_from(["GITS_BASER0", "GITS_BASER1", "GITS_CBASER", "GITS_CREADR",
                        "GITS_CWRITER", "GITS_IIDR"]),
       st.integers(0, 2**64 - 1))
def test_corrupt_registers(kind, layout, name, value):
    """A hostile register value: RestoreError (nothing changed) or a consistent state."""
    image, state, _ = base_image(kind)
    state = dict(state)
    state[name] = value if name != "GITS_IIDR" else value & 0xFFFF_FFFF
    mem = GuestMemory(image.copy())
    its = fresh(layout, mem)
    before = capture(its)
    try:
        its.restore(state)
    except RestoreError:
        assert capture(its) == before
        assert np.array_equal(mem.array, image)
        return
    check_consistent(its, mem)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(KINDS), st.sampled_from(LAYOUTS),
       st.lists(st.integers(0xD0, 0xFF).map(lambda n: n << 16), min_size=NUM_CPUS,
                max_size=NUM_CPUS),
       st.integers(BIG_ITT + (8 << 16), MEM_BYTES))
def test_truncated_memory_pending_tables(kind, layout, tables, size):
    """Pending tables near the end of a truncated memory: RestoreError
    (ITS untouched) unless every pending table restore reads is inside."""
    image, state, _ = base_image(kind)
    state = {**state, "GICR_PENDBASER": tables}
    mem = GuestMemory(image[:size].copy())
    its = fresh(layout, mem)
    before = capture(its)
    inside = all(mem.contains(addr + 1024, (1 << INTID_BITS) // 8 - 1024) for addr in tables)
    try:
        its.restore(state)
    except RestoreError as error:
        assert not inside
        assert error.table == "pending"
        assert capture(its) == before
        return
    assert inside
    check_consistent(its, mem)
