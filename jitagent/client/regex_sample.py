"""Strings that match a regular expression, drawn at random: the simulated model's answer to a JSON
Schema ``pattern``.

The pattern is parsed with the standard library's own regular-expression parser (``re._parser``,
which ``re.compile`` uses, reached through :mod:`jitagent.client._compat`: no second grammar to
keep in step) and a string is built from its parse tree: literals as they are, a character class from the printable ASCII characters it holds,
alternatives and repeat counts at random (an unbounded repeat at most 3 times beyond its minimum),
back-references copied. Lookarounds and anchors are not built: every candidate is checked with
``re.search`` (how JSON Schema validators apply ``pattern``) and a length bound, and a few are
tried before giving up with a ``ValueError``. A candidate is at most 4,096 characters long (a
pattern such as ``a{100000000}`` is refused, not built).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from jitagent.client._compat import sre_constants as sre   # the parse tree's opcodes
from jitagent.client._compat import sre_parse

__all__ = ["sample_match"]

_PRINTABLE = tuple(chr(c) for c in range(32, 127))
_UNBOUNDED_EXTRA = 3       # an unbounded repeat (``*``, ``+``, ``{n,}``) runs at most this far past its minimum
_TRIES = 32
MAX_MATCH_CHARS = 4096     # the longest candidate built (a caller writes the pattern)
_CATEGORIES = {
    sre.CATEGORY_DIGIT: str.isdigit, sre.CATEGORY_NOT_DIGIT: lambda c: not c.isdigit(),
    sre.CATEGORY_SPACE: str.isspace, sre.CATEGORY_NOT_SPACE: lambda c: not c.isspace(),
    sre.CATEGORY_WORD: lambda c: c.isalnum() or c == "_", sre.CATEGORY_NOT_WORD: lambda c: not (c.isalnum() or c == "_"),
}


def sample_match(pattern: str, rng: np.random.Generator, min_length: int = 0, max_length: int | None = None) -> str:
    """A string that ``re.search(pattern, ...)`` matches, of ``min_length`` to ``max_length``
    characters. ``ValueError`` if ``pattern`` is not a regular expression, or no such string turned
    up in a few tries (a lookaround or a length bound the pattern can hardly meet)."""
    try:
        compiled = re.compile(pattern)
        tree = sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise ValueError(f"the pattern {pattern!r} is not a valid regular expression ({exc})") from None
    for _ in range(_TRIES):
        try:
            text = _Builder(rng).build(tree)
        except _TooLong:
            raise ValueError(f"matches of {pattern!r} run past {MAX_MATCH_CHARS} characters, the simulated "
                             f"engine's limit") from None
        pad = "x" * max(min_length - len(text), 0)   # an unanchored pattern also matches within a longer string
        for candidate in ((text, text + pad, pad + text) if pad else (text,)):
            if (max_length is None or len(candidate) <= max_length) and len(candidate) >= min_length \
                    and compiled.search(candidate):
                return candidate
    raise ValueError(f"no string of {min_length} to {max_length if max_length is not None else 'any'} characters "
                     f"matching {pattern!r} was found (the simulated engine builds matches, it does not search)")


class _TooLong(Exception):
    """A candidate grew past :data:`MAX_MATCH_CHARS`."""


class _Builder:
    """Builds one candidate from a parse tree; remembers groups for back-references."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.groups: dict[int, str] = {}
        self.chars = 0   # built so far, including pieces a branch or a repeat may drop

    def build(self, items: Any) -> str:
        return "".join(self._counted(self._item(op, arg)) for op, arg in items)

    def _counted(self, text: str) -> str:
        self.chars += len(text)
        if self.chars > MAX_MATCH_CHARS:
            raise _TooLong
        return text

    def _item(self, op: Any, arg: Any) -> str:
        if op is sre.LITERAL:
            return chr(arg)
        if op is sre.NOT_LITERAL:
            return self._pick([c for c in _PRINTABLE if ord(c) != arg])
        if op is sre.ANY:
            return self._pick(_PRINTABLE)
        if op is sre.IN:
            return self._pick(_class_members(arg))
        if op is sre.BRANCH:
            branches = arg[1]
            return self.build(branches[int(self.rng.integers(len(branches)))])
        if op is sre.SUBPATTERN:
            group, _, _, items = arg
            text = self.build(items)
            if group is not None:
                self.groups[group] = text
            return text
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
            low, high, items = arg
            high = low + _UNBOUNDED_EXTRA if high is sre.MAXREPEAT else high
            if low > MAX_MATCH_CHARS:
                raise _TooLong
            count = int(self.rng.integers(low, min(high, low + MAX_MATCH_CHARS) + 1))
            return "".join(self.build(items) for _ in range(count))
        if op is sre.GROUPREF:
            return self.groups.get(arg, "")
        if op is sre.ATOMIC_GROUP:
            return self.build(arg)
        return ""   # anchors and lookarounds match no text of their own: the final check judges them

    def _pick(self, choices: Any) -> str:
        if not choices:
            return ""   # an empty class: the candidate fails the check
        return choices[int(self.rng.integers(len(choices)))]


def _class_members(items: list[tuple[Any, Any]]) -> list[str]:
    """The printable ASCII characters a character class (``[...]``, ``\\d``) holds; a range wholly
    beyond ASCII contributes its first character."""
    negate = bool(items) and items[0][0] is sre.NEGATE
    tests = []
    extra: list[str] = []
    for op, arg in items[1:] if negate else items:
        if op is sre.LITERAL:
            tests.append(lambda c, code=arg: ord(c) == code)
            extra.append(chr(arg))
        elif op is sre.RANGE:
            tests.append(lambda c, low=arg[0], high=arg[1]: low <= ord(c) <= high)
            extra.append(chr(arg[0]))
        elif op is sre.CATEGORY:
            tests.append(_CATEGORIES.get(arg, lambda c: False))
    members = [c for c in _PRINTABLE if any(test(c) for test in tests) != negate]
    if not members and not negate:
        members = extra
    return members
