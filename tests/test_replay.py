"""its-core replay: a recorded trace reproduces what the same calls do directly."""

import json
import pathlib

import pytest

from its_core import cli, commands, registers
from its_core.replay import TraceError, replay

TRACE = pathlib.Path(__file__).parent / "data" / "bring_up_and_doorbell.trace"


def test_trace_commands_are_the_encoders_bytes():
    """The hand-written queue bytes in the trace are exactly the encoders' packets."""
    lines = {line.split()[1]: line.split()[2] for line in TRACE.read_text().splitlines()
             if line.startswith("mem 0x100")}
    assert bytes.fromhex(lines["0x10000"]) == commands.mapc(0, 1)
    assert bytes.fromhex(lines["0x10020"]) == commands.mapd(5, 0x300000, 5)
    assert bytes.fromhex(lines["0x10040"]) == commands.mapti(5, 2, 8200, 0)


def test_replay_delivers_and_lists(capsys):
    assert cli.main(["replay", str(TRACE)]) == 0
    out = capsys.readouterr().out
    assert "line 18: doorbell 5/3 dropped: NO_MAPPING" in out
    assert "line 19: CPU 1 acknowledges LPI 8200" in out
    assert "line 20: CPU 1 acknowledges nothing" in out
    assert "EventID 2 -> LPI 8200, collection 0 (CPU 1)" in out


def test_replay_json_and_state():
    its, outcome = replay(TRACE.read_text().splitlines())
    assert its.enabled and its.translate(5, 2) == (8200, 1)
    assert [(cpu, intid) for _, cpu, intid in outcome.delivered] == [(1, 8200), (1, None)]
    assert outcome.failed_checks == 0
    assert its.register("GITS_CREADR") == 3 * 32


def test_replay_json_output(capsys):
    assert cli.main(["replay", str(TRACE), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["delivered"][0] == {"line": 19, "cpu": 1, "intid": 8200}
    assert report["state"]["devices"][0]["device_id"] == 5
    assert report["command_errors"] == []


def test_failed_check_exits_1(tmp_path, capsys):
    trace = tmp_path / "check.trace"
    trace.write_text(f"its? {registers.GITS_CTLR.offset:#x} 4 = 0x1\n")
    assert cli.main(["replay", str(trace)]) == 1
    assert "check failed" in capsys.readouterr().out


@pytest.mark.parametrize("text, line", [("config cpus=2\nfrobnicate 1\n", 2),
                                        ("its 0x0 1\n", 1),
                                        ("msi 1 x\n", 1),
                                        ("mem 0x0 zz\n", 1),
                                        ("msi 1 2\nconfig cpus=1\n", 2),
                                        ("config nonsense=3\n", 1)])
def test_bad_traces_name_the_line(tmp_path, capsys, text, line):
    with pytest.raises(TraceError) as caught:
        replay(text.splitlines())
    assert caught.value.line == line
    trace = tmp_path / "bad.trace"
    trace.write_text(text)
    assert cli.main(["replay", str(trace)]) == 2
    assert f"line {line}:" in capsys.readouterr().err
