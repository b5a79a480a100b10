"""Redistributors.on_signal: a CPU is signalled exactly when its highest-priority
enabled pending LPI changes, once per operation, after the operation.

The independent expectation is a brute-force reading of the rule over the
pending sets the model reports and the configuration bytes the test wrote:
the best LPI is the enabled one with the lowest priority value (config & 0xFC),
ties to the lowest INTID.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from its_core import ITS, GuestMap, GuestMemory, Redistributors, bring_up, commands as C
from its_core import registers as R

NUM_CPUS = 3
GUEST = GuestMap()
SETLPIR, CLRLPIR = R.GICR_SETLPIR.offset, R.GICR_CLRLPIR.offset
#: Config bytes: LPI 8192 + n has priority 0x10 * (n % 8) and is enabled unless n % 5 == 4.
CONFIG = {8192 + n: (0x10 * (n % 8)) | (0 if n % 5 == 4 else 1) | 2 for n in range(64)}


def machine(on_signal=None):
    """An ITS on its redistributors; device 1 has events n -> LPI 8192 + n on
    collection n % NUM_CPUS (collection c -> CPU c)."""
    memory = GuestMemory(64 << 20)
    rd = Redistributors(memory, NUM_CPUS)
    its = ITS(memory, NUM_CPUS, "hash", redistributors=rd)
    bring_up(its, GUEST)
    for intid, config in CONFIG.items():
        memory.write(GUEST.config_table + intid - 8192, bytes([config]))
    its.submit(*[C.mapc(cpu, cpu) for cpu in range(NUM_CPUS)], C.mapd(1, GUEST.itt_address(0), 6),
               *[C.mapti(1, n, 8192 + n, n % NUM_CPUS) for n in range(64)])
    rd.on_signal = on_signal
    return memory, rd, its


def best(rd, cpu):
    """The rule, by brute force over what the model reports as pending."""
    enabled = [(CONFIG[intid] & 0xFC, intid) for intid in rd.pending(cpu).tolist()
               if CONFIG.get(intid, 0) & 1]
    return min(enabled)[1] if enabled else None


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, cpu):
        self.calls.append(cpu)

    def take(self):
        calls, self.calls = self.calls, []
        return calls


def test_on_signal_must_be_callable():
    memory, rd, its = machine()
    with pytest.raises(TypeError, match="on_signal"):
        rd.on_signal = 42
    with pytest.raises(TypeError, match="on_signal"):
        Redistributors(memory, 1, on_signal="not callable")
    assert rd.on_signal is None


def test_a_doorbell_signals_its_cpu_only_when_the_best_lpi_changes():
    recorder = Recorder()
    memory, rd, its = machine(recorder)
    its.msi(1, 5)                     # LPI 8197, priority 0x50, CPU 2: none -> 8197
    assert recorder.take() == [2]
    its.msi(1, 5)                     # already pending: no change
    its.msi(1, 8)                     # LPI 8200, priority 0x00 ... on CPU 2 (8 % 3)
    assert recorder.take() == [2]
    its.msi(1, 2)                     # LPI 8194, priority 0x20, CPU 2: not better
    assert recorder.take() == []
    its.mmio_write(R.GITS_TRANSLATER.offset, 4, 4, device_id=1)   # LPI 8196 disabled
    assert recorder.take() == []


def test_one_signal_per_cpu_per_cwriter_write():
    recorder = Recorder()
    memory, rd, its = machine(recorder)
    its.submit(C.int_(1, 0), C.int_(1, 3), C.int_(1, 6), C.int_(1, 1), C.sync(0))
    assert sorted(recorder.take()) == [0, 1]
    assert best(rd, 0) == 8192 and best(rd, 1) == 8193


def test_acknowledge_gicr_writes_and_batches_signal():
    recorder = Recorder()
    memory, rd, its = machine(recorder)
    statuses = its.msi_batch(np.full(4, 1, np.uint32), np.array([0, 3, 1, 2], np.uint32))
    assert (statuses == 0).all() and sorted(recorder.take()) == [0, 1, 2]
    assert its.acknowledge(0) == 8192 and recorder.take() == [0]      # 8192 -> 8195
    assert its.acknowledge(0) == 8195 and recorder.take() == [0]      # 8195 -> none
    assert its.acknowledge(0) is None and recorder.take() == []
    rd.mmio_write(0, SETLPIR, 8200, 8)
    assert recorder.take() == [0]
    rd.mmio_write(1, R.GICR_CTLR.offset, 0, 4)                        # pending state dropped
    assert recorder.take() == [1]
    rd.mmio_write(1, R.GICR_CTLR.offset, 0, 4)
    assert recorder.take() == []


def test_restore_signals_once_at_the_end():
    memory, rd, its = machine()
    its.msi(1, 0), its.msi(1, 4), its.msi(1, 5)
    state = its.save()
    recorder = Recorder()
    copy = GuestMemory(np.array(memory.array))
    rd2 = Redistributors(copy, NUM_CPUS, on_signal=recorder)
    ITS(copy, NUM_CPUS, "flat", redistributors=rd2).restore(state)
    assert sorted(recorder.take()) == [0, 2]          # CPU 1 holds only a disabled LPI
    assert [rd2.pending(cpu).tolist() for cpu in range(NUM_CPUS)] == \
        [rd.pending(cpu).tolist() for cpu in range(NUM_CPUS)]


def test_an_exception_from_the_callback_propagates_and_state_stays_consistent():
    calls = []

    def fails(cpu):
        calls.append(cpu)
        raise RuntimeError("simulator bug")

    memory, rd, its = machine(fails)
    with pytest.raises(RuntimeError, match="simulator bug"):
        its.msi_batch(np.full(2, 1, np.uint32), np.array([0, 1], np.uint32))
    assert rd.pending(0).tolist() == [8192] and rd.pending(1).tolist() == [8193]
    assert calls == [0]                                # CPU 1 was not signalled yet ...
    rd.on_signal = recorder = Recorder()
    rd.mmio_read(0, R.GICR_CTLR.offset, 4)
    its.mmio_write(R.GITS_BASER2.offset, 0, 8)         # ... any later operation does it
    assert recorder.take() == [1]


def test_signals_are_never_reentrant():
    events = []
    memory, rd, its = machine()

    def take_everything(cpu):
        events.append(("enter", cpu))
        while its.acknowledge(cpu) is not None:
            pass
        events.append(("leave", cpu))

    rd.on_signal = take_everything
    its.msi(1, 0)
    # The callback's own acknowledge changed CPU 0 again (8192 -> none): that
    # change is signalled after it returned, never inside it.
    assert events == [("enter", 0), ("leave", 0), ("enter", 0), ("leave", 0)]
    assert rd.pending(0).tolist() == []


OPERATIONS = st.lists(st.one_of(
    st.tuples(st.just("msi"), st.integers(0, 63)),
    st.tuples(st.just("set"), st.integers(0, NUM_CPUS - 1), st.integers(8192, 8192 + 63)),
    st.tuples(st.just("clear"), st.integers(0, NUM_CPUS - 1), st.integers(8192, 8192 + 63)),
    st.tuples(st.just("ack"), st.integers(0, NUM_CPUS - 1)),
    st.tuples(st.just("commands"), st.lists(st.integers(0, 63), min_size=1, max_size=6)),
    st.tuples(st.just("batch"), st.lists(st.integers(0, 63), min_size=1, max_size=8)),
    st.tuples(st.just("movall"), st.integers(0, NUM_CPUS - 1), st.integers(0, NUM_CPUS - 1)),
), max_size=25)


@settings(max_examples=60, deadline=None)
@given(operations=OPERATIONS)
def test_signalled_exactly_once_per_change_against_the_rule(operations):
    recorder = Recorder()
    memory, rd, its = machine(recorder)
    before = [best(rd, cpu) for cpu in range(NUM_CPUS)]
    for operation in operations:
        kind = operation[0]
        if kind == "msi":
            its.msi(1, operation[1])
        elif kind == "set":
            rd.mmio_write(operation[1], SETLPIR, operation[2], 8)
        elif kind == "clear":
            rd.mmio_write(operation[1], CLRLPIR, operation[2], 8)
        elif kind == "ack":
            its.acknowledge(operation[1])
        elif kind == "commands":
            its.submit(*[C.int_(1, event) for event in operation[1]])
        elif kind == "batch":
            events = np.array(operation[1], np.uint32)
            its.msi_batch(np.ones_like(events), events)
        else:
            its.submit(C.movall(operation[1], operation[2]))
        after = [best(rd, cpu) for cpu in range(NUM_CPUS)]
        changed = sorted(cpu for cpu in range(NUM_CPUS) if after[cpu] != before[cpu])
        assert sorted(recorder.take()) == changed, operation
        before = after
