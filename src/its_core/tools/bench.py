"""Measurements behind ``its-core bench``: translation throughput per layout,
then command-queue, save and restore throughput.

Each measurement is the best of `repeat` timed runs (the least disturbed
one), over the same seeded pairs for every layout, the bare-loop ceiling and
the pure-Python reference model, so the rows of one workload compare directly.
The ratios to those same-run baselines (`relative_rates`, and save or restore
over a numpy copy) are the figures that reproduce from run to run; absolute
rates on a shared machine do not.
"""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from functools import partial

import numpy as np

from its_core.frontend import commands
from its_core.tools._ceiling import bare_translate, checked_translate
from its_core._version import __version__
from its_core.core.reference import ReferenceTables
from its_core.tools.workloads import (Workload, access, build, ceiling_tables,
                                     checked_ceiling_devices, device_ids, mappings)

REFERENCE_PAIRS = 20_000
SCALAR_CALLS = 50_000


@dataclass
class Result:
    """One row of the report."""

    workload: str
    layout: str                  # a layout name, "ceiling" or "reference"
    pattern: str
    batch_per_s: float           # translations per second, batch API
    scalar_per_s: float | None   # calls per second, scalar API (random pattern only)
    nbytes: int | None
    build_s: float | None
    extra: dict = field(default_factory=dict)

    @property
    def ns_per_translation(self) -> float:
        return 1e9 / self.batch_per_s


def best_time(function, repeat: int) -> float:
    """Shortest wall time of `repeat` calls of `function()` (after one warm-up)."""
    function()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def best_times(functions: dict, repeat: int) -> dict:
    """Shortest wall time of each of `functions` (name -> callable) over
    `repeat` rounds that call every function once in turn, after one warm-up
    call each.

    Interleaving spreads a disturbance of the machine over every function
    instead of all the runs of one, so the ratios between them hold up.
    """
    for function in functions.values():
        function()
    best = dict.fromkeys(functions, float("inf"))
    for _ in range(repeat):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def _scalar_rate(translate, device_ids, event_ids, repeat) -> float:
    pairs = list(zip(device_ids[:SCALAR_CALLS].tolist(), event_ids[:SCALAR_CALLS].tolist()))

    def loop():
        for device_id, event_id in pairs:
            translate(device_id, event_id)

    return len(pairs) / best_time(loop, repeat)


def run_workload(workload: Workload, layouts, patterns, pairs: int, repeat: int, seed: int,
                 progress=None, reference: bool = True) -> list[Result]:
    """Measure every layout of one workload (plus ceiling and reference).

    For each pattern the batch calls of the ceiling, every layout and the
    reference take turns (`best_times`); the reference runs on the first
    REFERENCE_PAIRS pairs only.
    """
    results = []
    built, build_seconds = {}, {}
    for layout in workload.layouts(layouts):
        start = time.perf_counter()
        built[layout] = build(workload, layout, seed)
        build_seconds[layout] = time.perf_counter() - start
    reference_tables = (build(workload, "hash", seed, tables_class=ReferenceTables)
                        if reference else None)
    device_base, ites, collection_cpu, position_of = ceiling_tables(workload, seed)
    checked_devices, checked_bits = checked_ceiling_devices(workload, seed)
    reference_count = min(pairs, REFERENCE_PAIRS)
    for pattern in patterns:
        device_ids, event_ids = access(workload, pattern, pairs, seed)
        intids = np.empty(pairs, np.uint32)
        cpus = np.empty(pairs, np.int32)
        positions = position_of(device_ids)
        outputs = {layout: (np.empty(pairs, np.uint32), np.empty(pairs, np.int32),
                            np.empty(pairs, np.uint8)) for layout in built}
        checked = (np.empty(pairs, np.uint32), np.empty(pairs, np.int32),
                   np.empty(pairs, np.uint8))
        batch_calls = {"ceiling": partial(bare_translate, device_base, ites, collection_cpu,
                                          positions, event_ids, intids, cpus),
                       "checked": partial(checked_translate, checked_devices, checked_bits,
                                          ites, collection_cpu, positions, event_ids, *checked)}
        for layout, tables in built.items():
            batch_calls[layout] = partial(tables.translate_batch, device_ids, event_ids,
                                          out=outputs[layout], threads=1)
        if reference_tables is not None:
            batch_calls["reference"] = partial(reference_tables.translate_batch,
                                               device_ids[:reference_count],
                                               event_ids[:reference_count])
        elapsed = best_times(batch_calls, repeat)
        if not (np.array_equal(checked[0], intids) and np.array_equal(checked[1], cpus)
                and not checked[2].any()):
            raise AssertionError(f"the checked ceiling disagrees with the ceiling on "
                                 f"{workload.name}")
        results.append(Result(workload.name, "ceiling", pattern, pairs / elapsed["ceiling"],
                              None, None, None,
                              extra={"checked_per_s": pairs / elapsed["checked"]}))
        if progress:
            progress()
        for layout, tables in built.items():
            if not (np.array_equal(outputs[layout][0], intids)
                    and np.array_equal(outputs[layout][1], cpus)):
                raise AssertionError(f"{layout} disagrees with the ceiling on {workload.name}")
            scalar = (_scalar_rate(tables.translate, device_ids, event_ids, repeat)
                      if pattern == "random" else None)
            results.append(Result(workload.name, layout, pattern, pairs / elapsed[layout], scalar,
                                  tables.nbytes, build_seconds[layout]))
            if progress:
                progress()
        if reference_tables is not None:
            scalar = (_scalar_rate(reference_tables.translate, device_ids[:reference_count],
                                   event_ids[:reference_count], repeat)
                      if pattern == "random" else None)
            results.append(Result(workload.name, "reference", pattern,
                                  reference_count / elapsed["reference"], scalar, None, None))
            if progress:
                progress()
    return results


def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo gives it, else what `platform` knows."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """What the figures were measured on."""
    import os
    return {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "its_core": __version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
    }


def machine_summary(machine: dict) -> str:
    """One line naming a `machine_info()` machine, for titles."""
    return (f"{machine['cpu_model']}, {machine['cpus']} CPUs, {platform.system()}, "
            f"Python {machine['python']}, numpy {machine['numpy']}")


def relative_rates(results: list[Result], baseline: str) -> list[float | None]:
    """Each result's batch rate divided by that of the `baseline` row ("ceiling"
    or "reference") of the same workload and pattern, measured in the same run;
    None where the run has no such row."""
    rates = {(r.workload, r.pattern): r.batch_per_s for r in results if r.layout == baseline}
    return [r.batch_per_s / rates[r.workload, r.pattern] if (r.workload, r.pattern) in rates
            else None for r in results]


def checked_rates(results: list[Result]) -> list[float | None]:
    """Each result's batch rate divided by that of the checked ceiling
    (`_ceiling.checked_translate`, kept as ``extra["checked_per_s"]`` of the
    ceiling row) of the same workload and pattern, measured in the same run."""
    rates = {(r.workload, r.pattern): r.extra["checked_per_s"] for r in results
             if r.layout == "ceiling" and "checked_per_s" in r.extra}
    return [r.batch_per_s / rates[r.workload, r.pattern] if (r.workload, r.pattern) in rates
            else None for r in results]


def format_ratio(ratio: float | None) -> str:
    """A ratio with the two or three significant digits a timing supports ("-" for None)."""
    if ratio is None:
        return "-"
    if ratio >= 10:
        return f"{ratio:.0f}"
    if ratio >= 0.1:
        return f"{ratio:.2f}"
    return f"{ratio:#.2g}"


def as_json(results: list[Result]) -> list[dict]:
    """The translation rows as dicts, with ns per translation and the ratios
    to the same run's ceiling (`x_ceiling`), checked ceiling (`x_checked`) and
    reference (`x_reference`)."""
    rows = []
    for result, of_ceiling, of_checked, of_reference in zip(
            results, relative_rates(results, "ceiling"), checked_rates(results),
            relative_rates(results, "reference")):
        row = asdict(result)
        row["ns_per_translation"] = result.ns_per_translation
        row["x_ceiling"] = of_ceiling
        row["x_checked"] = of_checked
        row["x_reference"] = of_reference
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------
# Front end: command queue, save, restore

@dataclass
class FrontEndResult:
    """Command-queue, save and restore throughput of one layout on one workload."""

    workload: str
    layout: str
    commands_per_s: float        # MAPTI commands through the queue
    save_per_s: float            # ITEs saved per second (save_tables)
    restore_per_s: float         # ITEs restored per second (restore_tables, validated)
    copy_per_s: float            # numpy copy of as many 8-byte entries, same run
    entries: int
    nbytes: int
    save_bytes: int = 0          # guest bytes save_tables must read or write (`format_bytes`)
    restore_bytes: int = 0       # guest bytes restore_tables must read
    save_fill_s: float | None = None      # numpy fill of save_bytes bytes, same run
    restore_fill_s: float | None = None   # numpy fill of restore_bytes bytes, same run

    @property
    def save_x_copy(self) -> float:
        """Save rate as a fraction of the same run's numpy copy."""
        return self.save_per_s / self.copy_per_s

    @property
    def restore_x_copy(self) -> float:
        """Restore rate as a fraction of the same run's numpy copy."""
        return self.restore_per_s / self.copy_per_s

    @property
    def save_x_fill(self) -> float | None:
        """A numpy fill of the guest bytes save_tables must touch, timed in
        the same run, over save_tables' own time (None if not measured)."""
        if not self.save_fill_s:
            return None
        return self.save_fill_s * self.save_per_s / self.entries

    @property
    def restore_x_fill(self) -> float | None:
        """The same for restore_tables and the guest bytes it must read."""
        if not self.restore_fill_s:
            return None
        return self.restore_fill_s * self.restore_per_s / self.entries


def front_end_as_json(results: list[FrontEndResult]) -> list[dict]:
    """The front-end rows as dicts, with `save_x_copy` and `restore_x_copy`."""
    return [{**asdict(r), "save_x_copy": r.save_x_copy, "restore_x_copy": r.restore_x_copy,
             "save_x_fill": r.save_x_fill, "restore_x_fill": r.restore_x_fill}
            for r in results]


def format_bytes(its) -> tuple[int, int]:
    """(save, restore): how many bytes of guest memory the KVM rev0 format
    makes `save_tables` read or write and `restore_tables` read, for the
    state and GITS_BASERs `its` has now.

    Save: the level-1 table (read, to find the level-2 pages) and every
    valid level-2 page (zeroed), or the whole flat table (zeroed); each
    device's whole ITT (2**Size entries, written); the CTEs and terminator.
    Restore: the walk's reads: level-1 descriptors up to the last page in
    use; in each page (the flat table: one page), the entries from its
    start up to its first valid DTE, then one per further device; each ITT
    up to its last mapped EventID (all of it without one); the CTEs and
    the terminator.
    """
    from its_core.abi import saverestore
    from its_core.abi._abi import collection_entries, level2_pages

    devices = saverestore._Table(its.stored_register("GITS_BASER0"))
    collections = saverestore._Table(its.stored_register("GITS_BASER1"))
    arrays = its.tables.to_arrays()
    ids = arrays["device_id"].astype(np.int64)
    bits = arrays["event_bits"].astype(np.int64)
    counts = arrays["num_events"].astype(np.int64)
    ends = np.cumsum(counts)
    mapped = counts > 0
    last_event = np.where(mapped, arrays["event_id"][np.maximum(ends - 1, 0)].astype(np.int64)
                          if ends.size and ends[-1] else 0, (1 << bits) - 1)
    ctes = min(collection_entries(its.tables).size + 1, collections.slots) * 8
    itt_save, itt_restore = int((8 << bits).sum()), int(((last_event + 1) * 8).sum())
    per_page = devices.page_bytes // 8 if devices.indirect else max(devices.slots, 1)
    pages, slots = ids // per_page, ids % per_page
    first_in_page = np.ones(ids.size, bool)
    first_in_page[1:] = pages[1:] != pages[:-1]
    dte_reads = int(((slots + 1) * first_in_page + ~first_in_page).sum()) * 8
    if devices.indirect:
        valid_pages = level2_pages(its.guest_window, devices.base, devices.nbytes,
                                   devices.page_bytes)[1].size
        table_save = devices.nbytes + valid_pages * devices.page_bytes
        table_restore = (int(pages[-1]) + 1) * 8 + dte_reads if ids.size else devices.nbytes
    else:
        table_save = devices.nbytes
        table_restore = dte_reads if ids.size else devices.nbytes
    return table_save + itt_save + ctes, table_restore + itt_restore + ctes


def guest_for(workload: Workload):
    """(memory bytes, GuestMap) placing a workload's tables in guest memory.

    Dense DeviceIDs get a flat device table; DeviceIDs scattered over 32 bits
    get a two-level table with a 64 KiB level-2 page for each level-1 entry
    in use (which is why that workload needs a large guest memory).
    """
    from its_core.testing import GuestMap

    itt_stride = max(256, 8 << workload.event_bits)
    if workload.sparse:
        per_page = (64 << 10) // 8
        indexes = tuple(np.unique(device_ids(workload) // per_page).tolist())
        level1_bytes = (1 << 32) // per_page * 8
        guest = GuestMap(queue=0x10000, queue_pages=256, device_table=0x200000,
                         device_table_pages=level1_bytes >> 16, indirect=True,
                         level1_indexes=indexes, level2_tables=0x200000 + level1_bytes,
                         collection_table=0x110000, config_table=0x1000000,
                         pending_tables=0x1200000, pending_stride=0x40000,
                         itt_base=0x200000 + level1_bytes + len(indexes) * (64 << 10),
                         itt_stride=itt_stride)
    else:
        pages = max(1, -(-workload.devices * 8 // (64 << 10)))
        guest = GuestMap(queue=0x10000, queue_pages=256, device_table=0x200000,
                         device_table_pages=pages, collection_table=0x110000,
                         config_table=0x1000000, pending_tables=0x1200000,
                         pending_stride=0x40000, itt_base=0x2000000, itt_stride=itt_stride)
    memory_bytes = guest.itt_base + workload.devices * itt_stride
    return (memory_bytes + 0xFFFF) & ~0xFFFF, guest


def _its_with_devices(workload: Workload, layout: str, seed: int, gic_version: str = "3",
                      extra_bytes: int = 0):
    """A brought-up ITS with the workload's collections and devices mapped,
    and the MAPTI commands that map its events.  A GICv4 ITS also gets a
    one-page vPE table (GITS_BASER2) above the workload's guest memory, and
    `extra_bytes` more guest memory above that (`VIRTUAL_AREA`)."""
    from its_core import ITS, GuestMemory
    from its_core.frontend import registers
    from its_core.testing import bring_up

    memory_bytes, guest = guest_for(workload)
    its = ITS(GuestMemory(memory_bytes + (VPE_TABLE_BYTES if gic_version != "3" else 0)
                          + extra_bytes),
              workload.num_cpus, layout, device_bits=workload.device_bits,
              event_bits=max(16, workload.event_bits), intid_bits=workload.intid_bits,
              gic_version=gic_version)
    bring_up(its, guest, enable=gic_version == "3")
    if gic_version != "3":
        baser2 = registers.GITS_BASER2_VPES
        its.mmio_write(baser2.offset, baser2.encode(
            address=memory_bytes, Valid=1, Type=registers.BaserType.VPES,
            Page_Size=registers.PageSize.SIZE_64K, Size=0), 8)
        its.mmio_write(registers.GITS_CTLR.offset, 1, 4)
    ids = device_ids(workload, seed)
    its.submit_many(commands.encode_many(
        "MAPC", icid=np.arange(workload.num_collections),
        cpu=np.arange(workload.num_collections) % workload.num_cpus))
    its.submit_many(commands.encode_many(
        "MAPD", device_id=ids,
        itt_addr=guest.itt_base + np.arange(workload.devices, dtype=np.uint64) * guest.itt_stride,
        num_event_bits=workload.event_bits))
    device_column, events, intids, icids = mappings(workload, seed)
    mapti = commands.encode_many("MAPTI", device_id=device_column, event_id=events,
                                 intid=intids, icid=icids)
    return its, mapti


#: Calls shorter than this are timed in more rounds (up to SHORT_CALL_ROUNDS x
#: `repeat`), so a sub-millisecond figure is a best of enough calls to miss the
#: machine's bursts of load as often as a long one does.
SHORT_CALL_S = 0.02
SHORT_CALL_ROUNDS = 20


def _rounds_for(call, repeat: int) -> int:
    """`repeat`, scaled up for a `call` faster than SHORT_CALL_S (one untimed try)."""
    start = time.perf_counter()
    call()
    seconds = time.perf_counter() - start
    return max(repeat, min(repeat * SHORT_CALL_ROUNDS, int(repeat * SHORT_CALL_S / seconds)))


def run_front_end(workload: Workload, layout: str, repeat: int, seed: int) -> FrontEndResult:
    """Map the workload through the command queue, then save and restore it.

    Each figure is the best of `repeat` timed runs (more for a short save and
    restore: `_rounds_for`); the commands run on a fresh ITS each time, since
    MAPTI maps an event only once.  Save, restore
    and the numpy copy and fills they are compared with take turns
    (`best_times`): the copy of as many 8-byte entries, and a fill of as
    many bytes as each must read or write in guest memory (`format_bytes`).
    """
    commands_s = float("inf")
    for _ in range(repeat):
        its, mapti = _its_with_devices(workload, layout, seed)
        start = time.perf_counter()
        its.submit_many(mapti)
        commands_s = min(commands_s, time.perf_counter() - start)
        if len(its.errors) or its.tables.num_events != len(mapti):
            raise AssertionError(f"{layout}: the workload did not map cleanly through the queue")
    entries = its.tables.num_events
    its.mmio_write(0, 0, 4)                                 # restore needs the ITS disabled
    source = np.arange(entries, dtype=np.uint64)
    target = np.empty_like(source)
    save_bytes, restore_bytes = format_bytes(its)
    save_fill, restore_fill = np.empty(save_bytes, np.uint8), np.empty(restore_bytes, np.uint8)
    elapsed = best_times({"save": its.save_tables, "restore": its.restore_tables,
                          "copy": partial(np.copyto, target, source),
                          "save_fill": partial(save_fill.fill, 0),
                          "restore_fill": partial(restore_fill.fill, 0)},
                         _rounds_for(lambda: (its.save_tables(), its.restore_tables()), repeat))
    return FrontEndResult(workload.name, layout, len(mapti) / commands_s,
                          entries / elapsed["save"], entries / elapsed["restore"],
                          entries / elapsed["copy"], entries, its.tables.nbytes,
                          save_bytes, restore_bytes, elapsed["save_fill"],
                          elapsed["restore_fill"])


# ---------------------------------------------------------------------------
# Virtual LPIs (GICv4): msi_batch delivering vLPIs, against physical LPIs

#: vPEs of the virtual-LPI workload, their VPTs (64 KiB-aligned, 2**16 vINTIDs
#: each) above the vPE table, and the guest memory that takes.
VIRTUAL_VPES = 16
VPE_TABLE_BYTES = 64 << 10
VIRTUAL_AREA = VIRTUAL_VPES * (64 << 10)


@dataclass
class VirtualResult:
    """`ITS.msi_batch` on one workload's random pairs, three ways (same run).

    Every event is mapped alike on three ITSs: physically on a GICv3 ITS
    (today's path), physically on a GICv4.0 ITS, and as a vLPI of one of
    VIRTUAL_VPES non-resident vPEs on a GICv4.0 ITS (each delivery sets the
    VPT bit in guest memory and rings the vPE's doorbell LPI).
    """

    workload: str
    layout: str
    gicv3_per_s: float           # physical LPIs, GICv3 ITS
    physical_per_s: float        # physical LPIs, GICv4.0 ITS
    virtual_per_s: float         # vLPIs to non-resident vPEs, GICv4.0 ITS

    @property
    def physical_x_gicv3(self) -> float:
        """An all-physical batch on a GICv4 ITS over the same batch on a GICv3 ITS."""
        return self.physical_per_s / self.gicv3_per_s

    @property
    def virtual_x_physical(self) -> float:
        """vLPI delivery over physical delivery, both on a GICv4.0 ITS."""
        return self.virtual_per_s / self.physical_per_s


def virtual_as_json(results: list[VirtualResult]) -> list[dict]:
    """The virtual-LPI rows as dicts, with their two ratios."""
    return [{**asdict(r), "physical_x_gicv3": r.physical_x_gicv3,
             "virtual_x_physical": r.virtual_x_physical} for r in results]


def _virtual_its(workload: Workload, layout: str, seed: int):
    """A GICv4.0 ITS with the workload's events mapped as vLPIs: event i of the
    workload's mappings becomes vINTID = its pINTID of vPE (ICID mod
    VIRTUAL_VPES), doorbell LPI 2**intid_bits - 1 - vPEID."""
    memory_bytes, _ = guest_for(workload)
    its, _ = _its_with_devices(workload, layout, seed, "4.0", VIRTUAL_AREA)
    vpt_base = memory_bytes + VPE_TABLE_BYTES
    intid_limit = 1 << workload.intid_bits
    its.submit(*[commands.vmapp(vpe_id, vpe_id % workload.num_cpus,
                                vpt_base + vpe_id * (64 << 10), workload.intid_bits - 1)
                 for vpe_id in range(VIRTUAL_VPES)])
    device_column, events, intids, icids = mappings(workload, seed)
    vpe_ids = icids % VIRTUAL_VPES
    its.submit_many(commands.encode_many(
        "VMAPTI", device_id=device_column, event_id=events, vpe_id=vpe_ids, vintid=intids,
        dbell_pintid=intid_limit - 1 - vpe_ids))
    if len(its.errors) or its.tables.num_virtual_events != len(events):
        raise AssertionError(f"{layout}: the virtual workload did not map cleanly")
    return its


def run_virtual(workload: Workload, layout: str, pairs: int, repeat: int,
                seed: int) -> VirtualResult:
    """msi_batch rates of `workload`'s random pairs on the three ITSs of
    `VirtualResult`, taking turns (`best_times`)."""
    device_ids, event_ids = access(workload, "random", pairs, seed)
    itss = {}
    for version in ("3", "4.0"):
        its, mapti = _its_with_devices(workload, layout, seed, version)
        its.submit_many(mapti)
        itss[version] = its
    itss["virtual"] = _virtual_its(workload, layout, seed)
    elapsed = best_times({name: partial(its.msi_batch, device_ids, event_ids, threads=1)
                          for name, its in itss.items()}, repeat)
    statuses = {name: its.msi_batch(device_ids[:1000], event_ids[:1000])
                for name, its in itss.items()}
    if statuses["3"].any() or statuses["4.0"].any() or (statuses["virtual"] != 64).any():
        raise AssertionError(f"{layout}: the virtual-LPI workload did not deliver cleanly")
    return VirtualResult(workload.name, layout, pairs / elapsed["3"], pairs / elapsed["4.0"],
                         pairs / elapsed["virtual"])


# ---------------------------------------------------------------------------
# Guest-driven: the costs a simulator pays when its guest drives the ITS

#: Commands issued one at a time, and calls per scalar figure.
DRIVER_COMMANDS = 20_000
GUEST_CALLS = 100_000


@dataclass
class GuestDrivenResult:
    """What one guest access costs, on one layout (best of the timed runs)."""

    layout: str
    driver_commands_per_s: float   # one command written, CWRITER written, CREADR polled
    gits_read_ns: float            # mmio_read of GITS_CREADR
    gicr_read_ns: float            # a redistributor's GICR_PROPBASER read
    doorbell_per_s: float          # GITS_TRANSLATER writes through mmio_write
    msi_per_s: float               # scalar msi calls
    empty_call_ns: float           # an empty Python call, the floor under every figure
    bulk_round_trips_per_s: float = 0.0   # save() + restore() of a small state (run_bulk)


def _driven_its(layout: str):
    """A brought-up ITS with device 1 (32 events) mapped through the queue."""
    from its_core import ITS, GuestMemory, bring_up

    its = ITS(GuestMemory(64 << 20), 4, layout)
    guest = bring_up(its)
    its.submit(commands.mapc(0, 1), commands.mapd(1, guest.itt_address(0), 5),
               *[commands.mapti(1, event, 8192 + event, 0) for event in range(32)])
    if len(its.errors):
        raise AssertionError(f"{layout}: the guest-driven setup did not map cleanly")
    return its, guest


def driver_loop(its, guest, count: int) -> None:
    """`count` commands as a driver issues them: write one SYNC at CWRITER,
    write CWRITER, read CREADR until it has caught up."""
    from its_core.frontend import registers

    cwriter_offset, creadr_offset = registers.GITS_CWRITER.offset, registers.GITS_CREADR.offset
    queue_bytes = guest.queue_pages * 4096
    packet = commands.sync(0)
    memory, mmio_read, mmio_write = its.memory, its.mmio_read, its.mmio_write
    cwriter = mmio_read(cwriter_offset, 8)
    for _ in range(count):
        memory.write(guest.queue + cwriter, packet)
        cwriter = (cwriter + 32) % queue_bytes
        mmio_write(cwriter_offset, cwriter, 8)
        while mmio_read(creadr_offset, 8) != cwriter:
            pass


#: The bulk save/restore workload: this many random small states of
#: BULK_DEVICES devices x BULK_EVENTS events each (the default guest layout of
#: `its_core.testing.random_state`), each saved from one layout and restored
#: into a fresh ITS of BULK_LAYOUTS[layout].
BULK_STATES = 20
BULK_DEVICES, BULK_EVENTS = 64, 32
BULK_LAYOUTS = {"flat": "hash", "twolevel": "flat", "hash": "twolevel"}


def bulk_sources(layout: str, count: int = BULK_STATES) -> list:
    """`count` ITSs of `layout`, each holding its own random small state (seeded 0..count-1)."""
    from its_core import ITS, GuestMemory
    from its_core.testing import random_state

    sources = []
    for seed in range(count):
        source = ITS(GuestMemory(64 << 20), 4, layout)
        random_state(source, BULK_DEVICES, BULK_EVENTS, seed=seed)
        sources.append(source)
    return sources


def bulk_round_trips(sources, target: str) -> list:
    """`save()` each source and `restore()` it into a fresh ITS of layout `target`."""
    from its_core import ITS

    restored = []
    for source in sources:
        state = source.save()
        fresh = ITS(source.memory, source.redistributors.num_cpus, target)
        fresh.restore(state)
        restored.append(fresh)
    return restored


def run_bulk(layout: str, repeat: int) -> float:
    """Bulk save/restore round trips per second from `layout` (best of the timed runs)."""
    from its_core.testing import assert_same_state

    sources = bulk_sources(layout)
    target = BULK_LAYOUTS[layout]
    elapsed = best_time(partial(bulk_round_trips, sources, target), repeat)
    for source, fresh in zip(sources, bulk_round_trips(sources, target)):
        assert_same_state(source, fresh)
    return len(sources) / elapsed


def run_guest_driven(layout: str, repeat: int) -> GuestDrivenResult:
    """Measure the guest-driven costs of one layout."""
    from its_core.frontend import registers

    its, guest = _driven_its(layout)
    rd = its.redistributors
    calls = range(GUEST_CALLS)
    creadr, propbaser = registers.GITS_CREADR.offset, registers.GICR_PROPBASER.offset
    translater = registers.GITS_TRANSLATER.offset

    def empty(*args):
        return None

    loops = {
        "driver": partial(driver_loop, its, guest, DRIVER_COMMANDS),
        "gits_read": lambda: [its.mmio_read(creadr, 8) for _ in calls],
        "gicr_read": lambda: [rd.mmio_read(1, propbaser, 8) for _ in calls],
        "doorbell": lambda: [its.mmio_write(translater, 3, 4, device_id=1) for _ in calls],
        "msi": lambda: [its.msi(1, 3) for _ in calls],
        "empty": lambda: [empty(creadr, 8) for _ in calls],
    }
    elapsed = best_times(loops, repeat)
    if len(its.errors) or its.pending(1).tolist() != [8195]:
        raise AssertionError(f"{layout}: the guest-driven loops did not behave")
    return GuestDrivenResult(
        layout, DRIVER_COMMANDS / elapsed["driver"], elapsed["gits_read"] / GUEST_CALLS * 1e9,
        elapsed["gicr_read"] / GUEST_CALLS * 1e9, GUEST_CALLS / elapsed["doorbell"],
        GUEST_CALLS / elapsed["msi"], elapsed["empty"] / GUEST_CALLS * 1e9,
        run_bulk(layout, repeat))
