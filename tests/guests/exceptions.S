// Synchronous exceptions taken by the guest's own vectors: SVC #0x42, an
// undefined instruction (UDF #7) and BRK #3.  The handler prints ESR_EL1 and
// ELR_EL1 relative to the faulting code, steps over the instruction when
// ELR points at it (UDF, BRK; SVC's ELR is already past it) and returns.
    .text
    .global _start
_start:
    adr x0, vectors
    msr VBAR_EL1, x0
    isb
    adr x0, stack_top
    mov sp, x0
svc_site:
    svc #0x42
udf_site:
    .inst 0x00000007             // UDF #7
brk_site:
    brk #3
    adr x0, done_text
    bl puts
    b system_off

sync_handler:
    mov x20, x30
    adr x0, esr_text
    bl puts
    mrs x0, ESR_EL1
    bl puthex
    adr x0, elr_text
    bl puts
    mrs x0, ELR_EL1
    adr x1, _start
    sub x0, x0, x1
    bl puthex
    bl newline
    mrs x0, ESR_EL1
    lsr x0, x0, #26
    cmp x0, #0x15                // SVC: ELR is the next instruction already
    b.eq 1f
    mrs x0, ELR_EL1
    add x0, x0, #4
    msr ELR_EL1, x0
1:  mov x30, x20
    eret

    .balign 2048
vectors:
    .skip 0x200
    b sync_handler               // current EL, SP_ELx, synchronous
    .balign 0x80
    b .

esr_text:  .asciz "ESR "
elr_text:  .asciz " ELR-_start "
done_text: .asciz "done\n"
    .balign 16
    .skip 4096
stack_top:
