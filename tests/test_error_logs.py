"""The guest-error logs are bounded: a misbehaving guest cannot exhaust host memory."""

from its_core import ITS, GuestMemory
from its_core.frontend import commands
from its_core.frontend._cmdq import CommandProcessor
from its_core.frontend.its import ACCESS_ERRORS_KEPT, CommandErrorLog
from its_core.testing import bring_up


def test_access_errors_keep_the_most_recent():
    its = ITS(GuestMemory(1 << 20), 1)
    for offset in range(0, 4 * (ACCESS_ERRORS_KEPT + 10), 4):
        its.mmio_read(0x200 + offset % 0xF000, 2)          # 2-byte reads: always invalid
    assert len(its.access_errors) == ACCESS_ERRORS_KEPT
    last = 4 * (ACCESS_ERRORS_KEPT + 9)
    assert its.access_errors[-1].offset == 0x200 + last % 0xF000
    assert its.access_errors[0].offset == 0x200 + 40 % 0xF000   # the ten oldest are gone


def test_command_error_log_keeps_the_first_and_counts_the_rest():
    its = ITS(GuestMemory(16 << 20), 1)
    bring_up(its)
    small = CommandProcessor(its.tables, its._lpi, its._window, max_errors=5)
    small.its_enabled = True
    log = CommandErrorLog(small)
    queue = its.memory.view(0x10000, 8 * 4, "<u8").reshape(8, 4)
    queue[:] = commands.encode_many("INV", device_id=[1] * 8, event_id=list(range(8)))
    creadr, stalled = small.process(0x10000, 4096, 0, 8 * 32, False)
    assert (creadr, stalled) == (8 * 32, False)
    assert len(log) == 5 and log.dropped == 3
    assert [error.offset for error in log] == [0, 32, 64, 96, 128]
    assert {error.code for error in log} == {commands.E_ITS_INV_UNMAPPED_INTERRUPT}
