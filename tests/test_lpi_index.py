"""LPIState's priority index: `highest_pending` / `acknowledge` against a brute
force over the bitmap, after every operation that changes pending bits,
config bytes or EnableLPIs.

The independent expectation reads only `pending_array` and `config_array`:
the best LPI of a CPU is, among its pending INTIDs >= 8192 whose config byte
has bit 0 set and priority (byte & 0xFC) strictly below the mask, the one with
the lowest priority, ties to the lowest INTID.  The index itself is also
checked word for word against one computed here with numpy from the same two
arrays, so a stale bit is caught even where it does not change an answer.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from its_core import ITS, GuestMap, GuestMemory, Redistributors, bring_up, commands as C
from its_core.frontend._guest import GuestWindow
from its_core.frontend._lpi import LPIState

FIRST = 8192
#: Priority masks every check runs with (LPIState takes any int: <= 0 masks
#: everything, >= 256 nothing).
MASKS = (-1, 0, 1, 4, 5, 0x10, 0x11, 0x40, 0x80, 0xA0, 0xA1, 0xFC, 0xFD, 0xFF, 0x100, 1 << 20)


# -- the independent expectation --------------------------------------------------------

def pending_lpis(lpi: LPIState, cpu: int) -> np.ndarray:
    bits = np.unpackbits(lpi.pending_array[cpu], bitorder="little")
    intids = np.flatnonzero(bits)
    return intids[intids >= FIRST]


def brute_force(lpi: LPIState, cpu: int, mask: int):
    """(intid, priority) by the rule, from the bitmap and the config cache."""
    intids = pending_lpis(lpi, cpu)
    config = lpi.config_array[intids].astype(np.int64)
    priority = config & 0xFC
    chosen = ((config & 1) == 1) & (priority < mask)
    if not chosen.any():
        return None
    intids, priority = intids[chosen], priority[chosen]
    best = priority.min()
    return int(intids[priority == best].min()), int(best)


def _pack(bits: np.ndarray, words: int) -> np.ndarray:
    """Rows of booleans -> rows of `words` little-endian uint64 (bit i of the row = bits[i])."""
    packed = np.packbits(bits, axis=1, bitorder="little")
    out = np.zeros((bits.shape[0], words * 8), np.uint8)
    out[:, :packed.shape[1]] = packed
    return out.view("<u8")


def expected_index(lpi: LPIState, cpu: int):
    """What index_snapshot(cpu) must hold, computed from the two arrays."""
    intids = pending_lpis(lpi, cpu)
    config = lpi.config_array[intids]
    enabled = (config & 1) == 1
    words = np.zeros((64, (1 << lpi.intid_bits) // 64), bool)
    words[config[enabled] >> 2, intids[enabled] >> 6] = True
    level1 = _pack(words, lpi.level1_words)
    level2 = _pack(level1 != 0, lpi.level2_words)
    level3 = _pack(level2 != 0, 1)[:, 0]
    priorities = sum(1 << p for p in range(64) if level3[p])
    return priorities, level3, level2, level1, len(intids)


def check(lpi: LPIState, context=None) -> None:
    for cpu in range(lpi.num_cpus):
        got = lpi.index_snapshot(cpu)
        want = expected_index(lpi, cpu)
        assert got[0] == want[0], (context, cpu, "priorities")
        for level, name in ((1, "level3"), (2, "level2"), (3, "level1")):
            assert np.array_equal(got[level], want[level]), (context, cpu, name)
        assert got[4] == want[4], (context, cpu, "pending_count")
        for mask in MASKS:
            assert lpi.highest_pending(cpu, mask) == brute_force(lpi, cpu, mask), \
                (context, cpu, mask)


# -- a small machine: LPIState driven directly and through an ITS's commands -------------

#: LPIs (as offsets from 8192) the operations draw from: several in one 64-INTID
#: word, both ends of words, the first and the last LPI.
POOL_OFFSETS = (0, 1, 2, 5, 63, 64, 65, 100, 127, 128, 640, 1000, 1001, 1023, 4095, 4096,
                6000, 6001, 6002, 6047)


class Machine:
    def __init__(self, intid_bits: int, num_cpus: int):
        self.num_cpus = num_cpus
        self.memory = GuestMemory(64 << 20)
        self.guest = GuestMap(pending_stride=max(0x1_0000, (1 << intid_bits) // 8))
        self.rd = Redistributors(self.memory, num_cpus, intid_bits)
        self.its = ITS(self.memory, num_cpus, "hash", intid_bits=intid_bits,
                       redistributors=self.rd)
        bring_up(self.its, self.guest, intid_bits=intid_bits)
        self.lpi = self.rd.lpi_state
        top = 1 << intid_bits
        # The last LPI of the space and its 64-INTID word-mates, and the bottom
        # of the top half (another level-2 word from 20 bits up).
        self.pool = sorted({FIRST + o for o in POOL_OFFSETS}
                           | {top - 1, top - 2, top - 64, top - 65, top // 2, top // 2 + 3})
        self.icid = {event: event % num_cpus for event in range(len(self.pool))}
        self.its.submit(*[C.mapc(cpu, cpu) for cpu in range(num_cpus)],
                        C.mapd(1, self.guest.itt_address(0), 6),
                        *[C.mapti(1, event, intid, self.icid[event])
                          for event, intid in enumerate(self.pool)])
        assert len(self.its.errors) == 0

    def write_config(self, intid: int, byte: int) -> None:
        self.memory.write(self.guest.config_table + intid - FIRST, bytes([byte]))

    def write_pending_table(self, cpu: int, intids) -> None:
        table = self.guest.pending_tables + cpu * self.guest.pending_stride
        nbytes = (1 << self.lpi.intid_bits) // 8
        bits = np.zeros(nbytes * 8, np.uint8)
        bits[list(intids)] = 1
        self.memory.write(table, np.packbits(bits, bitorder="little").tobytes())
        return table


CPU = st.integers(0, 11)                # modulo the machine's CPU count
EVENT = st.integers(0, 25)             # an index into Machine.pool
CONFIG_BYTE = st.one_of(st.sampled_from([0x00, 0x01, 0x03, 0x11, 0x10, 0xA1, 0xA0, 0xFD, 0xFC,
                                         0x41, 0x42, 0x43]),
                        st.integers(0, 255))
OPERATIONS = st.lists(st.one_of(
    st.tuples(st.just("set"), CPU, EVENT),
    st.tuples(st.just("set_everywhere"), EVENT),
    st.tuples(st.just("clear"), CPU, EVENT),
    st.tuples(st.just("config"), EVENT, CONFIG_BYTE,
              st.sampled_from(["reload", "many", "inv", "invall", "all", "unseen"])),
    st.tuples(st.just("scramble"), st.integers(0, 2**32 - 1)),
    st.tuples(st.just("int"), EVENT),
    st.tuples(st.just("clear_cmd"), EVENT),
    st.tuples(st.just("discard"), EVENT),
    st.tuples(st.just("movi"), EVENT, CPU),
    st.tuples(st.just("movall"), CPU, CPU),
    st.tuples(st.just("deliver"), st.lists(EVENT, min_size=1, max_size=12)),
    st.tuples(st.just("ack"), CPU, st.one_of(st.just(0xFF), st.sampled_from(MASKS))),
    st.tuples(st.just("disable"), CPU),
    st.tuples(st.just("enable"), CPU, st.booleans(), st.lists(EVENT, max_size=8)),
    st.tuples(st.just("load_pending"), CPU, st.lists(EVENT, max_size=8)),
    st.tuples(st.just("reset"),),
), min_size=1, max_size=40)
#: (CPU, event) pairs made pending before the operations start.
INITIAL = st.lists(st.tuples(CPU, EVENT), max_size=60)


def run(machine: Machine, operation) -> None:
    lpi, its, pool = machine.lpi, machine.its, machine.pool
    kind = operation[0]
    if kind == "set":
        lpi.set_lpi(operation[1] % machine.num_cpus, pool[operation[2] % len(pool)])
    elif kind == "set_everywhere":
        for cpu in range(machine.num_cpus):
            lpi.set_lpi(cpu, pool[operation[1] % len(pool)])
    elif kind == "clear":
        lpi.clear_lpi(operation[1] % machine.num_cpus, pool[operation[2] % len(pool)])
    elif kind == "config":
        event, byte, how = operation[1] % len(pool), operation[2], operation[3]
        intid = pool[event]
        machine.write_config(intid, byte)
        if how == "reload":
            lpi.reload_config(intid)
        elif how == "many":
            lpi.load_config_many(np.array([intid, pool[(event + 1) % len(pool)], intid],
                                          np.uint32))
        elif how == "inv":
            its.submit(C.inv(1, event))
        elif how == "invall":
            its.submit(C.invall(machine.icid[event]))
        elif how == "all":
            lpi.load_all_config()
        # "unseen": the guest's edit waits for a later load
    elif kind == "scramble":
        # New random config bytes for half the pool, loaded by one reload of everything.
        rng = np.random.default_rng(operation[1])
        for intid in rng.choice(pool, len(pool) // 2, replace=False).tolist():
            machine.write_config(intid, int(rng.integers(0, 256)))
        lpi.load_all_config()
    elif kind == "int":
        its.submit(C.int_(1, operation[1] % len(pool)))
    elif kind == "clear_cmd":
        its.submit(C.clear(1, operation[1] % len(pool)))
    elif kind == "discard":
        event = operation[1] % len(pool)
        its.submit(C.discard(1, event), C.mapti(1, event, pool[event], machine.icid[event]))
    elif kind == "movi":
        event, icid = operation[1] % len(pool), operation[2] % machine.num_cpus
        its.submit(C.movi(1, event, icid))
        machine.icid[event] = icid
    elif kind == "movall":
        its.submit(C.movall(operation[1] % machine.num_cpus, operation[2] % machine.num_cpus))
    elif kind == "deliver":
        events = np.array([event % len(pool) for event in operation[1]], np.uint32)
        its.msi_batch(np.ones_like(events), events)
    elif kind == "ack":
        cpu, mask = operation[1] % machine.num_cpus, operation[2]
        expected = brute_force(lpi, cpu, mask)
        taken = lpi.acknowledge(cpu, mask)
        assert taken == (None if expected is None else expected[0])
        if taken is not None:
            assert taken not in pending_lpis(lpi, cpu)
    elif kind == "disable":
        lpi.disable(operation[1] % machine.num_cpus)
    elif kind == "enable":
        cpu = operation[1] % machine.num_cpus
        table = machine.write_pending_table(cpu, [pool[e % len(pool)] for e in operation[3]])
        lpi.enable(cpu, table, operation[2])
    elif kind == "load_pending":
        cpu = operation[1] % machine.num_cpus
        table = machine.write_pending_table(cpu, [pool[e % len(pool)] for e in operation[2]])
        lpi.load_pending(cpu, table)
    else:
        lpi.reset_pending()


def replay(intid_bits: int, num_cpus: int, initial, operations, every_cpu=False) -> None:
    machine = Machine(intid_bits, num_cpus)
    if every_cpu:
        initial = [(cpu, 3 * cpu) for cpu in range(num_cpus)] + initial
    for cpu, event in initial:
        machine.lpi.set_lpi(cpu % num_cpus, machine.pool[event % len(machine.pool)])
    check(machine.lpi, "start")
    for step, operation in enumerate(operations):
        version = machine.lpi.version
        run(machine, operation)
        check(machine.lpi, (step, operation))
        if operation[0] in ("set", "clear", "config", "deliver", "disable", "enable",
                            "load_pending", "reset", "scramble") and operation[-1] != "unseen":
            assert machine.lpi.version != version, operation


@pytest.mark.parametrize("num_cpus", [2, 3])
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(initial=INITIAL, operations=OPERATIONS)
def test_index_matches_brute_force_after_every_operation(num_cpus, initial, operations):
    replay(14, num_cpus, initial, operations)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(initial=INITIAL, operations=OPERATIONS)
def test_index_matches_brute_force_with_many_busy_cpus(initial, operations):
    """12 CPUs, each with LPIs pending at the start: with more than 8 busy CPUs,
    reloading every config byte refiles only the LPIs that changed instead of
    rebuilding those CPUs."""
    replay(14, 12, initial, operations, every_cpu=True)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(initial=INITIAL, operations=OPERATIONS)
def test_index_matches_brute_force_with_several_level2_words(initial, operations):
    """20 bits: level 2 has 4 words per priority, level 3 four bits."""
    replay(20, 3, initial, operations)


@pytest.mark.parametrize("num_cpus", [2, 12])
def test_reloading_every_config_byte_refiles_exactly_what_changed(num_cpus):
    """load_all_config after edits of single bits (enable only, priority only,
    bit 1), on a config table that guest memory covers only in part, with
    unaligned ends: 12 busy CPUs take the path that refiles only the changed
    LPIs, 2 the one that rebuilds the busy CPUs."""
    prop, skipped, size = 0x10000, 13, 5000          # memory covers offsets 13..5012
    memory = GuestMemory(size, base=prop + skipped)
    rng = np.random.default_rng(11)
    memory.array[:] = rng.integers(0, 256, size, dtype=np.uint8)
    lpi = LPIState(GuestWindow(memory), num_cpus, 14)
    lpi.set_propbaser(prop, 13)
    for cpu in range(num_cpus):
        lpi.enable(cpu, 0, True)
    covered = np.zeros(1 << 14, np.uint8)
    covered[FIRST + skipped:FIRST + skipped + size] = memory.array
    assert np.array_equal(lpi.config_array, covered)
    edges = [FIRST + skipped + k for k in range(-skipped, 9)] + \
            [FIRST + skipped + size + k for k in range(-9, 9)]
    for cpu in range(num_cpus):
        for intid in edges + rng.integers(FIRST, 1 << 14, 40).tolist():
            lpi.set_lpi(cpu, intid)
    check(lpi, "start")
    for step in range(40):
        pending = pending_lpis(lpi, int(rng.integers(0, num_cpus)))
        inside = pending[(pending >= FIRST + skipped) & (pending < FIRST + skipped + size)]
        offsets = np.concatenate([rng.choice(inside, 10) - FIRST - skipped,
                                  rng.integers(0, size, 10)])
        flips = rng.choice([0x01, 0x04, 0x02, 0x80, 0x05, 0xFF], offsets.size).astype(np.uint8)
        np.bitwise_xor.at(memory.array, offsets, flips)
        lpi.load_all_config()
        covered[FIRST + skipped:FIRST + skipped + size] = memory.array
        assert np.array_equal(lpi.config_array, covered), step
        check(lpi, step)
    lpi.set_propbaser(prop, 12)                        # limit 8192: no LPIs, every byte 0
    lpi.load_all_config()
    assert not lpi.config_array.any()
    check(lpi, "no LPIs")
    assert all(lpi.highest_pending(cpu, 0x100) is None for cpu in range(num_cpus))


# -- 24 INTID bits: the top of the space and adversarial layouts -------------------------

BITS = 24
TOP = (1 << BITS) - 1


def state24(num_cpus: int = 2):
    """An LPIState at 24 bits on a guest memory holding its config table
    (every LPI enabled at priority 0xA0) and two pending tables."""
    memory = GuestMemory(32 << 20)
    prop, pend = 0x0, 0x100_0000
    memory.fill(prop, (1 << BITS) - FIRST, 0xA1)
    lpi = LPIState(GuestWindow(memory), num_cpus, BITS)
    lpi.set_propbaser(prop, BITS - 1)
    for cpu in range(num_cpus):
        lpi.enable(cpu, pend, True)
    return memory, prop, lpi


def set_config(memory, prop, lpi, intid: int, byte: int) -> None:
    memory.write(prop + intid - FIRST, bytes([byte]))
    lpi.reload_config(intid)


def test_24_bits_one_better_lpi_at_the_top_of_10k():
    memory, prop, lpi = state24()
    rng = np.random.default_rng(7)
    many = rng.choice(np.arange(FIRST, TOP), 10_000, replace=False)
    set_config(memory, prop, lpi, TOP, 0x11)
    for intid in many.tolist():
        lpi.set_lpi(0, intid)
    lpi.set_lpi(0, TOP)
    assert lpi.highest_pending(0) == (TOP, 0x10)
    assert lpi.highest_pending(0, 0x11) == (TOP, 0x10)
    assert lpi.highest_pending(0, 0xA0) == (TOP, 0x10)
    assert lpi.highest_pending(0, 0x10) is None
    assert lpi.highest_pending(1) is None
    for mask in MASKS:
        assert lpi.highest_pending(0, mask) == brute_force(lpi, 0, mask)
    # Taking them all gives the better one, then the rest in INTID order.
    assert lpi.acknowledge(0, 0x10) is None
    assert lpi.acknowledge(0) == TOP
    assert lpi.highest_pending(0) == (int(many.min()), 0xA0)
    assert lpi.highest_pending(0, 0xA0) is None
    taken = [lpi.acknowledge(0) for _ in range(len(many))]
    assert taken == sorted(many.tolist())
    assert lpi.acknowledge(0) is None and lpi.highest_pending(0) is None
    assert lpi.index_snapshot(0)[0] == 0 and lpi.index_snapshot(0)[4] == 0


def test_24_bits_ties_go_to_the_lowest_intid_across_every_level():
    memory, prop, lpi = state24()
    # One LPI of priority 0x20 in each of several level-3 / level-2 / level-1
    # regions (a level-1 bit covers 64 INTIDs, a level-2 bit 4096, a level-3 bit 262144).
    tied = [TOP, TOP - 64, (1 << 23) + 4096 * 3 + 64 * 5 + 7, (1 << 22) + 1, 262144 * 5 + 63,
            FIRST + 64 * 64 + 2, FIRST + 1]
    for intid in tied:
        set_config(memory, prop, lpi, intid, 0x21)
    for intid in reversed(tied):
        lpi.set_lpi(1, intid)
    lpi.set_lpi(1, FIRST)                              # pending at 0xA0
    assert lpi.highest_pending(1) == (FIRST + 1, 0x20)
    order = []
    while (found := lpi.highest_pending(1, 0x21)) is not None:
        assert found == brute_force(lpi, 1, 0x21)
        order.append(lpi.acknowledge(1, 0x21))
    assert order == sorted(tied)
    assert lpi.highest_pending(1) == (FIRST, 0xA0)


def test_24_bits_one_word_with_mixed_priorities_and_disabled_lpis():
    memory, prop, lpi = state24()
    base = TOP - 63                                    # the last 64-INTID word
    configs = {base: 0x40, base + 1: 0x31, base + 2: 0x31, base + 30: 0x05, base + 63: 0x04}
    for intid, byte in configs.items():
        set_config(memory, prop, lpi, intid, byte)
        lpi.set_lpi(0, intid)
    assert lpi.highest_pending(0) == (base + 30, 0x04)
    set_config(memory, prop, lpi, base + 30, 0x04)    # disabled: leaves the index
    assert lpi.highest_pending(0) == (base + 1, 0x30)
    set_config(memory, prop, lpi, base + 63, 0x01)    # enabled at priority 0: moves in
    assert lpi.highest_pending(0) == (base + 63, 0x00)
    lpi.clear_lpi(0, base + 63)
    lpi.clear_lpi(0, base + 1)                         # base + 2 keeps the word at 0x30
    assert lpi.highest_pending(0) == (base + 2, 0x30)
    set_config(memory, prop, lpi, base + 2, 0xA1)      # now ties with the other 0xA0s
    assert lpi.highest_pending(0) == (base + 2, 0xA0)
    set_config(memory, prop, lpi, base, 0x41)          # disabled -> enabled 0x40
    assert lpi.highest_pending(0) == (base, 0x40)
    for mask in MASKS:
        assert lpi.highest_pending(0, mask) == brute_force(lpi, 0, mask)


def test_24_bits_bulk_operations_refile_the_index():
    memory, prop, lpi = state24()
    rng = np.random.default_rng(3)
    intids = rng.choice(np.arange(FIRST, TOP + 1), 2000, replace=False)
    priorities = rng.integers(0, 64, intids.size) << 2
    config = np.full((1 << BITS) - FIRST, 0xA1, np.uint8)
    config[intids - FIRST] = priorities | rng.integers(0, 2, intids.size)
    memory.write(prop, config.tobytes())
    lpi.load_all_config()
    lpis = np.array(intids, np.uint32)
    statuses = np.zeros(lpis.size, np.uint8)
    lpi.deliver(lpis, (np.arange(lpis.size) % 2).astype(np.int32), statuses)
    assert (statuses == 0).all()
    for cpu in range(2):
        for mask in MASKS:
            assert lpi.highest_pending(cpu, mask) == brute_force(lpi, cpu, mask)
    # INVALLR with every LPI now at its own random priority, enabled.
    config[intids - FIRST] = (rng.integers(0, 64, intids.size) << 2) | 1
    memory.write(prop, config.tobytes())
    lpi.load_all_config()
    for cpu in range(2):
        assert lpi.highest_pending(cpu) == brute_force(lpi, cpu, 0xFF)
    # The pending table of CPU 1 in memory, loaded by another EnableLPIs.
    table = 0x100_0000
    memory.write(table, lpi.pending_array[0].tobytes())
    lpi.disable(1)
    assert lpi.highest_pending(1) is None
    lpi.enable(1, table, False)
    assert np.array_equal(lpi.pending_array[1][1024:], lpi.pending_array[0][1024:])
    assert lpi.highest_pending(1) == lpi.highest_pending(0) == brute_force(lpi, 1, 0xFF)
    lpi.reset_pending()
    assert lpi.highest_pending(0) is None and lpi.highest_pending(1) is None


def test_direct_writes_need_rebuild_index():
    memory, prop, lpi = state24(1)
    lpi.set_lpi(0, TOP)
    lpi.pending_array[0, TOP >> 3] = 0                 # behind the index's back
    with pytest.raises(RuntimeError, match="rebuild_index"):
        lpi.highest_pending(0)
    version = lpi.version
    lpi.rebuild_index()
    assert lpi.version != version
    assert lpi.highest_pending(0) is None
    lpi.pending_array[0, (FIRST + 9) >> 3] |= 1 << ((FIRST + 9) & 7)
    lpi.config_array[FIRST + 9] = 0x15
    lpi.rebuild_index(0)
    assert lpi.highest_pending(0) == (FIRST + 9, 0x14)
    assert lpi.index_snapshot(0)[4] == 1
    with pytest.raises(ValueError):
        lpi.rebuild_index(1)


@pytest.mark.parametrize("intid_bits, level1_words, level2_words", [(14, 4, 1), (16, 16, 1),
                                                                     (20, 256, 4), (24, 4096, 64)])
def test_index_memory_is_of_the_order_of_the_bitmap(intid_bits, level1_words, level2_words):
    lpi = LPIState(GuestWindow(GuestMemory(1 << 20)), 3, intid_bits)
    assert (lpi.level1_words, lpi.level2_words) == (level1_words, level2_words)
    assert lpi.index_nbytes == 3 * (64 * 8 * (level1_words + level2_words + 1) + 16)
    assert lpi.index_nbytes <= 1.6 * lpi.pending_array.nbytes


def test_random_state_leaves_the_index_consistent():
    from its_core.testing import random_state

    memory = GuestMemory(64 << 20)
    its = ITS(memory, 4, "hash", intid_bits=16)
    random_state(its, 64, 16, pending_fraction=0.5, seed=5)
    check(its.lpi_state)
