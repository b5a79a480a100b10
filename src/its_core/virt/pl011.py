"""The PL011 UART as QEMU models it (hw/char/pl011.c, QEMU 7.2), host side.

Transmission is instantaneous: a DR write goes to `output` (bytes) at once,
so FR.TXFF and FR.BUSY never read 1 and FR.TXFE always does.  Received bytes
come from a queue the host feeds (`feed`) into a 16-byte FIFO (1 byte with
LCR_H.FEN = 0); RXFE/RXFF follow it.  The interrupt line (SPI 1) is the OR of
the raw interrupts the guest unmasked in IMSC: RX when data waits, TX after a
transmission (cleared through ICR).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

# Register offsets.
DR, RSR, FR, ILPR, IBRD, FBRD, LCR_H, CR, IFLS, IMSC, RIS, MIS, ICR, DMACR = (
    0x00, 0x04, 0x18, 0x20, 0x24, 0x28, 0x2C, 0x30, 0x34, 0x38, 0x3C, 0x40, 0x44, 0x48)
#: PeriphID0..3 then CellID0..3, at 0xFE0..0xFFC (QEMU's "arm" flavour).
ID_BYTES = (0x11, 0x10, 0x14, 0x00, 0x0D, 0xF0, 0x05, 0xB1)
ID_OFFSET = 0xFE0

# FR bits.
FR_BUSY, FR_RXFE, FR_TXFF, FR_RXFF, FR_TXFE = 0x08, 0x10, 0x20, 0x40, 0x80
# Interrupt bits (RIS/MIS/IMSC/ICR).
INT_RX, INT_TX = 0x10, 0x20
LCR_FEN = 0x10
FIFO_DEPTH = 16


class PL011:
    """One PL011.  `output(data: bytes)` receives what the guest transmits;
    `on_irq(level: bool)` is called when the interrupt line changes."""

    def __init__(self, output: Callable[[bytes], None] | None = None,
                 on_irq: Callable[[bool], None] | None = None):
        self.output = output if output is not None else (lambda data: None)
        self.on_irq = on_irq
        self.pending_input: deque[int] = deque()   # fed by the host, not yet in the FIFO
        self.reset()

    def reset(self) -> None:
        self.fifo: deque[int] = deque()
        self.lcr_h = self.cr = self.ilpr = self.ibrd = self.fbrd = self.dmacr = 0
        self.cr = 0x300                              # TXE | RXE, as QEMU resets it
        self.ifls = 0x12
        self.imsc = 0
        self.raw = 0
        self._level = False
        self._refill()

    # -- host side -----------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Queue bytes for the guest to receive."""
        self.pending_input.extend(bytes(data))
        self._refill()

    @property
    def irq_level(self) -> bool:
        """The interrupt line: a raw interrupt the guest has unmasked."""
        return bool(self.raw & self.imsc)

    def _capacity(self) -> int:
        return FIFO_DEPTH if self.lcr_h & LCR_FEN else 1

    def _refill(self) -> None:
        while self.pending_input and len(self.fifo) < self._capacity():
            self.fifo.append(self.pending_input.popleft())
        if self.fifo:
            self.raw |= INT_RX
        else:
            self.raw &= ~INT_RX
        self._update()

    def _update(self) -> None:
        level = self.irq_level
        if level != self._level:
            self._level = level
            if self.on_irq is not None:
                self.on_irq(level)

    # -- guest side ----------------------------------------------------------

    def read(self, offset: int) -> int:
        """A guest read of the 32-bit register at `offset`."""
        if offset == FR:                                   # polled: first
            if not self.fifo:
                return FR_TXFE | FR_RXFE
            return FR_TXFE | (FR_RXFF if len(self.fifo) >= self._capacity() else 0)
        if offset == DR:
            value = self.fifo.popleft() if self.fifo else 0
            self._refill()
            return value
        if ID_OFFSET <= offset < ID_OFFSET + 4 * len(ID_BYTES) and offset % 4 == 0:
            return ID_BYTES[(offset - ID_OFFSET) // 4]
        return {RSR: 0, ILPR: self.ilpr, IBRD: self.ibrd, FBRD: self.fbrd, LCR_H: self.lcr_h,
                CR: self.cr, IFLS: self.ifls, IMSC: self.imsc, RIS: self.raw,
                MIS: self.raw & self.imsc, DMACR: self.dmacr}.get(offset, 0)

    def write(self, offset: int, value: int) -> None:
        """A guest write of `value` to the register at `offset`."""
        if offset == DR:
            self.output(bytes([value & 0xFF]))
            self.raw |= INT_TX
        elif offset == LCR_H:
            if (value ^ self.lcr_h) & LCR_FEN:               # FIFO switched: QEMU empties it
                self.fifo.clear()
            self.lcr_h = value & 0xFF
            self._refill()
            return
        elif offset == IMSC:
            self.imsc = value & 0x7FF
        elif offset == ICR:
            self.raw &= ~value
            if self.fifo:
                self.raw |= INT_RX                            # still data waiting
        elif offset == CR:
            self.cr = value & 0xFFFF
        elif offset == ILPR:
            self.ilpr = value & 0xFF
        elif offset == IBRD:
            self.ibrd = value & 0xFFFF
        elif offset == FBRD:
            self.fbrd = value & 0x3F
        elif offset == IFLS:
            self.ifls = value & 0x3F
        elif offset == DMACR:
            self.dmacr = value & 0x7
        self._update()

    # -- migration -----------------------------------------------------------

    def save(self) -> dict:
        return {"fifo": list(self.fifo), "pending_input": list(self.pending_input),
                "lcr_h": self.lcr_h, "cr": self.cr, "ilpr": self.ilpr, "ibrd": self.ibrd,
                "fbrd": self.fbrd, "ifls": self.ifls, "imsc": self.imsc, "raw": self.raw,
                "dmacr": self.dmacr}

    def restore(self, state: dict) -> None:
        self.fifo = deque(state["fifo"])
        self.pending_input = deque(state["pending_input"])
        for name in ("lcr_h", "cr", "ilpr", "ibrd", "fbrd", "ifls", "imsc", "raw", "dmacr"):
            setattr(self, name, int(state[name]))
        self._level = self.irq_level
