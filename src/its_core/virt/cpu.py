"""One AArch64 CPU of the `virt` machine: a unicorn instance and its hooks.

Unicorn runs the guest's instructions; this class gives it what unicorn does
not have: the machine's MMIO (through `mmio_map`), the GIC CPU interface and
a few identification and counter registers (MRS/MSR hooks), PSCI (HVC), IRQ
exception entry, and WFI.  Guest RAM is mapped zero-copy from the machine's
one buffer, shared by every CPU.
"""

from __future__ import annotations

import ctypes

import unicorn
from unicorn import arm64_const as A

try:                                    # unicorn 2.1's ctypes binding, for the fast path
    from unicorn.unicorn_py3.unicorn import uclib as _uclib
except ImportError:                     # pragma: no cover - other unicorn layouts
    _uclib = None

#: Encodings of the instructions the machine looks at.
WFI = 0xD503_207F
HVC_MASK, HVC_0 = 0xFFE0_001F, 0xD400_0002
# unicorn exception numbers (QEMU's EXCP_*).
EXCP_UDEF = 1
EXCP_SWI = 2
EXCP_BKPT = 7
# Exception classes (ESR_EL1.EC) of the synchronous exceptions delivered to the guest.
EC_UNKNOWN, EC_SVC64, EC_BRK64 = 0x00, 0x15, 0x3C
ESR_IL = 1 << 25
# PSTATE.
PSTATE_I = 1 << 7
PSTATE_DAIF = 0x3C0
PSTATE_EL1H = 0x5
PSTATE_SP = 1
PSTATE_EL_SHIFT = 2
#: Vector offsets from VBAR_EL1 of an exception taken to EL1: the group for the
#: EL and stack pointer it came from, plus 0x000 (synchronous) or 0x080 (IRQ).
FROM_EL1_SP0, FROM_EL1_SPX, FROM_EL0 = 0x000, 0x200, 0x400
SYNCHRONOUS, IRQ = 0x000, 0x080
#: SPSR_EL1 through unicorn's CP_REG (crn, crm, op0, op1, op2).
SPSR_EL1 = (4, 0, 3, 0, 0)
#: System registers answered by the machine: (op0, op1, CRn, CRm, op2).
MPIDR_EL1 = (3, 0, 0, 0, 5)
CNTFRQ_EL0 = (3, 3, 14, 0, 0)
CNTPCT_EL0 = (3, 3, 14, 0, 1)
CNTVCT_EL0 = (3, 3, 14, 0, 2)
#: An address no code lives at: `emu_start` runs until its count instead.
NO_ADDRESS = 0xFFFF_FFFF_FFFF_FFFC
PAGE = 0x1000


class _Registers:
    """64-bit register reads and writes of one unicorn instance.  unicorn's
    `reg_read` spends about 3 us per call choosing a register class in
    Python; the hooks on the interrupt path make a dozen such calls, so plain
    64-bit registers go straight to the C library when this unicorn's
    binding is the one we know (unicorn 2.1), and through `reg_read`
    otherwise."""

    def __init__(self, uc):
        self.uc = uc
        handle = getattr(uc, "_uch", None)
        self.fast = _uclib is not None and handle is not None
        if self.fast:
            self.handle = handle
            self.value = ctypes.c_uint64()
            self.pointer = ctypes.byref(self.value)

    def read(self, register: int) -> int:
        if not self.fast:
            return self.uc.reg_read(register)
        status = _uclib.uc_reg_read(self.handle, register, self.pointer)
        if status:
            raise unicorn.UcError(status)
        return self.value.value

    def write(self, register: int, value: int) -> None:
        if not self.fast:
            self.uc.reg_write(register, value)
            return
        self.value.value = value
        status = _uclib.uc_reg_write(self.handle, register, self.pointer)
        if status:
            raise unicorn.UcError(status)


class GuestFault(Exception):
    """The guest did something the machine does not handle (an exception it
    takes, a fetch from nowhere): the run ends with this message."""


class Cpu:
    """CPU `index` of `machine` (a `Machine`)."""

    def __init__(self, machine, index: int):
        self.machine = machine
        self.index = index
        self.on = False
        self.waiting = False               # in WFI (or CPU_SUSPEND)
        # Set (by the machine) when what this CPU is signalled may have
        # changed while it runs.  A system register access that caused it
        # ends the slice right after itself (the hook steps over the
        # instruction).  A change from an MMIO access waits for the end of
        # the slice: unicorn restarts an instruction whose memory callback
        # stops the emulation, and stepping over it by hand would lose a
        # post-indexed store's register writeback.
        self.stop_requested = False
        self.uc = None
        self.fault: str | None = None

    # -- life cycle ---------------------------------------------------------------

    def reset(self) -> None:
        """A fresh core (architectural reset state), memory and devices mapped."""
        machine = self.machine
        uc = unicorn.Uc(unicorn.UC_ARCH_ARM64, unicorn.UC_MODE_ARM)
        uc.ctl_set_cpu_model(A.UC_CPU_ARM64_A57)
        uc.mem_map_ptr(machine.ram_base, machine.ram_bytes, unicorn.UC_PROT_ALL,
                       machine.ram.ctypes.data)
        for region, read, write in machine.mmio_regions(self.index):
            uc.mmio_map(region.base, region.size, read, None, write, None)
        uc.hook_add(unicorn.UC_HOOK_INSN, self._mrs, None, 1, 0, A.UC_ARM64_INS_MRS)
        uc.hook_add(unicorn.UC_HOOK_INSN, self._msr, None, 1, 0, A.UC_ARM64_INS_MSR)
        uc.hook_add(unicorn.UC_HOOK_INTR, self._exception)
        uc.hook_add(unicorn.UC_HOOK_MEM_UNMAPPED, self._unmapped)
        self.uc = uc
        self.registers = _Registers(uc)
        self.last_exception = ""
        self.waiting = False
        self.fault = None

    def power_on(self, entry: int, context_id: int) -> None:
        """Start at `entry`, EL1h, DAIF masked, MMU off, x0 = `context_id`."""
        self.reset()
        self.uc.reg_write(A.UC_ARM64_REG_PSTATE, PSTATE_DAIF | PSTATE_EL1H)
        self.uc.reg_write(A.UC_ARM64_REG_X0, context_id)
        self.uc.reg_write(A.UC_ARM64_REG_PC, entry)
        self.on = True

    def power_off(self) -> None:
        self.on = False
        self.waiting = False
        if self.uc is not None:
            self.uc.emu_stop()

    # -- running -------------------------------------------------------------------

    @property
    def pc(self) -> int:
        return self.registers.read(A.UC_ARM64_REG_PC)

    def run(self, count: int) -> None:
        """Run up to `count` instructions (fewer when something stops the slice)."""
        pc = self.pc
        self.stop_requested = False
        try:
            self.uc.emu_start(pc, NO_ADDRESS, 0, count)
        except unicorn.UcError as error:
            raise GuestFault(self.fault or f"CPU {self.index}: {error} near PC {self.pc:#x}")
        if self.fault is not None:
            raise GuestFault(self.fault)
        pc = self.pc
        if self.on and self._word(pc - 4) == WFI:
            self.waiting = True

    def stop(self) -> None:
        """End the current slice (from a hook that has already moved the PC
        past the instruction: HVC, MRS, MSR)."""
        if self.uc is not None:
            self.uc.emu_stop()

    def irq_masked(self) -> bool:
        return bool(self.registers.read(A.UC_ARM64_REG_PSTATE) & PSTATE_I)

    def take_irq(self) -> None:
        """Take an IRQ exception to EL1, as the core would: ELR_EL1 and
        SPSR_EL1 saved, DAIF masked, EL1h, PC at the vector for the current
        EL and stack pointer."""
        self._enter(IRQ, self.registers.read(A.UC_ARM64_REG_PC))
        self.waiting = False

    def _enter(self, kind: int, return_address: int, syndrome: int | None = None) -> None:
        """Exception entry to EL1 (`kind`: SYNCHRONOUS or IRQ)."""
        uc, registers = self.uc, self.registers
        pstate = registers.read(A.UC_ARM64_REG_PSTATE)
        if (pstate >> PSTATE_EL_SHIFT) & 3 == 0:
            offset = FROM_EL0 + kind
        else:
            offset = (FROM_EL1_SPX if pstate & PSTATE_SP else FROM_EL1_SP0) + kind
        if syndrome is not None:
            registers.write(A.UC_ARM64_REG_ESR_EL1, syndrome)
            self.last_exception = (f"after a synchronous exception (ESR {syndrome:#x}) at PC "
                                   f"{self.registers.read(A.UC_ARM64_REG_PC):#x} taken to "
                                   f"VBAR_EL1 {registers.read(A.UC_ARM64_REG_VBAR_EL1):#x}")
        registers.write(A.UC_ARM64_REG_ELR_EL1, return_address)
        uc.reg_write(A.UC_ARM64_REG_CP_REG, SPSR_EL1 + (pstate,))
        registers.write(A.UC_ARM64_REG_PSTATE, (pstate & ~0xF & ~PSTATE_DAIF) | PSTATE_DAIF
                        | PSTATE_EL1H)
        registers.write(A.UC_ARM64_REG_PC, registers.read(A.UC_ARM64_REG_VBAR_EL1) + offset)

    def _word(self, address: int) -> int | None:
        try:
            return int.from_bytes(self.uc.mem_read(address, 4), "little")
        except unicorn.UcError:
            return None

    # -- hooks ----------------------------------------------------------------------

    def _skip(self) -> bool:
        """Step over the hooked instruction (unicorn does not, for MRS/MSR),
        and end the slice there if the access changed what this CPU is
        signalled so that it now has an interrupt to take."""
        self.registers.write(A.UC_ARM64_REG_PC, self.registers.read(A.UC_ARM64_REG_PC) + 4)
        if self.stop_requested:
            self.stop_requested = False
            if self.machine.interrupt_due(self.index):
                self.uc.emu_stop()              # restarting a slice costs tens of us
        return True

    def _mrs(self, uc, register, cp_reg, data) -> bool:
        encoding = (cp_reg.op0, cp_reg.op1, cp_reg.crn, cp_reg.crm, cp_reg.op2)
        value = self.machine.read_sysreg(self.index, encoding)
        if value is None:
            return False                              # unicorn's own register
        self.registers.write(register, value)
        return self._skip()

    def _msr(self, uc, register, cp_reg, data) -> bool:
        encoding = (cp_reg.op0, cp_reg.op1, cp_reg.crn, cp_reg.crm, cp_reg.op2)
        if not self.machine.write_sysreg(self.index, encoding, cp_reg.val):
            return False
        return self._skip()

    def _exception(self, uc, number, data) -> None:
        pc = uc.reg_read(A.UC_ARM64_REG_PC)
        word = self._word(pc)
        if number == EXCP_UDEF and word is not None and word & HVC_MASK == HVC_0:
            registers = [uc.reg_read(getattr(A, f"UC_ARM64_REG_X{n}")) for n in range(4)]
            uc.reg_write(A.UC_ARM64_REG_PC, pc + 4)
            result = self.machine.psci_call(self.index, *registers)
            if result is not None:
                uc.reg_write(A.UC_ARM64_REG_X0, result)
            return
        # The guest's own synchronous exceptions go to its vectors, with the
        # syndrome and return address the core would give (checked against
        # QEMU: tests/guests/exceptions.S).  A guest without vectors then
        # fetches from an unmapped address, which ends the run.
        if number == EXCP_SWI:                       # PC is past the SVC already
            svc = self._word(pc - 4) or 0
            self._enter(SYNCHRONOUS, pc, (EC_SVC64 << 26) | ESR_IL | (svc >> 5 & 0xFFFF))
            return
        if number == EXCP_BKPT and word is not None:
            self._enter(SYNCHRONOUS, pc, (EC_BRK64 << 26) | ESR_IL | (word >> 5 & 0xFFFF))
            return
        if number == EXCP_UDEF:
            self._enter(SYNCHRONOUS, pc, (EC_UNKNOWN << 26) | ESR_IL)
            return
        self.fault = (f"CPU {self.index}: exception {number} (not handled by the machine) at "
                      f"PC {pc:#x}" + (f", instruction {word:#010x}" if word is not None else ""))
        uc.emu_stop()

    def _unmapped(self, uc, access, address, size, value, data) -> bool:
        if access == unicorn.UC_MEM_FETCH_UNMAPPED:
            self.fault = (f"CPU {self.index}: instruction fetch from unmapped address "
                          f"{address:#x}" + (f" ({self.last_exception})"
                                             if self.last_exception else ""))
            return False
        # Read as zero, writes ignored, counted by the machine's callbacks; the
        # page stays mapped that way for this CPU.
        page = address & ~(PAGE - 1)
        uc.mmio_map(page, PAGE, self.machine.raz, None, self.machine.wi, None)
        return True
