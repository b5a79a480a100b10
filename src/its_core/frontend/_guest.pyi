"""Type stubs for its_core/frontend/_guest.pyx (C-level guest-memory window; internal)."""

from its_core.frontend.guest_memory import GuestMemory

class GuestWindow:
    base: int
    size: int
    def __init__(self, memory: GuestMemory) -> None: ...
