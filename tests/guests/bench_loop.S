// Benchmark: a tight loop of 2 x 25 000 000 instructions, then power off.
    .text
    .global _start
_start:
    ldr x0, =25000000
1:  subs x0, x0, #1
    b.ne 1b
    b system_off
