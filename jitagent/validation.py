"""One line for a pydantic validation error: the one formatter of every validated input in jitagent.

SLOs, hardware profiles, workload files and the vLLM scheduler's settings all report a bad value
as ``where: what`` per error, joined by ``; `` (``classes[0].slo.ttft_s: must be ...``), so that
a message reads the same wherever the input came from.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError

__all__ = ["describe_validation_error"]


def describe_validation_error(exc: ValidationError, *, tags: Sequence[str] = ()) -> str:
    """``where: what`` for each error of ``exc``, joined by ``; ``.

    Args:
        tags: the tags of a discriminated union at the top (the SLO kinds): pydantic puts the tag
            in the location of an error within a member, where it says nothing the input said.
            Tags of function unions (``<...>``) are always left out.
    """
    parts = []
    errors = exc.errors(include_url=False)
    for err in errors:
        # A collection whose invalid items were dropped is then also "too short": say only what is wrong.
        if err["type"] == "too_short" and any(e["loc"][:len(err["loc"])] == err["loc"] and e is not err
                                              for e in errors):
            continue
        where = _location(err["loc"], tags)
        msg = _message(err, tags)
        if err["type"] == "union_tag_invalid":
            where = f"{where}.{_discriminator(err)}" if where else _discriminator(err)
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def _location(loc: tuple[int | str, ...], tags: Sequence[str]) -> str:
    """``a.b[0].c`` from pydantic's location, union tags left out."""
    where = ""
    for index, part in enumerate(loc):
        if isinstance(part, int):
            where += f"[{part}]"
        elif not (part.startswith("<") or (index == 0 and part in tags)):  # names cannot start with "<"
            where += f".{part}" if where else part
    return where


def _message(err: dict, tags: Sequence[str]) -> str:   # type: ignore[type-arg]  # pydantic's ErrorDetails
    kind = err["type"]
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        return "unknown field"
    if kind == "missing":
        return "required field missing"
    if kind == "too_short":
        n = err["ctx"]["min_length"]
        return f"must have at least {n} {'entry' if n == 1 else 'entries'}"
    if kind == "union_tag_invalid":
        return f"{_discriminator(err)} must be one of {err['ctx']['expected_tags']}"
    if kind == "union_tag_not_found":
        known = f" (one of {', '.join(map(repr, tags))})" if tags else ""
        return f"missing {err['ctx']['discriminator']}{known}"
    return str(err["msg"]).removeprefix("Value error, ")


def _discriminator(err: dict) -> str:   # type: ignore[type-arg]
    return str(err["ctx"]["discriminator"]).strip("'")
