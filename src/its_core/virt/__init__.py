"""A reference Arm machine on unicorn with its_core as its ITS (docs/virt.md).

`Machine` runs unmodified bare-metal AArch64 guests built for QEMU's ``-M
virt,gic-version=3``.  It needs the ``virt`` extra: ``pip install
"its_core[virt]"`` (unicorn, pylibfdt, pyelftools).
"""

try:
    import unicorn  # noqa: F401
    import libfdt  # noqa: F401
    import elftools  # noqa: F401
except ImportError as error:                         # pragma: no cover - depends on extras
    raise ImportError(f"its_core.virt needs the 'virt' extra ({error.name or error} is "
                      'missing): pip install "its_core[virt]"') from error

from its_core.virt.machine import Machine, RunResult

__all__ = ["Machine", "RunResult"]
