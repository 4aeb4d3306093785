"""Read the release straight from its split archive (``CLEAR_Train_Set.tar.gz.part.*``), in one streaming pass.

The parts are read one after another as a single gzip stream (no joined copy on disk), and the tar members are
written under a folder as they arrive, so memory stays flat however large the set. Only regular files are
written; a member with an absolute path or ``..`` is refused. A file already there with the member's size is
kept, so an interrupted extraction resumes cheaply.
"""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path, PurePosixPath

from clear_plugins.errors import ClearConfigError

PART_GLOB = "*.tar.gz.part.*"
"""How the release's parts are named (``CLEAR_Train_Set.tar.gz.part.aa`` ...)."""
_CHUNK = 1 << 20


class _Concatenated(io.RawIOBase):
    """Several files read back to back as one stream."""

    def __init__(self, paths: list[Path]) -> None:
        self._paths = list(paths)
        self._handle = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while True:
            if self._handle is None:
                if not self._paths:
                    return 0
                self._handle = self._paths.pop(0).open("rb")
            count = self._handle.readinto(buffer)
            if count:
                return count
            self._handle.close()
            self._handle = None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        super().close()


def archive_parts(path: Path) -> list[Path] | None:
    """The archive parts ``path`` names (a part, a ``.tar.gz`` file, or a folder of parts), or ``None`` if none."""
    if path.is_dir():
        parts = sorted(path.glob(PART_GLOB))
        return parts or None
    name = path.name
    if ".tar.gz.part." in name:
        prefix = name[: name.index(".tar.gz.part.")]
        return sorted(path.parent.glob(f"{prefix}.tar.gz.part.*"))
    if name.endswith((".tar.gz", ".tgz")) and path.is_file():
        return [path]
    return None


def _safe_target(root: Path, member: tarfile.TarInfo) -> Path:
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts:
        raise ClearConfigError(
            f"archive member {member.name!r} points outside the extraction folder; refusing it."
        )
    return root.joinpath(*name.parts)


def extract_parts(parts: list[Path], target: Path) -> int:
    """Stream the archive made of ``parts`` into ``target``; returns the number of files written or kept."""
    target.mkdir(parents=True, exist_ok=True)
    count = 0
    stream = io.BufferedReader(_Concatenated(parts), buffer_size=_CHUNK)
    try:
        with tarfile.open(fileobj=stream, mode="r|gz") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                destination = _safe_target(target, member)
                count += 1
                if destination.is_file() and destination.stat().st_size == member.size:
                    continue
                destination.parent.mkdir(parents=True, exist_ok=True)
                source = archive.extractfile(member)
                partial = destination.with_name(destination.name + ".part")
                with partial.open("wb") as handle:
                    shutil.copyfileobj(source, handle, _CHUNK)
                partial.replace(destination)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ClearConfigError(
            f"cannot read the archive parts {[p.name for p in parts]} ({exc}); check that every part is present "
            f"and complete (the files extracted so far are kept)."
        ) from None
    finally:
        stream.close()
    return count
