"""JSON that a JSON Schema accepts, drawn at random: the simulated model's tool-call arguments and
structured answers.

:func:`check_schema` is the request-time check: the schema must be valid (checked against its
draft's meta-schema with ``jsonschema``, 2020-12 unless it names another), use only keywords the
generator can satisfy, and, with ``strict``, follow the OpenAI API's strict-mode rules (every
object lists all its properties in ``required`` and sets ``additionalProperties`` to ``false``).
Checked schemas are remembered (the digests of the last 1,024 schemas that passed, by their JSON
text), so an agent that sends the same tools every turn pays for the check once.

:func:`make_instance` builds an instance: ``enum``/``const`` values, numbers within their bounds
and ``multipleOf``, strings of a ``format`` (date-time, date, time, email, uri, uuid, ipv4, ipv6,
hostname) or matching a ``pattern`` (:mod:`jitagent.client.regex_sample`), arrays within
``minItems``/``maxItems`` (``prefixItems``, ``uniqueItems``), objects with their required and some
optional properties (``additionalProperties``, ``minProperties``/``maxProperties``),
``anyOf``/``oneOf`` (one branch; an instance of a schema holding ``oneOf`` is checked to match
exactly one), ``allOf`` and ``$ref`` siblings merged, local ``$ref`` (recursion ends: past a few
levels only required parts are made). The other free-form strings carry the answer's length: they
are filled with filler words so that the JSON has about ``target_tokens`` tokens (counted as
:func:`jitagent.client.text.count_tokens` counts); a schema without free-form strings gives
instances as long as their JSON.

Bounded whatever the schema asks: ``minLength``, ``minItems`` and ``minProperties`` of at most
1,024, an instance of at most 10,000 values, a ``pattern`` match of at most 4,096 characters.

Refused (a :class:`SchemaError`): ``not``, ``if``/``then``/``else``, ``dependentRequired``,
``dependentSchemas``, ``dependencies``, ``patternProperties``, ``propertyNames``, ``contains``,
``unevaluatedProperties``, ``unevaluatedItems``, ``$dynamicRef``, ``$recursiveRef``, remote
``$ref``, bounds no instance can meet, and sizes over the limits above.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jsonschema
import numpy as np

from jitagent.client.regex_sample import sample_match
from jitagent.client.text import BYTES_PER_TOKEN, filler_words

__all__ = ["SchemaError", "check_schema", "make_instance", "instance_json"]

_UNSUPPORTED = ("not", "if", "then", "else", "dependentRequired", "dependentSchemas", "dependencies",
                "patternProperties", "propertyNames", "contains", "unevaluatedProperties", "unevaluatedItems",
                "$dynamicRef", "$recursiveRef")
_TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")
_ANNOTATIONS = {"title", "description", "default", "examples", "$comment", "deprecated", "readOnly", "writeOnly"}
_SPAN = 100                  # an unbounded number lies within this of its one bound (or of 0)
_EXTRA_ITEMS = 3             # an array or an object gets at most this many items beyond its minimum
_SHALLOW = 6                 # past this depth, or this many values, only required parts are made:
_MAX_VALUES = 128            # recursive schemas end, and no instance grows without bound
_MAX_DEPTH = 48
_MAX_MINIMUM = 1024          # the largest minLength, minItems, minProperties served
_MAX_MADE = 10_000           # the most values one instance holds
_MAX_REF_CHAIN = 32
_BYTES_PER_WORD = 6          # a filler word and its space, on average: how many words fill a byte budget
_TRIES = 32                  # attempts at a oneOf instance, a distinct array item, a multiple
_CHECKED_CACHE = 1024       # digests of schemas that passed the check
_VALIDATOR_CACHE = 64        # validators of schemas holding oneOf, each of a schema under:
_CACHED_SCHEMA_CHARS = 65536 # (a validator holds its schema: the cache's memory stays bounded)
_checked: OrderedDict[tuple[bytes, bool], None] = OrderedDict()


class SchemaError(ValueError):
    """A schema that is invalid, or that the simulated engine cannot make instances of."""


# -- the request-time check ------------------------------------------------------------------------

def check_schema(schema: Any, *, strict: bool = False) -> None:
    """``SchemaError`` naming the problem unless :func:`make_instance` can serve ``schema``."""
    if not isinstance(schema, dict):
        raise SchemaError(f"a JSON Schema must be an object, got {type(schema).__name__}")
    key = (hashlib.blake2b(json.dumps(schema, sort_keys=True).encode(), digest_size=16).digest(), strict)
    if key in _checked:
        _checked.move_to_end(key)
        return
    _check(schema, strict)
    _checked[key] = None
    if len(_checked) > _CHECKED_CACHE:
        _checked.popitem(last=False)


def _check(schema: dict[str, Any], strict: bool) -> None:
    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(map(str, exc.absolute_path)) or "the root"
        raise SchemaError(f"invalid JSON Schema at {where}: {exc.message}"[:500]) from None
    _Checker(schema, strict).walk(schema, "#")


class _Checker:
    """Walks every subschema once: unsupported keywords, bounds no instance meets, strict rules."""

    def __init__(self, root: dict[str, Any], strict: bool) -> None:
        self.root = root
        self.strict = strict

    def walk(self, schema: Any, where: str) -> None:
        if not isinstance(schema, dict):
            return   # true or false
        for keyword in _UNSUPPORTED:
            if keyword in schema:
                raise SchemaError(f"'{keyword}' (at {where}) is not supported by the simulated engine")
        ref = schema.get("$ref")
        if ref is not None:
            _resolve_ref(self.root, ref)
        if "allOf" in schema or (ref is not None and schema.keys() - _ANNOTATIONS - {"$ref"}):
            _merged(self.root, schema, 0)   # fails here if the parts do not merge
        self._bounds(schema, where)
        if self.strict and (schema.get("type") == "object" or "properties" in schema):
            self._strict_object(schema, where)
        for key, child in _children(schema):
            self.walk(child, f"{where}/{key}")

    def _bounds(self, schema: dict[str, Any], where: str) -> None:
        if "enum" in schema and not schema["enum"]:
            raise SchemaError(f"'enum' (at {where}) is empty: no value is allowed")
        for low, high in (("minLength", "maxLength"), ("minItems", "maxItems"), ("minProperties", "maxProperties")):
            if schema.get(low, 0) > schema.get(high, math.inf):
                raise SchemaError(f"'{low}' is over '{high}' (at {where}): no value is allowed")
            if schema.get(low, 0) > _MAX_MINIMUM:
                raise SchemaError(f"'{low}' (at {where}) is over {_MAX_MINIMUM}, the simulated engine's limit")
        lo, hi = _number_range(schema, integer=schema.get("type") == "integer")
        if lo > hi or (lo == hi and lo in (schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum"))):
            raise SchemaError(f"the bounds at {where} allow no number")
        step = schema.get("multipleOf")
        if step is not None and math.isfinite(lo) and math.isfinite(hi) and math.ceil(lo / step) > math.floor(hi / step):
            raise SchemaError(f"no multiple of {step} lies within the bounds at {where}")
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            missing = [name for name in schema.get("required", []) if name not in properties]
            if missing:
                raise SchemaError(f"{where} requires {missing[0]!r}, which its 'additionalProperties': false forbids")
            if schema.get("minProperties", 0) > len(properties):
                raise SchemaError(f"'minProperties' (at {where}) is over the properties allowed")
        if len(set(schema.get("required", []))) > schema.get("maxProperties", math.inf):
            raise SchemaError(f"{where} requires more properties than its 'maxProperties'")

    def _strict_object(self, schema: dict[str, Any], where: str) -> None:
        if schema.get("additionalProperties") is not False:
            raise SchemaError(f"strict mode: 'additionalProperties' must be false (at {where})")
        missing = sorted(schema.get("properties", {}).keys() - set(schema.get("required", [])))
        if missing:
            raise SchemaError(f"strict mode: 'required' must list every property (at {where}, {missing[0]!r} is "
                              f"missing)")


def _children(schema: dict[str, Any]) -> list[tuple[str, Any]]:
    """The subschemas directly under ``schema`` (with their paths)."""
    out: list[tuple[str, Any]] = []
    for key in ("properties", "$defs", "definitions"):
        out.extend((f"{key}/{name}", child) for name, child in schema.get(key, {}).items())
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        out.extend((f"{key}/{i}", child) for i, child in enumerate(schema.get(key, [])))
    items = schema.get("items")
    if isinstance(items, list):   # draft 4 to 2019-09: a list of schemas is a prefix
        out.extend((f"items/{i}", child) for i, child in enumerate(items))
    elif items is not None:
        out.append(("items", items))
    for key in ("additionalProperties", "additionalItems"):
        if isinstance(schema.get(key), dict):
            out.append((key, schema[key]))
    return out


def _resolve_ref(root: dict[str, Any], ref: Any) -> Any:
    """The subschema a local ``$ref`` (``#``, ``#/$defs/Name``, any JSON pointer in the document) names."""
    if not isinstance(ref, str) or not ref.startswith("#"):
        raise SchemaError(f"'$ref' {ref!r} is not supported by the simulated engine (only references within "
                          f"the schema, starting with '#')")
    target: Any = root
    for token in filter(None, ref[1:].split("/")):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(target, dict) and token in target:
            target = target[token]
        elif isinstance(target, list) and token.isdigit() and int(token) < len(target):
            target = target[int(token)]
        else:
            raise SchemaError(f"'$ref' {ref!r} names nothing in the schema")
    return target


def _merged(root: dict[str, Any], schema: dict[str, Any], chain: int) -> dict[str, Any]:
    """``schema`` with its ``$ref`` and ``allOf`` folded in: one schema to make an instance of."""
    if chain > _MAX_REF_CHAIN:
        raise SchemaError(f"'$ref' and 'allOf' nest more than {_MAX_REF_CHAIN} deep without a value in between")
    parts = list(schema.get("allOf", []))
    if "$ref" in schema:
        parts.append(_resolve_ref(root, schema["$ref"]))
    if not parts:
        return schema
    out = {k: v for k, v in schema.items() if k not in ("allOf", "$ref")}
    for part in parts:
        if part is False:
            raise SchemaError("'allOf' holds false: no value is allowed")
        if isinstance(part, dict):
            out = _merge(out, _merged(root, part, chain + 1))
    return out


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        if key not in out or out[key] == value or key in _ANNOTATIONS:
            out.setdefault(key, value)
        elif key == "properties":
            out[key] = {**out[key], **{name: (_merge(out[key][name], sub) if name in out[key] else sub)
                                       for name, sub in value.items()}}
        elif key == "required":
            out[key] = sorted(set(out[key]) | set(value))
        elif key in ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties"):
            out[key] = max(out[key], value)
        elif key in ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties"):
            out[key] = min(out[key], value)
        else:
            raise SchemaError(f"'allOf' (or '$ref' with siblings) gives '{key}' two values the simulated engine "
                              f"cannot merge")
    return out


def _number_range(schema: dict[str, Any], integer: bool) -> tuple[float, float]:
    """The closed range of numbers ``schema`` allows (integers: rounded inward)."""
    lo = max(schema.get("minimum", -math.inf), schema.get("exclusiveMinimum", -math.inf))
    hi = min(schema.get("maximum", math.inf), schema.get("exclusiveMaximum", math.inf))
    if integer and math.isfinite(lo):
        lo = math.floor(lo) + 1 if lo == schema.get("exclusiveMinimum") else math.ceil(lo)
    if integer and math.isfinite(hi):
        hi = math.ceil(hi) - 1 if hi == schema.get("exclusiveMaximum") else math.floor(hi)
    return lo, hi


# -- instances ------------------------------------------------------------------------------------

@dataclass(slots=True)
class _Free:
    """A free-form string, filled with filler words once the instance's shape is known."""

    min_length: int
    max_length: int | None
    text: str = ""


def make_instance(schema: dict[str, Any], rng: np.random.Generator, target_tokens: int) -> Any:
    """An instance of a :func:`check_schema`-checked ``schema``, its free-form strings filled so that
    its JSON (:func:`instance_json`) has about ``target_tokens`` tokens. ``SchemaError`` when none
    turned up (a ``oneOf`` whose branches overlap everywhere, a recursion with no end)."""
    text = json.dumps(schema, sort_keys=True)
    validator = _one_of_validator(text) if len(text) <= _CACHED_SCHEMA_CHARS else _one_of_validator.__wrapped__(text)
    for _ in range(_TRIES if validator is not None else 1):
        frees: list[_Free] = []
        value = _Maker(schema, rng, frees).make(schema, 0)
        _fill(frees, rng, target_tokens * BYTES_PER_TOKEN - len(instance_json(_filled(value))))
        value = _filled(value)
        if validator is None or validator.is_valid(value):
            return value
    raise SchemaError("no instance matching exactly one branch of each 'oneOf' was found")


def instance_json(value: Any) -> str:
    """The answer's text: JSON as a model writes it (``", "`` and ``": "``), ASCII only, so each
    character is a byte and the text splits into tokens evenly."""
    return json.dumps(value)


@functools.lru_cache(maxsize=_VALIDATOR_CACHE)
def _one_of_validator(text: str) -> Any:
    """A validator of the schema (its JSON text) if it holds ``oneOf``, whose instances need checking."""
    if '"oneOf"' not in text:
        return None
    schema = json.loads(text)
    return jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)(schema)


class _Maker:
    def __init__(self, root: dict[str, Any], rng: np.random.Generator, frees: list[_Free]) -> None:
        self.root = root
        self.rng = rng
        self.frees = frees
        self.made = 0   # values made so far

    def _minimal(self, depth: int) -> bool:
        """Whether to make only what is required from here on."""
        return depth > _SHALLOW or self.made > _MAX_VALUES

    def make(self, schema: Any, depth: int, filled: bool = False) -> Any:
        """An instance of ``schema``; with ``filled``, free-form strings get their words now (an item of
        a ``uniqueItems`` array must differ from the others as it is made)."""
        if depth > _MAX_DEPTH:
            raise SchemaError(f"every instance of the schema nests deeper than {_MAX_DEPTH} levels")
        self.made += 1
        if self.made > _MAX_MADE:
            raise SchemaError(f"an instance of the schema holds more than {_MAX_MADE} values, the simulated "
                              f"engine's limit")
        if schema is False:
            raise SchemaError("a schema of false allows no value")
        if schema is True or schema == {}:
            schema = {"type": "string"}
        schema = _merged(self.root, schema, 0)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return schema["enum"][self._below(len(schema["enum"]))]
        branches = schema.get("anyOf") or schema.get("oneOf")
        if branches:
            rest = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
            branch = branches[self._branch(branches, depth)]
            return self.make(_merge(rest, _merged(self.root, branch, 0)) if isinstance(branch, dict) else branch,
                             depth + 1, filled)
        kind = self._type(schema, depth)
        if kind == "object":
            return self._object(schema, depth, filled)
        if kind == "array":
            return self._array(schema, depth, filled)
        if kind == "string":
            return self._string(schema, filled)
        if kind in ("number", "integer"):
            return self._number(schema, kind == "integer")
        return bool(self._below(2)) if kind == "boolean" else None

    def _below(self, n: int) -> int:
        return int(self.rng.integers(n))

    def _branch(self, branches: list[Any], depth: int) -> int:
        """A random branch; past the shallow part, the first that is not an object or an array."""
        if self._minimal(depth):
            for i, branch in enumerate(branches):
                if isinstance(branch, dict) and self._type(_merged(self.root, branch, 0), depth) not in ("object", "array"):
                    return i
        return self._below(len(branches))

    def _type(self, schema: dict[str, Any], depth: int) -> str:
        kind = schema.get("type")
        if isinstance(kind, list):
            scalars = [k for k in kind if k not in ("object", "array")]
            return scalars[0] if self._minimal(depth) and scalars else kind[self._below(len(kind))]
        if kind is not None:
            return kind
        keys = schema.keys()
        if keys & {"properties", "required", "additionalProperties", "minProperties", "maxProperties"}:
            return "object"
        if keys & {"items", "prefixItems", "minItems", "maxItems", "uniqueItems"}:
            return "array"
        if keys & {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}:
            return "number"
        return "string"

    def _object(self, schema: dict[str, Any], depth: int, filled: bool) -> dict[str, Any]:
        properties: dict[str, Any] = schema.get("properties", {})
        required = list(dict.fromkeys(schema.get("required", [])))
        optional = [name for name in properties if name not in required]
        least = schema.get("minProperties", 0)
        picked = [name for name in optional if not self._minimal(depth) and self._below(2)]
        picked += [name for name in optional if name not in picked][:max(least - len(required) - len(picked), 0)]
        room = schema.get("maxProperties", len(properties) + len(required)) - len(required)
        chosen = required + picked[:max(room, 0)]
        extra = schema.get("additionalProperties", True)
        out = {name: self.make(properties.get(name, extra if isinstance(extra, dict) else True), depth + 1, filled)
               for name in chosen}
        while len(out) < least:   # checked: additional properties are allowed here
            out[f"key_{len(out)}"] = self.make(extra if isinstance(extra, dict) else True, depth + 1, filled)
        return out

    def _array(self, schema: dict[str, Any], depth: int, filled: bool) -> list[Any]:
        items = schema.get("items", True)
        prefix = schema.get("prefixItems", items if isinstance(items, list) else [])
        rest = schema.get("additionalItems", True) if isinstance(items, list) else items
        least = schema.get("minItems", 0)
        most = schema.get("maxItems", least + _EXTRA_ITEMS)
        if rest is False:
            most = min(most, len(prefix))
        count = least if self._minimal(depth) else least + self._below(max(min(most, least + _EXTRA_ITEMS) - least, 0) + 1)
        unique = schema.get("uniqueItems", False)
        out: list[Any] = []
        seen: set[str] = set()
        for i in range(count):
            item_schema = prefix[i] if i < len(prefix) else rest
            if not unique:
                out.append(self.make(item_schema, depth + 1, filled))
                continue
            for _ in range(_TRIES):
                item = self.make(item_schema, depth + 1, True)
                key = _unique_key(item)
                if key not in seen:
                    break
            else:
                if i >= least:
                    break   # enough items already
                raise SchemaError(f"no {least} distinct items of an array with 'uniqueItems' were found")
            seen.add(key)
            out.append(item)
        return out

    def _string(self, schema: dict[str, Any], filled: bool) -> str | _Free:
        least, most = schema.get("minLength", 0), schema.get("maxLength")
        if "pattern" in schema:
            try:
                return sample_match(schema["pattern"], self.rng, least, most)
            except ValueError as exc:
                raise SchemaError(str(exc)) from None
        made = _FORMATS.get(schema.get("format", ""))
        if made is not None:
            text = made(self.rng)
            if least <= len(text) <= (most if most is not None else len(text)):
                return text
        free = _Free(least, most)
        if filled:
            _fill([free], self.rng, 0)
            return free.text
        self.frees.append(free)
        return free

    def _number(self, schema: dict[str, Any], integer: bool) -> int | float:
        lo, hi = _window(*_number_range(schema, integer))
        step = schema.get("multipleOf")
        if step is not None:
            return self._multiple(schema, step, lo, hi, integer)
        if integer:
            return int(lo) + int(self.rng.integers(int(hi) - int(lo) + 1))
        value = round(float(self.rng.uniform(lo, hi)), 2)
        return value if _in_range(schema, value) else (lo + hi) / 2

    def _multiple(self, schema: dict[str, Any], step: float, lo: float, hi: float, integer: bool) -> int | float:
        """A multiple of ``step`` within the range (integral when ``integer``), as validators judge it."""
        first, last = math.ceil(lo / step), math.floor(hi / step)
        for _ in range(_TRIES):
            if first > last:
                break
            value = (first + int(self.rng.integers(min(last - first, 2**62) + 1))) * step
            value = int(value) if float(value).is_integer() else value
            if _in_range(schema, value) and _is_multiple(value, step) and (not integer or isinstance(value, int)):
                return value
        raise SchemaError(f"no multiple of {step} lies between {lo} and {hi}")


def _window(lo: float, hi: float) -> tuple[float, float]:
    """At most :data:`_SPAN` of the allowed range: around 0 when it holds 0, else at its near end."""
    if hi - lo <= _SPAN:
        return lo, hi
    if lo <= 0 <= hi:
        lo = max(lo, -_SPAN / 2) if hi > _SPAN / 2 else hi - _SPAN
        return lo, lo + _SPAN
    return (lo, lo + _SPAN) if lo > 0 else (hi - _SPAN, hi)


def _in_range(schema: dict[str, Any], value: float) -> bool:
    return (schema.get("minimum", -math.inf) <= value <= schema.get("maximum", math.inf)
            and schema.get("exclusiveMinimum", -math.inf) < value < schema.get("exclusiveMaximum", math.inf))


def _is_multiple(value: float, step: float) -> bool:
    """``jsonschema``'s test of ``multipleOf`` (floats by their quotient)."""
    if isinstance(step, float):
        quotient = value / step
        return math.isfinite(quotient) and int(quotient) == quotient
    return value % step == 0


def _unique_key(item: Any) -> str:
    """Equal items (as JSON Schema compares them: ``1`` equals ``1.0``, not ``true``) share a key."""
    def plain(v: Any) -> Any:
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v
    return json.dumps(plain(item), sort_keys=True)


def _fill(frees: list[_Free], rng: np.random.Generator, budget_bytes: int) -> None:
    """Share about ``budget_bytes`` of filler words among the free-form strings (at least one word
    each), within their length bounds."""
    if not frees:
        return
    words = max(budget_bytes // _BYTES_PER_WORD, len(frees))
    shares = rng.multinomial(words - len(frees), [1 / len(frees)] * len(frees)) + 1
    for free, share in zip(frees, shares):
        text = " ".join(filler_words(rng, int(share)))
        if free.max_length is not None:
            text = text[:free.max_length].rstrip()
        while len(text) < free.min_length:
            text = (text + " " + " ".join(filler_words(rng, 1))).lstrip()
        free.text = text[:free.max_length] if free.max_length is not None else text


def _filled(value: Any) -> Any:
    if isinstance(value, _Free):
        return value.text
    if isinstance(value, dict):
        return {k: _filled(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_filled(v) for v in value]
    return value


def _date(rng: np.random.Generator) -> str:
    return f"20{int(rng.integers(20, 30))}-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}"


def _time(rng: np.random.Generator) -> str:
    return f"{int(rng.integers(24)):02d}:{int(rng.integers(60)):02d}:{int(rng.integers(60)):02d}Z"


def _word(rng: np.random.Generator) -> str:
    return filler_words(rng, 1)[0]


_FORMATS = {
    "date-time": lambda rng: f"{_date(rng)}T{_time(rng)}",
    "date": _date,
    "time": _time,
    "email": lambda rng: f"{_word(rng)}@example.com",
    "hostname": lambda rng: f"{_word(rng)}.example.com",
    "uri": lambda rng: f"https://example.com/{_word(rng)}",
    "url": lambda rng: f"https://example.com/{_word(rng)}",
    "uuid": lambda rng: str(uuid.UUID(bytes=rng.bytes(16), version=4)),
    "ipv4": lambda rng: ".".join(str(int(b)) for b in rng.integers(1, 255, size=4)),
    "ipv6": lambda rng: f"2001:db8::{int(rng.integers(1, 65535)):x}",
}
