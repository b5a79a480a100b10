"""Differential tests: the ITS front end against ReferenceITS.

Two models, two guest memories with identical initial content (garbage in
every table region, so that any stray or missing write shows up):

* command streams -- random mixes of valid and invalid commands over small ID
  spaces (boundary values of the device/collection tables, the ITT sizes, the
  LPI limit), unknown opcodes and random 32-byte packets, interleaved with
  doorbells (single and batched), EnableLPIs changes, GICR base changes and
  configuration / pending-table edits.  The ITS gets them through `submit`;
  the reference executes them one by one.  Afterwards: the command errors
  (offset, opcode, code), the translations of a probe set, the pending LPIs of
  every CPU, the bytes of guest memory and the acknowledge order must agree.
* register fuzz -- random MMIO writes (any offset of the ITS frame, sizes
  1/2/4/8, random and meaningful values) interleaved with commands placed in
  the queue by hand.  A small register model written here from
  docs/front-end.md drives a ReferenceITS; besides "no exception" and the
  CREADR invariants, every register read-back, every command error and the
  access-error count must agree.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import its_core
from its_core import GuestMemory
from its_core.frontend import commands as C
from its_core.frontend import registers as R
from its_core.frontend.reference_its import ReferenceITS
from its_core.frontend.registers import BaserType, PageSize

from front_end_helpers import (GICR_CTLR, GICR_PENDBASER, GICR_PROPBASER, GITS_BASER0,
                               GITS_BASER1, GITS_CBASER, GITS_CREADR, GITS_CTLR, GITS_CWRITER,
                               GITS_TRANSLATER, baser_value, cbaser_value, make_setup,
                               pendbaser_value, program_its, program_reference,
                               propbaser_value, read64, write64)

ITS = its_core.ITS

NUM_CPUS = 3
DEVICE_BITS = 11
EVENT_BITS = 14
INTID_BITS = 15
MEM = 2 << 20

QUEUE = 0x1000                 # 4 KiB: 128 slots
DT = 0x10000
CT = 0x20000                   # 4 KiB: 512 ICIDs
PROP = 0x30000                 # 24 KiB of configuration (15 INTID bits)
PEND = 0x40000                 # + cpu * 0x10000
L2_A, L2_B = 0x12000, 0x13000  # level-2 pages of the indirect device table
ITT_REGION = 0x100000

#: Level-1 descriptors of the indirect table (4 KiB pages: 512 DeviceIDs each):
#: [0] valid, [1] bit 63 clear, [2] valid with junk above bit 51 and below the
#: page size, [3] valid but the page is outside guest memory.
L1_WORDS = [(DT + 0, (1 << 63) | L2_A), (DT + 8, L2_B),
            (DT + 16, (1 << 63) | (0x7F << 52) | L2_B | 0x9A8),
            (DT + 24, (1 << 63) | (MEM + 0x10000))]

DEVICES = [0, 1, 2, 3, 5, 511, 512, 513, 1023, 1024, 1025, 1535, 1536, 2047, 2048, 2**32 - 1]
EVENTS = [0, 1, 2, 3, 5, 7, 8, 15, 16, 31, 32, 255, 256, 8191, 8192, 8193, 16383, 16384,
          2**32 - 1]
INTIDS = [0, 8191, 8192, 8193, 8194, 8195, 8200, 9000, 12345, 16383, 16384, 20000, 32767,
          32768, 65535, 2**32 - 1]
#: INTIDs of device 1's events 0..9: two lie beyond the limit of PROPBASER.IDbits = 13.
WARM_INTIDS = [8192, 8193, 8194, 8195, 8196, 8197, 8198, 8199, 20000, 30000]
ICIDS = [0, 1, 2, 3, 4, 7, 511, 512, 1000, 65535]
CPUS = [0, 1, 2, 3, 4, 2**32 - 1]
ITTS = [ITT_REGION, ITT_REGION + 0x20000, ITT_REGION + 0x40000, PROP, MEM - 0x100, MEM,
        MEM - 0x1000, 2**52 - 256]
EVENT_BITS_CHOICES = [1, 2, 3, 4, 5, 8, 13, 14, 15, 32]
KNOWN_OPCODES = sorted(C.OPCODES.values())

DIFF_SETTINGS = settings(max_examples=30, deadline=None, database=None,
                         suppress_health_check=[HealthCheck.too_slow,
                                                HealthCheck.data_too_large])


# -- setup ------------------------------------------------------------------------------

def fill_garbage(mem: GuestMemory, seed: int) -> None:
    """Random bytes in every table region (identical for a given seed)."""
    rng = np.random.default_rng(seed)
    for start, length in ((DT, 0x10000), (CT, 0x1000), (PROP, 0x6000),
                          (PEND, NUM_CPUS * 0x10000), (ITT_REGION, MEM - ITT_REGION)):
        mem.array[start:start + length] = rng.integers(0, 256, length, dtype=np.uint8)
    # the LPI part of each pending table (bytes 1024..4095) gets a few bits only; the
    # bytes around it keep their garbage (they must never be read)
    for cpu in range(NUM_CPUS):
        table = PEND + cpu * 0x10000
        mem.array[table + 1024:table + 4096] = 0
        for intid in rng.integers(8192, 32768, 16):
            mem.array[table + intid // 8] |= 1 << (intid % 8)


def setup_for(indirect: bool):
    setup = make_setup(NUM_CPUS, intid_bits=INTID_BITS, queue_addr=QUEUE, queue_pages=1,
                       dt_addr=DT, dt_page=PageSize.SIZE_4K, indirect=False,
                       ct_addr=CT, ct_page=PageSize.SIZE_4K, prop_addr=PROP, pend_addr=PEND,
                       pend_stride=0x10000, ptz=True)
    if indirect:
        setup.baser0 = baser_value(BaserType.DEVICES, DT, page_size=PageSize.SIZE_4K,
                                   indirect=True)
        setup.words = list(L1_WORDS)
    return setup


def make_pair(layout: str, indirect: bool, seed: int, *, stall: bool = False,
              enable_lpis=True):
    """An ITS and a ReferenceITS, each with its own memory, programmed identically."""
    mems = [GuestMemory(MEM), GuestMemory(MEM)]
    for mem in mems:
        fill_garbage(mem, seed)
    its = ITS(mems[0], num_cpus=NUM_CPUS, layout=layout, device_bits=DEVICE_BITS,
              event_bits=EVENT_BITS, intid_bits=INTID_BITS, stall_on_error=stall)
    ref = ReferenceITS(mems[1], NUM_CPUS, device_bits=DEVICE_BITS, event_bits=EVENT_BITS,
                       intid_bits=INTID_BITS)
    setup = setup_for(indirect)
    program_its(its, setup, mem=mems[0], enable_lpis=enable_lpis)
    program_reference(ref, setup, enable_lpis=enable_lpis)
    assert np.array_equal(mems[0].array, mems[1].array)
    return its, ref, setup, mems


WARM_UP = [
    C.mapc(0, 0), C.mapc(1, 1), C.mapc(2, 2), C.mapc(7, 1),
    C.mapd(1, ITT_REGION, 4), C.mapd(2, ITT_REGION + 0x20000, 14), C.mapd(513, PROP, 3),
    C.mapd(1025, MEM - 0x100, 8),
    *(C.mapti(1, e, WARM_INTIDS[e], e % 4) for e in range(10)),
    C.mapti(2, 8192, 9000, 7), C.mapi(2, 8200, 2), C.mapti(2, 3, 8193, 1),
    C.mapti(513, 1, 8195, 0), C.mapti(1025, 31, 16383, 2),
]


# -- strategies -------------------------------------------------------------------------

dev = st.sampled_from(DEVICES)
evt = st.sampled_from(EVENTS)
icid = st.sampled_from(ICIDS)
cpu_field = st.sampled_from(CPUS)
cpu = st.integers(0, NUM_CPUS - 1)

packets = st.one_of(
    st.builds(C.mapd, dev, st.sampled_from(ITTS), st.sampled_from(EVENT_BITS_CHOICES),
              st.booleans()),
    st.builds(C.mapc, icid, cpu_field, st.booleans()),
    st.builds(C.mapti, dev, evt, st.sampled_from(INTIDS), icid),
    st.builds(C.mapi, dev, evt, icid),
    st.builds(C.movi, dev, evt, icid),
    st.builds(C.discard, dev, evt),
    st.builds(C.inv, dev, evt),
    st.builds(C.invall, icid),
    st.builds(C.int_, dev, evt),
    st.builds(C.clear, dev, evt),
    st.builds(C.sync, cpu_field),
    st.builds(C.movall, cpu_field, cpu_field),
    # anything at all, and known opcodes with random (RES0 and field) bits
    st.binary(min_size=32, max_size=32),
    st.builds(lambda op, rest: bytes([op]) + rest, st.sampled_from(KNOWN_OPCODES),
              st.binary(min_size=31, max_size=31)),
)



def weighted(*pairs):
    """One of the strategies, chosen with the given integer weights."""
    return st.sampled_from([strategy for weight, strategy in pairs
                            for _ in range(weight)]).flatmap(lambda strategy: strategy)


# Commands on the warm-up mappings, so that effects (pending bits, moves, ITE zeroing)
# are frequent and visible.
warm_dev = st.sampled_from([1, 1, 1, 1, 2, 513, 1025])
warm_evt = st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 31, 8192,
                            8200])
warm_icid = st.sampled_from([0, 1, 2, 3, 7, 9])
warm_packets = weighted(
    (5, st.builds(C.int_, warm_dev, warm_evt)),
    (2, st.builds(C.clear, warm_dev, warm_evt)),
    (3, st.builds(C.movi, warm_dev, warm_evt, warm_icid)),
    (2, st.builds(C.discard, warm_dev, warm_evt)),
    (2, st.builds(C.inv, warm_dev, warm_evt)),
    (1, st.builds(C.invall, warm_icid)),
    (2, st.builds(C.movall, cpu, cpu)),
    (3, st.builds(C.mapti, warm_dev, warm_evt,
                  st.one_of(st.integers(8192, 8210), st.sampled_from([16384, 20000, 32767])),
                  warm_icid)),
    (1, st.builds(C.mapc, warm_icid, cpu, st.sampled_from([True, True, False]))),
    (1, st.builds(C.mapd, st.sampled_from([1, 2]), st.sampled_from(ITTS[:3]),
                  st.sampled_from([3, 4, 14]), st.sampled_from([True, True, False]))),
)

operations = weighted(
    (6, st.tuples(st.just("cmds"), st.lists(warm_packets, min_size=1, max_size=12))),
    (3, st.tuples(st.just("cmds"), st.lists(st.one_of(packets, warm_packets), min_size=1,
                                            max_size=12))),
    (5, st.tuples(st.just("msi"), st.sampled_from([1, 1, 2, 513, 1025, 3, 2048]), warm_evt)),
    (2, st.tuples(st.just("batch"), st.lists(st.one_of(st.tuples(dev, evt),
                                                       st.tuples(warm_dev, warm_evt)),
                                             max_size=20))),
    (2, st.tuples(st.just("lpis"), cpu, st.sampled_from([True, True, False]))),
    (2, st.tuples(st.just("config"), st.one_of(st.integers(8192, 8192 + 40),
                                                st.sampled_from([20000, 30000])),
                  st.integers(0, 255))),
    (2, st.tuples(st.just("ack"), cpu)),
    (1, st.tuples(st.just("pendbyte"), cpu, st.sampled_from([1000, 1023, 1024, 1025, 1030,
                                                             2047, 2048, 4095, 4096]),
                  st.integers(0, 255))),
    (1, st.tuples(st.just("propbaser"), cpu, st.sampled_from([11, 12, 13, 13, 14, 15, 31]))),
    (1, st.tuples(st.just("pendbaser"), cpu, st.booleans())),
    (1, st.tuples(st.just("its"), st.sampled_from([True, True, False]))),
)


# The same kinds of operations drawn by a seeded generator with fixed weights: long
# streams with a predictable mix (hypothesis' own draws favour short, simple examples).

def _pick(rng, values):
    return values[int(rng.integers(len(values)))]


def random_packet(rng) -> bytes:
    d, e, i = (lambda: _pick(rng, DEVICES)), (lambda: _pick(rng, EVENTS)), \
        (lambda: _pick(rng, ICIDS))
    kind = int(rng.integers(14))
    if kind == 0:
        return C.mapd(d(), _pick(rng, ITTS), _pick(rng, EVENT_BITS_CHOICES), bool(rng.integers(2)))
    if kind == 1:
        return C.mapc(i(), _pick(rng, CPUS), bool(rng.integers(2)))
    if kind == 2:
        return C.mapti(d(), e(), _pick(rng, INTIDS), i())
    if kind == 3:
        return C.mapi(d(), e(), i())
    if kind == 4:
        return C.movi(d(), e(), i())
    if kind in (5, 6, 7, 8):
        return [C.discard, C.inv, C.int_, C.clear][kind - 5](d(), e())
    if kind == 9:
        return C.invall(i())
    if kind == 10:
        return C.sync(_pick(rng, CPUS))
    if kind == 11:
        return C.movall(_pick(rng, CPUS), _pick(rng, CPUS))
    if kind == 12:
        return rng.integers(0, 256, 32, dtype=np.uint8).tobytes()
    return bytes([_pick(rng, KNOWN_OPCODES)]) + rng.integers(0, 256, 31, dtype=np.uint8).tobytes()


WARM_DEVICES = [1, 1, 1, 1, 2, 513, 1025]
WARM_EVENTS = list(range(10)) * 2 + [31, 8192, 8200]
WARM_ICIDS = [0, 1, 2, 3, 7, 9]


def random_warm_packet(rng) -> bytes:
    d, e = _pick(rng, WARM_DEVICES), _pick(rng, WARM_EVENTS)
    kind = _pick(rng, ["int"] * 5 + ["clear"] * 2 + ["movi"] * 3 + ["discard"] * 2 +
                 ["inv"] * 2 + ["invall"] * 2 + ["movall"] * 2 + ["mapti"] * 4 +
                 ["mapc", "mapd"])
    if kind in ("int", "clear", "discard", "inv"):
        return {"int": C.int_, "clear": C.clear, "discard": C.discard, "inv": C.inv}[kind](d, e)
    if kind == "movi":
        return C.movi(d, e, _pick(rng, WARM_ICIDS))
    if kind == "invall":
        return C.invall(_pick(rng, WARM_ICIDS))
    if kind == "movall":
        return C.movall(int(rng.integers(NUM_CPUS)), int(rng.integers(NUM_CPUS)))
    if kind == "mapti":
        return C.mapti(d, e, _pick(rng, list(range(8192, 8211)) + [16384, 20000, 32767]),
                       _pick(rng, WARM_ICIDS))
    if kind == "mapc":
        return C.mapc(_pick(rng, WARM_ICIDS), int(rng.integers(NUM_CPUS)), rng.random() < 0.7)
    return C.mapd(2, _pick(rng, ITTS[:3]), _pick(rng, [3, 4, 14]), rng.random() < 0.8)


#: Map device 1 again (its old events are dropped first).
REWARM = [C.mapd(1, ITT_REGION, 4), *(C.mapti(1, e, WARM_INTIDS[e], e % 4) for e in range(10))]


def random_ops(rng, n: int) -> list:
    ops = []
    for _ in range(n):
        r = rng.random()
        c = int(rng.integers(NUM_CPUS))
        if r < 0.03:
            ops.append(("cmds", REWARM))
        elif r < 0.30:
            ops.append(("cmds", [random_warm_packet(rng) for _ in range(rng.integers(1, 12))]))
        elif r < 0.42:
            ops.append(("cmds", [random_packet(rng) if rng.random() < 0.5
                                 else random_warm_packet(rng)
                                 for _ in range(rng.integers(1, 12))]))
        elif r < 0.62:
            ops.append(("msi", _pick(rng, WARM_DEVICES + [3, 2048]), _pick(rng, WARM_EVENTS)))
        elif r < 0.70:
            pairs = [(_pick(rng, WARM_DEVICES + DEVICES), _pick(rng, WARM_EVENTS + EVENTS))
                     for _ in range(rng.integers(0, 30))]
            ops.append(("batch", pairs))
        elif r < 0.76:
            ops.append(("lpis", c, rng.random() < 0.6))
        elif r < 0.81:
            ops.append(("ack", c))
        elif r < 0.86:
            ops.append(("config", _pick(rng, WARM_INTIDS * 3 + list(range(8200, 8233))),
                        int(rng.integers(256))))
        elif r < 0.88:
            ops.append(("pendbyte", c, _pick(rng, [1000, 1023, 1024, 1025, 1030, 2047, 2048,
                                                   2500, 4095, 4096]),
                        int(rng.integers(256))))
        elif r < 0.92:
            ops.append(("propbaser", c, _pick(rng, [11, 12, 13, 13, 13, 14, 14, 31])))
        elif r < 0.97:
            ops.append(("pendbaser", c, rng.random() < 0.5))
        else:                               # a short disabled stretch
            ops.append(("its", False))
            ops.append(("msi", 1, _pick(rng, WARM_EVENTS)))
            ops.append(("cmds", [random_warm_packet(rng) for _ in range(rng.integers(1, 6))]))
            ops.append(("its", True))
    return ops


# -- comparison -------------------------------------------------------------------------

PROBE_D, PROBE_E = (np.array(a, dtype=np.uint32).ravel() for a in np.meshgrid(
    DEVICES, sorted(set(EVENTS) | {2**k for k in range(15)} | {2**k - 1 for k in range(15)}),
    indexing="ij"))


def translations(model):
    intids, cpus, statuses = model.translate_batch(PROBE_D, PROBE_E)
    statuses = np.asarray(statuses, dtype=np.int64)
    ok = statuses == 0
    return (statuses.tolist(), np.where(ok, intids, 0).tolist(), np.where(ok, cpus, -1).tolist())


def assert_same_state(its, ref, ref_errors, mems) -> None:
    assert [(e.offset, e.opcode, e.code) for e in its.errors] == ref_errors
    assert translations(its) == translations(ref)
    for c in range(NUM_CPUS):
        assert [int(i) for i in its.pending(c)] == ref.pending(c), f"CPU {c}"
    assert np.array_equal(mems[0].array, mems[1].array), first_difference(mems)


def first_difference(mems) -> str:
    diff = np.flatnonzero(mems[0].array != mems[1].array)
    if not diff.size:
        return ""
    a = int(diff[0])
    return (f"{diff.size} bytes differ, first at {a:#x}: "
            f"its {mems[0].array[a]:#x} ref {mems[1].array[a]:#x}")


def drain(model, c):
    out = []
    while (intid := model.acknowledge(c)) is not None:
        out.append(int(intid))
        assert len(out) <= 2**INTID_BITS
    return out


class Driver:
    """Applies one operation to both models (reference: command by command)."""

    def __init__(self, its, ref, setup, mems):
        self.its, self.ref, self.setup, self.mems = its, ref, setup, mems
        self.sent = 0                       # commands executed by the reference
        self.queued = 0                     # commands written into the queue
        self.deferred: list[bytes] = []     # commands queued while the ITS is disabled
        self.errors: list[tuple[int, int, int]] = []
        self.statuses: list[tuple[int, int]] = []

    def run_commands(self, batch):
        for packet in batch:
            offset = (self.sent * 32) % self.setup.queue_bytes
            self.sent += 1
            code = self.ref.execute(packet)
            if code:
                self.errors.append((offset, packet[0], code))

    def apply(self, op):
        """Apply `op` to both models; then their pending LPIs must agree."""
        self._apply(op)
        for c in range(NUM_CPUS):
            assert [int(i) for i in self.its.pending(c)] == self.ref.pending(c), \
                f"CPU {c} after {op[0]}"

    def _apply(self, op):
        its, ref = self.its, self.ref
        kind = op[0]
        if kind == "cmds":
            batch = list(op[1])
            if not ref.enabled and len(self.deferred) + len(batch) > 100:
                return                      # would not fit in the queue
            its.submit(*batch)
            for packet in batch:            # the guest's copy of the queue, in ref memory
                offset = (self.queued * 32) % self.setup.queue_bytes
                ref.mem.write(self.setup.queue_addr + offset, packet)
                self.queued += 1
            if ref.enabled:
                self.run_commands(batch)
            else:
                self.deferred += batch
        elif kind == "msi":
            self.statuses.append((int(its.msi(op[1], op[2])), int(ref.msi(op[1], op[2]))))
        elif kind == "batch":
            pairs = op[1]
            d = np.array([p[0] for p in pairs], dtype=np.uint32)
            e = np.array([p[1] for p in pairs], dtype=np.uint32)
            got = [int(s) for s in its.msi_batch(d, e)]
            want = [int(ref.msi(a, b)) for a, b in pairs]
            assert got == want
        elif kind == "lpis":
            _, c, on = op
            its.redistributors.mmio_write(c, GICR_CTLR, int(on), 4)
            ref.enable_lpis(c) if on else ref.disable_lpis(c)
        elif kind == "config":
            for mem in self.mems:
                mem.write(PROP + op[1] - 8192, bytes([op[2]]))
        elif kind == "pendbyte":
            for mem in self.mems:
                mem.write(PEND + op[1] * 0x10000 + op[2], bytes([op[3]]))
        elif kind == "propbaser":
            value = propbaser_value(PROP, op[2])
            its.redistributors.mmio_write(op[1], GICR_PROPBASER, value, 8)
            if not ref.lpis_enabled[op[1]]:
                ref.propbaser = value
        elif kind == "pendbaser":
            value = pendbaser_value(PEND + op[1] * 0x10000, ptz=op[2])
            its.redistributors.mmio_write(op[1], GICR_PENDBASER, value, 8)
            if not ref.lpis_enabled[op[1]]:
                ref.pendbaser[op[1]] = value
        elif kind == "ack":
            assert its.acknowledge(op[1]) == ref.acknowledge(op[1])
        elif kind == "its":
            its.mmio_write(GITS_CTLR, int(op[1]), 4)
            if op[1] and not ref.enabled:
                ref.enabled = True
                deferred, self.deferred = self.deferred, []
                self.run_commands(deferred)
            ref.enabled = bool(op[1])
        else:
            raise AssertionError(op)


CONFIGS = pytest.mark.parametrize(
    "config", [(layout, indirect) for layout in its_core.LAYOUTS for indirect in (False, True)],
    ids=lambda p: f"{p[0]}-{'indirect' if p[1] else 'flat_dt'}")


def new_driver(layout, indirect, seed, **kwargs) -> Driver:
    return Driver(*make_pair(layout, indirect, seed, **kwargs))


def check_everything(drv: Driver) -> None:
    assert [got for got, _ in drv.statuses] == [want for _, want in drv.statuses]
    assert_same_state(drv.its, drv.ref, drv.errors, drv.mems)
    for c in range(NUM_CPUS):
        assert drain(drv.its, c) == drain(drv.ref, c), f"acknowledge order on CPU {c}"


# -- tests ---------------------------------------------------------------------------------

@CONFIGS
@DIFF_SETTINGS
@given(seed=st.integers(0, 2**32 - 1), ops=st.lists(operations, min_size=3, max_size=30))
def test_command_streams(config, seed, ops):
    layout, indirect = config
    drv = new_driver(layout, indirect, seed)
    drv.apply(("cmds", WARM_UP))
    for op in ops:
        drv.apply(op)
    drv.apply(("its", True))
    check_everything(drv)


@CONFIGS
@DIFF_SETTINGS
@given(seed=st.integers(0, 2**32 - 1),
       batches=st.lists(st.lists(packets, min_size=1, max_size=60), min_size=1, max_size=6))
def test_random_packets_only(config, seed, batches):
    """Dense streams of arbitrary commands (several queue laps, no warm-up)."""
    layout, indirect = config
    drv = new_driver(layout, indirect, seed)
    for batch in batches:
        drv.apply(("cmds", batch))
    check_everything(drv)


@DIFF_SETTINGS
@given(seed=st.integers(0, 2**32 - 1),
       ops=st.lists(weighted(
           (4, st.tuples(st.just("msi"), st.sampled_from([1, 2, 513, 1025, 3]), warm_evt)),
           (2, st.tuples(st.just("batch"), st.lists(st.tuples(
               st.sampled_from([1, 2, 513, 1025, 3, 2048]),
               st.sampled_from([0, 1, 2, 3, 7, 31, 8192, 8200, 2**32 - 1])), max_size=40))),
           (2, st.tuples(st.just("cmds"), st.lists(warm_packets, min_size=1, max_size=4))),
           (1, st.tuples(st.just("lpis"), cpu, st.booleans())),
           (1, st.tuples(st.just("its"), st.sampled_from([True, True, False]))),
       ), min_size=3, max_size=30))
def test_doorbells_interleaved(seed, ops):
    drv = new_driver("hash", False, seed, enable_lpis={0, 1})
    drv.apply(("cmds", WARM_UP))
    for op in ops:
        drv.apply(op)
    check_everything(drv)


@CONFIGS
@settings(max_examples=10, deadline=None, database=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_long_seeded_streams(config, seed):
    """300 operations from a seeded generator (reproduce with the reported seed)."""
    layout, indirect = config
    drv = new_driver(layout, indirect, seed)
    drv.apply(("cmds", WARM_UP))
    for op in random_ops(np.random.default_rng(seed), 300):
        drv.apply(op)
    drv.apply(("its", True))
    check_everything(drv)


# =========================================================================================
# Register fuzz
# =========================================================================================

_OFFSET = R.GITS_CWRITER_LAYOUT["Offset"].mask
_VALID = 1 << 63
_INDIRECT = R.GITS_BASER_LAYOUT["Indirect"].mask
_PTZ = 1 << 62
TYPER_VALUE = R.GITS_TYPER_LAYOUT.encode(Physical=1, ITT_entry_size=7, ID_bits=EVENT_BITS - 1,
                                         Devbits=DEVICE_BITS - 1)


class _ModelRedistributors:
    def __init__(self, model):
        self.model = model

    def mmio_write(self, cpu, offset, value, size):
        ref = self.model.ref
        assert size == (4 if offset == GICR_CTLR else 8)   # the fuzz uses whole registers
        if offset == GICR_CTLR:
            if value & 1:
                ref.enable_lpis(cpu)
            elif ref.lpis_enabled[cpu]:
                ref.disable_lpis(cpu)
        elif offset == GICR_PROPBASER and not ref.lpis_enabled[cpu]:
            ref.propbaser = R.GICR_PROPBASER.merge_write(ref.propbaser, value)
        elif offset == GICR_PENDBASER and not ref.lpis_enabled[cpu]:
            ref.pendbaser[cpu] = R.GICR_PENDBASER.merge_write(ref.pendbaser[cpu], value)

    def mmio_read(self, cpu, offset, size):
        ref = self.model.ref
        return {GICR_CTLR: int(ref.lpis_enabled[cpu]), GICR_PROPBASER: ref.propbaser,
                GICR_PENDBASER: ref.pendbaser[cpu] & ~_PTZ}[offset]


class FrontEndModel:
    """GITS_* registers and queue processing written from docs/front-end.md.

    Drives a ReferenceITS and exposes the same mmio_read / mmio_write /
    redistributors interface as the ITS, so the same guest code programs both.
    """

    def __init__(self, ref: ReferenceITS, stall: bool):
        self.ref, self.stall = ref, stall
        self.redistributors = _ModelRedistributors(self)
        ref.baser0, ref.baser1 = R.GITS_BASER0.reset, R.GITS_BASER1.reset
        self.cbaser = self.cwriter = self.creadr = 0
        self.stalled = False
        self.errors: list[tuple[int, int | None, int]] = []
        self.access_errors = 0

    # -- registers --------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self.ref.enabled

    def value(self, reg) -> int:
        if reg is R.GITS_CTLR:
            # CREADR == CWRITER as register values: a stalled queue is not quiescent
            quiescent = not self.enabled or (self.creadr == self.cwriter and not self.stalled)
            return int(self.enabled) | int(quiescent) << 31
        if reg is R.GITS_TYPER:
            return TYPER_VALUE
        if reg is R.GITS_CBASER:
            return self.cbaser
        if reg is R.GITS_CWRITER:
            return self.cwriter
        if reg is R.GITS_CREADR:
            return self.creadr | int(self.stalled)
        if reg is R.GITS_BASER0:
            return self.ref.baser0
        if reg is R.GITS_BASER1:
            return self.ref.baser1
        if reg is R.GITS_TRANSLATER:
            return 0
        return reg.reset                     # IIDR, ID registers; BASER2..7 reset to 0

    def mmio_read(self, offset, size):
        access = R.lookup(offset, size)
        if access is None:
            self.access_errors += 1
            return 0
        value = self.value(access.register)
        return value if access.half is None else R.read_half(value, access.half)

    def mmio_write(self, offset, value, size, device_id=None):
        access = R.lookup(offset, size)
        if access is None:
            self.access_errors += 1
            return
        reg, half = access
        if reg is R.GITS_TRANSLATER:
            if device_id is None:            # the host dropped the bus DeviceID: its bug
                raise ValueError("a GITS_TRANSLATER write needs device_id=")
            self.ref.msi(device_id, value)
            return
        if reg.access == "RO":
            return
        new = value if half is None else R.merge_half(self.value(reg), half, value)
        if reg is R.GITS_CTLR:
            if new & 1:
                if not (self.cbaser & _VALID and self.ref.baser0 & _VALID
                        and self.ref.baser1 & _VALID):
                    return                   # the whole write is dropped
                self.ref.enabled = True
                self.process()
            else:
                self.ref.enabled = False
        elif reg is R.GITS_CBASER:
            if not self.enabled:
                self.cbaser = reg.merge_write(self.cbaser, new)
                self.creadr = self.cwriter = 0       # KVM: a new queue starts empty
                self.stalled = False
        elif reg is R.GITS_CWRITER:
            offset = new & _OFFSET
            if offset >= R.cbaser_queue_bytes(self.cbaser):
                return
            self.cwriter = offset
            if new & 1:                      # Retry un-stalls, even while disabled
                self.stalled = False
            if self.enabled and not self.stalled:
                self.process()
        elif reg is R.GITS_BASER0:
            if not self.enabled:
                self.ref.write_baser0(reg.merge_write(self.ref.baser0, new))
        elif reg is R.GITS_BASER1:
            if not self.enabled:
                self.ref.write_baser1(reg.merge_write(self.ref.baser1, new) & ~_INDIRECT)

    def process(self) -> None:
        length = R.cbaser_queue_bytes(self.cbaser)
        if self.cwriter >= length:           # stale CWRITER after a smaller CBASER: not used
            return
        while self.creadr != self.cwriter and not self.stalled:
            addr = R.cbaser_address(self.cbaser) + self.creadr
            code = self.ref.execute_slot(addr)
            if code:
                opcode = None if code == C.E_ITS_CMD_READ_FAULT else self.ref.mem.read(addr, 1)[0]
                self.errors.append((self.creadr, opcode, code))
                if self.stall:
                    self.stalled = True
                    return
            self.creadr = (self.creadr + 32) % length

    def reset(self) -> None:
        self.ref.reset()
        self.cbaser = self.cwriter = self.creadr = 0
        self.stalled = False
        self.errors = []


WATCHED = [(GITS_CTLR, 4), (GITS_CBASER, 8), (GITS_CWRITER, 8), (GITS_CREADR, 8),
           (GITS_BASER0, 8), (GITS_BASER1, 8), (GITS_CBASER + 4, 4), (GITS_BASER0 + 4, 4)]

FUZZ_OFFSETS = sorted({0x0, 0x4, 0x8, 0xC, 0x10, 0x40, 0x80, 0x84, 0x88, 0x8C, 0x90, 0x94,
                       0x98, *range(0x100, 0x140, 4), 0x200, 0xC000, 0xFFD0, 0xFFE8, 0xFFFC,
                       0x10000, 0x10040, 0x10042, 0x10044, 0x1FFFC})
QUEUE_BASES = [QUEUE, 0x8000, MEM - 0x1000, MEM + 0x10000]

u64 = st.integers(0, 2**64 - 1)
fuzz_ops = weighted(
    (4, st.tuples(st.just("w"), st.one_of(st.sampled_from(FUZZ_OFFSETS),
                                          st.integers(0, 0x1FFFF)),
                  st.sampled_from([1, 2, 4, 8]), u64)),
    (2, st.tuples(st.just("r"), st.one_of(st.sampled_from(FUZZ_OFFSETS),
                                          st.integers(0, 0x1FFFF)),
                  st.sampled_from([1, 2, 4, 8]))),
    (2, st.tuples(st.just("cbaser"), st.sampled_from(QUEUE_BASES), st.integers(1, 3),
                  st.sampled_from([True, True, False]), st.booleans())),
    (2, st.tuples(st.just("baser"), st.sampled_from([0, 1]),
                  st.sampled_from([DT, CT, 0x50000, MEM - 0x1000, 0x80000]),
                  st.sampled_from([0, 1, 2, 3]), st.integers(1, 2), st.booleans(),
                  st.sampled_from([True, True, False]), st.booleans())),
    (3, st.tuples(st.just("cwriter"), st.integers(0, 400), st.booleans(), st.booleans())),
    (2, st.tuples(st.just("ctlr"), st.sampled_from([1, 1, 0, 0x8000_0001, 0xFFFF_FFFF]))),
    (8, st.tuples(st.just("packet"), st.one_of(packets, warm_packets, warm_packets))),
    (2, st.tuples(st.just("doorbell"), st.sampled_from([1, 2, 513, 1025, 3, 2048]), warm_evt,
                  st.sampled_from([2, 4, None]))),
    (1, st.tuples(st.just("lpis"), cpu, st.booleans())),
    (1, st.tuples(st.just("gicr"), cpu, st.sampled_from([GICR_PROPBASER, GICR_PENDBASER]),
                  st.sampled_from([11, 13, 14, 31]), st.booleans())),
    (1, st.tuples(st.just("reset"))),
    (2, st.tuples(st.just("retry"), st.booleans())),
    (1, st.tuples(st.just("bring_up"))),
)


def baser_fuzz_value(n, addr, page_size, pages, indirect, valid):
    return R.GITS_BASER_LAYOUT.encode(
        Valid=valid, Indirect=indirect, Type=(BaserType.DEVICES, BaserType.COLLECTIONS)[n],
        Entry_Size=7, Page_Size=page_size, Size=pages - 1,
        Physical_Address=(addr >> 12) & R.GITS_BASER_LAYOUT["Physical_Address"].max)


class FuzzDriver:
    def __init__(self, layout, indirect, seed, stall):
        self.mems = [GuestMemory(MEM), GuestMemory(MEM)]
        for mem in self.mems:
            fill_garbage(mem, seed)
        self.its = ITS(self.mems[0], num_cpus=NUM_CPUS, layout=layout, device_bits=DEVICE_BITS,
                       event_bits=EVENT_BITS, intid_bits=INTID_BITS, stall_on_error=stall)
        self.ref = ReferenceITS(self.mems[1], NUM_CPUS, device_bits=DEVICE_BITS,
                                event_bits=EVENT_BITS, intid_bits=INTID_BITS)
        self.model = FrontEndModel(self.ref, stall)
        self.setup = setup = setup_for(indirect)
        program_its(self.its, setup, mem=self.mems[0])
        program_its(self.model, setup, mem=self.mems[1])
        self.both(lambda m: m.mmio_write(GITS_CWRITER, 0, 8))
        for packet in WARM_UP[:12]:
            self.apply(("packet", packet))
        self.check()

    def both(self, action):
        return action(self.its), action(self.model)

    def both_refuse(self, action):
        """A host mistake: both raise ValueError (and change nothing)."""
        for machine in (self.its, self.model):
            with pytest.raises(ValueError):
                action(machine)

    def apply(self, op):
        kind = op[0]
        if kind == "w":
            _, offset, size, value = op
            access = R.lookup(offset, size)
            write = lambda m: m.mmio_write(offset, value % (1 << 8 * size), size)  # noqa: E731
            if access is not None and access.register is R.GITS_TRANSLATER:
                self.both_refuse(write)                  # a doorbell without a DeviceID
            else:
                self.both(write)
        elif kind == "r":
            access = R.lookup(op[1], op[2])
            if access is not None and access.register is R.GITS_TRANSLATER:
                return        # whether this read is an access error: see the scenario tests
            got, want = self.both(lambda m: m.mmio_read(op[1], op[2]))
            assert got == want, f"read {op[1]:#x}/{op[2]}"
        elif kind == "cbaser":
            _, addr, pages, valid, halves = op
            self.write64(GITS_CBASER, cbaser_value(addr, pages, valid), halves)
        elif kind == "baser":
            _, n, addr, page_size, pages, indirect, valid, halves = op
            self.write64(GITS_BASER0 + 8 * n,
                         baser_fuzz_value(n, addr, page_size, pages, indirect, valid), halves)
        elif kind == "cwriter":
            _, slot, retry, half = op
            value = slot * 32 | int(retry)
            if half:
                self.both(lambda m: m.mmio_write(GITS_CWRITER, value, 4))
            else:
                self.both(lambda m: m.mmio_write(GITS_CWRITER, value, 8))
        elif kind == "ctlr":
            self.both(lambda m: m.mmio_write(GITS_CTLR, op[1], 4))
        elif kind == "packet":
            self.place(op[1])
        elif kind == "doorbell":
            _, d, e, size = op
            if size is None:
                self.both_refuse(lambda m: m.mmio_write(GITS_TRANSLATER, e & 0xFFFF_FFFF, 4))
            else:
                value = e & ((1 << 8 * size) - 1)
                self.both(lambda m: m.mmio_write(GITS_TRANSLATER, value, size, device_id=d))
        elif kind == "lpis":
            self.both(lambda m: m.redistributors.mmio_write(op[1], GICR_CTLR, int(op[2]), 4))
        elif kind == "gicr":
            _, c, offset, idbits, ptz = op
            value = (propbaser_value(PROP, idbits) if offset == GICR_PROPBASER
                     else pendbaser_value(PEND + c * 0x10000, ptz))
            self.both(lambda m: m.redistributors.mmio_write(c, offset, value, 8))
        elif kind == "reset":
            self.both(lambda m: m.reset())
        elif kind == "retry":               # optionally replace the stalled command first
            model = self.model
            addr = R.cbaser_address(model.cbaser) + model.creadr
            if op[1] and model.stalled:
                for mem in self.mems:
                    if mem.contains(addr, 32):
                        mem.write(addr, C.sync(0))
            self.both(lambda m: m.mmio_write(GITS_CWRITER, model.cwriter | 1, 8))
        elif kind == "bring_up":            # a driver re-initialising the ITS
            self.both(lambda m: m.mmio_write(GITS_CTLR, 0, 4))
            for m, mem in zip((self.its, self.model), self.mems):
                program_its(m, self.setup, mem=mem, enable=False, enable_lpis=False)
            self.both(lambda m: m.mmio_write(GITS_CWRITER, 0, 8))
            self.both(lambda m: m.mmio_write(GITS_CTLR, 1, 4))
        else:
            raise AssertionError(op)

    def write64(self, offset, value, halves):
        if halves:
            self.both(lambda m: m.mmio_write(offset + 4, value >> 32, 4))
            self.both(lambda m: m.mmio_write(offset, value & 0xFFFF_FFFF, 4))
        else:
            self.both(lambda m: m.mmio_write(offset, value, 8))

    def place(self, packet):
        """The guest writes a command at CWRITER and advances CWRITER (if the queue has room)."""
        model = self.model
        length = R.cbaser_queue_bytes(model.cbaser)
        if model.cwriter >= length:
            return
        following = (model.cwriter + 32) % length
        if following == model.creadr:
            return                                   # full
        addr = R.cbaser_address(model.cbaser) + model.cwriter
        for mem in self.mems:
            if mem.contains(addr, 32):
                mem.write(addr, packet)
        self.both(lambda m: m.mmio_write(GITS_CWRITER, following, 8))

    def check(self):
        for offset, size in WATCHED:
            got, want = self.both(lambda m: m.mmio_read(offset, size))
            assert got == want, f"register {offset:#x}/{size}: its {got:#x} model {want:#x}"
        creadr = read64(self.its, GITS_CREADR)
        assert creadr & ~(_OFFSET | 1) == 0
        assert creadr & _OFFSET < R.cbaser_queue_bytes(read64(self.its, GITS_CBASER))
        assert len(self.its.access_errors) == self.model.access_errors
        got = [(e.offset, None if e.code == C.E_ITS_CMD_READ_FAULT else e.opcode, e.code)
               for e in self.its.errors]
        assert got == self.model.errors
        for c in range(NUM_CPUS):
            assert [self.its.redistributors.mmio_read(c, off, 8)
                    for off in (GICR_PROPBASER, GICR_PENDBASER)] == \
                [self.model.redistributors.mmio_read(c, off, 8)
                 for off in (GICR_PROPBASER, GICR_PENDBASER)]

    def final_check(self):
        self.check()
        assert translations(self.its) == translations(self.ref)
        for c in range(NUM_CPUS):
            assert [int(i) for i in self.its.pending(c)] == self.ref.pending(c), f"CPU {c}"
        assert np.array_equal(self.mems[0].array, self.mems[1].array), \
            first_difference(self.mems)
        for c in range(NUM_CPUS):
            assert drain(self.its, c) == drain(self.ref, c)


@pytest.mark.parametrize("stall", [False, True], ids=["skip", "stall"])
@CONFIGS
@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(seed=st.integers(0, 2**32 - 1), ops=st.lists(fuzz_ops, min_size=5, max_size=40))
def test_register_fuzz(config, stall, seed, ops):
    layout, indirect = config
    drv = FuzzDriver(layout, indirect, seed, stall)
    for op in ops:
        drv.apply(op)
        drv.check()
    drv.final_check()
