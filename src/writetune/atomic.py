"""Atomic outputs: a file written to a temporary file beside the target and renamed over it (`atomic_file`,
`write_text_atomic`), a directory built in a temporary directory beside the target and swapped into place
(`atomic_dir`), so a reader or a crash never sees half an output.
Temporary names carry the writer's process id, so a later writer can tell a dead writer's leftovers from a live
one's, and everything is created with the permissions the user's umask gives, as any other tool would."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def umask_mode(mode: int) -> int:
    """`mode` less the process umask: what open() and mkdir() give by default."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


@contextmanager
def atomic_file(path: str | os.PathLike, mode: int | None = None) -> Iterator[Path]:
    """Write a file whole: the block writes the temporary file it is given, beside `path` (whose directory is
    created), and it is renamed onto `path` when the block ends, or deleted when the block raises. `mode` sets the
    file's permissions (else those the umask gives a new file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, umask_mode(0o666) if mode is None else mode)  # mkstemp makes 0600 whatever the umask
        os.close(fd)
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str, mode: int | None = None) -> Path:
    """Write `text` (UTF-8) to `path` atomically (`atomic_file`), creating its directory; returns the path. `mode`
    sets the file's permissions (else those the umask gives a new file)."""
    path = Path(path)
    with atomic_file(path, mode) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def temp_dir_beside(target: Path, kind: str = "tmp") -> Path:
    """A new empty directory `.NAME.KIND-PID-XXXX` beside `target`, with umask permissions (mkdtemp makes 0700)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.{kind}-{os.getpid()}-"))
    tmp.chmod(umask_mode(0o777))
    return tmp


@contextmanager
def atomic_dir(target: str | os.PathLike, *, staging: Path | None = None, replace: bool = True) -> Iterator[Path]:
    """Build a directory whole: the block writes into the empty directory it is given, which is put at `target`
    when the block ends.

    An existing `target` is replaced (`swap_dir_into_place`); with `replace` False the new directory is renamed
    onto `target` only where nothing is there yet (else OSError, and the existing one stays). By default the
    temporary directory is a new `temp_dir_beside(target)`, deleted when the block raises. `staging` names it
    instead, for writers in several processes that must agree on the name: it is emptied first, and left as it is
    when the block raises (another process may still be writing into it; the writer removes such leftovers when it
    next starts)."""
    target = Path(target)
    if staging is None:
        tmp = temp_dir_beside(target)
    else:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        tmp = staging
    try:
        yield tmp
        if replace:
            swap_dir_into_place(tmp, target)  # an exchanged old `target` is deleted
        else:
            os.replace(tmp, target)
    except BaseException:
        if staging is None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_stale_temp_dirs(target: Path, kinds: tuple[str, ...] = ("tmp", "old")) -> list[Path]:
    """Delete the temporary directories of `target` (see `temp_dir_beside`) whose writer process is gone: what a
    killed writer left. Returns the directories removed."""
    if not target.parent.is_dir():
        return []
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(?:{'|'.join(map(re.escape, kinds))})-(?:(\d+)-)?")
    removed = []
    for entry in target.parent.iterdir():
        match = pattern.match(entry.name)
        if match is None or not entry.is_dir() or entry.is_symlink():
            continue
        if match.group(1) is not None and _alive(int(match.group(1))):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def swap_dir_into_place(tmp: Path, target: Path) -> None:
    """Put the directory `tmp` at `target`. An existing `target` is exchanged with `tmp` in one rename (Linux
    renameat2 RENAME_EXCHANGE), so `target` is never missing, and then deleted; where the exchange is not
    available it is renamed aside first."""
    if not target.exists():
        os.replace(tmp, target)
        return
    if _exchange(tmp, target):
        shutil.rmtree(tmp, ignore_errors=True)  # now the old output
        return
    trash = temp_dir_beside(target, "old")
    os.replace(target, trash / target.name)
    os.replace(tmp, target)
    shutil.rmtree(trash, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    return renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0
