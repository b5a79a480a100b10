// Entry, stacks and exception vectors of the C test guests.
//
// CPU 0 enters at _start with x0 = the device tree address; secondaries enter
// at secondary_start (PSCI CPU_ON) with x0 = their CPU number (the context
// ID).  Each CPU gets a 16 KiB stack, installs the vector table, and calls
// main(dtb) or secondary_main(cpu).  An IRQ calls irq_handler() with the
// caller-saved registers preserved; any other exception prints its syndrome
// and powers the machine off.

    .equ STACK_BYTES, 0x4000
    .equ MAX_CPUS, 8

    .section .text.start, "ax"
    .global _start
_start:
    mov x19, x0
    mov x0, #0
    bl setup_cpu
    mov x0, x19
    bl main
    b system_off

    .global secondary_start
secondary_start:
    mov x19, x0
    bl setup_cpu
    mov x0, x19
    bl secondary_main
    b cpu_off

// setup_cpu(x0 = cpu number): stack, vectors, no FP traps.  Uses x0-x2.
setup_cpu:
    adr x1, stacks
    add x0, x0, #1
    mov x2, #STACK_BYTES
    madd x1, x0, x2, x1
    mov sp, x1
    adr x1, vectors
    msr VBAR_EL1, x1
    mov x1, #(3 << 20)
    msr CPACR_EL1, x1
    isb
    ret

    .global cpu_off
cpu_off:
    ldr x0, =0x84000002
    hvc #0
    b .

    .macro SAVE_AND_CALL handler
    sub sp, sp, #(20 * 8)
    stp x0, x1, [sp, #0]
    stp x2, x3, [sp, #16]
    stp x4, x5, [sp, #32]
    stp x6, x7, [sp, #48]
    stp x8, x9, [sp, #64]
    stp x10, x11, [sp, #80]
    stp x12, x13, [sp, #96]
    stp x14, x15, [sp, #112]
    stp x16, x17, [sp, #128]
    stp x18, x30, [sp, #144]
    bl \handler
    ldp x0, x1, [sp, #0]
    ldp x2, x3, [sp, #16]
    ldp x4, x5, [sp, #32]
    ldp x6, x7, [sp, #48]
    ldp x8, x9, [sp, #64]
    ldp x10, x11, [sp, #80]
    ldp x12, x13, [sp, #96]
    ldp x14, x15, [sp, #112]
    ldp x16, x17, [sp, #128]
    ldp x18, x30, [sp, #144]
    add sp, sp, #(20 * 8)
    eret
    .endm

    .balign 2048
vectors:
    .balign 0x80            // current EL, SP_EL0: sync, IRQ, FIQ, SError
    b unexpected
    .balign 0x80
    b unexpected
    .balign 0x80
    b unexpected
    .balign 0x80
    b unexpected
    .balign 0x80            // current EL, SP_ELx
    b unexpected
    .balign 0x80
    SAVE_AND_CALL irq_handler
    .balign 0x80
    b unexpected
    .balign 0x80
    b unexpected

unexpected:
    mrs x0, ESR_EL1
    mrs x1, ELR_EL1
    bl report_exception
    b system_off

    .bss
    .balign 16
stacks:
    .skip STACK_BYTES * (MAX_CPUS + 1)
