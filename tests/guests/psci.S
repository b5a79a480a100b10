// PSCI as a guest sees it: VERSION, MIGRATE_INFO_TYPE, FEATURES of three
// functions, AFFINITY_INFO of an off and an on CPU, CPU_ON of a CPU that is on
// and of one that does not exist, an unknown function.  One result per line.
    .text
    .global _start
_start:
    ldr x0, =0x84000000      // PSCI_VERSION
    hvc #0
    bl puthex
    bl newline
    ldr x0, =0x84000006      // MIGRATE_INFO_TYPE
    hvc #0
    bl puthex
    bl newline
    ldr x0, =0x8400000A      // PSCI_FEATURES(CPU_ON64)
    ldr x1, =0xC4000003
    hvc #0
    bl puthex
    bl newline
    ldr x0, =0x8400000A      // PSCI_FEATURES(SYSTEM_SUSPEND64)
    ldr x1, =0xC400000E
    hvc #0
    bl puthex
    bl newline
    ldr x0, =0x8400000A      // PSCI_FEATURES(PSCI_FEATURES)
    ldr x1, =0x8400000A
    hvc #0
    bl puthex
    bl newline
    ldr x0, =0xC4000004      // AFFINITY_INFO64(1, 0)
    mov x1, #1
    mov x2, #0
    hvc #0
    bl puthex
    bl newline
    ldr x0, =0xC4000003      // CPU_ON64(0) already on
    mov x1, #0
    adr x2, _start
    mov x3, #0
    hvc #0
    bl puthex
    bl newline
    ldr x0, =0xC4000003      // CPU_ON64(9) invalid
    mov x1, #9
    adr x2, _start
    hvc #0
    bl puthex
    bl newline
    ldr x0, =0x8400001F      // unknown
    hvc #0
    bl puthex
    bl newline
    ldr x0, =0xC4000004      // AFFINITY_INFO64(0, 0)
    mov x1, #0
    mov x2, #0
    hvc #0
    bl puthex
    bl newline
    ldr x0, =0x8400000A      // PSCI_FEATURES(SYSTEM_RESET2?)
    ldr x1, =0x84000012
    hvc #0
    bl puthex
    bl newline
    b system_off
