"""Tests of the ITS / GICR register maps against the digest's tables (sections 2, 6)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from its_core.frontend import registers as R

U64 = 2**64 - 1


def bits(hi, lo=None):
    """Mask of [hi:lo] written independently of its_core.frontend.fields."""
    lo = hi if lo is None else lo
    return ((1 << (hi - lo + 1)) - 1) << lo


# -- the map ---------------------------------------------------------------------------

EXPECTED_OFFSETS = {
    "GITS_CTLR": (0x0000, 32), "GITS_IIDR": (0x0004, 32), "GITS_TYPER": (0x0008, 64),
    "GITS_CBASER": (0x0080, 64), "GITS_CWRITER": (0x0088, 64), "GITS_CREADR": (0x0090, 64),
    **{f"GITS_BASER{n}": (0x0100 + 8 * n, 64) for n in range(8)},
    "GITS_PIDR4": (0xFFD0, 32), "GITS_PIDR5": (0xFFD4, 32), "GITS_PIDR6": (0xFFD8, 32),
    "GITS_PIDR7": (0xFFDC, 32), "GITS_PIDR0": (0xFFE0, 32), "GITS_PIDR1": (0xFFE4, 32),
    "GITS_PIDR2": (0xFFE8, 32), "GITS_PIDR3": (0xFFEC, 32),
    "GITS_CIDR0": (0xFFF0, 32), "GITS_CIDR1": (0xFFF4, 32), "GITS_CIDR2": (0xFFF8, 32),
    "GITS_CIDR3": (0xFFFC, 32),
    "GITS_TRANSLATER": (0x10040, 32),
}


def test_its_register_offsets_and_widths():
    assert {r.name: (r.offset, r.width) for r in R.ITS_REGISTERS} == EXPECTED_OFFSETS


def test_gicr_register_offsets_and_widths():
    assert {r.name: (r.offset, r.width) for r in R.GICR_REGISTERS} == {
        "GICR_CTLR": (0x0000, 32), "GICR_TYPER": (0x0008, 64),
        "GICR_SETLPIR": (0x0040, 64), "GICR_CLRLPIR": (0x0048, 64),
        "GICR_PROPBASER": (0x0070, 64), "GICR_PENDBASER": (0x0078, 64),
        "GICR_INVLPIR": (0x00A0, 64), "GICR_INVALLR": (0x00B0, 64), "GICR_SYNCR": (0x00C0, 32),
    }


@pytest.mark.parametrize("reg", list(R.ITS_REGISTERS) + list(R.GICR_REGISTERS),
                         ids=lambda r: r.name)
def test_register_invariants(reg):
    assert reg.layout.width == reg.width
    assert reg.reset & reg.res0 == 0
    assert reg.read_only & ~reg.mask == 0
    assert reg.write_mask & (reg.read_only | reg.res0) == 0
    assert reg.layout.decode(reg.reset) == reg.decode(reg.reset)
    regmap = R.ITS_REGISTERS if reg.name.startswith("GITS_") else R.GICR_REGISTERS
    assert regmap[reg.name] is reg


# -- reset values (KVM's, digest 2.2) -------------------------------------------------------

def test_reset_values_match_kvm():
    resets = R.ITS_REGISTERS.reset_values()
    assert resets["GITS_CTLR"] == 0x8000_0000
    assert resets["GITS_IIDR"] == 0x4B00_043B
    assert resets["GITS_TYPER"] == 0x1EF71
    assert resets["GITS_CBASER"] == resets["GITS_CWRITER"] == resets["GITS_CREADR"] == 0
    assert resets["GITS_BASER0"] == 0x1907_0000_0000_0600
    assert resets["GITS_BASER1"] == 0x1C07_0000_0000_0600
    assert all(resets[f"GITS_BASER{n}"] == 0 for n in range(2, 8))
    ids = {"GITS_PIDR0": 0x92, "GITS_PIDR1": 0xB4, "GITS_PIDR2": 0x3B, "GITS_PIDR3": 0,
           "GITS_PIDR4": 0x40, "GITS_PIDR5": 0, "GITS_PIDR6": 0, "GITS_PIDR7": 0,
           "GITS_CIDR0": 0x0D, "GITS_CIDR1": 0xF0, "GITS_CIDR2": 0x05, "GITS_CIDR3": 0xB1}
    assert {k: resets[k] for k in ids} == ids
    assert R.GITS_PIDR2.decode(0x3B)["ArchRev"] == 3
    # GICR: PROPBASER/PENDBASER = InnerCache RaWb (3) at [9:7], InnerShareable (1) at [11:10].
    assert R.GICR_PROPBASER.reset == R.GICR_PENDBASER.reset == 3 << 7 | 1 << 10


# -- decoding the digest's worked values --------------------------------------------------------

def test_kvm_typer_decodes():
    d = R.GITS_TYPER.decode(0x1EF71)
    assert (d["Physical"], d["ITT_entry_size"], d["ID_bits"], d["Devbits"]) == (1, 7, 15, 15)
    assert all(v == 0 for k, v in d.items()
               if k not in ("Physical", "ITT_entry_size", "ID_bits", "Devbits"))


def test_qemu_typer_decodes():
    v3 = R.GITS_TYPER.decode(0x1F_0001_EFB1)
    assert (v3["Physical"], v3["Virtual"], v3["ITT_entry_size"], v3["ID_bits"],
            v3["Devbits"], v3["CIL"], v3["CIDbits"], v3["VMOVP"]) == (1, 0, 11, 15, 15, 1, 15, 0)
    v4 = R.GITS_TYPER.decode(0x3F_0001_EFB3)
    assert (v4["Virtual"], v4["VMOVP"], v4["CIL"]) == (1, 1, 1)


def test_typer_field_positions():
    layout = R.GITS_TYPER.layout
    expected = {"Physical": bits(0), "Virtual": bits(1), "CCT": bits(2),
                "ITT_entry_size": bits(7, 4), "ID_bits": bits(12, 8), "Devbits": bits(17, 13),
                "SEIS": bits(18), "PTA": bits(19), "HCC": bits(31, 24), "CIDbits": bits(35, 32),
                "CIL": bits(36), "VMOVP": bits(37), "MPAM": bits(38), "VSGI": bits(39),
                "VMAPP": bits(40), "SVPET": bits(42, 41), "nID": bits(43), "UMSI": bits(44),
                "UMSIirq": bits(45), "INV": bits(46)}
    assert {f.name: f.mask for f in layout} == expected
    assert R.GITS_TYPER.res0 == bits(63, 47) | bits(23, 20) | bits(3)


def test_baser_reset_decodes():
    b0 = R.GITS_BASER0.decode(0x1907_0000_0000_0600)
    assert b0 == {"Size": 0, "Page_Size": 2, "Shareability": 1, "Physical_Address": 0,
                  "Entry_Size": 7, "OuterCache": 0, "Type": 1, "InnerCache": 3,
                  "Indirect": 0, "Valid": 0}
    b1 = R.GITS_BASER1.decode(0x1C07_0000_0000_0600)
    assert (b1["Type"], b1["Entry_Size"], b1["Page_Size"]) == (R.BaserType.COLLECTIONS, 7, 2)
    qemu = R.GITS_BASER0.decode(0x0107_0000_0000_0200)
    assert (qemu["Type"], qemu["Entry_Size"], qemu["Page_Size"], qemu["InnerCache"],
            qemu["Shareability"]) == (1, 7, 2, 0, 0)


def test_baser_field_positions():
    expected = {"Valid": bits(63), "Indirect": bits(62), "InnerCache": bits(61, 59),
                "Type": bits(58, 56), "OuterCache": bits(55, 53), "Entry_Size": bits(52, 48),
                "Physical_Address": bits(47, 12), "Shareability": bits(11, 10),
                "Page_Size": bits(9, 8), "Size": bits(7, 0)}
    assert {f.name: f.mask for f in R.GITS_BASER0.layout} == expected
    assert R.GITS_BASER0.res0 == 0
    assert R.GITS_BASER0.read_only == bits(58, 56) | bits(52, 48)


def test_iidr_decodes():
    assert R.GITS_IIDR.decode(0x4B00_043B) == {"Implementer": 0x43B, "Revision": 0,
                                               "Variant": 0, "ProductID": 0x4B}
    # GIC-600 in Agilex 5: 0x0201743B.
    assert R.GITS_IIDR.decode(0x0201_743B) == {"Implementer": 0x43B, "Revision": 7,
                                               "Variant": 1, "ProductID": 0x02}
    assert R.GITS_IIDR.res0 == bits(23, 20)


def test_ctlr_cbaser_cwriter_creadr_masks():
    assert {f.name: f.mask for f in R.GITS_CTLR.layout} == {"Enabled": 1, "Quiescent": 1 << 31}
    assert R.GITS_CTLR.res0 == bits(30, 1)
    assert R.GITS_CTLR.read_only == 1 << 31
    assert R.GITS_CBASER.res0 == bits(62) | bits(58, 56) | bits(52) | bits(9, 8)
    assert {f.name: f.mask for f in R.GITS_CBASER.layout} == {
        "Valid": bits(63), "InnerCache": bits(61, 59), "OuterCache": bits(55, 53),
        "Physical_Address": bits(51, 12), "Shareability": bits(11, 10), "Size": bits(7, 0)}
    for reg, flag in ((R.GITS_CWRITER, "Retry"), (R.GITS_CREADR, "Stalled")):
        assert reg.res0 == bits(63, 20) | bits(4, 1)
        assert reg.field("Offset").mask == bits(19, 5)
        assert reg.field(flag).mask == 1


def test_gicr_layouts_and_res0_masks_match_kvm():
    assert R.GICR_PROPBASER.res0 == bits(63, 59) | bits(55, 52) | bits(6, 5)
    assert R.GICR_PENDBASER.res0 == (bits(63) | bits(61, 59) | bits(55, 52) | bits(15, 12)
                                     | bits(6, 0))
    assert {f.name: f.mask for f in R.GICR_PROPBASER.layout} == {
        "IDbits": bits(4, 0), "InnerCache": bits(9, 7), "Shareability": bits(11, 10),
        "Physical_Address": bits(51, 12), "OuterCache": bits(58, 56)}
    assert R.GICR_PENDBASER.field("PTZ").mask == 1 << 62
    assert R.GICR_PENDBASER.field("Physical_Address").mask == bits(51, 16)
    ctlr = R.GICR_CTLR
    assert (ctlr.field("EnableLPIs").mask, ctlr.field("RWP").mask, ctlr.field("UWP").mask) == (
        1, 1 << 3, 1 << 31)
    typer = R.GICR_TYPER
    assert typer.field("Processor_Number").mask == bits(23, 8)
    assert typer.field("Affinity").mask == bits(63, 32)
    assert (typer.field("PLPIS").mask, typer.field("Last").mask) == (1, 1 << 4)


def test_gicr_typer_value():
    assert R.gicr_typer_value(2, 0x0001_0203, last=True) == (
        1 | 1 << 4 | 2 << 8 | 0x0001_0203 << 32)
    assert R.gicr_typer_value(0, 0) == 1
    with pytest.raises(ValueError, match="Processor_Number"):
        R.gicr_typer_value(1 << 16, 0)


# -- lookup -------------------------------------------------------------------------------------

@pytest.mark.parametrize("offset,size,name,half", [
    (0x0000, 4, "GITS_CTLR", None),
    (0x0004, 4, "GITS_IIDR", None),
    (0x0008, 8, "GITS_TYPER", None),
    (0x0008, 4, "GITS_TYPER", 0),
    (0x000C, 4, "GITS_TYPER", 1),
    (0x0080, 8, "GITS_CBASER", None),
    (0x0084, 4, "GITS_CBASER", 1),
    (0x0088, 4, "GITS_CWRITER", 0),
    (0x0090, 8, "GITS_CREADR", None),
    (0x0100, 8, "GITS_BASER0", None),
    (0x013C, 4, "GITS_BASER7", 1),
    (0xFFE8, 4, "GITS_PIDR2", None),
    (0xFFFC, 4, "GITS_CIDR3", None),
    (0x10040, 4, "GITS_TRANSLATER", None),
    (0x10040, 2, "GITS_TRANSLATER", None),
])
def test_lookup_hits(offset, size, name, half):
    access = R.lookup(offset, size)
    assert access is not None
    reg, got_half = access
    assert (reg.name, got_half) == (name, half)


@pytest.mark.parametrize("offset,size", [
    (0x0000, 8),      # CTLR is 32-bit only
    (0x0000, 2), (0x0000, 1), (0x0002, 2),
    (0x0004, 8),      # would straddle IIDR/TYPER
    (0x000C, 8),      # misaligned 64-bit
    (0x000A, 4),      # misaligned 32-bit
    (0x0010, 4), (0x0014, 4), (0x0018, 4), (0x0040, 4), (0x0048, 8),   # MPAM, STATUSR, UMSIR
    (0x0098, 8), (0x0140, 8), (0xC000, 4), (0xFFCC, 4),                 # holes, IMPDEF space
    (0xFFE8, 8), (0xFFE0, 2),                                           # ID regs 32-bit only
    (0x10000, 4), (0x10040, 8), (0x10040, 1), (0x10042, 2), (0x10044, 4),
    (0x20020, 8),                                                       # GITS_SGIR: absent
    (-4, 4), (0x0008, 0), (0x0008, 3), (0x0008, 16),
])
def test_lookup_misses(offset, size):
    assert R.lookup(offset, size) is None


@given(st.integers(-(1 << 70), 1 << 70), st.integers(-4, 32))
def test_lookup_never_raises_and_hits_are_consistent(offset, size):
    access = R.lookup(offset, size)
    if access is None:
        return
    reg, half = access
    assert size in reg.sizes and offset % size == 0
    if half is None:
        assert offset == reg.offset
    else:
        assert reg.width == 64 and size == 4 and offset == reg.offset + 4 * half


def test_lookup_gicr():
    assert R.lookup_gicr(0x0000, 4) == (R.GICR_CTLR, None)
    assert R.lookup_gicr(0x0000, 8) is None
    assert R.lookup_gicr(0x000C, 4) == (R.GICR_TYPER, 1)
    assert R.lookup_gicr(0x0070, 8) == (R.GICR_PROPBASER, None)
    assert R.lookup_gicr(0x007C, 4) == (R.GICR_PENDBASER, 1)
    assert R.lookup_gicr(0x0040, 8) == (R.GICR_SETLPIR, None)          # direct LPI registers
    assert R.lookup_gicr(0x00C0, 8) is None and R.lookup_gicr(0x0050, 8) is None


# -- writes -------------------------------------------------------------------------------------

def test_merge_half_by_hand():
    assert R.merge_half(0x1111_2222_3333_4444, 0, 0xAAAA_BBBB) == 0x1111_2222_AAAA_BBBB
    assert R.merge_half(0x1111_2222_3333_4444, 1, 0xAAAA_BBBB) == 0xAAAA_BBBB_3333_4444
    assert R.read_half(0x1111_2222_3333_4444, 1) == 0x1111_2222
    assert R.read_half(0x1111_2222_3333_4444, 0) == 0x3333_4444
    for bad in ((1 << 64, 0, 0), (0, 2, 0), (0, 0, 1 << 32), (0, 0, -1), (0, None, 0)):
        with pytest.raises(ValueError):
            R.merge_half(*bad)


@given(st.integers(0, U64), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_two_half_writes_equal_one_full_write(old, lo, hi):
    assert R.merge_half(R.merge_half(old, 0, lo), 1, hi) == hi << 32 | lo
    merged = R.merge_half(old, 1, hi)
    assert R.read_half(merged, 1) == hi and R.read_half(merged, 0) == old & 0xFFFF_FFFF


def test_generic_write_path():
    ctlr = R.GITS_CTLR
    assert ctlr.merge_write(ctlr.reset, 0xFFFF_FFFF) == 0x8000_0001   # RES0 dropped, Q kept
    assert ctlr.merge_write(0x8000_0001, 0) == 0x8000_0000
    b0 = R.GITS_BASER0
    assert b0.merge_write(b0.reset, 0) == 0x0107_0000_0000_0000           # Type/Entry_Size RO
    assert b0.merge_write(b0.reset, U64) == (                              # all other bits RW
        U64 & ~(bits(58, 56) | bits(52, 48)) | 1 << 56 | 7 << 48)
    assert R.GITS_BASER5.merge_write(0, U64) == 0                          # RAZ/WI
    assert R.GITS_TYPER.merge_write(0x1EF71, 0) == 0x1EF71                 # RO
    assert R.GITS_CBASER.merge_write(0, U64) == U64 & ~R.GITS_CBASER.res0
    assert R.GICR_CTLR.merge_write(0, 0xFFFF_FFFF) == 1                    # RWP/UWP RO
    with pytest.raises(ValueError):
        ctlr.merge_write(0, 1 << 32)


# -- BASER / CBASER helpers ----------------------------------------------------------------------

@pytest.mark.parametrize("code,size", [(0, 4096), (1, 16384), (2, 65536), (3, 65536)])
def test_baser_page_size(code, size):
    assert R.baser_page_size(code << 8) == size


def test_baser_address_4k_and_16k():
    value = 1 << 63 | 0xABCD_EF12_3000 | 0 << 8
    assert R.baser_address(value) == 0xABCD_EF12_3000
    assert R.baser_address(value | 1 << 8) == 0xABCD_EF12_3000


def test_baser_address_64k_packs_pa_51_48_in_bits_15_12():
    value = 1 << 63 | 0x1234_5678 << 16 | 0xA << 12 | 2 << 8
    assert R.baser_address(value) == 0xA << 48 | 0x1234_5678 << 16
    # Reserved page-size code 3 is treated like 64 KiB.
    assert R.baser_address(value | 3 << 8) == 0xA << 48 | 0x1234_5678 << 16


def test_baser_address_ignores_other_fields():
    assert R.baser_address(0x1907_0000_0000_06FF) == 0
    assert R.baser_address(bits(63, 48) | bits(11, 0) & ~bits(9, 8)) == 0


def test_baser_table_and_entry_bytes():
    assert R.baser_table_bytes(0x1907_0000_0000_0600) == 65536
    assert R.baser_table_bytes(0x1907_0000_0000_06FF) == 256 * 65536
    assert R.baser_table_bytes(1 << 8 | 3) == 4 * 16384
    assert R.baser_entry_bytes(0x1907_0000_0000_0600) == 8


def test_cbaser_helpers():
    value = 1 << 63 | 0xF_FFFF_FFFF_F000 | 0xFF | 0b111 << 59 | 1 << 10
    assert R.cbaser_address(value) == 0xF_FFFF_FFFF_F000
    assert R.cbaser_queue_bytes(value) == 1 << 20           # 256 pages = 1 MiB
    assert R.cbaser_queue_bytes(0) == 4096
    assert R.cbaser_address(1 << 62 | 1 << 52) == 0          # RES0 bits are not address


@pytest.mark.parametrize("fn", [R.baser_page_size, R.baser_address, R.baser_table_bytes,
                                R.cbaser_address, R.cbaser_queue_bytes])
def test_helpers_reject_non_64_bit_values(fn):
    with pytest.raises(ValueError):
        fn(1 << 64)
    with pytest.raises(ValueError):
        fn(-1)


def test_accesses_is_lookup_tabulated():
    """`RegisterMap.accesses` holds exactly the (offset, size) pairs `lookup` accepts,
    over every aligned offset of both maps and every size."""
    for register_map, span in ((R.ITS_REGISTERS, 0x2_0000), (R.GICR_REGISTERS, 0x1_0000)):
        table = register_map.accesses()
        expected = {(offset, size): register_map.lookup(offset, size)
                    for size in (1, 2, 4, 8) for offset in range(0, span, size)
                    if register_map.lookup(offset, size) is not None}
        assert table == expected and len(table) > len(register_map)
