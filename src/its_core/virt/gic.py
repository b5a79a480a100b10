"""The GICv3 around its_core: distributor, SGI/PPI frames, CPU interfaces.

its_core models the ITS and the LPI side of the redistributors; a machine
needs the rest of a GICv3 to run a guest.  This module has what QEMU's
``-M virt,gic-version=3`` offers a non-secure EL1 guest (a GIC without
security extensions: GICD_CTLR.DS and ARE read 1); with ``gic_version``
"4.0" or "4.1" the distributor and redistributor identification registers
say GICv4 as QEMU's ``gic-version=4`` (PIDR2 ArchRev 4, GICD_TYPER.DVIS = 1;
the VLPI frames are its_core's `Redistributors`):

* the distributor (GICD): CTLR, TYPER, IIDR, PIDR2 and, for the SPIs, the
  group, enable, pending, active, priority, configuration and routing
  registers;
* per CPU, the rest of the RD_base frame (IIDR, WAKER, PIDR2; the LPI
  registers are its_core's `Redistributors`) and the SGI_base frame for SGIs
  and PPIs;
* per CPU, the CPU interface system registers (ICC_*_EL1), with priority,
  priority mask, running priority, binary point and EOI as the architecture
  defines them, and SGI generation (ICC_SGI1R_EL1).

Only Group 1 interrupts are delivered (as IRQs); Group 0 would be FIQs,
which Linux and the test guests never use on this board.  LPIs come from
its_core: the CPU interface asks `Redistributors.highest_pending` and takes
one with `Redistributors.acknowledge`.
"""

from __future__ import annotations

from collections.abc import Callable

from its_core.virt import memory_map as mm

NUM_PRIVATE = 32                    # SGIs 0-15, PPIs 16-31 (per CPU)
NUM_SGIS = 16
SPURIOUS = 1023
IDLE_PRIORITY = 0xFF
#: Priority bits implemented (QEMU: 5): priorities are multiples of 8.
PRIORITY_BITS = 5
PRIORITY_MASK = (0xFF << (8 - PRIORITY_BITS)) & 0xFF
#: ICC_BPR1_EL1's minimum (and reset) value with 5 priority bits.
BPR1_MIN = 8 - PRIORITY_BITS
LPI_FIRST = 8192

# GICD register offsets.
GICD_CTLR, GICD_TYPER, GICD_IIDR = 0x0000, 0x0004, 0x0008
GICD_IGROUPR, GICD_ISENABLER, GICD_ICENABLER = 0x0080, 0x0100, 0x0180
GICD_ISPENDR, GICD_ICPENDR, GICD_ISACTIVER, GICD_ICACTIVER = 0x0200, 0x0280, 0x0300, 0x0380
GICD_IPRIORITYR, GICD_ICFGR, GICD_IGRPMODR, GICD_IROUTER = 0x0400, 0x0C00, 0x0D00, 0x6000
GICD_PIDR2 = 0xFFE8
# GICR RD_base offsets this module answers (the rest is its_core's).
GICR_IIDR, GICR_WAKER, GICR_PIDR2 = 0x0004, 0x0014, 0xFFE8
# SGI_base frame offsets (same layout as the distributor's first words).
SGI_IGROUPR0, SGI_ISENABLER0, SGI_ICENABLER0 = 0x0080, 0x0100, 0x0180
SGI_ISPENDR0, SGI_ICPENDR0, SGI_ISACTIVER0, SGI_ICACTIVER0 = 0x0200, 0x0280, 0x0300, 0x0380
SGI_IPRIORITYR, SGI_ICFGR0, SGI_ICFGR1, SGI_IGRPMODR0 = 0x0400, 0x0C00, 0x0C04, 0x0D00

#: GICD_IROUTER<n>: Aff3 [39:32], Interrupt_Routing_Mode [31], Aff2.Aff1.Aff0 [23:0];
#: the other bits are RES0.
IROUTER_WRITABLE = (0xFF << 32) | (1 << 31) | 0xFF_FFFF
CTLR_ENABLE_GRP1 = 1 << 1
CTLR_ARE = 1 << 4
CTLR_DS = 1 << 6
#: IIDR: implementer ARM (0x43B), as QEMU.
IIDR = 0x0000_043B
#: PIDR2: ArchRev 3 (GICv3) in bits [7:4], JEDEC bit 3, ID 0xB.
PIDR2 = 0x3B
#: PIDR2 of a GICv4 (4.0 and 4.1 both report ArchRev 4), as QEMU's revision 4.
PIDR2_V4 = 0x4B
#: GICD_TYPER.DVIS: direct injection of virtual LPIs supported (GICv4).
GICD_TYPER_DVIS = 1 << 18
WAKER_PROCESSOR_SLEEP = 1 << 1
WAKER_CHILDREN_ASLEEP = 1 << 2

# CPU interface system registers: (op0, op1, CRn, CRm, op2).
ICC_PMR_EL1 = (3, 0, 4, 6, 0)
ICC_IAR1_EL1 = (3, 0, 12, 12, 0)
ICC_EOIR1_EL1 = (3, 0, 12, 12, 1)
ICC_HPPIR1_EL1 = (3, 0, 12, 12, 2)
ICC_BPR1_EL1 = (3, 0, 12, 12, 3)
ICC_CTLR_EL1 = (3, 0, 12, 12, 4)
ICC_SRE_EL1 = (3, 0, 12, 12, 5)
ICC_IGRPEN1_EL1 = (3, 0, 12, 12, 7)
ICC_DIR_EL1 = (3, 0, 12, 11, 1)
ICC_RPR_EL1 = (3, 0, 12, 11, 3)
ICC_SGI1R_EL1 = (3, 0, 12, 11, 5)
ICC_AP1R0_EL1 = (3, 0, 12, 9, 0)
#: ICC_CTLR_EL1 read-only fields: PRIbits = 4 (5 bits), IDbits = 0 (16), A3V = 1.
ICC_CTLR_RO = ((PRIORITY_BITS - 1) << 8) | (1 << 15)
ICC_CTLR_EOIMODE = 1 << 1
ICC_CTLR_CBPR = 1 << 0
#: ICC_SRE_EL1: SRE, DFB, DIB read as one (system registers only, as QEMU).
ICC_SRE_VALUE = 0x7
ICC_SGI1R_IRM = 1 << 40


class _Interrupts:
    """One bank of interrupts (a CPU's 32 private ones, or the SPIs): one-bit
    state as integer bitmasks (bit n = interrupt n of the bank), so finding
    the pending ones is a few integer operations, and a priority per
    interrupt."""

    FLAGS = ("group", "enabled", "latched", "level", "active", "edge")

    def __init__(self, count: int):
        self.count = count
        self.all = (1 << count) - 1
        self.group = 0          # 1: Group 1
        self.enabled = 0
        self.latched = 0        # pending state set by an edge or ISPENDR
        self.level = 0          # input line of a level-sensitive interrupt
        self.active = 0
        self.edge = 0           # ICFGR: 1 = edge-triggered
        self.priority = [0] * count

    @property
    def pending(self) -> int:
        return self.latched | (self.level & ~self.edge)

    def signalled(self) -> int:
        """The pending, enabled, Group 1, inactive interrupts (a bitmask)."""
        return self.pending & self.enabled & self.group & ~self.active

    def best(self) -> tuple[int, int] | None:
        """(priority, index) of the highest-priority signalled interrupt,
        ties to the lowest index; None if none."""
        mask = self.signalled()
        best = None
        while mask:
            index = (mask & -mask).bit_length() - 1
            mask &= mask - 1
            candidate = (self.priority[index] & PRIORITY_MASK, index)
            if best is None or candidate < best:
                best = candidate
        return best

    def save(self) -> dict:
        return {**{name: getattr(self, name) for name in self.FLAGS},
                "priority": list(self.priority)}

    def restore(self, state: dict) -> None:
        for name in self.FLAGS:
            setattr(self, name, int(state[name]) & self.all)
        self.priority = [int(value) for value in state["priority"]]


class CpuInterface:
    """ICC_* state of one CPU."""

    def __init__(self):
        self.pmr = 0
        self.bpr1 = BPR1_MIN
        self.ctlr = 0
        self.igrpen1 = False
        self.ap1r0 = 0                      # active priorities: bit n = group priority n << 3

    @property
    def running_priority(self) -> int:
        if not self.ap1r0:
            return IDLE_PRIORITY
        return ((self.ap1r0 & -self.ap1r0).bit_length() - 1) << (8 - PRIORITY_BITS)

    def group_priority(self, priority: int) -> int:
        return priority & (0xFF << self.bpr1) & PRIORITY_MASK

    def save(self) -> dict:
        return dict(pmr=self.pmr, bpr1=self.bpr1, ctlr=self.ctlr, igrpen1=self.igrpen1,
                    ap1r0=self.ap1r0)

    def restore(self, state: dict) -> None:
        for name, value in state.items():
            setattr(self, name, type(getattr(self, name))(value))


class Gic:
    """Distributor, per-CPU SGI/PPI state and CPU interfaces of `num_cpus`
    CPUs around its_core's `redistributors` (the LPI side).

    `changed(cpu)` is called whenever what CPU `cpu` could be signalled may
    have changed (the machine then re-evaluates it).  `gic_version` ("3",
    "4.0", "4.1") sets the identification registers (PIDR2, GICD_TYPER.DVIS)."""

    def __init__(self, num_cpus: int, redistributors, changed: Callable[[int], None],
                 gic_version: str = "3"):
        self.num_cpus = num_cpus
        self.gic_version = gic_version
        self.pidr2 = PIDR2 if gic_version == "3" else PIDR2_V4
        self.typer = (((mm.SPI_LINES + NUM_PRIVATE) // 32 - 1) | (1 << 17) | (15 << 19)
                      | (0 if gic_version == "3" else GICD_TYPER_DVIS))
        self.redistributors = redistributors
        self.changed = changed
        self.ctlr = CTLR_ARE | CTLR_DS
        self.spis = _Interrupts(mm.SPI_LINES)
        self.spi_route = [0] * mm.SPI_LINES          # IROUTER values
        self.private = [_Interrupts(NUM_PRIVATE) for _ in range(num_cpus)]
        for bank in self.private:
            bank.edge = (1 << NUM_SGIS) - 1            # SGIs are always edge-triggered
        self.waker = [WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP] * num_cpus
        self.cpu_interfaces = [CpuInterface() for _ in range(num_cpus)]

    # -- routing ---------------------------------------------------------------

    def spi_target(self, spi: int) -> int:
        """The CPU an SPI goes to (IRM = 1: CPU 0; an affinity no CPU has: none, -1)."""
        route = self.spi_route[spi]
        if route & (1 << 31):
            return 0
        affinity = (route & 0xFF_FFFF) | ((route >> 32 & 0xFF) << 24)
        for cpu in range(self.num_cpus):
            if mm.affinity(cpu) == affinity:
                return cpu
        return -1

    def set_spi_level(self, intid: int, level: bool) -> None:
        """A device drives SPI `intid`'s line (level-sensitive input)."""
        spi = intid - mm.SPI_BASE
        bit = 1 << spi
        if bool(self.spis.level & bit) != level:
            self.spis.level ^= bit
            if self.spis.edge & bit and level:
                self.spis.latched |= bit
            self._changed_spi(spi)

    def _changed_spi(self, spi: int) -> None:
        target = self.spi_target(spi)
        if target >= 0:
            self.changed(target)

    def _changed_all(self) -> None:
        for cpu in range(self.num_cpus):
            self.changed(cpu)

    # -- what a CPU is signalled -------------------------------------------------

    def highest_pending(self, cpu: int) -> tuple[int, int] | None:
        """(intid, priority) of `cpu`'s highest-priority pending, enabled,
        Group 1 interrupt, ties to the lowest INTID; None if none (the
        distributor's and the CPU interface's group enables included)."""
        if not (self.ctlr & CTLR_ENABLE_GRP1 and self.cpu_interfaces[cpu].igrpen1):
            return None
        best = self.private[cpu].best()
        spis = self.spis
        mask = spis.signalled()
        while mask:
            spi = (mask & -mask).bit_length() - 1
            mask &= mask - 1
            if self.spi_target(spi) == cpu:
                candidate = (spis.priority[spi] & PRIORITY_MASK, mm.SPI_BASE + spi)
                if best is None or candidate < best:
                    best = candidate
        lpi = self.redistributors.highest_pending(cpu)
        if lpi is not None:
            intid, priority = lpi
            candidate = (priority & PRIORITY_MASK, intid)
            if best is None or candidate < best:
                best = candidate
        return None if best is None else (best[1], best[0])

    def deliverable(self, cpu: int) -> bool:
        """Whether the CPU interface signals an IRQ to `cpu` now (its
        priority beats the priority mask and the running priority)."""
        found = self.highest_pending(cpu)
        if found is None:
            return False
        interface = self.cpu_interfaces[cpu]
        priority = found[1]
        return priority < interface.pmr and \
            interface.group_priority(priority) < interface.running_priority

    # -- CPU interface -------------------------------------------------------------

    def acknowledge(self, cpu: int) -> int:
        """ICC_IAR1_EL1: take the signalled interrupt (1023 if none)."""
        if not self.deliverable(cpu):
            return SPURIOUS
        intid, priority = self.highest_pending(cpu)
        interface = self.cpu_interfaces[cpu]
        if intid >= LPI_FIRST:
            taken = self.redistributors.acknowledge(cpu)
            assert taken == intid, "the LPI side changed between look and take"
        elif intid < NUM_PRIVATE:
            bank = self.private[cpu]
            bank.latched &= ~(1 << intid)
            bank.active |= 1 << intid
        else:
            spi = intid - mm.SPI_BASE
            self.spis.latched &= ~(1 << spi)
            self.spis.active |= 1 << spi
        interface.ap1r0 |= 1 << (interface.group_priority(priority) >> (8 - PRIORITY_BITS))
        return intid

    def end_of_interrupt(self, cpu: int, intid: int) -> None:
        """ICC_EOIR1_EL1: drop the running priority; deactivate too in EOImode 0."""
        interface = self.cpu_interfaces[cpu]
        if interface.ap1r0:
            interface.ap1r0 &= interface.ap1r0 - 1          # the highest active priority
        if not interface.ctlr & ICC_CTLR_EOIMODE:
            self.deactivate(cpu, intid)
        self.changed(cpu)

    def deactivate(self, cpu: int, intid: int) -> None:
        """ICC_DIR_EL1 (and EOI in EOImode 0): clear an SGI/PPI/SPI's active state."""
        intid &= 0xFF_FFFF
        if intid < NUM_PRIVATE:
            self.private[cpu].active &= ~(1 << intid)
        elif mm.SPI_BASE <= intid < mm.SPI_BASE + mm.SPI_LINES:
            self.spis.active &= ~(1 << (intid - mm.SPI_BASE))
            self._changed_spi(intid - mm.SPI_BASE)
        self.changed(cpu)

    def generate_sgi(self, cpu: int, value: int) -> None:
        """ICC_SGI1R_EL1: make an SGI pending on the CPUs it names."""
        intid = (value >> 24) & 0xF
        if value & ICC_SGI1R_IRM:
            targets = [other for other in range(self.num_cpus) if other != cpu]
        else:
            aff3, aff2, aff1 = (value >> 48) & 0xFF, (value >> 32) & 0xFF, (value >> 16) & 0xFF
            range_selector = (value >> 44) & 0xF
            target_list = value & 0xFFFF
            targets = [other for other in range(self.num_cpus)
                       if mm.affinity(other) >> 8 == (aff3 << 24 | aff2 << 8 | aff1) >> 0
                       and (mm.affinity(other) & 0xFF) >> 4 == range_selector
                       and target_list >> (mm.affinity(other) & 0xF) & 1]
        for target in targets:
            self.private[target].latched |= 1 << intid
            self.changed(target)

    def read_sysreg(self, cpu: int, encoding: tuple) -> int | None:
        """A CPU interface register read; None if `encoding` is not one."""
        interface = self.cpu_interfaces[cpu]
        if encoding == ICC_IAR1_EL1:
            return self.acknowledge(cpu)
        if encoding == ICC_HPPIR1_EL1:
            found = self.highest_pending(cpu)
            return SPURIOUS if found is None else found[0]
        if encoding == ICC_PMR_EL1:
            return interface.pmr
        if encoding == ICC_RPR_EL1:
            return interface.running_priority
        if encoding == ICC_BPR1_EL1:
            return interface.bpr1
        if encoding == ICC_CTLR_EL1:
            return interface.ctlr | ICC_CTLR_RO
        if encoding == ICC_SRE_EL1:
            return ICC_SRE_VALUE
        if encoding == ICC_IGRPEN1_EL1:
            return int(interface.igrpen1)
        if encoding == ICC_AP1R0_EL1:
            return interface.ap1r0
        if encoding in (ICC_EOIR1_EL1, ICC_DIR_EL1, ICC_SGI1R_EL1):
            return 0                                          # write-only
        return None

    def write_sysreg(self, cpu: int, encoding: tuple, value: int) -> bool:
        """A CPU interface register write; False if `encoding` is not one."""
        interface = self.cpu_interfaces[cpu]
        if encoding == ICC_EOIR1_EL1:
            self.end_of_interrupt(cpu, value & 0xFF_FFFF)
        elif encoding == ICC_DIR_EL1:
            self.deactivate(cpu, value)
        elif encoding == ICC_PMR_EL1:
            interface.pmr = value & PRIORITY_MASK
        elif encoding == ICC_BPR1_EL1:
            interface.bpr1 = max(BPR1_MIN, value & 0x7)
        elif encoding == ICC_CTLR_EL1:
            interface.ctlr = value & (ICC_CTLR_EOIMODE | ICC_CTLR_CBPR)
        elif encoding == ICC_IGRPEN1_EL1:
            interface.igrpen1 = bool(value & 1)
        elif encoding == ICC_AP1R0_EL1:
            interface.ap1r0 = value & 0xFFFF_FFFF
        elif encoding == ICC_SGI1R_EL1:
            self.generate_sgi(cpu, value)
            return True
        elif encoding in (ICC_SRE_EL1, ICC_IAR1_EL1, ICC_HPPIR1_EL1, ICC_RPR_EL1):
            pass                                              # RAO/WI or read-only
        else:
            return False
        self.changed(cpu)
        return True

    # -- MMIO: banks of per-interrupt registers ------------------------------------

    _BIT_REGISTERS = ((GICD_IGROUPR, "group", None), (GICD_ISENABLER, "enabled", True),
                      (GICD_ICENABLER, "enabled", False), (GICD_ISPENDR, "latched", True),
                      (GICD_ICPENDR, "latched", False), (GICD_ISACTIVER, "active", True),
                      (GICD_ICACTIVER, "active", False))

    def _bank_read(self, bank: _Interrupts, first: int, offset: int, size: int) -> int | None:
        """A read of the group/enable/pending/active/priority/config registers
        of `bank` (its interrupt 0 is INTID `first`), or None if `offset` is none."""
        for base, name, _ in self._BIT_REGISTERS:
            if base <= offset < base + 0x80:
                shift = (offset - base) // 4 * 32 - first
                flags = bank.pending if name == "latched" else getattr(bank, name)
                return ((flags << -shift) if shift < 0 else (flags >> shift)) & 0xFFFF_FFFF
        if GICD_IPRIORITYR <= offset < GICD_IPRIORITYR + 0x400:
            index = offset - GICD_IPRIORITYR - first
            return sum((bank.priority[index + byte] if 0 <= index + byte < bank.count else 0)
                       << (8 * byte) for byte in range(size))
        if GICD_ICFGR <= offset < GICD_ICFGR + 0x100:
            index = (offset - GICD_ICFGR) * 4 - first
            return sum(((2 if bank.edge >> (index + field) & 1 else 0) << (2 * field))
                       for field in range(16) if 0 <= index + field < bank.count)
        if GICD_IGRPMODR <= offset < GICD_IGRPMODR + 0x80:
            return 0
        return None

    def _bank_write(self, bank: _Interrupts, first: int, offset: int, size: int, value: int,
                    private_sgis: bool = False) -> bool:
        for base, name, setting in self._BIT_REGISTERS:
            if base <= offset < base + 0x80:
                shift = (offset - base) // 4 * 32 - first
                bits = ((value << shift) if shift >= 0 else (value >> -shift)) & bank.all
                word = ((0xFFFF_FFFF << shift) if shift >= 0 else
                        (0xFFFF_FFFF >> -shift)) & bank.all
                old = getattr(bank, name)
                if setting is None:                          # IGROUPR: the word as written
                    setattr(bank, name, (old & ~word) | bits)
                elif setting:
                    setattr(bank, name, old | bits)
                else:
                    setattr(bank, name, old & ~bits)
                return True
        if GICD_IPRIORITYR <= offset < GICD_IPRIORITYR + 0x400:
            index = offset - GICD_IPRIORITYR - first
            for byte in range(size):
                if 0 <= index + byte < bank.count:
                    bank.priority[index + byte] = (value >> (8 * byte)) & PRIORITY_MASK
        elif GICD_ICFGR <= offset < GICD_ICFGR + 0x100:
            index = (offset - GICD_ICFGR) * 4 - first
            for field in range(16):
                number = index + field
                if 0 <= number < bank.count and not (private_sgis and number < NUM_SGIS):
                    if value >> (2 * field + 1) & 1:
                        bank.edge |= 1 << number
                    else:
                        bank.edge &= ~(1 << number)
        elif GICD_IGRPMODR <= offset < GICD_IGRPMODR + 0x80:
            pass                                   # no security: RAZ/WI
        else:
            return False
        return True

    # -- the distributor frame -------------------------------------------------------

    def distributor_read(self, offset: int, size: int) -> int | None:
        """A GICD read; None for an offset that holds no register (RAZ)."""
        if offset == GICD_CTLR:
            return self.ctlr
        if offset == GICD_TYPER:
            return self.typer
        if offset == GICD_IIDR:
            return IIDR
        if offset == GICD_PIDR2:
            return self.pidr2
        if GICD_IROUTER + 8 * mm.SPI_BASE <= offset < GICD_IROUTER + 8 * (mm.SPI_BASE +
                                                                        mm.SPI_LINES):
            spi = (offset - GICD_IROUTER) // 8 - mm.SPI_BASE
            value = self.spi_route[spi]
            return value >> 32 if offset % 8 == 4 else value & (0xFFFF_FFFF_FFFF_FFFF
                                                                  if size == 8 else 0xFFFF_FFFF)
        # The words of INTIDs 0-31 read as zero (with ARE they are the
        # redistributors'): the SPI bank starts at INTID 32.
        return self._bank_read(self.spis, mm.SPI_BASE, offset, size)

    def distributor_write(self, offset: int, size: int, value: int) -> bool:
        """A GICD write; False for an offset that holds no register (WI)."""
        if offset == GICD_CTLR:
            self.ctlr = (value & CTLR_ENABLE_GRP1) | CTLR_ARE | CTLR_DS
            self._changed_all()
            return True
        if offset in (GICD_TYPER, GICD_IIDR, GICD_PIDR2):
            return True
        if GICD_IROUTER + 8 * mm.SPI_BASE <= offset < GICD_IROUTER + 8 * (mm.SPI_BASE +
                                                                        mm.SPI_LINES):
            spi = (offset - GICD_IROUTER) // 8 - mm.SPI_BASE
            old = self.spi_route[spi]
            if size == 8:
                new = value
            elif offset % 8 == 4:
                new = (old & 0xFFFF_FFFF) | (value << 32)
            else:
                new = (old & ~0xFFFF_FFFF) | value
            self.spi_route[spi] = new & IROUTER_WRITABLE
            self._changed_all()
            return True
        handled = self._bank_write(self.spis, mm.SPI_BASE, offset, size, value)
        if handled:
            self._changed_all()
        return handled

    # -- the redistributor frames (what its_core does not model) -----------------------

    def rd_read(self, cpu: int, offset: int) -> int | None:
        """A read of `cpu`'s RD_base register this module owns, or None."""
        if offset == GICR_IIDR:
            return IIDR
        if offset == GICR_WAKER:
            return self.waker[cpu]
        if offset == GICR_PIDR2:
            return self.pidr2
        return None

    def rd_write(self, cpu: int, offset: int, value: int) -> bool:
        if offset == GICR_WAKER:
            sleep = value & WAKER_PROCESSOR_SLEEP
            self.waker[cpu] = sleep | (WAKER_CHILDREN_ASLEEP if sleep else 0)
            return True
        return offset in (GICR_IIDR, GICR_PIDR2)

    def sgi_read(self, cpu: int, offset: int, size: int) -> int | None:
        """A read in `cpu`'s SGI_base frame, or None (RAZ)."""
        if offset in (SGI_ICFGR0, SGI_ICFGR1) or offset < SGI_IPRIORITYR + 0x20 and (
                offset & 0x7F) < 4 or SGI_IPRIORITYR <= offset < SGI_IPRIORITYR + 0x20:
            return self._bank_read(self.private[cpu], 0, offset, size)
        if offset == SGI_IGRPMODR0:
            return 0
        return None

    def sgi_write(self, cpu: int, offset: int, size: int, value: int) -> bool:
        if offset in (SGI_ICFGR0, SGI_ICFGR1) or offset < SGI_IPRIORITYR + 0x20 and (
                offset & 0x7F) < 4 or SGI_IPRIORITYR <= offset < SGI_IPRIORITYR + 0x20 \
                or offset == SGI_IGRPMODR0:
            handled = self._bank_write(self.private[cpu], 0, offset, size, value,
                                       private_sgis=True)
            self.changed(cpu)
            return handled
        return False

    # -- migration ------------------------------------------------------------------------

    def save(self) -> dict:
        return {"ctlr": self.ctlr, "spis": self.spis.save(), "spi_route": list(self.spi_route),
                "private": [bank.save() for bank in self.private], "waker": list(self.waker),
                "cpu_interfaces": [interface.save() for interface in self.cpu_interfaces]}

    def restore(self, state: dict) -> None:
        self.ctlr = int(state["ctlr"])
        self.spis.restore(state["spis"])
        self.spi_route = [int(value) for value in state["spi_route"]]
        for bank, saved in zip(self.private, state["private"]):
            bank.restore(saved)
        self.waker = [int(value) for value in state["waker"]]
        for interface, saved in zip(self.cpu_interfaces, state["cpu_interfaces"]):
            interface.restore(saved)
