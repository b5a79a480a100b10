"""its-core replay: a recorded trace reproduces what the same calls do directly."""

import json
import pathlib

import pytest

from its_core import ITS, GuestMemory
from its_core.tools import cli
from its_core.frontend import commands
from its_core.abi import dump
from its_core.frontend import registers
from its_core.tools.replay import (_ARITY, CONFIG_DEFAULTS, EXAMPLE_TRACE, TraceError,
                                   TraceRecorder, replay)
from its_core.testing import LPI_CONFIG_DEFAULT, GuestMap

ROOT = pathlib.Path(__file__).resolve().parent.parent
TRACE = pathlib.Path(str(EXAMPLE_TRACE))            # the example that ships with the package


def test_the_example_ships_with_the_package():
    assert TRACE.is_file() and TRACE.parent.name == "data"


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
    assert "line 25: doorbell 5/3 dropped: NO_MAPPING" in out
    assert "line 26: CPU 1 acknowledges LPI 8200" in out
    assert "line 27: CPU 1 acknowledges nothing" in out
    assert "DeviceID 0x5: ITT 0x300000, 5 EventID bits, 1 event\n" in out
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
    assert report["delivered"][0] == {"line": 26, "cpu": 1, "intid": 8200}
    assert report["state"]["devices"][0]["device_id"] == 5
    assert report["state"]["enabled"] is True
    assert report["command_errors"] == []


def test_failed_check_exits_1(tmp_path, capsys):
    trace = tmp_path / "check.trace"
    trace.write_text(f"its? {registers.GITS_CTLR.offset:#x} 4 = 0x1\n")
    assert cli.main(["replay", str(trace)]) == 1
    assert "check failed" in capsys.readouterr().out


def test_numbers_take_size_suffixes():
    its, _ = replay(["config memory=0x10K base=1M cpus=0b10",
                     "mem 1_048_580 ff"])
    assert (its.memory.base, its.memory.size, its.num_cpus) == (1 << 20, 0x10 << 10, 2)
    assert its.memory.read((1 << 20) + 4, 1) == b"\xff"


@pytest.mark.parametrize("text, line", [("config cpus=2\nfrobnicate 1\n", 2),
                                        ("its 0x0 1\n", 1),
                                        ("msi 1 x\n", 1),
                                        ("mem 0x0 zz\n", 1),
                                        ("msi 1 2\nconfig cpus=1\n", 2),
                                        ("config nonsense=3\n", 1),
                                        ("# layout\nconfig layout=bogus\nmsi 1 2\n", 2),
                                        ("config cpus=0\n", 1),
                                        ("config memory=0\n", 1),
                                        ("its? 0x0 4 5 6\n", 1),
                                        ("\nack 9\n", 2),
                                        ("mem 0x10000000 00\n", 1),
                                        ("its 0x0 1 3\n", 1),
                                        ("msi 0x100000000 0\n", 1)])
def test_bad_traces_name_the_line(tmp_path, capsys, text, line):
    with pytest.raises(TraceError) as caught:
        replay(text.splitlines())
    assert caught.value.line == line
    trace = tmp_path / "bad.trace"
    trace.write_text(text)
    assert cli.main(["replay", str(trace)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"its-core replay: {trace}: line {line}: ")
    assert "Traceback" not in err


@pytest.mark.parametrize("content, line, complaint", [
    (b"\x7fELF\x02\x01\x01\x00\x00", 1, "NUL byte at offset 7"),
    (b"msi 1 2\nack 0 # caf\xe9\n", 2, "byte 0xe9 at offset 19 is not UTF-8"),
])
def test_a_binary_trace_exits_2_with_a_message(tmp_path, capsys, content, line, complaint):
    trace = tmp_path / "binary.trace"
    trace.write_bytes(content)
    assert cli.main(["replay", str(trace)]) == 2
    err = capsys.readouterr().err
    assert err == f"its-core replay: {trace}: line {line}: not a text trace ({complaint})\n"


def test_an_unreadable_trace_exits_2(tmp_path, capsys):
    assert cli.main(["replay", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"its-core replay: {tmp_path}: cannot read (")


def test_the_format_document_covers_every_verb_and_config_key():
    document = (ROOT / "docs" / "trace-format.md").read_text()
    for verb in _ARITY:
        assert f"`{verb}" in document
    for key, default in CONFIG_DEFAULTS.items():
        assert f"`{key}`" in document
    assert "bring_up_and_doorbell.trace" in document and "TraceRecorder" in document


# ------------------------------------------------------------------ recording

def _recorded_session(its):
    """A guest session driven through a TraceRecorder around `its`: bring-up, commands
    written into the queue (one of them failing), doorbells, acknowledgements."""
    recorder = TraceRecorder(its)
    base = its.memory.base
    guest = GuestMap(queue=base + 0x1_0000, device_table=base + 0x10_0000,
                     collection_table=base + 0x30_0000, config_table=base + 0x40_0000,
                     pending_tables=base + 0x80_0000, itt_base=base + 0x100_0000)
    recorder.write_memory(guest.config_table, bytes([LPI_CONFIG_DEFAULT]) * 64)
    for cpu in range(its.num_cpus):
        recorder.redistributor_write(cpu, registers.GICR_PROPBASER.offset, guest.propbaser(16), 8)
        recorder.redistributor_write(cpu, registers.GICR_PENDBASER.offset, guest.pendbaser(cpu), 8)
        recorder.redistributor_write(cpu, registers.GICR_CTLR.offset, 1, 4)
    recorder.redistributor_read(1, registers.GICR_CTLR.offset, 4)
    recorder.mmio_write(registers.GITS_BASER0.offset, guest.baser0(), 8)
    recorder.mmio_write(registers.GITS_BASER1.offset, guest.baser1(), 8)
    recorder.mmio_write(registers.GITS_CBASER.offset, guest.cbaser(), 8)
    recorder.mmio_write(registers.GITS_CTLR.offset, 1, 4)
    packets = [commands.mapc(0, 1), commands.mapc(1, 0),
               commands.mapd(9, guest.itt_address(0), 4),
               commands.mapti(9, 3, 8195, 0), commands.mapti(9, 4, 8196, 1),
               commands.mapti(12, 0, 8197, 0)]              # DeviceID 12 unmapped: an error
    for index, packet in enumerate(packets[:-1]):
        recorder.write_memory(guest.queue + 32 * index, packet)
    its.memory.write(guest.queue + 32 * 5, packets[-1])     # the guest writes shared memory
    recorder.record_memory(guest.queue + 32 * 5, 32)
    recorder.mmio_write(registers.GITS_CWRITER.offset, 32 * len(packets), 8)
    recorder.mmio_read(registers.GITS_CREADR.offset, 8)
    for device_id, event_id in ((9, 3), (9, 4), (9, 5), (12, 0)):
        recorder.msi(device_id, event_id)
    recorder.acknowledge(1)
    return recorder


def test_a_recorded_session_replays_to_the_same_state(tmp_path, capsys):
    live = ITS(GuestMemory(32 << 20, base=0x8000_0000), 2, "hash", device_bits=20)
    recorder = _recorded_session(live)
    assert recorder.lines[0] == ("config cpus=2 memory=0x2000000 base=0x80000000 layout=hash "
                                 "device_bits=20 event_bits=16 intid_bits=16 stall_on_error=0")
    assert live.pending(0).tolist() == [8196] and len(live.errors) == 1
    replayed, outcome = replay(recorder.lines)
    assert dump.describe(replayed) == dump.describe(live)
    assert list(replayed.errors) == list(live.errors)
    assert outcome.failed_checks == 0 and outcome.delivered[-1][1:] == (1, 8195)
    path = tmp_path / "session.trace"
    recorder.write(path)
    assert cli.main(["replay", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"]["pending"] == {"0": [8196], "1": []}


def test_a_recorded_reset_and_stall_replay():
    live = ITS(GuestMemory(32 << 20), 2, stall_on_error=True)
    recorder = _recorded_session(live)
    assert live.stalled
    recorder.reset()
    replayed, outcome = replay(recorder.lines)
    assert recorder.lines[0].endswith("stall_on_error=1") and replayed.stall_on_error
    assert dump.describe(replayed) == dump.describe(live) and not replayed.enabled
