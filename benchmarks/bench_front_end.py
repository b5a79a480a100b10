"""Front-end throughput: command processing, doorbells, MMIO.

Groups: ``cmdq-mapti`` (bulk: 30 000 MAPTI commands processed by one CWRITER
write), ``msi-batch`` (doorbells in one call, with the bare translation of
the same pairs beside it), ``msi-batch-gicv4`` (the same on a GICv4.0 ITS,
physical LPIs beside vLPIs), ``msi-signalled-gicv4`` (scalar `msi` with
`on_signal` set, with and without a vPE resident on the target CPU), ``doorbell-scalar`` (one `msi` call or one
GITS_TRANSLATER `mmio_write` per doorbell), ``guest-driven`` (commands issued
one at a time as a driver does, and single GITS / GICR register reads,
beside an empty Python call).
"""

import numpy as np
import pytest

from its_core import ITS, GuestMemory, TranslationStatus
from its_core.frontend import commands, registers
from its_core.testing import GuestMap, bring_up
from its_core.frontend.virtual import VirtualStatus
from its_core.tools import bench
from its_core.tools.workloads import WORKLOADS, access, mappings

MAPTI_COMMANDS = 30_000
DOORBELLS = 1_000_000
SCALAR_CALLS = 20_000
WORKLOAD = WORKLOADS["dense-1k"]
GUEST = GuestMap(queue_pages=256)          # a 1 MiB queue: 32 768 commands


def _its(layout):
    its = ITS(GuestMemory(64 << 20), num_cpus=WORKLOAD.num_cpus, layout=layout,
              device_bits=16, event_bits=16, intid_bits=16)
    bring_up(its, GUEST)
    return its


def _mapped_its(layout):
    """An ITS holding WORKLOAD, mapped through commands."""
    its = _its(layout)
    device_ids, event_ids, intids, icids = mappings(WORKLOAD)
    its.submit(*[commands.mapc(icid, icid % WORKLOAD.num_cpus)
                 for icid in range(WORKLOAD.num_collections)])
    its.submit(*[commands.mapd(int(d), GUEST.itt_address(int(d)), WORKLOAD.event_bits)
                 for d in np.unique(device_ids)])
    its.submit(*[commands.mapti(int(d), int(e), int(i), int(c))
                 for d, e, i, c in zip(device_ids, event_ids, intids, icids)])
    assert len(its.errors) == 0
    return its


@pytest.mark.parametrize("layout", ["flat", "twolevel", "hash"])
def test_cmdq_mapti(benchmark, layout):
    """30 000 MAPTI commands already in the queue, processed by one CWRITER write."""
    packets = b"".join(commands.mapti(index // 32, index % 32, 8192 + index, index % 16)
                       for index in range(MAPTI_COMMANDS))

    def setup():
        its = _its(layout)
        its.submit(*[commands.mapc(icid, icid % 4) for icid in range(16)])
        its.submit(*[commands.mapd(device, GUEST.itt_address(device), 5)
                     for device in range(MAPTI_COMMANDS // 32 + 1)])
        start = its.mmio_read(registers.GITS_CWRITER.offset, 8)
        its.memory.write(GUEST.queue + start, packets)
        end = (start + len(packets)) % (GUEST.queue_pages * 4096)
        return (its, end), {}

    def run(its, end):
        its.mmio_write(registers.GITS_CWRITER.offset, end, 8)
        return its

    benchmark.group = "cmdq-mapti"
    benchmark.extra_info["commands"] = MAPTI_COMMANDS
    its = benchmark.pedantic(run, setup=setup, rounds=5, iterations=1)
    assert len(its.errors) == 0 and its.tables.num_events == MAPTI_COMMANDS
    assert its.translate(MAPTI_COMMANDS // 32 - 1, 31)[0] == 8192 + MAPTI_COMMANDS // 32 * 32 - 1


@pytest.fixture(scope="module")
def mapped():
    return {layout: _mapped_its(layout) for layout in ("flat", "twolevel", "hash")}


@pytest.mark.parametrize("layout", ["flat", "twolevel", "hash"])
def test_msi_batch(benchmark, mapped, layout):
    its = mapped[layout]
    device_ids, event_ids = access(WORKLOAD, "random", DOORBELLS)
    benchmark.group = "msi-batch"
    benchmark.extra_info["doorbells"] = DOORBELLS
    statuses = benchmark(its.msi_batch, device_ids, event_ids, threads=1)
    assert (statuses == TranslationStatus.OK).all()
    intids, cpus, _ = its.translate_batch(device_ids[:100], event_ids[:100])
    for intid, cpu in zip(intids.tolist(), cpus.tolist()):
        assert intid in its.pending(cpu)


def test_translate_batch_same_pairs(benchmark, mapped):
    """The lookup alone, on the pairs of test_msi_batch (flat)."""
    device_ids, event_ids = access(WORKLOAD, "random", DOORBELLS)
    benchmark.group = "msi-batch"
    _, _, statuses = benchmark(mapped["flat"].translate_batch, device_ids, event_ids,
                               threads=1)
    assert (statuses == TranslationStatus.OK).all()


@pytest.fixture(scope="module")
def gicv4():
    """GICv4.0 ITSs holding WORKLOAD physically and as vLPIs (`bench.run_virtual`'s setup)."""
    physical, mapti = bench._its_with_devices(WORKLOAD, "flat", 0, "4.0", bench.VIRTUAL_AREA)
    physical.submit_many(mapti)
    memory_bytes, _ = bench.guest_for(WORKLOAD)
    return {"physical": physical, "virtual": bench._virtual_its(WORKLOAD, "flat", 0),
            "virtual_vpt": memory_bytes + bench.VPE_TABLE_BYTES}


@pytest.mark.parametrize("mapping", ["physical", "virtual"])
def test_msi_batch_gicv4(benchmark, gicv4, mapping):
    """msi_batch of test_msi_batch's pairs on a GICv4.0 ITS: the events mapped
    as physical LPIs, or as vLPIs of non-resident vPEs (VPT bit + doorbell)."""
    its = gicv4[mapping]
    device_ids, event_ids = access(WORKLOAD, "random", DOORBELLS)
    benchmark.group = "msi-batch-gicv4"
    benchmark.extra_info["doorbells"] = DOORBELLS
    statuses = benchmark(its.msi_batch, device_ids, event_ids, threads=1)
    expected = TranslationStatus.OK if mapping == "physical" else VirtualStatus.VIRTUAL
    assert (statuses == int(expected)).all()


@pytest.mark.parametrize("resident", [False, True])
def test_msi_scalar_signalled_gicv4(benchmark, gicv4, resident):
    """`msi` of one physical event of CPU 0 on the GICv4.0 ITS with `on_signal`
    set, without and with a vPE resident on CPU 0 (64K-bit cache): signalling
    rescans a resident cache only when that CPU's virtual state changed."""
    its = gicv4["physical"]
    rd = its.redistributors
    intids, cpus, statuses = its.tables.translate_batch(*access(WORKLOAD, "random", 1000))
    device_ids, event_ids = access(WORKLOAD, "random", 1000)
    pick = int(np.flatnonzero((cpus == 0) & (statuses == 0))[0])
    device_id, event_id = int(device_ids[pick]), int(event_ids[pick])
    vpend = registers.GICR_VPENDBASER_V40
    if resident:
        vpt = gicv4["virtual_vpt"]
        its.submit(commands.vmapp(0, 0, vpt, WORKLOAD.intid_bits - 1))
        rd.mmio_write(0, vpend.offset, registers.GICR_VPENDBASER_V40_LAYOUT.encode(
            Physical_Address=vpt >> 16, Valid=1), 8)
    rd.on_signal = lambda cpu: None
    benchmark.group = "msi-signalled-gicv4"
    benchmark.extra_info["calls"] = SCALAR_CALLS

    def calls():
        for _ in range(SCALAR_CALLS):
            its.msi(device_id, event_id)
    try:
        benchmark(calls)
    finally:
        rd.on_signal = None
        if resident:
            rd.mmio_write(0, vpend.offset, 0, 8)
    assert its.msi(device_id, event_id) == TranslationStatus.OK


def _doorbells(ring, pairs):
    for device_id, event_id in pairs:
        ring(device_id, event_id)


def test_msi_scalar(benchmark, mapped):
    its = mapped["flat"]
    device_ids, event_ids = access(WORKLOAD, "random", SCALAR_CALLS)
    pairs = list(zip(device_ids.tolist(), event_ids.tolist()))
    benchmark.group = "doorbell-scalar"
    benchmark(_doorbells, its.msi, pairs)
    assert its.msi(*pairs[0]) == TranslationStatus.OK


def test_translater_mmio_write(benchmark, mapped):
    its = mapped["flat"]
    device_ids, event_ids = access(WORKLOAD, "random", SCALAR_CALLS)
    pairs = list(zip(device_ids.tolist(), event_ids.tolist()))
    offset = registers.GITS_TRANSLATER.offset

    def ring(device_id, event_id):
        its.mmio_write(offset, event_id, 4, device_id=device_id)

    benchmark.group = "doorbell-scalar"
    benchmark(_doorbells, ring, pairs)
    intid, cpu = its.translate(*pairs[-1])
    assert intid in its.pending(cpu)


# -- guest-driven ---------------------------------------------------------------------------

DRIVER_COMMANDS = 1000


@pytest.mark.parametrize("layout", ["flat", "twolevel", "hash"])
def test_driver_style_commands(benchmark, layout):
    """1000 commands, each written into the queue, CWRITER written, CREADR polled."""
    its, guest = bench._driven_its(layout)
    benchmark.group = "guest-driven"
    benchmark.extra_info["commands"] = DRIVER_COMMANDS
    benchmark(bench.driver_loop, its, guest, DRIVER_COMMANDS)
    assert len(its.errors) == 0
    assert its.mmio_read(registers.GITS_CREADR.offset, 8) == \
        its.mmio_read(registers.GITS_CWRITER.offset, 8)


def test_gits_register_read(benchmark):
    its, _ = bench._driven_its("flat")
    benchmark.group = "guest-driven"
    value = benchmark(its.mmio_read, registers.GITS_CREADR.offset, 8)
    assert value == its.register("GITS_CREADR")


def test_gicr_register_read(benchmark):
    its, _ = bench._driven_its("flat")
    benchmark.group = "guest-driven"
    value = benchmark(its.redistributors.mmio_read, 1, registers.GICR_PROPBASER.offset, 8)
    assert value == its.redistributors.mmio_read(0, registers.GICR_PROPBASER.offset, 8) != 0


def _empty(offset, size):
    return None


def test_empty_python_call(benchmark):
    """The floor under every single-access figure of this group."""
    benchmark.group = "guest-driven"
    assert benchmark(_empty, registers.GITS_CREADR.offset, 8) is None


# -- the CPU side: highest_pending and acknowledge -------------------------------------------

PENDING_LPIS = 10_000


def _cpu_side(intid_bits):
    """Redistributors of one CPU with 10 000 LPIs pending at random INTIDs, each
    enabled at a random priority, and the ``(intid, priority)`` that
    highest_pending must return (found here by brute force)."""
    from its_core import Redistributors

    memory = GuestMemory(128 << 20)
    rd = Redistributors(memory, 1, intid_bits)
    guest = GuestMap(config_table=0x100_0000, pending_tables=0x200_0000, itt_base=0x400_0000)
    bring_up(ITS(memory, 1, "flat", intid_bits=intid_bits, redistributors=rd), guest,
             intid_bits=intid_bits)
    rng = np.random.default_rng(0)
    intids = rng.choice(np.arange(8192, 1 << intid_bits), PENDING_LPIS, replace=False)
    configs = (rng.integers(0, 64, PENDING_LPIS) << 2 | 1).astype(np.uint8)
    memory.array[guest.config_table - memory.base + intids - 8192] = configs
    rd.mmio_write(0, registers.GICR_INVALLR.offset, 0, 8)
    for intid in intids.tolist():
        rd.mmio_write(0, registers.GICR_SETLPIR.offset, intid, 8)
    best = min(zip((configs & 0xFC).tolist(), intids.tolist()))
    assert len(rd.pending(0)) == PENDING_LPIS
    return rd, (best[1], best[0])


@pytest.fixture(scope="module")
def cpu_side():
    return {intid_bits: _cpu_side(intid_bits) for intid_bits in (16, 24)}


@pytest.mark.parametrize("intid_bits", [16, 24])
def test_highest_pending(benchmark, cpu_side, intid_bits):
    """rd.highest_pending(0) with 10 000 LPIs pending at random priorities."""
    rd, best = cpu_side[intid_bits]
    benchmark.group = "highest-pending"
    benchmark.extra_info["pending"] = PENDING_LPIS
    assert benchmark(rd.highest_pending, 0) == best


@pytest.mark.parametrize("intid_bits", [16, 24])
def test_acknowledge_highest(benchmark, cpu_side, intid_bits):
    """rd.acknowledge(0) followed by lpi_state.set_lpi of the LPI it took, so that
    10 000 stay pending: each call takes the best LPI (unfiling it from the
    priority index) and makes it pending again (filing it back)."""
    rd, best = cpu_side[intid_bits]
    lpi = rd.lpi_state

    def acknowledge_and_repend():
        intid = rd.acknowledge(0)
        lpi.set_lpi(0, intid)
        return intid

    benchmark.group = "highest-pending"
    benchmark.extra_info["pending"] = PENDING_LPIS
    assert benchmark(acknowledge_and_repend) == best[0]
    assert rd.highest_pending(0) == best and len(rd.pending(0)) == PENDING_LPIS
