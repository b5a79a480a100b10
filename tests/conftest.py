"""Shared fixtures and helpers for the its_core tests."""

from __future__ import annotations

import pytest

import its_core
from its_core import TranslationTables

_MASK64 = 2**64 - 1


@pytest.fixture(params=its_core.LAYOUTS)
def layout(request):
    """Every storage layout; tests using it run once per layout."""
    return request.param


def make_tables(layout: str, **kwargs) -> TranslationTables:
    """TranslationTables with small defaults that every layout accepts."""
    kwargs.setdefault("device_bits", 10)
    kwargs.setdefault("event_bits", 16)
    kwargs.setdefault("intid_bits", 16)
    kwargs.setdefault("num_collections", 64)
    kwargs.setdefault("num_cpus", 4)
    return TranslationTables(layout, **kwargs)


def fib_slot(key: int, buckets: int) -> int:
    """Home bucket of a DeviceID in a hash directory of `buckets` buckets
    (Fibonacci hashing: the top log2(buckets) bits of key * 2**64/phi)."""
    return ((key * 0x9E3779B97F4A7C15) & _MASK64) >> (64 - (buckets.bit_length() - 1))


def colliding_ids(home_slots, per_slot: int, buckets: int = 64, bits: int = 32) -> list[int]:
    """`per_slot` DeviceIDs (< 2**bits) whose home bucket is each of
    `home_slots` in a hash directory of `buckets` buckets (64 when new).

    Only used to *choose* IDs that make long probe clusters (wrapping around
    the end of the bucket array when the slots do), so that backward-shift
    deletion has work to do; no expectation depends on the hash function.
    """
    wanted = {slot: [] for slot in home_slots}
    candidate = 0
    step = 0x5BD1E995 % (1 << bits) | 1                 # odd: visits every ID
    while any(len(ids) < per_slot for ids in wanted.values()):
        device_id = candidate % (1 << bits)
        slot = fib_slot(device_id, buckets)
        if slot in wanted and len(wanted[slot]) < per_slot and device_id not in wanted[slot]:
            wanted[slot].append(device_id)
        candidate += step
    return [device_id for slot in home_slots for device_id in wanted[slot]]
