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

from its_core import LAYOUTS
from its_core.workloads import PATTERNS, WORKLOADS, Workload


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


def format_table(results) -> str:
    """The report: one row per (workload, pattern, layout)."""
    ceilings = {(r.workload, r.pattern): r.batch_per_s for r in results if r.layout == "ceiling"}
    references = {(r.workload, r.pattern): r.batch_per_s for r in results
                  if r.layout == "reference"}
    header = (f"{'workload':<11} {'pattern':<10} {'layout':<10} {'batch M/s':>9} {'ns/tr':>6} "
              f"{'x ceiling':>9} {'x ref':>7} {'scalar M/s':>10} {'memory':>10}")
    lines = [header, "-" * len(header)]
    for r in results:
        key = (r.workload, r.pattern)
        of_ceiling = r.batch_per_s / ceilings[key] if key in ceilings else None
        of_reference = r.batch_per_s / references[key] if key in references else None
        memory = "-" if r.nbytes is None else f"{r.nbytes / 2**20:7.2f} MiB"
        lines.append(
            f"{r.workload:<11} {r.pattern:<10} {r.layout:<10} {_format_rate(r.batch_per_s)} "
            f"{r.ns_per_translation:6.1f} "
            f"{'' if of_ceiling is None else f'{of_ceiling:9.2f}':>9} "
            f"{'' if of_reference is None else f'{of_reference:7.0f}':>7} "
            f"{_format_rate(r.scalar_per_s):>10} {memory:>10}")
    return "\n".join(lines)


def format_front_end(results) -> str:
    """The second report: command queue, save and restore per layout."""
    header = (f"{'workload':<11} {'layout':<10} {'cmdq M/s':>9} {'save M/s':>9} {'x copy':>7} "
              f"{'restore M/s':>11} {'x copy':>7} {'entries':>9}")
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(f"{r.workload:<11} {r.layout:<10} {r.commands_per_s / 1e6:9.1f} "
                     f"{r.save_per_s / 1e6:9.1f} {r.save_per_s / r.copy_per_s:7.3f} "
                     f"{r.restore_per_s / 1e6:11.1f} {r.restore_per_s / r.copy_per_s:7.3f} "
                     f"{r.entries:9d}")
    return "\n".join(lines)


def _grouped_bars(axes, groups, names, value, tick_labels) -> None:
    """One bar per layout name within each group; `value(group, name)` gives its height."""
    width = 0.8 / max(1, len(names))
    for offset, name in enumerate(names):
        axes.bar([i + offset * width for i in range(len(groups))],
                 [value(group, name) for group in groups], width, label=name)
    axes.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(groups))])
    axes.set_xticklabels(tick_labels, fontsize=8)
    axes.legend()


def _plot(path: str, results, front_end) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install 'its_core[plot]'") from None
    layouts = [r for r in results if r.layout not in ("ceiling", "reference")]
    names = sorted({r.layout for r in layouts}, key=LAYOUTS.index)
    figure, (speed, memory) = plt.subplots(1, 2, figsize=(12, 4.5))
    labels = sorted({(r.workload, r.pattern) for r in layouts})
    _grouped_bars(speed, labels, names,
                  lambda label, name: next((r.batch_per_s / 1e6 for r in layouts
                                            if (r.workload, r.pattern, r.layout)
                                            == (*label, name)), 0),
                  [f"{w}\n{p}" for w, p in labels])
    speed.set_ylabel("batch translations (M/s)")
    speed.set_title("Translation throughput")
    workloads = sorted({r.workload for r in layouts})
    _grouped_bars(memory, workloads, names,
                  lambda workload, name: next((r.nbytes / 2**20 for r in layouts
                                               if (r.workload, r.layout) == (workload, name)), 0),
                  workloads)
    memory.set_yscale("log")
    memory.set_ylabel("memory footprint (MiB, log)")
    memory.set_title("Memory")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def _bench(args) -> int:
    from its_core import bench

    layouts = args.layouts
    if args.devices is not None or args.events is not None or args.sparse:
        workloads = [Workload("custom", args.devices or 1024, args.events or 32,
                              sparse=args.sparse)]
    else:
        workloads = [WORKLOADS[name] for name in args.workloads]
    patterns = PATTERNS if args.pattern == "both" else (args.pattern,)
    steps = sum(len(patterns) * (len(w.layouts(layouts)) + 2) + len(w.layouts(layouts))
                for w in workloads)
    progress = _progress_bar(steps)
    results, front_end = [], []
    for workload in workloads:
        results += bench.run_workload(workload, layouts, patterns, args.pairs, args.repeat,
                                      args.seed, progress=progress)
        for layout in workload.layouts(layouts):
            front_end.append(bench.run_front_end(workload, layout, args.repeat, args.seed))
            progress()
    print(format_table(results))
    print()
    print(format_front_end(front_end))
    if args.json:
        with open(args.json, "w") as stream:
            json.dump({"machine": bench.machine_info(), "results": bench.as_json(results),
                       "front_end": [vars(r) for r in front_end],
                       "arguments": {k: v for k, v in vars(args).items() if k != "func"}},
                      stream, indent=2)
    if args.plot:
        _plot(args.plot, results, front_end)
    return 0


def _dump(args) -> int:
    from its_core import dump
    return dump.main(args.image, args.base, args.registers, args.json, sys.stdout)


def _replay(args) -> int:
    from its_core import replay
    return replay.main(args.trace, args.json, sys.stdout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="its-core", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="measure translation throughput per layout",
                                description="Measure batch and scalar translation for each "
                                "layout on the standard workloads, against a bare-loop "
                                "ceiling and the pure-Python reference model.")
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
    bench.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    bench.add_argument("--plot", metavar="PATH",
                       help="also draw throughput and memory by layout as a PNG (needs matplotlib)")
    bench.set_defaults(func=_bench)

    dump = commands.add_parser(
        "dump", help="decode a saved guest-memory image",
        description="Decode a guest-memory image plus the register state ITS.save() returned "
        "(as JSON) into devices, events, collections and pending LPIs. A corrupt image is "
        "reported with what is wrong and where (exit status 2).")
    dump.add_argument("image", help="raw guest memory, starting at --base")
    dump.add_argument("--base", type=lambda text: int(text, 0), default=0,
                      help="guest-physical address of the image's first byte (default 0)")
    dump.add_argument("--registers", required=True, metavar="REGS.json",
                      help="the register state saved with the image")
    dump.add_argument("--json", action="store_true", help="machine-readable output")
    dump.set_defaults(func=_dump)

    replay = commands.add_parser(
        "replay", help="run a recorded trace of MMIO writes and doorbells",
        description="Replay a line-oriented trace (see its_core/replay.py for the format) "
        "against a fresh ITS and print the doorbells dropped, the LPIs delivered, failed "
        "checks and the final state. Exit status 1 when a check failed, 2 on a bad trace.")
    replay.add_argument("trace", help="the trace file")
    replay.add_argument("--json", action="store_true", help="machine-readable output")
    replay.set_defaults(func=_replay)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
