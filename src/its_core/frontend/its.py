"""The architectural front end: ITS registers, command queue, doorbell.

`ITS` is what a simulator plugs in where a real ITS sits (docs/front-end.md):

* the guest programs it through `mmio_read` / `mmio_write` at offsets of the
  128 KiB ITS region (registers declared in `its_core.registers`);
* commands are read from the queue in guest memory and run by the native
  `CommandProcessor` inside the MMIO write that triggers them;
* devices ring the doorbell (`msi`, `msi_batch`, or a GITS_TRANSLATER write
  with the bus `device_id`) and LPIs become pending on redistributors
  (`redistributors`, `pending`, `acknowledge`).

Guest mistakes never raise: bad register accesses are read-as-zero /
write-ignored and recorded in `access_errors` (or raise `InvalidAccessError`
with ``strict=True``, to find integration bugs); bad commands are skipped (or
stall the queue) and recorded in `errors`.  Host mistakes (wrong argument
types, offsets outside the region, a doorbell write without its DeviceID)
raise.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import nullcontext
from typing import NamedTuple

import numpy as np

from its_core.abi import rev1, saverestore, snapshot_format
from its_core.core._core import (TranslationStatus, TranslationTables, batch_threads,
                                 message_arrays)
from its_core.errors import ITSError
from its_core.frontend.access import (  # noqa: F401 - ACCESS_ERRORS_KEPT is re-exported
    ACCESS_ERRORS_KEPT, AccessError, AccessLog, new_log)
from its_core.frontend import commands, registers
from its_core.frontend._cmdq import CommandProcessor
from its_core.frontend._guest import GuestWindow
from its_core.frontend._lpi import LPIState
from its_core.frontend._vlpi import deliver_virtual_batch
from its_core.frontend.guest_memory import GuestMemory
from its_core.frontend.redistributors import Redistributors
from its_core.frontend.virtual import VirtualStatus
from its_core.validation import as_uint, check_gic_version

__all__ = ["ITS", "CommandError", "AccessError"]

#: Size of the ITS MMIO region: control frame + translation frame.
ITS_REGION_BYTES = 0x2_0000
#: A GICv4.1 ITS has a third 64 KiB frame, holding GITS_SGIR.
GICV41_ITS_REGION_BYTES = 0x3_0000
_TRANSLATER = registers.GITS_TRANSLATER.offset
#: The translation statuses of a virtual ITE (VIRTUAL, VIRTUAL_NO_VPE) are the
#: only ones at or above this: one compare routes a pair to virtual delivery.
_VIRTUAL_STATUS = TranslationStatus.VIRTUAL
# Plain ints for comparisons with status arrays: numpy compares a uint8 array
# with an enum member about 15 times slower (it casts the array).
_OK = int(TranslationStatus.OK)
_VIRTUAL_DELIVERED = int(VirtualStatus.VIRTUAL)
_ENABLED = registers.GITS_CTLR.field("Enabled")
_ENABLED_BIT = _ENABLED.mask
_QUIESCENT_BIT = registers.GITS_CTLR.field("Quiescent").mask
_STALLED_BIT = registers.GITS_CREADR.field("Stalled").mask
_RETRY_BIT = registers.GITS_CWRITER.field("Retry").mask
#: CWRITER/CREADR.Offset [19:5] counts 32-byte commands, so the field in place is
#: the byte offset in the queue; CREADR and CWRITER are stored that way.
_OFFSET_MASK = registers.GITS_CWRITER.field("Offset").mask
_VALID = registers.GITS_BASER0.field("Valid")
_INDIRECT = registers.GITS_BASER0.field("Indirect")
_CBASER_VALID = registers.GITS_CBASER.field("Valid")
_OFFSET = registers.GITS_CWRITER.field("Offset")
_STALLED = registers.GITS_CREADR.field("Stalled")
_REVISION = registers.GITS_IIDR.field("Revision")
_BASERS = tuple(registers.ITS_REGISTERS[f"GITS_BASER{n}"] for n in range(8))
#: Every valid guest access to the ITS frame, (offset, size) -> (register, half):
#: the register map's decoder run once over each register's offsets and sizes,
#: so an MMIO access is one dictionary look-up.
_ITS_ACCESSES = registers.ITS_REGISTERS.accesses()


class CommandError(NamedTuple):
    """A command that failed: where it was in the queue, what it was, why."""

    offset: int     # byte offset of the command in the queue
    opcode: int     # command number, DW0[7:0]
    code: int       # E_ITS_* error code (its_core.commands)

    @property
    def name(self) -> str:
        """Name of the error code."""
        return commands.error_name(self.code)

    @property
    def command(self) -> str:
        """Mnemonic of the command number."""
        return commands.OPCODE_NAMES.get(self.opcode, f"{self.opcode:#04x}")

    def __str__(self) -> str:
        return f"{self.command} at queue offset {self.offset:#x}: {self.name} ({self.code:#08x})"


class CommandErrorLog(Sequence):
    """Read-only sequence view of the command processor's error log."""

    def __init__(self, processor: CommandProcessor):
        self._processor = processor

    def __len__(self) -> int:
        return self._processor.error_count

    def __getitem__(self, index):
        rows = self._processor.errors
        if isinstance(index, slice):
            return [CommandError(int(r["offset"]), int(r["opcode"]), int(r["code"]))
                    for r in rows[index]]
        row = rows[index]
        return CommandError(int(row["offset"]), int(row["opcode"]), int(row["code"]))

    @property
    def dropped(self) -> int:
        """Errors not recorded because the log was full."""
        return self._processor.errors_dropped

    def as_array(self) -> np.ndarray:
        """The log as a structured array (offset, opcode, code)."""
        return self._processor.errors

    def __repr__(self) -> str:
        return f"<CommandErrorLog: {len(self)} errors>"


def _check_shared(redistributors, memory: GuestMemory, num_cpus: int, intid_bits: int,
                  gic_version: str) -> None:
    """TypeError / ValueError unless an ITS can attach to `redistributors`."""
    if not isinstance(redistributors, Redistributors):
        raise TypeError(f"redistributors must be a Redistributors, got "
                        f"{type(redistributors).__name__}")
    if redistributors.memory is not memory:
        raise ValueError("redistributors must be built on the same GuestMemory as the ITS")
    if redistributors.num_cpus != num_cpus:
        raise ValueError(f"the redistributors have {redistributors.num_cpus} CPUs, "
                         f"the ITS num_cpus={num_cpus}")
    if redistributors.intid_bits != intid_bits:
        raise ValueError(f"the redistributors have intid_bits={redistributors.intid_bits}, "
                         f"the ITS intid_bits={intid_bits}")
    if redistributors.gic_version != gic_version:
        raise ValueError(f"the redistributors have gic_version={redistributors.gic_version!r}, "
                         f"the ITS gic_version={gic_version!r}: they must agree")


class ITS:
    """An ITS on guest memory `memory`, with `num_cpus` redistributors.

    Bring it up from byte addresses with `its_core.bring_up` (as a guest
    driver does), then drive it with `mmio_read` / `mmio_write`, `submit`,
    `msi` and `acknowledge` (docs/embedding.md).

    Parameters
    ----------
    memory : GuestMemory
        Guest-physical memory holding the command queue and the tables.
    num_cpus : int, default 4
        Redistributors (1..65536), each with an LPI pending bitmap;
        collections target CPU numbers below this.  (A bare
        `TranslationTables` defaults to 8: there it only bounds MAPC targets
        and costs nothing per CPU.)
    layout : {"flat", "twolevel", "hash"}
        Storage layout of the translation core.
    device_bits, event_bits : int
        DeviceID and EventID widths (GITS_TYPER.Devbits + 1, ID_bits + 1).
    intid_bits : int, default 16
        LPI INTID width, 14..24: the CPU interface reports INTIDs in 24 bits
        (ICC_IAR1_EL1.INTID), and each CPU holds a 2**intid_bits-bit pending
        bitmap.  A bare `TranslationTables` accepts up to 32, the width of
        the ITE's INTID field.
    stall_on_error : bool
        Stop the queue at a failed command (CREADR.Stalled) instead of skipping it.
    redistributors : Redistributors, optional
        Attach this ITS to a set of redistributors shared with other ITSs
        (built on the same `memory`, with the same `num_cpus` and
        `intid_bits`).  By default the ITS builds its own, which then share
        its `access_errors` log and its `strict` setting.
    strict : bool, default False
        Raise `InvalidAccessError` for every register access that would
        otherwise read as zero / be ignored and be recorded in
        `access_errors` (holes, wrong sizes, misaligned accesses, on the ITS
        frame, and on the redistributor frames when the ITS builds its own;
        shared `Redistributors` take their own `strict`), so an integration
        bug surfaces at the line that made it.  Architecturally ignored
        writes (to read-only registers, BASER/CBASER while enabled, ...) are
        not errors.
    gic_version : {"3", "4.0", "4.1"}, default "3"
        "3": the GICv3 ITS (every GICv4 command unknown), exactly as before.
        "4.0" / "4.1": a GICv4 ITS (docs/gicv4.md): GITS_TYPER
        reports Virtual and VMOVP (4.1: VSGI, VMAPP; nID = 0, SVPET = 0) and
        16-byte ITEs, GITS_BASER2 describes the vPE table (8-byte entries;
        4.1: 32-byte), GITS_PIDR2 reports ArchRev 4, the virtual commands run
        (4.1: INVDB, VSGI and GITS_SGIR at offset 0x20020 of a 192 KiB
        region), and the redistributors have the VLPI frame.  Shared
        `redistributors` must have the same version.  A GICv4 ITS saves in
        its-core-rev1 (GITS_IIDR.Revision = 1); its snapshots carry the
        virtual state.

    Attributes
    ----------
    memory : GuestMemory
        The guest memory given.
    tables : TranslationTables
        The translation core (replaced by a restore: do not keep a reference).
    redistributors : Redistributors
        The LPI side: GICR registers, pending bitmaps, config cache.
    errors : CommandErrorLog
        Commands that failed (`CommandError`), oldest first; bounded.
    access_errors : collections.deque of AccessError
        The most recent invalid register accesses (`ACCESS_ERRORS_KEPT`): of
        the ITS frame, and of the redistributor frames when the ITS built its
        own redistributors.
    num_cpus : int
    stall_on_error, strict : bool
    layout : str
    enabled, stalled : bool
        GITS_CTLR.Enabled, GITS_CREADR.Stalled.
    """

    def __init__(self, memory: GuestMemory, num_cpus: int = 4, layout: str = "flat", *,
                 device_bits: int = 16, event_bits: int = 16, intid_bits: int = 16,
                 stall_on_error: bool = False, strict: bool = False,
                 redistributors: Redistributors | None = None, gic_version: str = "3"):
        gic_version = check_gic_version(gic_version)
        if not isinstance(memory, GuestMemory):
            raise TypeError(f"memory must be a GuestMemory, got {type(memory).__name__}")
        self.memory = memory
        self.gic_version = gic_version
        self.num_cpus = as_uint(num_cpus, "num_cpus")
        self.stall_on_error = bool(stall_on_error)
        # Register writes, submit, save, restore and reset run one at a time
        # (docs/threads.md); doorbells and translations do not take it.
        self._lock = threading.RLock()
        self._scratch = threading.local()        # per-thread msi_batch buffers (GICv4)
        # The most recent invalid accesses: a guest cannot grow this without bound.
        self.access_errors = new_log()
        self._log = AccessLog(self.access_errors, strict)
        self._owns_redistributors = redistributors is None
        if redistributors is None:
            redistributors = Redistributors(memory, self.num_cpus, intid_bits, strict=strict,
                                            access_errors=self.access_errors,
                                            gic_version=gic_version)
        else:
            _check_shared(redistributors, memory, self.num_cpus, intid_bits, gic_version)
        self.redistributors = redistributors
        self.tables = TranslationTables(layout, device_bits=device_bits, event_bits=event_bits,
                                        intid_bits=intid_bits, num_cpus=num_cpus)
        self._window = GuestWindow(memory)
        self._lpi = redistributors.lpi_state
        self._processor = CommandProcessor(self.tables, self._lpi, self._window,
                                           gic_version=gic_version,
                                           virtual=redistributors.virtual)
        # GICv4: the redistributors' lock, which a command run holds (`_process`);
        # None for GICv3, whose commands change only the native LPI state.
        self._virtual_lock = None if gic_version == "3" else redistributors._lock
        # The version's register map (GICv3: ITS_REGISTERS, as before).
        self._register_map = registers.its_register_map(gic_version)
        self._accesses = (_ITS_ACCESSES if gic_version == "3"
                          else self._register_map.accesses())
        self._basers = tuple(self._register_map[f"GITS_BASER{n}"] for n in range(8))
        self._region_bytes = GICV41_ITS_REGION_BYTES if gic_version == "4.1" else ITS_REGION_BYTES
        self.errors = CommandErrorLog(self._processor)
        # Stored register values.  GITS_CTLR is not among them: Enabled lives in
        # the command processor (`its_enabled`, which the doorbell reads) and
        # Quiescent is derived, so a read composes it.  CREADR.Stalled lives
        # in `_stalled`.
        self._regs = self._register_map.reset_values()
        del self._regs["GITS_CTLR"]
        gicv4, gicv41 = gic_version != "3", gic_version == "4.1"
        # GICv4: Virtual, VMOVP = 1 (one VMOVP to this ITS suffices); 4.1: VSGI,
        # VMAPP (the v4.1 layout) = 1, nID = 0 (per-vLPI doorbells, as the
        # reference model), SVPET = 0 (vPE table not shared with the RDs).
        # ITT_entry_size: 8-byte ITEs on GICv3 (KVM rev0), 16 on GICv4 (room for
        # the virtual ITE of the its-core-rev1 save format, abi/entries.py).
        self._regs["GITS_TYPER"] = registers.GITS_TYPER.encode(
            Physical=1, ITT_entry_size=(16 if gicv4 else 8) - 1, ID_bits=event_bits - 1,
            Devbits=device_bits - 1, Virtual=gicv4, VMOVP=gicv4, VSGI=gicv41, VMAPP=gicv41,
            nID=0, SVPET=0)
        # GITS_IIDR.Revision: the save format's revision (0 = KVM rev0, 1 = its-core-rev1).
        self._regs["GITS_IIDR"] = _REVISION.deposit(self._regs["GITS_IIDR"], int(gicv4))
        self._stalled = False
        self._queue_span = self._decode_queue()

    # ------------------------------------------------------------------ state

    @property
    def layout(self) -> str:
        return self.tables.layout

    @property
    def strict(self) -> bool:
        """Invalid accesses raise `InvalidAccessError` instead of being recorded
        (see the class docstring); settable, and passed on to redistributors
        this ITS built itself."""
        return self._log.strict

    @strict.setter
    def strict(self, value: bool) -> None:
        self._log.strict = bool(value)
        if self._owns_redistributors:
            self.redistributors.strict = value

    @property
    def enabled(self) -> bool:
        """GITS_CTLR.Enabled."""
        return bool(self._processor.its_enabled)

    @property
    def stalled(self) -> bool:
        """GITS_CREADR.Stalled."""
        return self._stalled

    def register(self, name: str) -> int:
        """Current value of an ITS register by mnemonic, in any case
        (``"GITS_CTLR"``, ``"gits_ctlr"``), as a guest read returns it.

        Raises
        ------
        KeyError
            No such register; the message lists the valid names.
        """
        return self._read_register(self._register_map.find(name))

    def _decode_queue(self) -> tuple[int, int]:
        """(base address, bytes) of the queue GITS_CBASER describes; cached in
        `_queue_span` whenever CBASER changes."""
        cbaser = self._regs["GITS_CBASER"]
        return registers.cbaser_address(cbaser), registers.cbaser_queue_bytes(cbaser)

    # ------------------------------------------------------------------ MMIO

    def _access_error(self, offset: int, size: int, write: bool, value: int,
                      reason: str) -> None:
        """Record an invalid access (RAZ/WI), or raise it in strict mode."""
        self._log.report("GITS", offset, size, write, value, reason)

    def _check_host_access(self, offset, size) -> tuple[int, int]:
        if type(offset) is not int or not 0 <= offset < self._region_bytes:
            offset = as_uint(offset, "offset", 64)
            if offset >= self._region_bytes:
                raise ValueError(f"offset {offset:#x} is outside the "
                                 f"{self._region_bytes >> 10} KiB ITS region")
        if type(size) is not int or size not in (1, 2, 4, 8):
            raise ValueError(f"size must be 1, 2, 4 or 8 bytes, got {size!r}")
        return offset, size

    def _read_register(self, register: registers.Register) -> int:
        name = register.name
        # Plain masks on the hot path: the stored values are already valid.
        if name == "GITS_CTLR":
            quiescent = not self.enabled or (
                self._regs["GITS_CREADR"] == self._regs["GITS_CWRITER"] and not self._stalled)
            return (_ENABLED_BIT if self.enabled else 0) | (_QUIESCENT_BIT if quiescent else 0)
        if name == "GITS_CREADR":
            return self._regs[name] | (_STALLED_BIT if self._stalled else 0)
        if register.access == "WO":
            return 0
        return self._regs[name]

    def mmio_read(self, offset: int, size: int) -> int:
        """A guest read of `size` bytes at `offset` in the ITS region."""
        offset, size = self._check_host_access(offset, size)
        access = self._accesses.get((offset, size))
        if access is None:
            self._access_error(offset, size, False, 0, "no register of that size there")
            return 0
        if access.register.access == "WO":
            return 0                                     # GITS_TRANSLATER reads as zero
        value = self._read_register(access.register)
        return value if access.half is None else registers.read_half(value, access.half)

    def mmio_write(self, offset: int, value: int, size: int, device_id: int | None = None):
        """A guest write of `size` bytes at `offset` in the ITS region.

        `device_id` is the bus side-band of a GITS_TRANSLATER write (the
        doorbell); it is ignored elsewhere.  A doorbell write returns its
        `TranslationStatus`; other writes return None.

        Raises
        ------
        ValueError
            A GITS_TRANSLATER write without `device_id` (every bus carries
            one: the embedding code dropped it), an offset outside the ITS
            region, a size not 1/2/4/8 or a value wider than `size`.
        InvalidAccessError
            With ``strict=True``: the access hits no register (RAZ/WI).
        """
        if offset == _TRANSLATER and (size == 4 or size == 2) and device_id is not None:
            if type(value) is not int or not 0 <= value < (1 << (8 * size)):
                value = as_uint(value, "value", 8 * size)
            status = self._processor.msi(device_id, value)
            if status >= _VIRTUAL_STATUS:                # GICv4: a virtual ITE
                return self._deliver_virtual(device_id, value)
            # The redistributors' callback slot is read directly (not through
            # the validating `on_signal` property) on the doorbell paths, which
            # run millions of times a second.
            if status == 0 and self.redistributors._on_signal is not None:
                self._signal_doorbell(device_id, value)
            return status
        offset, size = self._check_host_access(offset, size)
        if type(value) is not int or value < 0 or value >> (8 * size):
            value = as_uint(value, "value", 8 * size)
        access = self._accesses.get((offset, size))
        if access is None:
            self._access_error(offset, size, True, value, "no register of that size there")
            return None
        if access.register is registers.GITS_TRANSLATER:
            raise ValueError("a GITS_TRANSLATER write needs device_id=: the DeviceID the bus "
                             "carries with the doorbell (the embedding code dropped it)")
        writer = _WRITERS.get(access.register.name)
        if writer is not None:                           # None: RO, write-ignored
            with self._lock:
                writer(self, access.register, access.half, value)
            if self.redistributors._on_signal is not None:
                self.redistributors.signal_changes()     # once per write, whatever ran
        return None

    # Register write handlers (`_WRITERS`): each takes the register, the half
    # written (None: the whole register) and the value written.

    def _merged(self, register: registers.Register, half: int | None, value: int) -> tuple:
        """(old, new) stored value of `register` after writing `value` to `half`."""
        old = self._regs[register.name]
        return old, value if half is None else registers.merge_half(old, half, value)

    def _write_ctlr(self, register: registers.Register, half: None, value: int) -> None:
        """GITS_CTLR: Enabled starts or stops the ITS (enabling needs CBASER,
        BASER0 and BASER1 valid, else the whole write is dropped, as in KVM)."""
        enable = bool(_ENABLED.extract(value))
        if enable and not self.enabled:
            if not (_CBASER_VALID.extract(self._regs["GITS_CBASER"])
                    and _VALID.extract(self._regs["GITS_BASER0"])
                    and _VALID.extract(self._regs["GITS_BASER1"])):
                return                                   # KVM: the whole write is dropped
            self._configure_processor()
        self._processor.its_enabled = enable
        self._process()

    def _write_cbaser(self, register: registers.Register, half: int | None, value: int) -> None:
        """GITS_CBASER: ignored while enabled; a new queue starts empty (KVM)."""
        if self.enabled:
            return
        old, new = self._merged(register, half, value)
        self._regs[register.name] = register.merge_write(old, new)
        self._regs["GITS_CREADR"] = self._regs["GITS_CWRITER"] = 0
        self._stalled = False
        self._queue_span = self._decode_queue()

    def _write_cwriter(self, register: registers.Register, half: int | None, value: int) -> None:
        """GITS_CWRITER: an offset past the queue is ignored (KVM); Retry
        restarts a stalled queue; the queue runs."""
        if half is not None:
            value = registers.merge_half(self._regs["GITS_CWRITER"], half, value)
        offset = value & _OFFSET_MASK
        if offset >= self._queue_span[1]:
            return                                       # KVM: the whole write is ignored
        self._regs["GITS_CWRITER"] = offset
        if value & _RETRY_BIT:
            self._stalled = False
        self._process()

    def _write_sgir(self, register: registers.Register, half: None, value: int) -> None:
        """GITS_SGIR (GICv4.1, 64-bit writes only): make a vSGI pending."""
        with self.redistributors._lock:                  # lock order: ITS, redistributors
            self.redistributors.virtual.write_sgir(value)

    def _write_baser_register(self, register: registers.Register, half: int | None,
                              value: int) -> None:
        """GITS_BASER<n>: ignored while enabled."""
        if not self.enabled:
            self._write_baser(register, *self._merged(register, half, value))

    def _write_baser(self, register: registers.Register, old: int, new: int) -> None:
        """Store a BASER write; Valid = 0 drops the table's mappings."""
        value = register.merge_write(old, new)
        if register.name == "GITS_BASER1":
            value = _INDIRECT.deposit(value, 0)          # no two-level collection table
        self._regs[register.name] = value
        if register.name == "GITS_BASER0" and not _VALID.extract(value):
            self._drop_all_devices()
        elif register.name == "GITS_BASER1" and not _VALID.extract(value):
            for icid in self.tables.collection_table()[0].tolist():
                self.tables.unmap_collection(icid)
        elif (register.name == "GITS_BASER2" and self.gic_version != "3"
              and not _VALID.extract(value)):
            self._unmap_all_vpes()

    def _unmap_all_vpes(self) -> None:
        """BASER2.Valid = 0 or a reset: no vPE is mapped (virtual ITEs stay)."""
        with self.redistributors._lock:                  # lock order: ITS, redistributors
            for vpe_id in self.tables.vpe_table()[0].tolist():
                self.tables.unmap_vpe(vpe_id)
            self.redistributors.virtual.unmap_all()

    def _drop_all_devices(self) -> None:
        for device_id in self.tables.device_ids().tolist():
            self._processor.drop_device(device_id)

    def _configure_processor(self) -> None:
        baser0, baser1 = self._regs["GITS_BASER0"], self._regs["GITS_BASER1"]
        self._processor.configure(
            registers.baser_address(baser0), registers.baser_table_bytes(baser0),
            registers.baser_page_size(baser0), bool(_INDIRECT.extract(baser0)),
            registers.baser_table_bytes(baser1))
        if self.gic_version != "3":
            baser2 = self._regs["GITS_BASER2"]
            # BASER2.Valid = 0: no vPE table entries (gicv4-digest 2.1).
            self._processor.configure_vpe_table(
                registers.baser_address(baser2),
                registers.baser_table_bytes(baser2) if _VALID.extract(baser2) else 0,
                registers.baser_page_size(baser2), bool(_INDIRECT.extract(baser2)))

    def _process(self) -> None:
        """Run the queue from CREADR to CWRITER if enabled and not stalled.

        GICv4: the whole run holds the redistributors' lock (taken once per
        CWRITER write, not per command), so the virtual commands' effects on
        the shared `VirtualLPIs` never interleave with a virtual doorbell, a
        GICR_VPENDBASER write or `acknowledge_virtual` on another thread.
        Order (docs/threads.md): the ITS lock (held by the caller), the
        redistributors' lock, then the tables' write section (`process`)."""
        if not self.enabled or self._stalled:
            return
        base, queue_bytes = self._queue_span
        if self._virtual_lock is None:
            creadr, stalled = self._processor.process(
                base, queue_bytes, self._regs["GITS_CREADR"], self._regs["GITS_CWRITER"],
                self.stall_on_error)
        else:
            with self._virtual_lock:
                creadr, stalled = self._processor.process(
                    base, queue_bytes, self._regs["GITS_CREADR"], self._regs["GITS_CWRITER"],
                    self.stall_on_error)
        self._regs["GITS_CREADR"] = creadr
        self._stalled = bool(stalled)

    # ------------------------------------------------------------------ driver side

    def submit(self, *packets: bytes) -> None:
        """Queue commands as a driver does: write them at CWRITER, advance
        CWRITER (which processes them), in as many rounds as the queue needs.

        Raises
        ------
        ITSError
            The queue is not valid, or it stays full (ITS disabled or stalled).
        """
        for packet in packets:
            if len(packet) != commands.COMMAND_BYTES:
                raise ValueError(f"a command is {commands.COMMAND_BYTES} bytes, got {len(packet)}")
        image = np.frombuffer(b"".join(packets), "<u8").reshape(-1, 4)
        self.submit_many(image)

    def submit_many(self, dwords) -> None:
        """`submit` for commands given as an (n, 4) array of doublewords (as
        `commands.encode_many` makes them), copied into the queue with numpy."""
        dwords = np.asarray(dwords)
        if dwords.ndim != 2 or dwords.shape[1] != 4 or dwords.dtype.kind not in "u":
            raise ValueError("commands must be an (n, 4) array of unsigned doublewords")
        with self.redistributors.deferred_signals(), self._lock:
            self._submit(dwords)

    def _submit(self, dwords: np.ndarray) -> None:
        if not _CBASER_VALID.extract(self._regs["GITS_CBASER"]):
            raise ITSError("submit: GITS_CBASER is not valid")
        base, queue_bytes = self._queue_span
        if not self.memory.contains(base, queue_bytes):
            raise ITSError(
                f"submit: the command queue GITS_CBASER describes, [{base:#x}, "
                f"{base + queue_bytes:#x}), is outside guest memory [{self.memory.base:#x}, "
                f"{self.memory.end:#x}); note that CBASER.Physical_Address holds the "
                "address >> 12: build it with GITS_CBASER.encode(address=...) or "
                "its_core.bring_up")
        slots = queue_bytes // 32
        queue = self.memory.view(base, slots * 4, "<u8").reshape(slots, 4)
        done = 0
        while done < dwords.shape[0]:
            creadr = _OFFSET.extract(self._regs["GITS_CREADR"])
            cwriter = _OFFSET.extract(self._regs["GITS_CWRITER"])
            free = (creadr - cwriter - 1) % slots
            if free == 0:
                raise ITSError("submit: the command queue is full and not draining "
                               "(ITS disabled or stalled)")
            count = min(free, dwords.shape[0] - done, slots - cwriter)   # up to the wrap
            queue[cwriter:cwriter + count] = dwords[done:done + count]
            done += count
            self.mmio_write(registers.GITS_CWRITER.offset, (cwriter + count) % slots * 32, 8)

    # ------------------------------------------------------------------ translation

    def translate(self, device_id: int, event_id: int) -> tuple[int, int]:
        """(intid, cpu) of the current mappings (a pure lookup; see TranslationTables)."""
        return self.tables.translate(device_id, event_id)

    def translate_batch(self, device_ids, event_ids, out=None, *, threads=None):
        """Batch lookup of the current mappings (see TranslationTables.translate_batch)."""
        return self.tables.translate_batch(device_ids, event_ids, out=out, threads=threads)

    def msi(self, device_id: int, event_id: int) -> TranslationStatus | VirtualStatus:
        """The doorbell: translate and make the LPI pending on its target CPU.

        Returns the `TranslationStatus`: ITS_DISABLED, a translation failure,
        LPIS_DISABLED, INTID_OUT_OF_RANGE, or OK (the LPI is now pending).

        GICv4, an event mapped to a virtual ITE: the vLPI is delivered as the
        reference model's `msi` delivers it (`VirtualLPIs.deliver`: the
        resident vPE's cache, or the VPT bit in guest memory plus the ITE's
        doorbell) and a `VirtualStatus` is returned instead: VIRTUAL (made
        pending), VIRTUAL_NO_VPE or VIRTUAL_INTID_OUT_OF_RANGE (dropped).
        These are the reference's values (64..66); `translate_batch`'s
        TranslationStatus.VIRTUAL / VIRTUAL_NO_VPE say what the *mapping* is,
        these what the *delivery* did.
        """
        status = self._processor.msi(device_id, event_id)
        if status >= _VIRTUAL_STATUS:                    # GICv4: a virtual ITE
            return self._deliver_virtual(device_id, event_id)
        if status == 0 and self.redistributors._on_signal is not None:
            self._signal_doorbell(device_id, event_id)
        return status

    def _deliver_virtual(self, device_id: int, event_id: int) -> VirtualStatus:
        """Deliver the vLPI of a (translated, so in range) virtual event; signal
        the vPE's CPU (its resident cache or its doorbell changed)."""
        rd = self.redistributors
        with rd._lock:
            status, cpu = self._deliver_locked(device_id, event_id)
        if rd._on_signal is not None and cpu >= 0:
            rd.signal_changes((cpu,))
        return status

    def _deliver_locked(self, device_id: int, event_id: int) -> tuple:
        """(status, cpu) of one doorbell whose translation said "virtual", the
        redistributors' lock held (no command runs meanwhile).  A command that
        ran between that translation and the lock may have made the event
        physical or unmapped it: the doorbell is then translated again, as if
        it came after the command.  `cpu` is -1 when nothing was made
        pending."""
        virtual = self.redistributors.virtual
        while True:
            mapping = self.tables.virtual_event(device_id, event_id)
            if mapping is not None:
                vintid, vpe_id, doorbell = mapping
                status = virtual.deliver(vpe_id, vintid, doorbell)
                return status, (int(virtual.vpe_cpu[vpe_id])
                                if status == VirtualStatus.VIRTUAL else -1)
            status = self._processor.msi(device_id, event_id)
            if status < _VIRTUAL_STATUS:
                return status, (self.tables.translate(device_id, event_id)[1]
                                if status == TranslationStatus.OK else -1)

    def _signal_doorbell(self, device_id: int, event_id: int) -> None:
        """Signal the target CPU of a delivered doorbell, if its best LPI changed."""
        self.redistributors.signal_changes((self.tables.translate(device_id, event_id)[1],))

    def msi_batch(self, device_ids, event_ids, *, cpus_out=None, threads=None) -> np.ndarray:
        """Many doorbells; returns a uint8 array of `TranslationStatus`.

        A disabled ITS translates nothing: every status is ITS_DISABLED (the
        arguments are still checked as `translate_batch` checks them).

        GICv4: a pair mapped to a virtual ITE is delivered in the same call,
        in batch order among the virtual pairs, exactly as `msi` delivers it,
        and its status is the `VirtualStatus` value `msi` returns (64
        VIRTUAL, 65 VIRTUAL_NO_VPE, 66 VIRTUAL_INTID_OUT_OF_RANGE).  The
        physical pairs are delivered first by the native loop of a GICv3 ITS,
        then the virtual ones by a second native loop (`_vlpi`; the order
        does not matter: a delivery only sets pending bits); a batch without
        virtual pairs costs that loop's scan of the statuses.  A GICv4 ITS
        keeps, per calling thread, one 8-byte word per pair of its largest
        batch (where the core hands the virtual ITEs to that loop).

        Parameters
        ----------
        device_ids, event_ids : array_like of int
            Equal-length 1-D integer arrays (as for `translate_batch`).
        cpus_out : ndarray of int32, optional
            Filled in place with the CPU each LPI was made pending on, -1
            where the status is not OK: what a simulator needs to signal its
            CPUs, without a second look-up.  A delivered virtual pair
            (VIRTUAL) gets its vPE's CPU (whose resident cache or doorbell
            changed).
        threads : int, optional
            Translate in this many parts at once (`TranslationTables.
            translate_batch`); the pending bits are then set in one native
            loop holding the GIL, so none is lost.
        """
        devices, events = message_arrays(device_ids, event_ids)
        length = devices.shape[0]
        batch_threads(threads, length)                   # checked even when disabled
        if cpus_out is not None and not (
                isinstance(cpus_out, np.ndarray) and cpus_out.dtype == np.int32
                and cpus_out.shape == (length,) and cpus_out.flags.c_contiguous
                and cpus_out.flags.writeable):
            raise ValueError(f"cpus_out must be a writeable contiguous 1-D int32 ndarray of "
                             f"length {length}")
        if not self.enabled:
            if cpus_out is not None:
                cpus_out[:] = -1
            return np.full(length, TranslationStatus.ITS_DISABLED, np.uint8)
        cpus = np.empty(length, np.int32) if cpus_out is None else cpus_out
        out = (np.empty(length, np.uint32), cpus, np.empty(length, np.uint8))
        if self.gic_version != "3":
            out += (self._virtual_ites_buffer(length),)
            writes = self.tables.guard.writes
        out = self.tables.translate_batch(devices, events, out=out, threads=threads)
        intids, statuses = out[0], out[2]
        self._lpi.deliver(intids, cpus, statuses)
        delivered = statuses == _OK
        if self.gic_version != "3":
            # GICv4: the virtual pairs, after the physical ones, in a second
            # native loop (a delivery only sets pending bits: the order does
            # not matter).
            rd = self.redistributors
            with rd._lock:
                if self.tables.guard.writes == writes:
                    virtual = deliver_virtual_batch(self.tables, self._lpi, self._window,
                                                    rd.virtual, devices, events, out[3], cpus,
                                                    statuses)
                else:
                    virtual = self._deliver_changed(devices, events, cpus, statuses)
                if virtual:
                    delivered = (statuses == _OK) | (statuses == _VIRTUAL_DELIVERED)
        if cpus_out is not None:
            cpus_out[~delivered] = -1
        if self.redistributors._on_signal is not None:
            self.redistributors.signal_changes(np.unique(cpus[delivered]).tolist())
        return statuses

    def _deliver_changed(self, devices, events, cpus, statuses) -> int:
        """`msi_batch`'s virtual pairs when the tables changed between the
        translation and the redistributors' lock (a command on another
        thread): each is delivered as `msi` would deliver it now
        (`_deliver_locked`: translated again if its event changed).  Returns
        how many pairs were virtual."""
        pairs = np.flatnonzero(statuses >= _VIRTUAL_STATUS)
        for index in pairs.tolist():
            statuses[index], cpus[index] = self._deliver_locked(int(devices[index]),
                                                                int(events[index]))
        return pairs.size

    def _virtual_ites_buffer(self, length: int) -> np.ndarray:
        """A uint64 array of `length` for `msi_batch`'s virtual ITE words: this
        thread's buffer, kept between calls (a fresh 8-byte-per-pair array
        costs page faults on every large batch) and grown when too short."""
        buffer = getattr(self._scratch, "virtual_ites", None)
        if buffer is None or buffer.shape[0] < length:
            buffer = self._scratch.virtual_ites = np.empty(length, np.uint64)
        return buffer[:length]

    # ------------------------------------------------------------------ LPI side

    def pending(self, cpu: int) -> np.ndarray:
        """Sorted uint32 INTIDs pending on `cpu` (from every ITS sharing the
        redistributors: `Redistributors.pending`)."""
        return self.redistributors.pending(cpu)

    def acknowledge(self, cpu: int, priority_mask: int = 0xFF) -> int | None:
        """Take the highest-priority enabled pending LPI of `cpu` whose priority
        is strictly below `priority_mask` (as a CPU interface with ICC_PMR;
        ties: lowest INTID); None when there is none
        (`Redistributors.acknowledge`)."""
        return self.redistributors.acknowledge(cpu, priority_mask)

    # ------------------------------------------------------------------ save / restore

    def save(self, redistributors: bool = True) -> dict:
        """Tables and pending tables -> guest memory; returns the register state
        (ITS and redistributors' LPI side) as a JSON-serialisable dict.  A
        GICv3 ITS saves KVM's rev0; a GICv4 ITS its-core-rev1 (16-byte ITEs,
        the vPE table, each resident vPE's cache written into its VPT, the
        VLPI registers in the dict; docs/save-format.md).

        With ``redistributors=False`` only the ITS part is saved (its tables
        and registers, no GICR_* entries, no pending tables): for ITSs that
        share one `Redistributors`, which is saved once with `its_core.
        Redistributors.save`."""
        # Lock order (docs/threads.md): ITS, redistributors, tables.
        with self._lock, (self.redistributors._lock if redistributors else nullcontext()), \
                self.tables.exclusive():
            if self.gic_version != "3":          # its-core-rev1 (abi/rev1.py)
                return rev1.save(self, bool(redistributors))
            return saverestore.save(self, bool(redistributors))

    def restore(self, state: dict) -> None:
        """Restore a `save()` state from (a copy of) the guest memory it was
        saved to; atomic: on RestoreError nothing has changed.  A state without
        GICR_* entries (``save(redistributors=False)``) restores the ITS part
        only: restore the shared redistributors first."""
        with self.redistributors.deferred_signals(), self._lock:
            saverestore.restore(self, state)

    def save_tables(self) -> None:
        """Device table, ITTs and collection table -> guest memory (KVM rev0;
        a GICv4 ITS: its-core-rev1, with the vPE table)."""
        with self._lock, self.tables.exclusive():
            if self.gic_version != "3":
                rev1.save_tables(self)
            else:
                saverestore.save_tables(self)

    def restore_tables(self) -> None:
        """Guest memory -> translation tables, validated and atomic."""
        with self._lock:
            saverestore.restore_tables(self)
        self.redistributors.signal_changes()

    def save_registers(self) -> dict:
        """GITS_IIDR, CBASER, CREADR, CWRITER, BASER0..7 and CTLR by mnemonic."""
        with self._lock:
            return saverestore.save_registers(self)

    def restore_registers(self, regs: dict) -> None:
        """Every ITS register but GITS_CTLR, in KVM's documented order."""
        with self.redistributors.deferred_signals(), self._lock:
            saverestore.restore_registers(self, regs)

    def save_pending_tables(self) -> None:
        """Pending bitmaps of CPUs with LPIs enabled -> their pending tables."""
        with self._lock, self.redistributors._lock:
            saverestore.save_pending_tables(self)

    def restore_pending_tables(self) -> None:
        """Pending tables -> pending bitmaps of CPUs with LPIs enabled."""
        with self._lock, self.redistributors._lock:
            saverestore.restore_pending_tables(self)
        self.redistributors.signal_changes()

    # ------------------------------------------------------------------ host snapshots

    def snapshot(self, redistributors: bool = True) -> dict:
        """The whole state as a host snapshot (``its-core-snapshot-1``, docs/
        save-format.md): a dict of numpy arrays and plain Python scalars
        (int, bool, str), copied, never aliasing the ITS.  Tables, registers,
        Enabled, stall state, both error logs, `strict`, `stall_on_error`
        and, with `redistributors`, the redistributors' registers, PTZ,
        pending bitmaps, config cache and `strict` (and their own
        `access_errors` when they do not share this ITS's).  A GICv4 ITS adds
        its GIC version and virtual ITEs / vPE table, its redistributors their
        vPE attributes, VLPI registers and resident caches.  Guest memory is
        not in it and is not touched; `on_signal` is not carried.

        With ``redistributors=False`` there are no redistributor entries: for
        ITSs sharing one `Redistributors`, snapshotted once
        (`Redistributors.snapshot`)."""
        # Lock order (docs/threads.md): ITS, redistributors, tables.
        with self._lock, (self.redistributors._lock if redistributors else nullcontext()), \
                self.tables.exclusive():
            return snapshot_format.snapshot_its(self, bool(redistributors))

    @classmethod
    def from_snapshot(cls, snapshot: dict, memory: GuestMemory, *,
                      redistributors: Redistributors | None = None,
                      layout: str | None = None) -> "ITS":
        """A new ITS on `memory` holding a `snapshot()`; nothing is read from
        guest memory (which the snapshot does not hold) and nothing runs.

        Parameters
        ----------
        snapshot : dict
            As `snapshot` returns it (or `its_core.snapshot.read` loads it).
        memory : GuestMemory
            The guest memory of the new ITS.
        redistributors : Redistributors, optional
            Attach to these (shared with other ITSs), for a snapshot taken
            with ``redistributors=False``; they must match as for the
            constructor (same `memory`, `num_cpus`, `intid_bits`).  Without
            it the snapshot's own redistributor entries are rebuilt.
        layout : str, optional
            Build the tables in this layout instead of the snapshot's (the
            format does not depend on the layout).

        Raises
        ------
        RestoreError
            The snapshot is invalid (another format, a missing or extra key,
            a wrong dtype or shape, contents no ITS can hold); the message
            names the key.  Nothing has been built.
        ValueError, TypeError
            `redistributors` given with a snapshot that has redistributor
            entries too, or not given with one that has none; `redistributors`
            or `layout` that do not fit; `memory` not a GuestMemory.
        """
        if redistributors is not None and not isinstance(redistributors, Redistributors):
            raise TypeError(f"redistributors must be a Redistributors, got "
                            f"{type(redistributors).__name__}")
        return snapshot_format.build_its(cls, snapshot, memory, redistributors, layout)

    def __reduce__(self):
        """Pickle and `copy.deepcopy` through `snapshot` / `from_snapshot`: the
        memory and the redistributors go as ordinary objects (by value), so
        pickle's memo keeps them shared between ITSs copied together.  An ITS
        that built its own redistributors still shares its `access_errors`
        with them in the copy.  `on_signal` is not carried.  (`copy.copy` gives
        an ITS on the same memory and redistributors.)"""
        return (_rebuild, (type(self), self.snapshot(redistributors=False), self.memory,
                           self.redistributors, self._owns_redistributors))

    def _adopt_redistributors(self) -> None:
        """Make the redistributors this ITS's own, as if it had built them:
        one `access_errors` log for both frames, `strict` passed on."""
        self._owns_redistributors = True
        self.access_errors = self.redistributors.access_errors
        self._log = AccessLog(self.access_errors, self._log.strict)

    # ------------------------------------------------------------------ interface for its_core.abi
    # Save/restore, host snapshots and dump reach the ITS only through these members
    # (docs/architecture.md, "Internal interfaces"); they are not for simulators.

    @property
    def guest_window(self) -> GuestWindow:
        """Native, bounds-checked access to `memory`, for the save/restore kernels."""
        return self._window

    @property
    def lpi_state(self) -> LPIState:
        """The redistributors' LPI state: pending bitmaps, config cache, limit."""
        return self._lpi

    def stored_register(self, name: str) -> int:
        """The stored value of an ITS register other than GITS_CTLR (whose
        value is composed: use `register`): CREADR without Stalled (see
        `stalled`), the others as a read returns them."""
        return self._regs[registers.ITS_REGISTERS.find(name).name]

    def device_table_slots(self, device_ids) -> np.ndarray:
        """Guest address of the DTE of each DeviceID in the device table
        GITS_BASER0 describes now; 2**64 - 1 where the table has no slot."""
        self._configure_processor()
        return self._processor.device_slots(device_ids)

    def install_tables(self, tables: TranslationTables, load_config: bool = True) -> None:
        """Replace the translation tables with restored ones (nothing checks
        them again); with `load_config`, the config bytes of their LPIs are
        loaded from guest memory, as MAPTI loads them (a host snapshot
        carries its config cache instead)."""
        self.tables = tables
        self._processor.set_tables(tables)
        if load_config:
            self._lpi.load_mapped_config(tables)

    def load_queue(self, cbaser: int, creadr: int, cwriter: int) -> None:
        """Set GITS_CBASER, CREADR (its Stalled bit included) and CWRITER as a
        restore does, with the ITS disabled: no command runs."""
        if self.enabled:
            raise ITSError("load_queue: the ITS is enabled")
        self._regs["GITS_CBASER"] = registers.GITS_CBASER.merge_write(0, cbaser)
        self._regs["GITS_CREADR"] = _OFFSET.deposit(0, _OFFSET.extract(creadr))
        self._stalled = bool(_STALLED.extract(creadr))
        self._regs["GITS_CWRITER"] = _OFFSET.deposit(0, _OFFSET.extract(cwriter))
        self._queue_span = self._decode_queue()

    def load_baser(self, n: int, value: int) -> None:
        """Set GITS_BASER<n> as a guest write does, with its effects (Valid = 0
        drops the table's mappings), with the ITS disabled."""
        if self.enabled:
            raise ITSError("load_baser: the ITS is enabled")
        register = self._basers[n]
        self._write_baser(register, self._regs[register.name], value)

    def load_enabled(self, enabled: bool) -> None:
        """Set GITS_CTLR.Enabled as a host snapshot restores it: the tables
        the BASERs describe are configured, no command runs.  ITSError when
        enabling without GITS_CBASER, BASER0 and BASER1 Valid."""
        if enabled and not (_CBASER_VALID.extract(self._regs["GITS_CBASER"])
                            and _VALID.extract(self._regs["GITS_BASER0"])
                            and _VALID.extract(self._regs["GITS_BASER1"])):
            raise ITSError("load_enabled: GITS_CBASER, BASER0 and BASER1 must be Valid")
        if enabled:
            self._configure_processor()
        self._processor.its_enabled = bool(enabled)

    def load_command_errors(self, offsets, opcodes, codes, dropped: int) -> None:
        """Replace the command error log (`errors`) by these rows and a count
        of `dropped` errors (counted, not recorded), as a host snapshot
        restores it."""
        self._processor.load_errors(offsets, opcodes, codes, dropped)

    # ------------------------------------------------------------------ reset

    def reset(self) -> None:
        """KVM's ITS reset: disabled, quiescent, no mappings, BASERn.Valid = 0
        (other fields kept), CBASER = CREADR = CWRITER = 0, errors cleared.
        Redistributor state is kept."""
        with self._lock:
            self._reset()

    def _reset(self) -> None:
        self.tables.reset()
        if self.gic_version != "3":
            with self.redistributors._lock:              # lock order: ITS, redistributors
                self.redistributors.virtual.unmap_all()
        self._processor.its_enabled = False
        for register in self._basers:
            self._regs[register.name] = _VALID.deposit(self._regs[register.name], 0)
        self._regs["GITS_CBASER"] = self._regs["GITS_CREADR"] = self._regs["GITS_CWRITER"] = 0
        self._stalled = False
        self._queue_span = self._decode_queue()
        self._processor.clear_errors()

    def __repr__(self) -> str:
        return (f"<ITS {self.layout} enabled={self.enabled} devices={self.tables.num_devices} "
                f"events={self.tables.num_events} errors={len(self.errors)}>")


def _rebuild(cls: type, snapshot: dict, memory: GuestMemory, redistributors: Redistributors,
             owns_redistributors: bool) -> ITS:
    """Unpickle an `ITS` (see `ITS.__reduce__`)."""
    its = cls.from_snapshot(snapshot, memory, redistributors=redistributors)
    if owns_redistributors:
        its._adopt_redistributors()
    return its


#: The write handler of each writable ITS register, by name (RO registers have none).
_WRITERS = {
    "GITS_CTLR": ITS._write_ctlr,
    "GITS_CBASER": ITS._write_cbaser,
    "GITS_CWRITER": ITS._write_cwriter,
    **{register.name: ITS._write_baser_register for register in _BASERS},
    "GITS_SGIR": ITS._write_sgir,
}
