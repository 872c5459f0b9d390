"""Bounded tool results (DESIGN section 17): a file read a page at a time, a capped listing.

read_file {path, offset?, limit?}: lines offset .. offset+limit (offset counts lines skipped,
    from 0), at most MAX_PAGE_LINES lines or MAX_PAGE_BYTES bytes, with totalLines, truncated
    and, when more follows, nextOffset
list_files: at most MAX_LIST_ENTRIES paths, with the total and truncated
"""

from __future__ import annotations

from typing import Any

MAX_PAGE_LINES = 2000
MAX_PAGE_BYTES = 64 * 1024
MAX_LIST_ENTRIES = 500

# What the system prompt tells the model about paging (context.py adds it).
PAGING_GUIDE = (
    "Tool results are bounded to fit your context: read_file returns at most "
    f"{MAX_PAGE_LINES:,} lines or {MAX_PAGE_BYTES // 1024} KiB per call with totalLines and "
    "truncated; when truncated, call it again with offset set to the nextOffset it gave (and "
    "optionally limit, in lines) for the next page. run_command keeps the start and the end of "
    f"long output; list_files lists at most {MAX_LIST_ENTRIES} paths (list a subdirectory for "
    "more). Older tool results may later be replaced by a short note; read or run again what "
    "you need."
)

READ_FILE_PROPERTIES: dict[str, Any] = {
    "path": {"type": "string", "description": "Path relative to the workspace root."},
    "offset": {
        "type": "integer",
        "description": "Lines to skip from the start of the file (default 0): a page's nextOffset.",
    },
    "limit": {
        "type": "integer",
        "description": f"Lines to return (default and at most {MAX_PAGE_LINES}).",
    },
}


class PageError(ValueError):
    """An offset or limit the model got wrong."""


def read_page(path: str, content: str, offset: Any = None, limit: Any = None) -> dict[str, Any]:
    """One page of a file's lines, as the read_file tool returns it."""
    start = _whole(offset, "offset", 0, minimum=0)
    count = min(_whole(limit, "limit", MAX_PAGE_LINES, minimum=1), MAX_PAGE_LINES)
    lines = content.splitlines(keepends=True)
    total = len(lines)
    if start > total:
        raise PageError(f"offset {start} is past the end of {path} ({total} lines)")
    page: list[str] = []
    size = 0
    for line in lines[start : start + count]:
        room = MAX_PAGE_BYTES - size
        encoded = len(line.encode())
        if encoded > room:
            if not page:  # one line longer than a page: its start, cut at a character
                page.append(line.encode()[:room].decode(errors="ignore"))
            break
        page.append(line)
        size += encoded
    # A line cut in the middle counts as read: the next page starts after it.
    end = start + len(page)
    result: dict[str, Any] = {
        "path": path,
        "content": "".join(page),
        "offset": start,
        "lines": len(page),
        "totalLines": total,
        "truncated": end < total or (bool(page) and page[-1] != lines[end - 1]),
    }
    if end < total:
        result["nextOffset"] = end
    return result


def capped_listing(files: list[str]) -> dict[str, Any]:
    """The list_files result: at most MAX_LIST_ENTRIES paths."""
    result: dict[str, Any] = {"files": files[:MAX_LIST_ENTRIES]}
    if len(files) > MAX_LIST_ENTRIES:
        result |= {"total": len(files), "truncated": True}
    return result


def _whole(value: Any, name: str, default: int, *, minimum: int) -> int:
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise PageError(f"{name} must be a whole number of lines, at least {minimum}")
    return value
