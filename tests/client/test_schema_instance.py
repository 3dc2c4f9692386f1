"""The simulated model's JSON: instances of JSON Schemas (tool arguments, structured answers) and
strings matching patterns, checked with ``jsonschema`` over many generated schemas and seeds.

Costs about 10 s (hypothesis: a few hundred schemas, each with several seeds).
"""

from __future__ import annotations

import datetime
import json
import re
from typing import Annotated, Any, Literal, Optional, Union

import jsonschema
import numpy as np
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jitagent.client.regex_sample import sample_match
from jitagent.client.schema_instance import SchemaError, check_schema, instance_json, make_instance
from jitagent.client.text import count_tokens

MANY = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def assert_valid(schema: dict[str, Any], seeds: range = range(5), target: int = 60) -> list[Any]:
    """Instances of ``schema`` for each seed, each valid for it (as a JSON Schema validator judges)."""
    check_schema(schema)
    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)(schema)
    made = [make_instance(schema, np.random.default_rng(seed), target) for seed in seeds]
    for value in made:
        errors = [e.message for e in validator.iter_errors(value)]
        assert not errors, (schema, value, errors)
        assert instance_json(value).isascii()
    return made


# -- generated schemas of the subset tools and structured output use --------------------------------

_names = st.from_regex(r"[a-z][a-z_]{0,7}", fullmatch=True)


def _bounded(low_key: str, high_key: str, values: st.SearchStrategy[int]) -> st.SearchStrategy[dict[str, Any]]:
    """Optional lower and upper bounds, the lower never over the upper."""
    return st.tuples(st.none() | values, st.none() | values).map(lambda pair: {
        k: v for k, v in ((low_key, min(pair) if None not in pair else pair[0]),
                          (high_key, max(pair) if None not in pair else pair[1])) if v is not None})


_strings = (_bounded("minLength", "maxLength", st.integers(0, 30)).map(lambda bounds: {"type": "string", **bounds})
            | st.sampled_from([{"type": "string", "format": f} for f in ("date-time", "date", "email", "uuid")])
            | st.sampled_from([{"type": "string", "pattern": p} for p in (r"^\d{3}-\d{4}$", r"[A-Z]{2}", r"^(ab|cd)+x?$")]))
_integers = st.builds(lambda bounds, extra: {"type": "integer", **bounds, **extra},
                      _bounded("minimum", "maximum", st.integers(-10**6, 10**6)),
                      st.just({}) | st.builds(lambda m: {"multipleOf": m}, st.integers(1, 5)))
_numbers = (_bounded("minimum", "maximum", st.floats(-1e6, 1e6)) | _bounded("exclusiveMinimum", "exclusiveMaximum",
                                                                           st.floats(-1e6, 1e6)).filter(
    lambda b: b.get("exclusiveMinimum", -1e9) < b.get("exclusiveMaximum", 1e9))).map(lambda b: {"type": "number", **b})
_scalars = (_strings | _integers | _numbers | st.just({"type": "boolean"}) | st.just({"type": "null"})
            | st.lists(st.text(max_size=5) | st.integers(), min_size=1, max_size=4, unique=True).map(lambda e: {"enum": e})
            | st.integers().map(lambda c: {"const": c}) | st.just({}))


def _containers(inner: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    properties = st.dictionaries(_names, inner, max_size=4)
    objects = st.builds(lambda props, required, closed: {
        "type": "object", "properties": props, "required": [n for n in props if required.draw_bit()],
        **({"additionalProperties": False} if closed else {})},
        properties, st.randoms(use_true_random=False).map(_Bits), st.booleans())
    arrays = st.builds(lambda items, bounds, unique: {"type": "array", "items": items, **bounds,
                                                      **({"uniqueItems": True} if unique else {})},
                       inner, _bounded("minItems", "maxItems", st.integers(0, 3)), st.booleans())
    unions = st.lists(inner, min_size=1, max_size=3).map(lambda branches: {"anyOf": branches})
    nullable = inner.map(lambda s: {"anyOf": [s, {"type": "null"}]})
    return objects | arrays | unions | nullable


class _Bits:
    """Coin flips from a seeded random (hypothesis's ``randoms``)."""

    def __init__(self, rnd: Any) -> None:
        self.rnd = rnd

    def draw_bit(self) -> bool:
        return self.rnd.random() < 0.5


_schemas = st.recursive(_scalars, _containers, max_leaves=12)


@MANY
@given(schema=_schemas, seed=st.integers(0, 2**32))
def test_instances_of_generated_schemas_are_valid(schema: dict[str, Any], seed: int) -> None:
    """Every schema is served, or refused when checked because its bounds allow nothing; making an
    instance fails only where distinct items are too few to exist (booleans, constants)."""
    try:
        check_schema(schema)
    except SchemaError as exc:
        assert re.search(r"allow no number|no multiple of", str(exc)), (schema, exc)
        return
    try:
        assert_valid(schema, range(seed, seed + 3))
    except SchemaError as exc:
        assert "distinct items" in str(exc) and '"uniqueItems": true' in json.dumps(schema), (schema, exc)


# -- schemas as libraries write them -----------------------------------------------------------------

class Address(pydantic.BaseModel):
    city: str
    zip: str = pydantic.Field(pattern=r"^\d{5}$")


class Cat(pydantic.BaseModel):
    kind: Literal["cat"]
    lives: int = pydantic.Field(ge=1, le=9)


class Dog(pydantic.BaseModel):
    kind: Literal["dog"]
    good: bool


class Node(pydantic.BaseModel):
    name: str
    children: list[Node] = []


class Person(pydantic.BaseModel):
    name: str = pydantic.Field(min_length=2, max_length=20)
    age: int = pydantic.Field(ge=0, le=130)
    score: float = pydantic.Field(gt=0, lt=1)
    kind: Literal["a", "b"]
    tags: list[str]
    address: Optional[Address] = None
    pet: Annotated[Union[Cat, Dog], pydantic.Field(discriminator="kind")]
    tree: Node
    when: datetime.datetime
    ratio: float = pydantic.Field(multiple_of=0.25, ge=-3, le=3)


def test_pydantic_models_with_refs_unions_recursion_and_constraints() -> None:
    """What pydantic writes: ``$defs``/``$ref``, a discriminated ``oneOf``, ``anyOf`` with null, a
    recursive model, bounds, a pattern, a date-time; each instance validates as the model too."""
    for value in assert_valid(Person.model_json_schema(), range(40)):
        Person.model_validate(value)


SCHEMAS = {
    "exclusive bounds": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
    "integer multiple": {"type": "integer", "multipleOf": 7, "minimum": 10, "maximum": 30},
    "float multiple": {"type": "number", "multipleOf": 0.1, "minimum": -1e300},
    "array with a minimum": {"type": "array", "items": {"type": "integer"}, "minItems": 5, "maxItems": 6},
    "unique booleans": {"type": "array", "items": {"type": "boolean"}, "minItems": 2, "uniqueItems": True},
    "unique strings": {"type": "array", "items": {"type": "string"}, "minItems": 4, "uniqueItems": True},
    "closed object": {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
                      "additionalProperties": False},
    "min properties": {"type": "object", "minProperties": 2, "additionalProperties": {"type": "integer"}},
    "type list": {"type": ["string", "null"]},
    "allOf": {"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
                        {"properties": {"b": {"type": "string"}}, "required": ["b"]}]},
    "ref with siblings": {"$defs": {"n": {"type": "integer"}}, "$ref": "#/$defs/n", "minimum": 5, "maximum": 6},
    "recursive ref": {"$defs": {"n": {"type": "object", "properties": {"c": {"type": "array", "items": {"$ref": "#/$defs/n"}}},
                                      "required": ["c"]}}, "$ref": "#/$defs/n"},
    "draft 7 definitions": {"$schema": "http://json-schema.org/draft-07/schema#",
                            "definitions": {"x": {"type": "string"}}, "items": [{"$ref": "#/definitions/x"}],
                            "additionalItems": False, "type": "array"},
    "prefixItems": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "items": False},
    "overlapping oneOf": {"oneOf": [{"type": "integer"}, {"type": "number"}]},
    "huge bounds": {"type": "integer", "minimum": 10**30},
    "negative only": {"type": "number", "maximum": -1e300},
    "untyped property": {"properties": {"x": {}}, "required": ["x"]},
    "const": {"const": {"k": [1, 2]}},
}


@pytest.mark.parametrize("name", SCHEMAS)
def test_schema_features(name: str) -> None:
    assert_valid(SCHEMAS[name], range(30))


def test_free_strings_carry_the_target_length() -> None:
    """The JSON is about ``target_tokens`` long when free-form strings can carry it; a schema
    without them is as long as its JSON."""
    schema = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
              "required": ["a", "b"]}
    for target in (20, 200, 2000):
        tokens = [count_tokens(instance_json(make_instance(schema, np.random.default_rng(s), target))) for s in range(20)]
        assert all(0.7 * target <= t <= 1.3 * target for t in tokens), (target, tokens)
    tokens = count_tokens(instance_json(make_instance({"type": "integer", "minimum": 0, "maximum": 9},
                                                      np.random.default_rng(0), 500)))
    assert tokens == 1


def test_same_seed_same_instance() -> None:
    schema = Person.model_json_schema()
    one, two = (make_instance(schema, np.random.default_rng(7), 50) for _ in range(2))
    assert one == two
    assert any(make_instance(schema, np.random.default_rng(s), 50) != one for s in range(8, 12))


REFUSED = [
    ({"not": {"type": "string"}}, r"'not' \(at #\) is not supported by the simulated engine"),
    ({"type": "object", "properties": {"a": {"if": {}, "then": {}}}}, r"'if' \(at #/properties/a\) is not supported"),
    ({"type": "strin"}, r"invalid JSON Schema at type"),
    ({"type": "integer", "minimum": 5, "maximum": 3}, r"the bounds at # allow no number"),
    ({"type": "string", "minLength": 5, "maxLength": 3}, r"'minLength' is over 'maxLength'"),
    ({"enum": []}, r"'enum' \(at #\) is empty"),
    ({"$ref": "https://example.com/s.json"}, r"only references within the schema"),
    ({"$ref": "#/$defs/missing"}, r"'\$ref' '#/\$defs/missing' names nothing"),
    ({"type": "object", "required": ["a"], "additionalProperties": False}, r"requires 'a', which its 'additionalProperties'"),
    ({"allOf": [{"type": "string"}, {"type": "integer"}]}, r"'allOf' .* gives 'type' two values"),
]


@pytest.mark.parametrize("schema, message", REFUSED, ids=[m for _, m in REFUSED])
def test_schemas_it_cannot_serve_are_refused_with_the_reason(schema: dict[str, Any], message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        check_schema(schema)


def test_strict_mode_rules() -> None:
    loose = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}, "required": ["a"]}
    check_schema(loose)
    with pytest.raises(SchemaError, match=r"strict mode: 'additionalProperties' must be false \(at #\)"):
        check_schema(loose, strict=True)
    with pytest.raises(SchemaError, match=r"strict mode: 'required' must list every property \(at #, 'b' is missing\)"):
        check_schema({**loose, "additionalProperties": False}, strict=True)
    check_schema({**loose, "additionalProperties": False, "required": ["a", "b"]}, strict=True)


@MANY
@given(pattern=st.sampled_from([r"^\d{5}$", r"^[a-z]{2,4}\d+(foo|ba?r)\.x*$", r"[^a-c\W]+", r"(ab)\1", r"^\w+@\w+\.com$",
                                r"^(?=.*\d)[a-z0-9]{8}$", r"colou?r", r"^[A-Z][a-z]*( [A-Z][a-z]*)*$", r"x{0}y"]),
       seed=st.integers(0, 2**32), low=st.integers(0, 6))
def test_pattern_matches(pattern: str, seed: int, low: int) -> None:
    try:
        text = sample_match(pattern, np.random.default_rng(seed), low, 40)
    except ValueError as exc:   # a bound this pattern cannot meet: said so
        assert "no string of" in str(exc)
        return
    assert re.search(pattern, text) and low <= len(text) <= 40


def test_a_pattern_that_is_no_regular_expression() -> None:
    with pytest.raises(ValueError, match=r"the pattern '\(' is not a valid regular expression"):
        sample_match("(", np.random.default_rng(0))


def test_the_check_remembers_a_bounded_number_of_schemas() -> None:
    """However many distinct schemas callers send, the cache of checked ones holds at most its
    bound, and only digests (a caller chooses the schemas' sizes)."""
    from jitagent.client import schema_instance

    for i in range(schema_instance._CHECKED_CACHE + 50):
        check_schema({"type": "object", "properties": {f"p{i}": {"type": "string"}}})
    assert len(schema_instance._checked) == schema_instance._CHECKED_CACHE
    assert all(len(digest) == 16 for digest, _ in schema_instance._checked)


def test_sizes_a_caller_chooses_are_bounded() -> None:
    """Huge minimums, instances multiplying nested minimums, and patterns with huge repeats are
    refused with the limit named, not built."""
    with pytest.raises(SchemaError, match=r"'minItems' \(at #\) is over 1024, the simulated engine's limit"):
        check_schema({"type": "array", "minItems": 10**9})
    nested = {"type": "array", "minItems": 1000, "items": {"type": "array", "minItems": 1000, "items": {"type": "null"}}}
    check_schema(nested)
    with pytest.raises(SchemaError, match=r"more than 10000 values, the simulated engine's limit"):
        make_instance(nested, np.random.default_rng(0), 10)
    with pytest.raises(ValueError, match=r"run past 4096 characters"):
        sample_match(r"a{100000000}", np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"run past 4096 characters"):
        sample_match(r"(ab{1000}){1000}", np.random.default_rng(0))
