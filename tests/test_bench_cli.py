"""its-core bench: the matplotlib check before measuring, --json - and --json PATH,
the ratio columns and their legends, and the --plot picture."""

import json
import re
import sys

import pytest

from its_core.tools import bench
from its_core.tools import cli
from its_core.tools.bench import FrontEndResult, Result, format_ratio
from its_core.tools.workloads import PATTERNS

TINY_RUN = ["bench", "--layouts", "flat", "hash", "--workloads", "dense-1k", "--pairs", "2000",
            "--repeat", "1", "--no-virt"]
RESULT_KEYS = {"workload", "layout", "pattern", "batch_per_s", "scalar_per_s", "nbytes",
               "build_s", "extra", "ns_per_translation", "x_ceiling", "x_checked",
               "x_reference"}
FRONT_END_KEYS = {"workload", "layout", "commands_per_s", "save_per_s", "restore_per_s",
                  "copy_per_s", "entries", "nbytes", "save_x_copy", "restore_x_copy",
                  "save_bytes", "restore_bytes", "save_fill_s", "restore_fill_s",
                  "save_x_fill", "restore_x_fill"}


@pytest.fixture()
def measurements_run(monkeypatch):
    """The benchmark functions the CLI calls, recording whether any ran."""
    calls = []
    for name in ("run_workload", "run_front_end", "run_guest_driven"):
        monkeypatch.setattr(bench, name, lambda *args, name=name, **kwargs: calls.append(name))
    return calls


def table_rows(text: str) -> dict:
    """{(workload, pattern, layout): columns} of the translation table in `text`."""
    rows = {}
    for line in text.splitlines():
        columns = line.split()
        if len(columns) > 3 and columns[1] in PATTERNS:
            rows[tuple(columns[:3])] = columns[3:]
    return rows


def test_plot_without_matplotlib_stops_before_measuring(monkeypatch, tmp_path, measurements_run):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SystemExit) as stop:
        cli.main([*TINY_RUN, "--plot", str(tmp_path / "bench.png")])
    message = str(stop.value.code)
    assert "matplotlib" in message and "pip install" in message and "\n" not in message
    assert measurements_run == []
    assert not (tmp_path / "bench.png").exists()


def test_unwritable_output_stops_before_measuring(tmp_path, measurements_run):
    with pytest.raises(SystemExit) as stop:
        cli.main([*TINY_RUN, "--json", str(tmp_path / "missing" / "bench.json")])
    assert "no such directory" in str(stop.value.code)
    assert measurements_run == []


@pytest.fixture(autouse=True)
def short_guest_driven_loops(monkeypatch):
    """The guest-driven loops at a size a test can afford (the figures are not
    checked, only what they are and that the loops behaved)."""
    monkeypatch.setattr(bench, "DRIVER_COMMANDS", 300)
    monkeypatch.setattr(bench, "GUEST_CALLS", 300)


def test_json_to_stdout_and_tables_to_stderr(capsys):
    assert cli.main([*TINY_RUN, "--json", "-"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert set(report) == {"machine", "results", "front_end", "guest_driven", "virtual", "virt",
                           "arguments"}
    assert report["virt"] is None                                  # --no-virt
    virtual = report["virtual"]
    assert [(row["workload"], row["layout"]) for row in virtual] == [("dense-1k", "flat"),
                                                                      ("dense-1k", "hash")]
    for row in virtual:
        assert row["virtual_x_physical"] == pytest.approx(
            row["virtual_per_s"] / row["physical_per_s"])
        assert row["physical_x_gicv3"] == pytest.approx(
            row["physical_per_s"] / row["gicv3_per_s"])
        line = next(line for line in captured.err.splitlines()
                    if line.split()[:2] == ["dense-1k", row["layout"]] and len(line.split()) == 7)
        assert line.split()[2] == f"{row['virtual_x_physical']:.2f}"
    assert "virtual LPIs (GICv4.0 ITS, msi_batch, random pairs)" in captured.err
    driven = report["guest_driven"]
    assert [row["layout"] for row in driven] == ["flat", "hash"]
    for row in driven:
        assert row["driver_commands_per_s"] > 0 and row["msi_per_s"] > 0
        assert row["gits_read_ns"] > row["empty_call_ns"] > 0
        assert row["bulk_round_trips_per_s"] > 0
        line = next(line for line in captured.err.splitlines()
                    if line.split()[:1] == [row["layout"]] and len(line.split()) == 8)
        assert line.split()[-1] == f"{row['bulk_round_trips_per_s']:.0f}"
    assert "bulk rt/s  save() of a random small state" in captured.err
    assert "guest-driven" in captured.err and "bulk cmdq M/s" in captured.err
    assert report["machine"]["cpu_model"] and report["machine"]["cpus"] >= 1

    table = table_rows(captured.err)
    results = report["results"]
    assert {(r["layout"], r["pattern"]) for r in results} == {
        (layout, pattern) for layout in ("ceiling", "flat", "hash", "reference")
        for pattern in ("random", "sequential")}
    rates = {(r["pattern"], r["layout"]): r["batch_per_s"] for r in results}
    for row in results:
        assert set(row) == RESULT_KEYS
        assert row["x_ceiling"] == pytest.approx(
            row["batch_per_s"] / rates[row["pattern"], "ceiling"])
        assert row["x_reference"] == pytest.approx(
            row["batch_per_s"] / rates[row["pattern"], "reference"])
        checked = next(r["extra"]["checked_per_s"] for r in results
                       if r["layout"] == "ceiling" and r["pattern"] == row["pattern"])
        assert row["x_checked"] == pytest.approx(row["batch_per_s"] / checked)
        columns = table[row["workload"], row["pattern"], row["layout"]]
        assert columns[:3] == [format_ratio(row["x_ceiling"]), format_ratio(row["x_reference"]),
                               f"{row['batch_per_s'] / 1e6:.1f}"]
        assert columns[-1] == format_ratio(row["x_checked"])
    assert {r["x_ceiling"] for r in results if r["layout"] == "ceiling"} == {1.0}

    front_end = report["front_end"]
    assert [(r["workload"], r["layout"]) for r in front_end] == [("dense-1k", "flat"),
                                                                  ("dense-1k", "hash")]
    for row in front_end:
        assert set(row) == FRONT_END_KEYS and row["entries"] == 1024 * 32
        assert row["save_x_copy"] == pytest.approx(row["save_per_s"] / row["copy_per_s"])
        line = next(line for line in captured.err.splitlines()
                    if line.split()[:2] == ["dense-1k", row["layout"]])
        assert line.split()[2:4] == [format_ratio(row["save_x_copy"]),
                                     format_ratio(row["restore_x_copy"])]
        assert row["save_x_fill"] == pytest.approx(
            row["save_fill_s"] * row["save_per_s"] / row["entries"])
        assert line.split()[-2:] == [format_ratio(row["save_x_fill"]),
                                     format_ratio(row["restore_x_fill"])]
    for legend in ("x ceiling  batch rate / that of the bare-loop ceiling", "x ref      batch rate",
                   "x checked  batch rate / that of the checked ceiling",
                   "x copy     save_tables / restore_tables",
                   "x fill     the same over a numpy fill"):
        assert legend in captured.err


def test_json_to_a_file_leaves_the_tables_on_stdout(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert cli.main([*TINY_RUN, "--pattern", "random", "--json", str(path)]) == 0
    captured = capsys.readouterr()
    report = json.loads(path.read_text())
    assert len(report["results"]) == 4 and report["arguments"]["json"] == str(path)
    assert "x ceiling" in captured.out and "save x copy" in captured.out
    assert "x ceiling" not in captured.err


def test_format_ratio_keeps_two_or_three_significant_digits():
    assert [format_ratio(value) for value in (None, 345.6, 12.4, 1.0, 0.456, 0.03, 0.00016)] \
        == ["-", "346", "12", "1.00", "0.46", "0.030", "0.00016"]


def test_plot_writes_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "bench.png"
    assert cli.main([*TINY_RUN, "--pattern", "random", "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_of_a_sparse_workload_without_flat(tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    from its_core.tools import plot

    results = [Result("sparse-4k", layout, "random", rate, None, nbytes, None)
               for layout, rate, nbytes in (("ceiling", 400e6, None), ("twolevel", 50e6, 2**27),
                                            ("hash", 100e6, 2**21), ("reference", 0.5e6, None))]
    front_end = [FrontEndResult("sparse-4k", layout, 20e6, 5e6, 1e6, 4e9, 131072, 2**21)
                 for layout in ("twolevel", "hash")]
    path = tmp_path / "sparse.png"
    plot.draw(str(path), results, front_end, bench.machine_info(), 1000, 1)
    height, width, _ = imread(path).shape
    assert width > height > 0


def test_the_virt_table_when_the_extra_is_installed(capsys, monkeypatch):
    pytest.importorskip("unicorn")
    from its_core.virt import bench as virt_bench
    monkeypatch.setattr(virt_bench, "_migration", lambda: 0.125)   # 256 MiB: the benchmark's job
    TINY = [argument for argument in TINY_RUN if argument != "--no-virt"]
    assert cli.main([*TINY, "--json", "-"]) == 0
    captured = capsys.readouterr()
    virt = json.loads(captured.out)["virt"]
    assert virt["loop_machine_s"] > 0 and virt["mmio_bare_s"] > 0
    assert "virt machine" in captured.err and "MMIO exits/s, machine" in captured.err
    assert re.search(r"migration, 256 MiB, 64 K LPIs +125 ms", captured.err)


def test_sparse_rows_mark_their_unlike_ceiling(capsys):
    assert cli.main(["bench", "--layouts", "hash", "--workloads", "sparse-4k", "--pairs", "2000",
                     "--repeat", "1", "--no-virt"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines()
            if line.startswith("sparse-4k ") and line.split()[1] in PATTERNS]
    assert rows and all(line.split()[3].endswith("*") and line.split()[-1].endswith("*")
                        for line in rows)
    assert "they do no DeviceID lookup at all" in out


def test_format_bytes_counts_what_the_format_reads_and_writes():
    from its_core import ITS, GuestMemory
    from its_core.frontend import commands as C
    from its_core.testing import GuestMap, bring_up

    its = ITS(GuestMemory(64 << 20), 2, "hash")
    guest = bring_up(its, GuestMap(device_table_pages=1))
    its.submit(C.mapc(0, 1), C.mapd(3, guest.itt_address(0), 2),
               C.mapd(10, guest.itt_address(1), 2), C.mapti(3, 1, 8192, 0))
    assert not len(its.errors)
    table = 64 << 10                      # one 64 KiB page of DTEs, zeroed whole
    itts = 2 * 4 * 8                      # two ITTs of 2**2 entries, written whole
    ctes = 2 * 8                          # collection 0 and the terminator
    # Restore reads DTEs 0..3 then one more (device 10, reached by `next`),
    # device 3's ITT up to EventID 1, device 10's whole (nothing mapped).
    assert bench.format_bytes(its) == (table + itts + ctes, 5 * 8 + 2 * 8 + 4 * 8 + ctes)
