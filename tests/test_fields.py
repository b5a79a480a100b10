"""Tests of the bit-field vocabulary (its_core.frontend.fields)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from its_core.frontend.fields import Field, Layout


# -- Field -----------------------------------------------------------------------

def test_field_geometry():
    f = Field("Physical_Address", 12, 40)
    assert f.msb == 51
    assert f.max == (1 << 40) - 1
    assert f.mask == 0x000F_FFFF_FFFF_F000
    assert f.span == "[51:12]"


def test_bits_constructor_matches_arm_notation():
    assert Field.bits("Size", 7, 0) == Field("Size", 0, 8)
    assert Field.bits("Valid", 63) == Field("Valid", 63, 1)
    assert Field.bits("Valid", 63).span == "[63]"
    with pytest.raises(ValueError):
        Field.bits("Bad", 3, 7)


@pytest.mark.parametrize("args", [("", 0, 1), ("1abc", 0, 1), ("x", -1, 1), ("x", 0, 0)])
def test_bad_field_declarations(args):
    with pytest.raises(ValueError):
        Field(*args)


def test_extract_and_deposit_by_hand():
    # GITS_TYPER of KVM: ITT_entry_size [7:4] = 7, ID_bits [12:8] = 15.
    itt = Field.bits("ITT_entry_size", 7, 4)
    idb = Field.bits("ID_bits", 12, 8)
    assert itt.extract(0x1EF71) == 7
    assert idb.extract(0x1EF71) == 15
    assert itt.deposit(0xFFFF, 0) == 0xFF0F
    assert idb.deposit(0, 15) == 0xF00


def test_deposit_rejects_values_that_do_not_fit_and_names_field():
    f = Field.bits("Size", 4, 0)
    with pytest.raises(ValueError, match="Size"):
        f.deposit(0, 32)
    with pytest.raises(ValueError, match="Size"):
        f.deposit(0, -1)
    with pytest.raises(TypeError, match="Size"):
        f.deposit(0, 1.0)


def test_extract_rejects_negative_container():
    with pytest.raises(ValueError):
        Field("x", 0, 4).extract(-1)


def test_fits_never_raises():
    f = Field("x", 3, 4)
    assert f.fits(15) and f.fits(0) and f.fits(np.uint8(7))
    assert not f.fits(16) and not f.fits(-1) and not f.fits(1.5) and not f.fits("3")
    # bool is an integer only for a one-bit flag field (its_core.validation)
    assert not f.fits(True) and Field("v", 0, 1).fits(True)


@given(st.integers(0, 80), st.integers(1, 64), st.integers(0, 2**150), st.data())
def test_deposit_extract_round_trip(lsb, width, container, data):
    f = Field("f", lsb, width)
    value = data.draw(st.integers(0, f.max))
    out = f.deposit(container, value)
    assert f.extract(out) == value
    # Only the field's bits change.
    assert out & ~f.mask == container & ~f.mask


# -- Layout ----------------------------------------------------------------------

CBASER = Layout(
    "CBASER",
    Field.bits("Size", 7, 0),
    Field.bits("Shareability", 11, 10),
    Field.bits("Physical_Address", 51, 12),
    Field.bits("OuterCache", 55, 53),
    Field.bits("InnerCache", 61, 59),
    Field.bits("Valid", 63),
)


def test_layout_reserved_mask_is_complement_of_fields():
    # Digest 2.3: CBASER RES0 bits are [62], [58:56], [52], [9:8].
    expected = (1 << 62) | (0b111 << 56) | (1 << 52) | (0b11 << 8)
    assert CBASER.reserved_mask == expected
    assert CBASER.field_mask | CBASER.reserved_mask == (1 << 64) - 1
    assert CBASER.field_mask & CBASER.reserved_mask == 0


def test_layout_encode_decode_by_hand():
    value = (1 << 63) | (7 << 59) | (0x12345 << 12) | (1 << 10) | 0xFF
    assert CBASER.encode(Valid=1, InnerCache=7, Physical_Address=0x12345,
                         Shareability=1, Size=0xFF) == value
    assert CBASER.decode(value) == {
        "Size": 0xFF, "Shareability": 1, "Physical_Address": 0x12345,
        "OuterCache": 0, "InnerCache": 7, "Valid": 1,
    }


def test_layout_decode_ignores_reserved_bits():
    assert CBASER.decode(1 << 62) == dict.fromkeys(CBASER.names, 0)
    assert CBASER.reserved_bits((1 << 62) | 1) == 1 << 62


def test_layout_encode_errors_name_the_field():
    with pytest.raises(ValueError, match=r"CBASER\.Shareability"):
        CBASER.encode(Shareability=4)
    with pytest.raises(ValueError, match="Bogus"):
        CBASER.encode(Bogus=1)
    with pytest.raises(ValueError):
        CBASER.decode(1 << 64)
    with pytest.raises(ValueError):
        CBASER.decode(-1)


def test_layout_update_keeps_other_bits():
    value = CBASER.encode(Valid=1, Size=3)
    assert CBASER.update(value, Size=9) == CBASER.encode(Valid=1, Size=9)


def test_layout_rejects_overlap_duplicates_and_overflow():
    with pytest.raises(ValueError, match="overlaps"):
        Layout("L", Field.bits("A", 7, 0), Field.bits("B", 8, 7))
    with pytest.raises(ValueError, match="duplicate"):
        Layout("L", Field.bits("A", 0), Field.bits("A", 1))
    with pytest.raises(ValueError, match="exceeds"):
        Layout("L", Field.bits("A", 32), width=32)


def test_layout_container_protocol():
    assert CBASER["Valid"] == Field("Valid", 63, 1)
    assert "Size" in CBASER and "Nope" not in CBASER
    assert len(CBASER) == 6
    assert [f.name for f in CBASER] == list(CBASER.names)
    with pytest.raises(KeyError):
        CBASER["Nope"]


@given(st.fixed_dictionaries({
    "Size": st.integers(0, 0xFF),
    "Shareability": st.integers(0, 3),
    "Physical_Address": st.integers(0, 2**40 - 1),
    "OuterCache": st.integers(0, 7),
    "InnerCache": st.integers(0, 7),
    "Valid": st.integers(0, 1),
}))
def test_layout_round_trip(values):
    assert CBASER.decode(CBASER.encode(**values)) == values


@given(st.integers(0, 2**64 - 1))
def test_layout_decode_encode_keeps_field_bits(word):
    assert CBASER.encode(**CBASER.decode(word)) == word & ~CBASER.reserved_mask
