"""Output files of ``draw`` and ``plot``: checked before anything is computed, written whole or not at all.

A command refuses a path whose format it does not know (from the suffix), a
path under ``/dev``, ``/proc`` or ``/sys``, a folder, a path whose folder does
not exist, and an existing file unless ``--force`` is given.  The file is
written to a temporary file beside it, then renamed over it, so a failed
write leaves what was there.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from lang.errors import OutputRefused
from lang.scenario import shown

SYSTEM_ROOTS = (Path("/dev"), Path("/proc"), Path("/sys"))


def output_format(path: Path, formats: Sequence[str], option: str = "-o") -> str:
    """The format the suffix of ``path`` names, one of ``formats``."""
    suffix = path.suffix.lstrip(".").lower()
    if suffix not in formats:
        named = f"suffix {shown(path.suffix)}" if path.suffix else "no suffix"
        allowed = ", ".join(f".{fmt}" for fmt in formats)
        raise OutputRefused(f"{option}: {shown(str(path))} has {named}: allowed {allowed}")
    return suffix


def check_writable(path: Path, force: bool, option: str = "-o") -> None:
    """Refuse a path the command must not write (see the module docstring)."""
    resolved = path.resolve()
    name = shown(str(path))
    for root in SYSTEM_ROOTS:
        if resolved == root or root in resolved.parents:
            raise OutputRefused(f"{option}: {name} is under {root}: write output to an ordinary file")
    if resolved.is_dir():
        raise OutputRefused(f"{option}: {name} is a folder: name a file in it")
    if not resolved.parent.is_dir():
        raise OutputRefused(f"{option}: {name}: the folder {shown(str(resolved.parent))} does not exist")
    if (path.exists() or path.is_symlink()) and not force:
        raise OutputRefused(f"{option}: {name} exists: give --force to overwrite it")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed over ``path`` when the block ends without error."""
    descriptor, name = tempfile.mkstemp(dir=path.resolve().parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(descriptor)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_file(path: Path, write: Callable[[Path], Any]) -> None:
    """Call ``write`` on a temporary path, then put the file it wrote at ``path``."""
    with replacing(path) as temporary:
        write(temporary)
