"""``its-core dump``: decode a saved guest-memory image into a readable listing.

The image is the raw guest memory (a file of bytes starting at guest-physical
address `base`) and the register dict that `ITS.save()` returned (as JSON):
KVM's rev0 of a GICv3 ITS, or its-core-rev1 of a GICv4 one (16-byte ITEs,
virtual ones listed as such, and the vPE table; the GIC version is read
from the saved GITS_TYPER).
The image is mapped copy-on-write, restored into a scratch ITS with every
check of a real restore, and listed.  Every problem is reported against the
input at fault: the registers file (unreadable, not JSON, a value of the wrong
type), or the image (a corrupt entry: what is wrong and where; a table the
registers place outside the image, or a valid table holding nothing in an
image that is not empty -- both hint at a wrong `base`).
"""

from __future__ import annotations

import json
import sys

import numpy as np

from its_core.abi import entries as abi
from its_core.abi.saverestore import is_register_value
from its_core.errors import RestoreError
from its_core.frontend import registers
from its_core.frontend.commands import NO_DOORBELL
from its_core.frontend.guest_memory import GuestMemory
from its_core.frontend.its import ITS

_TYPER = registers.GITS_TYPER
_IDBITS = registers.GICR_PROPBASER.field("IDbits")
_BASER_VALID = registers.GITS_BASER0.field("Valid")
_CBASER_VALID = registers.GITS_CBASER.field("Valid")
_ENABLE_LPIS = registers.GICR_CTLR.field("EnableLPIs")
_PENDING_ADDRESS = registers.GICR_PENDBASER.field("Physical_Address")
#: A pending table's bytes below the first LPI (INTID 8192) are never read.
_PENDING_LPI_OFFSET = 8192 // 8
_TABLES = (("GITS_BASER0", "device table"), ("GITS_BASER1", "collection table"))
_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number",
               bool: "a boolean", type(None): "null"}


class DumpError(Exception):
    """An input of ``its-core dump`` is wrong.

    Attributes
    ----------
    path : str
        The file at fault (the registers file or the image).
    message : str
        What is wrong with it.
    """

    def __init__(self, path: str, message: str):
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}")


def guest_address(text: str) -> int:
    """A non-negative guest-physical address in any Python literal form (``0x4000_0000``)."""
    address = int(text, 0)
    if address < 0:
        raise ValueError(f"negative address {text!r}")
    return address


def plural(count: int, noun: str) -> str:
    """``"1 event"``, ``"2 events"``, ``"0 events"``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def read_registers(path: str) -> dict:
    """The register state saved with an image, from a JSON file (DumpError naming `path`)."""
    try:
        with open(path, encoding="utf-8") as stream:
            state = json.load(stream)
    except OSError as error:
        raise DumpError(path, f"cannot read the registers file ({error.strerror or error})") \
            from None
    except UnicodeDecodeError:
        raise DumpError(path, "not a text file; expected the JSON register state that "
                              "ITS.save() returned") from None
    except json.JSONDecodeError as error:
        raise DumpError(path, f"not valid JSON (line {error.lineno}, column {error.colno}: "
                              f"{error.msg})") from None
    if not isinstance(state, dict):
        raise DumpError(path, f"the JSON is {_JSON_TYPES.get(type(state), 'not an object')}, "
                              "not an object of registers as ITS.save() returns")
    return state


def map_image(path: str, base: int) -> GuestMemory:
    """The image file as guest memory at `base`, mapped copy-on-write (the file is never
    written); DumpError naming `path` if it cannot be."""
    try:
        pages = np.memmap(path, dtype=np.uint8, mode="c")
    except OSError as error:
        raise DumpError(path, f"cannot read the image ({error.strerror or error})") from None
    except ValueError:                       # numpy cannot map an empty file
        raise DumpError(path, "the image is empty") from None
    try:
        return GuestMemory(pages, base=base)
    except ValueError as error:
        raise DumpError(path, f"--base {base:#x}: {error}") from None


def _register(state: dict, name: str, cpu: int | None = None) -> int | None:
    """The value of register `name` (of `cpu` for a GICR register), None unless it is
    an int of at most 64 bits."""
    value = state.get(name)
    if cpu is not None:
        value = value[cpu] if isinstance(value, list) and cpu < len(value) else None
    return value if is_register_value(value, 64) else None


def _bad_register(name: str, value, reason: str) -> RestoreError:
    return RestoreError("registers", name, name, f"{value!r}: {reason}")


def load(memory: GuestMemory, state: dict) -> ITS:
    """A disabled ITS holding the state saved in `memory` with the registers `state`.

    An its-core-rev1 state (a GICv4 ITS) gives a GICv4 ITS of the version
    its GITS_TYPER says (VSGI = 1: 4.1).
    Raises RestoreError: ``table == "registers"`` when the registers are wrong,
    any other table when the image is corrupt.  GITS_CTLR is not restored
    (an enabled ITS would run the commands left in the queue).
    """
    if not isinstance(state, dict):
        raise RestoreError("registers", None, "state", "the register state is not a dict")
    typer = state.get("GITS_TYPER", _TYPER.reset)
    if "GITS_TYPER" in state and _register(state, "GITS_TYPER") is None:
        raise _bad_register("GITS_TYPER", typer, "not a 64-bit value")
    fields = _TYPER.decode(typer)
    cpus = state.get("GICR_CTLR")
    if not isinstance(cpus, list) or not cpus:
        raise _bad_register("GICR_CTLR", cpus, "expected a list of values, one per CPU")
    propbaser = _register(state, "GICR_PROPBASER", 0)
    id_bits = 16 if propbaser is None else _IDBITS.extract(propbaser) + 1
    gic_version = "3"
    if state.get("format") == abi.REV1_FORMAT:           # a GICv4 ITS: its-core-rev1
        gic_version = "4.1" if fields["VSGI"] else "4.0"
    try:
        its = ITS(memory, len(cpus), "hash", device_bits=fields["Devbits"] + 1,
                  event_bits=fields["ID_bits"] + 1, intid_bits=min(24, max(16, id_bits)),
                  gic_version=gic_version)
    except ValueError as error:
        raise _bad_register("GITS_TYPER", typer, str(error)) from None
    its.restore({**state, "GITS_CTLR": 0})
    return its


def misplaced_tables(memory: GuestMemory, state: dict) -> list[tuple[str, str]]:
    """(register, message) for each table the registers place outside the image.

    The tables are the valid device and collection tables, the pending table
    of each CPU with EnableLPIs (from its first LPI byte) and the valid
    command queue; each is outside when its start address is.  Registers that
    are not well-formed integers are skipped (`load` reports them).
    """
    where = f"outside the image [{memory.base:#x}, {memory.end:#x}): is --base right?"
    starts = []
    for name, table in _TABLES:
        value = _register(state, name)
        if value is not None and _BASER_VALID.extract(value):
            starts.append((name, table, registers.baser_address(value), 0))
    cbaser = _register(state, "GITS_CBASER")
    if cbaser is not None and _CBASER_VALID.extract(cbaser):
        starts.append(("GITS_CBASER", "command queue", registers.cbaser_address(cbaser), 0))
    ctlrs, pendbasers = state.get("GICR_CTLR"), state.get("GICR_PENDBASER")
    if isinstance(ctlrs, list) and isinstance(pendbasers, list) and len(ctlrs) == len(pendbasers):
        for cpu in range(len(ctlrs)):
            ctlr = _register(state, "GICR_CTLR", cpu)
            pendbaser = _register(state, "GICR_PENDBASER", cpu)
            if ctlr is not None and pendbaser is not None and _ENABLE_LPIS.extract(ctlr):
                starts.append((f"GICR_PENDBASER of CPU {cpu}", "pending table",
                               pendbaser & _PENDING_ADDRESS.mask, _PENDING_LPI_OFFSET))
    return [(name, f"{name}: the {table} at {address:#x} is {where}")
            for name, table, address, first_read in starts
            if not memory.contains(address + first_read)]


def find_empty_tables(memory: GuestMemory, state: dict) -> list[str]:
    """Warnings about valid device or collection tables that are all zero (so hold no
    valid entry) in an image that is not: legal, but the sign of a wrong base."""
    warnings = []
    for name, table in _TABLES:
        value = _register(state, name)
        if value is None or not _BASER_VALID.extract(value):
            continue
        address = registers.baser_address(value)
        if not memory.contains(address):
            continue
        nbytes = min(registers.baser_table_bytes(value), memory.end - address)
        if not memory.view(address, nbytes, writable=False).any() and memory.array.any():
            warnings.append(f"{name}: no valid entry in the {table} at {address:#x} "
                            f"({nbytes:#x} zero bytes) although the image is not all zero: "
                            "is --base right?")
    return warnings


def describe(its: ITS) -> dict:
    """The state of `its` as plain data: registers, enabled, devices with their events,
    collections and each CPU's pending LPIs."""
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
    names = ("GITS_CBASER", "GITS_CREADR", "GITS_CWRITER", "GITS_BASER0", "GITS_BASER1")
    listing = {
        "registers": {name: its.register(name) for name in names},
        "enabled": its.enabled,
        "devices": devices,
        "collections": collections,
        "pending": {cpu: its.pending(cpu).tolist() for cpu in range(its.num_cpus)},
    }
    if its.gic_version != "3":
        _describe_virtual(its, listing)
    return listing


def _describe_virtual(its: ITS, listing: dict) -> None:
    """GICv4 (its-core-rev1): each device's virtual events, the vPEs and the
    VLPI registers, added to `listing`."""
    virtual = its.redistributors.virtual
    listing["gic_version"] = its.gic_version
    listing["registers"]["GITS_BASER2"] = its.register("GITS_BASER2")
    device_ids, event_ids, vintids, vpe_ids, doorbells = its.tables.virtual_events()
    by_device = {device["device_id"]: device for device in listing["devices"]}
    for device in listing["devices"]:
        device["virtual_events"] = []
    for device_id, event_id, vintid, vpe_id, doorbell in zip(
            device_ids.tolist(), event_ids.tolist(), vintids.tolist(), vpe_ids.tolist(),
            doorbells.tolist()):
        by_device[device_id]["virtual_events"].append(
            {"event_id": event_id, "vintid": vintid, "vpe_id": vpe_id,
             "doorbell": None if doorbell == NO_DOORBELL else doorbell})
    vpes = []
    for vpe_id, cpu in zip(*(array.tolist() for array in its.tables.vpe_table())):
        entry = {"vpe_id": vpe_id, "cpu": cpu, "vpt_addr": int(virtual.vpt_addr[vpe_id]),
                 "vpt_size": int(virtual.vpt_size[vpe_id])}
        if virtual.is_v41:
            doorbell = int(virtual.default_doorbell[vpe_id])
            entry.update(vconf_addr=int(virtual.vconf_addr[vpe_id]),
                         default_doorbell=None if doorbell == NO_DOORBELL else doorbell,
                         doorbell_armed=bool(virtual.doorbell_armed[vpe_id]),
                         vsgi_pending=int(virtual.vsgi_pending[vpe_id]),
                         vsgi_config=virtual.vsgi_config[vpe_id].tolist())
        vpes.append(entry)
    listing["vpes"] = vpes
    listing["vlpi"] = {cpu: {"GICR_VPROPBASER": int(virtual.vpropbaser[cpu]),
                             "GICR_VPENDBASER": int(virtual.vpendbaser[cpu]),
                             "resident": bool(virtual.resident[cpu])}
                       for cpu in range(its.num_cpus)}


def format_listing(listing: dict) -> str:
    """The listing of `describe` as text (CPU numbers in decimal, IDs as the guest sees them)."""
    regs = listing["registers"]
    lines = [f"ITS {'enabled' if listing['enabled'] else 'disabled'}; "
             f"queue at {registers.cbaser_address(regs['GITS_CBASER']):#x}, "
             f"CREADR {regs['GITS_CREADR']:#x}, CWRITER {regs['GITS_CWRITER']:#x}",
             f"device table at {registers.baser_address(regs['GITS_BASER0']):#x}, "
             f"collection table at {registers.baser_address(regs['GITS_BASER1']):#x}",
             "", f"devices ({len(listing['devices'])}):"]
    for device in listing["devices"]:
        virtual = device.get("virtual_events")
        lines.append(f"  DeviceID {device['device_id']:#x}: ITT {device['itt_addr']:#x}, "
                     f"{plural(device['event_bits'], 'EventID bit')}, "
                     f"{plural(len(device['events']), 'event')}"
                     + (f", {plural(len(virtual), 'virtual event')}" if virtual else ""))
        events = [(event["event_id"], "physical", event) for event in device["events"]]
        events += [(event["event_id"], "virtual", event)
                   for event in device.get("virtual_events", ())]
        for _, kind, event in sorted(events, key=lambda row: row[0]):
            if kind == "virtual":
                doorbell = ("no doorbell" if event["doorbell"] is None
                            else f"doorbell LPI {event['doorbell']}")
                lines.append(f"    EventID {event['event_id']} -> virtual: vLPI "
                             f"{event['vintid']} of vPE {event['vpe_id']} ({doorbell})")
                continue
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
    if "vpes" in listing:
        lines += ["", f"GICv{listing['gic_version']} vPE table at "
                      f"{registers.baser_address(regs['GITS_BASER2']):#x}, "
                      f"vPEs ({len(listing['vpes'])}):"]
        for vpe in listing["vpes"]:
            line = (f"  vPE {vpe['vpe_id']} -> CPU {vpe['cpu']}: VPT {vpe['vpt_addr']:#x}, "
                    f"VPT_size {vpe['vpt_size']}")
            if "vconf_addr" in vpe:
                doorbell = ("none" if vpe["default_doorbell"] is None
                            else f"LPI {vpe['default_doorbell']}")
                line += (f", VCONF {vpe['vconf_addr']:#x}, default doorbell {doorbell}"
                         f"{' (armed)' if vpe['doorbell_armed'] else ''}, "
                         f"vSGIs pending {vpe['vsgi_pending']:#06x}")
            lines.append(line)
        lines += ["", "VLPI registers:"]
        for cpu, vlpi in listing["vlpi"].items():
            lines.append(f"  CPU {cpu}: GICR_VPROPBASER {vlpi['GICR_VPROPBASER']:#x}, "
                         f"GICR_VPENDBASER {vlpi['GICR_VPENDBASER']:#x}"
                         f"{' (a vPE is resident)' if vlpi['resident'] else ''}")
    return "\n".join(lines)


def _load_listing(image_path: str, base: int, registers_path: str) -> tuple[dict, list[str]]:
    """(listing, warnings) of an image; DumpError naming the file at fault."""
    state = read_registers(registers_path)
    ctlr = state.get("GITS_CTLR", 0)
    if isinstance(ctlr, bool) or not isinstance(ctlr, int):
        raise DumpError(registers_path, f"GITS_CTLR: {ctlr!r} is not an integer")
    memory = map_image(image_path, base)
    misplaced = misplaced_tables(memory, state)
    try:
        its = load(memory, state)
    except RestoreError as error:
        if error.table == "registers":
            raise DumpError(registers_path, str(error)) from None
        # A table outside the image explains the failure better than what was read.
        outside = [message for name, message in misplaced if name != "GITS_CBASER"]
        raise DumpError(image_path, "; ".join(outside) or f"corrupt image: {error}") from None
    listing = describe(its)
    listing["enabled"] = bool(ctlr & 1)           # as saved; `load` restores it disabled
    queue = [message for name, message in misplaced if name == "GITS_CBASER"]
    return listing, queue + find_empty_tables(memory, state)


def main(image: str, base: int, registers_path: str, as_json: bool, out) -> int:
    """Print the listing of an image to `out`: 0 (warnings on stderr, if any), or 2
    with a message naming the file at fault."""
    try:
        listing, warnings = _load_listing(image, base, registers_path)
    except DumpError as error:
        print(f"its-core dump: {error}", file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"its-core dump: warning: {image}: {warning}", file=sys.stderr)
    print(json.dumps(listing, indent=2) if as_json else format_listing(listing), file=out)
    return 0
