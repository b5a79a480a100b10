"""encode_many: the vectorised encoder agrees with the per-command encoders."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from its_core.frontend import commands

U32 = st.integers(0, 2**32 - 1)
U16 = st.integers(0, 2**16 - 1)
ITT = st.integers(0, 2**44 - 1).map(lambda value: value << 8)

ROWS = {
    "MAPD": st.fixed_dictionaries({"device_id": U32, "itt_addr": ITT,
                                   "num_event_bits": st.integers(1, 32),
                                   "valid": st.integers(0, 1)}),
    "MAPC": st.fixed_dictionaries({"icid": U16, "cpu": U32, "valid": st.integers(0, 1)}),
    "MAPTI": st.fixed_dictionaries({"device_id": U32, "event_id": U32, "intid": U32,
                                    "icid": U16}),
    "MOVI": st.fixed_dictionaries({"device_id": U32, "event_id": U32, "icid": U16}),
    "MOVALL": st.fixed_dictionaries({"from_cpu": U32, "to_cpu": U32}),
    "DISCARD": st.fixed_dictionaries({"device_id": U32, "event_id": U32}),
}


@pytest.mark.parametrize("name", sorted(ROWS))
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_rows_match_single_encoders(name, data):
    rows = data.draw(st.lists(ROWS[name], min_size=1, max_size=20))
    columns = {key: np.array([row[key] for row in rows], np.uint64) for key in rows[0]}
    encoded = commands.encode_many(name, **columns)
    assert encoded.shape == (len(rows), 4)
    for index, row in enumerate(rows):
        assert encoded[index].astype("<u8").tobytes() == commands.encode(name, **row)


def test_scalars_broadcast_and_defaults_apply():
    encoded = commands.encode_many("MAPC", icid=np.arange(4), cpu=3)
    for icid in range(4):
        assert encoded[icid].astype("<u8").tobytes() == commands.mapc(icid, 3)


@pytest.mark.parametrize("bad", [{"intid": [2**32]}, {"icid": [-1]}, {"device_id": [0.5]}])
def test_out_of_range_or_non_integer_values_are_refused(bad):
    fields = {"device_id": [1], "event_id": [2], "intid": [8192], "icid": [0], **bad}
    with pytest.raises(ValueError):
        commands.encode_many("MAPTI", **fields)


def test_misaligned_itt_is_refused():
    with pytest.raises(ValueError, match="multiple of 256"):
        commands.encode_many("MAPD", device_id=[1], itt_addr=[0x1080], num_event_bits=[4])
