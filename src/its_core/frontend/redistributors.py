"""The LPI side of a set of redistributors, as the guest sees it.

One redistributor per CPU, with the LPI registers of its RD_base frame
(declared in `its_core.registers`): GICR_CTLR.EnableLPIs, GICR_TYPER,
GICR_PROPBASER (one register shared by every CPU, as KVM keeps it),
GICR_PENDBASER and the direct LPI registers (SETLPIR, CLRLPIR, INVLPIR,
INVALLR, SYNCR).  The state behind them (pending bitmaps, config cache) is
the native `LPIState`; see docs/front-end.md for when it loads what.

A `Redistributors` can be built on its own and shared by several ITSs, as in
a system with more than one ITS: LPIs from all of them land in the same
pending tables, and the config cache, EnableLPIs, PROPBASER and PENDBASER
belong to the redistributors, not to any one ITS.
"""

from __future__ import annotations

import threading
from collections import deque
from contextlib import contextmanager

import numpy as np

from its_core.abi import rev1, saverestore, snapshot_format
from its_core.frontend import registers
from its_core.frontend._guest import GuestWindow
from its_core.frontend._lpi import LPIState
from its_core.frontend.access import AccessLog, new_log
from its_core.frontend.guest_memory import GuestMemory
from its_core.frontend.virtual import VirtualLPIs
from its_core.validation import as_uint, check_gic_version

_CTLR, _PROPBASER, _PENDBASER = (registers.GICR_CTLR, registers.GICR_PROPBASER,
                                 registers.GICR_PENDBASER)
_ENABLE_LPIS = registers.GICR_CTLR.field("EnableLPIs")
_PROP_ADDRESS = registers.GICR_PROPBASER.field("Physical_Address")
_PROP_IDBITS = registers.GICR_PROPBASER.field("IDbits")
_PEND_ADDRESS = registers.GICR_PENDBASER.field("Physical_Address")
_PTZ = registers.GICR_PENDBASER.field("PTZ")
_LPIR_INTID = registers.GICR_SETLPIR.field("pINTID").mask
#: GICv4.1 GICR_INVLPIR / GICR_INVALLR V [63] (the same bit in both layouts).
_INV_V = registers.GICR_INVLPIR_V41_LAYOUT["V"]
RD_FRAME_BYTES = 0x1_0000
#: A GICv4 redistributor's frames: RD_base, SGI_base, VLPI_base, reserved (QEMU's stride).
GICV4_RD_FRAMES_BYTES = 0x4_0000
#: INTIDs below this are SGIs, PPIs, SPIs and special: not LPIs.
LPI_FIRST_INTID = 8192
#: Every valid guest access to an RD_base frame, (offset, size) -> (register, half).
_GICR_ACCESSES = registers.GICR_REGISTERS.accesses()
#: LPI INTID widths a set of redistributors supports (pending bitmaps of
#: 2**intid_bits bits per CPU; the CPU interface reports 24-bit INTIDs).
INTID_BITS_RANGE = range(14, 25)
MAX_CPUS = 65536


def _priority_mask(value) -> int:
    """An ICC_PMR-style priority mask, 0..255 (ValueError / TypeError otherwise)."""
    return as_uint(value, "priority_mask", 8)


class Redistributors:
    """The LPI side of `num_cpus` redistributors on guest memory `memory`.

    Parameters
    ----------
    memory : GuestMemory
        Guest memory holding the LPI configuration and pending tables (the
        same object as the memory of every ITS attached).
    num_cpus : int
        Redistributors, one per CPU (1..65536).
    intid_bits : int, default 16
        LPI INTID width, 14..24.
    strict : bool, default False
        Raise `InvalidAccessError` for an access that would otherwise be
        ignored and recorded in `access_errors`.
    on_signal : callable, optional
        ``on_signal(cpu)`` is called when the highest-priority enabled pending
        LPI of `cpu` changes (see `on_signal`).
    access_errors : collections.deque, optional
        The log to record invalid accesses into (an ITS that builds its own
        redistributors passes its own log, so one log holds both frames).
    gic_version : {"3", "4.0", "4.1"}, default "3"
        "3": the GICv3 redistributors above, exactly.  "4.0" / "4.1": each
        redistributor also has the VLPI frame (`registers.VLPI_FRAME`, so
        `mmio_read` / `mmio_write` take offsets up to 256 KiB, QEMU's GICv4
        stride), GICR_PIDR2 with ArchRev 4, GICR_TYPER.VLPIS (4.1: RVPEID,
        VSGI) and the GICv4 state of `virtual` (`its_core.frontend.virtual`).
        Every ITS attached must have the same version.

    Attributes
    ----------
    memory : GuestMemory
    num_cpus, intid_bits : int
    gic_version : str
    virtual : VirtualLPIs or None
        The GICv4 state (vPE attributes, VLPI frame registers, resident
        caches); None for GICv3.
    access_errors : collections.deque of AccessError
        The most recent invalid accesses to the RD_base frames.
    """

    def __init__(self, memory: GuestMemory, num_cpus: int, intid_bits: int = 16, *,
                 strict: bool = False, on_signal=None, access_errors: deque | None = None,
                 gic_version: str = "3"):
        if not isinstance(memory, GuestMemory):
            raise TypeError(f"memory must be a GuestMemory, got {type(memory).__name__}")
        num_cpus = as_uint(num_cpus, "num_cpus")
        if not 1 <= num_cpus <= MAX_CPUS:
            raise ValueError(f"num_cpus must be in 1..{MAX_CPUS}, got {num_cpus}")
        intid_bits = as_uint(intid_bits, "intid_bits")
        if intid_bits not in INTID_BITS_RANGE:
            raise ValueError(f"intid_bits must be in {INTID_BITS_RANGE.start}.."
                             f"{INTID_BITS_RANGE.stop - 1}, got {intid_bits}")
        self.gic_version = check_gic_version(gic_version)
        self.memory = memory
        self.num_cpus = num_cpus
        self.intid_bits = intid_bits
        self.access_errors = new_log() if access_errors is None else access_errors
        self._log = AccessLog(self.access_errors, strict)
        # Register writes, acknowledge, save and restore run one at a time
        # (docs/threads.md); the native LPI state is changed under the GIL.
        self._lock = threading.RLock()
        self._lpi = LPIState(GuestWindow(memory), num_cpus, intid_bits)
        self.virtual = (None if gic_version == "3" else
                        VirtualLPIs(memory, self._lpi, num_cpus, intid_bits, gic_version))
        self._frame_bytes = RD_FRAME_BYTES if gic_version == "3" else GICV4_RD_FRAMES_BYTES
        self._accesses = (_GICR_ACCESSES if gic_version == "3" else
                          registers.gicr_register_map(gic_version).accesses())
        self._ctlr = [0] * self.num_cpus
        self._propbaser = registers.GICR_PROPBASER.reset
        self._pendbaser = [registers.GICR_PENDBASER.reset] * self.num_cpus
        self._ptz = [False] * self.num_cpus
        # GICR_TYPER is constant per CPU: Processor_Number (the PTA = 0 command
        # target) and Affinity are the CPU number; Last marks the last frame.
        gicv4, gicv41 = gic_version != "3", gic_version == "4.1"
        self._typer = [registers.gicr_typer_value(cpu, cpu, last=cpu == self.num_cpus - 1,
                                                  direct_lpi=True, vlpis=gicv4,
                                                  rvpeid=gicv41, vsgi=gicv41)
                       for cpu in range(self.num_cpus)]
        self._lpi.set_propbaser(self.propbaser_address, _PROP_IDBITS.extract(self._propbaser))
        # Signalling: what each CPU's highest_pending() was when last looked at,
        # the LPI state version it was computed at, and who signals: one
        # thread at a time holds `_signal_lock` (while it calls callbacks, or
        # for a deferred block) and looks again before it lets go, so a change
        # another thread makes meanwhile is signalled by the holder.
        self._on_signal = None
        # GICv3: what is compared is `highest_pending`; GICv4: the pair
        # (highest_pending, highest_pending_virtual), and the version is
        # (LPIState.version, VirtualLPIs.version).
        self._highest_now = (self._lpi.highest_pending if self.virtual is None
                             else self._highest_physical_and_virtual)
        self._highest = [None] * self.num_cpus
        self._seen_version = self._state_version()
        self._signal_lock = threading.Lock()
        self._signal_owner = None            # thread ident holding _signal_lock
        self._recheck = False                # a callback raised: look at every CPU again
        self.on_signal = on_signal

    @property
    def on_signal(self):
        """``callback(cpu)``, called when CPU `cpu`'s highest-priority enabled
        pending LPI changes (from none to some, to another LPI, back to none).
        GICv4: also when `highest_pending_virtual(cpu)` changes -- the vPE
        resident on `cpu` gains or loses its best pending vLPI or vSGI, a vPE
        becomes resident or stops being resident (GICR_VPENDBASER), a vSGI
        changes (GITS_SGIR, VSGI) -- after the same operations, plus
        `acknowledge_virtual`; a doorbell rung for a non-resident vPE is a
        physical LPI and signals as one.  A vLPI configuration byte a guest
        rewrites in memory is signalled once the guest invalidates it (INV of
        the virtual event, VINVALL, or on GICv4.1 GICR_INVLPIR / INVALLR with
        V = 1, as the architecture requires before the change must take
        effect) or that CPU's virtual state next changes; `acknowledge_virtual`
        and `highest_pending_virtual` always read the bytes as they are.

        It runs after the operation that changed it has completed, once per
        CPU per operation: a CWRITER write (however many commands it ran), a
        doorbell (`msi`, a GITS_TRANSLATER write), an `msi_batch`, a GICR
        write, an `acknowledge`, a restore.  Never from inside a native loop,
        never re-entrantly: a change the callback itself causes is signalled
        after it returns.  An exception from the callback propagates to the
        caller of the operation, whose effects stand; the CPUs not yet
        signalled are signalled after the next of those operations (or a call
        of `signal_changes`).  None: no signals (and no cost).

        With several threads driving the model, the callback runs on a thread
        that completed a changing operation (not necessarily the one that
        made a given change) and never on two threads at once."""
        return self._on_signal

    @on_signal.setter
    def on_signal(self, callback) -> None:
        if callback is not None and not callable(callback):
            raise TypeError(f"on_signal must be callable or None, got {type(callback).__name__}")
        if callback is not None and self._on_signal is None:
            with self._signal_role():
                self._highest = [self._highest_now(cpu) for cpu in range(self.num_cpus)]
                self._seen_version = self._state_version()
                self._on_signal = callback
        self._on_signal = callback

    def signal_changes(self, cpus=None) -> None:
        """Call `on_signal` for each CPU (of `cpus`, default all) whose highest-
        priority enabled pending LPI changed since it was last looked at.  The
        model calls this after every operation; a simulator that changes the
        LPI state behind the model's back (a pending table in memory, say)
        may call it too."""
        if self._on_signal is None:
            return
        # A failed acquire means the holder (a callback of this thread, a
        # deferred block, or another thread) looks again before it lets go.
        while self._signal_lock.acquire(blocking=False):
            self._signal_owner = threading.get_ident()
            try:
                self._signal_pending(None if self._recheck else cpus)
            finally:
                self._signal_owner = None
                self._signal_lock.release()
            if not self._recheck and self._seen_version == self._state_version():
                return
            cpus = None                      # a change slipped in before the release

    def _signal_pending(self, cpus) -> None:
        """The signalling loop, with the signal role held."""
        callback = self._on_signal
        try:
            while callback is not None and (self._recheck
                                            or self._seen_version != self._state_version()):
                self._recheck = False
                self._seen_version = self._state_version()
                for cpu in (range(self.num_cpus) if cpus is None else cpus):
                    highest = self._highest_now(cpu)
                    if highest != self._highest[cpu]:
                        self._highest[cpu] = highest
                        callback(cpu)
                cpus = None                  # the callback may have changed any CPU
                callback = self._on_signal
        except BaseException:
            self._recheck = True
            raise

    def _state_version(self):
        """What changes whenever a CPU's signalled state may have changed."""
        virtual = self.virtual
        return self._lpi.version if virtual is None else (self._lpi.version, virtual.version)

    def _highest_physical_and_virtual(self, cpu: int) -> tuple:
        """GICv4 signalling compares both the physical and the resident vPE's best
        (the latter read under the lock: a residency change on another thread
        swaps the resident cache)."""
        with self._lock:
            return self._lpi.highest_pending(cpu), self.virtual.signalled_best(cpu)

    @contextmanager
    def _signal_role(self):
        """Hold the signal role (waiting for another thread's), unless this
        thread already does."""
        if self._signal_owner == threading.get_ident():
            yield
            return
        self._signal_lock.acquire()
        self._signal_owner = threading.get_ident()
        try:
            yield
        finally:
            self._signal_owner = None
            self._signal_lock.release()

    @contextmanager
    def deferred_signals(self):
        """Signal nothing inside the block; signal its changes when it ends
        (what a restore does, and what a simulator can do around a group of
        operations).  Blocks nest.  Other threads' changes meanwhile are
        signalled at the end of the block too."""
        if self._signal_owner == threading.get_ident():
            yield
            return
        with self._signal_role():
            yield
        self.signal_changes()

    @property
    def strict(self) -> bool:
        """Invalid accesses raise instead of being recorded (settable)."""
        return self._log.strict

    @strict.setter
    def strict(self, value: bool) -> None:
        self._log.strict = bool(value)

    @property
    def lpi_state(self) -> "LPIState":
        """The native state: pending bitmaps, config cache, LPI limit (internal)."""
        return self._lpi

    # -- derived values ---------------------------------------------------------

    @property
    def propbaser_address(self) -> int:
        """Physical address of the LPI configuration table."""
        return self._propbaser & _PROP_ADDRESS.mask

    def pendbaser_address(self, cpu: int) -> int:
        """Physical address of `cpu`'s LPI pending table."""
        return self._pendbaser[cpu] & _PEND_ADDRESS.mask

    @property
    def lpi_limit(self) -> int:
        """One past the highest usable LPI INTID: 2**min(IDbits + 1, intid_bits)."""
        return self._lpi.limit

    def lpis_enabled(self, cpu: int) -> bool:
        """GICR_CTLR.EnableLPIs of `cpu`."""
        return bool(_ENABLE_LPIS.extract(self._ctlr[cpu]))

    # -- the CPU side -------------------------------------------------------------

    def check_cpu(self, cpu) -> int:
        """`cpu` as an int, ValueError unless it is one of these redistributors."""
        if type(cpu) is not int or not 0 <= cpu < self.num_cpus:
            cpu = as_uint(cpu, "cpu")
            if cpu >= self.num_cpus:
                raise ValueError(f"cpu {cpu} is not in 0..{self.num_cpus - 1}")
        return cpu

    def pending(self, cpu: int) -> np.ndarray:
        """Sorted uint32 INTIDs pending on `cpu`."""
        return self._lpi.pending_intids(self.check_cpu(cpu))

    def highest_pending(self, cpu: int, priority_mask: int = 0xFF) -> tuple[int, int] | None:
        """``(intid, priority)`` of the highest-priority enabled pending LPI of
        `cpu` that a CPU interface with ICC_PMR = `priority_mask` would take
        (priority, the config byte's bits [7:2] as a number 0..252, strictly
        below the mask; ties: lowest INTID), or None.  Changes nothing."""
        return self._lpi.highest_pending(self.check_cpu(cpu), _priority_mask(priority_mask))

    def acknowledge(self, cpu: int, priority_mask: int = 0xFF) -> int | None:
        """Take (clear and return) the LPI `highest_pending` names; None when
        there is none."""
        cpu = self.check_cpu(cpu)
        mask = _priority_mask(priority_mask)
        with self._lock:
            intid = self._lpi.acknowledge(cpu, mask)
        if self._on_signal is not None:
            self.signal_changes((cpu,))
        return intid

    def highest_pending_virtual(self, cpu: int,
                                priority_mask: int = 0xFF) -> tuple[int, int] | None:
        """GICv4: ``(intid, priority)`` of the best enabled pending interrupt of
        the vPE resident on `cpu` (GICR_VPENDBASER.Valid = 1), as
        `highest_pending` for physical LPIs: its cached vLPIs with the priority
        of their configuration byte (byte & 0xFC; v4.0 at GICR_VPROPBASER.PA +
        vINTID - 8192, v4.1 at the vPE's VMAPP VCONF_addr; a byte outside guest
        memory reads 0, disabled) and, GICv4.1, its enabled pending vSGIs
        (INTIDs 0..15, VSGI priority); priority strictly below
        `priority_mask`, ties to the lowest INTID (the reference model's
        `acknowledge_virtual`).  None when no vPE is resident, nothing
        qualifies, or the redistributors are GICv3.  Changes nothing."""
        cpu = self.check_cpu(cpu)
        mask = _priority_mask(priority_mask)
        if self.virtual is None:
            return None
        with self._lock:
            return self.virtual.highest_pending(cpu, mask)

    def acknowledge_virtual(self, cpu: int, priority_mask: int = 0xFF) -> int | None:
        """GICv4: take (clear and return) the interrupt `highest_pending_virtual`
        names -- a vLPI leaves the resident cache (its VPT bit is cleared when
        the vPE is descheduled), a vSGI's pending bit clears; EOI is not
        modelled (C25).  None when there is none."""
        cpu = self.check_cpu(cpu)
        mask = _priority_mask(priority_mask)
        if self.virtual is None:
            return None
        with self._lock:
            intid = self.virtual.acknowledge(cpu, mask)
        if self._on_signal is not None:
            self.signal_changes((cpu,))
        return intid

    # -- save / restore -----------------------------------------------------------

    def save(self) -> dict:
        """Each CPU's pending bitmap (CPUs with LPIs enabled) -> its pending
        table in guest memory; returns the GICR_* registers as a JSON-
        serialisable dict (one list entry per CPU).  GICv4 (its-core-rev1):
        also each resident vPE's cached pending vLPIs -> its VPT, and the VLPI
        registers (GICR_VPROPBASER, GICR_VPENDBASER, v4.1 GICR_VSGIR) in the
        dict.  SaveError: nothing written."""
        with self._lock:
            if self.gic_version != "3":
                return rev1.save_redistributors(self)
            return saverestore.save_redistributors(self)

    def restore(self, state: dict) -> None:
        """Restore a `save()` dict (or the GICR_* entries of `ITS.save()`) from
        (a copy of) the guest memory it was saved to: registers, pending
        tables, config cache (GICv4: and the VLPI registers; a v4.1 resident
        vPE must already be mapped, so restore a GICv4 ITS with its
        redistributors in one `ITS.restore`).  RestoreError: nothing changed.
        Restore the redistributors before the ITSs attached to them."""
        with self.deferred_signals(), self._lock:
            saverestore.restore_redistributors(self, state)

    # -- host snapshots ---------------------------------------------------------

    def snapshot(self) -> dict:
        """The whole state as a host snapshot (``its-core-snapshot-1``, docs/
        save-format.md): a dict of numpy arrays and plain scalars, copied,
        never aliasing this object; registers, PTZ, pending bitmaps, config
        cache, `strict` and `access_errors`.  Guest memory is not in it and
        is not touched; `on_signal` is not carried.  GICv4: also the vPE
        attributes, the VLPI registers and the resident caches
        ("redistributors.virtual" keys)."""
        with self._lock:
            return snapshot_format.snapshot_redistributors(self)

    @classmethod
    def from_snapshot(cls, snapshot: dict, memory: GuestMemory) -> "Redistributors":
        """New redistributors on `memory` holding a `snapshot()` (nothing is
        read from guest memory), with `on_signal` None.  `RestoreError`
        naming the key at fault for an invalid snapshot; nothing is built."""
        return snapshot_format.build_redistributors(cls, snapshot, memory)

    def __reduce__(self):
        """Pickle and `copy.deepcopy` through `snapshot` / `from_snapshot`; the
        memory goes as an ordinary object (by value, shared through pickle's
        memo).  `on_signal` is not carried: the copy has None."""
        return (_rebuild, (type(self), self.snapshot(), self.memory))

    # -- interface for its_core.abi (host snapshots) -------------------------------

    def register_state(self) -> dict:
        """The stored LPI registers: ``GICR_CTLR`` and ``GICR_PENDBASER`` (lists,
        one value per CPU), ``GICR_PROPBASER`` (one value), and ``ptz`` (each
        CPU's PTZ as last written, which GICR_PENDBASER reads as 0: whether
        enabling LPIs will take the pending table as zero)."""
        return {"GICR_CTLR": list(self._ctlr), "GICR_PROPBASER": self._propbaser,
                "GICR_PENDBASER": list(self._pendbaser), "ptz": list(self._ptz)}

    def load_state(self, ctlr, propbaser: int, pendbaser, ptz, pending, config) -> None:
        """Set the stored registers (as `register_state` gives them), the
        pending bitmaps and the config cache at once, as a host snapshot
        restores them: no register side effect runs and nothing is read from
        guest memory.  The values must be valid (the snapshot validator
        checked them)."""
        ctlr, pendbaser, ptz = [int(v) for v in ctlr], [int(v) for v in pendbaser], \
            [bool(v) for v in ptz]
        if not len(ctlr) == len(pendbaser) == len(ptz) == self.num_cpus:
            raise ValueError(f"expected {self.num_cpus} values per register")
        self._lpi.load_state(pending, config,
                             np.array([_ENABLE_LPIS.extract(v) for v in ctlr], bool))
        self._ctlr, self._pendbaser, self._ptz = ctlr, pendbaser, ptz
        self._propbaser = int(propbaser)
        self._lpi.set_propbaser(self.propbaser_address, _PROP_IDBITS.extract(self._propbaser))
        self.signal_changes()

    # -- MMIO --------------------------------------------------------------------

    def _check(self, cpu, offset, size):
        cpu = self.check_cpu(cpu)
        if type(offset) is not int or not 0 <= offset < self._frame_bytes:
            offset = as_uint(offset, "offset")
            if offset >= self._frame_bytes:
                raise ValueError(f"offset {offset:#x} is outside the redistributor's "
                                 f"{self._frame_bytes >> 10} KiB of frames")
        if type(size) is not int or size not in (1, 2, 4, 8):
            raise ValueError(f"size must be 1, 2, 4 or 8 bytes, got {size!r}")
        return cpu, offset

    def _value(self, cpu: int, name: str) -> int:
        if name == "GICR_CTLR":
            return self._ctlr[cpu]
        if name == "GICR_TYPER":
            return self._typer[cpu]
        if name == "GICR_PROPBASER":
            return self._propbaser
        if name == "GICR_PENDBASER":
            return self._pendbaser[cpu]
        if name == "GICR_PIDR2":
            return registers.GICR_PIDR2_V4.reset
        if name == "GICR_VPROPBASER":
            return self.virtual.read_vpropbaser(cpu)
        if name == "GICR_VPENDBASER":
            return self.virtual.read_vpendbaser(cpu)
        if name == "GICR_VSGIR":
            return int(self.virtual.vsgir[cpu])
        if name == "GICR_VSGIPENDR":
            return self.virtual.read_vsgipendr(cpu)
        return 0                                         # GICR_SYNCR: never Busy

    def mmio_read(self, cpu: int, offset: int, size: int) -> int:
        """A guest read of `size` bytes at `offset` in `cpu`'s RD_base frame."""
        cpu, offset = self._check(cpu, offset, size)
        access = self._accesses.get((offset, size))
        if access is None:
            self._log.report(f"GICR{cpu}", offset, size, False, 0, "no register of that size there")
            return 0
        if access.register.access == "WO":
            return 0                                     # direct LPI registers read as zero
        value = self._value(cpu, access.register.name)
        return value if access.half is None else registers.read_half(value, access.half)

    def mmio_write(self, cpu: int, offset: int, value: int, size: int) -> None:
        """A guest write of `size` bytes at `offset` in `cpu`'s RD_base frame."""
        with self._lock:
            self._mmio_write(cpu, offset, value, size)
        if self._on_signal is not None:
            self.signal_changes()

    def _mmio_write(self, cpu: int, offset: int, value: int, size: int) -> None:
        cpu, offset = self._check(cpu, offset, size)
        if type(value) is not int or value < 0 or value >> (8 * size):
            value = as_uint(value, "value", 8 * size)
        access = self._accesses.get((offset, size))
        if access is None:
            self._log.report(f"GICR{cpu}", offset, size, True, value,
                             "no register of that size there")
            return
        register = access.register
        if register.access == "WO":
            self._write_direct(cpu, register, offset, size, value,
                               value if access.half is None else value << (32 * access.half))
            return
        if register.access == "RO":
            return                                       # write-ignored, architecturally
        old = self._value(cpu, register.name)
        new = value if access.half is None else registers.merge_half(old, access.half, value)
        if register.name == "GICR_CTLR":
            self._write_ctlr(cpu, register.merge_write(old, new))
        elif register.name == "GICR_PROPBASER":
            self._write_propbaser(cpu, new)
        elif register.name == "GICR_PENDBASER":
            self._write_pendbaser(cpu, new)
        elif register.name == "GICR_VPROPBASER":
            self.virtual.write_vpropbaser(cpu, new)
        elif register.name == "GICR_VPENDBASER":
            self.virtual.write_vpendbaser(cpu, new)
        elif register.name == "GICR_VSGIR":
            self.virtual.write_vsgir(cpu, new)

    def _write_propbaser(self, cpu: int, value: int) -> None:
        """A GICR_PROPBASER write from `cpu` (ignored while its EnableLPIs is set)."""
        if not self.lpis_enabled(cpu):
            self._propbaser = _PROPBASER.merge_write(self._propbaser, value)
            self._lpi.set_propbaser(self.propbaser_address, _PROP_IDBITS.extract(self._propbaser))

    def _write_pendbaser(self, cpu: int, value: int) -> None:
        """A GICR_PENDBASER write (ignored while EnableLPIs is set); PTZ is kept
        for the next enable and reads as 0."""
        if not self.lpis_enabled(cpu):
            merged = _PENDBASER.merge_write(self._pendbaser[cpu], value)
            self._ptz[cpu] = bool(_PTZ.extract(merged))
            self._pendbaser[cpu] = _PTZ.deposit(merged, 0)

    def load_lpi_registers(self, ctlr, propbaser, pendbaser) -> None:
        """The guest writes that restore a saved GICR state, one value per
        CPU in each list (register values already checked by the caller):
        GICR_CTLR = 0 on every CPU, then GICR_PROPBASER and GICR_PENDBASER,
        then GICR_CTLR (EnableLPIs loads the pending table and the config).
        Each has exactly the effect of the `mmio_write` it stands for,
        without decoding the access."""
        with self._lock:
            for cpu in range(self.num_cpus):
                self._write_ctlr(cpu, _CTLR.merge_write(self._ctlr[cpu], 0))
            for cpu in range(self.num_cpus):
                self._write_propbaser(cpu, propbaser[cpu])
                self._write_pendbaser(cpu, pendbaser[cpu])
            for cpu in range(self.num_cpus):
                self._write_ctlr(cpu, _CTLR.merge_write(self._ctlr[cpu], ctlr[cpu]))
        if self._on_signal is not None:
            self.signal_changes()

    def _write_direct(self, cpu: int, register: registers.Register, offset: int, size: int,
                      written: int, value: int) -> None:
        """The direct LPI registers.  Ignored (and recorded) while EnableLPIs is
        0 and for INTIDs that are not LPIs below the limit.  GICv4.1
        GICR_INVLPIR / GICR_INVALLR with V = 1 name a vLPI (all vLPIs) of a
        vPE: vLPI configuration is read from guest memory when used, never
        cached, so no state changes (`VirtualLPIs.invalidate_configuration`:
        the signalling after the write re-reads the configuration), whatever
        EnableLPIs, the vPE or the INTID; never the physical form.  Below
        GICv4.1, V is RES0 (`register` is the GICv3 layout, whose INTID
        field excludes it)."""
        if register is registers.GICR_INVLPIR_V41 or register is registers.GICR_INVALLR_V41:
            if _INV_V.extract(value):
                self.virtual.invalidate_configuration(
                    registers.GICR_INVLPIR_V41_LAYOUT["vPEID"].extract(value))
                return
        if not self.lpis_enabled(cpu):
            self._log.report(f"GICR{cpu}", offset, size, True, written,
                             f"{register.name} while EnableLPIs is 0")
            return
        if register.name == "GICR_INVALLR":
            self._lpi.load_all_config()
            return
        intid = value & _LPIR_INTID
        if not LPI_FIRST_INTID <= intid < self._lpi.limit:
            self._log.report(f"GICR{cpu}", offset, size, True, written,
                             f"{register.name}: INTID {intid} is not an LPI below the limit "
                             f"{self._lpi.limit}")
            return
        if register is registers.GICR_SETLPIR:
            self._lpi.set_lpi(cpu, intid)
        elif register is registers.GICR_CLRLPIR:
            self._lpi.clear_lpi(cpu, intid)
        else:                                            # GICR_INVLPIR
            self._lpi.reload_config(intid)

    def _write_ctlr(self, cpu: int, value: int) -> None:
        was, now = self.lpis_enabled(cpu), bool(_ENABLE_LPIS.extract(value))
        self._ctlr[cpu] = _ENABLE_LPIS.deposit(0, int(now))
        if now and not was:
            self._lpi.enable(cpu, self.pendbaser_address(cpu), self._ptz[cpu])
            self._ptz[cpu] = False
        elif was and not now:
            self._lpi.disable(cpu)


def _rebuild(cls: type, snapshot: dict, memory: GuestMemory) -> Redistributors:
    """Unpickle a `Redistributors` (see `Redistributors.__reduce__`)."""
    return cls.from_snapshot(snapshot, memory)
