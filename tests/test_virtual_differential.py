"""Differential tests for GICv4 virtual ITEs: TranslationTables against ReferenceTables.

A hypothesis state machine mixes physical and virtual maps, moves (MOVI and
VMOVI), unmaps (DISCARD, MAPD remap and unmap), vPE maps and unmaps, valid and
invalid arguments, on all three layouts, and checks after every step that the
two models hold the same state, translate every probe pair alike (scalar and
batch, with the vPEIDs) and that the canonical arrays round-trip.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, invariant, precondition, rule,
                                 run_state_machine_as_test)

from its_core import TranslationTables
from its_core.core.reference import ReferenceTables

from test_differential import outcome, translate_outcome

NUM_COLLECTIONS = 8
NUM_CPUS = 4
INTID_BITS = 16
EVENT_POOL = [0, 1, 2, 31, 32, 33, 63, 64, 200, 4095, 4096, 5000, 65535]
BAD_IDS = [-1, 2**32, 2**63 - 1, -(2**63), 2**64]
VPE_POOL = [0, 1, 2, 3, 65535]
BAD_VPE_IDS = [-1, 65536, 2**32, 2**40]
DOORBELLS = [1023, 8192, 8193, 2**INTID_BITS - 1]
BAD_DOORBELLS = [0, 1022, 1024, 8191, 2**INTID_BITS, -1, 2**33]

CONFIGS = {
    "flat": dict(layout="flat", device_bits=8, pool=[0, 1, 2, 5, 255, 256]),
    "twolevel": dict(layout="twolevel", device_bits=20, pool=[0, 1, 1023, 1024, 2**20 - 1]),
    "hash": dict(layout="hash", device_bits=32, pool=[0, 1, 63, 64, 2**31, 2**32 - 1]),
}

MACHINE_SETTINGS = settings(max_examples=25, stateful_step_count=40, deadline=None,
                            database=None,
                            suppress_health_check=[HealthCheck.too_slow,
                                                   HealthCheck.filter_too_much,
                                                   HealthCheck.data_too_large])


def make_machine(name: str):
    config = CONFIGS[name]
    layout, device_bits, pool = config["layout"], config["device_bits"], config["pool"]
    kwargs = dict(device_bits=device_bits, event_bits=16, intid_bits=INTID_BITS,
                  num_collections=NUM_COLLECTIONS, num_cpus=NUM_CPUS)
    valid_devices = st.sampled_from([d for d in pool if d < 2**device_bits])
    device_ids = st.one_of(st.sampled_from(pool), st.sampled_from(BAD_IDS))
    event_ids = st.one_of(st.sampled_from(EVENT_POOL), st.sampled_from(BAD_IDS))
    intids = st.one_of(st.integers(8192, 2**INTID_BITS - 1),
                       st.sampled_from([0, 8191, 2**INTID_BITS, -1]))
    icids = st.one_of(st.integers(0, NUM_COLLECTIONS - 1), st.sampled_from([-1, 8, 65536]))
    cpus = st.one_of(st.integers(0, NUM_CPUS - 1), st.sampled_from([-1, NUM_CPUS]))
    vpe_ids = st.one_of(st.sampled_from(VPE_POOL), st.sampled_from(BAD_VPE_IDS))
    doorbells = st.one_of(st.sampled_from(DOORBELLS), st.integers(8192, 9000),
                          st.sampled_from(BAD_DOORBELLS))

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

        def mapped_pairs(self):
            return sorted(self.ref.events) + sorted(self.ref.virtual_events)

        def draw_mapped_event(self, data):
            device_id = data.draw(st.sampled_from(sorted(self.ref.devices)))
            limit = 2**self.ref.devices[device_id][0]
            event_id = data.draw(st.one_of(st.integers(0, limit - 1),
                                           st.sampled_from([e for e in EVENT_POOL if e < limit])))
            return device_id, event_id

        @rule(device_id=valid_devices, event_bits=st.sampled_from([1, 5, 6, 8, 13, 16]))
        def map_device(self, device_id, event_bits):
            self.both("map_device", device_id, event_bits, 0)

        @rule(device_id=device_ids)
        def unmap_device(self, device_id):
            self.both("unmap_device", device_id)

        @precondition(lambda self: self.ref.devices)
        @rule(data=st.data(), intid=intids, icid=icids)
        def map_event(self, data, intid, icid):
            self.both("map_event", *self.draw_mapped_event(data), intid, icid)

        @precondition(lambda self: self.ref.devices)
        @rule(data=st.data(), vintid=intids, vpe_id=vpe_ids, doorbell=doorbells)
        def map_virtual_event(self, data, vintid, vpe_id, doorbell):
            self.both("map_virtual_event", *self.draw_mapped_event(data), vintid, vpe_id,
                      doorbell)

        @rule(device_id=device_ids, event_id=event_ids, vintid=intids, vpe_id=vpe_ids,
              doorbell=doorbells)
        def map_virtual_event_anywhere(self, device_id, event_id, vintid, vpe_id, doorbell):
            self.both("map_virtual_event", device_id, event_id, vintid, vpe_id, doorbell)

        @precondition(lambda self: self.ref.devices)
        @rule(data=st.data(), count=st.integers(1, 150), first=st.sampled_from([0, 30, 4000]),
              stride=st.sampled_from([1, 2, 97]), virtual_every=st.sampled_from([1, 2, 3]))
        def map_mixed_run(self, data, count, first, stride, virtual_every):
            """A run of EventIDs, some physical, some virtual (slab growth, the
            move to the sparse map with virtual ITEs in the slab)."""
            device_id = data.draw(st.sampled_from(sorted(self.ref.devices)))
            limit = 2**self.ref.devices[device_id][0]
            for index in range(count):
                event_id = first + index * stride
                if event_id >= limit:
                    break
                if index % virtual_every == 0:
                    self.both("map_virtual_event", device_id, event_id, 8192 + index,
                              index % 4, 1023 if index % 2 else 8192 + index)
                else:
                    self.both("map_event", device_id, event_id, 9000 + index,
                              index % NUM_COLLECTIONS)

        @rule(data=st.data(), rows=st.integers(0, 30))
        def map_virtual_events_bulk(self, data, rows):
            mapped = sorted(self.ref.devices) or [0]
            uint32 = st.integers(0, 2**32 - 1)
            columns = [[], [], [], [], []]
            for _ in range(rows):
                device_id = data.draw(st.one_of(st.sampled_from(mapped), uint32))
                columns[0].append(device_id)
                columns[1].append(data.draw(st.one_of(st.sampled_from(EVENT_POOL), uint32)))
                columns[2].append(data.draw(st.one_of(st.integers(8192, 2**INTID_BITS - 1),
                                                      st.sampled_from([0, 2**32 - 1]))))
                columns[3].append(data.draw(st.one_of(st.sampled_from(VPE_POOL),
                                                      st.sampled_from([65536, 2**32 - 1]))))
                columns[4].append(data.draw(st.one_of(st.sampled_from(DOORBELLS),
                                                      st.sampled_from([0, 1024, 2**32 - 1]))))
            arrays = [np.array(column, np.int64) for column in columns]
            expected = self.ref.map_virtual_events(*arrays)
            actual = self.dut.map_virtual_events(*arrays)
            assert actual.dtype == np.uint8
            assert actual.tolist() == expected.tolist()

        @precondition(lambda self: self.ref.events or self.ref.virtual_events)
        @rule(data=st.data(), vpe_id=vpe_ids, doorbell=st.one_of(st.none(), doorbells),
              icid=icids)
        def move_mapped(self, data, vpe_id, doorbell, icid):
            device_id, event_id = data.draw(st.sampled_from(self.mapped_pairs()))
            self.both("move_virtual_event", device_id, event_id, vpe_id, doorbell)
            self.both("move_event", device_id, event_id, icid)

        @rule(device_id=device_ids, event_id=event_ids, vpe_id=vpe_ids, doorbell=doorbells)
        def move_virtual_anywhere(self, device_id, event_id, vpe_id, doorbell):
            self.both("move_virtual_event", device_id, event_id, vpe_id, doorbell)

        @precondition(lambda self: self.ref.events or self.ref.virtual_events)
        @rule(data=st.data())
        def unmap_mapped(self, data):
            self.both("unmap_event", *data.draw(st.sampled_from(self.mapped_pairs())))

        @rule(device_id=device_ids, event_id=event_ids)
        def unmap_anywhere(self, device_id, event_id):
            self.both("unmap_event", device_id, event_id)

        @rule(vpe_id=vpe_ids, cpu=cpus)
        def map_vpe(self, vpe_id, cpu):
            self.both("map_vpe", vpe_id, cpu)

        @rule(vpe_id=vpe_ids)
        def unmap_vpe(self, vpe_id):
            self.both("unmap_vpe", vpe_id)
            self.both("vpe_cpu", vpe_id)

        @rule(icid=st.integers(0, NUM_COLLECTIONS - 1), cpu=cpus)
        def map_collection(self, icid, cpu):
            self.both("map_collection", icid, cpu)

        @rule()
        def reset(self):
            self.ref.reset()
            self.dut.reset()

        @invariant()
        def same_state(self):
            assert self.dut.num_events == self.ref.num_events
            assert self.dut.num_virtual_events == self.ref.num_virtual_events
            assert self.dut.snapshot() == self.ref.snapshot()

        @invariant()
        def same_translations(self):
            pairs = set(self.mapped_pairs())
            for device_id in list(self.ref.devices)[:4]:
                pairs.update((device_id, e) for e in EVENT_POOL[:6])
            pairs.update((d, 1) for d in pool)
            pairs = sorted(pairs)
            for device_id, event_id in pairs:
                assert (translate_outcome(self.dut, device_id, event_id)
                        == translate_outcome(self.ref, device_id, event_id))
                assert (self.dut.virtual_event(device_id, event_id)
                        == self.ref.virtual_event(device_id, event_id))
                assert (self.dut.lookup_event(device_id, event_id)
                        == self.ref.lookup_event(device_id, event_id))
            device_ids = np.array([p[0] for p in pairs], np.uint32)
            event_ids = np.array([p[1] for p in pairs], np.uint32)
            got = self.dut.translate_batch(device_ids, event_ids, with_vpe_ids=True)
            want = self.ref.translate_batch(device_ids, event_ids, with_vpe_ids=True)
            for got_array, want_array in zip(got, want):
                np.testing.assert_array_equal(got_array, want_array)
            three = self.dut.translate_batch(device_ids, event_ids)
            assert len(three) == 3
            for got_array, want_array in zip(three, want):
                np.testing.assert_array_equal(got_array, want_array)

        @invariant()
        def arrays_round_trip(self):
            arrays = self.dut.to_arrays()
            other = "hash" if layout != "hash" else "twolevel"
            copy = TranslationTables.from_arrays(arrays, other, **kwargs)
            assert copy.snapshot() == self.ref.snapshot()
            assert copy.num_virtual_events == self.ref.num_virtual_events

    Machine.__name__ = f"VirtualMachine_{name}"
    return Machine


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_virtual_and_physical_mix_against_reference(name):
    run_state_machine_as_test(make_machine(name), settings=MACHINE_SETTINGS)
