// Entry of the EL2 guest gicv4_el2.c: QEMU's virt board with
// virtualization=on starts the image at EL2 (MMU off).  One stack, EL2
// vectors that report any exception and power off; PSCI through SMC (the
// conduit QEMU picks when the guest owns EL2).  el1_call runs at EL1 (where,
// with HCR_EL2.IMO = 1, interrupts are virtual and ICC_* means the virtual
// ICV_* registers) and comes back through HVC.

    .equ STACK_BYTES, 0x4000

    .section .text.start, "ax"
    .global _start
_start:
    adr x1, stack_top
    mov sp, x1
    adr x1, vectors
    msr VBAR_EL2, x1
    isb
    bl main
    .global system_off
system_off:
    ldr x0, =0x84000008         // PSCI SYSTEM_OFF
    smc #0
    b .

// u64 el1_call(u64 which, u64 value): at EL1 (IRQs masked), which = 0:
// unmask IRQs and wait for one; the IRQ vector reads ICC_IAR1_EL1 and
// returns it (0 if none came); 1: write `value` to ICC_EOIR1_EL1 (returns
// it).  An exception at EL1 returns its ESR_EL1 | 1 << 63 instead.
    .global el1_call
el1_call:
    stp x29, x30, [sp, #-96]!
    stp x19, x20, [sp, #16]
    stp x21, x22, [sp, #32]
    stp x23, x24, [sp, #48]
    stp x25, x26, [sp, #64]
    stp x27, x28, [sp, #80]
    mov x2, sp
    adr x3, saved_sp
    str x2, [x3]
    adr x2, el1_vectors
    msr VBAR_EL1, x2
    adr x2, el1_entry
    msr ELR_EL2, x2
    mov x2, #0x3c5              // EL1h, D, A, I, F masked
    msr SPSR_EL2, x2
    isb
    eret

el1_entry:
    cbnz x0, 2f
    mov x2, #0x100000
    msr DAIFClr, #2             // IRQs on: a pending vIRQ is taken here
1:  subs x2, x2, #1
    b.ne 1b
    msr DAIFSet, #2
    mov x0, #0                  // none came
    hvc #0
2:  msr S3_0_C12_C12_1, x1      // ICC_EOIR1_EL1 (ICV_EOIR1_EL1)
    isb
    mov x0, x1
    hvc #0

el1_irq:
    mrs x0, S3_0_C12_C12_0      // ICC_IAR1_EL1 (ICV_IAR1_EL1)
    hvc #0

el2_from_el1:
    adr x3, saved_sp
    ldr x2, [x3]
    mov sp, x2
    ldp x19, x20, [sp, #16]
    ldp x21, x22, [sp, #32]
    ldp x23, x24, [sp, #48]
    ldp x25, x26, [sp, #64]
    ldp x27, x28, [sp, #80]
    ldp x29, x30, [sp], #96
    ret

el1_fault:
    mrs x0, ESR_EL1
    orr x0, x0, #(1 << 63)
    hvc #0

    .balign 2048
vectors:
    .rept 8                     // current EL
    .balign 0x80
    b unexpected
    .endr
    .balign 0x80                // lower EL, AArch64: synchronous (HVC)
    b el2_from_el1
    .rept 7
    .balign 0x80
    b unexpected
    .endr

    .balign 2048
el1_vectors:
    .rept 5                     // current EL, SP_EL0: 4; SP_EL1: synchronous
    .balign 0x80
    b el1_fault
    .endr
    .balign 0x80                // current EL, SP_EL1: IRQ
    b el1_irq
    .rept 10
    .balign 0x80
    b el1_fault
    .endr

unexpected:
    mrs x0, ESR_EL2
    mrs x1, ELR_EL2
    bl report_exception
    b system_off

    .bss
    .balign 16
stack:
    .skip STACK_BYTES
stack_top:
saved_sp:
    .skip 8
