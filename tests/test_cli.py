"""The its-core command line: bench on a tiny workload, dump of saved images."""

import json

import numpy as np
import pytest

from its_core import ITS, GuestMemory
from its_core.tools import cli
from its_core.frontend import commands
from its_core.testing import GuestMap, bring_up


def test_bench_help(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["bench", "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    for option in ("--layouts", "--devices", "--events", "--sparse", "--pattern", "--repeat",
                   "--seed", "--json", "--plot"):
        assert option in out


def test_bench_tiny_custom_workload_writes_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert cli.main(["bench", "--devices", "64", "--events", "4", "--pairs", "2000",
                     "--repeat", "1", "--layouts", "flat", "hash", "--pattern", "random",
                     "--json", str(path)]) == 0
    out = capsys.readouterr().out
    report = json.loads(path.read_text())
    rows = {(row["layout"], row["pattern"]) for row in report["results"]}
    assert rows == {("ceiling", "random"), ("flat", "random"), ("hash", "random"),
                    ("reference", "random")}
    assert {row["layout"] for row in report["front_end"]} == {"flat", "hash"}
    assert all(row["entries"] == 64 * 4 for row in report["front_end"])
    assert report["machine"]["numpy"] == np.__version__
    for row in report["results"]:
        assert row["batch_per_s"] > 0 and row["workload"] == "custom"
    assert "cmdq M/s" in out and "batch M/s" in out


@pytest.fixture()
def saved_image(tmp_path):
    memory = GuestMemory(32 << 20, base=0x4000_0000)
    guest = GuestMap(queue=0x4001_0000, device_table=0x4010_0000, collection_table=0x4030_0000,
                     config_table=0x4040_0000, pending_tables=0x4080_0000, itt_base=0x4100_0000)
    its = ITS(memory, 2, "flat")
    bring_up(its, guest)
    its.submit(commands.mapc(1, 1), commands.mapd(5, guest.itt_address(0), 3),
               commands.mapti(5, 2, 8200, 1), commands.mapti(5, 6, 8201, 4))
    assert its.msi(5, 2) == 0
    state = its.save()
    image = tmp_path / "memory.bin"
    memory.array.tofile(image)
    registers = tmp_path / "registers.json"
    registers.write_text(json.dumps(state))
    return image, registers, memory, guest


def test_dump_lists_devices_events_collections_and_pending(saved_image, capsys):
    image, registers, _, _ = saved_image
    assert cli.main(["dump", str(image), "--base", "0x40000000",
                     "--registers", str(registers)]) == 0
    out = capsys.readouterr().out
    assert "DeviceID 0x5: ITT 0x41000000, 3 EventID bits, 2 events" in out
    assert "EventID 2 -> LPI 8200, collection 1 (CPU 1)" in out
    assert "EventID 6 -> LPI 8201, collection 4 (unmapped)" in out
    assert "ICID 4 -> unmapped" in out
    assert "CPU 1: 8200" in out and "CPU 0: -" in out


def test_dump_json(saved_image, capsys):
    image, registers, _, _ = saved_image
    assert cli.main(["dump", str(image), "--base", str(0x4000_0000), "--registers",
                     str(registers), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["devices"] == [{"device_id": 5, "itt_addr": 0x4100_0000, "event_bits": 3,
                                   "events": [{"event_id": 2, "intid": 8200, "icid": 1, "cpu": 1},
                                              {"event_id": 6, "intid": 8201, "icid": 4,
                                               "cpu": None}]}]
    assert listing["collections"] == [{"icid": 1, "cpu": 1}, {"icid": 4, "cpu": None}]
    assert listing["pending"] == {"0": [], "1": [8200]}


def test_dump_of_a_corrupt_image_says_what_and_where(saved_image, tmp_path, capsys):
    _, registers, memory, guest = saved_image
    corrupt = memory.array.copy()
    offset = guest.itt_address(0) + 2 * 8 - memory.base
    corrupt[offset:offset + 8] = np.frombuffer((5 << 16 | 1).to_bytes(8, "little"), np.uint8)
    image = tmp_path / "corrupt.bin"
    corrupt.tofile(image)
    assert cli.main(["dump", str(image), "--base", "0x40000000",
                     "--registers", str(registers)]) == 2
    captured = capsys.readouterr()
    assert "corrupt image" in captured.err and "pINTID" in captured.err
    assert "(5, 2)" in captured.err and "Traceback" not in captured.err


def test_dump_of_missing_files_is_an_error_not_a_traceback(tmp_path, capsys):
    assert cli.main(["dump", str(tmp_path / "nothing.bin"),
                     "--registers", str(tmp_path / "nothing.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


# ------------------------------------------------------------------ dump: which input is wrong

def _dump(image, registers, base=0x4000_0000):
    return cli.main(["dump", str(image), "--base", hex(base), "--registers", str(registers)])


def test_dump_of_a_good_image_warns_about_nothing(saved_image, capsys):
    image, registers, _, _ = saved_image
    assert _dump(image, registers) == 0
    assert capsys.readouterr().err == ""


def _valid_state(registers):
    return json.loads(registers.read_text())


@pytest.mark.parametrize("content, complaint", [
    ('{\n  "GITS_CTLR": 1,\n  oops\n}', "not valid JSON (line 3, column 3"),
    ("[1, 2]", "the JSON is an array"),
    (b"\xff\xfe{}", "not a text file"),
    (lambda state: {**state, "GITS_BASER0": "0x100"}, "GITS_BASER0"),
    (lambda state: {k: v for k, v in state.items() if k != "GICR_CTLR"}, "GICR_CTLR"),
    (lambda state: {**state, "GICR_PENDBASER": [0]}, "GICR_PENDBASER"),
    (lambda state: {**state, "GITS_CTLR": "on"}, "GITS_CTLR"),
    (lambda state: {**state, "GITS_TYPER": -1}, "GITS_TYPER"),
    (lambda state: {**state, "format": "other"}, "format"),
])
def test_dump_blames_the_registers_file(saved_image, tmp_path, capsys, content, complaint):
    image, good_registers, _, _ = saved_image
    registers = tmp_path / "bad-registers.json"
    if callable(content):
        registers.write_text(json.dumps(content(_valid_state(good_registers))))
    elif isinstance(content, bytes):
        registers.write_bytes(content)
    else:
        registers.write_text(content)
    assert _dump(image, registers) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"its-core dump: {registers}: ")
    assert complaint in err and str(image) not in err and "Traceback" not in err


def test_dump_of_a_missing_registers_file_names_it(saved_image, tmp_path, capsys):
    image, _, _, _ = saved_image
    assert _dump(image, tmp_path / "absent.json") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"its-core dump: {tmp_path / 'absent.json'}: cannot read")


@pytest.mark.parametrize("make_image, complaint", [
    (lambda path: None, "cannot read the image"),
    (lambda path: path.write_bytes(b""), "the image is empty"),
    (lambda path: path.mkdir(), "cannot read the image"),
])
def test_dump_blames_the_image_file(saved_image, tmp_path, capsys, make_image, complaint):
    _, registers, _, _ = saved_image
    image = tmp_path / "bad-image.bin"
    make_image(image)
    assert _dump(image, registers) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"its-core dump: {image}: {complaint}")
    assert str(registers) not in err


def test_dump_with_a_base_that_puts_the_tables_outside_the_image(saved_image, capsys):
    image, registers, memory, guest = saved_image
    assert _dump(image, registers, base=0) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"its-core dump: {image}: GITS_BASER0: the device table at "
                          f"{guest.device_table:#x} is outside the image [0x0, {memory.size:#x})")
    assert "GITS_BASER1" in err and "GICR_PENDBASER of CPU 1" in err
    assert "is --base right?" in err


def test_dump_with_a_base_that_lands_the_tables_on_zeros_warns(saved_image, capsys):
    """Shifted by 16 MiB, every table still falls inside the image, but on zeros: an
    empty state is legal, so exit 0, with a warning pointing at --base."""
    image, registers, _, guest = saved_image
    assert _dump(image, registers, base=0x4000_0000 - (16 << 20)) == 0
    captured = capsys.readouterr()
    warnings = captured.err.splitlines()
    assert len(warnings) == 2
    for warning, register, table in zip(warnings, ("GITS_BASER0", "GITS_BASER1"),
                                        (guest.device_table, guest.collection_table)):
        assert warning.startswith(f"its-core dump: warning: {image}: {register}: no valid "
                                  f"entry in the ")
        assert f"at {table:#x}" in warning and warning.endswith("is --base right?")
    assert "devices (0):" in captured.out


def test_dump_warns_about_a_command_queue_outside_the_image(saved_image, tmp_path, capsys):
    image, good_registers, memory, _ = saved_image
    state = _valid_state(good_registers)
    state["GITS_CBASER"] = (1 << 63) | (memory.end + 0x10000)
    registers = tmp_path / "queue-outside.json"
    registers.write_text(json.dumps(state))
    assert _dump(image, registers) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith(f"its-core dump: warning: {image}: GITS_CBASER: the command "
                                   f"queue at {memory.end + 0x10000:#x} is outside the image")
    assert "DeviceID 0x5" in captured.out


def test_dump_names_a_truncated_pending_table_by_decimal_cpu(saved_image, tmp_path, capsys):
    """CPU 1's pending table starts inside the truncated image but its LPI bytes run
    past the end: the restore check reports it, with the CPU in decimal."""
    _, registers, memory, guest = saved_image
    table = guest.pending_tables + guest.pending_stride
    image = tmp_path / "truncated.bin"
    memory.array[:table - memory.base + 0x1000].tofile(image)
    assert _dump(image, registers) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"its-core dump: {image}: corrupt image: pending table of CPU 1: "
                          f"GICR_PENDBASER: pending table {table:#x} outside guest memory")


def test_dump_rejects_a_negative_base(saved_image, capsys):
    image, registers, _, _ = saved_image
    with pytest.raises(SystemExit) as stop:
        cli.main(["dump", str(image), "--base", "-1", "--registers", str(registers)])
    assert stop.value.code == 2
    assert "--base" in capsys.readouterr().err


def test_dump_counts_in_the_singular(tmp_path, capsys):
    memory = GuestMemory(32 << 20)
    its = ITS(memory, 12, "flat")
    guest = bring_up(its)
    its.submit(commands.mapc(3, 11), commands.mapd(7, guest.itt_address(0), 1),
               commands.mapti(7, 1, 8300, 3))
    assert its.msi(7, 1) == 0
    image, registers = tmp_path / "one.bin", tmp_path / "one.json"
    registers.write_text(json.dumps(its.save()))
    memory.array.tofile(image)
    assert _dump(image, registers, base=0) == 0
    out = capsys.readouterr().out
    assert f"DeviceID 0x7: ITT {guest.itt_address(0):#x}, 1 EventID bit, 1 event\n" in out
    assert "devices (1):" in out and "collections (1):" in out
    assert "EventID 1 -> LPI 8300, collection 3 (CPU 11)" in out
    assert "CPU 11: 8300" in out and "CPU 10: -" in out
