"""Plan-file verifier options are checked against the constructors before any compute."""

from __future__ import annotations

import pytest

from verifiers import REGISTRY
from verifiers.registry import option_problems

# (id, name, options, expected problems: substrings, one per line, in order; why)
CASES = [
    ("math_defaults", "math", None, [], "no options: the defaults build"),
    ("math_ok", "math", {"timeout_s": 2, "fallback_last_number": False}, [], "an int is fine where a float is asked"),
    ("unknown_name", "judges", {}, ["unknown verifier 'judges'; known: code, exact"], "no such module: not registered"),
    (
        "unknown_option",
        "math",
        {"bogus": 1},
        ["verifier 'math': unknown option 'bogus'; accepted: timeout_s, fallback_last_number"],
        "a typo in the plan, listed with what is accepted",
    ),
    (
        "every_problem_at_once",
        "math",
        {"bogus": 1, "timeout_s": "3", "cache_size": 1.5},
        ["unknown option 'bogus'", "option 'timeout_s' must be float, got str '3'", "option 'cache_size' must be int"],
        "one line per problem, one pass",
    ),
    ("bool_is_not_int", "math", {"memory_mb": True}, ["option 'memory_mb' must be int, got bool"], "YAML yes/no"),
    ("optional_none", "math", {"max_workers": None}, [], "None where the annotation allows it"),
    ("missing_required", "regex", {}, ["verifier 'regex': missing required option 'pattern'"], "no default"),
    ("list_of_flags", "regex", {"pattern": "a", "flags": ["IGNORECASE"]}, [], "a list of flag names is accepted"),
    ("flags_wrong_items", "regex", {"pattern": "a", "flags": [1]}, ["option 'flags' must be int or str or"], "items"),
    ("bad_regex_value", "regex", {"pattern": "("}, ["verifier 'regex': regex pattern '('"], "the constructor refuses"),
    ("length_needs_a_bound", "length", {}, ["needs at least one of"], "a verifier that would pass everything"),
    ("json_schema_type", "json", {"schema": 3}, ["option 'schema' must be"], "a schema is a mapping or JSON text"),
    ("json_unsupported_keyword", "json", {"schema": {"$ref": "#/x"}}, ["keywords ['$ref'] are not supported"], "-"),
    ("options_not_a_mapping", "exact", ["case_sensitive"], ["options must be a mapping, got list"], "plan shape"),
    ("game24_ok", "game24", {"rule": "ten", "target": 24}, [], "both options known and typed"),
    ("code_lazy_pool", "code", {"workers": 1, "isolation": "process"}, [], "building starts no worker"),
    ("code_bad_isolation", "code", {"isolation": "vm"}, ["isolation must be auto, namespace or process"], "value"),
]


@pytest.mark.parametrize(("name", "options", "expected", "why"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_option_problems(name, options, expected, why):
    problems = option_problems(name, options)
    assert len(problems) == len(expected), (why, problems)
    for line, want in zip(problems, expected, strict=True):
        assert want in line and "\n" not in line, (why, line)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_registered_verifier_resolves(name):
    # the registry names only verifiers whose module exists; defaults that build, build
    problems = option_problems(name, {}, build=False)
    assert all("missing required option" in p for p in problems), problems


def test_an_unknown_verifier_is_caught_without_building():
    assert option_problems("reward_models", {"x": 1}, build=False) == [
        "unknown verifier 'reward_models'; known: " + ", ".join(sorted(REGISTRY))
    ]
