"""The picture behind ``its-core bench --plot`` (needs matplotlib: the ``plot`` extra).

Top panel: each layout's batch translation rate as a fraction of the bare-loop
ceiling measured in the same run, on a log axis that also holds the ceiling
(1.0) and the pure-Python reference.  Bottom panels: MAPTI commands through
the queue, save and restore as fractions of a same-run numpy copy, and memory.
Ratios lead because they reproduce across runs; absolute rates label the
baseline bars.
"""

from __future__ import annotations

import importlib
import statistics
import textwrap

from its_core import LAYOUTS
from its_core.tools.bench import format_ratio, machine_summary, relative_rates
from its_core.core.parameters import FLAT_MAX_DEVICE_BITS

INSTALL_HINT = "pip install 'its_core[plot]' (or pip install \".[plot]\" in a checkout)"
COLOURS = {"ceiling": "#4d4d4d", "flat": "#1f77b4", "twolevel": "#ff7f0e", "hash": "#2ca02c",
           "reference": "#b0b0b0", "numpy copy": "#4d4d4d"}
LABEL_STYLE = {"rotation": 90, "fontsize": 7, "padding": 2}


def require_matplotlib() -> None:
    """Exit with a one-line message unless matplotlib imports (call before measuring)."""
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        raise SystemExit(f"its-core bench --plot needs matplotlib, which is not installed: "
                         f"{INSTALL_HINT}") from None


def _rate_label(per_second: float) -> str:
    if per_second >= 1e9:
        return f"{per_second / 1e9:.1f} G/s"
    if per_second >= 10e6:
        return f"{per_second / 1e6:.0f} M/s"
    return f"{per_second / 1e6:#.2g} M/s"


def _grouped_bars(axes, groups, series, value):
    """One bar per series name within each group, labelled on top.

    `value(group, name)` gives (height, label), or None where that series has
    no bar in the group.  Returns the x positions of those missing bars as
    (x, group, name).
    """
    width = 0.84 / len(series)
    missing = []
    for offset, name in enumerate(series):
        positions, heights, labels = [], [], []
        for index, group in enumerate(groups):
            x = index + (offset - (len(series) - 1) / 2) * width
            bar = value(group, name)
            if bar is None:
                missing.append((x, group, name))
                continue
            positions.append(x)
            heights.append(bar[0])
            labels.append(bar[1])
        if positions:
            container = axes.bar(positions, heights, width * 0.92, label=name,
                                 color=COLOURS.get(name))
            axes.bar_label(container, labels, **LABEL_STYLE)
    axes.set_xticks(range(len(groups)))
    axes.grid(axis="y", which="major", alpha=0.3)
    axes.set_axisbelow(True)
    return missing


def _translation_panel(axes, results) -> list[str]:
    """Layouts x ceiling, with the ceiling and reference; returns the workloads
    without a flat bar."""
    layouts = [name for name in LAYOUTS if any(r.layout == name for r in results)]
    series = ["ceiling", *layouts, "reference"]
    groups = list(dict.fromkeys((r.workload, r.pattern) for r in results))
    bars = {}
    for r, of_ceiling in zip(results, relative_rates(results, "ceiling")):
        label = (_rate_label(r.batch_per_s) if r.layout in ("ceiling", "reference")
                 else format_ratio(of_ceiling))
        bars[r.workload, r.pattern, r.layout] = (of_ceiling, label)
    missing = _grouped_bars(axes, groups, series, lambda group, name: bars.get((*group, name)))
    axes.set_yscale("log")
    axes.set_ylim(min(height for height, _ in bars.values()) / 3, 12)
    axes.set_xticklabels([f"{workload}\n{pattern}" for workload, pattern in groups])
    axes.set_ylabel("x ceiling (same run, log scale)")
    axes.set_title("Batch translation, as a fraction of the bare-loop ceiling "
                   "(layout bars: x ceiling; ceiling and reference bars: their own rate)",
                   fontsize=10)
    no_flat = []
    bottom = axes.get_ylim()[0]
    for x, (workload, _), name in missing:
        axes.text(x, bottom * 1.5, f"flat: n/a, > {FLAT_MAX_DEVICE_BITS}-bit DeviceIDs",
                  rotation=90, ha="center", va="bottom", fontsize=8, color=COLOURS[name])
        no_flat.append(workload)
    axes.legend(ncol=len(series), fontsize=8, loc="upper right")
    return list(dict.fromkeys(no_flat))


def _commands_panel(axes, front_end) -> None:
    layouts = [name for name in LAYOUTS if any(r.layout == name for r in front_end)]
    workloads = list(dict.fromkeys(r.workload for r in front_end))
    bars = {(r.workload, r.layout): (r.commands_per_s / 1e6, f"{r.commands_per_s / 1e6:.0f}")
            for r in front_end}
    _grouped_bars(axes, workloads, layouts, lambda workload, name: bars.get((workload, name)))
    axes.set_xticklabels(workloads)
    axes.set_ylabel("M MAPTI commands/s")
    axes.margins(y=0.2)
    axes.set_title("Command queue (MAPTI)", fontsize=10)


def _save_restore_panel(axes, front_end) -> None:
    layouts = [name for name in LAYOUTS if any(r.layout == name for r in front_end)]
    workloads = list(dict.fromkeys(r.workload for r in front_end))
    groups = [(workload, step) for workload in workloads for step in ("save", "restore")]
    bars = {}
    for r in front_end:
        bars[r.workload, "save", r.layout] = (r.save_x_copy, format_ratio(r.save_x_copy))
        bars[r.workload, "restore", r.layout] = (r.restore_x_copy,
                                                 format_ratio(r.restore_x_copy))
    for workload in workloads:
        copy = statistics.median(r.copy_per_s for r in front_end if r.workload == workload)
        for step in ("save", "restore"):
            bars[workload, step, "numpy copy"] = (1.0, _rate_label(copy))
    _grouped_bars(axes, groups, [*layouts, "numpy copy"],
                  lambda group, name: bars.get((*group, name)))
    axes.set_yscale("log")
    axes.set_ylim(min(height for height, _ in bars.values()) / 3, 20)
    axes.set_xticklabels([f"{workload}\n{step}" for workload, step in groups])
    axes.set_ylabel("x copy (same run, log scale)")
    axes.set_title("save_tables / restore_tables, as a fraction of a numpy copy "
                   "(copy bar: its own rate)", fontsize=10)
    axes.legend(ncol=len(layouts) + 1, fontsize=8, loc="upper right")


def _memory_panel(axes, results) -> None:
    layouts = [name for name in LAYOUTS if any(r.layout == name for r in results)]
    workloads = list(dict.fromkeys(r.workload for r in results if r.nbytes is not None))
    bars = {(r.workload, r.layout): (r.nbytes / 2**20, f"{r.nbytes / 2**20:.3g}")
            for r in results if r.nbytes is not None}
    _grouped_bars(axes, workloads, layouts, lambda workload, name: bars.get((workload, name)))
    axes.set_yscale("log")
    axes.set_ylim(top=max(height for height, _ in bars.values()) * 30)
    axes.set_xticklabels(workloads)
    axes.set_ylabel("MiB (log scale)")
    axes.set_title("Memory of the tables", fontsize=10)


def draw(path: str, results, front_end, machine: dict, pairs: int, repeat: int) -> None:
    """Write the PNG of one `its-core bench` run to `path`.

    `results` and `front_end` are that run's `bench.Result` and
    `bench.FrontEndResult` rows, `machine` its `bench.machine_info()`.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(15, 10.5), layout="constrained")
    panels = figure.subplot_mosaic([["translation"] * 4, ["commands", "save", "save", "memory"]],
                                   height_ratios=[1.25, 1])
    no_flat = _translation_panel(panels["translation"], results)
    _commands_panel(panels["commands"], front_end)
    _save_restore_panel(panels["save"], front_end)
    _memory_panel(panels["memory"], results)
    workloads = ", ".join(dict.fromkeys(r.workload for r in results))
    figure.suptitle(f"its-core bench: {workloads}; {pairs:,} pairs per batch call, best of "
                    f"{repeat} timed runs\n{machine_summary(machine)}", fontsize=12)
    notes = ["Ceiling: the bare, unchecked lookup loop (_ceiling.pyx) on the same pairs. "
             "Reference: the pure-Python model (its_core.reference) on the first 20 000 pairs. "
             "Ratios compare rows of one run; absolute rates move by up to \u00b130 % between "
             "runs on a shared machine."]
    if no_flat:
        notes.append(f"No flat bars for {', '.join(no_flat)}: the flat layout indexes DeviceIDs "
                     f"directly and holds at most {FLAT_MAX_DEVICE_BITS} DeviceID bits; these "
                     f"DeviceIDs are scattered over 32 bits.")
    figure.supxlabel("\n".join(textwrap.fill(note, 190) for note in notes), fontsize=8,
                     ha="left", x=0.01)
    figure.savefig(path, dpi=100)
