"""A version's files as a zip, written as it is sent: never the whole archive in memory."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from datetime import datetime
from typing import IO, cast

# The zip's entries carry the version's time: the archive of a version is the same every time.
CHUNK = 64 * 1024


class _Pipe:
    """A write-only, unseekable file whose bytes are taken out as they come."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.offset = 0

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self.offset

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def zip_stream(files: dict[str, str], when: datetime) -> Iterator[bytes]:
    """The zip of `files` (path -> text), in sorted order, chunk by chunk."""
    pipe = _Pipe()
    stamp = (max(when.year, 1980), when.month, when.day, when.hour, when.minute, when.second)
    sink = cast(IO[bytes], pipe)  # all ZipFile needs of a file: write, tell, flush
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(files):
            info = zipfile.ZipInfo(path, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with archive.open(info, "w") as entry:
                data = files[path].encode()
                for start in range(0, len(data), CHUNK):
                    entry.write(data[start : start + CHUNK])
                    if pipe.offset and len(pipe.parts) > 16:
                        yield pipe.drain()
            yield pipe.drain()
    yield pipe.drain()
