"""Host snapshots in files: ``.npz`` archives, read without pickle.

`save(path, its)` writes ``its.snapshot()`` (docs/save-format.md, "Host
snapshots (its-core-snapshot-1)") as an ``.npz``: one member per key of the
snapshot, a scalar as a 0-d array (``format`` a 0-d unicode array), never an
object array.  `load(path, memory)` reads it back with
``numpy.load(..., allow_pickle=False)`` (a file cannot run code) and builds
the ITS on `memory` with `ITS.from_snapshot`.  `write` and `read` are the two
halves for any snapshot dict, a `Redistributors.snapshot()` included::

    its_core.snapshot.write("rd.npz", rd.snapshot())
    rd = Redistributors.from_snapshot(its_core.snapshot.read("rd.npz"), memory)

A file that is not an ``.npz``, a truncated or corrupt one, one with object
members or members whose header promises more data than the archive holds,
another format string, missing or extra keys, wrong dtypes or shapes, and
contents no ITS can hold all raise `RestoreError` naming the key (``file``
when the archive itself is unreadable); nothing is built.  A path that cannot
be opened raises its OSError.  Guest memory is not in the file.
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from typing import BinaryIO, Union

import numpy as np

from its_core.abi import snapshot_format
from its_core.errors import RestoreError
from its_core.frontend.guest_memory import GuestMemory
from its_core.frontend.its import ITS
from its_core.frontend.redistributors import Redistributors

__all__ = ["FORMAT", "save", "load", "write", "read"]

#: The format string of the snapshots (the ``format`` member of a file).
FORMAT = snapshot_format.FORMAT

PathOrFile = Union[str, "os.PathLike[str]", BinaryIO]

#: What decoding a damaged archive can raise (all turned into RestoreError).
_DECODE_ERRORS = (ValueError, OSError, EOFError, KeyError, IndexError, TypeError,
                  NotImplementedError, OverflowError, MemoryError, zipfile.BadZipFile,
                  zlib.error, struct.error)


def _file_error(reason: str) -> RestoreError:
    return RestoreError("snapshot", None, "file", reason)


def write(path: PathOrFile, snapshot: dict) -> None:
    """Write a snapshot dict (`ITS.snapshot`, `Redistributors.snapshot`) to
    `path` (a path, written exactly there, or a binary file object) as an
    uncompressed ``.npz``, one member per key.

    Raises
    ------
    ValueError
        `snapshot` is not a valid snapshot's structure (the message names the
        key): nothing is written.
    """
    try:
        snapshot_format.check_structure(snapshot)
    except RestoreError as error:
        raise ValueError(f"not a snapshot to write: {error}") from error
    members = snapshot_format.to_npz_members(snapshot)
    if hasattr(path, "write"):
        np.savez(path, **members)
        return
    with open(path, "wb") as file:
        np.savez(file, **members)


def _member(archive: np.lib.npyio.NpzFile, name: str) -> np.ndarray:
    """One member, after checking its header: a plain dtype, and no more data
    than the archive holds for it (so a hostile header allocates nothing)."""
    try:
        info = archive.zip.getinfo(f"{name}.npy")
    except KeyError:
        raise _file_error(f"member {name!r} is not a .npy array") from None
    with archive.zip.open(info) as stream:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise RestoreError("snapshot", None, name, f".npy format version {version} is not "
                                                       "read")
    if dtype.hasobject:
        raise RestoreError("snapshot", None, name, "an object array: refused (a snapshot holds "
                                                   "no Python objects, and is read without pickle)")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if nbytes > info.file_size:
        raise RestoreError("snapshot", None, name, f"its header declares {shape} {dtype} "
                                                   f"({nbytes} bytes) but the member holds "
                                                   f"{info.file_size}")
    return archive[name]


def read(path: PathOrFile) -> dict:
    """Read a snapshot dict from an ``.npz`` written by `write` (a path or a
    binary file object), without pickle.  The structure is checked as
    `ITS.from_snapshot` checks it (RestoreError naming the key, or ``file``);
    the contents are checked when the dict is loaded."""
    file = path if hasattr(path, "read") else open(path, "rb")
    try:
        try:
            loaded = np.load(file, allow_pickle=False)
        except _DECODE_ERRORS as error:
            raise _file_error(f"not an .npz archive ({type(error).__name__}: {error})") from error
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise _file_error(f"not an .npz archive (a single {type(loaded).__name__})")
        with loaded as archive:
            try:
                members = {name: _member(archive, name) for name in archive.files}
            except RestoreError:
                raise
            except _DECODE_ERRORS as error:
                raise _file_error(f"damaged .npz archive ({type(error).__name__}: "
                                  f"{error})") from error
    finally:
        if file is not path:
            file.close()
    snapshot = snapshot_format.from_npz_members(members)
    snapshot_format.check_structure(snapshot)
    return snapshot


def save(path: PathOrFile, its: ITS, *, redistributors: bool = True) -> None:
    """Write ``its.snapshot(redistributors)`` to `path` as an ``.npz`` (`write`)."""
    if not isinstance(its, ITS):
        raise TypeError(f"its must be an ITS, got {type(its).__name__}")
    write(path, its.snapshot(redistributors=redistributors))


def load(path: PathOrFile, memory: GuestMemory, *, redistributors: Redistributors | None = None,
         layout: str | None = None) -> ITS:
    """The ITS a `save` wrote to `path`, rebuilt on `memory` (`read`, then
    `ITS.from_snapshot` with `redistributors` and `layout`).  RestoreError
    naming the key (or ``file``) for anything wrong with the file."""
    return ITS.from_snapshot(read(path), memory, redistributors=redistributors, layout=layout)
