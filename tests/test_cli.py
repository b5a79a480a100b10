"""The its-core command line: bench on a tiny workload, dump of saved images."""

import json

import numpy as np
import pytest

from its_core import ITS, GuestMemory, cli, commands
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
