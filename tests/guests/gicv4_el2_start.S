// Entry of the EL2 guest gicv4_el2.c: QEMU's virt board with
// virtualization=on starts the image at EL2 (MMU off).  One stack, EL2
// vectors that report any exception and power off; PSCI through SMC (the
// conduit QEMU picks when the guest owns EL2).

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

    .balign 2048
vectors:
    .rept 16
    .balign 0x80
    b unexpected
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
