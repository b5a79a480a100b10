"""The KVM ITS table ABI, revision 0, and its-core-rev1: what a save writes into guest memory.

`its_core.abi.entries` declares the table entries as data (also reachable
here, as ``its_core.abi.DTE`` and so on); `saverestore` plans, checks, writes
and reads rev0's (with the native kernels of `_abi`), `rev1` a GICv4 ITS's
its-core-rev1; `dump` decodes a saved image for ``its-core dump``;
`snapshot_format` declares host snapshots.
"""

from its_core.abi.entries import *  # noqa: F401,F403  (the entry layouts, as before)
from its_core.abi.entries import __all__  # noqa: F401
