"""``its-core dump``: decode a saved guest-memory image into a readable listing.

The image is the raw guest memory (a file of bytes starting at guest-physical
address `base`) and the register dict that `ITS.save()` returned (as JSON).
The image is mapped copy-on-write, restored into a scratch ITS with every
check of a real restore, and listed; a corrupt image is reported as what is
wrong and where.
"""

from __future__ import annotations

import json

import numpy as np

from its_core import registers
from its_core.errors import ITSError, RestoreError
from its_core.guest_memory import GuestMemory
from its_core.its import ITS

_TYPER = registers.GITS_TYPER
_IDBITS = registers.GICR_PROPBASER.field("IDbits")


def load(image_path: str, base: int, state: dict) -> ITS:
    """A disabled ITS holding the state of an image (RestoreError if corrupt)."""
    if not isinstance(state, dict):
        raise RestoreError("registers", None, "state", "the register file is not a JSON object")
    pages = np.memmap(image_path, dtype=np.uint8, mode="c")      # copy-on-write: file untouched
    typer = state.get("GITS_TYPER", _TYPER.reset)
    fields = _TYPER.decode(typer) if isinstance(typer, int) else _TYPER.decode(_TYPER.reset)
    cpus = state.get("GICR_CTLR")
    if not isinstance(cpus, list) or not cpus:
        raise RestoreError("registers", "GICR_CTLR", "GICR_CTLR", "expected one value per CPU")
    propbaser = state.get("GICR_PROPBASER", [0])[0]
    id_bits = _IDBITS.extract(propbaser) + 1 if isinstance(propbaser, int) else 16
    its = ITS(GuestMemory(pages, base=base), len(cpus), "hash",
              device_bits=fields["Devbits"] + 1, event_bits=fields["ID_bits"] + 1,
              intid_bits=min(24, max(16, id_bits)))
    its.restore({**state, "GITS_CTLR": 0})         # list the saved state: run no command
    its.stored_ctlr = state.get("GITS_CTLR", 0)
    return its


def describe(its: ITS) -> dict:
    """The listing as plain data."""
    tables = its.tables
    devices = []
    for record in tables.devices():
        device_id = int(record["device_id"])
        event_ids, intids, icids = tables.events_of(device_id)
        devices.append({
            "device_id": device_id, "itt_addr": int(record["itt_addr"]),
            "event_bits": int(record["event_bits"]),
            "events": [{"event_id": int(e), "intid": int(i), "icid": int(c),
                        "cpu": tables.collection_cpu(int(c))}
                       for e, i, c in zip(event_ids, intids, icids)]})
    icids, cpus = tables.collection_table()
    collections = [{"icid": int(i), "cpu": int(c)} for i, c in zip(icids, cpus)]
    named = set(tables.referenced_icids().tolist()) - set(icids.tolist())
    collections += [{"icid": icid, "cpu": None} for icid in sorted(named)]
    collections.sort(key=lambda entry: entry["icid"])
    return {
        "registers": {name: its.register(name) for name in
                      ("GITS_CBASER", "GITS_CREADR", "GITS_CWRITER", "GITS_BASER0", "GITS_BASER1")},
        "enabled": bool(getattr(its, "stored_ctlr", 0) & 1),
        "devices": devices,
        "collections": collections,
        "pending": {cpu: its.pending(cpu).tolist() for cpu in range(its.num_cpus)},
    }


def format_listing(listing: dict) -> str:
    """The listing as text."""
    regs = listing["registers"]
    lines = [f"ITS {'enabled' if listing['enabled'] else 'disabled'}; "
             f"queue at {registers.cbaser_address(regs['GITS_CBASER']):#x}, "
             f"CREADR {regs['GITS_CREADR']:#x}, CWRITER {regs['GITS_CWRITER']:#x}",
             f"device table at {registers.baser_address(regs['GITS_BASER0']):#x}, "
             f"collection table at {registers.baser_address(regs['GITS_BASER1']):#x}",
             "", f"devices ({len(listing['devices'])}):"]
    for device in listing["devices"]:
        lines.append(f"  DeviceID {device['device_id']:#x}: ITT {device['itt_addr']:#x}, "
                     f"{device['event_bits']} EventID bits, {len(device['events'])} events")
        for event in device["events"]:
            target = "unmapped" if event["cpu"] is None else f"CPU {event['cpu']}"
            lines.append(f"    EventID {event['event_id']} -> LPI {event['intid']}, "
                         f"collection {event['icid']} ({target})")
    lines += ["", f"collections ({len(listing['collections'])}):"]
    for entry in listing["collections"]:
        target = "unmapped" if entry["cpu"] is None else f"CPU {entry['cpu']}"
        lines.append(f"  ICID {entry['icid']} -> {target}")
    lines += ["", "pending LPIs:"]
    for cpu, intids in listing["pending"].items():
        lines.append(f"  CPU {cpu}: {' '.join(map(str, intids)) if intids else '-'}")
    return "\n".join(lines)


def main(image: str, base: int, registers_path: str, as_json: bool, out) -> int:
    """Run the dump; 0 on success, 2 with a message on a bad or corrupt image."""
    try:
        with open(registers_path) as stream:
            state = json.load(stream)
        listing = describe(load(image, base, state))
    except (OSError, ValueError, ITSError) as error:
        kind = "corrupt image" if isinstance(error, RestoreError) else "cannot read the image"
        print(f"its-core dump: {kind}: {error}", file=__import__("sys").stderr)
        return 2
    print(json.dumps(listing, indent=2) if as_json else format_listing(listing), file=out)
    return 0
