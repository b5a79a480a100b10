"""GICv4 state of a set of redistributors: vPE attributes, the VLPI frame, residency.

One `VirtualLPIs` belongs to a `Redistributors` built with ``gic_version``
"4.0" or "4.1" and is shared by every ITS attached to them.  It holds what
the translation core does not (the core keeps the virtual ITEs, their
doorbells and the vPEID -> CPU table of each ITS):

* the vPE attributes, numpy arrays indexed by vPEID (65536 entries, the
  16-bit vPEID of the commands): mapped, RDbase (CPU), VPT address and
  VPT_size, and for GICv4.1 VCONF_addr, the default doorbell, whether a
  deschedule armed it, and the 16 vSGIs' pending bits and configuration.
  These are one vPE table for all the ITSs sharing the redistributors (the
  GICv4.1 shared vPE table; Linux maps each vPE with the same values on
  every ITS): a VMAPP on any ITS writes them;
* per CPU, the VLPI frame registers (GICR_VPROPBASER, GICR_VPENDBASER,
  GICR_VSGIR) and the resident vPE's cached pending vLPIs (two bitmaps per
  CPU, allocated when a vPE becomes resident: pending, and "taken while
  resident", whose VPT bits are cleared at write-back).

Every rule follows the reference model (`its_core.frontend.reference_its`,
module docstring): delivery to a resident cache or to the VPT in guest
memory plus the ITE's doorbell, the residency rules of GICR_VPENDBASER
(C20-C22), PendingLast, the GICv4.1 default doorbell and vSGIs.  The
command checks are the command processor's (`_cmdq`); the methods here
apply effects and never fail on guest values (a value a guest cannot
produce -- a CPU number out of range -- is the caller's bug).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from its_core.frontend import commands as C
from its_core.frontend import registers as R
from its_core.frontend._lpi import LPIState
from its_core.frontend.guest_memory import GuestMemory

__all__ = ["VirtualLPIs", "VPE_SPACE", "NUM_VSGIS", "VirtualStatus"]

#: vPEIDs are 16 bits (the commands' vPEID field, QEMU's vPE table).
VPE_SPACE = 1 << C.GICV4_COMMAND_TABLE["VSYNC"].fields[0].field.width
#: vSGIs per vPE (GICv4.1).
NUM_VSGIS = 16
#: First LPI INTID (and first vLPI vINTID).
LPI_FIRST_INTID = 8192
#: Level-1 descriptor Valid bit and address bits [51:12] (vPE Configuration table).
_L1_VALID = 1 << 63
_L1_ADDRESS = ((1 << 52) - 1) & ~0xFFF
#: GICR_VPROPBASER (v4.1) Page_Size code -> bytes (code 3 reserved: 64 KiB, as for BASERs).
_PAGE_BYTES = (4 << 10, 16 << 10, 64 << 10, 64 << 10)

_VPROP40 = R.GICR_VPROPBASER_V40_LAYOUT
_VPROP41 = R.GICR_VPROPBASER_V41_LAYOUT
_VPEND40 = R.GICR_VPENDBASER_V40_LAYOUT
_VPEND41 = R.GICR_VPENDBASER_V41_LAYOUT


_VPEND40_KEPT = R.GICR_VPENDBASER_V40_KEPT     # the bits a write keeps
_VPEND41_KEPT = R.GICR_VPENDBASER_V41_KEPT
_VPROP41_KEPT = R.GICR_VPROPBASER_V41_KEPT


class VirtualStatus(IntEnum):
    """What a delivery to a vPE did.

    `ITS.msi`, GITS_TRANSLATER writes and `ITS.msi_batch` (and the reference
    model's `ReferenceITS.msi`) report these for an event mapped to a virtual
    ITE; they do not overlap `TranslationStatus`.
    """

    #: Made pending: in the resident cache, or in the VPT (plus doorbell).
    VIRTUAL = 64
    #: The vPE is not mapped: dropped.
    VIRTUAL_NO_VPE = 65
    #: vINTID beyond the vPE's VPT_size (or, v4.0 resident, VPROPBASER.IDbits): dropped.
    VIRTUAL_INTID_OUT_OF_RANGE = 66


class VirtualLPIs:
    """The GICv4 side of `num_cpus` redistributors (see the module docstring).

    Parameters
    ----------
    memory : GuestMemory
        Guest memory holding VPTs, vLPI configuration tables, the v4.1 vPE
        Configuration table.
    lpi : LPIState
        The redistributors' physical LPI state: doorbells are rung through it.
    num_cpus, intid_bits : int
        As for `Redistributors`.
    gic_version : {"4.0", "4.1"}
    """

    def __init__(self, memory: GuestMemory, lpi: LPIState, num_cpus: int, intid_bits: int,
                 gic_version: str):
        if gic_version not in ("4.0", "4.1"):
            raise ValueError(f"VirtualLPIs: gic_version must be '4.0' or '4.1', "
                             f"got {gic_version!r}")
        self.memory = memory
        self.lpi = lpi
        self.num_cpus = num_cpus
        self.intid_bits = intid_bits
        self.gic_version = gic_version
        self.is_v41 = gic_version == "4.1"
        # -- vPE attributes, by vPEID.
        self.vpe_mapped = np.zeros(VPE_SPACE, bool)
        self.vpe_cpu = np.zeros(VPE_SPACE, np.int32)
        self.vpt_addr = np.zeros(VPE_SPACE, np.uint64)
        self.vpt_size = np.zeros(VPE_SPACE, np.uint8)
        self.vconf_addr = np.zeros(VPE_SPACE, np.uint64)
        self.default_doorbell = np.full(VPE_SPACE, C.NO_DOORBELL, np.uint32)
        self.doorbell_armed = np.zeros(VPE_SPACE, bool)
        if self.is_v41:
            self.vsgi_pending = np.zeros(VPE_SPACE, np.uint16)
            # (priority, group, enable) of each vSGI, from VSGI commands.
            self.vsgi_config = np.zeros((VPE_SPACE, NUM_VSGIS, 3), np.uint8)
        # -- per CPU: the VLPI frame and the resident vPE.
        self.vpropbaser = np.zeros(num_cpus, np.uint64)
        self.vpendbaser = np.zeros(num_cpus, np.uint64)
        self.vsgir = np.zeros(num_cpus, np.uint32)
        self.resident = np.zeros(num_cpus, bool)
        self.resident_vpt = np.zeros(num_cpus, np.uint64)      # captured at Valid 0 -> 1
        self.resident_limit = np.zeros(num_cpus, np.uint64)    # first vINTID not cached
        self.resident_vpe = np.full(num_cpus, -1, np.int32)    # v4.1: the vPEID
        self.resident_config = np.zeros(num_cpus, np.uint64)   # v4.1: the vPE's VCONF_addr
        # cpu -> bool arrays of 2**intid_bits: cached pending vINTIDs, and vINTIDs
        # taken while resident (acknowledged, cleared, moved away).
        self._cached_pending: dict[int, np.ndarray] = {}
        self._cached_taken: dict[int, np.ndarray] = {}
        #: Bumped by every change of this state: `Redistributors` signalling
        #: compares it, as `LPIState.version`.
        self.version = 0
        #: Per CPU: whether `highest_pending` may have changed since
        #: `signalled_best` last computed it.  Every change marks the CPUs it
        #: may concern (a delivery to a descheduled vPE marks none: it only
        #: writes the VPT and rings a physical doorbell), so signalling does
        #: not rescan a resident cache that did not change.
        self.stale = np.ones(num_cpus, bool)
        self._signalled_best: list = [None] * num_cpus

    def _changed(self, cpu: int | None = None) -> None:
        """A change: bump `version`; mark `cpu` (default: every CPU) stale."""
        self.version += 1
        if cpu is None:
            self.stale[:] = True
        else:
            self.stale[cpu] = True

    def signalled_best(self, cpu: int) -> tuple[int, int] | None:
        """`highest_pending(cpu)` for the signalling: recomputed only when the
        CPU is stale (see `stale`)."""
        if self.stale[cpu]:
            self._signalled_best[cpu] = self.highest_pending(cpu)
            self.stale[cpu] = False
        return self._signalled_best[cpu]

    # -- guest memory -------------------------------------------------------------

    def _byte(self, addr: int) -> int:
        """One byte of guest memory; 0 outside it."""
        mem = self.memory
        return int(mem.array[addr - mem.base]) if mem.contains(addr, 1) else 0

    def _vpt_bit(self, vpt_addr: int, vintid: int, value: bool | None = None) -> bool:
        """Bit vINTID of the VPT at `vpt_addr` (False outside guest memory); with
        `value`, write it.  Returns the old bit."""
        mem = self.memory
        addr = vpt_addr + vintid // 8
        if not mem.contains(addr, 1):
            return False
        index = addr - mem.base
        mask = 1 << (vintid % 8)
        old = bool(mem.array[index] & mask)
        if value is not None and value != old:
            mem.array[index] ^= mask
        return old

    def _vpt_bits(self, vpt_addr: int, limit: int) -> np.ndarray:
        """Bool array of 2**intid_bits: the VPT's bits [8192, limit) (0 outside memory)."""
        bits = np.zeros(1 << self.intid_bits, bool)
        first, end = LPI_FIRST_INTID // 8, limit // 8
        if end <= first:
            return bits
        mem = self.memory
        start, stop = vpt_addr + first, vpt_addr + end
        lo, hi = max(start, mem.base), min(stop, mem.end)
        raw = np.zeros(end - first, np.uint8)
        if lo < hi:
            raw[lo - start:hi - start] = mem.array[lo - mem.base:hi - mem.base]
        bits[first * 8:end * 8] = np.unpackbits(raw, bitorder="little").astype(bool)
        return bits

    def _vlpi_config(self, config_addr: int, vintid: int) -> int:
        """The vLPI's configuration byte (0 outside guest memory: disabled)."""
        return self._byte(config_addr + vintid - LPI_FIRST_INTID)

    # -- vPE attributes (VMAPP, VMOVP, VSGI) -----------------------------------------

    def is_mapped(self, vpe_id: int) -> bool:
        """Whether vPEID has a valid vPE table entry."""
        return bool(self.vpe_mapped[vpe_id])

    def vintid_limit(self, vpe_id: int) -> int:
        """First vINTID beyond the vPE's VPT: 2**(VPT_size + 1)."""
        return 1 << (int(self.vpt_size[vpe_id]) + 1)

    def map_vpe(self, vpe_id: int, cpu: int, vpt_addr: int, vpt_size: int, vconf_addr: int,
                default_doorbell: int) -> None:
        """VMAPP V = 1 (checked): a new vPE gets cleared GICv4.1 state; a mapped one
        keeps its vSGIs and armed doorbell, no pending state moves (C2)."""
        self._changed()
        if not self.vpe_mapped[vpe_id]:
            self.doorbell_armed[vpe_id] = False
            if self.is_v41:
                self.vsgi_pending[vpe_id] = 0
                self.vsgi_config[vpe_id] = 0
        self.vpe_mapped[vpe_id] = True
        self.vpe_cpu[vpe_id] = cpu
        self.vpt_addr[vpe_id] = vpt_addr
        self.vpt_size[vpe_id] = vpt_size
        self.vconf_addr[vpe_id] = vconf_addr
        self.default_doorbell[vpe_id] = default_doorbell

    def unmap_vpe(self, vpe_id: int) -> None:
        """VMAPP V = 0: forget the vPE (ITEs naming it stay, C1)."""
        self._changed()
        self.vpe_mapped[vpe_id] = False

    def unmap_all(self) -> None:
        """BASER2.Valid = 0 or ITS reset: no vPE is mapped."""
        self._changed()
        self.vpe_mapped[:] = False

    def move_vpe(self, vpe_id: int, cpu: int, default_doorbell: int | None) -> None:
        """VMOVP (checked): only RDbase (and, v4.1 DB = 1, the default doorbell) changes."""
        self._changed()
        self.vpe_cpu[vpe_id] = cpu
        if default_doorbell is not None:
            self.default_doorbell[vpe_id] = default_doorbell

    def vsgi(self, vpe_id: int, vintid: int, priority: int, group: int, enable: int,
             clear: bool) -> None:
        """VSGI (checked): Clear = 1 clears the pending bit only, else sets the config only."""
        self._changed()
        if clear:
            self.vsgi_pending[vpe_id] &= np.uint16(~(1 << vintid) & 0xFFFF)
        else:
            self.vsgi_config[vpe_id, vintid] = (priority, group, enable)

    def default_doorbell_of(self, vpe_id: int) -> int:
        return int(self.default_doorbell[vpe_id])

    # -- delivery -------------------------------------------------------------------

    def _ring(self, cpu: int, pintid: int) -> None:
        """Make a doorbell pending on `cpu` through the physical-LPI path (lost if
        1023, beyond the LPI limit or with EnableLPIs = 0: C13)."""
        lpi = self.lpi
        if pintid != C.NO_DOORBELL and pintid < lpi.limit and lpi.enabled_array[cpu]:
            lpi.set_lpi(cpu, pintid)

    def _ring_default_doorbell(self, vpe_id: int) -> None:
        """GICv4.1: an enabled interrupt became pending for a non-resident vPE."""
        if self.doorbell_armed[vpe_id]:
            self.doorbell_armed[vpe_id] = False
            self._ring(int(self.vpe_cpu[vpe_id]), int(self.default_doorbell[vpe_id]))

    def invalidate_configuration(self, vpe_id: int) -> None:
        """An invalidation of vPE `vpe_id`'s vLPI configuration: GICv4.1
        GICR_INVLPIR / GICR_INVALLR with V = 1, VINVALL, INV of a virtual ITE.

        vLPI configuration bytes are read from guest memory when used, never
        cached, so no state changes; every CPU is marked stale so that the
        signalling after it looks again and sees a configuration byte the
        guest rewrote (an enabled vLPI, a new priority) before this
        invalidation.
        """
        self._changed()

    def resident_cpu(self, vpe_id: int) -> int | None:
        """The CPU whose cache holds the vPE: the CPU its entry names, if resident
        there (v4.0: same VPT address, v4.1: same vPEID); None otherwise (C14)."""
        cpu = int(self.vpe_cpu[vpe_id])
        if not self.resident[cpu]:
            return None
        if self.is_v41:
            return cpu if self.resident_vpe[cpu] == vpe_id else None
        return cpu if self.resident_vpt[cpu] == self.vpt_addr[vpe_id] else None

    def deliver(self, vpe_id: int, vintid: int, doorbell: int) -> int:
        """Make vLPI `vintid` pending for vPE `vpe_id`; returns a `VirtualStatus` value."""
        self.version += 1
        if not self.vpe_mapped[vpe_id]:
            return VirtualStatus.VIRTUAL_NO_VPE
        if not LPI_FIRST_INTID <= vintid < self.vintid_limit(vpe_id):
            return VirtualStatus.VIRTUAL_INTID_OUT_OF_RANGE
        cpu = self.resident_cpu(vpe_id)
        if cpu is not None:
            if vintid >= self.resident_limit[cpu]:
                return VirtualStatus.VIRTUAL_INTID_OUT_OF_RANGE
            self._cached_pending[cpu][vintid] = True
            self.stale[cpu] = True
            return VirtualStatus.VIRTUAL
        self._vpt_bit(int(self.vpt_addr[vpe_id]), vintid, True)
        self._ring(int(self.vpe_cpu[vpe_id]), doorbell)
        if self.is_v41 and self._vlpi_config(int(self.vconf_addr[vpe_id]), vintid) & 1:
            self._ring_default_doorbell(vpe_id)
        return VirtualStatus.VIRTUAL

    def take(self, vpe_id: int, vintid: int) -> bool:
        """Clear vLPI `vintid` of vPE `vpe_id`; whether it was pending (no effect
        for an unmapped vPE or a vINTID out of range)."""
        self.version += 1
        if not self.vpe_mapped[vpe_id] or not LPI_FIRST_INTID <= vintid < self.vintid_limit(
                vpe_id):
            return False
        cpu = self.resident_cpu(vpe_id)
        if cpu is None:
            return self._vpt_bit(int(self.vpt_addr[vpe_id]), vintid, False)
        if vintid >= self.resident_limit[cpu]:
            return False
        self.stale[cpu] = True
        pending = self._cached_pending[cpu]
        was_pending = bool(pending[vintid])
        pending[vintid] = False
        self._cached_taken[cpu][vintid] = True
        return was_pending

    def move(self, old_vpe: int, new_vpe: int, vintid: int, doorbell: int) -> None:
        """VMOVI's pending move (checked): unless both vPEs share a VPT (C10), a
        pending vINTID leaves the old vPE and is delivered to the new one (C11)."""
        if self.vpt_addr[old_vpe] != self.vpt_addr[new_vpe] and self.take(old_vpe, vintid):
            self.deliver(new_vpe, vintid, doorbell)

    def write_sgir(self, value: int) -> None:
        """GITS_SGIR (GICv4.1): make vSGI vINTID pending for vPEID (ignored if unmapped)."""
        self._changed()
        if not self.is_v41:
            return
        vpe_id = R.GITS_SGIR_LAYOUT["vPEID"].extract(value)
        vintid = R.GITS_SGIR_LAYOUT["vINTID"].extract(value)
        if not self.vpe_mapped[vpe_id]:
            return
        self.vsgi_pending[vpe_id] |= np.uint16(1 << vintid)
        if self.vsgi_config[vpe_id, vintid, 2] and self.resident_cpu(vpe_id) is None:
            self._ring_default_doorbell(vpe_id)

    # -- the VLPI frame ----------------------------------------------------------------

    def vpe_config_slot(self, cpu: int, vpe_id: int) -> int | None:
        """GICv4.1: guest address of vPEID's entry in the vPE Configuration table
        `cpu`'s GICR_VPROPBASER describes, or None (Valid = 0, beyond Size, an
        invalid level-1 descriptor, outside guest memory)."""
        return self.config_slot(int(self.vpropbaser[cpu]), vpe_id)

    def config_slot(self, value: int, vpe_id: int) -> int | None:
        """`vpe_config_slot` for a GICR_VPROPBASER (v4.1) `value`."""
        if not 0 <= vpe_id < VPE_SPACE or not _VPROP41["Valid"].extract(value):
            return None
        page = _PAGE_BYTES[_VPROP41["Page_Size"].extract(value)]
        entry_bytes = (_VPROP41["Entry_Size"].extract(value) + 1) * 8
        base = value & _VPROP41["Physical_Address"].mask
        table_bytes = (_VPROP41["Size"].extract(value) + 1) * page
        mem = self.memory
        if not _VPROP41["Indirect"].extract(value):
            if vpe_id >= table_bytes // entry_bytes:
                return None
            entry = base + vpe_id * entry_bytes
        else:
            per_page = page // entry_bytes
            if vpe_id // per_page >= table_bytes // 8:
                return None
            descriptor_addr = base + (vpe_id // per_page) * 8
            if not mem.contains(descriptor_addr, 8):
                return None
            descriptor = mem.read_u64(descriptor_addr)
            if not descriptor & _L1_VALID:
                return None
            entry = (descriptor & _L1_ADDRESS & ~(page - 1)) + (vpe_id % per_page) * entry_bytes
        return entry if mem.contains(entry, entry_bytes) else None

    def read_vpropbaser(self, cpu: int) -> int:
        return int(self.vpropbaser[cpu])

    def write_vpropbaser(self, cpu: int, value: int) -> None:
        """GICR_VPROPBASER (64-bit value).  v4.0: stored as written (QEMU); v4.1:
        the layout's fields, Entry_Size reads 0 (read-only)."""
        self._changed(cpu)
        self.vpropbaser[cpu] = value & _VPROP41_KEPT if self.is_v41 else value

    def read_vpendbaser(self, cpu: int) -> int:
        """GICR_VPENDBASER as a guest reads it (Dirty always 0, C22; v4.1 with
        Valid = 0: Doorbell = 1 while the default doorbell it requested for
        the vPE named by vPEID is still outstanding, as the reference)."""
        value = int(self.vpendbaser[cpu])
        if self.is_v41 and not _VPEND41["Valid"].extract(value) \
                and _VPEND41["Doorbell"].extract(value):
            vpe_id = _VPEND41["vPEID"].extract(value)
            outstanding = bool(self.vpe_mapped[vpe_id] and self.doorbell_armed[vpe_id])
            value = _VPEND41["Doorbell"].deposit(value, int(outstanding))
        return value

    def write_vpendbaser(self, cpu: int, value: int) -> None:
        """GICR_VPENDBASER (64-bit value; the caller merged a 32-bit half).

        Valid 0 -> 1 makes a vPE resident and loads its cache from the VPT;
        1 -> 0 writes the cache back and computes PendingLast; any write while
        Valid stays 1 is ignored (C20)."""
        self._changed(cpu)
        layout = _VPEND41 if self.is_v41 else _VPEND40
        valid, pending_last = layout["Valid"], layout["PendingLast"]
        new = value & (_VPEND41_KEPT if self.is_v41 else _VPEND40_KEPT)
        old = int(self.vpendbaser[cpu])
        if valid.extract(old):
            if valid.extract(new):
                return
            self.vpendbaser[cpu] = self._deschedule(cpu, new)
        elif valid.extract(new):
            if self._schedule(cpu, new):
                new = pending_last.deposit(new, 1)                      # C21
                if self.is_v41:
                    new = layout["Doorbell"].deposit(new, 0)
                self.vpendbaser[cpu] = new
        else:
            self.vpendbaser[cpu] = new

    def _schedule(self, cpu: int, value: int, restoring: bool = False) -> bool:
        """Valid 0 -> 1: make the vPE resident on `cpu`; False if the write is
        ignored (v4.1: no vPE Configuration table slot or the vPE unmapped).
        ``restoring`` (a restore re-making a saved residency): the v4.1 vPE is
        mapped (the caller checked), its vPE Configuration table slot is not
        looked at and its armed default doorbell is left as restored."""
        if self.is_v41:
            vpe_id = _VPEND41["vPEID"].extract(value)
            if not restoring and (not self.vpe_mapped[vpe_id]
                                  or self.vpe_config_slot(cpu, vpe_id) is None):
                return False
            if not restoring:
                self.doorbell_armed[vpe_id] = False
            vpt, limit = int(self.vpt_addr[vpe_id]), self.vintid_limit(vpe_id)
            self.resident_vpe[cpu] = vpe_id
            self.resident_config[cpu] = self.vconf_addr[vpe_id]
        else:
            idbits = _VPROP40["IDbits"].extract(int(self.vpropbaser[cpu]))
            vpt = value & _VPEND40["Physical_Address"].mask
            limit = 1 << min(idbits + 1, self.intid_bits)
            self.resident_vpe[cpu] = -1
        self.resident[cpu] = True
        self.resident_vpt[cpu] = vpt
        self.resident_limit[cpu] = limit
        self._cached_pending[cpu] = self._vpt_bits(vpt, limit)
        self._cached_taken[cpu] = np.zeros(1 << self.intid_bits, bool)
        return True

    def _config_addr(self, cpu: int) -> int:
        """Guest address of vINTID 8192's configuration byte for `cpu`'s resident vPE."""
        if self.is_v41:
            return int(self.resident_config[cpu])
        return int(self.vpropbaser[cpu]) & _VPROP40["Physical_Address"].mask

    def _deschedule(self, cpu: int, value: int) -> int:
        """Valid 1 -> 0: write the cache back; the value VPENDBASER now holds."""
        layout = _VPEND41 if self.is_v41 else _VPEND40
        vpt = int(self.resident_vpt[cpu])
        pending = self._cached_pending.pop(cpu)
        taken = self._cached_taken.pop(cpu)
        self.resident[cpu] = False
        for vintid in np.flatnonzero(taken & ~pending).tolist():
            self._vpt_bit(vpt, vintid, False)
        pending_ids = np.flatnonzero(pending).tolist()
        for vintid in pending_ids:
            self._vpt_bit(vpt, vintid, True)
        config_addr = self._config_addr(cpu)
        pending_last = any(self._vlpi_config(config_addr, vintid) & 1 for vintid in pending_ids)
        if self.is_v41:
            vpe_id = int(self.resident_vpe[cpu])
            mapped = bool(self.vpe_mapped[vpe_id])
            if mapped:
                pending_last = pending_last or any(
                    self.vsgi_pending[vpe_id] >> n & 1 and self.vsgi_config[vpe_id, n, 2]
                    for n in range(NUM_VSGIS))
            armed = (mapped and layout["Doorbell"].extract(value)
                     and not layout["PendingLast"].extract(value) and not pending_last)
            if armed:
                self.doorbell_armed[vpe_id] = True
            value = layout["Doorbell"].deposit(value, int(bool(armed)))
        return layout["PendingLast"].deposit(value, int(bool(pending_last)))

    def write_vsgir(self, cpu: int, value: int) -> None:
        """GICR_VSGIR (GICv4.1): start a vSGI pending-state query for vPEID."""
        self.vsgir[cpu] = value & R.GICR_VSGIR_LAYOUT["vPEID"].mask

    def read_vsgipendr(self, cpu: int) -> int:
        """GICR_VSGIPENDR (GICv4.1): Busy = 0, the queried vPE's pending vSGIs (0
        if it is not mapped)."""
        vpe_id = int(self.vsgir[cpu])
        pending = int(self.vsgi_pending[vpe_id]) if self.vpe_mapped[vpe_id] else 0
        return R.GICR_VSGIPENDR_LAYOUT.encode(Pending=pending, Busy=0)

    # -- the resident vPE, CPU side ----------------------------------------------------

    def pending_virtual(self, cpu: int) -> list[int] | None:
        """Sorted vINTIDs cached for the vPE resident on `cpu` (None: none resident)."""
        if not self.resident[cpu]:
            return None
        return np.flatnonzero(self._cached_pending[cpu]).tolist()

    def _candidates(self, cpu: int) -> tuple[np.ndarray, np.ndarray]:
        """(INTIDs, priorities) of the enabled pending interrupts of the vPE
        resident on `cpu`: cached vLPIs whose configuration byte (v4.0: at
        VPROPBASER.PA + vINTID - 8192, v4.1: at the vPE's VCONF_addr; 0 outside
        guest memory) has Enable set, priority = byte & 0xFC; GICv4.1 enabled
        pending vSGIs with their VSGI priority.  The caller checked residency."""
        vintids = np.flatnonzero(self._cached_pending[cpu])
        mem = self.memory
        addresses = np.uint64(self._config_addr(cpu)) + (vintids - LPI_FIRST_INTID).astype(
            np.uint64)
        inside = (addresses >= np.uint64(mem.base)) & (addresses < np.uint64(mem.end))
        config = np.zeros(vintids.shape[0], np.uint8)
        config[inside] = mem.array[(addresses[inside] - np.uint64(mem.base)).astype(np.intp)]
        enabled = (config & 1).astype(bool)
        intids, priorities = vintids[enabled], (config[enabled] & 0xFC).astype(np.int64)
        vpe_id = int(self.resident_vpe[cpu])
        if self.is_v41 and self.vpe_mapped[vpe_id]:
            pending = int(self.vsgi_pending[vpe_id])
            sgis = [n for n in range(NUM_VSGIS)
                    if pending >> n & 1 and self.vsgi_config[vpe_id, n, 2]]
            if sgis:
                intids = np.concatenate((np.array(sgis, np.int64), intids))
                priorities = np.concatenate((self.vsgi_config[vpe_id, sgis, 0].astype(np.int64),
                                             priorities))
        return intids, priorities

    def highest_pending(self, cpu: int, priority_mask: int = 0xFF) -> tuple[int, int] | None:
        """``(intid, priority)`` of the best enabled pending interrupt of the vPE
        resident on `cpu` (`_candidates`) whose priority is strictly below
        `priority_mask`: lowest priority value, ties to the lowest INTID (the
        reference model's `acknowledge_virtual` rule, as physical LPIs).  None
        when no vPE is resident or nothing qualifies.  Changes nothing."""
        if not self.resident[cpu]:
            return None
        intids, priorities = self._candidates(cpu)
        allowed = priorities < priority_mask
        if not allowed.any():
            return None
        intids, priorities = intids[allowed], priorities[allowed]
        best = int(np.lexsort((intids, priorities))[0])
        return int(intids[best]), int(priorities[best])

    def acknowledge(self, cpu: int, priority_mask: int = 0xFF) -> int | None:
        """Take the interrupt `highest_pending` names: a vSGI's pending bit is
        cleared, a vLPI leaves the cache (its VPT bit is cleared at write-back).
        Returns its INTID, or None."""
        best = self.highest_pending(cpu, priority_mask)
        if best is None:
            return None
        self._changed(cpu)
        intid = best[0]
        if intid < NUM_VSGIS:
            vpe_id = int(self.resident_vpe[cpu])
            self.vsgi_pending[vpe_id] &= np.uint16(~(1 << intid) & 0xFFFF)
        else:
            self._cached_pending[cpu][intid] = False
            self._cached_taken[cpu][intid] = True
        return intid

    # -- save / restore (its-core-rev1, abi/rev1.py) -------------------------------------

    def resident_range(self, cpu: int) -> tuple[int, int] | None:
        """(VPT address, first vINTID not cached) of the vPE resident on `cpu`,
        or None: the VPT bytes [8192 / 8, limit / 8) its cache stands for."""
        if not self.resident[cpu]:
            return None
        return int(self.resident_vpt[cpu]), int(self.resident_limit[cpu])

    def cached_bits(self, cpu: int, start: int, end: int) -> np.ndarray:
        """The resident vPE's cached pending bits for vINTIDs [start, end) (a view)."""
        return self._cached_pending[cpu][start:end]

    def write_back_cache(self, cpu: int) -> None:
        """Save: the resident vPE's cached pending state -> its VPT, exactly
        (every bit of the cached range [8192, limit) set or cleared as the cache
        says); the vPE stays resident and its cache unchanged.  The caller
        checked that the range lies inside guest memory."""
        vpt, limit = self.resident_range(cpu)
        first, end = LPI_FIRST_INTID // 8, limit // 8
        if end <= first:
            return
        bits = self._cached_pending[cpu][first * 8:end * 8]
        self.memory.view(vpt + first, end - first)[:] = np.packbits(bits, bitorder="little")

    def load_vpes(self, vpe_ids: np.ndarray, cpus: np.ndarray, vpt_addrs: np.ndarray,
                  vpt_sizes: np.ndarray, vconf_addrs: np.ndarray, default_doorbells: np.ndarray,
                  armed: np.ndarray, vsgi_pending: np.ndarray | None,
                  vsgi_config: np.ndarray | None) -> None:
        """Restore: map the (checked) vPEs `vpe_ids` with these attributes, one
        array row per vPE (v4.1: `vsgi_pending` uint16, `vsgi_config`
        (n, 16, 3) uint8 (priority, group, enable)); other vPEs are not touched."""
        self._changed()
        self.vpe_mapped[vpe_ids] = True
        self.vpe_cpu[vpe_ids] = cpus
        self.vpt_addr[vpe_ids] = vpt_addrs
        self.vpt_size[vpe_ids] = vpt_sizes
        self.vconf_addr[vpe_ids] = vconf_addrs
        self.default_doorbell[vpe_ids] = default_doorbells
        self.doorbell_armed[vpe_ids] = armed
        if self.is_v41:
            self.vsgi_pending[vpe_ids] = vsgi_pending
            self.vsgi_config[vpe_ids] = vsgi_config

    def load_registers(self, vpropbaser: list[int], vpendbaser: list[int],
                       vsgir: list[int] | None) -> None:
        """Restore: each CPU's VLPI registers as saved (checked by the caller:
        values a write keeps, and for a v4.1 VPENDBASER with Valid = 1 a mapped
        vPE).  A CPU's current residency is dropped (no write-back); a saved
        Valid = 1 makes the vPE resident again, its cache loaded from the VPT
        as a 0 -> 1 write loads it (the vPE Configuration table is not looked
        at: the saved residency stands), and the register then holds the
        saved value (PendingLast as saved)."""
        self._changed()
        valid = (_VPEND41 if self.is_v41 else _VPEND40)["Valid"]
        for cpu in range(self.num_cpus):
            self.resident[cpu] = False
            self._cached_pending.pop(cpu, None)
            self._cached_taken.pop(cpu, None)
            self.vpropbaser[cpu] = vpropbaser[cpu]
            if vsgir is not None:
                self.vsgir[cpu] = vsgir[cpu]
            if valid.extract(vpendbaser[cpu]):
                self._schedule(cpu, vpendbaser[cpu], restoring=True)
            self.vpendbaser[cpu] = vpendbaser[cpu]

    # -- host snapshots (abi/snapshot_format.py, "redistributors.virtual" keys) ---------

    def snapshot_arrays(self) -> dict:
        """The whole state as fresh arrays, by snapshot key (without the
        ``redistributors.`` prefix): the rows of the vPEIDs whose attributes
        are not all as at reset, the per-CPU VLPI registers and residency
        (zero / -1 on CPUs without a resident vPE), the caches packed in the
        VPT layout."""
        touched = (self.vpe_mapped | (self.vpe_cpu != 0) | (self.vpt_addr != 0)
                   | (self.vpt_size != 0) | (self.vconf_addr != 0)
                   | (self.default_doorbell != C.NO_DOORBELL) | self.doorbell_armed)
        if self.is_v41:
            touched |= (self.vsgi_pending != 0) | self.vsgi_config.any(axis=(1, 2))
        rows = np.flatnonzero(touched)
        resident = self.resident
        pending = np.zeros((self.num_cpus, (1 << self.intid_bits) // 8), np.uint8)
        taken = np.zeros_like(pending)
        for cpu in np.flatnonzero(resident).tolist():
            pending[cpu] = np.packbits(self._cached_pending[cpu], bitorder="little")
            taken[cpu] = np.packbits(self._cached_taken[cpu], bitorder="little")
        return {
            "vpe_id": rows.astype(np.uint16),
            "vpe_mapped": self.vpe_mapped[rows], "vpe_cpu": self.vpe_cpu[rows],
            "vpt_addr": self.vpt_addr[rows], "vpt_size": self.vpt_size[rows],
            "vconf_addr": self.vconf_addr[rows],
            "default_doorbell": self.default_doorbell[rows],
            "doorbell_armed": self.doorbell_armed[rows],
            "vsgi_pending": (self.vsgi_pending[rows] if self.is_v41
                             else np.zeros(rows.size, np.uint16)),
            "vsgi_config": (self.vsgi_config[rows] if self.is_v41
                            else np.zeros((rows.size, NUM_VSGIS, 3), np.uint8)),
            "GICR_VPROPBASER": self.vpropbaser.copy(), "GICR_VPENDBASER": self.vpendbaser.copy(),
            "GICR_VSGIR": self.vsgir.copy(),
            "resident_vpt": np.where(resident, self.resident_vpt, 0),
            "resident_limit": np.where(resident, self.resident_limit, 0),
            "resident_vpe": np.where(resident, self.resident_vpe, -1),
            "resident_config": np.where(resident, self.resident_config, 0),
            "cached_pending": pending, "cached_taken": taken,
        }

    def load_snapshot(self, arrays: dict) -> None:
        """Set the whole state from `snapshot_arrays`-shaped arrays (checked by
        the snapshot validator): every other vPEID as at reset."""
        self._changed()
        rows = arrays["vpe_id"].astype(np.intp)
        self.vpe_mapped[:] = False
        self.vpe_cpu[:] = 0
        self.vpt_addr[:] = 0
        self.vpt_size[:] = 0
        self.vconf_addr[:] = 0
        self.default_doorbell[:] = C.NO_DOORBELL
        self.doorbell_armed[:] = False
        self.vpe_mapped[rows] = arrays["vpe_mapped"]
        self.vpe_cpu[rows] = arrays["vpe_cpu"]
        self.vpt_addr[rows] = arrays["vpt_addr"]
        self.vpt_size[rows] = arrays["vpt_size"]
        self.vconf_addr[rows] = arrays["vconf_addr"]
        self.default_doorbell[rows] = arrays["default_doorbell"]
        self.doorbell_armed[rows] = arrays["doorbell_armed"]
        if self.is_v41:
            self.vsgi_pending[:] = 0
            self.vsgi_config[:] = 0
            self.vsgi_pending[rows] = arrays["vsgi_pending"]
            self.vsgi_config[rows] = arrays["vsgi_config"]
        self.vpropbaser[:] = arrays["GICR_VPROPBASER"]
        self.vpendbaser[:] = arrays["GICR_VPENDBASER"]
        self.vsgir[:] = arrays["GICR_VSGIR"]
        valid = (_VPEND41 if self.is_v41 else _VPEND40)["Valid"].mask
        self.resident[:] = (self.vpendbaser & np.uint64(valid)) != 0
        self.resident_vpt[:] = arrays["resident_vpt"]
        self.resident_limit[:] = arrays["resident_limit"]
        self.resident_vpe[:] = arrays["resident_vpe"]
        self.resident_config[:] = arrays["resident_config"]
        self._cached_pending.clear()
        self._cached_taken.clear()
        for cpu in np.flatnonzero(self.resident).tolist():
            self._cached_pending[cpu] = np.unpackbits(
                arrays["cached_pending"][cpu], bitorder="little").astype(bool)
            self._cached_taken[cpu] = np.unpackbits(
                arrays["cached_taken"][cpu], bitorder="little").astype(bool)

    def vpe_state(self) -> dict:
        """The mapped vPEs as the reference model's snapshot gives them: vPEID ->
        (cpu, vpt_addr, vpt_size, vconf_addr, default_doorbell)."""
        return {vpe_id: (int(self.vpe_cpu[vpe_id]), int(self.vpt_addr[vpe_id]),
                         int(self.vpt_size[vpe_id]), int(self.vconf_addr[vpe_id]),
                         int(self.default_doorbell[vpe_id]))
                for vpe_id in np.flatnonzero(self.vpe_mapped).tolist()}
