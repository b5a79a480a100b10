// Shared routines of the test guests: PL011 output, hex numbers, PSCI.
// Calling convention: arguments in x0.., x0-x7 and x16-x17 clobbered.

    .equ UART_BASE, 0x09000000
    .equ UART_FR, 0x18
    .equ PSCI_SYSTEM_OFF, 0x84000008

    .text
// putc(w0 = character)
    .global putc
putc:
    ldr x1, =UART_BASE
1:  ldr w2, [x1, #UART_FR]
    tbnz w2, #5, 1b                 // TXFF: wait
    strb w0, [x1]
    ret

// puts(x0 = NUL-terminated string)
    .global puts
puts:
    mov x3, x0
    mov x4, x30
1:  ldrb w0, [x3], #1
    cbz w0, 2f
    bl putc
    b 1b
2:  mov x30, x4
    ret

// puthex(x0 = value): 16 hex digits with a 0x prefix
    .global puthex
puthex:
    mov x5, x0
    mov x6, x30
    mov w0, #'0'
    bl putc
    mov w0, #'x'
    bl putc
    mov x7, #60
1:  lsr x0, x5, x7
    and x0, x0, #0xf
    cmp x0, #10
    add x16, x0, #'0'
    add x17, x0, #('a' - 10)
    csel x0, x16, x17, lo
    bl putc
    subs x7, x7, #4
    b.ge 1b
    mov x30, x6
    ret

// newline()
    .global newline
newline:
    mov x6, x30
    mov w0, #'\n'
    bl putc
    mov x30, x6
    ret

// system_off(): PSCI SYSTEM_OFF, never returns
    .global system_off
system_off:
    ldr x0, =PSCI_SYSTEM_OFF
    hvc #0
1:  wfi
    b 1b
