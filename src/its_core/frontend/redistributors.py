"""The LPI side of the redistributors, as the guest sees it.

One redistributor per CPU, with the LPI registers of its RD_base frame
(declared in `its_core.registers`): GICR_CTLR.EnableLPIs, GICR_TYPER,
GICR_PROPBASER (one register shared by every CPU, as KVM keeps it) and
GICR_PENDBASER.  The state behind them (pending bitmaps, config cache) is
the native `LPIState`; see docs/front-end.md for when it loads what.
"""

from __future__ import annotations

from its_core.frontend import registers
from its_core.validation import as_uint

_ENABLE_LPIS = registers.GICR_CTLR.field("EnableLPIs")
_PROP_ADDRESS = registers.GICR_PROPBASER.field("Physical_Address")
_PROP_IDBITS = registers.GICR_PROPBASER.field("IDbits")
_PEND_ADDRESS = registers.GICR_PENDBASER.field("Physical_Address")
_PTZ = registers.GICR_PENDBASER.field("PTZ")
RD_FRAME_BYTES = 0x1_0000
#: Every valid guest access to an RD_base frame, (offset, size) -> (register, half).
_GICR_ACCESSES = registers.GICR_REGISTERS.accesses()


class Redistributors:
    """The redistributors of an `ITS` (``its.redistributors``)."""

    def __init__(self, its):
        self._its = its
        self._lpi = its.lpi_state
        self.num_cpus = its.num_cpus
        self._ctlr = [0] * self.num_cpus
        self._propbaser = registers.GICR_PROPBASER.reset
        self._pendbaser = [registers.GICR_PENDBASER.reset] * self.num_cpus
        self._ptz = [False] * self.num_cpus
        # GICR_TYPER is constant per CPU: Processor_Number (the PTA = 0 command
        # target) and Affinity are the CPU number; Last marks the last frame.
        self._typer = [registers.gicr_typer_value(cpu, cpu, last=cpu == self.num_cpus - 1)
                       for cpu in range(self.num_cpus)]
        self._lpi.set_propbaser(self.propbaser_address, _PROP_IDBITS.extract(self._propbaser))

    # -- derived values ---------------------------------------------------------

    @property
    def propbaser_address(self) -> int:
        """Physical address of the LPI configuration table."""
        return self._propbaser & _PROP_ADDRESS.mask

    def pendbaser_address(self, cpu: int) -> int:
        """Physical address of `cpu`'s LPI pending table."""
        return self._pendbaser[cpu] & _PEND_ADDRESS.mask

    @property
    def lpi_limit(self) -> int:
        """One past the highest usable LPI INTID: 2**min(IDbits + 1, intid_bits)."""
        return self._lpi.limit

    def lpis_enabled(self, cpu: int) -> bool:
        """GICR_CTLR.EnableLPIs of `cpu`."""
        return bool(_ENABLE_LPIS.extract(self._ctlr[cpu]))

    # -- MMIO --------------------------------------------------------------------

    def _check(self, cpu, offset, size):
        if type(cpu) is not int or not 0 <= cpu < self.num_cpus:
            cpu = as_uint(cpu, "cpu")
            if cpu >= self.num_cpus:
                raise ValueError(f"cpu {cpu} is not in 0..{self.num_cpus - 1}")
        if type(offset) is not int or not 0 <= offset < RD_FRAME_BYTES:
            offset = as_uint(offset, "offset")
            if offset >= RD_FRAME_BYTES:
                raise ValueError(f"offset {offset:#x} is outside the 64 KiB RD_base frame")
        if type(size) is not int or size not in (1, 2, 4, 8):
            raise ValueError(f"size must be 1, 2, 4 or 8 bytes, got {size!r}")
        return cpu, offset

    def _value(self, cpu: int, name: str) -> int:
        if name == "GICR_CTLR":
            return self._ctlr[cpu]
        if name == "GICR_TYPER":
            return self._typer[cpu]
        if name == "GICR_PROPBASER":
            return self._propbaser
        return self._pendbaser[cpu]

    def mmio_read(self, cpu: int, offset: int, size: int) -> int:
        """A guest read of `size` bytes at `offset` in `cpu`'s RD_base frame."""
        cpu, offset = self._check(cpu, offset, size)
        access = _GICR_ACCESSES.get((offset, size))
        if access is None:
            self._its._access_error(offset, size, False, 0, "no register of that size there",
                                    frame=f"GICR{cpu}")
            return 0
        value = self._value(cpu, access.register.name)
        return value if access.half is None else registers.read_half(value, access.half)

    def mmio_write(self, cpu: int, offset: int, value: int, size: int) -> None:
        """A guest write of `size` bytes at `offset` in `cpu`'s RD_base frame."""
        cpu, offset = self._check(cpu, offset, size)
        if type(value) is not int or value < 0 or value >> (8 * size):
            value = as_uint(value, "value", 8 * size)
        access = _GICR_ACCESSES.get((offset, size))
        if access is None:
            self._its._access_error(offset, size, True, value, "no register of that size there",
                                    frame=f"GICR{cpu}")
            return
        register = access.register
        old = self._value(cpu, register.name)
        new = value if access.half is None else registers.merge_half(old, access.half, value)
        if register.name == "GICR_CTLR":
            self._write_ctlr(cpu, register.merge_write(old, new))
        elif register.name == "GICR_PROPBASER":
            if not self.lpis_enabled(cpu):
                self._propbaser = register.merge_write(old, new)
                self._lpi.set_propbaser(self.propbaser_address,
                                        _PROP_IDBITS.extract(self._propbaser))
        elif register.name == "GICR_PENDBASER":
            if not self.lpis_enabled(cpu):
                merged = register.merge_write(old, new)
                self._ptz[cpu] = bool(_PTZ.extract(merged))
                self._pendbaser[cpu] = _PTZ.deposit(merged, 0)   # PTZ reads as 0

    def _write_ctlr(self, cpu: int, value: int) -> None:
        was, now = self.lpis_enabled(cpu), bool(_ENABLE_LPIS.extract(value))
        self._ctlr[cpu] = _ENABLE_LPIS.deposit(0, int(now))
        if now and not was:
            self._lpi.enable(cpu, self.pendbaser_address(cpu), self._ptz[cpu])
            self._ptz[cpu] = False
        elif was and not now:
            self._lpi.disable(cpu)
