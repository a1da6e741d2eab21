"""Import sources: the lines of a file to import, whatever its packaging, with their numbers.

A path is plain text, gzip (``.gz`` or the gzip magic bytes) or a zip archive (every member
that is not a directory, in name order). :func:`read_lines` yields :class:`SourceLine`\\ s —
the member's name, the line number and the raw bytes without the line break — and turns a
truncated or corrupt archive into an :class:`ImportFailure` naming the file (and, where a
reader can tell, the line), so the importer's validation pass refuses the file before
anything is written.
"""

from __future__ import annotations

import gzip
import io
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import DomainError

GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"
MAX_LINE_BYTES = 1 << 20


class ImportFailure(DomainError):
    """The input cannot be imported: answered with the file, the line and what is wrong.
    ``field`` is ``path`` (or ``kind``, ``site``); the message names ``file:line``."""

    def __init__(self, where: str, message: str, field: str = "path", status: int = 422) -> None:
        super().__init__(field, f"{where}: {message}" if where else message, status)


@dataclass(frozen=True, slots=True)
class SourceLine:
    file: str
    number: int
    data: bytes

    @property
    def where(self) -> str:
        return f"{self.file}:{self.number}"


def _lines_of(stream, name: str) -> Iterator[SourceLine]:
    number = 0
    try:
        for raw in stream:
            number += 1
            if len(raw) > MAX_LINE_BYTES:
                raise ImportFailure(f"{name}:{number}", f"line longer than {MAX_LINE_BYTES} bytes")
            yield SourceLine(name, number, raw.rstrip(b"\r\n"))
    except (EOFError, gzip.BadGzipFile, zlib.error, zipfile.BadZipFile) as error:
        raise ImportFailure(f"{name}:{number + 1}", f"truncated or corrupt compressed data ({error})") from None


def _kind_of(path: Path) -> str:
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head == ZIP_MAGIC:
        return "zip"
    return "plain"


def read_lines(path: str | Path) -> Iterator[SourceLine]:
    """Every line of ``path`` (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ImportFailure(str(path), "no such file")
    packaging = _kind_of(path)
    if packaging == "plain":
        with open(path, "rb") as handle:
            yield from _lines_of(handle, path.name)
    elif packaging == "gzip":
        with gzip.open(path, "rb") as handle:
            yield from _lines_of(handle, path.name)
    else:
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as error:
            raise ImportFailure(path.name, f"not a readable zip archive ({error})") from None
        with archive:
            for member in sorted(archive.namelist()):
                if member.endswith("/"):
                    continue
                try:
                    with archive.open(member) as handle:
                        yield from _lines_of(io.BufferedReader(handle), f"{path.name}/{member}")
                except zipfile.BadZipFile as error:
                    raise ImportFailure(f"{path.name}/{member}", f"corrupt zip member ({error})") from None
