"""The thread contract (docs/threads.md), under real concurrency.

Batches run their loops without the GIL on one thread while another maps and
unmaps enough to grow and compact the ITE pool and rehash the hash directory.
The independent expectations: pairs the writer never touches translate
exactly as a `ReferenceTables` built from the same mappings says, and a pair
the writer toggles reads either "unmapped" or its one possible mapping, never
anything else (a torn record would give another INTID or an error status the
pair cannot have).  On the debug build (bounds checks on) an index into a
freed or resized array fails the test instead of reading stale memory.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from its_core import ITS, GuestMap, GuestMemory, Redistributors, TranslationTables, bring_up
from its_core import commands as C
from its_core import registers as R
from its_core.core._core import TranslationStatus as S
from its_core.reference import ReferenceTables

LAYOUTS = ("flat", "twolevel", "hash")


def _run_threads(*targets, timeout=120.0):
    """Run each target in its own thread; re-raise the first failure."""
    failures = []

    def guarded(target):
        try:
            target()
        except BaseException as error:          # noqa: BLE001 - reported below
            failures.append(error)

    threads = [threading.Thread(target=guarded, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
        assert not thread.is_alive(), "a thread did not finish: deadlock?"
    if failures:
        raise failures[0]


def _volatile_intid(device_id, event_id):
    """The one LPI a writer-toggled pair is ever mapped to."""
    return 8192 + (device_id * 131 + event_id) % 40000


@pytest.mark.parametrize("layout", LAYOUTS)
def test_batches_see_whole_mappings_while_the_pool_grows_and_compacts(layout):
    tables = TranslationTables(layout, device_bits=16, event_bits=12, num_cpus=4)
    reference = ReferenceTables(device_bits=16, event_bits=12, num_cpus=4)
    rng = np.random.default_rng(7)
    for icid in range(8):
        tables.map_collection(icid, icid % 4)
        reference.map_collection(icid, icid % 4)
    tables.map_collection(9, 1)                  # the writer's collection
    # Stable devices 0..63: never touched by the writer.
    for device_id in range(64):
        tables.map_device(device_id, 6)
        reference.map_device(device_id, 6)
        for event_id in rng.choice(64, 40, replace=False).tolist():
            intid, icid = int(rng.integers(8192, 60000)), int(rng.integers(0, 8))
            tables.map_event(device_id, event_id, intid, icid)
            reference.map_event(device_id, event_id, intid, icid)
    stable_devices = rng.integers(0, 64, 200_000).astype(np.uint32)
    stable_events = rng.integers(0, 64, 200_000).astype(np.uint32)
    expected = reference.translate_batch(stable_devices, stable_events)
    # Volatile devices 1000..: the writer maps and unmaps them.
    volatile_devices = rng.integers(1000, 1400, 100_000).astype(np.uint32)
    volatile_events = rng.integers(0, 512, 100_000).astype(np.uint32)
    possible = np.array([_volatile_intid(d, e) for d, e in
                         zip(volatile_devices.tolist(), volatile_events.tolist())], np.uint32)
    devices = np.concatenate([stable_devices, volatile_devices])
    events = np.concatenate([stable_events, volatile_events])
    done = threading.Event()
    rounds = []

    def reader():
        split = 0
        while not (done.is_set() and rounds):          # at least one batch, however late
            split = 1 + split % 2                     # one part, then two (translate_batch threads=)
            intids, cpus, statuses = tables.translate_batch(devices, events, threads=split)
            stable = slice(0, stable_devices.size)
            for got, want in zip((intids[stable], cpus[stable], statuses[stable]), expected):
                np.testing.assert_array_equal(got, want)
            volatile = slice(stable_devices.size, None)
            ok = statuses[volatile] == S.OK
            assert set(np.unique(statuses[volatile]).tolist()) <= {
                S.OK, S.NO_DEVICE, S.NO_MAPPING, S.EVENT_OUT_OF_RANGE}
            np.testing.assert_array_equal(intids[volatile][ok], possible[ok])
            np.testing.assert_array_equal(cpus[volatile][ok], 1)
            rounds.append(1)

    def writer():
        try:
            for round_number in range(12):
                # Grow: map devices with slabs that double several times (the
                # pool grows and, with the holes below, compacts); the hash
                # directory rehashes as devices come and go.
                for device_id in range(1000, 1400):
                    tables.map_device(device_id, 9)
                    for event_id in range(0, 512, 1 + (device_id + round_number) % 7):
                        tables.map_event(device_id, event_id,
                                         _volatile_intid(device_id, event_id), 9)
                for device_id in range(1000 + round_number % 2, 1400, 2):
                    tables.unmap_device(device_id)
                tables.map_collection(9, 1)
            for device_id in range(1000, 1400):
                tables.unmap_device(device_id)
        finally:
            done.set()

    _run_threads(reader, reader, writer)
    assert rounds, "no batch ran"
    # The writer's unmaps left exactly the stable state.
    for got, want in zip(tables.translate_batch(stable_devices, stable_events), expected):
        np.testing.assert_array_equal(got, want)
    assert tables.guard.pinned == 0


def _machine(num_cpus=2, layout="hash"):
    memory = GuestMemory(64 << 20)
    its = ITS(memory, num_cpus, layout)
    guest = bring_up(its, GuestMap())
    return memory, its, guest


def test_commands_and_doorbells_from_several_threads():
    """Two threads submit commands for their own devices while two others ring
    doorbells for a stable device: nothing is lost, no command fails."""
    memory, its, guest = _machine()
    its.submit(C.mapc(0, 0), C.mapc(1, 1), C.mapd(1, guest.itt_address(0), 8),
               *[C.mapti(1, event_id, 8192 + event_id, event_id % 2) for event_id in range(200)])
    stable_events = np.arange(200, dtype=np.uint32)

    def submitter(first_device):
        def run():
            for device_id in range(first_device, first_device + 40):
                itt = guest.itt_address(device_id)
                its.submit(C.mapd(device_id, itt, 5),
                           *[C.mapti(device_id, event_id, 9000 + device_id * 32 + event_id, 1)
                             for event_id in range(32)])
        return run

    def ringer():
        for _ in range(200):
            statuses = its.msi_batch(np.full(200, 1, np.uint32), stable_events)
            assert (statuses == S.OK).all()
            for event_id in range(0, 200, 37):
                assert its.msi(1, event_id) == S.OK

    _run_threads(submitter(10), submitter(60), ringer, ringer)
    assert len(its.errors) == 0
    for device_id in list(range(10, 50)) + list(range(60, 100)):
        for event_id in (0, 31):
            assert its.translate(device_id, event_id) == (9000 + device_id * 32 + event_id, 1)
    pending = set(its.pending(0).tolist()) | set(its.pending(1).tolist())
    assert pending == set(range(8192, 8392))


def test_concurrent_msi_batches_lose_no_pending_bit():
    """Each thread delivers its own LPIs, many sharing a byte of the pending
    bitmap with the other thread's: every one ends up pending."""
    memory, its, guest = _machine(num_cpus=1)
    its.submit(C.mapc(0, 0), C.mapd(1, guest.itt_address(0), 12),
               *[C.mapti(1, event_id, 8192 + event_id, 0) for event_id in range(4096)])
    even = np.arange(0, 4096, 2, dtype=np.uint32)
    odd = np.arange(1, 4096, 2, dtype=np.uint32)

    def deliver(events):
        def run():
            for _ in range(50):
                assert (its.msi_batch(np.ones(events.size, np.uint32), events) == S.OK).all()
                for intid in (8192 + events[:64]).tolist():
                    its.redistributors.mmio_write(0, R.GICR_CLRLPIR.offset, intid, 8)
        return run

    _run_threads(deliver(even), deliver(odd))
    its.msi_batch(np.ones(4096, np.uint32), np.arange(4096, dtype=np.uint32))
    np.testing.assert_array_equal(its.pending(0), np.arange(8192, 8192 + 4096))


def test_signals_from_several_threads_never_overlap_and_end_current():
    """Doorbells and acknowledges on two threads: the callback never runs on two
    threads at once, and once they are done every CPU's last signal matches
    its current highest-priority LPI."""
    memory = GuestMemory(64 << 20)
    inside = threading.Lock()
    seen = {}
    rd = Redistributors(memory, 2)
    its = ITS(memory, 2, "flat", redistributors=rd)
    guest = bring_up(its, GuestMap())
    its.submit(C.mapc(0, 0), C.mapc(1, 1), C.mapd(1, guest.itt_address(0), 8),
               *[C.mapti(1, event_id, 8192 + event_id, event_id % 2) for event_id in range(256)])

    def on_signal(cpu):
        assert inside.acquire(blocking=False), "callbacks overlap"
        try:
            seen[cpu] = rd.highest_pending(cpu)
        finally:
            inside.release()

    rd.on_signal = on_signal

    def ring(offset):
        def run():
            rng = np.random.default_rng(offset)
            for _ in range(300):
                its.msi_batch(np.ones(16, np.uint32),
                              rng.integers(0, 256, 16).astype(np.uint32))
                its.msi(1, int(rng.integers(0, 256)))
                rd.acknowledge(int(rng.integers(0, 2)))
        return run

    _run_threads(ring(1), ring(2))
    rd.signal_changes()
    for cpu in range(2):
        assert seen.get(cpu) == rd.highest_pending(cpu)


def _submit_in_one_write(its, packets):
    """Submit `packets` with one CWRITER write (padding the queue to its wrap
    point with SYNCs first when they would not fit before it)."""
    slots = R.cbaser_queue_bytes(its.register("GITS_CBASER")) // 32
    cwriter = its.register("GITS_CWRITER") // 32
    if slots - cwriter < len(packets):
        its.submit(*[C.sync(0)] * (slots - cwriter))
    its.submit(*packets)


def test_composite_reads_see_one_command_batch():
    """`TranslationTables.snapshot` (a composite read in the write section) on
    one thread while another remaps devices one CWRITER write per device:
    every device is seen either fully before or fully after its remap."""
    memory, its, guest = _machine()
    its.submit(C.mapc(0, 0), C.mapc(1, 1))
    for device_id in range(20):
        its.submit(C.mapd(device_id, guest.itt_address(device_id), 5),
                   *[C.mapti(device_id, event_id, 8192 + event_id, 0) for event_id in range(32)])
    states = []
    done, saving = threading.Event(), threading.Event()

    def remapper():
        try:
            assert saving.wait(60), "the saver never started"
            for round_number in range(1, 30):
                for device_id in range(20):
                    _submit_in_one_write(its, [
                        C.mapd(device_id, guest.itt_address(device_id), 5),
                        *[C.mapti(device_id, event_id, 8192 + 32 * round_number + event_id,
                                  round_number % 2) for event_id in range(32)]])
        finally:
            done.set()

    def saver():
        while True:                       # at least one snapshot while the remaps run
            states.append(its.tables.snapshot())
            saving.set()
            if done.wait(0.005):              # leave the remapper room between snapshots
                break

    _run_threads(remapper, saver)
    assert len(states) >= 2
    for state in states:
        for device_id in range(20):
            rows = [state["events"].get((device_id, event_id)) for event_id in range(32)]
            assert None not in rows, "a device seen half remapped"
            base = rows[0][0] - 8192
            assert rows == [(8192 + base + event_id, rows[0][1]) for event_id in range(32)]
