"""Constructor parameters of the translation tables, checked in one place.

Both the native `TranslationTables` and the pure-Python `ReferenceTables`
accept exactly the same arguments; this module says which.
"""

from __future__ import annotations

from its_core.validation import as_int

#: Layout names, in the order the native core numbers them.
LAYOUTS = ("flat", "twolevel", "hash")
#: Largest DeviceID space the flat layout accepts (24 MiB of device records).
FLAT_MAX_DEVICE_BITS = 20
#: ICIDs are 16 bits (GITS_TYPER.CIL = 0).
ICID_SPACE = 65536


def check_table_parameters(layout: str, device_bits: int, event_bits: int, intid_bits: int,
                           num_collections: int, num_cpus: int) -> None:
    """Raise ValueError naming the first parameter out of range (TypeError
    for a non-integer)."""
    for name, value in (("device_bits", device_bits), ("event_bits", event_bits),
                        ("intid_bits", intid_bits), ("num_collections", num_collections),
                        ("num_cpus", num_cpus)):
        as_int(value, name)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if not 1 <= device_bits <= 32:
        raise ValueError(f"device_bits must be in 1..32, got {device_bits}")
    if layout == "flat" and device_bits > FLAT_MAX_DEVICE_BITS:
        raise ValueError(
            f"the flat layout holds at most {FLAT_MAX_DEVICE_BITS} DeviceID bits "
            f"(got {device_bits}); use layout='twolevel' or 'hash' for wider IDs")
    if not 1 <= event_bits <= 32:
        raise ValueError(f"event_bits must be in 1..32, got {event_bits}")
    if not 14 <= intid_bits <= 32:
        raise ValueError(f"intid_bits must be in 14..32, got {intid_bits}")
    if not 1 <= num_collections <= ICID_SPACE:
        raise ValueError(f"num_collections must be in 1..{ICID_SPACE}, got {num_collections}")
    if not 1 <= num_cpus <= 1 << 31:
        raise ValueError(f"num_cpus must be in 1..2**31, got {num_cpus}")
