"""What jitagent reads from outside (workload files, span files, profiles), kept from hanging the
process, exhausting it or writing to its terminal.

Every file the command reads (workload files, span files, profiles) is opened by :func:`open_input`:
only a regular file of at most a given size is read, and anything else (a FIFO, a device, a socket,
a directory) is refused before a single byte is read, so that a FIFO cannot hang the command and
``/dev/zero`` cannot fill its memory. Parsed YAML or JSON is walked by :func:`check_nesting` before it
is validated: at most :data:`MAX_DEPTH` levels and :data:`MAX_VALUES` values (a YAML alias counted
each time it is used, as a validator sees it), so that neither recursion nor a "billion laughs" file
exhausts the process. :func:`printable` makes text that came from a file safe for a terminal, and
:func:`plot_label` for a picture.
"""

from __future__ import annotations

import os
import stat
import unicodedata
from collections.abc import Mapping
from typing import Any, BinaryIO

__all__ = ["MAX_DEPTH", "MAX_VALUES", "open_input", "read_input_text", "check_nesting", "check_output", "is_unicode",
           "printable", "plot_label"]

MAX_DEPTH = 32          # levels of nesting in a workload file; the schema needs 8
MAX_VALUES = 100_000    # values in a parsed file, aliases expanded; the example file has about 150

# Unicode categories escaped by printable(): controls (C0, DEL, C1: ESC starts terminal escape
# sequences), format characters (bidi overrides and isolates, zero-width characters), lone surrogates
# (which cannot even be encoded for output), and line and paragraph separators.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def open_input(path: str | os.PathLike[str], what: str, max_bytes: int) -> BinaryIO:
    """Open ``path`` for reading in binary, if it is a regular file of at most ``max_bytes`` bytes.

    The file is opened without blocking and checked through its descriptor, so a FIFO is refused
    rather than waited on, even one put in the file's place after a check by name.

    Raises:
        ValueError: one line naming the file and ``what`` it should be (``"workload file"``): not
            found, not a regular file, too large, or not readable.
    """
    where = printable(os.fspath(path))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ValueError(f"{where}: {what} not found") from None
    except OSError as exc:
        raise ValueError(f"{where}: cannot read {what}: {printable(exc.strerror or str(exc))}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{where}: {_kind(info.st_mode)}, not a {what} (only regular files are read)")
        if info.st_size > max_bytes:
            raise ValueError(f"{where}: {info.st_size} bytes, more than the {max_bytes} a {what} may have")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_input_text(path: str | os.PathLike[str], what: str, max_bytes: int) -> str:
    """The UTF-8 text of a regular file of at most ``max_bytes`` bytes (see :func:`open_input`).

    Raises:
        ValueError: one line naming the file: as :func:`open_input`, or not UTF-8 text.
    """
    with open_input(path, what, max_bytes) as file:
        data = file.read(max_bytes + 1)  # the file may have grown since it was checked
    where = printable(os.fspath(path))
    if len(data) > max_bytes:
        raise ValueError(f"{where}: more than the {max_bytes} bytes a {what} may have")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{where}: not UTF-8 text (byte {exc.start}): not a {what}") from None


def check_output(path: str | os.PathLike[str], what: str) -> None:
    """Refuse to write ``what`` to ``path`` if something other than a regular file is there (a FIFO
    would block the command until someone reads it; a device is no place for results).

    Raises:
        ValueError: one line naming the path and what is there.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ValueError(f"{printable(os.fspath(path))}: cannot write {what}: {printable(str(exc))}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{printable(os.fspath(path))}: {_kind(info.st_mode)}, not a place for {what} "
                         "(only regular files are written)")


def check_nesting(data: Any, where: str, max_depth: int = MAX_DEPTH, max_values: int = MAX_VALUES) -> None:
    """Walk parsed YAML or JSON without recursion; raise if it nests deeper than ``max_depth`` or
    holds more than ``max_values`` values (an object reached twice, as through a YAML alias, counts
    twice: a validator walks it twice).

    Raises:
        ValueError: ``where: PATH: nested deeper than N levels`` or ``where: more than N values``.
    """
    # Each entry's trail is (parent's trail, key): linked, so a long key is never copied per child.
    stack: list[tuple[Any, tuple[Any, ...] | None, int]] = [(data, None, 0)]
    seen = 1
    while stack:
        value, trail, depth = stack.pop()
        if not isinstance(value, (Mapping, list, tuple)):
            continue
        if depth >= max_depth:
            raise ValueError(f"{where}: {_path(trail) or 'the top level'}: nested deeper than {max_depth} levels")
        seen += len(value)  # counted before they are pushed: an alias used many times stops here
        if seen > max_values:
            raise ValueError(f"{where}: more than {max_values} values (YAML aliases counted at each use)")
        items = value.items() if isinstance(value, Mapping) else enumerate(value)
        stack.extend((item, (trail, key), depth + 1) for key, item in items)


def _path(trail: tuple[Any, ...] | None) -> str:
    """``classes[0].slo`` from a trail of (parent's trail, key) pairs."""
    keys = []
    while trail is not None:
        trail, key = trail
        keys.append(key)
    text = "".join(f"[{key}]" if isinstance(key, int) else f".{key}" for key in reversed(keys))
    return printable(text.removeprefix("."), 120)


def is_unicode(text: str) -> bool:
    """Whether ``text`` is valid Unicode, that is UTF-8 can encode it: JSON's ``\\ud800`` escapes
    decode to lone surrogates, which it cannot (and which vLLM cannot send to its engine process)."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def printable(text: str, limit: int | None = None) -> str:
    """``text`` safe to print on a terminal, on one line: control characters (newlines, ESC, C1),
    format characters (bidi overrides, zero-width characters), lone surrogates and line separators
    become visible escapes (``\\x1b``, ``\\u202e``, ``\\ud800``); with ``limit``, cut to that many
    characters, ``…`` marking the cut."""
    cut = limit is not None and len(text) > limit
    if cut:
        text = text[:limit]  # escapes only lengthen it: cut first, so a huge text costs no more than a short one
    if not text.isascii() or not text.isprintable():
        text = "".join(_escape(c) if unicodedata.category(c) in _UNSAFE_CATEGORIES else c for c in text)
    if limit is not None and (cut or len(text) > limit):
        text = text[:max(0, limit - 1)] + "…"
    return text


def plot_label(text: str, limit: int | None = None) -> str:
    """``text`` for matplotlib to draw as it is: :func:`printable`, and ``$`` escaped, since a pair
    of them starts mathtext, which fails on text that is not TeX."""
    return printable(text, limit).replace("$", r"\$")


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
