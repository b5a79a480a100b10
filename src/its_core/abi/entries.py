"""The KVM ITS table ABI, revision 0: entry layouts declared once as data.

Every entry is 8 bytes, little-endian, in guest memory (the Linux kernel's
Documentation/virt/kvm/devices/arm-vgic-its.rst, "ITS Table ABI REV0"):

* DTE, at the DeviceID's slot of the device table (flat or two-level):
  V [63], next [62:49] (DeviceID distance to the next valid DTE, 0 = last),
  ITT_addr [48:5] (ITT address bits [51:8]), Size [4:0] (EventID bits - 1).
* ITE, at ITT + EventID * 8: next [63:48] (EventID distance, 0 = last),
  pINTID [47:16] (0 = invalid entry), ICID [15:0].
* CTE, a packed list from the collection table's base, ended by an all-zero
  entry unless the table is full: V [63], RDBase [47:16] (the 32-bit target
  CPU number, as KVM writes and reads it; 0xFFFFFFFF = a collection that
  events name but that is not mapped), ICID [15:0].
* Level-1 descriptor of a two-level device table: V [63], the level-2 page
  address in bits [51:12].

`next` values are capped (DTE 2**14 - 1, ITE 2**16 - 1); the slots a restore
scan steps through must read as invalid, so saving zeroes them.

its-core-rev1 (this project's own revision, GITS_IIDR.Revision = 1, for a
GICv4 ITS; docs/save-format.md "its-core-rev1 (GICv4)", docs/gicv4.md):
rev0's DTE, CTE and level-1 descriptor, plus

* ITE, 16 bytes at ITT + EventID * 16 (GITS_TYPER.ITT_entry_size = 15):
  dword0 as rev0's ITE for a physical event (next [63:48], pINTID [47:16],
  ICID [15:0]) and for a virtual one next [63:48], vINTID [47:16], vPEID
  [15:0]; dword1 Virtual [63], Doorbell [31:0] (1023 = none); a physical
  ITE's dword1 is 0.
* VTE, at the vPE table (GITS_BASER2, flat or two-level) + vPEID *
  Entry_Size, one per mapped vPE.  GICv4.0, 8 bytes (QEMU's VTE): Valid
  [0], VPT_size [5:1], VPT_addr [41:6] (VPT address bits [51:16]), RDbase
  [57:42] (the target CPU number).  GICv4.1, 32 bytes: dword0 as v4.0;
  dword1 Armed [63] (a deschedule armed the default doorbell), VCONF_addr
  [51:16] (the address bits in place), vSGI_Enable [15:0] (bit n: vSGI n);
  dword2 vSGI_Group [63:48], vSGI_Pending [47:32], Default_Doorbell [31:0]
  (1023 = none); dword3 vSGI_Priority, one nibble per vSGI (vSGI n at
  [4n+3:4n]: its priority >> 4, the VSGI command's Priority field).
"""

from __future__ import annotations

from its_core.frontend.fields import Field, Layout

__all__ = ["REVISION", "FORMAT", "ENTRY_BYTES", "DTE", "ITE", "CTE", "L1_DESCRIPTOR",
           "DTE_NEXT_MAX", "ITE_NEXT_MAX", "CTE_UNMAPPED_TARGET", "ITT_ADDR_SHIFT",
           "REV1_REVISION", "REV1_FORMAT", "REV1_ITE_BYTES", "REV1_ITE0", "REV1_ITE1",
           "VTE_BYTES", "VTE0", "VTE1_V41", "VTE2_V41", "VTE3_V41", "VPT_ADDR_SHIFT",
           "VSGI_PRIORITY_SHIFT"]

#: Value of GITS_IIDR.Revision (and the "format" tag of a saved register dict).
REVISION = 0
FORMAT = "kvm-its-rev0"
ENTRY_BYTES = 8

DTE = Layout("DTE", Field.bits("V", 63), Field.bits("next", 62, 49),
             Field.bits("ITT_addr", 48, 5), Field.bits("Size", 4, 0))
ITE = Layout("ITE", Field.bits("next", 63, 48), Field.bits("pINTID", 47, 16),
             Field.bits("ICID", 15, 0))
CTE = Layout("CTE", Field.bits("V", 63), Field.bits("RDBase", 47, 16), Field.bits("ICID", 15, 0))
L1_DESCRIPTOR = Layout("L1", Field.bits("V", 63), Field.bits("Address", 51, 12))

#: Largest `next` a DTE / ITE can hold.
DTE_NEXT_MAX = DTE["next"].max
ITE_NEXT_MAX = ITE["next"].max
#: RDBase of a collection that is named by events but not mapped.
CTE_UNMAPPED_TARGET = CTE["RDBase"].max
#: The ITT address is stored from bit 8 up.
ITT_ADDR_SHIFT = 8


# ---------------------------------------------------------------------------- its-core-rev1

#: GITS_IIDR.Revision and "format" tag of a GICv4 ITS's saved state.
REV1_REVISION = 1
REV1_FORMAT = "its-core-rev1"
#: Bytes of one rev1 ITE (GITS_TYPER.ITT_entry_size = 15).
REV1_ITE_BYTES = 16
#: dword0 of a rev1 ITE: rev0's ITE, the INTID and ICID fields holding the
#: vINTID and vPEID of a virtual one.
REV1_ITE0 = Layout("ITE.dword0", Field.bits("next", 63, 48), Field.bits("INTID", 47, 16),
                   Field.bits("ICID_or_vPEID", 15, 0))
REV1_ITE1 = Layout("ITE.dword1", Field.bits("Virtual", 63), Field.bits("Doorbell", 31, 0))
#: Bytes of one VTE (= GITS_BASER2.Entry_Size + 1) by GIC version.
VTE_BYTES = {"4.0": 8, "4.1": 32}
VTE0 = Layout("VTE.dword0", Field.bits("Valid", 0), Field.bits("VPT_size", 5, 1),
              Field.bits("VPT_addr", 41, 6), Field.bits("RDbase", 57, 42))
VTE1_V41 = Layout("VTE.dword1", Field.bits("Armed", 63), Field.bits("VCONF_addr", 51, 16),
                  Field.bits("vSGI_Enable", 15, 0))
VTE2_V41 = Layout("VTE.dword2", Field.bits("vSGI_Group", 63, 48),
                  Field.bits("vSGI_Pending", 47, 32), Field.bits("Default_Doorbell", 31, 0))
VTE3_V41 = Layout("VTE.dword3", Field.bits("vSGI_Priority", 63, 0))
#: VTE VPT_addr holds the VPT address from bit 16 up (VMAPP's VPT_addr).
VPT_ADDR_SHIFT = 16
#: A vSGI priority nibble is the priority >> 4 (the VSGI command's field).
VSGI_PRIORITY_SHIFT = 4
