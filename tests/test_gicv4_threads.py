"""The thread contract of a GICv4 ITS (docs/threads.md), under real concurrency.

One GICv4 ITS on two CPUs: a command thread (VMOVI, INT, VMOVP, VSYNC), two
vCPU threads that make their vPE resident with GICR_VPENDBASER writes,
acknowledge its vLPIs with `acknowledge_virtual` and make it non-resident
again, and two device threads (`msi`, `msi_batch`) run at once.  Every
virtual event has its own vINTID and is fired at most once (by a device or by
an INT), so the independent expectation is a count: once every vPE is made
non-resident (its cache written back to its VPT), each vINTID that was
delivered is either acknowledged exactly once or pending in exactly one VPT
-- never lost, never duplicated -- and a vINTID never delivered is nowhere.
"""

from __future__ import annotations

import random
import sys
import threading
from collections import Counter

import numpy as np
import pytest

import its_core
from its_core import GuestMemory
from its_core.frontend import commands as C
from its_core.frontend import registers as R
from its_core.frontend.registers import BaserType, PageSize
from its_core.frontend.virtual import VirtualStatus

from front_end_helpers import (GITS_BASER0, GITS_BASER1, GITS_CBASER, GITS_CTLR, GITS_CWRITER,
                               baser_value, cbaser_value, pendbaser_value, propbaser_value)
from test_threads import _run_threads

NUM_CPUS = 2
INTID_BITS = 14
MEM = 0x100000
QUEUE, DT, CT, VT, VPE_CONF = 0x1000, 0x2000, 0x3000, 0x4000, 0x5000
ITT = 0x10000                       # device 5: 2**12 events x 8 bytes
PROP, PEND = 0x20000, 0x30000       # + cpu * 0x10000
VPTS = {3: 0x60000, 4: 0x70000, 5: 0x90000}   # vPE -> VPT (64 KiB aligned)
VCONF = 0x80000                     # vLPI configuration: every vLPI enabled, priority 0xA0
#: vPE -> the CPU whose vCPU thread schedules it; vPE 5 is never resident.  A vPE
#: is only moved (VMOVP) to the CPU that schedules it: VMOVP of a resident vPE to
#: another CPU leaves it "resident elsewhere" (C14), where the VPT and the old
#: CPU's cache may both hold a vLPI -- a guest error Linux avoids (C16), not a race.
HOME = {3: 0, 4: 1, 5: 0}
DOORBELL = {3: 8292, 4: 8293, 5: 8294}
DEVICE, EVENTS = 5, 1800            # vINTID of event e: 8192 + e
MSI_EVENTS = range(0, 1200)         # fired by the device threads (two halves)
INT_EVENTS = range(1200, 1500)      # fired by INT commands
QUIET_EVENTS = range(1500, EVENTS)  # never fired: must end nowhere

GICR_VPROPBASER = R.GICR_VPROPBASER_V40.offset
GICR_VPENDBASER = R.GICR_VPENDBASER_V40.offset
VPEND40, VPEND41 = R.GICR_VPENDBASER_V40_LAYOUT, R.GICR_VPENDBASER_V41_LAYOUT
VPROP40, VPROP41 = R.GICR_VPROPBASER_V40_LAYOUT, R.GICR_VPROPBASER_V41_LAYOUT


def _bring_up(version):
    memory = GuestMemory(MEM)
    memory.array[VCONF:VCONF + 0x2000] = 0xA1
    memory.array[PROP:PROP + 0x2000] = 0xA1
    its = its_core.ITS(memory, num_cpus=NUM_CPUS, device_bits=10, event_bits=12,
                       intid_bits=INTID_BITS, gic_version=version)
    rd = its.redistributors
    for cpu in range(NUM_CPUS):
        rd.mmio_write(cpu, R.GICR_PROPBASER.offset, propbaser_value(PROP, INTID_BITS - 1), 8)
        rd.mmio_write(cpu, R.GICR_PENDBASER.offset,
                      pendbaser_value(PEND + cpu * 0x10000, ptz=True), 8)
        rd.mmio_write(cpu, R.GICR_CTLR.offset, 1, 4)
    its.mmio_write(GITS_CBASER, cbaser_value(QUEUE), 8)
    its.mmio_write(GITS_CWRITER, 0, 8)
    its.mmio_write(GITS_BASER0, baser_value(BaserType.DEVICES, DT, page_size=PageSize.SIZE_4K), 8)
    its.mmio_write(GITS_BASER1, baser_value(BaserType.COLLECTIONS, CT,
                                            page_size=PageSize.SIZE_4K), 8)
    its.mmio_write(R.GITS_BASER2_VPES.offset,
                   baser_value(BaserType.VPES, VT, page_size=PageSize.SIZE_4K), 8)
    its.mmio_write(GITS_CTLR, 1, 4)
    setup = [C.mapd(DEVICE, ITT, 12)]
    for vpe_id, vpt in VPTS.items():
        setup.append(C.vmapp_v41(vpe_id, HOME[vpe_id], vpt, INTID_BITS - 1, VCONF,
                                 DOORBELL[vpe_id], alloc=True) if version == "4.1"
                     else C.vmapp(vpe_id, HOME[vpe_id], vpt, INTID_BITS - 1))
    setup += [C.vmapti(DEVICE, event, 3 + event % 3, 8192 + event,
                       C.NO_DOORBELL if version == "4.1" else DOORBELL[3 + event % 3])
              for event in range(EVENTS)]
    its.submit(*setup)
    assert len(its.errors) == 0
    return its


def _schedule_value(version, vpe_id):
    if version == "4.1":
        return VPEND41.encode(vPEID=vpe_id, Valid=1, PendingLast=1, vGrp1En=1)
    return VPEND40.encode(Physical_Address=VPTS[vpe_id] >> 16, Valid=1, PendingLast=1, IDAI=1)


def _deschedule(rd, version, cpu, doorbell=False):
    value = rd.mmio_read(cpu, GICR_VPENDBASER, 8) & ~VPEND40["Valid"].mask
    if version == "4.1":
        value = VPEND41["PendingLast"].deposit(VPEND41["Doorbell"].deposit(value, doorbell), 0)
    rd.mmio_write(cpu, GICR_VPENDBASER, value, 8)


@pytest.fixture
def fast_switching():
    """Switch threads every few microseconds, so that Python-level steps interleave."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(previous)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("version", ["4.0", "4.1"])
def test_gicv4_commands_residency_doorbells_and_acknowledges_lose_and_duplicate_nothing(
        version, seed, fast_switching):
    its = _bring_up(version)
    rd = its.redistributors
    prop_value = (VPROP41.encode(Valid=1, Physical_Address=VPE_CONF >> 12) if version == "4.1"
                  else VPROP40.encode(Physical_Address=VCONF >> 12, IDbits=INTID_BITS - 1))
    for cpu in range(NUM_CPUS):
        rd.mmio_write(cpu, GICR_VPROPBASER, prop_value, 8)
    fired = Counter()                         # vINTID -> deliveries reported as made
    acknowledged = [[] for _ in range(NUM_CPUS)]
    lock = threading.Lock()                   # for `fired` only
    done = threading.Event()

    def device(events, batch):
        rng = random.Random(seed * 7 + batch)
        events = list(events)
        rng.shuffle(events)
        while events:
            if batch:
                chunk, events = events[:16], events[16:]
                statuses = its.msi_batch(np.full(len(chunk), DEVICE, np.uint32),
                                         np.array(chunk, np.uint32))
                delivered = [8192 + e for e, s in zip(chunk, statuses.tolist())
                             if s == VirtualStatus.VIRTUAL]
            else:
                event = events.pop()
                delivered = [8192 + event] if its.msi(DEVICE, event) == VirtualStatus.VIRTUAL \
                    else []
            with lock:
                fired.update(delivered)

    def commands():
        rng = random.Random(seed + 11)
        to_int = list(INT_EVENTS)
        while not done.is_set() or to_int:
            packets = []
            for _ in range(rng.randint(1, 6)):
                choice = rng.random()
                if choice < 0.35 and to_int:
                    event = to_int.pop()
                    packets.append(C.int_(DEVICE, event))
                    with lock:
                        fired[8192 + event] += 1          # INT on a virtual ITE: delivered
                elif choice < 0.8:
                    vpe_id = rng.choice([3, 4, 5])
                    packets.append(C.vmovi(DEVICE, rng.randrange(EVENTS), vpe_id,
                                           C.NO_DOORBELL if version == "4.1"
                                           else DOORBELL[vpe_id], True))
                elif choice < 0.95:
                    vpe_id = rng.choice([3, 4, 5])
                    cpu = rng.randrange(NUM_CPUS) if vpe_id == 5 else HOME[vpe_id]
                    packets.append(C.vmovp_v41(vpe_id, cpu, DOORBELL[vpe_id])
                                   if version == "4.1" else C.vmovp(vpe_id, cpu))
                else:
                    packets.append(C.vsync(rng.choice([3, 4, 5])))
            its.submit(*packets)
        assert len(its.errors) == 0, its.errors[:4]

    def vcpu(cpu):
        vpe_id = 3 + cpu
        rng = random.Random(seed * 3 + cpu)
        rounds_after_done = 3               # so that some vLPIs are surely taken
        while rounds_after_done:
            rounds_after_done -= done.is_set()
            rd.mmio_write(cpu, GICR_VPENDBASER, _schedule_value(version, vpe_id), 8)
            for _ in range(rng.randint(0, 8) if rounds_after_done else 16):
                taken = rd.acknowledge_virtual(cpu)
                if taken is not None:
                    acknowledged[cpu].append(taken)
            _deschedule(rd, version, cpu, doorbell=rng.random() < 0.5)

    halves = (MSI_EVENTS[:len(MSI_EVENTS) // 2], MSI_EVENTS[len(MSI_EVENTS) // 2:])

    def devices_then_stop():
        _run_threads(lambda: device(halves[0], False), lambda: device(halves[1], True))
        done.set()

    _run_threads(devices_then_stop, commands, lambda: vcpu(0), lambda: vcpu(1))

    # Quiescent: every vPE non-resident, so every pending vLPI is in a VPT.
    for cpu in range(NUM_CPUS):
        assert not VPEND40["Valid"].extract(rd.mmio_read(cpu, GICR_VPENDBASER, 8))
    memory = its.memory.array
    in_vpts = Counter()
    for vpt in VPTS.values():
        bits = np.unpackbits(memory[vpt:vpt + (1 << INTID_BITS) // 8], bitorder="little")
        in_vpts.update((np.flatnonzero(bits)).tolist())
    taken = Counter(acknowledged[0] + acknowledged[1])
    assert sum(fired.values()) == len(MSI_EVENTS) + len(INT_EVENTS)   # nothing dropped
    assert max(fired.values()) == 1
    assert taken and in_vpts, "the run exercised neither acknowledges nor VPT write-back"
    for event in range(EVENTS):
        vintid = 8192 + event
        assert taken[vintid] + in_vpts[vintid] == fired[vintid], (
            f"vINTID {vintid}: fired {fired[vintid]}, acknowledged {taken[vintid]}, "
            f"pending in {in_vpts[vintid]} VPT(s)")
    assert set(in_vpts) <= {8192 + e for e in range(EVENTS)}


# -- a doorbell racing a command that changes its event -----------------------------------
# The translation (outside the redistributors' lock) said "virtual"; a command then
# ran before the delivery took the lock.  The delivery translates again, as if the
# doorbell came after the command.  Here the command runs first, deterministically,
# and the delivery step is called as the race would leave it.

def test_a_virtual_doorbell_whose_event_became_physical_is_delivered_as_physical():
    from its_core import TranslationStatus
    its = _bring_up("4.0")
    its.submit(C.mapc(0, 1), C.discard(DEVICE, 1600), C.mapti(DEVICE, 1600, 8300, 0),
               C.discard(DEVICE, 1601))
    assert len(its.errors) == 0
    assert its._deliver_virtual(DEVICE, 1600) == TranslationStatus.OK
    assert its.pending(1).tolist() == [8300]
    assert its._deliver_virtual(DEVICE, 1601) == TranslationStatus.NO_MAPPING
    statuses = np.full(3, int(TranslationStatus.VIRTUAL), np.uint8)
    cpus = np.full(3, -7, np.int32)
    assert its._deliver_changed(np.full(3, DEVICE, np.uint32),
                                np.array([1600, 1602, 1601], np.uint32), cpus, statuses) == 3
    # 1602 is still virtual: vPE 3 (1602 % 3 == 0), not resident, VPT bit set
    assert statuses.tolist() == [int(TranslationStatus.OK), int(VirtualStatus.VIRTUAL),
                                 int(TranslationStatus.NO_MAPPING)]
    assert cpus.tolist() == [1, HOME[3], -1]
    vintid = 8192 + 1602
    assert its.memory.array[VPTS[3] + vintid // 8] >> (vintid % 8) & 1


class _CommandBeforeLock:
    """Stands in for the redistributors' lock: the first time it is taken,
    `command` runs first, as another thread's command would between a
    batch's translation and its taking the lock."""

    def __init__(self, lock, command):
        self.lock, self.command = lock, command

    def __enter__(self):
        command, self.command = self.command, None
        if command is not None:
            command()
        return self.lock.__enter__()

    def __exit__(self, *exc):
        return self.lock.__exit__(*exc)


def test_msi_batch_after_a_command_between_translation_and_lock():
    """msi_batch's native path trusts the ITE words of its translation only if
    no write section opened since; here one did (a DISCARD, a physical MAPTI
    over the same event, a VMOVI), so each virtual pair is delivered as `msi`
    would deliver it after the command."""
    from its_core import TranslationStatus
    its = _bring_up("4.0")
    rd = its.redistributors
    its.submit(C.mapc(0, 1))
    rd._lock = _CommandBeforeLock(rd._lock, lambda: its.submit(
        C.discard(DEVICE, 1600), C.mapti(DEVICE, 1600, 8300, 0), C.discard(DEVICE, 1601),
        C.vmovi(DEVICE, 1603, 4, DOORBELL[4], 1)))
    statuses = its.msi_batch(np.full(4, DEVICE), [1600, 1601, 1602, 1603])
    assert len(its.errors) == 0
    assert statuses.tolist() == [int(TranslationStatus.OK), int(TranslationStatus.NO_MAPPING),
                                 int(VirtualStatus.VIRTUAL), int(VirtualStatus.VIRTUAL)]
    assert its.pending(1).tolist() == sorted([8300, DOORBELL[4]])  # 1603 rings vPE 4's now
    assert its.pending(0).tolist() == [DOORBELL[3]]                # 1602: vPE 3 on CPU 0
    for vpe_id, vintid in ((3, 8192 + 1602), (4, 8192 + 1603)):
        assert its.memory.array[VPTS[vpe_id] + vintid // 8] >> (vintid % 8) & 1
    assert not its.memory.array[VPTS[4] + (8192 + 1600) // 8] >> ((8192 + 1600) % 8) & 1
