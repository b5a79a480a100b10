"""PSCI over HVC, as QEMU 7.2 answers it (target/arm/psci.c).

The firmware side of CPU power: a guest puts a function ID in x0 and its
arguments in x1..x3, executes ``HVC #0``, and finds the result in x0.
`call` decodes one call and acts through the machine's `PowerControl`.
Results were checked against QEMU (tests/guests/psci.S prints them on both).
"""

from __future__ import annotations

from typing import Protocol

# Function IDs (SMC32 = 0x84..., SMC64 = 0xC4...).
PSCI_VERSION = 0x8400_0000
CPU_SUSPEND_32, CPU_SUSPEND_64 = 0x8400_0001, 0xC400_0001
CPU_OFF = 0x8400_0002
CPU_ON_32, CPU_ON_64 = 0x8400_0003, 0xC400_0003
AFFINITY_INFO_32, AFFINITY_INFO_64 = 0x8400_0004, 0xC400_0004
MIGRATE_INFO_TYPE = 0x8400_0006
SYSTEM_OFF = 0x8400_0008
SYSTEM_RESET = 0x8400_0009
PSCI_FEATURES = 0x8400_000A

#: What PSCI_FEATURES reports as implemented (0); everything else is NOT_SUPPORTED.
IMPLEMENTED = frozenset({PSCI_VERSION, CPU_SUSPEND_32, CPU_SUSPEND_64, CPU_OFF, CPU_ON_32,
                         CPU_ON_64, AFFINITY_INFO_32, AFFINITY_INFO_64, MIGRATE_INFO_TYPE,
                         SYSTEM_OFF, SYSTEM_RESET, PSCI_FEATURES})

# Return codes.
SUCCESS = 0
NOT_SUPPORTED = -1
INVALID_PARAMETERS = -2
ALREADY_ON = -4

#: PSCI 1.1, what QEMU 7.2 reports.
VERSION_1_1 = 0x0001_0001
#: MIGRATE_INFO_TYPE: no Trusted OS (nothing to migrate).
NO_TRUSTED_OS = 2
# AFFINITY_INFO states.
AFFINITY_ON, AFFINITY_OFF = 0, 1


class PowerControl(Protocol):
    """What PSCI needs from the machine."""

    def cpu_by_affinity(self, affinity: int) -> int | None: ...
    def cpu_is_on(self, cpu: int) -> bool: ...
    def power_on(self, cpu: int, entry: int, context_id: int) -> None: ...
    def power_off(self, cpu: int) -> None: ...
    def suspend(self, cpu: int) -> None: ...
    def system_off(self) -> None: ...
    def system_reset(self) -> None: ...


def _u64(value: int) -> int:
    return value & 0xFFFF_FFFF_FFFF_FFFF


def call(machine: PowerControl, cpu: int, x0: int, x1: int, x2: int, x3: int) -> int | None:
    """Run one PSCI call made by `cpu`; the value for x0 (as an unsigned
    64-bit register value), or None when the call does not return to the
    caller (CPU_OFF, SYSTEM_OFF, SYSTEM_RESET)."""
    function = x0 & 0xFFFF_FFFF
    if function & 0x4000_0000 == 0:                 # SMC32: arguments are 32-bit
        x1, x2, x3 = x1 & 0xFFFF_FFFF, x2 & 0xFFFF_FFFF, x3 & 0xFFFF_FFFF
    if function == PSCI_VERSION:
        return VERSION_1_1
    if function == MIGRATE_INFO_TYPE:
        return NO_TRUSTED_OS
    if function == PSCI_FEATURES:
        return SUCCESS if (x1 & 0xFFFF_FFFF) in IMPLEMENTED else _u64(NOT_SUPPORTED)
    if function in (AFFINITY_INFO_32, AFFINITY_INFO_64):
        target = machine.cpu_by_affinity(x1)
        if x2 != 0 or target is None:
            return _u64(INVALID_PARAMETERS)
        return AFFINITY_ON if machine.cpu_is_on(target) else AFFINITY_OFF
    if function in (CPU_ON_32, CPU_ON_64):
        target = machine.cpu_by_affinity(x1)
        if target is None:
            return _u64(INVALID_PARAMETERS)
        if machine.cpu_is_on(target):
            return _u64(ALREADY_ON)
        machine.power_on(target, x2, x3)
        return SUCCESS
    if function in (CPU_SUSPEND_32, CPU_SUSPEND_64):
        machine.suspend(cpu)                         # a WFI until an interrupt, as QEMU
        return SUCCESS
    if function == CPU_OFF:
        machine.power_off(cpu)
        return None
    if function == SYSTEM_OFF:
        machine.system_off()
        return None
    if function == SYSTEM_RESET:
        machine.system_reset()
        return None
    return _u64(NOT_SUPPORTED)
