// Boot: print a greeting, the device tree address (x0 at entry) and
// CurrentEL, then power off.
    .text
    .global _start
_start:
    mov x19, x0
    adr x0, greeting
    bl puts
    mov x0, x19
    bl puthex
    bl newline
    adr x0, el_text
    bl puts
    mrs x0, CurrentEL
    bl puthex
    bl newline
    b system_off

greeting: .asciz "hello from the guest; device tree at "
el_text:  .asciz "CurrentEL "
