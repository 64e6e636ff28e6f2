"""Format verifiers: think/answer, JSON, regex, length, overlong penalty, exact match.

Each case says why the response should pass or fail.
"""

from __future__ import annotations

import doctest
import pickle
import sys
import time
import types
import warnings

import pytest
from pydantic import BaseModel

import verifiers.format as fmt
from verifiers import Composite, get
from verifiers.format import (
    ExactMatchVerifier,
    JsonVerifier,
    LengthVerifier,
    OverlongPenalty,
    RegexVerifier,
    ThinkAnswerVerifier,
    extract_json_text,
    normalize_answer,
    validate_schema,
)


def ids(cases):
    return [c[0] for c in cases]


def args(cases):
    return [c[1:] for c in cases]


# --------------------------------------------------------------------------- think/answer

THINK_CASES = [
    ("well_formed", "<think>6*4</think><answer>24</answer>", True, "pass"),
    ("whitespace_around_and_between", "\n <think>\nx\n</think>\n\n<answer> 24 </answer>\n", True, "pass"),
    ("empty_think_is_allowed", "<think></think><answer>24</answer>", True, "pass"),
    ("tags_are_case_insensitive", "<THINK>x</THINK><Answer>24</Answer>", True, "pass"),
    ("text_before_think", "Sure! <think>x</think><answer>24</answer>", False, "fail: expected <think>"),
    ("text_after_answer", "<think>x</think><answer>24</answer> Hope that helps", False, "fail: expected <think>"),
    ("text_between_blocks", "<think>x</think> so <answer>24</answer>", False, "fail: expected <think>"),
    ("answer_before_think", "<answer>24</answer><think>x</think>", False, "fail: expected <think>"),
    ("two_answers", "<think>x</think><answer>1</answer><answer>2</answer>", False, "fail: expected one <answer>"),
    ("two_thinks", "<think>x</think><think>y</think><answer>1</answer>", False, "fail: expected one <think>"),
    ("unclosed_answer", "<think>x</think><answer>24", False, "fail: expected one <answer>"),
    ("missing_think", "<answer>24</answer>", False, "fail: expected one <think>"),
    ("nested_answer_in_think", "<think><answer>1</answer></think><answer>2</answer>", False, "fail: expected one"),
    ("empty_answer", "<think>x</think><answer>  </answer>", False, "fail: empty <answer>"),
    ("plain_text", "24", False, "fail"),
]


@pytest.mark.parametrize(("response", "ok", "reason"), args(THINK_CASES), ids=ids(THINK_CASES))
def test_think_answer(response, ok, reason):
    v = ThinkAnswerVerifier().verify(response, None)
    assert v.passed is ok and v.reason.startswith(reason), v.reason
    if ok:
        assert v.extracted == "24"


def test_think_answer_prefilled_think_tag():
    # The chat template opened <think> in the prompt; the completion continues inside it.
    assert ThinkAnswerVerifier(prefilled_think=True).verify("x</think><answer>24</answer>", None).passed
    assert ThinkAnswerVerifier(prefilled_think=True).verify("<think>x</think><answer>24</answer>", None).passed
    assert not ThinkAnswerVerifier().verify("x</think><answer>24</answer>", None).passed


# --------------------------------------------------------------------------- JSON

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "role": {"enum": ["admin", "user"]},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}

JSON_CASES = [
    ("object_passes", '{"a": 1}', None, None, True, "pass: valid JSON"),
    ("array_passes", "[1, 2]", None, None, True, "pass"),
    ("fenced_json_block", 'Here:\n```json\n{"a": 1}\n```\nDone.', None, None, True, "pass"),
    ("untagged_fence", 'Here:\n```\n{"a": 1}\n```', None, None, True, "pass"),
    ("last_json_block_wins", '```json\n{"a": 1}\n```\n```json\n{"a": 2}\n```', None, {"a": 2}, True, "pass"),
    ("python_block_ignored", '```python\nx = {}\n```\n```json\n{"a": 1}\n```', None, None, True, "pass"),
    ("prose_around_bare_json_fails", 'Sure: {"a": 1}', None, None, False, "fail: not JSON"),
    ("truncated_json_fails", '{"a": 1', None, None, False, "fail: not JSON"),
    ("nan_is_not_json", '{"a": NaN}', None, None, False, "fail: not JSON"),
    ("schema_pass", '{"name": "Ada", "age": 36, "tags": ["x"], "role": "admin"}', PERSON, None, True, "pass"),
    (
        "schema_missing_required",
        '{"name": "Ada"}',
        PERSON,
        None,
        False,
        "fail: schema: $: missing required property 'age'",
    ),
    ("schema_wrong_type", '{"name": "Ada", "age": "36"}', PERSON, None, False, "fail: schema: $.age: expected integer"),
    ("schema_bool_is_not_integer", '{"name": "Ada", "age": true}', PERSON, None, False, "fail: schema: $.age"),
    ("schema_below_minimum", '{"name": "Ada", "age": -1}', PERSON, None, False, "fail: schema: $.age"),
    ("schema_above_maximum", '{"name": "Ada", "age": 200}', PERSON, None, False, "fail: schema: $.age"),
    ("schema_enum", '{"name": "Ada", "age": 3, "role": "root"}', PERSON, None, False, "fail: schema: $.role"),
    ("schema_items", '{"name": "Ada", "age": 3, "tags": [1]}', PERSON, None, False, "fail: schema: $.tags[0]"),
    (
        "schema_max_items",
        '{"name": "A", "age": 3, "tags": ["a","b","c","d"]}',
        PERSON,
        None,
        False,
        "fail: schema: $.tags",
    ),
    ("schema_extra_property", '{"name": "Ada", "age": 3, "x": 1}', PERSON, None, False, "fail: schema: $"),
    ("schema_min_length", '{"name": "", "age": 3}', PERSON, None, False, "fail: schema: $.name"),
    ("schema_top_level_type", "[1]", PERSON, None, False, "fail: schema: $: expected object"),
    ("reference_equal", '{"b": [1, 2], "a": 1}', None, {"a": 1, "b": [1, 2]}, True, "pass: equals the reference"),
    ("reference_json_string", '{"a": 1}', None, '{"a": 1.0}', True, "pass: equals the reference"),
    ("reference_differs", '{"a": 2}', None, {"a": 1}, False, "fail: JSON differs"),
    ("true_is_not_1", '{"a": true}', None, {"a": 1}, False, "fail: JSON differs"),
    ("empty_reference_means_none", '{"a": 1}', None, "", True, "pass: valid JSON"),
    ("unparseable_reference_skips", '{"a": 1}', None, "{oops", False, "skip: reference is not JSON"),
]


@pytest.mark.parametrize(("response", "schema", "reference", "ok", "reason"), args(JSON_CASES), ids=ids(JSON_CASES))
def test_json(response, schema, reference, ok, reason):
    v = JsonVerifier(schema=schema).verify(response, reference)
    assert v.passed is ok and v.reason.startswith(reason), v.reason


def test_json_reference_skip_is_ungradable():
    assert not JsonVerifier().verify("{}", "{oops").gradable


def test_json_deep_nesting_fails_cleanly():
    v = JsonVerifier(schema={"type": "array", "items": {"type": "array"}}).verify("[" * 100_000 + "]" * 100_000, None)
    assert not v.passed


SCHEMA_CASES = [
    ("integer_accepts_whole_float", 3.0, {"type": "integer"}, []),
    ("type_list", None, {"type": ["string", "null"]}, []),
    ("const", 2, {"const": 3}, ["$: must equal 3"]),
    ("exclusive_minimum", 0, {"exclusiveMinimum": 0}, ["$: 0 violates exclusiveMinimum 0"]),
    ("pattern", "abc", {"pattern": "^a\\d"}, ["$: does not match pattern '^a\\\\d'"]),
    (
        "additional_properties_schema",
        {"x": "s"},
        {"additionalProperties": {"type": "integer"}},
        ['$.x: expected integer, got "s"'],
    ),
    ("any_of_matches_one", 3, {"anyOf": [{"type": "string"}, {"type": "integer"}]}, []),
    ("any_of_matches_none", 3.5, {"anyOf": [{"type": "string"}, {"type": "integer"}]}, ["$: matches none of anyOf"]),
    ("all_of", 5, {"allOf": [{"minimum": 0}, {"maximum": 4}]}, ["$: 5 violates maximum 4"]),
    ("false_schema", 1, {"properties": {"a": False}}, []),
    ("false_schema_present", {"a": 1}, {"properties": {"a": False}}, ["$.a: no value is allowed here"]),
]


@pytest.mark.parametrize(("instance", "schema", "errors"), args(SCHEMA_CASES), ids=ids(SCHEMA_CASES))
def test_builtin_schema_validator(instance, schema, errors):
    assert validate_schema(instance, schema) == errors


def test_unsupported_schema_keyword_is_refused_not_ignored():
    # an ignored constraint would pass answers that break it
    with pytest.raises(ValueError, match=r"keywords \['\$ref'\] are not supported; use only "):
        JsonVerifier(schema={"properties": {"a": {"$ref": "#/defs/x"}}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        JsonVerifier(schema={**PERSON, "title": "Person", "description": "annotations are fine"})


def _json_reasons() -> list[str]:
    out = []
    for response, schema, reference, _, _ in args(JSON_CASES):
        out.append(JsonVerifier(schema=schema).verify(response, reference).reason)
    return out


def test_json_messages_do_not_depend_on_an_installed_jsonschema(monkeypatch):
    # vLLM brings jsonschema along: a run with it must read exactly like one without
    without = _json_reasons()
    fake = types.ModuleType("jsonschema")
    fake.validators = types.SimpleNamespace(validator_for=lambda *a, **k: pytest.fail("jsonschema was consulted"))
    monkeypatch.setitem(sys.modules, "jsonschema", fake)
    import jsonschema  # the fake is what an import finds now

    assert jsonschema is fake
    assert _json_reasons() == without
    with pytest.raises(ValueError, match="not supported"):  # the same refusal, not jsonschema's own check
        JsonVerifier(schema={"$ref": "#/x"})


class Answer(BaseModel):
    value: int
    unit: str = "m"


def test_json_pydantic_model_class_and_import_path(monkeypatch):
    module = types.ModuleType("fake_models")
    module.Answer = Answer
    monkeypatch.setitem(sys.modules, "fake_models", module)
    for model in (Answer, "fake_models:Answer", "fake_models.Answer"):
        v = JsonVerifier(model=model)
        assert v.verify('{"value": 3}', None).passed
        bad = v.verify('{"value": "three"}', None)
        assert not bad.passed and bad.reason.startswith("fail: model Answer: value:"), bad.reason
    with pytest.raises(ValueError, match="not a pydantic model"):
        JsonVerifier(model=dict)


def test_json_verifier_pickles_for_worker_processes():
    v = pickle.loads(pickle.dumps(JsonVerifier(schema=PERSON, model=Answer)))
    assert v.verify('{"name": "Ada", "age": 3, "value": 1}', None).reason.startswith("fail: schema")


def test_extract_json_text_prefers_the_last_json_block():
    text = '```json\n{"a": 1}\n```\nand\n```JSON\n{"b": 2}\n```\n```python\nprint()\n```'
    assert extract_json_text(text) == '{"b": 2}'


# --------------------------------------------------------------------------- regex

REGEX_CASES = [
    ("search_anywhere", r"\d+", {}, "abc 42 def", True, "42"),
    ("search_miss", r"\d+", {}, "no digits", False, None),
    ("group_one_is_extracted", r"answer: (\w+)", {}, "the answer: Paris.", True, "Paris"),
    ("flags_by_name", r"ANSWER", {"flags": "IGNORECASE"}, "answer", True, "answer"),
    ("flags_as_list", r"^b", {"flags": ["multiline"]}, "a\nb", True, "b"),
    ("fullmatch_strips_whitespace", r"[A-D]", {"fullmatch": True}, " B\n", True, "B"),
    ("fullmatch_rejects_extra_text", r"[A-D]", {"fullmatch": True}, "B because", False, None),
]


@pytest.mark.parametrize(("pattern", "options", "response", "ok", "extracted"), args(REGEX_CASES), ids=ids(REGEX_CASES))
def test_regex(pattern, options, response, ok, extracted):
    v = RegexVerifier(pattern, **options).verify(response, None)
    assert v.passed is ok and v.extracted == extracted, v.reason


@pytest.mark.parametrize(
    ("options", "match"),
    [({"pattern": "("}, "regex pattern"), ({"pattern": "a", "flags": "BOGUS"}, "unknown regex flag")],
    ids=["bad_pattern", "bad_flag"],
)
def test_regex_bad_config_raises(options, match):
    with pytest.raises(ValueError, match=match):
        RegexVerifier(**options)


# --------------------------------------------------------------------------- length

LENGTH_CASES = [
    ("within_char_bounds", {"min_chars": 3, "max_chars": 5}, "abcd", True, "pass"),
    ("bounds_are_inclusive", {"min_chars": 4, "max_chars": 4}, "abcd", True, "pass"),
    ("too_few_chars", {"min_chars": 5}, "abcd", False, "fail: 4 chars < min_chars 5"),
    ("too_many_chars", {"max_chars": 3}, "abcd", False, "fail: 4 chars > max_chars 3"),
    ("too_few_words", {"min_words": 3}, "one two", False, "fail: 2 words < min_words 3"),
    ("too_many_words", {"max_words": 1}, "one  two\n", False, "fail: 2 words > max_words 1"),
    ("words_within", {"min_words": 1, "max_words": 2}, "one two", True, "pass"),
]


@pytest.mark.parametrize(("options", "response", "ok", "reason"), args(LENGTH_CASES), ids=ids(LENGTH_CASES))
def test_length(options, response, ok, reason):
    v = LengthVerifier(**options).verify(response, None)
    assert v.passed is ok and v.reason.startswith(reason), v.reason


@pytest.mark.parametrize(
    "options",
    [{}, {"min_chars": 5, "max_chars": 4}, {"min_words": 2, "max_words": 1}],
    ids=["no_bound", "chars_inverted", "words_inverted"],
)
def test_length_bad_config_raises(options):
    with pytest.raises(ValueError):
        LengthVerifier(**options)


# --------------------------------------------------------------------------- overlong

# max_length 100, cache_length 20: free up to 80, ramp over 81..100, -1 beyond.
OVERLONG_CASES = [
    ("empty", 0, 0.0),
    ("at_soft_limit_no_penalty", 80, 0.0),
    ("just_past_soft_limit", 81, -0.05),
    ("middle_of_ramp", 90, -0.5),
    ("one_before_hard_limit", 99, -0.95),
    ("at_hard_limit_full_penalty", 100, -1.0),
    ("past_hard_limit", 101, -1.0),
    ("far_past", 10_000, -1.0),
]


@pytest.mark.parametrize(("length", "score"), args(OVERLONG_CASES), ids=ids(OVERLONG_CASES))
def test_overlong_ramp(length, score):
    p = OverlongPenalty(max_length=100, cache_length=20)
    assert p.penalty(length) == pytest.approx(score)
    v = p.verify("x" * length, None)
    assert v.score == pytest.approx(score)
    assert v.passed is (score == 0.0)  # passed means "no penalty"
    assert v.gradable


def test_overlong_zero_cache_is_a_step():
    p = OverlongPenalty(max_length=10, cache_length=0)
    assert (p.penalty(10), p.penalty(11)) == (0.0, -1.0)


def test_overlong_tokens_with_tokenizer_or_completion_ids():
    class WordTokenizer:
        def encode(self, text):  # no add_special_tokens keyword: the fallback path
            return text.split()

    p = OverlongPenalty(max_length=4, cache_length=2, unit="tokens", tokenizer=WordTokenizer())
    assert [p.verify(t, None).score for t in ("a b", "a b c", "a b c d e")] == [0.0, -0.5, -1.0]
    assert OverlongPenalty(4, 2, unit="tokens", tokenizer=str.split).verify("a b c", None).score == -0.5
    no_tok = OverlongPenalty(4, 2, unit="tokens")
    assert not no_tok.verify("a b c", None).gradable  # cannot count tokens: skip, not a wrong answer
    reward = no_tok.as_reward()
    assert reward(completions=["x", "y", "z"], completion_ids=[[1, 2], [1, 2, 3], [1] * 9]) == [0.0, -0.5, -1.0]


@pytest.mark.parametrize(
    "options",
    [
        {"max_length": 0, "cache_length": 0},
        {"max_length": 10, "cache_length": 11},
        {"max_length": 10, "cache_length": 2, "unit": "bytes"},
    ],
    ids=["zero_max", "cache_over_max", "bad_unit"],
)
def test_overlong_bad_config_raises(options):
    with pytest.raises(ValueError):
        OverlongPenalty(**options)


def test_overlong_in_a_composite_subtracts():
    # Positive weight: the penalty is already negative.
    c = Composite({"exact": (ExactMatchVerifier(), 1.0), "overlong": (OverlongPenalty(100, 20), 1.0)})
    v = c.verify("x" * 80 + "\nParis", "paris")  # 86 chars: penalty -0.3
    assert v.meta["components"]["overlong"]["score"] == pytest.approx(-0.3)
    assert v.score == pytest.approx((1.0 - 0.3) / 2)
    assert c.verify("Paris", "paris").score == pytest.approx(0.5)


# --------------------------------------------------------------------------- exact match

EXACT_CASES = [
    ("case_insensitive", "PARIS", "paris", {}, True),
    ("punctuation_stripped", "Paris.", "paris", {}, True),
    ("answer_tag_used", "<think>hmm</think><answer>(B)</answer>", "B", {}, True),
    ("last_line_used", "Let me see.\nIt could be Rome.\nParis", "Paris", {}, True),
    ("answer_prefix_dropped", "reasoning\n**Final answer:** Positive", "positive", {}, True),
    ("list_of_accepted", "pos", ["positive", "pos"], {}, True),
    ("number_reference", "42", 42, {}, True),
    ("earlier_line_ignored", "Paris\nno wait, Rome", "Paris", {}, False),
    ("minus_sign_kept", "-5", "5", {}, False),
    ("decimal_point_kept", "3.5", "35", {}, False),
    ("case_sensitive_option", "paris", "Paris", {"case_sensitive": True}, False),
    ("punctuation_kept_option", "Paris.", "Paris", {"strip_punctuation": False}, False),
    ("wrong_label", "negative", ["positive", "neutral"], {}, False),
    ("empty_response", "", "Paris", {}, False),
]


@pytest.mark.parametrize(("response", "reference", "options", "ok"), args(EXACT_CASES), ids=ids(EXACT_CASES))
def test_exact_match(response, reference, options, ok):
    v = ExactMatchVerifier(**options).verify(response, reference)
    assert v.passed is ok, v.reason
    assert v.gradable


@pytest.mark.parametrize(
    "reference",
    [None, "", [], ["", None], float("nan"), "..."],
    ids=["none", "empty", "empty_list", "blank_items", "nan", "only_punct"],
)
def test_exact_match_unusable_reference_is_skipped(reference):
    assert not ExactMatchVerifier().verify("Paris", reference).gradable


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("  (B) Positive! ", "b positive"),
        ("-3.5.", "-3.5"),
        ("U.S.A.", "usa"),
        ("1,000", "1000"),
        ("well-known", "wellknown"),
    ],
)
def test_normalize_answer(text, normal):
    assert normalize_answer(text) == normal


# --------------------------------------------------------------------------- rewards, registry, batch

CONVERSATIONAL = [{"role": "assistant", "content": "<think>x</think><answer>24</answer>"}]


def test_reference_free_reward_grades_every_row():
    # make_reward skips rows without a reference; format rewards must not.
    reward = ThinkAnswerVerifier().as_reward()
    assert reward.__name__ == "think_answer_reward"
    completions = ["<think>x</think><answer>24</answer>", CONVERSATIONAL, "24"]
    assert reward(prompts=["p"] * 3, completions=completions) == [1.0, 1.0, 0.0]
    assert reward(prompts=["p"] * 3, completions=completions, answer=[None, "", "x"]) == [1.0, 1.0, 0.0]


@pytest.mark.parametrize(
    ("verifier", "completions", "expected"),
    [
        (RegexVerifier(r"<answer>"), ["<answer>1</answer>", [{"role": "assistant", "content": "no"}]], [1.0, 0.0]),
        (LengthVerifier(max_words=2), ["a b", [{"role": "assistant", "content": "a b c"}]], [1.0, 0.0]),
        (OverlongPenalty(6, 2), ["abc", [{"role": "assistant", "content": "abcdef"}]], [0.0, -1.0]),
    ],
    ids=["regex", "length", "overlong"],
)
def test_format_rewards_plain_and_conversational(verifier, completions, expected):
    assert verifier.as_reward()(prompts=["p", "p"], completions=completions) == expected


def test_json_reward_uses_reference_where_present():
    reward = JsonVerifier().as_reward(reference_field="target")
    out = reward(completions=['{"a": 1}', '{"a": 1}', "nope", '{"a": 1}'], target=[None, {"a": 2}, None, "{bad"])
    assert out == [1.0, 0.0, 0.0, None]


def test_exact_reward_leaves_rows_without_reference_out():
    reward = ExactMatchVerifier().as_reward(reference_field="label")
    assert reward(completions=["yes", [{"role": "assistant", "content": "no"}], "yes"], label=["yes", "yes", None]) == [
        1.0,
        0.0,
        None,
    ]


@pytest.mark.parametrize(
    ("name", "options", "cls"),
    [
        ("think_answer", {}, ThinkAnswerVerifier),
        ("json", {"schema": {"type": "object"}}, JsonVerifier),
        ("regex", {"pattern": "x", "flags": "I"}, RegexVerifier),
        ("length", {"max_chars": 10}, LengthVerifier),
        ("overlong", {"max_length": 10, "cache_length": 2}, OverlongPenalty),
        ("exact", {"case_sensitive": True}, ExactMatchVerifier),
    ],
    ids=["think_answer", "json", "regex", "length", "overlong", "exact"],
)
def test_registry_names_build_these_classes(name, options, cls):
    v = get(name, **options)
    assert isinstance(v, cls) and v.name == name


def test_verify_batch_keeps_order_in_a_process_pool():
    responses = ['{"a": 1}', "nope", "[]", '{"a": 2}']
    verdicts = JsonVerifier(schema={"type": "object"}).verify_batch(responses, [None] * 4, workers=2)
    assert [v.passed for v in verdicts] == [True, False, False, True]


def test_non_text_response_fails_without_raising():
    for v in (
        ThinkAnswerVerifier(),
        JsonVerifier(),
        RegexVerifier("x"),
        LengthVerifier(max_chars=1),
        OverlongPenalty(4, 2),
    ):
        verdict = v.verify(None, None)  # type: ignore[arg-type]
        assert not verdict.passed and verdict.gradable
    assert not ExactMatchVerifier().verify(None, "x").passed  # type: ignore[arg-type]


def test_huge_response_is_refused_quickly():
    huge = "<think>" + "x" * (fmt.MAX_RESPONSE_CHARS + 1)
    for v, reference in (
        (ThinkAnswerVerifier(), None),
        (JsonVerifier(), None),
        (RegexVerifier("y"), None),
        (ExactMatchVerifier(), "x"),
    ):
        assert v.verify(huge, reference).reason.startswith("too_large")


def test_module_doctests():
    result = doctest.testmod(fmt)
    assert result.attempted > 0 and result.failed == 0


def test_composite_of_reference_free_checks_grades_rows_without_a_reference():
    """think_answer + length need no reference: a Composite of them must not return None."""
    from verifiers.registry import Composite, get

    combo = Composite({"format": (get("think_answer"), 0.5), "length": (get("length", max_chars=200), 0.5)})
    reward = combo.as_reward()
    scores = reward(completions=["<think>a</think><answer>b</answer>", "no tags"], answer=[None, None])
    assert scores == [1.0, 0.5]
    math_only = Composite({"math": (get("math"), 1.0)})
    assert math_only.as_reward()(completions=["\\boxed{2}"], answer=[None]) == [None], "correctness needs a reference"


# (id, verifier, response, why): 1 MB of hostile text is judged within 0.5 s (these have no limit of their own)
HOSTILE_INPUTS = [
    ("exact_unclosed_tags", "exact", "<answer>" * 124_000, "a lazy tag regex was quadratic"),
    ("exact_one_line_of_symbols", "exact", "!" * 999_000, "the answer-prefix regex on one long line"),
    ("think_unclosed", "think_answer", "<think>" * 140_000, "tag counting, not matching"),
    ("json_fences", "json", "```json\n" * 120_000, "fence scanning"),
    ("json_deep", "json", "[" * 490_000 + "]" * 490_000, "deep nesting"),
    ("regex_huge", "length", "x " * 499_000, "word counting"),
]


@pytest.mark.parametrize(
    ("name", "response", "why"), [c[1:] for c in HOSTILE_INPUTS], ids=[c[0] for c in HOSTILE_INPUTS]
)
def test_hostile_inputs_end_quickly(name, response, why):
    options = {"max_words": 10} if name == "length" else {}
    t0 = time.perf_counter()
    v = get(name, **options).verify(response, "Paris" if name == "exact" else None)
    assert time.perf_counter() - t0 < 0.5, why
    assert not v.passed, why
