"""Differential tests: TranslationTables against the pure-Python ReferenceTables.

A hypothesis state machine applies the same random operations -- valid and
invalid ones -- to both models and checks after every step that their states
and their translations agree.  ID pools are small and full of boundary values
(slab sizes, page and bucket collisions, the ends of the 32-bit range) so that
the interesting storage paths (slab growth, pool compaction, the sparse map,
page reuse, backward-shift deletion) are hit within a few steps.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition,
                                 rule, run_state_machine_as_test)

from conftest import colliding_ids
from its_core import MappingError, TranslationError, TranslationStatus, TranslationTables
from its_core.core.reference import ReferenceTables

NUM_COLLECTIONS = 8
NUM_CPUS = 4
TABLE_EVENT_BITS = 16

# Event IDs around the slab sizes (32, 64, ...), the dense limit (4096 slots)
# and the ends of the ITT sizes the machine maps devices with.
EVENT_POOL = sorted({0, 1, 2, 5, 30, 31, 32, 33, 63, 64, 65, 127, 128, 255, 256, 1000,
                     2047, 2048, 4095, 4096, 4097, 5000, 8191, 8192, 12345, 32767, 32768,
                     65534, 65535})
BAD_EVENT_IDS = [-1, -(2**40), 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**64, -(2**63)]
EVENT_BITS_CHOICES = [1, 2, 4, 5, 6, 7, 8, 12, 13, 14, 16]
BAD_EVENT_BITS = [0, -1, TABLE_EVENT_BITS + 1, 32, 33, 2**40]

# Wide-ID configurations draw DeviceIDs from interesting values: both ends of
# the 32-bit space, page boundaries of the two-level layout (1024 devices per
# page) and IDs that share a home bucket in a 64-bucket hash directory.
_WIDE_DEVICE_POOL = sorted({0, 1, 2, 1023, 1024, 1025, 2047, 2048, 3 << 10, 65535, 65536,
                            2**20, 2**20 + 1, 2**31 - 1, 2**31, 2**32 - 1025, 2**32 - 1024,
                            2**32 - 2, 2**32 - 1,
                            *colliding_ids([0, 1, 63], per_slot=3)})
_NARROW_DEVICE_POOL = list(range(0, 66))        # device_bits = 6: 64 valid IDs, 64/65 invalid
BAD_DEVICE_IDS = [-1, -(2**32), 2**32, 2**32 + 1, 2**33, 2**63 - 1, 2**64, -(2**63)]

CONFIGS = {
    "flat6": dict(layout="flat", device_bits=6, intid_bits=16, pool=_NARROW_DEVICE_POOL),
    "twolevel32": dict(layout="twolevel", device_bits=32, intid_bits=32,
                       pool=_WIDE_DEVICE_POOL),
    "hash32": dict(layout="hash", device_bits=32, intid_bits=32, pool=_WIDE_DEVICE_POOL),
    "twolevel12": dict(layout="twolevel", device_bits=12, intid_bits=16,
                       pool=sorted({0, 1, 1023, 1024, 2047, 3072, 4095, 4096, 4097, 65536})),
    "hash11": dict(layout="hash", device_bits=11, intid_bits=20,
                   pool=sorted({0, 1, 2047, 2048, 4096,
                                *colliding_ids([5, 6], per_slot=4, bits=11)})),
}

MACHINE_SETTINGS = settings(max_examples=25, stateful_step_count=40, deadline=None,
                            database=None,
                            suppress_health_check=[HealthCheck.too_slow,
                                                   HealthCheck.filter_too_much,
                                                   HealthCheck.data_too_large])


def outcome(call, *args):
    """What one call did: ("ok", value), ("raised", "MappingError", reason,
    operation) or ("raised", exception type name)."""
    try:
        value = call(*args)
    except MappingError as error:
        return ("raised", "MappingError", error.reason, error.operation)
    except (ValueError, TypeError, OverflowError) as error:
        return ("raised", type(error).__name__)
    return ("ok", value)


def translate_outcome(tables, device_id, event_id):
    try:
        return ("ok", tables.translate(device_id, event_id))
    except TranslationError as error:
        assert error.device_id == device_id and error.event_id == event_id
        return ("status", TranslationStatus(error.status))
    except ValueError:
        return ("ValueError",)


def make_machine(name: str):
    config = CONFIGS[name]
    layout = config["layout"]
    device_bits = config["device_bits"]
    intid_bits = config["intid_bits"]
    device_pool = config["pool"]
    kwargs = dict(device_bits=device_bits, event_bits=TABLE_EVENT_BITS, intid_bits=intid_bits,
                  num_collections=NUM_COLLECTIONS, num_cpus=NUM_CPUS)

    valid_device_ids = st.sampled_from([d for d in device_pool if 0 <= d < 2**device_bits])
    device_ids = st.one_of(st.sampled_from(device_pool), st.sampled_from(device_pool),
                           st.sampled_from(BAD_DEVICE_IDS))
    event_ids = st.one_of(st.sampled_from(EVENT_POOL), st.integers(0, 70),
                          st.sampled_from(BAD_EVENT_IDS))
    intid_limit = 2**intid_bits
    intids = st.one_of(st.integers(8192, intid_limit - 1),
                       st.sampled_from([8192, 8193, intid_limit - 1]),
                       st.sampled_from([0, 1, 8191, intid_limit, -1, 2**64]))
    icids = st.one_of(st.integers(0, NUM_COLLECTIONS - 1),
                      st.sampled_from([-1, NUM_COLLECTIONS, 65535, 65536, 2**63 - 1]))
    cpus = st.one_of(st.integers(0, NUM_CPUS - 1), st.sampled_from([-1, NUM_CPUS, 2**31]))
    itt_addrs = st.sampled_from([0, 0x1000, 0xFFFF_0000, 2**64 - 1, 2**63])

    # Fixed probe pairs: a spread of pool DeviceIDs against boundary EventIDs
    # (mapped pairs and the ends of every mapped ITT are added at each step).
    probe_devices = sorted({device_pool[0], device_pool[1], device_pool[-1], device_pool[-2],
                            *device_pool[2::max(1, len(device_pool) // 8)], 2**32 - 1,
                            2**device_bits - 1, min(2**device_bits, 2**32 - 1)})
    probe_events = [0, 1, 31, 32, 64, 4095, 4096, 5000, 8192, 65535, 65536, 2**32 - 1]
    fixed_probes = [(d, e) for d in probe_devices for e in probe_events]

    class Machine(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.ref = ReferenceTables(layout, **kwargs)
            self.dut = TranslationTables(layout, **kwargs)

        def both(self, name, *args):
            expected = outcome(getattr(self.ref, name), *args)
            actual = outcome(getattr(self.dut, name), *args)
            assert actual == expected, f"{name}{args}: core {actual}, reference {expected}"
            return expected

        # -- helpers drawing from the current state ----------------------------

        def mapped_devices(self):
            return sorted(self.ref.devices)

        def draw_valid_event(self, data, device_id):
            bits = self.ref.devices[device_id][0]
            limit = 2**bits
            return data.draw(st.one_of(
                st.integers(0, limit - 1),
                st.sampled_from([e for e in EVENT_POOL if e < limit] + [limit - 1])))

        # -- rules ---------------------------------------------------------------

        @initialize(icid_cpu=st.lists(st.tuples(st.integers(0, NUM_COLLECTIONS - 1),
                                                st.integers(0, NUM_CPUS - 1)), max_size=6),
                    devices=st.lists(st.tuples(valid_device_ids,
                                               st.sampled_from(EVENT_BITS_CHOICES)),
                                     max_size=6))
        def start(self, icid_cpu, devices):
            for icid, cpu in icid_cpu:
                self.both("map_collection", icid, cpu)
            for device_id, event_bits in devices:
                self.both("map_device", device_id, event_bits, 0)

        @rule(device_id=device_ids,
              event_bits=st.one_of(st.sampled_from(EVENT_BITS_CHOICES),
                                   st.sampled_from(BAD_EVENT_BITS)),
              itt_addr=itt_addrs)
        def map_device(self, device_id, event_bits, itt_addr):
            self.both("map_device", device_id, event_bits, itt_addr)

        @rule(device_id=valid_device_ids, event_bits=st.sampled_from(EVENT_BITS_CHOICES),
              itt_addr=itt_addrs)
        def map_valid_device(self, device_id, event_bits, itt_addr):
            assert self.both("map_device", device_id, event_bits, itt_addr) == ("ok", None)

        @rule(base=valid_device_ids, count=st.integers(1, 48),
              stride=st.sampled_from([1, 3, 1024, 1025, 0x9E3779B1]),
              event_bits=st.sampled_from(EVENT_BITS_CHOICES))
        def map_device_block(self, base, count, stride, event_bits):
            """Many devices at once (grows the hash directory, allocates pages)."""
            for index in range(count):
                device_id = (base + index * stride) % (2**device_bits)
                self.both("map_device", device_id, event_bits, index)
                self.both("map_event", device_id, 0, 8192 + index, index % NUM_COLLECTIONS)
                self.both("map_event", device_id, 2**event_bits - 1, 9000 + index, 1)

        @precondition(lambda self: self.ref.devices)
        @rule(data=st.data(), fraction=st.sampled_from([0.3, 0.6, 1.0]))
        def unmap_device_block(self, data, fraction):
            """Unmap many devices in a random order (backward-shift deletion, page reuse)."""
            devices = data.draw(st.permutations(self.mapped_devices()))
            for device_id in devices[:max(1, int(len(devices) * fraction))]:
                assert self.both("unmap_device", device_id) == ("ok", True)

        @precondition(lambda self: self.ref.devices)
        @rule(data=st.data(), rounds=st.integers(1, 4), count=st.integers(20, 140))
        def churn_device(self, data, rounds, count):
            """Remap a device and refill it, again and again (pool garbage, compaction)."""
            device_id = data.draw(st.sampled_from(self.mapped_devices()))
            for round_ in range(rounds):
                bits = data.draw(st.sampled_from([7, 8, 12, 14, 16]))
                self.both("map_device", device_id, bits, round_)
                for event_id in range(count):
                    self.both("map_event", device_id, event_id, 8192 + event_id,
                              event_id % NUM_COLLECTIONS)

        @rule(itt_addr=st.sampled_from([-1, 2**64]), device_id=device_ids)
        def map_device_bad_itt(self, itt_addr, device_id):
            result = self.both("map_device", device_id, 4, itt_addr)
            assert result == ("raised", "ValueError")

        @rule(device_id=device_ids)
        def unmap_device(self, device_id):
            self.both("unmap_device", device_id)

        @precondition(lambda self: self.ref.devices)
        @rule(data=st.data())
        def unmap_mapped_device(self, data):
            device_id = data.draw(st.sampled_from(self.mapped_devices()))
            assert self.both("unmap_device", device_id) == ("ok", True)

        @rule(device_id=device_ids, event_id=event_ids, intid=intids, icid=icids)
        def map_event(self, device_id, event_id, intid, icid):
            self.both("map_event", device_id, event_id, intid, icid)

        @precondition(lambda self: self.ref.devices)
        @rule(data=st.data(), intid=intids, icid=icids)
        def map_event_on_mapped(self, data, intid, icid):
            device_id = data.draw(st.sampled_from(self.mapped_devices()))
            event_id = self.draw_valid_event(data, device_id)
            self.both("map_event", device_id, event_id, intid, icid)

        @precondition(lambda self: self.ref.devices)
        @rule(data=st.data(), count=st.integers(1, 120), icid=st.integers(0, NUM_COLLECTIONS - 1))
        def map_event_run(self, data, count, icid):
            """Map a run of EventIDs (grows slabs, fills the sparse map)."""
            device_id = data.draw(st.sampled_from(self.mapped_devices()))
            limit = 2**self.ref.devices[device_id][0]
            first = data.draw(st.sampled_from([0, 1, 30, 60, 4000, 5000, 30000]))
            stride = data.draw(st.sampled_from([1, 1, 2, 7, 97]))
            for index in range(count):
                event_id = first + index * stride
                if event_id >= limit:
                    break
                self.both("map_event", device_id, event_id, 8192 + (event_id % 5000), icid)

        @rule(data=st.data(), rows=st.integers(0, 40))
        def map_events_bulk(self, data, rows):
            """The bulk map_events against the reference's row-by-row version."""
            uint32 = st.integers(0, 2**32 - 1)
            mapped = self.mapped_devices() or [0]
            device_column, event_column, intid_column, icid_column = [], [], [], []
            for _ in range(rows):
                device_id = data.draw(st.one_of(st.sampled_from(mapped),
                                                valid_device_ids, uint32))
                if device_id in self.ref.devices and data.draw(st.booleans()):
                    event_id = self.draw_valid_event(data, device_id)
                else:
                    event_id = data.draw(st.one_of(st.sampled_from(EVENT_POOL), uint32))
                device_column.append(device_id)
                event_column.append(event_id)
                intid_column.append(data.draw(st.one_of(
                    st.integers(8192, intid_limit - 1), st.sampled_from([0, 8191, 2**32 - 1]))))
                icid_column.append(data.draw(st.one_of(
                    st.integers(0, NUM_COLLECTIONS - 1), st.sampled_from([NUM_COLLECTIONS,
                                                                          2**32 - 1]))))
            columns = [np.array(column, np.int64) for column in
                       (device_column, event_column, intid_column, icid_column)]
            expected = self.ref.map_events(*columns)
            actual = self.dut.map_events(*columns)
            assert actual.dtype == np.uint8
            assert actual.tolist() == expected.tolist()

        @rule(device_id=device_ids, event_id=event_ids)
        def unmap_event(self, device_id, event_id):
            self.both("unmap_event", device_id, event_id)

        @precondition(lambda self: self.ref.events)
        @rule(data=st.data())
        def unmap_mapped_event(self, data):
            device_id, event_id = data.draw(st.sampled_from(sorted(self.ref.events)))
            self.both("unmap_event", device_id, event_id)

        @precondition(lambda self: self.ref.events)
        @rule(data=st.data(), fraction=st.sampled_from([0.25, 0.5, 1.0]))
        def unmap_many_events(self, data, fraction):
            keys = sorted(self.ref.events)
            doomed = data.draw(st.permutations(keys))[:max(1, int(len(keys) * fraction))]
            for device_id, event_id in doomed:
                self.both("unmap_event", device_id, event_id)

        @rule(device_id=device_ids, event_id=event_ids, icid=icids)
        def move_event(self, device_id, event_id, icid):
            self.both("move_event", device_id, event_id, icid)

        @precondition(lambda self: self.ref.events)
        @rule(data=st.data(), icid=icids)
        def move_mapped_event(self, data, icid):
            device_id, event_id = data.draw(st.sampled_from(sorted(self.ref.events)))
            self.both("move_event", device_id, event_id, icid)

        @rule(icid=icids, cpu=cpus)
        def map_collection(self, icid, cpu):
            self.both("map_collection", icid, cpu)

        @rule(icid=icids)
        def unmap_collection(self, icid):
            self.both("unmap_collection", icid)

        @rule()
        def reset(self):
            self.ref.reset()
            self.dut.reset()

        @rule(device_id=device_ids, event_id=event_ids)
        def queries(self, device_id, event_id):
            self.both("lookup_device", device_id)
            self.both("lookup_event", device_id, event_id)

        @rule(icid=icids)
        def query_collection(self, icid):
            self.both("collection_cpu", icid)

        # -- invariants --------------------------------------------------------------

        @invariant()
        def same_state(self):
            assert self.dut.num_devices == self.ref.num_devices
            assert self.dut.num_events == self.ref.num_events
            assert self.dut.snapshot() == self.ref.snapshot()
            assert self.dut.device_ids().tolist() == sorted(self.ref.devices)
            for device_id in self.ref.devices:
                event_ids, intids, icids = self.dut.events_of(device_id)
                expected = sorted((e, v) for (d, e), v in self.ref.events.items()
                                  if d == device_id)
                assert event_ids.tolist() == [e for e, _ in expected]
                assert list(zip(intids.tolist(), icids.tolist())) == [v for _, v in expected]

        @invariant()
        def same_intids_per_cpu(self):
            for cpu in range(NUM_CPUS):
                expected = sorted(intid for intid, icid in self.ref.events.values()
                                  if self.ref.collections.get(icid) == cpu)
                assert sorted(self.dut.intids_targeting(cpu).tolist()) == expected

        @invariant()
        def same_translations(self):
            probes = list(fixed_probes)
            probes += list(self.ref.events)
            for device_id, (bits, _) in self.ref.devices.items():
                probes += [(device_id, 2**bits - 1), (device_id, 2**bits)]
            probes = [(d, e) for d, e in probes if 0 <= d < 2**32 and 0 <= e < 2**32]
            device_array = np.array([d for d, _ in probes], np.int64)
            event_array = np.array([e for _, e in probes], np.int64)
            expected = self.ref.translate_batch(device_array, event_array)
            actual = self.dut.translate_batch(device_array, event_array)
            for got, want in zip(actual, expected):
                assert got.dtype == want.dtype
                np.testing.assert_array_equal(got, want)
            for device_id, event_id in probes:
                assert (translate_outcome(self.dut, device_id, event_id)
                        == translate_outcome(self.ref, device_id, event_id))

    Machine.__name__ = f"ITSMachine_{name}"
    Machine.__qualname__ = Machine.__name__
    return Machine


_MACHINES = {name: make_machine(name) for name in CONFIGS}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_state_machine(name):
    run_state_machine_as_test(_MACHINES[name], settings=MACHINE_SETTINGS)


# ---------------------------------------------------------------------------
# Random batches against the reference's translate_batch


def _populate(data, layout, device_bits):
    kwargs = dict(device_bits=device_bits, event_bits=TABLE_EVENT_BITS, intid_bits=20,
                  num_collections=NUM_COLLECTIONS, num_cpus=NUM_CPUS)
    ref = ReferenceTables(layout, **kwargs)
    dut = TranslationTables(layout, **kwargs)
    device_space = st.integers(0, 2**device_bits - 1)
    for icid in data.draw(st.sets(st.integers(0, NUM_COLLECTIONS - 1), max_size=NUM_COLLECTIONS)):
        cpu = data.draw(st.integers(0, NUM_CPUS - 1))
        ref.map_collection(icid, cpu)
        dut.map_collection(icid, cpu)
    devices = data.draw(st.lists(st.tuples(device_space, st.sampled_from(EVENT_BITS_CHOICES)),
                                 max_size=12, unique_by=lambda pair: pair[0]))
    for device_id, bits in devices:
        ref.map_device(device_id, bits)
        dut.map_device(device_id, bits)
        events = data.draw(st.sets(st.one_of(st.integers(0, 2**bits - 1),
                                             st.sampled_from([e for e in EVENT_POOL
                                                              if e < 2**bits])),
                                   max_size=40))
        for event_id in sorted(events):
            intid = data.draw(st.integers(8192, 2**20 - 1))
            icid = data.draw(st.integers(0, NUM_COLLECTIONS - 1))
            ref.map_event(device_id, event_id, intid, icid)
            dut.map_event(device_id, event_id, intid, icid)
    return ref, dut, [d for d, _ in devices]


@pytest.mark.parametrize("layout,device_bits", [("flat", 8), ("twolevel", 32), ("hash", 32),
                                                ("hash", 5)])
@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_random_batches(layout, device_bits, data):
    ref, dut, mapped = _populate(data, layout, device_bits)
    assert dut.snapshot() == ref.snapshot()
    mapped_keys = list(ref.events)
    device_values = st.one_of(st.integers(0, 2**32 - 1),
                              st.integers(0, 2**device_bits + 2).map(lambda v: min(v, 2**32 - 1)),
                              st.sampled_from(mapped or [0]))
    event_values = st.one_of(st.integers(0, 2**32 - 1), st.sampled_from(EVENT_POOL))
    pairs = data.draw(st.lists(st.one_of(st.tuples(device_values, event_values),
                                         st.sampled_from(mapped_keys or [(0, 0)])),
                               max_size=200))
    device_ids = np.array([d for d, _ in pairs], np.int64)
    event_ids = np.array([e for _, e in pairs], np.int64)
    expected = ref.translate_batch(device_ids, event_ids)
    actual = dut.translate_batch(device_ids, event_ids)
    for got, want in zip(actual, expected):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    # The same pairs as uint32, written into a caller-provided triple.
    length = len(pairs)
    out = (np.full(length, 7, np.uint32), np.full(length, 7, np.int32),
           np.full(length, 7, np.uint8))
    returned = dut.translate_batch(device_ids.astype(np.uint32), event_ids.astype(np.uint32),
                                   out=out)
    assert all(a is b for a, b in zip(returned, out))
    for got, want in zip(out, expected):
        np.testing.assert_array_equal(got, want)
