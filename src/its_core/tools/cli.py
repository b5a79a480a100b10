"""The ``its-core`` command line.

``its-core bench`` measures translation throughput for each storage layout
on the standard workloads and prints a table (the README's main job);
``its-core dump`` decodes a saved guest-memory image; ``its-core replay``
runs a recorded trace of guest activity.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from its_core import LAYOUTS
from its_core.tools.workloads import PATTERNS, WORKLOADS, Workload
from its_core.validation import GIC_VERSIONS


def _progress_bar(total: int):
    """A callable advancing a one-line progress bar on stderr."""
    state = {"done": 0}
    interactive = sys.stderr.isatty()

    def step():
        state["done"] += 1
        width = 30
        filled = width * state["done"] // total
        line = f"\r[{'#' * filled}{'.' * (width - filled)}] {state['done']}/{total}"
        if interactive or state["done"] == total:
            sys.stderr.write(line + ("\n" if state["done"] == total else ""))
            sys.stderr.flush()

    return step


def _format_rate(value):
    return "-" if value is None else f"{value / 1e6:9.1f}"


def format_table(results, sparse_workloads=None) -> str:
    """The translation report, one row per (workload, pattern, layout): the
    same-run ratios first, then the rates they come from, then a legend.
    `sparse_workloads` names the workloads whose ceiling skips the DeviceID
    lookup (default: the standard sparse ones); their ratios are marked."""
    from its_core.tools.bench import checked_rates, format_ratio, relative_rates

    if sparse_workloads is None:
        sparse_workloads = {name for name, workload in WORKLOADS.items() if workload.sparse}

    header = (f"{'workload':<11} {'pattern':<10} {'layout':<10} {'x ceiling':>9} {'x ref':>6} "
              f"{'batch M/s':>9} {'ns/tr':>6} {'scalar M/s':>10} {'memory':>10} "
              f"{'x checked':>9}")
    lines = [header, "-" * len(header)]
    for r, of_ceiling, of_checked, of_reference in zip(
            results, relative_rates(results, "ceiling"), checked_rates(results),
            relative_rates(results, "reference")):
        memory = "-" if r.nbytes is None else f"{r.nbytes / 2**20:7.2f} MiB"
        ratio, checked_ratio = format_ratio(of_ceiling), format_ratio(of_checked)
        if r.workload in sparse_workloads:
            ratio += "*" if ratio != "-" else ""
            checked_ratio += "*" if checked_ratio != "-" else ""
        lines.append(
            f"{r.workload:<11} {r.pattern:<10} {r.layout:<10} {ratio:>9} "
            f"{format_ratio(of_reference):>6} {_format_rate(r.batch_per_s)} "
            f"{r.ns_per_translation:6.1f} {_format_rate(r.scalar_per_s):>10} {memory:>10} "
            f"{checked_ratio:>9}")
    lines += [
        "",
        "x ceiling  batch rate / that of the bare-loop ceiling (_ceiling.pyx: the same lookups",
        "           with no layout and no checks) on the same pairs: 0.50 = half as fast",
        "x checked  batch rate / that of the checked ceiling (checked_translate: the bare loop",
        "           plus the range, mapping and collection checks and the status array every",
        "           correct ITS needs); the gap to it is the layout's, the rest structural",
        "        *  sparse DeviceIDs: the ceilings are handed each pair's device position, found",
        "           untimed, so they do no DeviceID lookup at all: not like for like",
        "x ref      batch rate / that of the pure-Python reference model (its_core.reference) on",
        "           the first 20 000 of the same pairs: how many times faster than the model",
        "M/s        millions of translations per second, best of the timed runs; the rows of a",
        "           pattern are timed in turns, so the ratios hold from run to run while M/s",
        "           move by up to +-30 % on a shared machine",
    ]
    return "\n".join(lines)


def format_front_end(results) -> str:
    """The second report: command queue, save and restore per layout, with
    save and restore as fractions of a same-run numpy copy first."""
    from its_core.tools.bench import format_ratio

    header = (f"{'workload':<11} {'layout':<10} {'save x copy':>11} {'restore x copy':>14} "
              f"{'bulk cmdq M/s':>13} {'save M/s':>9} {'restore M/s':>11} {'copy M/s':>9} "
              f"{'entries':>9} {'save x fill':>11} {'restore x fill':>14}")
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(f"{r.workload:<11} {r.layout:<10} {format_ratio(r.save_x_copy):>11} "
                     f"{format_ratio(r.restore_x_copy):>14} {r.commands_per_s / 1e6:13.1f} "
                     f"{r.save_per_s / 1e6:9.1f} {r.restore_per_s / 1e6:11.1f} "
                     f"{r.copy_per_s / 1e6:9.0f} {r.entries:9d} "
                     f"{format_ratio(r.save_x_fill):>11} {format_ratio(r.restore_x_fill):>14}")
    lines += [
        "",
        "x copy     save_tables / restore_tables (validated) rate over that of a numpy copy of as",
        "           many 8-byte entries, timed in turns with them: 0.10 = a tenth as fast",
        "x fill     the same over a numpy fill of as many bytes as the KVM rev0 format makes",
        "           save_tables read or write (zeroed tables, whole ITTs, CTEs) and",
        "           restore_tables read (the walk's DTEs and ITT entries, CTEs) in guest memory",
        "bulk cmdq  MAPTI commands per second through the command queue, the whole workload",
        "           queued at once (submit_many), best of the timed runs, each on a fresh ITS; no",
        "           same-run baseline, so compare it within one run only",
    ]
    return "\n".join(lines)


def format_virtual(results) -> str:
    """The virtual-LPI report (GICv4): msi_batch delivering vLPIs against
    physical LPIs, per workload and layout."""
    from its_core.tools.bench import VIRTUAL_VPES, format_ratio

    header = (f"{'workload':<11} {'layout':<10} {'virtual x phys':>14} {'phys x GICv3':>12} "
              f"{'virtual M/s':>11} {'phys M/s':>9} {'GICv3 M/s':>9}")
    lines = ["virtual LPIs (GICv4.0 ITS, msi_batch, random pairs)", header, "-" * len(header)]
    for r in results:
        lines.append(f"{r.workload:<11} {r.layout:<10} {format_ratio(r.virtual_x_physical):>14} "
                     f"{format_ratio(r.physical_x_gicv3):>12} {r.virtual_per_s / 1e6:11.1f} "
                     f"{r.physical_per_s / 1e6:9.1f} {r.gicv3_per_s / 1e6:9.1f}")
    lines += [
        "",
        "virtual    every event mapped as a vLPI (VMAPTI) of one of "
        f"{VIRTUAL_VPES} non-resident vPEs:",
        "           each delivery sets the vINTID's VPT bit in guest memory and rings the",
        "           ITE's doorbell LPI",
        "phys       the same events mapped as physical LPIs (MAPTI), on a GICv4.0 ITS",
        "GICv3      the same events and batch on a GICv3 ITS (the three take turns; one thread)",
    ]
    return "\n".join(lines)


def format_guest_driven(results) -> str:
    """The third report: what one guest access costs, per layout."""
    header = (f"{'layout':<10} {'driver cmds K/s':>15} {'GITS read ns':>12} "
              f"{'GICR read ns':>12} {'doorbell M/s':>12} {'msi M/s':>8} {'empty call ns':>13} "
              f"{'bulk rt/s':>9}")
    lines = ["guest-driven", header, "-" * len(header)]
    for r in results:
        lines.append(f"{r.layout:<10} {r.driver_commands_per_s / 1e3:15.0f} "
                     f"{r.gits_read_ns:12.0f} {r.gicr_read_ns:12.0f} "
                     f"{r.doorbell_per_s / 1e6:12.2f} {r.msi_per_s / 1e6:8.2f} "
                     f"{r.empty_call_ns:13.0f} {r.bulk_round_trips_per_s:9.0f}")
    lines += [
        "",
        "driver     commands per second issued as a driver does: one command written into",
        "           the queue, a CWRITER write, CREADR read until it catches up",
        "GITS/GICR  ns per mmio_read of GITS_CREADR / of a redistributor's GICR_PROPBASER",
        "doorbell   GITS_TRANSLATER writes through mmio_write (with device_id) per second",
        "empty call ns per call of an empty Python function in the same loop: the floor",
        "bulk rt/s  save() of a random small state (64 devices x 32 events) and restore() into",
        "           a fresh ITS of the next layout (flat -> hash -> twolevel -> flat), per second",
    ]
    return "\n".join(lines)


def _bench(args) -> int:
    from pathlib import Path

    from its_core.tools import bench

    if args.pairs < 1 or args.repeat < 1:
        raise SystemExit("its-core bench: --pairs and --repeat must be at least 1")
    if args.plot:
        from its_core.tools import plot
        plot.require_matplotlib()
    for path in (args.json, args.plot):
        if path and path != "-" and not Path(path).resolve().parent.is_dir():
            raise SystemExit(f"its-core bench: cannot write {path}: no such directory")
    layouts = args.layouts
    if args.devices is not None or args.events is not None or args.sparse:
        workloads = [Workload("custom", args.devices or 1024, args.events or 32,
                              sparse=args.sparse)]
    else:
        workloads = [WORKLOADS[name] for name in args.workloads]
    patterns = PATTERNS if args.pattern == "both" else (args.pattern,)
    virt_bench = None
    if not args.no_virt:
        try:
            from its_core.virt import bench as virt_bench
        except ImportError:                   # the virt extra is not installed
            pass
    steps = sum(len(patterns) * (len(w.layouts(layouts)) + 2)
                + len(w.layouts(layouts)) * (1 if w.sparse else 2)
                for w in workloads) + len(layouts) + (virt_bench is not None)
    progress = _progress_bar(steps)
    machine = bench.machine_info()
    results, front_end = [], []
    for workload in workloads:
        results += bench.run_workload(workload, layouts, patterns, args.pairs, args.repeat,
                                      args.seed, progress=progress)
        for layout in workload.layouts(layouts):
            front_end.append(bench.run_front_end(workload, layout, args.repeat, args.seed))
            progress()
    guest_driven = []
    for layout in layouts:
        guest_driven.append(bench.run_guest_driven(layout, args.repeat))
        progress()
    virtual = []
    for workload in workloads:
        if workload.sparse:                 # (its VPTs would need the sparse guest's memory)
            continue
        for layout in workload.layouts(layouts):
            virtual.append(bench.run_virtual(workload, layout, args.pairs, args.repeat,
                                             args.seed))
            progress()
    virt = None
    if virt_bench is not None:
        virt = virt_bench.run(min(args.repeat, 3))
        progress()
    tables = sys.stderr if args.json == "-" else sys.stdout
    sparse = {name for name, workload in WORKLOADS.items() if workload.sparse}
    if args.sparse:
        sparse.add("custom")
    print(format_table(results, sparse), file=tables)
    print(file=tables)
    print(format_front_end(front_end), file=tables)
    print(file=tables)
    print(format_guest_driven(guest_driven), file=tables)
    print(file=tables)
    if virtual:
        print(format_virtual(virtual), file=tables)
        print(file=tables)
    if virt is not None:
        print(virt_bench.format_table(virt), file=tables)
    elif not args.no_virt:
        print("virt machine: not measured (pip install \"its_core[virt]\" for its table)",
              file=tables)
    if args.json:
        report = {"machine": machine, "results": bench.as_json(results),
                  "front_end": bench.front_end_as_json(front_end),
                  "guest_driven": [asdict(r) for r in guest_driven],
                  "virtual": bench.virtual_as_json(virtual),
                  "virt": virt._asdict() if virt is not None else None,
                  "arguments": {k: v for k, v in vars(args).items() if k != "func"}}
        if args.json == "-":
            json.dump(report, sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            with open(args.json, "w") as stream:
                json.dump(report, stream, indent=2)
    if args.plot:
        plot.draw(args.plot, results, front_end, machine, args.pairs, args.repeat)
    return 0


def _dump(args) -> int:
    from its_core.abi import dump
    return dump.main(args.image, args.base, args.registers, args.json, sys.stdout)


def _replay(args) -> int:
    from its_core.tools import replay
    return replay.main(args.trace, args.json, sys.stdout)


def _run(args) -> int:
    try:
        from its_core.virt import runner
    except ImportError as error:
        print(f"its-core run: {error}", file=sys.stderr)
        return 2
    return runner.run(args.kernel, smp=args.smp, memory=args.memory, append=args.append,
                      initrd=args.initrd, layout=args.layout, migrate_on=args.migrate_on,
                      migrate_every=args.migrate_every, timeout=args.timeout,
                      gic_version=args.gic_version)


def _positive(text: str) -> int:
    value = int(text, 0)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="its-core", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="measure translation throughput per layout",
                                description="Measure batch and scalar translation for each "
                                "layout on the standard workloads, against a bare-loop "
                                "ceiling and the pure-Python reference model measured in the "
                                "same run (the tables lead with those ratios), then the "
                                "command queue, save and restore.")
    bench.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS),
                       help="layouts to measure (default: all)")
    bench.add_argument("--workloads", nargs="+", choices=list(WORKLOADS),
                       default=list(WORKLOADS), help="standard workloads (default: all)")
    bench.add_argument("--devices", type=int, help="custom workload: number of devices")
    bench.add_argument("--events", type=int, help="custom workload: events per device")
    bench.add_argument("--sparse", action="store_true",
                       help="custom workload: DeviceIDs scattered over 32 bits")
    bench.add_argument("--pattern", choices=(*PATTERNS, "both"), default="both",
                       help="access pattern (default: both)")
    bench.add_argument("--pairs", type=int, default=1_000_000,
                       help="translations per batch call (default: 1000000)")
    bench.add_argument("--repeat", type=int, default=5,
                       help="timed runs per figure; the best is reported (default: 5)")
    bench.add_argument("--seed", type=int, default=0, help="workload seed (default: 0)")
    bench.add_argument("--json", metavar="PATH",
                       help="also write the results as JSON; '-' writes them to stdout and "
                       "the tables to stderr")
    bench.add_argument("--no-virt", action="store_true",
                       help="skip the virt machine's table (measured when the virt extra "
                       "is installed)")
    bench.add_argument("--plot", metavar="PATH",
                       help="also draw the results as a PNG (needs matplotlib: "
                       "pip install 'its_core[plot]'; checked before measuring)")
    bench.set_defaults(func=_bench)

    from its_core.abi.dump import guest_address
    dump = commands.add_parser(
        "dump", help="decode a saved guest-memory image",
        description="Decode a guest-memory image plus the register state ITS.save() returned "
        "(as JSON) into devices, events, collections and pending LPIs (a GICv4 ITS's "
        "its-core-rev1 image: also virtual events, vPEs and VLPI registers). Exit status 2, "
        "with a "
        "message naming the file at fault: the registers file is unreadable, not a JSON "
        "object or holds a value of the wrong type; or the image is corrupt (what is wrong "
        "and where) or a table the registers name (device or collection table, pending "
        "table of a CPU with EnableLPIs) starts outside it, which usually means a wrong "
        "--base. Exit status 0 with a warning on stderr when the command queue lies outside "
        "the image, or a valid device or collection table is all zero while the image is "
        "not (legal, but likely a wrong --base).")
    dump.add_argument("image", help="raw guest memory, starting at --base")
    dump.add_argument("--base", type=guest_address, default=0,
                      help="guest-physical address of the image's first byte (default 0)")
    dump.add_argument("--registers", required=True, metavar="REGS.json",
                      help="the register state saved with the image")
    dump.add_argument("--json", action="store_true", help="machine-readable output")
    dump.set_defaults(func=_dump)

    replay = commands.add_parser(
        "replay", help="run a recorded trace of MMIO writes and doorbells",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Replay a line-oriented trace against a fresh ITS and print the doorbells\n"
        "dropped, the LPIs delivered, failed checks and the final state. Exit status\n"
        "1 when a check failed, 2 on a trace that cannot be read or run (the message\n"
        "names the file and line).",
        epilog="trace format (full reference: docs/trace-format.md; an example ships as\n"
        "its_core/data/bring_up_and_doorbell.trace, see its_core.tools.replay.EXAMPLE_TRACE):\n"
        "  config cpus=4 memory=64M base=0 layout=flat device_bits=16 event_bits=16\n"
        "         intid_bits=16 stall_on_error=0   (optional, first; these are the defaults)\n"
        "  mem   ADDR HEXBYTES              write guest memory\n"
        "  its   OFFSET VALUE SIZE          write the ITS frame\n"
        "  its?  OFFSET SIZE [= VALUE]      read it; with = VALUE, a check\n"
        "  gicr  CPU OFFSET VALUE SIZE      write a redistributor's RD_base frame\n"
        "  gicr? CPU OFFSET SIZE [= VALUE]  read it\n"
        "  msi   DEVICE_ID EVENT_ID         ring the doorbell\n"
        "  ack   CPU                        acknowledge the CPU's highest-priority LPI\n"
        "  reset                            reset the ITS\n"
        "# starts a comment; numbers: 42, 0x2a, 0b101010, 1_000, with optional K/M/G suffix.")
    replay.add_argument("trace", help="the trace file")
    replay.add_argument("--json", action="store_true", help="machine-readable output")
    replay.set_defaults(func=_replay)

    run = commands.add_parser(
        "run", help="boot a bare-metal AArch64 guest on the virt machine (needs the virt extra)",
        description="Boot KERNEL (ELF or raw, as QEMU's -kernel) on its_core.virt: QEMU's "
        "virt board (gic-version=3 unless --gic-version says otherwise), its_core as the ITS. "
        "Guest UART output goes to "
        "stdout. Exit status 0 when the guest powers off (PSCI SYSTEM_OFF) or resets, 3 on "
        "timeout, 4 when no CPU can run, 5 on a guest fault, 2 when the kernel cannot be "
        "loaded (docs/virt.md).")
    run.add_argument("kernel", help="the guest image")
    run.add_argument("--smp", type=_positive, default=1, help="CPUs (default 1)")
    run.add_argument("--memory", default="256M", help="RAM size (default 256M)")
    run.add_argument("--append", default="", help="/chosen/bootargs")
    run.add_argument("--initrd", help="a file loaded where QEMU loads an initrd")
    run.add_argument("--layout", choices=LAYOUTS, default="flat",
                     help="ITS storage layout (default flat; migrations move to the next)")
    run.add_argument("--gic-version", choices=GIC_VERSIONS, default="3",
                     help="the GIC (default 3; 4.0 and 4.1 have GICv4 redistributors 256 KiB "
                     "apart, as QEMU's gic-version=4)")
    run.add_argument("--migrate-on", metavar="TEXT",
                     help="migrate when the guest writes a line containing TEXT, then feed "
                     "it a newline")
    run.add_argument("--migrate-every", type=_positive, metavar="N",
                     help="migrate after every N instructions (counted in scheduler slices)")
    run.add_argument("--timeout", type=float, metavar="S", help="give up after S seconds")
    run.set_defaults(func=_run)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
