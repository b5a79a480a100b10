"""GICv4.0 cross-check against QEMU 7.2 TCG (gicv4-digest §9).

One script (tests/gicv4_el2_script.py) runs three times:

* on QEMU 7.2, ``-M virt,gic-version=4,virtualization=on -cpu max -smp 2``,
  as the bare-metal EL2 guest tests/guests/gicv4_el2.c, which interprets the
  script's generated table and prints every register read, GITS_CREADR after
  every command, and after each step the QEMU vPE table entries (VTEs), the
  12-byte virtual ITEs, VPT bytes, the doorbells' physical pending-table bytes
  and GICR_VPENDBASER (skipped when the cross compiler or QEMU is missing);
* on the fast `its_core.ITS(gic_version="4.0")` with its `Redistributors` on
  a `GuestMemory` at the guest's addresses, through MMIO and the command queue
  in memory;
* on the oracle `ReferenceITS(gic_version="4.0")`, through its attributes and
  `execute_slot`.

Each observation is turned into a view both sides can produce (a VTE into
(CPU, VPT address, VPT_size) against our vPE attributes, a QEMU ITE into
(vINTID, vPEID, doorbell) against ``tables.virtual_event``, VPT and pending
bytes into sets of INTIDs against memory / the resident cache / our pending
LPIs) and compared operation by operation.  The two models must agree
everywhere; QEMU and our model must agree except where the script declares a
`Differ` (the by-design register differences of docs/gicv4.md and
the corner cases C1, C7 and the stall, where QEMU 7.2 and the architecture
part ways), and there each side must show exactly its declared value.
"""

from __future__ import annotations

import pytest

import its_core
from its_core import GuestMemory
from its_core.frontend import commands as C
from its_core.frontend.fields import Field, Layout
from its_core.frontend.reference_its import ReferenceITS

import gicv4_el2_script as S
import virt_guests

needs_tools = pytest.mark.skipif(
    virt_guests.skip_reason(compiler=True, qemu=True) is not None,
    reason=str(virt_guests.skip_reason(compiler=True, qemu=True)))

QEMU_MACHINE = "virt,gic-version=4,virtualization=on"
GUEST_SOURCES = ("gicv4_el2_start.S", "gicv4_el2.c")

#: QEMU's vPE table entry (gicv4-digest §2.2).
QEMU_VTE = Layout("QEMU VTE", Field.bits("Valid", 0, 0), Field.bits("VPT_size", 5, 1),
                  Field.bits("VPT_addr", 41, 6), Field.bits("RDbase", 57, 42))
#: QEMU's 12-byte ITE: a 64-bit low word, then a 32-bit high word (gicv4-digest §4.1).
QEMU_ITE_LOW = Layout("QEMU ITE low word", Field.bits("Valid", 0, 0), Field.bits("IntType", 1, 1),
                      Field.bits("INTID", 25, 2), Field.bits("ICID", 47, 32),
                      Field.bits("vPEID", 63, 48))
QEMU_ITE_HIGH = Layout("QEMU ITE high word", Field.bits("Doorbell", 23, 0), width=32)
QEMU_ITE_VIRTUAL = 0
STALLED = 1


# -- views: what a dump means, on each side --------------------------------------------

def _bits(data: bytes, first_intid: int) -> frozenset:
    """INTIDs whose bit is set in `data` (bit n of byte k = INTID first + 8k + n)."""
    return frozenset(first_intid + 8 * k + n for k, byte in enumerate(data)
                     for n in range(8) if byte >> n & 1)


def _dump_range(op: S.Op) -> range:
    first = (S.VPT_DUMP[0] if op.label == "vpt" else S.PEND_DUMP[0]) * 8
    return range(first, first + op.size * 8)


def qemu_view(op: S.Op, data: bytes):
    """The view of QEMU's dumped bytes `data` for dump `op`."""
    if op.label == "vte":
        vte = QEMU_VTE.decode(int.from_bytes(data, "little"))
        if not vte["Valid"]:
            return None
        return (vte["RDbase"], vte["VPT_addr"] << 16, vte["VPT_size"])
    if op.label == "ite":
        low = QEMU_ITE_LOW.decode(int.from_bytes(data[:8], "little"))
        high = QEMU_ITE_HIGH.decode(int.from_bytes(data[8:], "little"))
        if not low["Valid"]:
            return None
        assert low["IntType"] == QEMU_ITE_VIRTUAL and low["ICID"] == 0, low
        return (low["INTID"], low["vPEID"], high["Doorbell"])
    return _bits(data, _dump_range(op).start)


class FastSide:
    """The fast ITS and its redistributors, driven as the guest drives QEMU."""

    def __init__(self) -> None:
        self.mem = GuestMemory(S.WINDOW_BYTES, base=S.WINDOW)
        self.its = its_core.ITS(self.mem, num_cpus=S.NUM_CPUS, device_bits=16, event_bits=16,
                                intid_bits=S.INTID_BITS, gic_version="4.0")
        self.rd = self.its.redistributors

    @staticmethod
    def _region(addr: int):
        if S.ITS <= addr < S.GICR:
            return "its", None, addr - S.ITS
        if S.GICR <= addr < S.GICR + S.NUM_CPUS * S.RD_STRIDE:
            cpu, offset = divmod(addr - S.GICR, S.RD_STRIDE)
            return "rd", cpu, offset
        if S.WINDOW <= addr < S.WINDOW + S.WINDOW_BYTES:
            return "ram", None, addr
        raise AssertionError(f"the script touches {addr:#x}, which no model has")

    def write(self, addr: int, value: int, size: int) -> None:
        region, cpu, offset = self._region(addr)
        if region == "its":
            self.its.mmio_write(offset, value, size)
        elif region == "rd":
            self.rd.mmio_write(cpu, offset, value, size)
        else:
            self.mem.write(addr, value.to_bytes(size, "little"))

    def read(self, addr: int, size: int) -> int | None:
        region, cpu, offset = self._region(addr)
        if region == "its":
            return self.its.mmio_read(offset, size)
        return self.rd.mmio_read(cpu, offset, size)

    def fill(self, addr: int, size: int) -> None:
        self.mem.fill(addr, size)

    def command(self, op: S.Op) -> tuple[int, list[int]]:
        """(GITS_CREADR, error codes) after queueing `op`'s packet."""
        self.mem.write(op.addr, op.packet)
        before = len(self.its.errors)
        self.its.mmio_write(S.GITS_CWRITER, op.value, 8)
        return (self.its.mmio_read(S.GITS_CREADR, 8),
                [error.code for error in self.its.errors[before:]])

    def acknowledge(self) -> int | None:
        return self.its.acknowledge(0)

    def acknowledge_virtual(self) -> int | None:
        return self.rd.acknowledge_virtual(0)

    def view(self, op: S.Op):
        virtual = self.rd.virtual
        if op.label == "vte":
            entry = virtual.vpe_state().get(op.ids[0])
            return None if entry is None else entry[:3]
        if op.label == "ite":
            return self.its.tables.virtual_event(*op.ids)
        intids = _dump_range(op)
        if op.label == "pend":
            pending = self.its.pending(op.ids[0]).tolist()
        else:
            resident = [cpu for cpu in range(S.NUM_CPUS)
                        if virtual.resident[cpu] and int(virtual.resident_vpt[cpu]) == op.ids[0]]
            if resident:          # the resident vPE's pending state is its cache
                pending = virtual.pending_virtual(resident[0])
            else:
                return _bits(self.mem.read(op.addr, op.size), intids.start)
        return frozenset(intid for intid in pending if intid in intids)


class ReferenceSide:
    """The oracle, given the same register writes and queue slots (it has no
    MMIO: the writes become its attributes and methods; GITS_CREADR is kept
    here, and, as the fast ITS's, is read-only)."""

    def __init__(self) -> None:
        self.mem = GuestMemory(S.WINDOW_BYTES, base=S.WINDOW)
        self.ref = ReferenceITS(self.mem, S.NUM_CPUS, device_bits=16, event_bits=16,
                                intid_bits=S.INTID_BITS, gic_version="4.0")
        self.creadr = self.cwriter = 0

    def _run_queue(self) -> list[int]:
        codes = []
        while self.ref.enabled and self.creadr != self.cwriter:
            code = self.ref.execute_slot(S.QUEUE + self.creadr)
            if code:
                codes.append(code)
            self.creadr += 32
        return codes

    def write(self, addr: int, value: int, size: int) -> None:
        ref = self.ref
        if S.WINDOW <= addr < S.WINDOW + S.WINDOW_BYTES:
            self.mem.write(addr, value.to_bytes(size, "little"))
            return
        region, cpu, offset = FastSide._region(addr)
        if region == "its":
            baser = {S.GITS_BASER[0]: "baser0", S.GITS_BASER[1]: "baser1"}
            if offset == S.GITS_CTLR:
                ref.enabled = bool(value & 1)
                self._run_queue()
            elif offset == S.GITS_CWRITER:
                self.cwriter = value
                self._run_queue()
            elif offset == S.GITS_CBASER and not ref.enabled:
                self.creadr = self.cwriter = 0
            elif offset in baser and not ref.enabled:
                setattr(ref, baser[offset], value)
            elif offset == S.GITS_BASER[2] and not ref.enabled:
                ref.write_baser2(value)
            return
        if offset == S.GICR_PROPBASER:
            ref.propbaser = value
        elif offset == S.GICR_PENDBASER:
            ref.pendbaser[cpu] = value
        elif offset == S.GICR_CTLR:
            (ref.enable_lpis if value & 1 else ref.disable_lpis)(cpu)
        elif offset == S.GICR_VPROPBASER:
            ref.write_vpropbaser(cpu, value)
        elif offset == S.GICR_VPENDBASER:
            ref.write_vpendbaser(cpu, value)

    def read(self, addr: int, size: int) -> int | None:
        """The registers the oracle models; None for the others."""
        region, cpu, offset = FastSide._region(addr)
        if region == "its":
            return self.creadr if offset == S.GITS_CREADR else None
        if offset == S.GICR_VPENDBASER:
            return self.ref.read_vpendbaser(cpu)
        if offset == S.GICR_VPROPBASER:
            return self.ref.vpropbaser[cpu]
        return None

    def fill(self, addr: int, size: int) -> None:
        self.mem.fill(addr, size)

    def command(self, op: S.Op) -> tuple[int, list[int]]:
        self.mem.write(op.addr, op.packet)
        self.cwriter = op.value
        codes = self._run_queue()
        return self.creadr, codes

    def acknowledge(self) -> int | None:
        return self.ref.acknowledge(0)

    def acknowledge_virtual(self) -> int | None:
        return self.ref.acknowledge_virtual(0)

    def view(self, op: S.Op):
        ref = self.ref
        if op.label == "vte":
            vpe = ref.vpes.get(op.ids[0])
            return None if vpe is None else (vpe.cpu, vpe.vpt_addr, vpe.vpt_size)
        if op.label == "ite":
            return ref.virtual_ite(*op.ids)
        intids = _dump_range(op)
        if op.label == "pend":
            pending = ref.pending(op.ids[0])
        else:
            resident = [r for r in ref.resident if r is not None and r.vpt_addr == op.ids[0]]
            if resident:
                pending = resident[0].pending
            else:
                return _bits(self.mem.read(op.addr, op.size), intids.start)
        return frozenset(intid for intid in pending if intid in intids)


def replay(side) -> list:
    """Run the script on `side`; one result per printing op, in order."""
    results = []
    for op in S.SCRIPT:
        if op.kind == "step":
            results.append(op.value)
        elif op.kind == "write":
            side.write(op.addr, op.value, op.size)
        elif op.kind == "fill":
            side.fill(op.addr, op.size)
        elif op.kind == "read":
            results.append(None if op.qemu_only else side.read(op.addr, op.size))
        elif op.kind == "cmd":
            results.append(side.command(op))
        elif op.kind == "dump":
            results.append(side.view(op))
        elif op.addr == S.SYSREGS["ICC_IAR1_EL1"]:
            intid = side.acknowledge()
            results.append(C.NO_DOORBELL if intid is None else intid)    # 1023: spurious
        elif op.addr == S.SYSREGS["EL1_VIRQ"]:
            intid = side.acknowledge_virtual()
            results.append(0 if intid is None else intid)            # 0: no vIRQ
        elif op.addr in (S.SYSREGS["ICC_EOIR1_EL1"], S.SYSREGS["ICV_EOIR1_EL1"]):
            results.append(op.value)                 # EOI is not modelled (C25)
        else:
            results.append(None)                     # CPU interface only (QEMU)
    return results


PRINTING = [op for op in S.SCRIPT if op.kind in S.PRINTING]
TAGS = {"step": "S", "read": "R", "cmd": "C", "dump": "M", "sysreg": "Y"}


def parse_qemu(output: str) -> tuple[list, dict]:
    """One result per printing op from the guest's UART lines, checking each
    line belongs to its op (tag and address); and the raw dumped bytes by
    index into PRINTING."""
    lines = output.splitlines()
    assert lines and lines[-1] == "END", output[-2000:]
    lines = lines[:-1]
    assert len(lines) == len(PRINTING), (len(lines), len(PRINTING), output[-2000:])
    results, raw = [], {}
    for index, (op, line) in enumerate(zip(PRINTING, lines)):
        tag, first, second = line.split()
        assert tag == TAGS[op.kind], (op, line)
        if op.kind == "step":
            assert int(first, 16) == op.value, (op, line)
            results.append(op.value)
        elif op.kind == "dump":
            assert int(first, 16) == op.addr, (op, line)
            raw[index] = bytes.fromhex(second)
            results.append(qemu_view(op, raw[index]))
        else:
            assert int(first, 16) == op.addr, (op, line)
            results.append(int(second, 16))
    return results, raw


# -- fixtures ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def qemu_run(tmp_path_factory):
    """QEMU 7.2's (results, raw dumps) for the script (built and run once per module)."""
    reason = virt_guests.skip_reason(compiler=True, qemu=True)
    if reason is not None:                   # (never in CI: .ci/run requires the tools)
        pytest.skip(reason)
    out_dir = tmp_path_factory.mktemp("gicv4_el2")
    (out_dir / "gicv4_el2_script.h").write_text(S.c_header())
    binary = virt_guests.build("gicv4_el2", out_dir, sources=GUEST_SOURCES)
    output = virt_guests.run_on_qemu(binary, smp=S.NUM_CPUS, machine=QEMU_MACHINE, cpu="max",
                                     timeout=60)
    return parse_qemu(output)


@pytest.fixture(scope="module")
def qemu(qemu_run):
    """QEMU's results, one per printing op."""
    return qemu_run[0]


@pytest.fixture(scope="module")
def ours():
    """(fast ITS results, reference results) for the script."""
    return replay(FastSide()), replay(ReferenceSide())


def _steps() -> list[tuple[int, str]]:
    return [(op.value, op.label) for op in S.SCRIPT if op.kind == "step"]


def _indices(step: int) -> list[int]:
    """Indices into PRINTING of step `step`'s operations (its marker included)."""
    starts = [i for i, op in enumerate(PRINTING) if op.kind == "step"] + [len(PRINTING)]
    return list(range(starts[step], starts[step + 1]))


# -- the two models agree on the script (no QEMU needed) ---------------------------------

def test_fast_its_and_reference_agree_on_every_observation(ours):
    fast, ref = ours
    for op, got, expected in zip(PRINTING, fast, ref):
        if op.kind == "read" and expected is None:
            continue                                 # a register only the fast ITS models
        if op.kind == "cmd":
            assert got[1] == ([op.ours_error] if op.ours_error else []), (
                f"{C.decode(op.packet, gic_version='4.0')}: "
                f"{[C.error_name(code) for code in got[1]]}")
        assert got == expected, (op, got, expected)


def _step_results(results: list, step: int) -> list[tuple[S.Op, object]]:
    return [(PRINTING[i], results[i]) for i in _indices(step)]


def _first(pairs, label: str, ids: tuple = ()):
    return next(result for op, result in pairs if op.label == label and op.ids == ids)


def test_the_script_reaches_the_digest_states_on_our_model(ours):
    """A few of §9's expectations, stated independently of both runs."""
    fast, _ = ours
    step2, step3 = _step_results(fast, 2), _step_results(fast, 3)
    # step 2: vPE 3 -> RD 0, VPT A, size 15; event 2 -> (8200, vPE 3, doorbell 8292)
    assert _first(step2, "vte", (S.VPE,)) == (0, S.VPT_A, 15)
    assert _first(step2, "ite", (S.DEVICE, S.EVENT)) == (S.VINTID, S.VPE, S.DOORBELL)
    # step 3: VPT A byte 1025 bit 0, doorbell 8292 pending on CPU 0; IAR returns it twice
    assert _first(step3, "vpt", (S.VPT_A,)) == {S.VINTID}
    assert _first(step3, "pend", (0,)) == {S.DOORBELL}
    assert [r for op, r in step3 if op.label == "ICC_IAR1_EL1"] == \
        [S.DOORBELL, S.DOORBELL, C.NO_DOORBELL]


# -- QEMU against our model ---------------------------------------------------------------

def _check_qemu_only(op: S.Op, qemu_value: int, ours_value: None) -> None:
    """A register only QEMU has (distributor, CPU interface): its expected
    bits (our side has no such register: None)."""
    mask, expected = op.qemu_only
    assert qemu_value & mask == expected, f"{op.label}: QEMU {qemu_value:#x}"
    assert ours_value is None


def _check_read(op: S.Op, qemu_value: int, ours_value: int | None) -> None:
    if op.qemu_only:
        _check_qemu_only(op, qemu_value, ours_value)
        return
    whole = [d for d in op.differs if d.field is None]
    if whole:
        assert (qemu_value, ours_value) == (whole[0].qemu, whole[0].ours), (op.label, whole[0])
        return
    if op.layout is None:
        assert qemu_value == ours_value, f"{op.label}: QEMU {qemu_value:#x}, ours {ours_value:#x}"
        return
    q, o = op.layout.decode(qemu_value), op.layout.decode(ours_value)
    declared = {d.field: d for d in op.differs}
    for name in q:
        if name in declared:
            assert (q[name], o[name]) == (declared[name].qemu, declared[name].ours), \
                f"{op.label}.{name}: QEMU {q[name]}, ours {o[name]} ({declared[name].why})"
        else:
            assert q[name] == o[name], f"{op.label}.{name}: QEMU {q[name]}, ours {o[name]}"
    assert not op.layout.reserved_mask & (qemu_value | ours_value), op.label


def _check_command(op: S.Op, qemu_creadr: int, ours: tuple[int, list[int]]) -> None:
    slot = op.addr - S.QUEUE
    ours_creadr, _errors = ours
    assert ours_creadr == op.value, C.decode(op.packet, gic_version="4.0")
    if op.qemu_stalls:
        assert qemu_creadr == slot | STALLED, f"QEMU GITS_CREADR {qemu_creadr:#x}"
    else:
        assert qemu_creadr == op.value, (C.decode(op.packet, gic_version="4.0"),
                                         f"QEMU GITS_CREADR {qemu_creadr:#x}")


@needs_tools
@pytest.mark.parametrize("step,label", _steps(), ids=[f"step{n}" for n, _ in _steps()])
def test_qemu_and_our_model_step_by_step(qemu, ours, step, label):
    fast, _ = ours
    for index in _indices(step):
        op, q, o = PRINTING[index], qemu[index], fast[index]
        if op.kind == "step":
            assert q == o == step
        elif op.kind == "read":
            _check_read(op, q, o)
        elif op.kind == "cmd":
            _check_command(op, q, o)
        elif op.kind == "dump":
            if op.differs:
                declared = op.differs[0]
                assert (q, o) == (declared.qemu, declared.ours), (op.label, op.ids, declared.why)
            else:
                assert q == o, f"{label}: {op.label} {op.ids}: QEMU {q}, ours {o}"
        elif op.qemu_only:
            _check_qemu_only(op, q, o)
        else:
            assert q == o, f"{label}: {op.label}: QEMU {q}, ours {o}"


@needs_tools
def test_qemu_dumps_use_the_digests_encodings(qemu_run):
    """The raw words QEMU wrote after step 2 are gicv4-digest §2.2's VTE and
    §4.1's ITE (so the views decode QEMU's real formats)."""
    _, raw = qemu_run
    dumps = {(PRINTING[i].label, PRINTING[i].ids): raw[i] for i in _indices(2) if i in raw}
    vte = int.from_bytes(dumps["vte", (S.VPE,)], "little")
    assert vte == 1 | 15 << 1 | (S.VPT_A >> 16) << 6                # RDbase 0
    ite = dumps["ite", (S.DEVICE, S.EVENT)]
    # vINTID 8200, vPEID 3, doorbell 8292 (the digest's example)
    assert int.from_bytes(ite[:8], "little") == 0x0003000000008021
    assert int.from_bytes(ite[8:], "little") == 0x00002064


@needs_tools
def test_documented_differences_are_exercised(qemu, ours):
    """Every declared difference is a real one (QEMU and ours disagree there)."""
    fast, _ = ours
    seen = 0
    for op, q, o in zip(PRINTING, qemu, fast):
        for declared in op.differs:
            seen += 1
            if op.kind == "dump" or declared.field is None:
                assert q != o, (op.label, declared.why)
            else:
                assert op.layout[declared.field].extract(q) != \
                    op.layout[declared.field].extract(o), (op.label, declared.why)
    assert seen >= 9
