"""Differential tests: a GICv4.0 / GICv4.1 ITS against ReferenceITS(gic_version=...).

Two models, two guest memories with identical initial content (random bytes in
the VPTs and vLPI configuration table, so that VPT bits and enables vary).
Random streams mix virtual and physical commands with hostile field values
(vPEIDs beyond the vPE table, VPT_size beyond the ID bits, doorbells that are
not LPIs, RDbase beyond the CPUs, random 32-byte packets with GICv4 command
numbers), residency changes (GICR_VPENDBASER 64-bit and 32-bit-half writes,
GICR_VPROPBASER), and for GICv4.1 GITS_SGIR and GICR_VSGIR, GICR_INVLPIR / GICR_INVALLR (physical forms, the GICv4.1 V forms, and
the same bits on GICv4.0 where V is RES0) after rewriting physical
configuration bytes in memory, doorbells (`msi`, GITS_TRANSLATER writes,
`msi_batch` mixing virtual and physical pairs: statuses compared pair by
pair) and the CPU side (`acknowledge`, `acknowledge_virtual`).  The ITS gets
commands one at a time through `submit`; after every operation the error
code, the vPE table (the core's vPEID -> CPU table and the front end's vPE
attributes), the virtual ITEs with their doorbells, the VLPI frame
registers, the resident caches, the vSGI state, the physical pending LPIs
(doorbells) and all of guest memory (VPT bits, zeroed ITEs) must agree.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import its_core
from its_core import GuestMemory
from its_core.frontend import commands as C
from its_core.frontend import registers as R
from its_core.frontend.reference_its import ReferenceITS, VirtualStatus
from its_core.frontend.registers import BaserType, PageSize

from front_end_helpers import (GITS_BASER0, GITS_BASER1, GITS_CBASER, GITS_CTLR, GITS_CWRITER,
                               GITS_TRANSLATER, baser_value, cbaser_value, pendbaser_value, propbaser_value)

NUM_CPUS = 2
INTID_BITS = 14                # vINTIDs and LPIs 8192..16383
EVENT_BITS = 8
DEVICE_BITS = 10
MEM = 0x80000

QUEUE = 0x1000                 # 4 KiB: 128 slots
DT = 0x2000                    # 4 KiB flat: 512 DeviceIDs
CT = 0x3000
VT = 0x4000                    # 4 KiB flat vPE table (GITS_BASER2): 512 vPEIDs
VPE_CONF = 0x5000              # GICv4.1 vPE Configuration table (GICR_VPROPBASER)
ITT = 0x8000                   # ITTs of 256 events x 8 bytes, 0x800 apart
PROP = 0x10000                 # physical LPI configuration (8 KiB)
PEND = 0x20000                 # + cpu * 0x10000
VPT_A, VPT_B, VPT_C = 0x40000, 0x50000, 0x60000
VCONF = 0x70000                # vLPI configuration table (v4.0 VPROPBASER, v4.1 VCONF_addr)
VPT_OUTSIDE = 0x1000_0000      # 64 KiB aligned, outside guest memory

GITS_BASER2 = R.GITS_BASER2_VPES.offset
GICR_CTLR = R.GICR_CTLR.offset
GICR_PROPBASER = R.GICR_PROPBASER.offset
GICR_PENDBASER = R.GICR_PENDBASER.offset
GICR_VPROPBASER = R.GICR_VPROPBASER_V40.offset
GICR_VPENDBASER = R.GICR_VPENDBASER_V40.offset
GICR_VSGIR = R.GICR_VSGIR.offset
GICR_VSGIPENDR = R.GICR_VSGIPENDR.offset
GICR_INVLPIR = R.GICR_INVLPIR.offset
GICR_INVALLR = R.GICR_INVALLR.offset
GITS_SGIR = R.GITS_SGIR.offset

VPEND40, VPEND41 = R.GICR_VPENDBASER_V40_LAYOUT, R.GICR_VPENDBASER_V41_LAYOUT
VPROP40, VPROP41 = R.GICR_VPROPBASER_V40_LAYOUT, R.GICR_VPROPBASER_V41_LAYOUT

DEVICES = [5, 6, 7, 511, 512, 2**32 - 1]
EVENTS = [0, 1, 2, 3, 15, 16, 255, 256, 2**32 - 1]
VPES = [0, 1, 3, 4, 511, 512, 65535]
VINTIDS = [0, 8191, 8192, 8193, 8200, 9000, 16383, 16384, 2**32 - 1]
DOORBELLS = [C.NO_DOORBELL, 8292, 8293, 8192, 16383, 16384, 0, 1022, 2**32 - 1]
CPU_FIELDS = [0, 1, 2, 2**36 - 1]
VPTS = [VPT_A, VPT_B, VPT_C, VPT_OUTSIDE]
VPT_SIZES_40 = [0, 12, 13, 14, 31]
VPT_SIZES_41 = [0, 12, 13, 14, 31, 255]

DIFF_SETTINGS = settings(max_examples=int(__import__("os").environ.get("GICV4_EXAMPLES", 150)), deadline=None, database=None,
                         suppress_health_check=[HealthCheck.too_slow,
                                                HealthCheck.data_too_large])


def fill(mem: GuestMemory, seed: int) -> None:
    """Random VPT bytes, vLPI configuration and doorbell configuration (identical per seed)."""
    rng = np.random.default_rng(seed)
    for start, length in ((VPT_A, 0x800), (VPT_B, 0x800), (VPT_C, 0x800), (VCONF, 0x2000),
                          (PROP, 0x2000)):
        mem.array[start:start + length] = rng.integers(0, 256, length, dtype=np.uint8)
    # every few VPT bits only, so that set / clear both show
    for vpt in (VPT_A, VPT_B, VPT_C):
        mem.array[vpt:vpt + 0x800] &= rng.integers(0, 256, 0x800, dtype=np.uint8)
    # v4.1 vPE Configuration table: one flat 4 KiB page, contents irrelevant (zero)


def make_pair(version: str, seed: int):
    """A GICv4 ITS and a GICv4 ReferenceITS, each on its own memory, programmed alike."""
    mems = [GuestMemory(MEM), GuestMemory(MEM)]
    for mem in mems:
        fill(mem, seed)
    its = its_core.ITS(mems[0], num_cpus=NUM_CPUS, device_bits=DEVICE_BITS,
                       event_bits=EVENT_BITS, intid_bits=INTID_BITS, gic_version=version)
    ref = ReferenceITS(mems[1], NUM_CPUS, device_bits=DEVICE_BITS, event_bits=EVENT_BITS,
                       intid_bits=INTID_BITS, gic_version=version)
    propbaser = propbaser_value(PROP, INTID_BITS - 1)
    baser0 = baser_value(BaserType.DEVICES, DT, page_size=PageSize.SIZE_4K)
    baser1 = baser_value(BaserType.COLLECTIONS, CT, page_size=PageSize.SIZE_4K)
    baser2 = baser_value(BaserType.VPES, VT, page_size=PageSize.SIZE_4K)
    rd = its.redistributors
    for cpu in range(NUM_CPUS):
        rd.mmio_write(cpu, GICR_PROPBASER, propbaser, 8)
        rd.mmio_write(cpu, GICR_PENDBASER, pendbaser_value(PEND + cpu * 0x10000, ptz=True), 8)
        rd.mmio_write(cpu, GICR_CTLR, 1, 4)
    its.mmio_write(GITS_CBASER, cbaser_value(QUEUE), 8)
    its.mmio_write(GITS_CWRITER, 0, 8)
    its.mmio_write(GITS_BASER0, baser0, 8)
    its.mmio_write(GITS_BASER1, baser1, 8)
    its.mmio_write(GITS_BASER2, baser2, 8)
    its.mmio_write(GITS_CTLR, 1, 4)
    assert its.enabled
    ref.propbaser = propbaser
    ref.pendbaser = [pendbaser_value(PEND + cpu * 0x10000, ptz=True) for cpu in range(NUM_CPUS)]
    for cpu in range(NUM_CPUS):
        ref.enable_lpis(cpu)
    ref.baser0, ref.baser1 = baser0, baser1
    ref.write_baser2(baser2)
    ref.enabled = True
    warm = [C.mapc(0, 0), C.mapc(1, 1), C.mapd(5, ITT, 4), C.mapd(6, ITT + 0x800, 4),
            C.mapti(6, 0, 8292, 0)]
    if version == "4.1":
        warm += [C.vmapp_v41(3, 0, VPT_A, 13, VCONF, 8293, alloc=True),
                 C.vmapp_v41(4, 1, VPT_B, 13, VCONF, C.NO_DOORBELL, alloc=True)]
    else:
        warm += [C.vmapp(3, 0, VPT_A, 13), C.vmapp(4, 1, VPT_B, 13)]
    warm += [C.vmapti(5, 1, 3, 8200, 8292), C.vmapti(5, 2, 4, 9000, C.NO_DOORBELL)]
    for packet in warm:
        assert apply_command(its, ref, packet) == 0
    return its, ref, mems


def apply_command(its, ref, packet: bytes) -> int:
    """Run one command on both; assert the same error code (0 = none); return it."""
    before = len(its.errors)
    its.submit(packet)
    # the reference has no queue: mirror it, so that both memories stay byte-equal
    # (a hostile VPROPBASER may point the vLPI configuration at it)
    ref.mem.array[QUEUE:QUEUE + 0x1000] = its.memory.array[QUEUE:QUEUE + 0x1000]
    got = [error.code for error in its.errors[before:]]
    expected = ref.execute(packet)
    assert got == ([expected] if expected else []), (
        f"{C.decode(packet, gic_version=ref.gic_version)}: ITS {[hex(c) for c in got]}, "
        f"reference {expected:#x}")
    return expected


def fast_state(its) -> dict:
    """The fast ITS's GICv4 state in the shape of `ReferenceITS.snapshot()`'s GICv4 keys."""
    rd, virtual = its.redistributors, its.redistributors.virtual
    vpe_ids, cpus = its.tables.vpe_table()
    attributes = virtual.vpe_state()
    # The core's vPEID -> CPU table and the front end's attributes agree.
    assert dict(zip(vpe_ids.tolist(), cpus.tolist())) == {
        vpe_id: entry[0] for vpe_id, entry in attributes.items()}
    devices, events, vintids, vpes, doorbells = its.tables.virtual_events()
    state = {
        "vpes": attributes,
        "virtual_events": {(d, e): (v, p, b) for d, e, v, p, b in zip(
            devices.tolist(), events.tolist(), vintids.tolist(), vpes.tolist(),
            doorbells.tolist())},
        "vpropbaser": [rd.mmio_read(cpu, GICR_VPROPBASER, 8) for cpu in range(NUM_CPUS)],
        "vpendbaser": [rd.mmio_read(cpu, GICR_VPENDBASER, 8) for cpu in range(NUM_CPUS)],
        "virtual_pending": [virtual.pending_virtual(cpu) for cpu in range(NUM_CPUS)],
    }
    if its.gic_version == "4.1":
        state["vsgis"] = {
            vpe_id: (int(virtual.vsgi_pending[vpe_id]),
                     tuple(tuple(int(x) for x in row) for row in virtual.vsgi_config[vpe_id]))
            for vpe_id in attributes}
        state["doorbells_armed"] = [vpe_id for vpe_id in attributes
                                    if virtual.doorbell_armed[vpe_id]]
    return state


def check_same(its, ref, mems) -> None:
    expected = ref.snapshot()
    got = fast_state(its)
    for key, value in got.items():
        if key == "vsgis":
            value = {k: (p, tuple(tuple(c) for c in cfg)) for k, (p, cfg) in value.items()}
            expected[key] = {k: (p, tuple(tuple(c) for c in cfg))
                             for k, (p, cfg) in expected[key].items()}
        assert value == expected[key], key
    for cpu in range(NUM_CPUS):
        assert its.pending(cpu).tolist() == ref.pending(cpu), f"pending on CPU {cpu}"
    for cpu in range(NUM_CPUS):                      # the guest's read, derived bits included
        assert its.redistributors.mmio_read(cpu, GICR_VPENDBASER, 8) == ref.read_vpendbaser(cpu)
    if its.gic_version == "4.1":
        for cpu in range(NUM_CPUS):
            assert its.redistributors.mmio_read(cpu, GICR_VSGIPENDR, 4) == ref.read_vsgipendr(cpu)
    diff = np.flatnonzero(mems[0].array != mems[1].array)
    assert diff.size == 0, f"guest memory differs at {[hex(a) for a in diff[:8].tolist()]}"


# -- strategies -------------------------------------------------------------------------

dev = st.sampled_from(DEVICES)
evt = st.sampled_from(EVENTS)
vpe = st.sampled_from(VPES)
vintid = st.sampled_from(VINTIDS)
doorbell = st.sampled_from(DOORBELLS)
cpu_field = st.sampled_from(CPU_FIELDS)
cpu = st.integers(0, NUM_CPUS - 1)
# event IDs and devices the warm-up mapped, so effects are frequent
warm_dev = st.sampled_from([5, 5, 5, 6])
warm_evt = st.sampled_from([0, 1, 1, 2, 2, 3, 15])


def physical_packets():
    return st.one_of(
        st.builds(C.int_, warm_dev, warm_evt),
        st.builds(C.clear, warm_dev, warm_evt),
        st.builds(C.discard, warm_dev, warm_evt),
        st.builds(C.inv, warm_dev, warm_evt),
        st.builds(C.movi, warm_dev, warm_evt, st.sampled_from([0, 1, 5])),
        st.builds(C.mapti, warm_dev, warm_evt, st.sampled_from([8192, 8300, 16384]),
                  st.sampled_from([0, 1])),
        st.builds(C.mapd, st.sampled_from([5, 6, 7]), st.sampled_from([ITT, ITT + 0x800]),
                  st.sampled_from([2, 4, 9]), st.sampled_from([True, True, False])),
        st.builds(C.movall, cpu, cpu),
        st.builds(C.invall, st.sampled_from([0, 1])),
    )


def virtual_packets(version: str):
    common = [
        st.builds(C.vmapti, st.one_of(warm_dev, dev), st.one_of(warm_evt, evt),
                  st.one_of(vpe, st.sampled_from([3, 4])), vintid, doorbell),
        st.builds(C.vmapi, st.one_of(warm_dev, dev), st.one_of(warm_evt, evt),
                  st.one_of(vpe, st.sampled_from([3, 4])), doorbell),
        st.builds(C.vmovi, st.one_of(warm_dev, dev), st.one_of(warm_evt, evt),
                  st.one_of(vpe, st.sampled_from([3, 4])), doorbell, st.booleans()),
        st.builds(C.vsync, vpe),
        st.builds(C.vinvall, vpe),
        st.builds(C.int_, warm_dev, warm_evt),
        st.builds(C.int_, warm_dev, warm_evt),
        # any bits at all under a GICv4 command number
        st.builds(lambda op, rest: bytes([op]) + rest,
                  st.sampled_from(sorted(C.GICV4_OPCODES.values())),
                  st.binary(min_size=31, max_size=31)),
    ]
    if version == "4.1":
        common += [
            st.builds(C.vmapp_v41, st.one_of(vpe, st.sampled_from([3, 4])), cpu_field,
                      st.sampled_from(VPTS), st.sampled_from(VPT_SIZES_41),
                      st.sampled_from([VCONF, VPT_OUTSIDE]), doorbell, st.booleans(),
                      st.booleans(), st.sampled_from([True, True, True, False])),
            st.builds(C.vmovp_v41, st.one_of(vpe, st.sampled_from([3, 4])), cpu_field,
                      doorbell, default_doorbell_valid=st.booleans()),
            st.builds(C.invdb, vpe),
            st.builds(C.vsgi, st.one_of(vpe, st.sampled_from([3, 4])), st.integers(0, 15),
                      st.sampled_from([0, 0x10, 0xA0, 0xF0]), st.booleans(), st.booleans(),
                      st.booleans()),
        ]
    else:
        common += [
            st.builds(C.vmapp, st.one_of(vpe, st.sampled_from([3, 4])), cpu_field,
                      st.sampled_from(VPTS), st.sampled_from(VPT_SIZES_40),
                      st.sampled_from([True, True, True, False])),
            st.builds(C.vmovp, st.one_of(vpe, st.sampled_from([3, 4])), cpu_field),
        ]
    return st.one_of(*common)


def vpendbaser_values(version: str):
    if version == "4.1":
        meaningful = st.builds(
            lambda vpe_id, valid, db, pl, g1: VPEND41.encode(
                vPEID=vpe_id, Valid=valid, Doorbell=db, PendingLast=pl, vGrp1En=g1),
            st.sampled_from([3, 4, 5, 511, 512]), st.booleans(), st.booleans(), st.booleans(),
            st.booleans())
    else:
        meaningful = st.builds(
            lambda vpt, valid, pl, idai: VPEND40.encode(
                Physical_Address=vpt >> 16, Valid=valid, PendingLast=pl, IDAI=idai),
            st.sampled_from(VPTS), st.booleans(), st.booleans(), st.booleans())
    return st.one_of(meaningful, meaningful, st.integers(0, 2**64 - 1))


def vpropbaser_values(version: str):
    if version == "4.1":
        meaningful = st.builds(
            lambda valid, size, indirect: VPROP41.encode(
                Valid=valid, Physical_Address=VPE_CONF >> 12, Size=size, Page_Size=0,
                Indirect=indirect, Entry_Size=0),
            st.sampled_from([True, True, False]), st.sampled_from([0, 1]), st.just(False))
    else:
        meaningful = st.builds(
            lambda idbits: VPROP40.encode(Physical_Address=VCONF >> 12, IDbits=idbits),
            st.sampled_from([0, 12, 13, 15, 31]))
    return st.one_of(meaningful, meaningful, st.integers(0, 2**64 - 1))


def invalidation_values():
    """How a GICR_INVLPIR / INVALLR value is made (see `invalidation_value`):
    a V form naming a vPE, a physical form (bits [47:32] possibly set: RES0
    there), or any 64 bits at all."""
    return st.one_of(st.tuples(st.just("v"), st.sampled_from([3, 4, 5, 65535])),
                     st.tuples(st.just("v"), st.sampled_from([3, 4])),
                     st.tuples(st.just("physical"), st.sampled_from([0, 0, 3])),
                     st.tuples(st.just("raw"), st.integers(0, 2**64 - 1)))


def invalidation_value(how, target: int) -> int:
    """The register value `how` describes, naming INTID `target`."""
    form, extra = how
    if form == "v":
        return R.GICR_INVLPIR_V41.encode(V=1, vPEID=extra, INTID=target)
    if form == "physical":
        return target | extra << 32
    return extra


def invalidation_target(ref, cpu_: int, index: int) -> int:
    """An LPI pending on `cpu_` in the reference (so that a reload shows), else 8292."""
    pending = ref.pending(cpu_)
    return pending[index % len(pending)] if pending else 8292


#: (which pending LPI, its new configuration byte) for an invalidation.
prop_rewrite = st.tuples(st.integers(0, 7), st.integers(0, 255))


def operations(version: str):
    ops = [
        # physical configuration bytes rewritten in memory, then (or not) invalidated
        st.tuples(st.just("prop"), st.sampled_from([8192, 8292, 8293, 8300]),
                  st.integers(0, 255)),
        # ... and, for an LPI pending on the CPU (made pending first: an MSI to
        # physical event 6/0 and to virtual event 5/1, whose doorbell is 8292),
        # rewritten just before an invalidation naming it, so that a V form
        # misread as the physical one (or the reverse) shows in the configuration
        # cache
        st.tuples(st.just("invlpir"), cpu, invalidation_values(), prop_rewrite, st.booleans()),
        st.tuples(st.just("invlpir"), cpu, invalidation_values(), prop_rewrite, st.booleans()),
        st.tuples(st.just("invallr"), cpu, invalidation_values(), prop_rewrite, st.booleans()),
        st.tuples(st.just("cmd"), virtual_packets(version)),
        st.tuples(st.just("cmd"), virtual_packets(version)),
        st.tuples(st.just("cmd"), physical_packets()),
        st.tuples(st.just("vpend"), cpu, vpendbaser_values(version)),
        st.tuples(st.just("vpend_half"), cpu, st.integers(0, 1), st.integers(0, 2**32 - 1)),
        st.tuples(st.just("vprop"), cpu, vpropbaser_values(version)),
        st.tuples(st.just("ack"), cpu),
        st.tuples(st.just("ack_virtual"), cpu),
        st.tuples(st.just("ack_virtual"), cpu),
        # doorbells: mostly the warm-up's events (virtual 5/1, 5/2, physical 6/0)
        st.tuples(st.just("msi"), st.one_of(warm_dev, warm_dev, dev),
                  st.one_of(warm_evt, warm_evt, evt)),
        st.tuples(st.just("msi"), warm_dev, warm_evt),
        st.tuples(st.just("translater"), st.one_of(warm_dev, dev), warm_evt),
        st.tuples(st.just("batch"), st.lists(st.tuples(st.one_of(warm_dev, warm_dev, dev),
                                                       st.one_of(warm_evt, evt)),
                                             max_size=12)),
        # Linux's schedule / deschedule of vPE 3 or 4 (VPT A / B), so that
        # residency, write-back and PendingLast happen often
        st.tuples(st.just("schedule"), cpu, st.sampled_from([3, 4])),
        st.tuples(st.just("schedule"), cpu, st.sampled_from([3, 4])),
        st.tuples(st.just("deschedule"), cpu, st.booleans()),
        st.tuples(st.just("deschedule"), cpu, st.booleans()),
    ]
    if version == "4.1":
        ops += [
            st.tuples(st.just("sgir"), st.builds(
                lambda vpe_id, n, junk: R.GITS_SGIR_LAYOUT.encode(vPEID=vpe_id, vINTID=n) | junk,
                st.sampled_from([3, 4, 5, 65535]), st.integers(0, 15),
                st.sampled_from([0, 0, 1 << 20, 1 << 63]))),
            st.tuples(st.just("vsgir"), cpu, st.sampled_from([3, 4, 5, 0xFFFF_FFFF])),
        ]
    return st.one_of(*ops)


def ref_highest(ref, cpu_: int):
    """(INTID, priority) of the reference's highest-priority enabled pending
    LPI of `cpu_` from its configuration cache (`acknowledge`'s rule), or None."""
    enabled = [(ref.config.get(intid, 0) & 0xFC, intid) for intid in ref.pending(cpu_)
               if ref.config.get(intid, 0) & 1]
    if not enabled:
        return None
    priority, intid = min(enabled)
    return intid, priority


def version_of(ref) -> str:
    return ref.gic_version


def apply(its, ref, op) -> None:
    kind = op[0]
    rd = its.redistributors
    if kind == "cmd":
        apply_command(its, ref, op[1])
    elif kind == "vpend":
        _, cpu_, value = op
        rd.mmio_write(cpu_, GICR_VPENDBASER, value, 8)
        ref.write_vpendbaser(cpu_, value)
    elif kind == "vpend_half":
        _, cpu_, half, value = op
        rd.mmio_write(cpu_, GICR_VPENDBASER + 4 * half, value, 4)
        ref.write_vpendbaser(cpu_, R.merge_half(ref.read_vpendbaser(cpu_), half, value))
    elif kind == "vprop":
        _, cpu_, value = op
        rd.mmio_write(cpu_, GICR_VPROPBASER, value, 8)
        ref.write_vpropbaser(cpu_, value)
    elif kind == "schedule":
        _, cpu_, vpe_id = op
        if version_of(ref) == "4.1":
            apply(its, ref, ("vprop", cpu_, VPROP41.encode(Valid=1,
                                                           Physical_Address=VPE_CONF >> 12)))
            apply(its, ref, ("vpend", cpu_, VPEND41.encode(vPEID=vpe_id, Valid=1,
                                                           PendingLast=1, vGrp1En=1)))
        else:
            apply(its, ref, ("vprop", cpu_, VPROP40.encode(Physical_Address=VCONF >> 12,
                                                           IDbits=INTID_BITS - 1)))
            vpt = VPT_A if vpe_id == 3 else VPT_B
            apply(its, ref, ("vpend", cpu_, VPEND40.encode(Physical_Address=vpt >> 16, Valid=1,
                                                           PendingLast=1, IDAI=1)))
    elif kind == "deschedule":
        _, cpu_, doorbell_ = op
        value = ref.read_vpendbaser(cpu_) & ~VPEND40["Valid"].mask
        if version_of(ref) == "4.1":
            value = VPEND41["PendingLast"].deposit(VPEND41["Doorbell"].deposit(value, doorbell_), 0)
        apply(its, ref, ("vpend", cpu_, value))
    elif kind == "prop":
        _, intid, byte = op
        for mem in (its.memory, ref.mem):
            mem.array[PROP + intid - 8192] = byte
    elif kind in ("invlpir", "invallr"):
        _, cpu_, how, (index, byte), ring = op
        if ring:                                     # LPI 8292 / the doorbell: CPU 0 mostly
            apply(its, ref, ("msi", 6, 0))
            apply(its, ref, ("msi", 5, 1))
        target = invalidation_target(ref, cpu_, index)
        apply(its, ref, ("prop", target, byte))
        value = invalidation_value(how, target)
        rd.mmio_write(cpu_, GICR_INVLPIR if kind == "invlpir" else GICR_INVALLR, value, 8)
        getattr(ref, f"write_{kind}")(cpu_, value)
        for cpu_ in range(NUM_CPUS):
            assert rd.highest_pending(cpu_) == ref_highest(ref, cpu_)
        assert rd.highest_pending(op[1]) == ref_highest(ref, op[1])
    elif kind == "ack":
        assert its.acknowledge(op[1]) == ref.acknowledge(op[1])
    elif kind == "ack_virtual":
        best = rd.highest_pending_virtual(op[1])
        taken = rd.acknowledge_virtual(op[1])
        assert taken == ref.acknowledge_virtual(op[1])
        assert (best is None and taken is None) or best[0] == taken
    elif kind == "msi":
        assert its.msi(op[1], op[2]) == ref.msi(op[1], op[2])
    elif kind == "translater":
        assert its.mmio_write(GITS_TRANSLATER, op[2], 4, device_id=op[1]) == ref.msi(op[1], op[2])
    elif kind == "batch":
        pairs = op[1]
        devices = np.array([d for d, _ in pairs], np.uint32)
        events = np.array([e for _, e in pairs], np.uint32)
        cpus_out = np.empty(len(pairs), np.int32)
        got = its.msi_batch(devices, events, cpus_out=cpus_out)
        expected = [ref.msi(d, e) for d, e in pairs]
        assert got.tolist() == [int(status) for status in expected]
        for (d, e), status, cpu_ in zip(pairs, expected, cpus_out.tolist()):
            if status == VirtualStatus.VIRTUAL:
                assert cpu_ == ref.vpes[ref.virtual_ite(d, e)[1]].cpu
            elif status == 0:
                assert cpu_ == ref.translate(d, e)[1]
            else:
                assert cpu_ == -1
    elif kind == "sgir":
        its.mmio_write(GITS_SGIR, op[1], 8)
        ref.write_sgir(op[1])
    elif kind == "vsgir":
        rd.mmio_write(op[1], GICR_VSGIR, op[2], 4)
        ref.write_vsgir(op[1], op[2])
    else:                                            # pragma: no cover
        raise AssertionError(kind)


@pytest.mark.parametrize("version", ["4.0", "4.1"])
@DIFF_SETTINGS
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_random_gicv4_streams_agree(version, data, seed):
    its, ref, mems = make_pair(version, seed)
    check_same(its, ref, mems)
    rd = its.redistributors
    signalled = []
    rd.on_signal = signalled.append

    def best(cpu_):
        return rd.highest_pending(cpu_), rd.highest_pending_virtual(cpu_)
    last = [best(cpu_) for cpu_ in range(NUM_CPUS)]
    for op in data.draw(st.lists(operations(version), min_size=1, max_size=40)):
        signalled.clear()
        apply(its, ref, op)
        check_same(its, ref, mems)
        # Every CPU whose best (physical, virtual) changed was signalled (an op
        # made of several steps may signal a CPU that changed and changed back).
        now = [best(cpu_) for cpu_ in range(NUM_CPUS)]
        changed = {cpu_ for cpu_ in range(NUM_CPUS) if now[cpu_] != last[cpu_]}
        assert changed <= set(signalled), (op, changed, signalled)
        last = now


@pytest.mark.parametrize("version", ["4.0", "4.1"])
def test_the_stream_reaches_every_effect(version):
    """The differential stream's building blocks do what they must for the
    comparison to mean something: a non-resident INT sets a VPT bit and rings
    the doorbell, a schedule caches it, a deschedule writes it back."""
    its, ref, mems = make_pair(version, 1)
    mem = mems[0]
    mem.array[VPT_A + 8200 // 8] &= ~np.uint8(1 << (8200 % 8))
    mems[1].array[VPT_A + 8200 // 8] &= ~np.uint8(1 << (8200 % 8))
    assert apply_command(its, ref, C.int_(5, 1)) == 0
    assert mem.array[VPT_A + 8200 // 8] >> (8200 % 8) & 1
    assert 8292 in its.pending(0).tolist()
    if version == "4.1":
        apply(its, ref, ("vprop", 0, VPROP41.encode(Valid=1, Physical_Address=VPE_CONF >> 12)))
        apply(its, ref, ("vpend", 0, VPEND41.encode(vPEID=3, Valid=1)))
    else:
        apply(its, ref, ("vprop", 0, VPROP40.encode(Physical_Address=VCONF >> 12, IDbits=13)))
        apply(its, ref, ("vpend", 0, VPEND40.encode(Physical_Address=VPT_A >> 16, Valid=1)))
    assert 8200 in its.redistributors.virtual.pending_virtual(0)
    assert apply_command(its, ref, C.clear(5, 1)) == 0
    assert 8200 not in its.redistributors.virtual.pending_virtual(0)
    apply(its, ref, ("vpend", 0, 0))
    assert not mem.array[VPT_A + 8200 // 8] >> (8200 % 8) & 1
    check_same(its, ref, mems)


# -- doorbells on virtual ITEs, by hand --------------------------------------------------
# make_pair's warm-up: (5, 1) -> vINTID 8200 of vPE 3 (CPU 0, VPT_A, VPT_size 13),
# doorbell 8292; (5, 2) -> vINTID 9000 of vPE 4 (CPU 1, VPT_B), no doorbell (1023);
# (6, 0) -> physical LPI 8292 on collection 0 (CPU 0).  8200 = 8 * 1025 and
# 9000 = 8 * 1125: bit 0 of VPT byte 0x401 and of VPT byte 0x465.


def _set_byte(mems, addr: int, value: int) -> None:
    for mem in mems:
        mem.array[addr] = value


@pytest.mark.parametrize("version", ["4.0", "4.1"])
def test_msi_on_a_non_resident_vpe_sets_the_vpt_bit_and_rings_the_doorbell(version):
    its, ref, mems = make_pair(version, 2)
    _set_byte(mems, VPT_A + 0x401, 0b1010_0110)
    _set_byte(mems, VPT_B + 0x465, 0b0100_0000)
    assert its.pending(0).tolist() == [] and its.pending(1).tolist() == []
    status = its.msi(5, 1)
    assert status == VirtualStatus.VIRTUAL and status is its_core.frontend.virtual.VirtualStatus.VIRTUAL
    assert status == ref.msi(5, 1)
    assert mems[0].array[VPT_A + 0x401] == 0b1010_0111
    assert its.pending(0).tolist() == [8292]                     # the ITE's doorbell
    cpus_out = np.empty(4, np.int32)
    statuses = its.msi_batch([5, 6, 5, 7], [2, 0, 1, 0], cpus_out=cpus_out)
    assert statuses.tolist() == [64, 0, 64, int(its_core.TranslationStatus.NO_DEVICE)]
    assert cpus_out.tolist() == [1, 0, 0, -1]
    assert mems[0].array[VPT_B + 0x465] == 0b0100_0001
    assert its.pending(1).tolist() == []                          # doorbell 1023: none
    assert [ref.msi(d, e) for d, e in [(5, 2), (6, 0), (5, 1), (7, 0)]] == statuses.tolist()
    check_same(its, ref, mems)


@pytest.mark.parametrize("version", ["4.0", "4.1"])
def test_msi_drops_for_an_unmapped_vpe_and_an_out_of_range_vintid(version):
    its, ref, mems = make_pair(version, 3)
    _set_byte(mems, VPT_A + 0x401, 0)
    _set_byte(mems, VPT_B + 0x465, 0)
    if version == "4.1":
        unmap = C.vmapp_v41(4, 1, VPT_B, 13, VCONF, C.NO_DOORBELL, alloc=False, valid=False)
        shrink = C.vmapp_v41(3, 0, VPT_A, 12, VCONF, 8293, alloc=False)
    else:
        unmap, shrink = C.vmapp(4, 1, VPT_B, 13, valid=False), C.vmapp(3, 0, VPT_A, 12)
    assert apply_command(its, ref, unmap) == 0
    assert apply_command(its, ref, shrink) == 0                  # vINTIDs below 2**13 only
    assert its.msi(5, 2) == ref.msi(5, 2) == VirtualStatus.VIRTUAL_NO_VPE
    assert its.mmio_write(GITS_TRANSLATER, 1, 4, device_id=5) == ref.msi(5, 1) \
        == VirtualStatus.VIRTUAL_INTID_OUT_OF_RANGE
    statuses = its.msi_batch([5, 5], [2, 1])
    assert statuses.tolist() == [65, 66]
    assert mems[0].array[VPT_A + 0x401] == 0 and mems[0].array[VPT_B + 0x465] == 0
    assert its.pending(0).tolist() == [] and its.pending(1).tolist() == []
    check_same(its, ref, mems)


@pytest.mark.parametrize("version", ["4.0", "4.1"])
def test_signalling_looks_again_after_an_invalidation_and_a_batch(version):
    """A vLPI whose configuration byte the guest enables in memory is signalled
    at the VINVALL that invalidates it, not before; a batch (the native
    delivery loop) that makes it pending again on the resident vPE signals."""
    its, ref, mems = make_pair(version, 9)
    rd = its.redistributors
    for mem in mems:
        mem.array[VPT_A:VPT_A + 0x800] = 0
    _set_byte(mems, VCONF + 8200 - 8192, 0xA0)                    # vLPI 8200 disabled
    apply(its, ref, ("schedule", 0, 3))
    signalled = []
    rd.on_signal = signalled.append
    assert its.msi(5, 1) == VirtualStatus.VIRTUAL                  # cached, disabled
    assert rd.highest_pending_virtual(0) is None and signalled == []
    _set_byte(mems, VCONF + 8200 - 8192, 0xA1)                    # the guest enables it
    assert rd.highest_pending_virtual(0) == (8200, 0xA0) and signalled == []
    assert apply_command(its, ref, C.vinvall(3)) == 0
    assert signalled == [0]
    assert rd.acknowledge_virtual(0) == 8200 and signalled == [0, 0]
    assert ref.msi(5, 1) == VirtualStatus.VIRTUAL and ref.acknowledge_virtual(0) == 8200
    assert its.msi_batch([5], [1]).tolist() == [VirtualStatus.VIRTUAL]
    assert signalled == [0, 0, 0] and rd.highest_pending_virtual(0) == (8200, 0xA0)
    assert ref.msi(5, 1) == VirtualStatus.VIRTUAL
    check_same(its, ref, mems)


@pytest.mark.parametrize("version", ["4.0", "4.1"])
def test_a_resident_vpe_caches_the_vlpi_serves_it_and_signals(version):
    its, ref, mems = make_pair(version, 4)
    rd = its.redistributors
    for mem in mems:
        mem.array[VPT_A:VPT_A + 0x800] = 0                        # nothing pending yet
    _set_byte(mems, VCONF + 8200 - 8192, 0xA1)                    # enabled, priority 0xA0
    apply(its, ref, ("schedule", 0, 3))
    assert rd.highest_pending_virtual(0) is None
    signalled = []
    rd.on_signal = signalled.append
    assert its.msi(5, 1) == ref.msi(5, 1) == VirtualStatus.VIRTUAL
    assert mems[0].array[VPT_A + 0x401] == 0                      # cached, not in the VPT
    assert its.pending(0).tolist() == []                          # no doorbell
    assert signalled == [0]
    assert rd.highest_pending_virtual(0) == (8200, 0xA0)
    assert rd.highest_pending_virtual(0, priority_mask=0xA0) is None   # strictly below
    assert rd.highest_pending_virtual(1) is None
    assert rd.acknowledge_virtual(0) == ref.acknowledge_virtual(0) == 8200
    assert signalled == [0, 0]
    assert rd.acknowledge_virtual(0) is None and ref.acknowledge_virtual(0) is None
    check_same(its, ref, mems)
    apply(its, ref, ("deschedule", 0, False))
    assert mems[0].array[VPT_A + 0x401] == 0                      # taken: stays clear
    check_same(its, ref, mems)


def test_a_disabled_vlpi_is_cached_but_not_served():
    its, ref, mems = make_pair("4.0", 5)
    for mem in mems:
        mem.array[VPT_A:VPT_A + 0x800] = 0
    _set_byte(mems, VCONF + 8200 - 8192, 0xA0)                    # Enable = 0
    apply(its, ref, ("schedule", 0, 3))
    assert its.msi(5, 1) == VirtualStatus.VIRTUAL
    assert its.redistributors.virtual.pending_virtual(0) == [8200]
    assert its.redistributors.highest_pending_virtual(0) is None
    assert its.redistributors.acknowledge_virtual(0) is None
    assert ref.msi(5, 1) == VirtualStatus.VIRTUAL and ref.acknowledge_virtual(0) is None


def test_an_all_physical_batch_never_enters_virtual_delivery():
    its, ref, mems = make_pair("4.1", 6)
    virtual = its.redistributors.virtual
    memory_before = mems[0].array.copy()
    version = virtual.version
    assert its.msi_batch([6, 6, 7], [0, 0, 0]).tolist() == [0, 0, 1]
    assert virtual.version == version                  # no virtual state was looked at
    assert np.array_equal(mems[0].array, memory_before)
    its.msi_batch([6, 5], [0, 1])
    assert virtual.version == version + 1              # one virtual pair: one delivery pass


def test_a_requested_default_doorbell_reads_1_until_it_rings():
    """v4.1: a deschedule with Doorbell = 1 (nothing pending) arms vPE 3's
    default doorbell 8293; VPENDBASER.Doorbell reads 1 while it is
    outstanding and 0 once an enabled vLPI rang it."""
    its, ref, mems = make_pair("4.1", 8)
    _set_byte(mems, VCONF + 8200 - 8192, 0xA1)                    # vLPI 8200 enabled
    for mem in mems:
        mem.array[VPT_A:VPT_A + 0x800] = 0
    apply(its, ref, ("schedule", 0, 3))
    apply(its, ref, ("deschedule", 0, True))
    doorbell = VPEND41["Doorbell"]
    assert doorbell.extract(its.redistributors.mmio_read(0, GICR_VPENDBASER, 8)) == 1
    assert 8293 not in its.pending(0).tolist()
    assert its.msi(5, 1) == VirtualStatus.VIRTUAL                  # vINTID 8200 -> vPE 3
    assert 8293 in its.pending(0).tolist()
    assert doorbell.extract(its.redistributors.mmio_read(0, GICR_VPENDBASER, 8)) == 0
    assert ref.msi(5, 1) == VirtualStatus.VIRTUAL
    check_same(its, ref, mems)


def test_a_gicv3_redistributor_has_no_virtual_interrupt():
    rd = its_core.Redistributors(GuestMemory(MEM), 2)
    assert rd.highest_pending_virtual(1) is None and rd.acknowledge_virtual(1) is None
    with pytest.raises(ValueError):
        rd.acknowledge_virtual(2)


def test_a_disabled_its_delivers_no_vlpi():
    its, ref, mems = make_pair("4.0", 7)
    _set_byte(mems, VPT_A + 0x401, 0)
    its.mmio_write(GITS_CTLR, 0, 4)
    ref.enabled = False
    assert its.msi(5, 1) == ref.msi(5, 1) == its_core.TranslationStatus.ITS_DISABLED
    assert its.msi_batch([5], [1]).tolist() == [int(its_core.TranslationStatus.ITS_DISABLED)]
    assert mems[0].array[VPT_A + 0x401] == 0 and its.pending(0).tolist() == []


# -- GICR_INVLPIR / GICR_INVALLR: the GICv4.1 V forms, by hand ------------------------------
# (6, 0) -> physical LPI 8292 on CPU 0; its configuration byte is at PROP + 100.

def _pending_8292_at(its, ref, mems, byte: int):
    """LPI 8292 pending on CPU 0 with configuration `byte` cached; returns nothing."""
    _set_byte(mems, PROP + 100, byte)
    assert apply_command(its, ref, C.inv(6, 0)) == 0
    assert apply_command(its, ref, C.int_(6, 0)) == 0
    assert its.redistributors.highest_pending(0) == (8292, byte & 0xFC)


@pytest.mark.parametrize("register", ["invlpir", "invallr"])
def test_a_gicv41_v_form_is_not_the_physical_form(register):
    """V = 1 with INTID 8292 (INVLPIR) or any vPEID (INVALLR) must not reload the
    physical configuration byte of 8292: the rewritten byte is not seen until
    the physical form is written."""
    its, ref, mems = make_pair("4.1", 11)
    rd = its.redistributors
    _pending_8292_at(its, ref, mems, 0xA1)                  # enabled, priority 0xA0
    _set_byte(mems, PROP + 100, 0x31)                       # priority 0x30 in memory only
    offset = GICR_INVLPIR if register == "invlpir" else GICR_INVALLR
    v_form = 1 << 63 | 3 << 32 | (8292 if register == "invlpir" else 0)
    rd.mmio_write(0, offset, v_form, 8)
    getattr(ref, f"write_{register}")(0, v_form)
    assert rd.highest_pending(0) == (8292, 0xA0) == ref_highest(ref, 0)
    assert len(rd.access_errors) == 0
    physical = 8292 if register == "invlpir" else 0
    rd.mmio_write(0, offset, physical, 8)
    getattr(ref, f"write_{register}")(0, physical)
    assert rd.highest_pending(0) == (8292, 0x30) == ref_highest(ref, 0)
    check_same(its, ref, mems)


@pytest.mark.parametrize("register", ["invlpir", "invallr"])
def test_on_gicv40_v_and_vpeid_are_res0(register):
    """GICv4.0 has no V form: bit 63 and bits [47:32] are ignored and the write
    is the physical invalidation."""
    its, ref, mems = make_pair("4.0", 12)
    rd = its.redistributors
    _pending_8292_at(its, ref, mems, 0xA1)
    _set_byte(mems, PROP + 100, 0x31)
    offset = GICR_INVLPIR if register == "invlpir" else GICR_INVALLR
    value = 1 << 63 | 3 << 32 | (8292 if register == "invlpir" else 0)
    rd.mmio_write(0, offset, value, 8)
    getattr(ref, f"write_{register}")(0, value)
    assert rd.highest_pending(0) == (8292, 0x30) == ref_highest(ref, 0)
    check_same(its, ref, mems)


def test_a_v_form_needs_no_enable_lpis_and_is_not_an_access_error():
    """The physical form is ignored and recorded while EnableLPIs is 0; the
    V form (a vPE's vLPIs, not this CPU's physical tables) is accepted
    silently, also as the high 32-bit half."""
    its, ref, mems = make_pair("4.1", 13)
    rd = its.redistributors
    rd.mmio_write(1, GICR_CTLR, 0, 4)
    ref.disable_lpis(1)
    rd.mmio_write(1, GICR_INVLPIR, 1 << 63 | 4 << 32 | 9000, 8)
    rd.mmio_write(1, GICR_INVALLR, 1 << 63 | 4 << 32, 8)
    rd.mmio_write(1, GICR_INVALLR + 4, 1 << 31 | 4, 4)      # V and vPEID in the high half
    assert len(rd.access_errors) == 0
    rd.mmio_write(1, GICR_INVLPIR, 9000, 8)
    rd.mmio_write(1, GICR_INVALLR, 0, 8)
    assert [error.offset for error in rd.access_errors] == [GICR_INVLPIR, GICR_INVALLR]
    check_same(its, ref, mems)


def test_a_v_form_on_a_resident_vpe_signals_a_rewritten_vlpi_configuration():
    """vLPI configuration is read when used: after the guest enables a pending
    vLPI in memory, the INVLPIR V = 1 it writes (as Linux does on GICv4.1) is
    followed by the signalling, which finds the vLPI now deliverable."""
    its, ref, mems = make_pair("4.1", 14)
    rd = its.redistributors
    for mem in mems:
        mem.array[VPT_A:VPT_A + 0x800] = 0
    _set_byte(mems, VCONF + 8200 - 8192, 0xA0)              # vLPI 8200 disabled
    apply(its, ref, ("schedule", 0, 3))
    assert its.msi(5, 1) == ref.msi(5, 1) == VirtualStatus.VIRTUAL
    assert rd.highest_pending_virtual(0) is None
    signalled = []
    rd.on_signal = signalled.append
    _set_byte(mems, VCONF + 8200 - 8192, 0xA1)              # the guest enables it
    value = R.GICR_INVLPIR_V41.encode(V=1, vPEID=3, INTID=8200)
    assert value == 0x8000_0003_0000_2008
    rd.mmio_write(0, GICR_INVLPIR, value, 8)
    ref.write_invlpir(0, value)
    assert signalled == [0]
    assert rd.highest_pending_virtual(0) == (8200, 0xA0)
    assert rd.acknowledge_virtual(0) == ref.acknowledge_virtual(0) == 8200
    check_same(its, ref, mems)
