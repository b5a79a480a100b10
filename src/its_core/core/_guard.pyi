"""Type stubs for the tables' thread guard (its_core/core/_guard.pyx)."""

class TableGuard:
    writing: int
    writes: int
    def cycle_pins(self, count: int) -> None: ...
    @property
    def pinned(self) -> int: ...
