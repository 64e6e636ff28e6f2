"""JSON answers: the answer's JSON text, strict parsing, JSON equality, the
project's own JSON Schema checker, and :class:`JsonVerifier` built on them.

The checker covers the keywords in :data:`SCHEMA_KEYWORDS`, the subset plan
files use. It is the only one the verifiers use, whatever else is installed,
so a verdict and its message do not depend on the environment (vLLM brings
the ``jsonschema`` package along; a run with it and one without must agree).
A schema that uses any other keyword is refused when the verifier is built
(:func:`unsupported_keywords`), since ignoring a constraint would pass
answers that break it.

>>> validate_schema({"n": -1}, {"properties": {"n": {"type": "integer", "minimum": 0}}})
['$.n: -1 violates minimum 0']
"""

from __future__ import annotations

import importlib
import json
import re
from typing import Any

from verifiers.base import BatchedVerifier, Verdict, failed, passed, skipped, text_problem

#: Responses longer than this are not parsed (a guard for regexes and JSON).
MAX_RESPONSE_CHARS = 1_000_000

_FENCE = re.compile(r"^[ \t]*```[ \t]*(\S*)")

#: Keywords the checker checks; a schema with any other (annotations aside) is refused.
SCHEMA_KEYWORDS = frozenset(
    {
        *("type", "enum", "const", "anyOf", "allOf"),
        *("properties", "required", "additionalProperties", "items", "minItems", "maxItems"),
        *("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern"),
    }
)
_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "title", "description", "default", "examples", "format"})


def extract_json_text(response: str) -> str:
    """The last ```json (or untagged) fenced block, else the whole text, stripped.

    >>> extract_json_text('```python\\nx = 1\\n```\\nthen\\n```json\\n{"a": 1}\\n```')
    '{"a": 1}'
    """
    blocks: list[str] = []
    tag: str | None = None  # None: outside a block
    body: list[str] = []
    for line in response.splitlines():
        m = _FENCE.match(line)
        if tag is None and m:
            tag, body = m.group(1).lower(), []
        elif tag is not None and m and not m.group(1):
            if tag in ("", "json"):
                blocks.append("\n".join(body))
            tag = None
        elif tag is not None:
            body.append(line)
    return (blocks[-1] if blocks else response).strip()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(text: str) -> Any:
    """Strict ``json.loads``: NaN and Infinity are rejected."""
    return json.loads(text, parse_constant=_reject_constant)


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: unlike Python's ``==``, ``true`` is not ``1``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return not isinstance(value, bool) and (
            isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        )
    if name == "number":
        return not isinstance(value, bool) and isinstance(value, (int, float))
    expected = {"string": str, "object": dict, "array": list, "boolean": bool, "null": type(None)}.get(name)
    return expected is not None and isinstance(value, expected)


def validate_schema(instance: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Check ``instance`` against the common subset of JSON Schema.

    Covers the keywords in :data:`SCHEMA_KEYWORDS`. Returns one message per
    problem (empty when valid), each starting with the JSON path.

    >>> validate_schema({"n": "3"}, {"properties": {"n": {"type": "integer", "minimum": 0}}})
    ['$.n: expected integer, got "3"']
    """
    errors: list[str] = []
    if schema is True or schema == {}:
        return errors
    if schema is False:
        return [f"{path}: no value is allowed here"]
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(instance, t) for t in types):
            return [f"{path}: expected {' or '.join(types)}, got {json.dumps(instance)[:40]}"]
    if "enum" in schema and not any(json_equal(instance, e) for e in schema["enum"]):
        errors.append(f"{path}: {json.dumps(instance)[:40]} is not one of {json.dumps(schema['enum'])[:80]}")
    if "const" in schema and not json_equal(instance, schema["const"]):
        errors.append(f"{path}: must equal {json.dumps(schema['const'])[:80]}")
    if _is_type(instance, "number"):
        for key, ok in (
            ("minimum", lambda v, b: v >= b),
            ("maximum", lambda v, b: v <= b),
            ("exclusiveMinimum", lambda v, b: v > b),
            ("exclusiveMaximum", lambda v, b: v < b),
        ):
            if key in schema and not ok(instance, schema[key]):
                errors.append(f"{path}: {instance} violates {key} {schema[key]}")
    if isinstance(instance, str):
        if "minLength" in schema and len(instance) < schema["minLength"]:
            errors.append(f"{path}: shorter than minLength {schema['minLength']}")
        if "maxLength" in schema and len(instance) > schema["maxLength"]:
            errors.append(f"{path}: longer than maxLength {schema['maxLength']}")
        if "pattern" in schema and re.search(schema["pattern"], instance) is None:
            errors.append(f"{path}: does not match pattern {schema['pattern']!r}")
    if isinstance(instance, list):
        if "minItems" in schema and len(instance) < schema["minItems"]:
            errors.append(f"{path}: fewer than minItems {schema['minItems']}")
        if "maxItems" in schema and len(instance) > schema["maxItems"]:
            errors.append(f"{path}: more than maxItems {schema['maxItems']}")
        items = schema.get("items")
        if isinstance(items, (dict, bool)):
            for i, item in enumerate(instance):
                errors += validate_schema(item, items, f"{path}[{i}]")
        elif isinstance(items, list):  # tuple form (draft 4-7)
            for i, (item, sub) in enumerate(zip(instance, items, strict=False)):  # extra items are allowed
                errors += validate_schema(item, sub, f"{path}[{i}]")
    if isinstance(instance, dict):
        for key in schema.get("required", []):
            if key not in instance:
                errors.append(f"{path}: missing required property {key!r}")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, value in instance.items():
            if key in props:
                errors += validate_schema(value, props[key], f"{path}.{key}")
            elif extra is False:
                errors.append(f"{path}: unexpected property {key!r}")
            elif isinstance(extra, dict):
                errors += validate_schema(value, extra, f"{path}.{key}")
    for sub in schema.get("allOf", []):
        errors += validate_schema(instance, sub, path)
    if "anyOf" in schema and all(validate_schema(instance, sub, path) for sub in schema["anyOf"]):
        errors.append(f"{path}: matches none of anyOf")
    return errors


def unsupported_keywords(schema: Any, found: set[str] | None = None) -> set[str]:
    """Keywords anywhere in ``schema`` that :func:`validate_schema` does not check.

    >>> sorted(unsupported_keywords({"properties": {"a": {"$ref": "#/x", "title": "A"}}}))
    ['$ref']
    """
    found = set() if found is None else found
    if isinstance(schema, dict):
        found.update(k for k in schema if k not in SCHEMA_KEYWORDS and k not in _ANNOTATIONS)
        for key, sub in schema.items():
            if key in ("properties",) and isinstance(sub, dict):
                for s in sub.values():
                    unsupported_keywords(s, found)
            elif key in ("items", "additionalProperties") or key in ("anyOf", "allOf"):
                for s in sub if isinstance(sub, list) else [sub]:
                    unsupported_keywords(s, found)
    return found


def _import_model(path: str) -> type:
    module, sep, attr = path.partition(":")
    if not sep:
        module, _, attr = path.rpartition(".")
    if not module or not attr:
        raise ValueError(f"model {path!r}: expected 'package.module:Class' or 'package.module.Class'")
    return getattr(importlib.import_module(module), attr)


class JsonVerifier(BatchedVerifier):
    """The response is JSON, optionally of a given shape or equal to a reference.

    The JSON is read from the last fenced block tagged ``json`` (or untagged),
    else from the whole response. ``NaN``/``Infinity`` are rejected. Then, in
    order: the JSON Schema (if given), the pydantic model (if given), and the
    reference (if the row has one: a dict/list, or a JSON string) must all agree.
    A reference that is not valid JSON makes the row ungradable (``skip``).

    Schemas are checked by :func:`verifiers.schema.validate_schema` alone, so
    verdicts do not depend on which packages are installed; a schema keyword it
    does not check is refused here rather than ignored.

    Args:
        schema: A JSON Schema as a dict or JSON string.
        model: A pydantic model class, or its import path (``"pkg.mod:Model"``).

    >>> v = JsonVerifier(schema={"type": "object", "properties": {"a": {"enum": [1, 2]}}})
    >>> v.verify('Here: {"a": 2}', None).reason
    'fail: not JSON: Expecting value at line 1 column 1'
    >>> v.verify('{"a": 2}', '{"a": 2}').passed
    True
    """

    name = "json"
    needs_reference = False  # grades every row; a reference, where given, is optional

    def __init__(self, schema: dict[str, Any] | str | None = None, model: type | str | None = None):
        if isinstance(schema, str):
            schema = json.loads(schema)
        if schema is not None and not isinstance(schema, (dict, bool)):
            raise ValueError(f"schema must be a JSON Schema object, got {type(schema).__name__}")
        self.schema = schema
        self.model = _import_model(model) if isinstance(model, str) else model
        if self.model is not None and not hasattr(self.model, "model_validate"):
            raise ValueError(f"model {self.model!r} is not a pydantic model class")
        if schema is not None:
            ignored = unsupported_keywords(schema)
            if ignored:
                raise ValueError(
                    f"JsonVerifier schema: keywords {sorted(ignored)} are not supported; "
                    f"use only {', '.join(sorted(SCHEMA_KEYWORDS))}"
                )

    def verify(self, response: str, reference: Any = None) -> Verdict:
        expected: Any = None
        has_reference = reference is not None and reference != ""
        if has_reference and isinstance(reference, str):
            try:
                expected = parse_json(reference)
            except (ValueError, RecursionError) as exc:
                return skipped(f"reference is not JSON: {exc}")
        elif has_reference:
            expected = reference
        if (bad := text_problem(response, MAX_RESPONSE_CHARS)) is not None:
            return bad
        text = extract_json_text(response)
        try:
            obj = parse_json(text)
        except json.JSONDecodeError as exc:
            return failed("fail", f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", extracted=text[:200])
        except (ValueError, RecursionError) as exc:
            return failed("fail", f"not JSON: {exc}", extracted=text[:200])
        if self.schema is not None:
            try:
                errors = validate_schema(obj, self.schema)
            except RecursionError:
                errors = ["$: nested too deeply"]
            if errors:
                more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
                return failed("fail", f"schema: {errors[0]}{more}", extracted=text[:200], errors=errors[:20])
        if self.model is not None:
            try:
                self.model.model_validate(obj)
            except Exception as exc:  # pydantic.ValidationError, or a validator that raised
                first = exc.errors()[0] if hasattr(exc, "errors") else {"loc": (), "msg": str(exc)}
                loc = ".".join(str(p) for p in first.get("loc", ())) or "$"
                return failed("fail", f"model {self.model.__name__}: {loc}: {first.get('msg')}", extracted=text[:200])
        if has_reference and not json_equal(obj, expected):
            return failed("fail", "JSON differs from the reference", extracted=text[:200])
        return passed("equals the reference" if has_reference else "valid JSON", extracted=text[:200])
