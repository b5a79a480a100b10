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
"""

from __future__ import annotations

from its_core.frontend.fields import Field, Layout

__all__ = ["REVISION", "FORMAT", "ENTRY_BYTES", "DTE", "ITE", "CTE", "L1_DESCRIPTOR",
           "DTE_NEXT_MAX", "ITE_NEXT_MAX", "CTE_UNMAPPED_TARGET", "ITT_ADDR_SHIFT"]

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
