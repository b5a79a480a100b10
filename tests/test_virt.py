"""The `its_core.virt` machine: unmodified bare-metal guests (tests/guests),
built with the cross compiler, on the machine and on QEMU 7.2's virt board.

Independent expectations: what QEMU prints for the same binary (the
cross-check tests, when qemu-system-aarch64 is installed), QEMU's device tree
as `-machine dumpdtb` shows it, and the guests' own checks ("ok"/"FAIL"
lines), which test the GIC and ITS through the architecture's registers.
"""

from __future__ import annotations

import pytest

pytest.importorskip("unicorn", reason="the virt extra is not installed")
pytest.importorskip("libfdt", reason="the virt extra is not installed")

import libfdt  # noqa: E402

from its_core.virt import boot, devicetree  # noqa: E402
from its_core.virt import memory_map as mm  # noqa: E402
import virt_guests  # noqa: E402

needs_compiler = pytest.mark.skipif(virt_guests.skip_reason(compiler=True) is not None,
                                    reason=str(virt_guests.skip_reason(compiler=True)))
needs_qemu = pytest.mark.skipif(virt_guests.skip_reason(qemu=True) is not None,
                                reason=str(virt_guests.skip_reason(qemu=True)))


@pytest.fixture(scope="module")
def guest(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("guests")
    return lambda name: virt_guests.build(name, out_dir)


# -- the device tree -------------------------------------------------------------------

def _prop(fdt, path, name):
    return fdt.getprop(fdt.path_offset(path), name)


def test_device_tree_describes_the_board_as_qemu_does():
    fdt = libfdt.Fdt(devicetree.build(4, 256 << 20, devicetree.Chosen("console=x",
                                                                        (0x4800_0000, 0x4800_1000))))
    # Values from QEMU 7.2's `-M virt,gic-version=3,dumpdtb=` for -smp 4 -m 256M.
    assert _prop(fdt, "/", "compatible").as_str() == "linux,dummy-virt"
    assert _prop(fdt, "/memory@40000000", "reg") == \
        bytes.fromhex("00000000 40000000 00000000 10000000")
    assert _prop(fdt, "/intc@8000000", "reg") == bytes.fromhex(
        "00000000 08000000 00000000 00010000 00000000 080a0000 00000000 00f60000")
    assert _prop(fdt, "/intc@8000000", "#redistributor-regions").as_uint32() == 1
    assert _prop(fdt, "/intc@8000000/its@8080000", "compatible").as_str() == "arm,gic-v3-its"
    assert _prop(fdt, "/intc@8000000/its@8080000", "reg") == \
        bytes.fromhex("00000000 08080000 00000000 00020000")
    assert fdt.getprop(fdt.path_offset("/intc@8000000/its@8080000"), "msi-controller") == b""
    assert _prop(fdt, "/pl011@9000000", "interrupts") == bytes.fromhex("00000000 00000001 00000004")
    assert _prop(fdt, "/psci", "method").as_str() == "hvc"
    assert _prop(fdt, "/psci", "compatible") == b"arm,psci-1.0\0arm,psci-0.2\0arm,psci\0"
    assert _prop(fdt, "/timer", "interrupts") == bytes.fromhex(
        "00000001 0000000d 00000004 00000001 0000000e 00000004 "
        "00000001 0000000b 00000004 00000001 0000000a 00000004")
    for cpu in range(4):
        assert _prop(fdt, f"/cpus/cpu@{cpu}", "reg").as_uint32() == cpu
        assert _prop(fdt, f"/cpus/cpu@{cpu}", "enable-method").as_str() == "psci"
    assert _prop(fdt, "/chosen", "stdout-path").as_str() == "/pl011@9000000"
    assert _prop(fdt, "/chosen", "bootargs").as_str() == "console=x"
    assert _prop(fdt, "/chosen", "linux,initrd-start").as_uint64() == 0x4800_0000
    assert _prop(fdt, "/chosen", "linux,initrd-end").as_uint64() == 0x4800_1000


# -- boot placement (hw/arm/boot.c) ------------------------------------------------------

def _ram():
    import numpy as np
    return np.zeros(256 << 20, np.uint8)


def test_raw_binary_and_dtb_placement():
    info = boot.load(_ram(), b"\x00" * 4096, num_cpus=1)
    assert info.entry == mm.RAM_BASE + 0x8_0000
    assert info.dtb == mm.RAM_BASE + 128 * mm.MiB             # QEMU: 0x48000000 for 256 MiB
    assert info.initrd is None


def test_initrd_then_dtb_above_it_2mib_aligned():
    info = boot.load(_ram(), b"\x00" * 64, num_cpus=2, initrd=b"x" * 5000)
    assert info.initrd == (0x4800_0000, 0x4800_0000 + 5000)
    assert info.dtb == 0x4820_0000


def test_image_header_text_offset_is_honoured():
    header = bytearray(64)
    header[8:16] = (0x10_0000).to_bytes(8, "little")          # text_offset 1 MiB
    header[16:24] = (0x20_0000).to_bytes(8, "little")         # image_size 2 MiB
    header[56:60] = b"ARM\x64"
    info = boot.load(_ram(), bytes(header), num_cpus=1)
    assert info.entry == mm.RAM_BASE + 0x10_0000
    low_offset = bytearray(header)
    low_offset[8:16] = (0).to_bytes(8, "little")               # below QEMU's 4 KiB stub
    assert boot.load(_ram(), bytes(low_offset), num_cpus=1).entry == mm.RAM_BASE + 0x20_0000


def test_a_kernel_larger_than_ram_is_refused():
    with pytest.raises(boot.BootError, match="does not fit RAM"):
        boot.load(_ram(), b"\x00" * (300 << 20), num_cpus=1)


# -- guests on the machine -------------------------------------------------------------------

@needs_compiler
def test_hello_boots_at_el1_with_the_dtb_in_x0(guest):
    output, result = virt_guests.run_on_machine(guest("hello"))
    assert result.reason == "off" and result.exit_code == 0
    assert output == ("hello from the guest; device tree at 0x0000000048000000\n"
                      "CurrentEL 0x0000000000000004\n")


@needs_compiler
def test_an_elf_file_boots_at_its_entry_with_the_dtb_at_ram_base(guest):
    elf = guest("hello").with_suffix(".elf")
    output, result = virt_guests.run_on_machine(elf)
    assert result.reason == "off"
    assert output.startswith("hello from the guest; device tree at 0x0000000040000000\n")


@needs_compiler
def test_bootargs_reach_chosen(guest):
    from its_core.virt import Machine
    machine = Machine(smp=2, memory="64M", output=lambda data: None)
    info = machine.load(guest("hello"), append="console=ttyAMA0 quiet", initrd=b"\x5a" * 100)
    offset = info.dtb - mm.RAM_BASE
    fdt = libfdt.Fdt(bytes(machine.ram[offset:offset + 0x10000]))
    assert _prop(fdt, "/chosen", "bootargs").as_str() == "console=ttyAMA0 quiet"
    start = _prop(fdt, "/chosen", "linux,initrd-start").as_uint64()
    assert bytes(machine.ram[start - mm.RAM_BASE:start - mm.RAM_BASE + 100]) == b"\x5a" * 100
    assert _prop(fdt, "/chosen", "linux,initrd-end").as_uint64() == start + 100


#: What QEMU 7.2 answers (tests/guests/psci.S on -smp 4), one result per line.
PSCI_RESULTS = ["0x0000000000010001", "0x0000000000000002", "0x0000000000000000",
                "0xffffffffffffffff", "0x0000000000000000", "0x0000000000000001",
                "0xfffffffffffffffc", "0xfffffffffffffffe", "0xffffffffffffffff",
                "0x0000000000000000", "0xffffffffffffffff"]


@needs_compiler
def test_psci_answers_as_qemu(guest):
    output, result = virt_guests.run_on_machine(guest("psci"), smp=4)
    assert result.reason == "off"
    assert output.split() == PSCI_RESULTS


@needs_compiler
@pytest.mark.parametrize("layout", ["flat", "twolevel", "hash"])
@pytest.mark.parametrize("smp", [1, 2, 4, 8])
def test_its_lpis_and_sgis_on_every_cpu(guest, smp, layout):
    _check_its_smp(*virt_guests.run_on_machine(guest("its_smp"), smp=smp, layout=layout), smp)


def _check_its_smp(output, result, smp):
    """The its_smp guest ran to the end on `smp` CPUs and every check passed."""
    assert result.reason == "off", (result, output)
    lines = output.splitlines()
    assert lines[0] == f"cpus 0x{smp:016x}"
    assert lines[-1] == "done" and "failures 0x0000000000000000" in lines
    assert not [line for line in lines if line.startswith("FAIL")]
    checks = [line for line in lines if line.startswith("ok ")]
    # dtb, ITS from the device tree, ready, CPU_ON, INT, doorbell, MOVI, PMR (2), INVALL (2), priority order, MOVALL,
    # spinlock, SGIs
    assert len(checks) == 3 + (smp - 1) + 2 * smp + int(smp > 1) + 4 + 1 + int(smp > 1) + 1 + smp


@needs_compiler
def test_a_guest_that_never_halts_times_out(guest, tmp_path):
    spin = tmp_path / "spin.bin"
    spin.write_bytes((0x1400_0000).to_bytes(4, "little"))     # b .
    output, result = virt_guests.run_on_machine(spin, timeout=0.5)
    assert result.reason == "timeout" and result.exit_code != 0
    assert "PC 0x40080000" in result.message


def test_an_exception_without_vectors_ends_the_run_with_its_location(tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes((0x0000_0000).to_bytes(4, "little"))      # UDF #0, VBAR_EL1 still 0
    output, result = virt_guests.run_on_machine(bad, timeout=5)
    assert result.reason == "fault" and result.exit_code != 0
    assert "CPU 0: instruction fetch from unmapped address 0x200" in result.message
    assert "ESR 0x2000000" in result.message and "PC 0x40080000" in result.message


@needs_compiler
def test_svc_undefined_and_brk_reach_the_guests_vectors(guest):
    output, result = virt_guests.run_on_machine(guest("exceptions"))
    assert result.reason == "off"
    # ESR and ELR as QEMU 7.2 gives them (also cross-checked below).
    assert output.splitlines() == [
        "ESR 0x0000000056000042 ELR-_start 0x0000000000000018",   # SVC: the next one
        "ESR 0x0000000002000000 ELR-_start 0x0000000000000018",   # UDF: itself
        "ESR 0x00000000f2000003 ELR-_start 0x000000000000001c",   # BRK: itself
        "done"]


# -- the cross-check against QEMU -----------------------------------------------------------

@needs_compiler
@needs_qemu
@pytest.mark.parametrize("name,smp", [("hello", 1), ("psci", 4), ("exceptions", 1),
                                      ("its_smp", 1), ("its_smp", 2), ("its_smp", 4),
                                      ("its_smp", 8)])
def test_same_output_as_qemu(guest, name, smp):
    binary = guest(name)
    ours, result = virt_guests.run_on_machine(binary, smp=smp)
    assert result.reason == "off"
    assert ours == virt_guests.run_on_qemu(binary, smp=smp)


@needs_compiler
@needs_qemu
def test_a_migrated_run_prints_what_qemu_prints_unmigrated(guest):
    """QEMU does not migrate: it gets the newline up front and the guest goes
    on; the migrated run must print exactly the same."""
    ours, result = _migrate(guest("migrate"), 4, "twolevel", "hash", memory="256M")
    assert result.reason == "off"
    assert ours == virt_guests.run_on_qemu(guest("migrate"), smp=4, uart_input=b"\n")


# -- hostile guests ---------------------------------------------------------------------------

@needs_compiler
@pytest.mark.parametrize("layout", ["flat", "twolevel", "hash"])
def test_a_hostile_guest_is_reported_not_fatal(guest, layout):
    output, result = virt_guests.run_on_machine(guest("hostile"), smp=2, layout=layout,
                                                memory="64M")
    assert result.reason == "off", result
    assert output.endswith("survived\n")


@needs_compiler
@needs_qemu
def test_the_hostile_guest_survives_qemu_too(guest):
    assert virt_guests.run_on_qemu(guest("hostile"), smp=2).endswith("survived\n")


# -- migration ---------------------------------------------------------------------------------

def _migrate(binary, smp, first, second, memory="64M", gic_version="3"):
    """Run `binary` to its MIGRATE line in `first`, save, restore in `second`,
    feed the newline, run to the end; the whole UART output and the result."""
    from its_core.virt import Machine
    output = bytearray()
    machine = Machine(smp=smp, layout=first, output=output.extend, memory=memory,
                      gic_version=gic_version)
    machine.load(binary)
    paused = machine.run(timeout=60, pause=lambda: b"MIGRATE\n" in output)
    assert paused.reason == "paused", (paused, output.decode())
    state = machine.save()
    restored = Machine.restore(state, layout=second, output=output.extend)
    assert restored.its.layout == second
    restored.uart.feed(b"\n")
    result = restored.run(timeout=60)
    return output.decode(), result


def _check_migrated(output, result, smp):
    assert result.reason == "off", (result, output)
    lines = output.splitlines()
    assert lines[0] == f"cpus 0x{smp:016x}"
    assert lines[1] == "ok GIC and ITS found in the device tree, ITS at 0x0000000008080000"
    assert lines[2:4] == ["MIGRATE", "resumed"]
    assert not [line for line in lines if line.startswith("FAIL")], output
    assert len([line for line in lines if line.startswith("ok ")]) == 2 * smp + 3
    assert lines[-2:] == ["failures 0x0000000000000000", "done"]


@needs_compiler
@pytest.mark.parametrize("first,second", [(a, b) for a in ("flat", "twolevel", "hash")
                                          for b in ("flat", "twolevel", "hash")])
def test_migration_with_lpis_pending_on_every_cpu(guest, first, second):
    _check_migrated(*_migrate(guest("migrate"), 4, first, second), smp=4)


@needs_compiler
@pytest.mark.parametrize("gic_version", ["4.0", "4.1"])
def test_migration_of_a_gicv4_machine(guest, gic_version):
    """The same guest on a GICv4 machine: its ITS saves its-core-rev1 (16-byte
    ITEs in the guest's ITT) and the restored machine has the 256 KiB stride."""
    _check_migrated(*_migrate(guest("migrate"), 4, "flat", "hash", gic_version=gic_version),
                    smp=4)


@needs_compiler
@pytest.mark.parametrize("smp", [1, 2, 8])
def test_migration_on_1_to_8_cpus(guest, smp):
    _check_migrated(*_migrate(guest("migrate"), smp, "hash", "flat"), smp=smp)


def test_restore_refuses_what_save_did_not_make():
    from its_core.virt import Machine
    with pytest.raises(ValueError, match="its-core-virt-1"):
        Machine.restore({"format": "something else"})
    state = Machine(smp=2, memory="64M", output=lambda data: None).save()
    with pytest.raises(ValueError, match="lacks gic"):
        Machine.restore({key: value for key, value in state.items() if key != "gic"})
    with pytest.raises(ValueError, match="ram is uint8"):
        Machine.restore({**state, "ram": state["ram"][:4096]})
    with pytest.raises(ValueError, match="1 CPUs saved for smp = 2"):
        Machine.restore({**state, "cpus": state["cpus"][:1]})


# -- the command line --------------------------------------------------------------------------

def _cli(*args, timeout=120):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "its_core.tools.cli", "run", *args],
                          capture_output=True, text=True, timeout=timeout)


@needs_compiler
def test_cli_run_migrates_on_text(guest):
    completed = _cli(str(guest("migrate")), "--smp", "4", "--memory", "64M",
                     "--migrate-on", "MIGRATE", "--timeout", "60")
    assert completed.returncode == 0, completed.stderr
    _check_migrated(completed.stdout, type("Off", (), {"reason": "off"})(), smp=4)
    assert "1 migration" in completed.stderr


@needs_compiler
def test_cli_run_migrates_every_n_instructions(guest):
    completed = _cli(str(guest("migrate")), "--smp", "2", "--memory", "64M",
                     "--migrate-on", "MIGRATE", "--migrate-every", "40000", "--timeout", "100")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines()[-2:] == ["failures 0x0000000000000000", "done"]
    migrations = int(completed.stderr.split("its-core run: ")[1].split()[0])
    assert migrations >= 3


def test_cli_run_reports_a_timeout_with_the_pc(tmp_path):
    spin = tmp_path / "spin.bin"
    spin.write_bytes((0x1400_0000).to_bytes(4, "little"))
    completed = _cli(str(spin), "--timeout", "0.5")
    assert completed.returncode == 3
    assert "timeout" in completed.stderr and "PC 0x40080000" in completed.stderr


def test_cli_run_reports_a_missing_kernel(tmp_path):
    completed = _cli(str(tmp_path / "missing.bin"))
    assert completed.returncode == 2 and "missing.bin" in completed.stderr


@needs_compiler
@pytest.mark.parametrize("smp", [1, 4])
def test_its_smp_passes_while_migrated_every_100k_instructions(guest, smp):
    completed = _cli(str(guest("its_smp")), "--smp", str(smp), "--memory", "64M",
                     "--migrate-every", "100000", "--timeout", "200", timeout=300)
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert not [line for line in lines if line.startswith("FAIL")], completed.stdout
    assert lines[-2:] == ["failures 0x0000000000000000", "done"]
    assert int(completed.stderr.split("its-core run: ")[1].split()[0]) >= 2



# -- the guest's environment: bootargs and the initrd ---------------------------------------

ENV_APPEND = "console=ttyAMA0 test=env"
ENV_INITRD = b"stage=2 seed=1234"


@needs_compiler
def test_the_guest_reads_bootargs_and_its_initrd(guest, tmp_path):
    initrd = tmp_path / "initrd.txt"
    initrd.write_bytes(ENV_INITRD)
    completed = _cli(str(guest("env")), "--append", ENV_APPEND, "--initrd", str(initrd),
                     "--timeout", "30")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines() == [
        f"bootargs: {ENV_APPEND}",
        "initrd start 0x0000000048000000",                  # RAM + 128 MiB, as QEMU
        f"initrd end 0x{0x4800_0000 + len(ENV_INITRD):016x}",
        "device tree above the initrd: 0x0000000000000001",
        f"initrd: {ENV_INITRD.decode()}"]


@needs_compiler
@needs_qemu
def test_the_environment_is_where_qemu_puts_it(guest, tmp_path):
    initrd = tmp_path / "initrd.txt"
    initrd.write_bytes(ENV_INITRD)
    ours, result = virt_guests.run_on_machine(guest("env"), append=ENV_APPEND, initrd=initrd)
    assert result.reason == "off"
    assert ours == virt_guests.run_on_qemu(guest("env"), extra=("-append", ENV_APPEND,
                                                                "-initrd", str(initrd)))


def test_irouter_keeps_only_its_architected_fields():
    from its_core.virt import Machine
    gic = Machine(smp=2, memory="64M", output=lambda data: None).gic
    irouter_33 = 0x6000 + 8 * 33
    gic.distributor_write(irouter_33, 8, (1 << 64) - 1)
    # Aff3 [39:32], Interrupt_Routing_Mode [31], Aff2.Aff1.Aff0 [23:0]; RES0 elsewhere.
    assert gic.distributor_read(irouter_33, 8) == 0x0000_00FF_80FF_FFFF


@needs_compiler
def test_an_elf_segment_larger_than_ram_is_refused_before_it_is_read(guest):
    import struct
    elf = bytearray(guest("hello").with_suffix(".elf").read_bytes())
    phoff = struct.unpack_from("<Q", elf, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for index in range(phnum):
        header = phoff + index * phentsize
        if struct.unpack_from("<I", elf, header)[0] == 1:          # PT_LOAD
            struct.pack_into("<Q", elf, header + 0x28, 1 << 40)    # p_memsz: 1 TiB
            break
    with pytest.raises(boot.BootError, match="does not fit RAM"):
        boot.load(_ram(), bytes(elf), num_cpus=1)


# -- the GICv4 machine (gic_version "4.0" / "4.1") -----------------------------------------

#: QEMU 7.2 `-M virt,gic-version=4,virtualization=on -smp 4 -m 256M,dumpdtb=`: the GIC
#: node's reg (GICD, then the whole redistributor region) and the ITS's reg, as bytes.
QEMU_V4_GIC_REG = bytes.fromhex(
    "00000000 08000000 00000000 00010000 00000000 080a0000 00000000 00f60000")
QEMU_V4_ITS_REG = bytes.fromhex("00000000 08080000 00000000 00020000")


def _node_properties(fdt, path):
    offset = fdt.path_offset(path)
    found, prop = {}, fdt.first_property_offset(offset, quiet=[libfdt.FDT_ERR_NOTFOUND])
    while prop >= 0:
        item = fdt.get_property_by_offset(prop)
        found[item.name] = bytes(item)
        prop = fdt.next_property_offset(prop, quiet=[libfdt.FDT_ERR_NOTFOUND])
    return found


def _v4_machine(smp=2, gic_version="4.0"):
    from its_core.virt import Machine
    return Machine(smp=smp, memory="64M", output=lambda data: None, gic_version=gic_version)


def _mmio(machine, name):
    """The (read, write) callbacks of region `name` as CPU 0 sees them, taking
    guest-physical addresses."""
    for region, read, write in machine.mmio_regions(0):
        if region.name == name:
            return (lambda address, size: read(None, address - region.base, size, None),
                    lambda address, size, value: write(None, address - region.base, size,
                                                       value, None))
    raise AssertionError(name)


def test_gicv4_device_tree_is_qemus_gic_version_4_tree():
    """The GIC node QEMU emits for gic-version=4: the same reg as GICv3 (the whole
    region, no redistributor-stride property: Linux learns the stride from
    GICR_TYPER.VLPIS) and a 128 KiB ITS."""
    fdt = libfdt.Fdt(devicetree.build(4, 256 << 20))
    gic = _node_properties(fdt, "/intc@8000000")
    assert gic["reg"] == QEMU_V4_GIC_REG
    assert "redistributor-stride" not in gic
    assert gic["compatible"] == b"arm,gic-v3\0"
    assert _prop(fdt, "/intc@8000000", "#redistributor-regions").as_uint32() == 1
    assert _prop(fdt, "/intc@8000000/its@8080000", "reg") == QEMU_V4_ITS_REG


@needs_qemu
def test_gicv4_device_tree_matches_qemus_dump(tmp_path):
    """Against QEMU itself: every property of the GIC and ITS nodes, except the
    maintenance interrupt (QEMU needs virtualization=on for gic-version=4; this
    machine has no EL2) and the phandle numbers."""
    import subprocess
    dumped = tmp_path / "qemu.dtb"
    subprocess.run([virt_guests.QEMU, "-M", f"virt,gic-version=4,virtualization=on,"
                    f"dumpdtb={dumped}", "-cpu", "max", "-smp", "4", "-m", "256M",
                    "-nographic"], capture_output=True, timeout=60, check=True)
    qemu = libfdt.Fdt(dumped.read_bytes())
    ours = libfdt.Fdt(devicetree.build(4, 256 << 20))
    for path in ("/intc@8000000", "/intc@8000000/its@8080000"):
        expected = _node_properties(qemu, path)
        assert expected.pop("interrupts", None) == bytes.fromhex("00000001 00000009 00000004") \
            or path.endswith("its@8080000")
        got = _node_properties(ours, path)
        expected.pop("phandle"), got.pop("phandle")
        assert got == expected, path


@pytest.mark.parametrize("gic_version", ["4.0", "4.1"])
def test_gicv4_redistributors_are_256_kib_apart_with_the_vlpi_frame(gic_version):
    machine = _v4_machine(smp=2, gic_version=gic_version)
    read, write = _mmio(machine, "gicr")
    # RD_base(1) = 0x080A0000 + 0x40000; its VLPI frame at + 0x20000 (QEMU's stride).
    typer_1 = read(0x080E_0008, 8)
    assert typer_1 >> 32 == 1 and (typer_1 >> 8) & 0xFFFF == 1      # Affinity, Processor_Number
    assert typer_1 & 0b10010 == 0b10010                              # VLPIS, Last
    assert read(0x080A_0008, 8) & 0b10010 == 0b00010                 # CPU 0: VLPIS, not Last
    # PA 0x41234000 and IDbits (4.0) / Size (4.1) 15: both layouts keep these bits.
    vpropbaser = 0x4123_4000 | 15
    write(0x0810_0070, 8, vpropbaser)                                # RD_base(1) + 0x20070
    assert read(0x0810_0070, 8) == vpropbaser
    assert machine.redistributors.virtual.read_vpropbaser(1) == vpropbaser
    assert read(0x080C_0070, 8) == 0                                 # CPU 0's VLPI frame
    assert machine.redistributors.virtual.read_vpropbaser(0) == 0
    # PIDR2 ArchRev 4 in the distributor and both RD_base frames; GICD_TYPER.DVIS.
    gicd_read, _ = _mmio(machine, "gicd")
    assert gicd_read(0x0800_FFE8, 4) == 0x4B
    assert read(0x080A_FFE8, 4) == 0x4B and read(0x080E_FFE8, 4) == 0x4B
    assert gicd_read(0x0800_0004, 4) >> 18 & 1 == 1
    # CPU 1's SGI frame is at RD_base(1) + 0x10000.
    write(0x080F_0100, 4, 1 << 3)                                    # GICR_ISENABLER0: SGI 3
    assert machine.gic.private[1].enabled == 1 << 3 and machine.gic.private[0].enabled == 0


def test_gicv3_machine_keeps_the_128_kib_stride_and_archrev_3():
    from its_core.virt import Machine
    machine = Machine(smp=2, memory="64M", output=lambda data: None)
    read, _ = _mmio(machine, "gicr")
    assert read(0x080C_0008, 8) >> 32 == 1 and read(0x080C_0008, 8) & 0b10 == 0   # CPU 1
    assert read(0x080A_FFE8, 4) == 0x3B
    gicd_read, _ = _mmio(machine, "gicd")
    assert gicd_read(0x0800_0004, 4) >> 18 & 1 == 0


def test_gicv4_machine_size_and_version_are_checked():
    from its_core.virt import Machine
    assert mm.max_cpus("4.0") == mm.max_cpus("4.1") == 61 and mm.max_cpus("3") == 123
    with pytest.raises(ValueError, match="smp must be in 1..61"):
        Machine(smp=62, memory="64M", gic_version="4.1")
    with pytest.raises(ValueError, match="gic_version"):
        Machine(smp=1, memory="64M", gic_version="4")
    machine = _v4_machine(smp=61)
    assert machine.its.gic_version == machine.redistributors.gic_version == "4.0"
    state = machine.save()
    assert state["gic_version"] == "4.0" and state["its"]["format"] == "its-core-rev1"
    restored = Machine.restore(state, output=lambda data: None)
    assert restored.gic_version == "4.0" and restored.gicr_stride == 0x40000


@needs_compiler
@pytest.mark.parametrize("gic_version", ["4.0", "4.1"])
@pytest.mark.parametrize("smp", [1, 2, 4])
def test_its_lpis_and_sgis_on_a_gicv4_machine(guest, smp, gic_version):
    """The unmodified GICv3 guest (it finds the stride from GICR_TYPER.VLPIS, as
    Linux does) takes its LPIs and SGIs on every CPU of a GICv4 machine."""
    _check_its_smp(*virt_guests.run_on_machine(guest("its_smp"), smp=smp,
                                                gic_version=gic_version), smp)


@needs_compiler
def test_cli_run_gic_version(guest):
    completed = _cli(str(guest("its_smp")), "--smp", "2", "--memory", "64M",
                     "--gic-version", "4.1", "--timeout", "100")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines()[-2:] == ["failures 0x0000000000000000", "done"]
    migrated = _cli(str(guest("migrate")), "--smp", "2", "--memory", "64M", "--gic-version",
                    "4.0", "--migrate-on", "MIGRATE", "--timeout", "100")
    _check_migrated(migrated.stdout, type("Off", (), {"reason": "off"})(), smp=2)
    assert "1 migration" in migrated.stderr
    too_many = _cli(str(guest("its_smp")), "--gic-version", "4.0", "--smp", "62")
    assert too_many.returncode == 2 and "smp must be in 1..61" in too_many.stderr


@needs_compiler
@pytest.mark.parametrize("gic_version", ["4.0", "4.1"])
def test_a_hostile_guest_survives_a_gicv4_machine(guest, gic_version):
    """The hostile guest writes all ones to CPU 0's 256 KiB of frames here: RD_base,
    SGI_base, the VLPI frame (VPENDBASER with Valid and every other bit) and the
    reserved frame."""
    output, result = virt_guests.run_on_machine(guest("hostile"), smp=2, memory="64M",
                                                gic_version=gic_version)
    assert result.reason == "off", result
    assert output.endswith("survived\n")
