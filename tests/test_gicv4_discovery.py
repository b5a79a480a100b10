"""GICv4 discovery registers, the gic_version keyword and the VLPI frame's decoding.

Expected values are the digest's (gicv4-digest §1, §2.1, §9 "static state"),
QEMU 7.2 with gic-version=4 where it gives them; where this model differs by
design, the test says so and checks the difference.
"""

from __future__ import annotations

import pytest

import its_core
from its_core import GuestMemory
from its_core.frontend import commands as C
from its_core.frontend import registers as R
from its_core.frontend.redistributors import Redistributors

TYPER = R.GITS_TYPER_LAYOUT
GICR_TYPER = R.GICR_TYPER_LAYOUT
BASER = R.GITS_BASER_LAYOUT
#: QEMU 7.2 revision 4 (digest §1.1, §9).
QEMU_GITS_TYPER_V4 = 0x0000003F0001EFB3
QEMU_GITS_BASER2 = 0x0207000000000200
QEMU_PIDR2_V4 = 0x4B
QEMU_GICR_TYPER_CPU0_OF_1 = 0x0000000001000013


def its_of(version, num_cpus=1, **kwargs):
    return its_core.ITS(GuestMemory(1 << 20), num_cpus=num_cpus, gic_version=version, **kwargs)


@pytest.mark.parametrize("version", ["4.0", "4.1"])
def test_gits_typer_virtual_bits(version):
    typer = its_of(version).mmio_read(R.GITS_TYPER.offset, 8)
    fields = TYPER.decode(typer)
    # Virtual and VMOVP as QEMU's (bits 1 and 37 of 0x3F0001EFB3)
    assert fields["Virtual"] == TYPER["Virtual"].extract(QEMU_GITS_TYPER_V4) == 1
    assert fields["VMOVP"] == TYPER["VMOVP"].extract(QEMU_GITS_TYPER_V4) == 1
    # 4.1 (QEMU has none): VSGI and VMAPP = 1, nID = 0 (per-vLPI doorbells), SVPET = 0
    assert fields["VSGI"] == fields["VMAPP"] == (version == "4.1")
    assert fields["nID"] == 0 and fields["SVPET"] == 0
    # By design: 16-byte ITEs (QEMU 12: room for the its-core-rev1 virtual ITE,
    # docs/gicv4.md) and the ITS's own ID widths (QEMU 16/16, CIL = 1).
    assert fields["ITT_entry_size"] == 15
    assert fields["Physical"] == 1


@pytest.mark.parametrize("version", ["3", "4.0", "4.1"])
def test_iidr_revision_names_the_save_format(version):
    """GITS_IIDR.Revision: 0 (KVM's rev0) on GICv3, 1 (its-core-rev1) on GICv4;
    GITS_TYPER.ITT_entry_size 8 / 16 bytes; the rest of IIDR is KVM's identity."""
    its = its_of(version)
    iidr = R.GITS_IIDR_LAYOUT.decode(its.mmio_read(R.GITS_IIDR.offset, 4))
    assert iidr["Revision"] == (0 if version == "3" else 1)
    assert iidr["ProductID"] == R.PRODUCT_ID_KVM and iidr["Implementer"] == R.IMPLEMENTER_ARM
    typer = TYPER.decode(its.mmio_read(R.GITS_TYPER.offset, 8))
    assert typer["ITT_entry_size"] + 1 == (8 if version == "3" else 16)


def test_gicv3_its_is_unchanged():
    its = its_of("3")
    assert its.mmio_read(R.GITS_TYPER.offset, 8) == its_core.ITS(
        GuestMemory(1 << 20), num_cpus=1).mmio_read(R.GITS_TYPER.offset, 8)
    fields = TYPER.decode(its.mmio_read(R.GITS_TYPER.offset, 8))
    assert fields["Virtual"] == fields["VMOVP"] == fields["VSGI"] == fields["VMAPP"] == 0
    assert its.mmio_read(R.GITS_PIDR2.offset, 4) == 0x3B
    # BASER2 unimplemented: RAZ/WI
    its.mmio_write(R.GITS_BASER2.offset, QEMU_GITS_BASER2 | 1 << 63, 8)
    assert its.mmio_read(R.GITS_BASER2.offset, 8) == 0
    with pytest.raises(ValueError):
        its.mmio_write(R.GITS_SGIR.offset, 0, 8)               # beyond the 128 KiB region
    with pytest.raises(ValueError):
        its.redistributors.mmio_read(0, R.GICR_VPENDBASER_V40.offset, 8)


@pytest.mark.parametrize("version", ["4.0", "4.1"])
def test_baser2_describes_the_vpe_table(version):
    its = its_of(version)
    baser2 = its.mmio_read(R.GITS_BASER2_VPES.offset, 8)
    for name in ("Type", "Page_Size", "Valid", "Indirect"):
        assert BASER[name].extract(baser2) == BASER[name].extract(QEMU_GITS_BASER2), name
    # Entry_Size: QEMU's 8-byte VTE on 4.0; by design 32 bytes on 4.1 (QEMU has no
    # 4.1 ITS): room for the its-core-rev1 v4.1 VTE (docs/gicv4.md).
    entry_bytes = BASER["Entry_Size"].extract(baser2) + 1
    qemu_entry_bytes = BASER["Entry_Size"].extract(QEMU_GITS_BASER2) + 1
    assert qemu_entry_bytes == 8
    assert entry_bytes == (32 if version == "4.1" else qemu_entry_bytes)
    # By design: the project's KVM-style table attributes (QEMU resets them to 0).
    assert BASER["InnerCache"].extract(baser2) == R.Cacheability.RaWb
    # writable like BASER0/1 (Type and Entry_Size read-only), ignored while enabled
    value = BASER.encode(Valid=1, Indirect=1, Type=0, Entry_Size=0, Page_Size=0,
                         Physical_Address=0x4000 >> 12, Size=3)
    its.mmio_write(R.GITS_BASER2_VPES.offset, value, 8)
    read = BASER.decode(its.mmio_read(R.GITS_BASER2_VPES.offset, 8))
    assert (read["Valid"], read["Indirect"], read["Size"], read["Type"], read["Entry_Size"]) \
        == (1, 1, 3, R.BaserType.VPES, entry_bytes - 1)


@pytest.mark.parametrize("version", ["4.0", "4.1"])
def test_pidr2_arch_rev_4(version):
    its = its_of(version)
    assert its.mmio_read(R.GITS_PIDR2.offset, 4) == QEMU_PIDR2_V4
    assert its.redistributors.mmio_read(0, R.GICR_PIDR2_V4.offset, 4) == QEMU_PIDR2_V4


@pytest.mark.parametrize("version", ["4.0", "4.1"])
def test_gicr_typer(version):
    typer = its_of(version).redistributors.mmio_read(0, R.GICR_TYPER.offset, 8)
    fields = GICR_TYPER.decode(typer)
    qemu = GICR_TYPER.decode(QEMU_GICR_TYPER_CPU0_OF_1)
    for name in ("PLPIS", "VLPIS", "Last", "Dirty", "Processor_Number"):
        assert fields[name] == qemu[name], name
    assert fields["RVPEID"] == fields["VSGI"] == (version == "4.1")     # QEMU: 0
    # By design: DirectLPI = 1 (this model's direct LPI registers; QEMU 0) and
    # CommonLPIAff = 0 (QEMU 1).
    assert fields["DirectLPI"] == 1 and fields["CommonLPIAff"] == 0


def test_gic_version_is_validated_and_must_agree():
    mem = GuestMemory(1 << 20)
    for bad in ("4", "v4.0", 4, None, "3.0"):
        with pytest.raises(ValueError, match="gic_version"):
            its_core.ITS(mem, num_cpus=1, gic_version=bad)
        with pytest.raises(ValueError, match="gic_version"):
            Redistributors(mem, 1, gic_version=bad)
    shared = Redistributors(mem, 2, gic_version="4.1")
    with pytest.raises(ValueError, match="gic_version"):
        its_core.ITS(mem, num_cpus=2, redistributors=shared, gic_version="4.0")
    with pytest.raises(ValueError, match="gic_version"):
        its_core.ITS(mem, num_cpus=2, redistributors=shared)          # default "3"
    assert its_core.ITS(mem, num_cpus=2, redistributors=shared,
                        gic_version="4.1").redistributors is shared


@pytest.mark.parametrize("version", ["4.0", "4.1"])
def test_vlpi_frame_registers(version):
    rd = its_of(version, num_cpus=2).redistributors
    vpend, vprop = R.GICR_VPENDBASER_V40.offset, R.GICR_VPROPBASER_V40.offset
    assert vpend == R.VLPI_FRAME + 0x78 and vprop == R.VLPI_FRAME + 0x70
    assert rd.mmio_read(1, vpend, 8) == rd.mmio_read(1, vprop, 8) == 0     # digest §9
    layout = R.GICR_VPENDBASER_V41_LAYOUT if version == "4.1" else R.GICR_VPENDBASER_V40_LAYOUT
    # Valid = 0: stored, Dirty and RES0 bits read 0 (C22)
    written = layout.encode(PendingLast=1, Dirty=1) | (1 << 56 if version == "4.1" else 0)
    rd.mmio_write(1, vpend, written, 8)
    assert rd.mmio_read(1, vpend, 8) == layout.encode(PendingLast=1)
    # the 32-bit halves decode to the same register
    assert rd.mmio_read(1, vpend + 4, 4) == layout.encode(PendingLast=1) >> 32
    if version == "4.1":
        assert rd.mmio_read(0, R.GICR_VSGIPENDR.offset, 4) == 0           # Busy = 0
        rd.mmio_write(0, R.GICR_VSGIR.offset, 0xFFFF_0003, 4)
        assert rd.mmio_read(0, R.GICR_VSGIR.offset, 4) == 3
    else:
        # a GICv4.0 frame has no VSGIR / VSGIPENDR: RAZ/WI, recorded
        before = len(rd.access_errors)
        assert rd.mmio_read(0, R.GICR_VSGIPENDR.offset, 4) == 0
        assert len(rd.access_errors) == before + 1
    with pytest.raises(ValueError):
        rd.mmio_read(0, 0x4_0000, 4)                                       # beyond 256 KiB


def test_vmapp_is_unknown_to_a_gicv3_its_and_vsgi_to_a_gicv4_0_its():
    from front_end_helpers import bring_up
    for version, packet, unknown in (("3", C.vmapp(0, 0, 0, 13), True),
                                     ("4.0", C.vsgi(0, 1, 0xA0, True, True), True),
                                     ("4.0", C.invdb(0), True),
                                     ("4.0", C.vsync(0), False),
                                     ("4.1", C.invdb(0), False)):
        mem = GuestMemory(16 << 20)
        its = its_core.ITS(mem, num_cpus=1, gic_version=version)
        bring_up(its, mem, 1)
        its.submit(packet)
        codes = [error.code for error in its.errors]
        if unknown:
            assert codes == [C.E_ITS_UNKNOWN_COMMAND], version
        else:
            assert C.E_ITS_UNKNOWN_COMMAND not in codes, version
