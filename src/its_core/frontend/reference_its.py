"""Reference model of the ITS front end's command and LPI semantics: plain Python.

`ReferenceITS` is the oracle the front end (`its_core.ITS`) is tested
against.  It follows ``docs/front-end.md`` line by line and is deliberately
naive: no MMIO, no command queue, no caching of its own.  State is set through
plain attributes and a few methods:

* ``baser0`` / ``baser1`` -- the GITS_BASER0/1 values, used only for the
  device-table and collection-table slot checks (level-1 descriptors of an
  indirect device table are read from guest memory on every check);
* ``propbaser`` -- the one GICR_PROPBASER value, shared by every CPU;
* ``pendbaser[cpu]`` -- GICR_PENDBASER per CPU, PTZ (bit 62) included until the
  next `enable_lpis` of that CPU consumes it;
* ``enabled`` -- GITS_CTLR.Enabled, only consulted by `msi`;
* ``lpis_enabled[cpu]`` -- GICR_CTLR.EnableLPIs, changed by `enable_lpis` /
  `disable_lpis`.

`write_invlpir` / `write_invallr` are the direct invalidation registers
(GICR_INVLPIR, GICR_INVALLR; 64-bit writes): ignored while the CPU's
EnableLPIs is 0, INVLPIR also for an INTID [31:0] that is not an LPI below
the limit; otherwise the byte (INVALLR: every byte below the limit, as an
enable loads them) is reloaded into the configuration cache.

`execute` applies one 32-byte command and returns 0 or its error code;
`execute_slot` does the same for a queue slot in guest memory (reporting
``E_ITS_CMD_READ_FAULT`` when it is outside).  Mappings are kept in a
`ReferenceTables`; pending state is one ``set`` of INTIDs per CPU; the
configuration cache is one dict INTID -> config byte shared by every CPU
(an INTID never loaded reads as 0: disabled, priority 0).

GICv4 (``gic_version="4.0"`` or ``"4.1"``; ``"3"``, the default, is exactly
the GICv3 model above and treats every GICv4 command as unknown)
--------------------------------------------------------------------------

Facts and corner-case numbers (C1..C25) are gicv4-digest's (§ = its
sections).  Policy: where the digests leave a choice, QEMU 7.2 for GICv4.0
and the architecture as Linux's driver uses it for GICv4.1; where QEMU 7.2
deviates from the architecture, the architecture.  One choice a line:

State.  ``baser2`` (GITS_BASER2, Type vPEs, `write_baser2`) gives each vPEID a
slot exactly as BASER0 gives DeviceIDs one (flat or two-level, the entry
inside guest memory; entries of `VPE_ENTRY_BYTES`: 8 bytes on v4.0, 32 on
v4.1), and also needs Valid = 1 (§2.1:
Valid = 0 means no entries).  The vPE table itself is model state
(``vpes``: vPEID -> `VPE`), not VTE bytes in guest memory (§2.2's encoding is
QEMU's, the content is IMPLEMENTATION DEFINED).  Virtual ITEs are model
state beside the physical ones (``virtual_events``: (DeviceID, EventID) ->
(vINTID, vPEID, doorbell)); DISCARD zeroes an ITE slot as for a physical ITE.
Per CPU: ``vpropbaser[cpu]``, ``vpendbaser[cpu]`` and the resident vPE's
cached pending state (`Resident`).

Outcomes.  Every QEMU "skip" of §3.3/§3.4 is a returned error code
(``commands.E_ITS_V*``, `commands.GICV4_ERROR_NAMES`); QEMU's "stall" on a
table read/write fault becomes the slot check failing (the ``*_VPEID_OOR`` /
``*_ID_OOR`` codes), as for physical tables here.  Check order = QEMU's
(§3.3), with this model's existing "already mapped" check where MAPTI has it.

* VMAPP: VPT_size > GITS_TYPER.ID_bits (intid_bits - 1) -> VPT_SIZE_OOR,
  also for V = 0 and for v4.1's 8-bit field (C4); RDbase >= CPUs ->
  RDBASE_OOR only when V = 1 (C3); (v4.1, V = 1) Default_Doorbell neither
  1023 nor an LPI below 2**intid_bits -> DOORBELL_OOR; no vPE slot ->
  VPEID_OOR.  V = 0 forgets the vPE and leaves ITEs naming it (C1); V = 1 on
  a mapped vPE overwrites its RD/VPT fields, keeps its vSGI state, moves no
  pending state (C2); allowed while resident, the RD's cached state is
  untouched (C16).  v4.1 Alloc and PTZ are accepted and ignored (Linux
  always writes PTZ = 0; the VPT is read from guest memory either way).
* VMAPTI / VMAPI: unmapped device -> UNMAPPED_DEVICE; EventID beyond the ITT
  or its slot outside memory -> ID_OOR; vINTID (VMAPI: the EventID) not in
  [8192, 2**intid_bits) -> VIRTUALID_OOR; doorbell neither 1023 nor in that
  range -> DOORBELL_OOR (C8); an existing ITE, physical or virtual ->
  ID_ALREADY_MAPPED (C7: QEMU overwrites; this model refuses, as it refuses
  MAPTI over a mapping; MAPTI over a virtual ITE -> E_ITS_MAPTI_ID_ALREADY_MAPPED);
  no vPE slot -> VPEID_OOR.  Not checked (QEMU): that the vPE is mapped (C5)
  or that vINTID fits its VPT_size (C6) -- such deliveries are dropped.
* VMOVI: D = 1 with a bad doorbell -> DOORBELL_OOR before any lookup (C8);
  no ITE -> UNMAPPED_INTERRUPT; physical ITE -> NOT_VIRTUAL; old or new vPE
  not mapped -> UNMAPPED_VPE; vINTID beyond either VPT_size ->
  VIRTUALID_OOR (C6).  D = 0 keeps the doorbell (C9).  Same VPT address (same
  vPE, or two vPEs sharing one VPT, C10): only the ITE changes.  Otherwise a
  pending vINTID is taken from the old vPE (resident cache or VPT bit) and
  made pending on the new one as a translation is: resident cache, or VPT bit
  plus the ITE's (new) doorbell (C11).
* VMOVP: RDbase >= CPUs -> RDBASE_OOR (QEMU skips silently); vPE not mapped ->
  UNMAPPED_VPE; else only the vPE's RD changes, no pending state moves, also
  while resident (C15, C16).  SequenceNumber / ITSList ignored (one ITS,
  GITS_TYPER.VMOVP = 1).  v4.1 DB = 1 also sets Default_Doorbell (Linux always
  sends it), checked like VMAPP's -> DOORBELL_OOR.
* VSYNC: always succeeds, any vPEID (C18).  VINVALL: vPE not mapped ->
  UNMAPPED_VPE, else nothing to do: vLPI configuration bytes are read from
  guest memory when used (acknowledge, PendingLast, the v4.1 default
  doorbell), never cached, so VINVALL / INV on a virtual ITE change no state
  (C17 holds trivially).  INVDB (v4.1): vPE not mapped -> UNMAPPED_VPE, else
  reloads the default doorbell's configuration byte into the physical
  configuration cache (as INV does for a physical LPI).
* VSGI (v4.1): vPE not mapped -> UNMAPPED_VPE; Clear = 1 clears the vSGI's
  pending bit only, Clear = 0 sets {priority, group, enable} only (§3.3).
  On a v4.0 ITS, VSGI and INVDB are unknown commands (C19, QEMU).
* Physical commands on a virtual ITE (§3.4): INT marks the vLPI pending like
  a translation, CLEAR clears it (never a doorbell); both succeed with no
  effect when the vPE is unmapped or the vINTID is out of range (QEMU).
  DISCARD clears as CLEAR and always removes the ITE (C1: QEMU 7.2 keeps the
  ITE when the vPE is unmapped; the architecture removes the mapping: chosen).
  INV succeeds, no state.  MOVI -> E_ITS_MOVI_VIRTUAL_INTERRUPT (QEMU skip).
  MAPD (remap or V = 0) drops the device's virtual ITEs with its physical
  ones; vLPI pending state (VPT bits, resident caches) is left alone.
  MOVALL and INVALL touch physical LPIs only.
* Delivery of a vLPI (translation, INT, VMOVI's move; §4.2): the ITE's vPE
  not mapped -> dropped, `VirtualStatus.VIRTUAL_NO_VPE` (C5); vINTID >=
  2**(VPT_size + 1) -> dropped, `VirtualStatus.VIRTUAL_INTID_OUT_OF_RANGE`
  (C6).  The vPE is resident iff the CPU named by its vPE entry has
  VPENDBASER.Valid = 1 for it (v4.0: VPENDBASER.PA = its VPT address, v4.1:
  VPENDBASER.vPEID = its vPEID); resident elsewhere counts as not resident
  (C14).  Resident: added to that CPU's cached pending set, unless (v4.0)
  vINTID >= 2**min(VPROPBASER.IDbits + 1, intid_bits), which drops it (C23).
  Not resident: bit vINTID % 8 of byte VPT + vINTID // 8 is set in guest
  memory (any VPT_size, C23) and the ITE's doorbell, unless 1023, is made
  pending on the vPE's CPU through the physical path -- on every delivery,
  already-set bit or disabled vLPI alike (C12, QEMU), lost if that CPU has
  EnableLPIs = 0 or the doorbell is beyond PROPBASER's range (C13).  GICv4.1
  has per-vLPI doorbells too (GITS_TYPER.nID = 0; Linux uses 1023) and the
  default doorbell: rung once, for an *enabled* vLPI or vSGI, after a
  deschedule that requested it (§5.2 Doorbell, architecture).
* Residency (`write_vpendbaser`, §5.4): the written value keeps the layout's
  fields (Dirty and RES0 read 0; C22: Dirty always 0, synchronous).  Valid
  1 -> 1 with any change: the whole write is ignored (C20, QEMU, also for a
  32-bit half); identical: nothing.  0 -> 1: PendingLast reads 1 and IDAI is
  ignored (C21, QEMU); the resident cache is loaded from the VPT bits
  [8192, limit) in guest memory, limit = 2**min(VPROPBASER.IDbits + 1,
  intid_bits) for v4.0, 2**(VPT_size + 1) of the vPE for v4.1.  v4.1 0 -> 1
  needs VPROPBASER.Valid = 1, the vPEID inside the table VPROPBASER
  describes and the vPE mapped, else the write is ignored (UNPREDICTABLE).
  1 -> 0: the cache is written back to the VPT (bits of pending vINTIDs set,
  bits of vINTIDs acknowledged/cleared/moved while resident cleared, others
  untouched) and PendingLast := 1 iff an enabled vLPI (v4.1: or an enabled
  vSGI) is still pending (§5.2, QEMU).  v4.1: a 1 -> 0 write with
  Doorbell = 1 and PendingLast = 0 arms the default doorbell iff the
  computed PendingLast is 0 (Linux: "if PendingLast reads back 0, a doorbell
  is guaranteed"); while Valid = 0, Doorbell then reads 1 until it rings,
  the vPE is scheduled or unmapped (the request is no longer outstanding).
* `write_vpropbaser`: v4.0 stored as written (QEMU, no masking, no effect
  until used: the vLPI configuration of the resident vPE is the byte at
  VPROPBASER.PA + vINTID - 8192).  v4.1: the layout's fields, Entry_Size
  reads 0 (one doubleword per vPE in the vPE Configuration table); the vLPI
  configuration of a v4.1 vPE is at its VMAPP VCONF_addr.
* Acknowledge (`acknowledge_virtual`): the enabled pending vLPI (v4.1: or
  vSGI) of the CPU's resident vPE with the lowest priority value (vLPI:
  config byte & 0xFC, unshifted, C24; vSGI: its VSGI priority), ties to the
  lowest INTID -- the physical `acknowledge` rule.  Group enables (v4.1
  VPENDBASER.vGrp0En/vGrp1En, the vSGI group) and the CPU interface's
  priority mask are the embedding machine's concern, as for physical LPIs:
  they are stored, not applied.  Taking it clears its
  pending state; EOI is not modelled (C25: the architecture, no EOIcount
  increment, is what the CPU interface must do; the digest has QEMU 7.2
  count one, the 7.2.22 stable release does not: tests/test_gicv4_qemu.py).
* vSGIs (v4.1, §6): per vPE, 16 pending bits and {priority, group, enable},
  independent of residency; reset on a first VMAPP, kept on remap.
  `write_sgir` (GITS_SGIR) sets one pending (vPE not mapped: ignored, a
  write-only register has no error) and rings an armed default doorbell if
  the vSGI is enabled and the vPE not resident.  `write_vsgir` /
  `read_vsgipendr`: the query completes at once (Busy = 0), any CPU answers.
* `msi` returns `VirtualStatus.VIRTUAL` for a delivered vLPI (TranslationStatus
  values are unchanged for physical ITEs); `virtual_ite` reads a virtual ITE;
  `translate` / `translation_status` see a virtual event as NO_MAPPING.
* Reset: drops vPEs and virtual ITEs, clears BASER2.Valid; redistributor
  state (VPROPBASER, VPENDBASER, resident caches) is kept, as for physical LPIs.
* GICR_INVLPIR / GICR_INVALLR V forms (GICv4.1, §5.1: V [63], vPEID
  [47:32]; Linux writes them to the RD the vPE is known on instead of INV /
  VINVALL): V = 1 names vINTID INTID [31:0] (INVALLR: every vLPI) of vPE
  vPEID.  Nothing is cached about vLPI configuration (see VINVALL), so the
  write changes no state, whatever the vPE (resident, not resident,
  unmapped), the INTID or EnableLPIs -- and it is never read as the
  physical form: no physical configuration byte is reloaded.  On GICv4.0
  and GICv3, V and vPEID are RES0: ignored, the write is the physical form.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from its_core.frontend import commands as C
from its_core.frontend import registers as R
from its_core.core._core import TranslationStatus
from its_core.frontend.guest_memory import GuestMemory
from its_core.validation import check_gic_version
from its_core.frontend.virtual import VirtualStatus
from its_core.core.reference import ICID_SPACE, LPI_FIRST_INTID, ReferenceTables

__all__ = ["ReferenceITS", "ITE_BYTES", "DTE_BYTES", "PTZ_BIT", "VPE_ENTRY_BYTES",
           "VirtualStatus", "VPE", "Resident"]

#: Bytes of one ITE by GIC version (GITS_TYPER.ITT_entry_size + 1): 8 on a
#: GICv3 ITS (KVM's rev0 ITE), 16 on a GICv4 one (room for the virtual ITE of
#: the its-core-rev1 save format).
ITE_BYTES = {"3": 8, "4.0": 16, "4.1": 16}
#: Bytes of one DTE and CTE (GITS_BASER0/1.Entry_Size = 7).
DTE_BYTES = 8
CTE_BYTES = 8
#: Bytes of one vPE table entry by GIC version (GITS_BASER2.Entry_Size + 1):
#: GICv4.0 QEMU's 8-byte VTE, GICv4.1 32 bytes (its-core-rev1's v4.1 VTE).
VPE_ENTRY_BYTES = {"4.0": 8, "4.1": 32}
#: GICR_PENDBASER.PTZ.
PTZ_BIT = 1 << 62
#: Level-1 descriptor Valid bit and address bits [51:12].
L1_VALID = 1 << 63
L1_ADDRESS = ((1 << 52) - 1) & ~0xFFF
#: Pending-table bytes below this one (INTIDs 0..8191) are never read.
PENDING_FIRST_BYTE = LPI_FIRST_INTID // 8
#: Number of vSGIs per vPE (GICv4.1).
NUM_VSGIS = 16

_PROP_ADDRESS = R.GICR_PROPBASER_LAYOUT["Physical_Address"].mask
_PROP_IDBITS = R.GICR_PROPBASER_LAYOUT["IDbits"]
_PEND_ADDRESS = R.GICR_PENDBASER_LAYOUT["Physical_Address"].mask
_BASER_VALID = R.GITS_BASER_LAYOUT["Valid"]
_BASER_INDIRECT = R.GITS_BASER_LAYOUT["Indirect"]
_VPROP40 = R.GICR_VPROPBASER_V40_LAYOUT
_VPROP41 = R.GICR_VPROPBASER_V41_LAYOUT
_VPEND40 = R.GICR_VPENDBASER_V40_LAYOUT
_VPEND41 = R.GICR_VPENDBASER_V41_LAYOUT
#: vPEID width of the commands (DW1[47:32]): 16 bits, as QEMU's vPE table.
_VPE_ID_BITS = C.GICV4_COMMAND_TABLE["VSYNC"].fields[0].field.width
#: VPROPBASER (v4.1) Page_Size code -> bytes (code 3 reserved: 64 KiB, as for BASERs).
_PAGE_BYTES = (4 << 10, 16 << 10, 64 << 10, 64 << 10)


_VPEND40_KEPT = R.GICR_VPENDBASER_V40_KEPT     # the bits a write keeps
_VPEND41_KEPT = R.GICR_VPENDBASER_V41_KEPT
_VPROP41_KEPT = R.GICR_VPROPBASER_V41_KEPT


@dataclass
class VPE:
    """One valid vPE table entry (VMAPP V = 1) and the vPE's GICv4.1 state."""

    #: RDbase: the processor number of the vPE's redistributor.
    cpu: int
    #: Virtual pending table address (64 KiB aligned) and VPT_size (vINTID bits - 1).
    vpt_addr: int
    vpt_size: int
    #: GICv4.1: the vLPI configuration table (VMAPP VCONF_addr) and default doorbell.
    vconf_addr: int = 0
    default_doorbell: int = C.NO_DOORBELL
    #: GICv4.1: a deschedule requested the default doorbell and it has not rung yet.
    doorbell_armed: bool = False
    #: GICv4.1: bit n = vSGI n pending.
    vsgi_pending: int = 0
    #: GICv4.1: per vSGI (priority, group, enable), from VSGI commands.
    vsgi_config: list = field(default_factory=lambda: [(0, 0, 0)] * NUM_VSGIS)

    @property
    def vintid_limit(self) -> int:
        """First vINTID beyond the VPT: 2**(VPT_size + 1)."""
        return 2 ** (self.vpt_size + 1)


@dataclass
class Resident:
    """The vPE resident on one CPU (GICR_VPENDBASER.Valid = 1) and its cached state."""

    #: VPT address, captured when Valid went 0 -> 1 (written back there).
    vpt_addr: int
    #: First vINTID the cache holds (bits [8192, limit) were loaded).
    limit: int
    #: GICv4.1: the resident vPEID; None for GICv4.0 (identified by VPT address).
    vpe_id: int | None = None
    #: GICv4.1: the vPE's vLPI configuration table; None for v4.0 (VPROPBASER's).
    config_addr: int | None = None
    #: Pending vINTIDs.
    pending: set = field(default_factory=set)
    #: vINTIDs taken out of `pending` while resident (acknowledged, cleared,
    #: moved): their VPT bits are cleared at write-back unless pending again.
    taken: set = field(default_factory=set)


class ReferenceITS:
    """Pure-Python model of the front end's commands, doorbell and LPI state.

    Parameters
    ----------
    mem : GuestMemory
        Guest memory: tables are read from it and DTE/ITE zeroing is written to it.
    num_cpus : int
        Number of redistributors (valid MAPC / MOVALL targets).
    device_bits, event_bits, intid_bits : int
        As for `its_core.ITS`.
    num_collections : int, default 65536
        ICIDs below this are candidates for a collection-table slot.
    gic_version : {"3", "4.0", "4.1"}, default "3"
        "3": the GICv3 model, every GICv4 command unknown.  "4.0" / "4.1":
        the GICv4 commands, layouts and state the module docstring lists.
    """

    def __init__(self, mem: GuestMemory, num_cpus: int, device_bits: int = 16,
                 event_bits: int = 16, intid_bits: int = 16,
                 num_collections: int = ICID_SPACE, *, gic_version: str = "3") -> None:
        check_gic_version(gic_version)
        self.mem = mem
        self.num_cpus = num_cpus
        self.device_bits = device_bits
        self.event_bits = event_bits
        self.intid_bits = intid_bits
        self.num_collections = num_collections
        self.gic_version = gic_version
        # "hash" only so that any device_bits is accepted; the layout changes nothing here.
        self.tables = ReferenceTables("hash", device_bits=device_bits, event_bits=event_bits,
                                      intid_bits=intid_bits, num_collections=num_collections,
                                      num_cpus=num_cpus)
        self.baser0 = 0
        self.baser1 = 0
        self.enabled = False
        self.propbaser = 0
        self.pendbaser = [0] * num_cpus
        self.lpis_enabled = [False] * num_cpus
        self.pending_sets: list[set[int]] = [set() for _ in range(num_cpus)]
        self.config: dict[int, int] = {}
        # GICv4 state (unused with gic_version "3").
        self.baser2 = 0
        self.vpes: dict[int, VPE] = {}
        self.virtual_events: dict[tuple[int, int], tuple[int, int, int]] = {}
        self.vpropbaser = [0] * num_cpus
        self.vpendbaser = [0] * num_cpus
        self.resident: list[Resident | None] = [None] * num_cpus
        self.vsgir = [0] * num_cpus

    @property
    def ite_bytes(self) -> int:
        """Bytes of one ITT entry (GITS_TYPER.ITT_entry_size + 1)."""
        return ITE_BYTES[self.gic_version]

    @property
    def is_v41(self) -> bool:
        """Whether this is a GICv4.1 model."""
        return self.gic_version == "4.1"

    # -- limits and guest-memory helpers ---------------------------------------------

    @property
    def lpi_limit(self) -> int:
        """2 ** min(PROPBASER.IDbits + 1, intid_bits): first INTID that is out of range."""
        return 2 ** min(_PROP_IDBITS.extract(self.propbaser) + 1, self.intid_bits)

    def _read_u64(self, addr: int) -> int | None:
        """The 64-bit little-endian word at `addr`, None if not wholly in memory."""
        if not self.mem.contains(addr, 8):
            return None
        return int.from_bytes(self.mem.read(addr, 8), "little")

    def _read_byte(self, addr: int) -> int:
        """One byte of guest memory; 0 outside it."""
        if not self.mem.contains(addr, 1):
            return 0
        return self.mem.read(addr, 1)[0]

    def _read_bytes(self, addr: int, n: int) -> bytes:
        """`n` bytes of guest memory from `addr`; bytes outside guest memory read as 0."""
        if self.mem.contains(addr, n):
            return self.mem.read(addr, n)
        return bytes(self._read_byte(a) for a in range(addr, addr + n))

    def _load_config(self, intid: int) -> None:
        """Config cache <- the LPI's byte at PROPBASER.PA + INTID - 8192."""
        self.config[intid] = self._read_byte((self.propbaser & _PROP_ADDRESS)
                                             + intid - LPI_FIRST_INTID)

    # -- table slots -----------------------------------------------------------------

    def _table_slot(self, base: int, table_bytes: int, indirect: bool, page: int,
                    index: int, entry_bytes: int) -> int | None:
        """Guest address of entry `index` of a flat or two-level table, None if it has none."""
        if not indirect:
            if index >= table_bytes // entry_bytes:
                return None
            entry = base + index * entry_bytes
        else:
            per_page = page // entry_bytes
            if index // per_page >= table_bytes // 8:
                return None
            descriptor = self._read_u64(base + (index // per_page) * 8)
            if descriptor is None or not descriptor & L1_VALID:
                return None
            level2 = descriptor & L1_ADDRESS & ~(page - 1)
            entry = level2 + (index % per_page) * entry_bytes
        return entry if self.mem.contains(entry, entry_bytes) else None

    def device_slot(self, device_id: int) -> int | None:
        """Guest address of DeviceID's DTE, or None if it has no device-table slot."""
        if not 0 <= device_id < 2 ** self.device_bits:
            return None
        return self._table_slot(R.baser_address(self.baser0), R.baser_table_bytes(self.baser0),
                                bool(_BASER_INDIRECT.extract(self.baser0)),
                                R.baser_page_size(self.baser0), device_id, DTE_BYTES)

    def collection_slot(self, icid: int) -> bool:
        """Whether ICID has a collection-table slot."""
        return icid < self.num_collections and icid < R.baser_table_bytes(self.baser1) // CTE_BYTES

    def vpe_slot(self, vpe_id: int) -> int | None:
        """Guest address of vPEID's vPE table entry (GITS_BASER2), or None if it has none.

        As `device_slot` (flat or two-level, `VPE_ENTRY_BYTES` entries wholly in guest
        memory), and BASER2.Valid = 0 means no entries (gicv4-digest 2.1).
        """
        if not 0 <= vpe_id < 2 ** _VPE_ID_BITS or not _BASER_VALID.extract(self.baser2):
            return None
        return self._table_slot(R.baser_address(self.baser2), R.baser_table_bytes(self.baser2),
                                bool(_BASER_INDIRECT.extract(self.baser2)),
                                R.baser_page_size(self.baser2), vpe_id,
                                VPE_ENTRY_BYTES[self.gic_version])

    def vpe_config_slot(self, cpu: int, vpe_id: int) -> int | None:
        """GICv4.1: guest address of vPEID's entry in the vPE Configuration table
        `cpu`'s GICR_VPROPBASER describes, or None (Valid = 0, beyond Size, an
        invalid level-1 descriptor, outside guest memory)."""
        value = self.vpropbaser[cpu]
        if not 0 <= vpe_id < 2 ** _VPE_ID_BITS or not _VPROP41["Valid"].extract(value):
            return None
        page = _PAGE_BYTES[_VPROP41["Page_Size"].extract(value)]
        entry_bytes = (_VPROP41["Entry_Size"].extract(value) + 1) * 8
        return self._table_slot(value & _VPROP41["Physical_Address"].mask,
                                (_VPROP41["Size"].extract(value) + 1) * page,
                                bool(_VPROP41["Indirect"].extract(value)), page, vpe_id,
                                entry_bytes)

    # -- internal state helpers --------------------------------------------------------

    def _ite(self, device_id: int, event_id: int):
        """(intid, icid) of the ITE, or None (device unmapped, EventID out of range/unmapped)."""
        return self.tables.lookup_event(device_id, event_id)

    def _clear_on_target(self, intid: int, icid: int) -> None:
        """Clear the LPI's pending bit on the CPU its collection maps to now (if any)."""
        cpu = self.tables.collection_cpu(icid)
        if cpu is not None:
            self.pending_sets[cpu].discard(intid)

    def _set_pending(self, cpu: int, intid: int) -> None:
        if self.lpis_enabled[cpu]:
            self.pending_sets[cpu].add(intid)

    def _drop_device(self, device_id: int) -> None:
        """Forget a device, its events and their pending bits (virtual ITEs: the
        mapping only; vLPI pending state stays with the vPE)."""
        for key in [key for key in self.virtual_events if key[0] == device_id]:
            del self.virtual_events[key]
        if self.tables.lookup_device(device_id) is None:
            return
        for (dev, _event), (intid, icid) in list(self.tables.events.items()):
            if dev == device_id:
                self._clear_on_target(intid, icid)
        self.tables.unmap_device(device_id)

    # -- GICv4 helpers -------------------------------------------------------------------

    def _is_lpi(self, intid: int) -> bool:
        """An LPI number this ITS accepts: 8192 <= INTID < 2**intid_bits (GITS_TYPER.ID_bits)."""
        return LPI_FIRST_INTID <= intid < 2 ** self.intid_bits

    def _valid_doorbell(self, pintid: int) -> bool:
        """1023 (no doorbell) or an LPI number (gicv4-digest 3.3, C8)."""
        return pintid == C.NO_DOORBELL or self._is_lpi(pintid)

    def _ring(self, cpu: int, pintid: int) -> None:
        """Make a doorbell pending on `cpu` through the physical-LPI path (C13)."""
        if pintid != C.NO_DOORBELL and pintid < self.lpi_limit:
            self._set_pending(cpu, pintid)

    def _resident_for(self, vpe_id: int, vpe: VPE) -> Resident | None:
        """The cache of `vpe` if it is resident on the CPU its vPE entry names (C14)."""
        resident = self.resident[vpe.cpu]
        if resident is None:
            return None
        if self.is_v41:
            return resident if resident.vpe_id == vpe_id else None
        return resident if resident.vpt_addr == vpe.vpt_addr else None

    def _vpt_bit(self, vpt_addr: int, vintid: int, value: bool | None = None) -> bool:
        """Bit vINTID of the VPT at `vpt_addr` in guest memory (False outside it);
        with `value`, write it and return the old bit."""
        addr = vpt_addr + vintid // 8
        if not self.mem.contains(addr, 1):
            return False
        byte = self.mem.read(addr, 1)[0]
        old = bool(byte >> (vintid % 8) & 1)
        if value is not None and value != old:
            self.mem.write(addr, bytes([byte ^ (1 << (vintid % 8))]))
        return old

    def _vlpi_config_addr(self, cpu: int) -> int:
        """Guest address of vINTID 8192's configuration byte for the vPE resident on `cpu`."""
        resident = self.resident[cpu]
        if resident is not None and resident.config_addr is not None:
            return resident.config_addr
        return self.vpropbaser[cpu] & _VPROP40["Physical_Address"].mask

    def _vlpi_config(self, config_addr: int, vintid: int) -> int:
        """The vLPI's configuration byte (0 outside guest memory: disabled)."""
        return self._read_byte(config_addr + vintid - LPI_FIRST_INTID)

    def _ring_default_doorbell(self, vpe: VPE) -> None:
        """GICv4.1: an enabled interrupt became pending for a non-resident vPE."""
        if vpe.doorbell_armed:
            vpe.doorbell_armed = False
            self._ring(vpe.cpu, vpe.default_doorbell)

    def _deliver(self, vpe_id: int, vintid: int, doorbell: int) -> VirtualStatus:
        """Make vLPI `vintid` pending for vPE `vpe_id` (gicv4-digest 4.2)."""
        vpe = self.vpes.get(vpe_id)
        if vpe is None:
            return VirtualStatus.VIRTUAL_NO_VPE
        if not LPI_FIRST_INTID <= vintid < vpe.vintid_limit:
            return VirtualStatus.VIRTUAL_INTID_OUT_OF_RANGE
        resident = self._resident_for(vpe_id, vpe)
        if resident is not None:
            if vintid >= resident.limit:
                return VirtualStatus.VIRTUAL_INTID_OUT_OF_RANGE
            resident.pending.add(vintid)
            return VirtualStatus.VIRTUAL
        self._vpt_bit(vpe.vpt_addr, vintid, True)
        self._ring(vpe.cpu, doorbell)
        if self.is_v41 and self._vlpi_config(vpe.vconf_addr, vintid) & 1:
            self._ring_default_doorbell(vpe)
        return VirtualStatus.VIRTUAL

    def _take(self, vpe_id: int, vintid: int) -> bool:
        """Clear vLPI `vintid` of vPE `vpe_id`; whether it was pending.  No
        effect for an unmapped vPE or a vINTID out of range (CLEAR, gicv4-digest 3.4)."""
        vpe = self.vpes.get(vpe_id)
        if vpe is None or not LPI_FIRST_INTID <= vintid < vpe.vintid_limit:
            return False
        resident = self._resident_for(vpe_id, vpe)
        if resident is None:
            return self._vpt_bit(vpe.vpt_addr, vintid, False)
        if vintid >= resident.limit:
            return False
        was_pending = vintid in resident.pending
        resident.pending.discard(vintid)
        resident.taken.add(vintid)
        return was_pending

    def _virtual_ite(self, device_id: int, event_id: int):
        """(vintid, vpe_id, doorbell) of a virtual ITE, or None."""
        return self.virtual_events.get((device_id, event_id))

    # -- commands ----------------------------------------------------------------------

    def execute(self, packet: bytes) -> int:
        """Apply one 32-byte command; return 0 or its E_ITS_* error code.

        The packet is decoded for this model's `gic_version`: with "3" every
        GICv4 command number is unknown (``E_ITS_UNKNOWN_COMMAND``); with "4.0"
        VSGI and INVDB are.
        """
        command = C.decode(packet, gic_version=self.gic_version)
        handler = getattr(self, "_cmd_" + command.name.lower(), None)
        if handler is None:
            return C.E_ITS_UNKNOWN_COMMAND
        return handler(**command.fields)

    def execute_slot(self, addr: int) -> int:
        """Apply the command stored at guest address `addr` (a queue slot)."""
        if not self.mem.contains(addr, C.COMMAND_BYTES):
            return C.E_ITS_CMD_READ_FAULT
        return self.execute(self.mem.read(addr, C.COMMAND_BYTES))

    def _cmd_mapd(self, device_id, itt_addr, num_event_bits, valid) -> int:
        dte = self.device_slot(device_id)
        if dte is None:
            return C.E_ITS_MAPD_DEVICE_OOR
        if valid and num_event_bits > self.event_bits:
            return C.E_ITS_MAPD_ITTSIZE_OOR
        self._drop_device(device_id)
        if valid:
            self.tables.map_device(device_id, num_event_bits, itt_addr)
        else:
            self.mem.write(dte, bytes(DTE_BYTES))
        return 0

    def _cmd_mapc(self, icid, cpu, valid) -> int:
        if not valid:
            self.tables.collections.pop(icid, None)
            return 0
        if cpu >= self.num_cpus:
            return C.E_ITS_MAPC_PROCNUM_OOR
        if not self.collection_slot(icid):
            return C.E_ITS_MAPC_COLLECTION_OOR
        self.tables.map_collection(icid, cpu)
        return 0

    def _cmd_mapti(self, device_id, event_id, intid, icid) -> int:
        device = self.tables.lookup_device(device_id)
        if device is None:
            return C.E_ITS_MAPTI_UNMAPPED_DEVICE
        bits, itt = device
        if event_id >= 2 ** bits or not self.mem.contains(itt + event_id * self.ite_bytes,
                                                          self.ite_bytes):
            return C.E_ITS_MAPTI_ID_OOR
        if not LPI_FIRST_INTID <= intid < self.lpi_limit:
            return C.E_ITS_MAPTI_PHYSICALID_OOR
        if (self._ite(device_id, event_id) is not None
                or self._virtual_ite(device_id, event_id) is not None):
            return C.E_ITS_MAPTI_ID_ALREADY_MAPPED
        if not self.collection_slot(icid):
            return C.E_ITS_MAPC_COLLECTION_OOR
        self.tables.map_event(device_id, event_id, intid, icid)
        self._load_config(intid)
        return 0

    def _cmd_mapi(self, device_id, event_id, icid) -> int:
        return self._cmd_mapti(device_id, event_id, event_id, icid)

    def _cmd_movi(self, device_id, event_id, icid) -> int:
        if self._virtual_ite(device_id, event_id) is not None:
            return C.E_ITS_MOVI_VIRTUAL_INTERRUPT
        ite = self._ite(device_id, event_id)
        if ite is None:
            return C.E_ITS_MOVI_UNMAPPED_INTERRUPT
        intid, old_icid = ite
        old_cpu = self.tables.collection_cpu(old_icid)
        if old_cpu is None:
            return C.E_ITS_MOVI_UNMAPPED_COLLECTION
        new_cpu = self.tables.collection_cpu(icid) if icid < self.num_collections else None
        if new_cpu is None:
            return C.E_ITS_MOVI_UNMAPPED_COLLECTION
        self.tables.move_event(device_id, event_id, icid)
        if intid in self.pending_sets[old_cpu]:
            self.pending_sets[old_cpu].discard(intid)
            self._set_pending(new_cpu, intid)
        return 0

    def _cmd_discard(self, device_id, event_id) -> int:
        virtual = self._virtual_ite(device_id, event_id)
        if virtual is not None:
            vintid, vpe_id, _doorbell = virtual
            self._take(vpe_id, vintid)
            del self.virtual_events[(device_id, event_id)]
            itt = self.tables.lookup_device(device_id)[1]
            self.mem.write(itt + event_id * self.ite_bytes, bytes(self.ite_bytes))
            return 0
        ite = self._ite(device_id, event_id)
        if ite is None or self.tables.collection_cpu(ite[1]) is None:
            return C.E_ITS_DISCARD_UNMAPPED_INTERRUPT
        intid, icid = ite
        self._clear_on_target(intid, icid)
        self.tables.unmap_event(device_id, event_id)
        itt = self.tables.lookup_device(device_id)[1]
        self.mem.write(itt + event_id * self.ite_bytes, bytes(self.ite_bytes))
        return 0

    def _cmd_inv(self, device_id, event_id) -> int:
        if self._virtual_ite(device_id, event_id) is not None:
            return 0                    # vLPI configuration is read when used
        ite = self._ite(device_id, event_id)
        if ite is None:
            return C.E_ITS_INV_UNMAPPED_INTERRUPT
        self._load_config(ite[0])
        return 0

    def _cmd_invall(self, icid) -> int:
        cpu = self.tables.collection_cpu(icid) if icid < self.num_collections else None
        if cpu is None:
            return C.E_ITS_INVALL_UNMAPPED_COLLECTION
        for intid, event_icid in list(self.tables.events.values()):
            if self.tables.collection_cpu(event_icid) == cpu:
                self._load_config(intid)
        return 0

    def _cmd_int(self, device_id, event_id) -> int:
        virtual = self._virtual_ite(device_id, event_id)
        if virtual is not None:
            vintid, vpe_id, doorbell = virtual
            self._deliver(vpe_id, vintid, doorbell)
            return 0
        ite = self._ite(device_id, event_id)
        if ite is None or self.tables.collection_cpu(ite[1]) is None:
            return C.E_ITS_INT_UNMAPPED_INTERRUPT
        intid, icid = ite
        cpu = self.tables.collection_cpu(icid)
        if not self.lpis_enabled[cpu]:
            return C.E_ITS_INT_LPIS_DISABLED
        if intid < self.lpi_limit:
            self.pending_sets[cpu].add(intid)
        return 0

    def _cmd_clear(self, device_id, event_id) -> int:
        virtual = self._virtual_ite(device_id, event_id)
        if virtual is not None:
            self._take(virtual[1], virtual[0])
            return 0
        ite = self._ite(device_id, event_id)
        if ite is None or self.tables.collection_cpu(ite[1]) is None:
            return C.E_ITS_CLEAR_UNMAPPED_INTERRUPT
        self._clear_on_target(*ite)
        return 0

    def _cmd_sync(self, cpu) -> int:
        return 0

    def _cmd_movall(self, from_cpu, to_cpu) -> int:
        if from_cpu >= self.num_cpus or to_cpu >= self.num_cpus:
            return C.E_ITS_MOVALL_PROCNUM_OOR
        if from_cpu != to_cpu:
            moved = self.pending_sets[from_cpu]
            self.pending_sets[from_cpu] = set()
            if self.lpis_enabled[to_cpu]:
                self.pending_sets[to_cpu] |= moved
        return 0

    # -- GICv4 commands (decoded only with gic_version "4.0" / "4.1") ----------------------

    def _cmd_vmapp(self, vpe_id, rdbase, vpt_addr, vpt_size, valid, *, vconf_addr=0,
                   default_doorbell=C.NO_DOORBELL, alloc=0, ptz=0) -> int:
        if vpt_size > self.intid_bits - 1:
            return C.E_ITS_VMAPP_VPT_SIZE_OOR
        if valid and rdbase >= self.num_cpus:
            return C.E_ITS_VMAPP_RDBASE_OOR
        if valid and not self._valid_doorbell(default_doorbell):
            return C.E_ITS_VMAPP_DOORBELL_OOR
        if self.vpe_slot(vpe_id) is None:
            return C.E_ITS_VMAPP_VPEID_OOR
        if not valid:
            self.vpes.pop(vpe_id, None)
            return 0
        vpe = self.vpes.get(vpe_id)
        if vpe is None:
            self.vpes[vpe_id] = VPE(rdbase, vpt_addr, vpt_size, vconf_addr, default_doorbell)
        else:                           # C2: overwrite, no state transfer
            vpe.cpu, vpe.vpt_addr, vpe.vpt_size = rdbase, vpt_addr, vpt_size
            vpe.vconf_addr, vpe.default_doorbell = vconf_addr, default_doorbell
        return 0

    def _cmd_vmapp_v41(self, vpe_id, rdbase, vpt_addr, vpt_size, vconf_addr, default_doorbell,
                       alloc, ptz, valid) -> int:
        return self._cmd_vmapp(vpe_id, rdbase, vpt_addr, vpt_size, valid, vconf_addr=vconf_addr,
                               default_doorbell=default_doorbell, alloc=alloc, ptz=ptz)

    def _cmd_vmapti(self, device_id, event_id, vpe_id, vintid, dbell_pintid) -> int:
        device = self.tables.lookup_device(device_id)
        if device is None:
            return C.E_ITS_VMAPTI_UNMAPPED_DEVICE
        bits, itt = device
        if event_id >= 2 ** bits or not self.mem.contains(itt + event_id * self.ite_bytes,
                                                          self.ite_bytes):
            return C.E_ITS_VMAPTI_ID_OOR
        if not self._is_lpi(vintid):
            return C.E_ITS_VMAPTI_VIRTUALID_OOR
        if not self._valid_doorbell(dbell_pintid):
            return C.E_ITS_VMAPTI_DOORBELL_OOR
        if (self._ite(device_id, event_id) is not None
                or self._virtual_ite(device_id, event_id) is not None):
            return C.E_ITS_VMAPTI_ID_ALREADY_MAPPED
        if self.vpe_slot(vpe_id) is None:
            return C.E_ITS_VMAPTI_VPEID_OOR
        self.virtual_events[(device_id, event_id)] = (vintid, vpe_id, dbell_pintid)
        return 0

    def _cmd_vmapi(self, device_id, event_id, vpe_id, dbell_pintid) -> int:
        return self._cmd_vmapti(device_id, event_id, vpe_id, event_id, dbell_pintid)

    def _cmd_vmovi(self, device_id, event_id, vpe_id, dbell_pintid, doorbell_valid) -> int:
        if doorbell_valid and not self._valid_doorbell(dbell_pintid):
            return C.E_ITS_VMOVI_DOORBELL_OOR
        virtual = self._virtual_ite(device_id, event_id)
        if virtual is None:
            if self._ite(device_id, event_id) is not None:
                return C.E_ITS_VMOVI_NOT_VIRTUAL
            return C.E_ITS_VMOVI_UNMAPPED_INTERRUPT
        vintid, old_vpe_id, doorbell = virtual
        old_vpe, new_vpe = self.vpes.get(old_vpe_id), self.vpes.get(vpe_id)
        if old_vpe is None or new_vpe is None:
            return C.E_ITS_VMOVI_UNMAPPED_VPE
        if not all(LPI_FIRST_INTID <= vintid < vpe.vintid_limit for vpe in (old_vpe, new_vpe)):
            return C.E_ITS_VMOVI_VIRTUALID_OOR
        if doorbell_valid:
            doorbell = dbell_pintid
        self.virtual_events[(device_id, event_id)] = (vintid, vpe_id, doorbell)
        if old_vpe.vpt_addr != new_vpe.vpt_addr and self._take(old_vpe_id, vintid):
            self._deliver(vpe_id, vintid, doorbell)
        return 0

    def _cmd_vmovp(self, vpe_id, rdbase, sequence_number, its_list, *,
                   default_doorbell=C.NO_DOORBELL, default_doorbell_valid=0) -> int:
        if rdbase >= self.num_cpus:
            return C.E_ITS_VMOVP_RDBASE_OOR
        vpe = self.vpes.get(vpe_id)
        if vpe is None:
            return C.E_ITS_VMOVP_UNMAPPED_VPE
        if default_doorbell_valid and not self._valid_doorbell(default_doorbell):
            return C.E_ITS_VMOVP_DOORBELL_OOR
        vpe.cpu = rdbase
        if default_doorbell_valid:
            vpe.default_doorbell = default_doorbell
        return 0

    def _cmd_vmovp_v41(self, vpe_id, rdbase, sequence_number, its_list, default_doorbell,
                       default_doorbell_valid) -> int:
        return self._cmd_vmovp(vpe_id, rdbase, sequence_number, its_list,
                               default_doorbell=default_doorbell,
                               default_doorbell_valid=default_doorbell_valid)

    def _cmd_vsync(self, vpe_id) -> int:
        return 0                        # C18: any vPEID

    def _cmd_vinvall(self, vpe_id) -> int:
        if vpe_id not in self.vpes:
            return C.E_ITS_VINVALL_UNMAPPED_VPE
        return 0                        # vLPI configuration is read when used

    def _cmd_invdb(self, vpe_id) -> int:
        vpe = self.vpes.get(vpe_id)
        if vpe is None:
            return C.E_ITS_INVDB_UNMAPPED_VPE
        if vpe.default_doorbell != C.NO_DOORBELL:
            self._load_config(vpe.default_doorbell)
        return 0

    def _cmd_vsgi(self, vpe_id, vintid, priority, group, enable, clear) -> int:
        vpe = self.vpes.get(vpe_id)
        if vpe is None:
            return C.E_ITS_VSGI_UNMAPPED_VPE
        if clear:
            vpe.vsgi_pending &= ~(1 << vintid)
        else:
            vpe.vsgi_config[vintid] = (priority, group, enable)
        return 0

    # -- registers with side effects ----------------------------------------------------

    def write_baser0(self, value: int) -> None:
        """BASER0 write (while disabled): Valid = 0 drops every device and its pending bits."""
        self.baser0 = value
        if not _BASER_VALID.extract(value):
            for device_id in list(self.tables.devices):
                self._drop_device(device_id)

    def write_baser1(self, value: int) -> None:
        """BASER1 write (while disabled): Valid = 0 unmaps every collection."""
        self.baser1 = value
        if not _BASER_VALID.extract(value):
            self.tables.collections.clear()

    def write_baser2(self, value: int) -> None:
        """BASER2 (vPE table) write (while disabled): Valid = 0 unmaps every vPE.

        Virtual ITEs naming them stay (their deliveries are dropped until a VMAPP).
        """
        self.baser2 = value
        if not _BASER_VALID.extract(value):
            self.vpes.clear()

    def reset(self) -> None:
        """ITS reset: disabled, no devices, collections, vPEs or mappings; Valid
        cleared in BASER0/1/2.

        Redistributor state (pending bits, config cache, PROPBASER, PENDBASER,
        EnableLPIs, VPROPBASER, VPENDBASER and the resident caches) is kept.
        """
        self.enabled = False
        self.tables.reset()
        self.virtual_events.clear()
        self.vpes.clear()
        self.baser0 &= ~_BASER_VALID.mask
        self.baser1 &= ~_BASER_VALID.mask
        self.baser2 &= ~_BASER_VALID.mask

    def write_sgir(self, value: int) -> None:
        """GITS_SGIR (GICv4.1) 64-bit write: make vSGI vINTID [3:0] pending for vPE vPEID [47:32].

        Ignored on a GICv4.0/GICv3 model (no such register) and for a vPE that is
        not mapped.  Rings the vPE's armed default doorbell if the vSGI is
        enabled and the vPE not resident.
        """
        if not self.is_v41:
            return
        vpe_id = R.GITS_SGIR_LAYOUT["vPEID"].extract(value)
        vintid = R.GITS_SGIR_LAYOUT["vINTID"].extract(value)
        vpe = self.vpes.get(vpe_id)
        if vpe is None:
            return
        vpe.vsgi_pending |= 1 << vintid
        if vpe.vsgi_config[vintid][2] and self._resident_for(vpe_id, vpe) is None:
            self._ring_default_doorbell(vpe)

    # -- redistributors -------------------------------------------------------------------

    def enable_lpis(self, cpu: int) -> None:
        """GICR_CTLR.EnableLPIs 0 -> 1: load pending bits (unless PTZ) and the config cache.

        A PTZ written with PENDBASER applies to this enable only.
        """
        if self.lpis_enabled[cpu]:
            return
        self.lpis_enabled[cpu] = True
        limit = self.lpi_limit
        pending: set[int] = set()
        if not self.pendbaser[cpu] & PTZ_BIT and limit > LPI_FIRST_INTID:
            table = self.pendbaser[cpu] & _PEND_ADDRESS
            first, end = PENDING_FIRST_BYTE, limit // 8
            for byte_index, byte in enumerate(self._read_bytes(table + first, end - first), first):
                for bit in range(8):
                    if byte >> bit & 1:
                        pending.add(byte_index * 8 + bit)
        self.pending_sets[cpu] = pending
        # PTZ reads as 0 and acts on the enable that follows its write: it is consumed here
        # (docs/front-end.md leaves open whether it also applies to later enables; it does not).
        self.pendbaser[cpu] &= ~PTZ_BIT
        self._load_all_config()

    def _load_all_config(self) -> None:
        """The whole config cache is reloaded: LPIs below the limit from the
        table, the rest (beyond a lowered IDbits) read as 0 (docs/front-end.md
        does not say; see tests)."""
        limit = self.lpi_limit
        self.config.clear()
        if limit > LPI_FIRST_INTID:
            prop = self.propbaser & _PROP_ADDRESS
            for offset, byte in enumerate(self._read_bytes(prop, limit - LPI_FIRST_INTID)):
                self.config[LPI_FIRST_INTID + offset] = byte

    def _virtual_invalidation(self, value: int) -> bool:
        """Whether a GICR_INVLPIR / INVALLR write `value` is a GICv4.1 V = 1
        (virtual) form: then it has no effect (vLPI configuration is read when
        used).  V is RES0 below GICv4.1."""
        return self.is_v41 and bool(R.GICR_INVLPIR_V41_LAYOUT["V"].extract(value))

    def write_invlpir(self, cpu: int, value: int) -> None:
        """GICR_INVLPIR write of `cpu` (64-bit): reload the config byte of
        INTID [31:0] (ignored while EnableLPIs is 0 or for an INTID that is not
        an LPI below the limit); a GICv4.1 V = 1 write changes nothing."""
        if self._virtual_invalidation(value) or not self.lpis_enabled[cpu]:
            return
        intid = R.GICR_INVLPIR_LAYOUT["INTID"].extract(value)
        if LPI_FIRST_INTID <= intid < self.lpi_limit:
            self._load_config(intid)

    def write_invallr(self, cpu: int, value: int) -> None:
        """GICR_INVALLR write of `cpu` (64-bit): reload every config byte
        (ignored while EnableLPIs is 0); a GICv4.1 V = 1 write changes nothing."""
        if self._virtual_invalidation(value) or not self.lpis_enabled[cpu]:
            return
        self._load_all_config()

    def disable_lpis(self, cpu: int) -> None:
        """GICR_CTLR.EnableLPIs 1 -> 0: the CPU's pending bits are dropped."""
        self.lpis_enabled[cpu] = False
        self.pending_sets[cpu] = set()

    def write_vpropbaser(self, cpu: int, value: int) -> None:
        """GICR_VPROPBASER write of `cpu` (64-bit).

        GICv4.0: stored as written (QEMU); the resident vPE's vLPI configuration
        table and IDbits, read when used.  GICv4.1: the vPE Configuration table
        descriptor; the layout's fields kept, Entry_Size reads 0 (read-only).
        """
        self.vpropbaser[cpu] = value & _VPROP41_KEPT if self.is_v41 else value

    def write_vpendbaser(self, cpu: int, value: int) -> None:
        """GICR_VPENDBASER write of `cpu` (64-bit; merge a 32-bit half first).

        Valid 0 -> 1 makes a vPE resident (v4.0: the one whose VPT is at PA, v4.1:
        vPEID) and loads its pending vLPIs from the VPT into the CPU's cache;
        1 -> 0 writes them back and computes PendingLast; a change while Valid
        stays 1 is ignored.  Details in the module docstring.
        """
        layout = _VPEND41 if self.is_v41 else _VPEND40
        valid, pending_last = layout["Valid"], layout["PendingLast"]
        new = value & (_VPEND41_KEPT if self.is_v41 else _VPEND40_KEPT)
        old = self.vpendbaser[cpu]
        if valid.extract(old):
            if valid.extract(new):
                return                  # C20: any change while Valid = 1 is ignored
            self.vpendbaser[cpu] = self._deschedule(cpu, new)
        elif valid.extract(new):
            resident = self._schedule(cpu, new)
            if resident is not None:
                self.resident[cpu] = resident
                new = pending_last.deposit(new, 1)      # C21
                if self.is_v41:
                    new = layout["Doorbell"].deposit(new, 0)
                self.vpendbaser[cpu] = new
        else:
            self.vpendbaser[cpu] = new

    def _schedule(self, cpu: int, value: int) -> Resident | None:
        """The cache of the vPE a Valid 0 -> 1 write makes resident, or None (v4.1: ignored)."""
        if self.is_v41:
            vpe_id = _VPEND41["vPEID"].extract(value)
            vpe = self.vpes.get(vpe_id)
            if vpe is None or self.vpe_config_slot(cpu, vpe_id) is None:
                return None
            vpe.doorbell_armed = False
            resident = Resident(vpe.vpt_addr, vpe.vintid_limit, vpe_id, vpe.vconf_addr)
        else:
            idbits = _VPROP40["IDbits"].extract(self.vpropbaser[cpu])
            resident = Resident(value & _VPEND40["Physical_Address"].mask,
                                2 ** min(idbits + 1, self.intid_bits))
        if resident.limit > LPI_FIRST_INTID:
            first, end = PENDING_FIRST_BYTE, resident.limit // 8
            data = self._read_bytes(resident.vpt_addr + first, end - first)
            for byte_index, byte in enumerate(data, first):
                for bit in range(8):
                    if byte >> bit & 1:
                        resident.pending.add(byte_index * 8 + bit)
        return resident

    def _deschedule(self, cpu: int, value: int) -> int:
        """Valid 1 -> 0: write the cache back, return the value VPENDBASER now holds."""
        layout = _VPEND41 if self.is_v41 else _VPEND40
        resident = self.resident[cpu]
        self.resident[cpu] = None
        for vintid in resident.taken - resident.pending:
            self._vpt_bit(resident.vpt_addr, vintid, False)
        for vintid in resident.pending:
            self._vpt_bit(resident.vpt_addr, vintid, True)
        config_addr = (resident.config_addr if resident.config_addr is not None
                       else self.vpropbaser[cpu] & _VPROP40["Physical_Address"].mask)
        pending_last = any(self._vlpi_config(config_addr, vintid) & 1
                           for vintid in resident.pending)
        if self.is_v41:
            vpe = self.vpes.get(resident.vpe_id)
            if vpe is not None:
                pending_last = pending_last or any(
                    vpe.vsgi_pending >> n & 1 and vpe.vsgi_config[n][2]
                    for n in range(NUM_VSGIS))
            armed = (vpe is not None and layout["Doorbell"].extract(value)
                     and not layout["PendingLast"].extract(value) and not pending_last)
            if armed:
                vpe.doorbell_armed = True
            value = layout["Doorbell"].deposit(value, int(bool(armed)))
        return layout["PendingLast"].deposit(value, int(pending_last))

    def read_vpendbaser(self, cpu: int) -> int:
        """GICR_VPENDBASER of `cpu` as a guest reads it (Dirty always 0; v4.1
        with Valid = 0: Doorbell reads whether the default doorbell the last
        deschedule requested for vPEID is still outstanding)."""
        value = self.vpendbaser[cpu]
        if self.is_v41 and not _VPEND41["Valid"].extract(value) \
                and _VPEND41["Doorbell"].extract(value):
            vpe = self.vpes.get(_VPEND41["vPEID"].extract(value))
            value = _VPEND41["Doorbell"].deposit(value, int(vpe is not None
                                                            and vpe.doorbell_armed))
        return value

    def write_vsgir(self, cpu: int, value: int) -> None:
        """GICR_VSGIR (GICv4.1) write: start a vSGI pending-state query for vPEID [15:0]."""
        self.vsgir[cpu] = value & R.GICR_VSGIR_LAYOUT["vPEID"].mask

    def read_vsgipendr(self, cpu: int) -> int:
        """GICR_VSGIPENDR (GICv4.1): Busy = 0 (the query completes at once) and the
        pending vSGIs of the vPE last written to GICR_VSGIR (0 if it is not mapped)."""
        if not self.is_v41:
            return 0
        vpe = self.vpes.get(R.GICR_VSGIR_LAYOUT["vPEID"].extract(self.vsgir[cpu]))
        return R.GICR_VSGIPENDR_LAYOUT.encode(Pending=vpe.vsgi_pending if vpe else 0, Busy=0)

    # -- doorbell and queries ----------------------------------------------------------------

    def msi(self, device_id: int, event_id: int) -> TranslationStatus | VirtualStatus:
        """A GITS_TRANSLATER write from `device_id` with data `event_id`.

        Returns the `TranslationStatus` of a physical (or unmapped) event as
        before; an event with a virtual ITE returns a `VirtualStatus`:
        ``VIRTUAL`` when the vLPI was made pending (resident cache, or VPT bit
        and doorbell), ``VIRTUAL_NO_VPE`` / ``VIRTUAL_INTID_OUT_OF_RANGE`` when
        it was dropped.
        """
        if not self.enabled:
            return TranslationStatus.ITS_DISABLED
        status, intid, cpu = self.tables.translation_status(device_id, event_id)
        if status == TranslationStatus.NO_MAPPING:
            virtual = self._virtual_ite(device_id, event_id)
            if virtual is not None:
                vintid, vpe_id, doorbell = virtual
                return self._deliver(vpe_id, vintid, doorbell)
        if status != TranslationStatus.OK:
            return TranslationStatus(status)
        if not self.lpis_enabled[cpu]:
            return TranslationStatus.LPIS_DISABLED
        if intid >= self.lpi_limit:
            return TranslationStatus.INTID_OUT_OF_RANGE
        self.pending_sets[cpu].add(intid)
        return TranslationStatus.OK

    def pending(self, cpu: int) -> list[int]:
        """Sorted INTIDs pending on `cpu`."""
        return sorted(self.pending_sets[cpu])

    def acknowledge(self, cpu: int) -> int | None:
        """Take the enabled pending LPI with the lowest priority value (ties: lowest INTID)."""
        candidates = [intid for intid in self.pending_sets[cpu] if self.config.get(intid, 0) & 1]
        if not candidates:
            return None
        best = min(candidates, key=lambda intid: (self.config[intid] & 0xFC, intid))
        self.pending_sets[cpu].discard(best)
        return best

    def _resident_vpe(self, cpu: int) -> VPE | None:
        """GICv4.1: the mapped vPE resident on `cpu`, if any."""
        resident = self.resident[cpu]
        if resident is None or resident.vpe_id is None:
            return None
        return self.vpes.get(resident.vpe_id)

    def pending_virtual(self, cpu: int) -> list[int]:
        """Sorted INTIDs pending for the vPE resident on `cpu` (enabled or not):
        its cached vLPIs and, for GICv4.1, its pending vSGIs (0..15).  [] when
        no vPE is resident."""
        resident = self.resident[cpu]
        if resident is None:
            return []
        vpe = self._resident_vpe(cpu)
        vsgis = [n for n in range(NUM_VSGIS) if vpe is not None and vpe.vsgi_pending >> n & 1]
        return vsgis + sorted(resident.pending)

    def acknowledge_virtual(self, cpu: int) -> int | None:
        """Take the best enabled pending interrupt of the vPE resident on `cpu`.

        vLPIs: enabled and prioritised by their configuration byte (v4.0: at
        GICR_VPROPBASER.PA + vINTID - 8192, v4.1: at the vPE's VCONF_addr),
        priority = byte & 0xFC; GICv4.1 vSGIs: enabled and prioritised by VSGI.
        Lowest priority value wins, ties to the lowest INTID (as `acknowledge`).
        The taken interrupt stops being pending.  None if nothing qualifies.
        """
        resident = self.resident[cpu]
        if resident is None:
            return None
        config_addr = self._vlpi_config_addr(cpu)
        candidates = []
        for vintid in resident.pending:
            byte = self._vlpi_config(config_addr, vintid)
            if byte & 1:
                candidates.append((byte & 0xFC, vintid))
        vpe = self._resident_vpe(cpu)
        if vpe is not None:
            for n in range(NUM_VSGIS):
                priority, _group, enable = vpe.vsgi_config[n]
                if vpe.vsgi_pending >> n & 1 and enable:
                    candidates.append((priority, n))
        if not candidates:
            return None
        _priority, best = min(candidates)
        if best < NUM_VSGIS:
            vpe.vsgi_pending &= ~(1 << best)
        else:
            resident.pending.discard(best)
            resident.taken.add(best)
        return best

    def virtual_ite(self, device_id: int, event_id: int) -> tuple[int, int, int] | None:
        """(vINTID, vPEID, doorbell pINTID) of the event's virtual ITE, or None."""
        return self._virtual_ite(device_id, event_id)

    def translate(self, device_id: int, event_id: int) -> tuple[int, int]:
        """(INTID, CPU) of a physical mapping (`ReferenceTables.translate`; a
        virtual ITE raises as NO_MAPPING: see `virtual_ite`)."""
        return self.tables.translate(device_id, event_id)

    def translate_batch(self, device_ids, event_ids):
        """`ReferenceTables.translate_batch` over the physical mappings."""
        return self.tables.translate_batch(device_ids, event_ids)

    def translation_status(self, device_id: int, event_id: int):
        """`ReferenceTables.translation_status` of a physical mapping (a virtual
        ITE reports NO_MAPPING)."""
        return self.tables.translation_status(device_id, event_id)

    def snapshot(self) -> dict:
        """Mappings as plain dicts; with GICv4 also the virtual state.

        GICv3: ``devices``, ``events``, ``collections`` (as `ReferenceTables`).
        GICv4 adds ``vpes`` (vPEID -> (cpu, vpt_addr, vpt_size, vconf_addr,
        default_doorbell)), ``virtual_events`` ((DeviceID, EventID) -> (vINTID,
        vPEID, doorbell)), ``vpropbaser`` / ``vpendbaser`` (per CPU),
        ``virtual_pending`` (per CPU: sorted cached vINTIDs, None when no vPE is
        resident) and, for GICv4.1, ``vsgis`` (vPEID -> (pending mask, per-vSGI
        (priority, group, enable)), ``doorbells_armed`` (sorted vPEIDs).
        """
        snapshot = self.tables.snapshot()
        if self.gic_version == "3":
            return snapshot
        snapshot["vpes"] = {vpe_id: (vpe.cpu, vpe.vpt_addr, vpe.vpt_size, vpe.vconf_addr,
                                     vpe.default_doorbell)
                            for vpe_id, vpe in self.vpes.items()}
        snapshot["virtual_events"] = dict(self.virtual_events)
        snapshot["vpropbaser"] = list(self.vpropbaser)
        snapshot["vpendbaser"] = [self.read_vpendbaser(cpu) for cpu in range(self.num_cpus)]
        snapshot["virtual_pending"] = [None if resident is None else sorted(resident.pending)
                                       for resident in self.resident]
        if self.is_v41:
            snapshot["vsgis"] = {vpe_id: (vpe.vsgi_pending, tuple(vpe.vsgi_config))
                                 for vpe_id, vpe in self.vpes.items()}
            snapshot["doorbells_armed"] = sorted(vpe_id for vpe_id, vpe in self.vpes.items()
                                                 if vpe.doorbell_armed)
        return snapshot
