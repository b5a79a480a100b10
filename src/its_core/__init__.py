"""its_core: a fast, exact software model of the Arm GICv3/GICv4 ITS.

The translation core (`TranslationTables`) maps (DeviceID, EventID) to an LPI
INTID and a target CPU in one of three storage layouts; `its_core.reference`
is the pure-Python model it is tested against.
"""

from its_core._version import __version__
from its_core.errors import ITSError, MappingError, RestoreError, SaveError, TranslationError
from its_core._core import (DEBUG_BUILD, LAYOUTS, MappingFailure, TranslationStatus,
                            TranslationTables)
from its_core.guest_memory import GuestMemory, GuestMemoryError
from its_core import commands
from its_core.its import ITS

__all__ = [
    "__version__",
    "DEBUG_BUILD",
    "GuestMemory",
    "GuestMemoryError",
    "ITS",
    "ITSError",
    "commands",
    "LAYOUTS",
    "MappingError",
    "MappingFailure",
    "RestoreError",
    "SaveError",
    "TranslationError",
    "TranslationStatus",
    "TranslationTables",
]
