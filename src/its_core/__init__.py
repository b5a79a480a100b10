"""its_core: a fast, exact software model of the Arm GICv3/GICv4 ITS.

`ITS` is the whole device as a guest sees it: the register frame
(`mmio_read` / `mmio_write`), the command queue in guest memory, the
GITS_TRANSLATER doorbell (`msi`), the LPI side of the redistributors and
save/restore in the KVM table ABI.  `bring_up` programs one from byte
addresses (`GuestMap`) as a guest driver does.

Underneath, `TranslationTables` maps (DeviceID, EventID) to an LPI INTID and
a target CPU in one of three storage layouts (`LAYOUTS`); `its_core.reference`
is the pure-Python model it is tested against.  `its_core.registers` and
`its_core.commands` declare the register and command layouts;
`its_core.snapshot` saves and loads host snapshots (`ITS.snapshot`) as
``.npz`` files.

The sources are grouped by layer: `its_core.core` (C types, storage layouts,
event stores, `TranslationTables`, the reference tables), `its_core.frontend`
(field vocabulary, registers, commands, guest memory, command processor, LPI
side, `ITS`, the reference ITS), `its_core.abi` (the KVM save format,
save/restore, dump) and `its_core.tools` (benchmarks, CLI, replay, docs).
The public import paths `its_core.commands`, `its_core.registers`,
`its_core.reference` and `its_core.testing` name the same modules as before.
"""

import pathlib as _pathlib
import sys as _sys

from its_core._version import __version__
from its_core.errors import (InvalidAccessError, ITSError, MappingError, RestoreError,
                             SaveError, TranslationError)

try:
    from its_core.core._core import (DEBUG_BUILD, LAYOUTS, MappingFailure, TranslationStatus,
                                     TranslationTables)
except ImportError as _error:                      # pragma: no cover - depends on the checkout
    _here = _pathlib.Path(__file__).resolve().parent
    if (_here.parent.parent / "setup.py").exists():
        raise ImportError(
            f"its_core is being imported from its source tree ({_here}), where the compiled "
            "extensions are not built: install it with `pip install .` and run Python "
            "outside src/ (or build in place: `python setup.py build_ext --inplace`)"
        ) from _error
    raise

from its_core.frontend.guest_memory import GuestMemory, GuestMemoryError
from its_core.frontend import commands, registers
from its_core.frontend.its import ITS
from its_core.frontend.bringup import GuestMap, bring_up
from its_core.frontend.redistributors import Redistributors
from its_core.core import reference
from its_core import snapshot

# The public module paths of the flat layout this package had: the same module
# objects under their old names, so `import its_core.registers` and
# `from its_core.commands import mapc` keep working.
for _name, _module in (("commands", commands), ("registers", registers),
                       ("reference", reference)):
    _sys.modules[f"{__name__}.{_name}"] = _module
del _name, _module

__all__ = [
    "__version__",
    "DEBUG_BUILD",
    "GuestMap",
    "GuestMemory",
    "GuestMemoryError",
    "ITS",
    "ITSError",
    "InvalidAccessError",
    "bring_up",
    "commands",
    "registers",
    "snapshot",
    "LAYOUTS",
    "MappingError",
    "MappingFailure",
    "Redistributors",
    "RestoreError",
    "SaveError",
    "TranslationError",
    "TranslationStatus",
    "TranslationTables",
]
