"""The virt machine's cost (docs/virt.md): guest instructions per second with the
machine's hooks beside bare unicorn on the same loop, MMIO exits and
interrupts per second, and one migration of a 256 MiB guest with 64 K mapped
LPIs.  Needs the virt extra and aarch64-linux-gnu-gcc (skipped otherwise).

Groups: ``virt-loop`` (the machine and bare unicorn, 50 M instructions),
``virt-exits`` (200 000 MMIO reads; 20 000 self-SGIs taken and EOIed),
``virt-migration`` (save + restore, 256 MiB, 65 536 mapped events).
"""

import dataclasses
import sys
from pathlib import Path

import pytest

pytest.importorskip("unicorn")
pytest.importorskip("libfdt")

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
import virt_guests  # noqa: E402

from its_core.testing import GuestMap, random_state  # noqa: E402
from its_core.virt import Machine  # noqa: E402
from its_core.virt import bench as virt_bench  # noqa: E402
from its_core.virt import memory_map as mm  # noqa: E402

pytestmark = pytest.mark.skipif(virt_guests.skip_reason(compiler=True) is not None,
                                reason=str(virt_guests.skip_reason(compiler=True)))
LOOP_INSTRUCTIONS = 2 * 25_000_000
MMIO_READS = 200_000
SGIS = 20_000


@pytest.fixture(scope="module")
def guest(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("bench-guests")
    return lambda name: virt_guests.build(name, out_dir)


def _machine_run(binary):
    output = bytearray()
    machine = Machine(smp=1, memory="64M", output=output.extend)
    machine.load(binary)
    result = machine.run(timeout=600)
    assert result.reason == "off", result
    return output


def _bare_unicorn(binary, mmio=False):
    """The same guest on a bare unicorn instance: no hooks but a constant-
    returning MMIO callback with `mmio` (unicorn's own MMIO cost); it stops at
    the HVC of system_off (`its_core.virt.bench` does the same for its table)."""
    instructions = 3 * MMIO_READS if mmio else LOOP_INSTRUCTIONS
    virt_bench._on_bare_unicorn(binary.read_bytes(), instructions + 100, mmio)


def test_loop_on_the_machine(benchmark, guest):
    benchmark.group = "virt-loop"
    benchmark.extra_info["instructions"] = LOOP_INSTRUCTIONS
    benchmark.pedantic(_machine_run, (guest("bench_loop"),), rounds=3, iterations=1)


def test_loop_on_bare_unicorn(benchmark, guest):
    benchmark.group = "virt-loop"
    benchmark.extra_info["instructions"] = LOOP_INSTRUCTIONS
    benchmark.pedantic(_bare_unicorn, (guest("bench_loop"),), rounds=3, iterations=1)


def test_mmio_exits(benchmark, guest):
    benchmark.group = "virt-exits"
    benchmark.extra_info["exits"] = MMIO_READS
    benchmark.pedantic(_machine_run, (guest("bench_mmio"),), rounds=3, iterations=1)


def test_interrupts_taken(benchmark, guest):
    benchmark.group = "virt-exits"
    benchmark.extra_info["interrupts"] = SGIS
    output = benchmark.pedantic(_machine_run, (guest("bench_irq"),), rounds=3, iterations=1)
    assert output.decode() == f"interrupts 0x{SGIS:016x}\n"


def _at_ram(guest_map: GuestMap) -> GuestMap:
    """`guest_map` with every table moved up to guest RAM."""
    fields = {field.name: getattr(guest_map, field.name) + mm.RAM_BASE
              for field in dataclasses.fields(guest_map)
              if field.name in ("queue", "device_table", "level2_tables", "collection_table",
                                "config_table", "pending_tables", "itt_base")}
    return dataclasses.replace(guest_map, **fields)


@pytest.mark.parametrize("layout", ["flat", "hash"])
def test_migration_of_256_mib_with_64k_lpis(benchmark, layout):
    machine = Machine(smp=4, memory="256M", layout=layout, output=lambda data: None)
    random_state(machine.its, 2048, 32, guest=_at_ram(GuestMap(itt_stride=0x100)),
                 num_collections=4)
    assert machine.its.tables.num_events == 65536
    benchmark.group = "virt-migration"
    benchmark.extra_info["events"] = 65536

    def migrate():
        return Machine.restore(machine.save(), layout=layout, output=lambda data: None)

    restored = benchmark.pedantic(migrate, rounds=3, iterations=1)
    assert restored.its.tables.num_events == 65536


def test_mmio_exits_on_bare_unicorn(benchmark, guest):
    benchmark.group = "virt-exits"
    benchmark.extra_info["exits"] = MMIO_READS
    benchmark.pedantic(_bare_unicorn, (guest("bench_mmio"), True), rounds=3, iterations=1)
