"""Files written whole or not at all: :func:`write_atomic` is how stence-bench writes every file (or folder) that
another process, a later run or a reader after a kill may open: stores, views, checkpoints, embeddings, results.

The new content goes to a temporary name beside the target (the same folder, so the same file system), which is
renamed onto the target in one step (``os.replace``). A reader sees the old file or the new one, never half of
one; a writer that raises (or a ``KeyboardInterrupt``) leaves the old file as it was and no temporary file. A
process killed outright (SIGKILL, power loss) may leave its temporary file: its name ends in ``.tmp`` (see
:func:`temporaries`), and it is never read as the target.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["TEMPORARY_SUFFIX", "temporaries", "write_atomic"]

#: How every temporary name of :func:`write_atomic` ends.
TEMPORARY_SUFFIX = ".tmp"


def write_atomic(path: str | os.PathLike[str], data: bytes | str | None = None, *,
                 writer: Callable[[Path], object] | None = None) -> Path:
    """Write ``path`` whole or not at all; returns it as a :class:`~pathlib.Path`.

    Give either ``data`` (bytes, or text written as UTF-8) or ``writer``: a function called with a temporary path
    beside ``path`` that it creates and fills, as a library's ``save(obj, path)`` does (a file, or a folder when
    ``path`` does not exist yet: a folder cannot replace a folder). The temporary name is this process's own
    (``NAME.PID.RANDOM.tmp``): two processes writing the same file, such as two SLURM jobs opening one store,
    never take each other's; the last rename wins, whole. The folder of ``path`` must exist.
    """
    if (data is None) == (writer is None):
        raise TypeError("write_atomic takes either data or writer, not both or neither")
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{TEMPORARY_SUFFIX}")
    try:
        if writer is None:
            assert data is not None
            tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        else:
            writer(tmp)
            if not os.path.lexists(tmp):
                raise FileNotFoundError(f"write_atomic: the writer of {path} wrote nothing to {tmp}")
        os.replace(tmp, path)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.lexists(tmp):
            tmp.unlink()
    return path


def temporaries(path: str | os.PathLike[str]) -> Iterator[Path]:
    """The temporary files (or folders) that :func:`write_atomic` left beside ``path`` when a process writing it
    was killed outright."""
    path = Path(path)
    if not path.parent.is_dir():
        return iter(())
    prefix = f"{path.name}."
    return (p for p in path.parent.iterdir()
            if p.name.startswith(prefix) and p.name.endswith(TEMPORARY_SUFFIX) and _is_temporary(p.name, prefix))


def _is_temporary(name: str, prefix: str) -> bool:
    """``NAME.PID.RANDOM.tmp``: the two middle parts are digits and eight hex digits."""
    middle = name[len(prefix):-len(TEMPORARY_SUFFIX)].split(".")
    return (len(middle) == 2 and middle[0].isdigit() and len(middle[1]) == 8
            and all(c in "0123456789abcdef" for c in middle[1]))
