"""Game24 (GeneralPoints) verifier, solver and puzzle generator.

Each case says why the answer should pass or fail. Puzzles used below:
``KA22`` is K, A, 2, 2 (values 10, 1, 2, 2 under "ten"; 13, 1, 2, 2 under "rank").
"""

from __future__ import annotations

import doctest
import itertools
import json
import time

import pytest

import verifiers.game24 as game24
from verifiers import Composite, get
from verifiers.format import ThinkAnswerVerifier
from verifiers.game24 import Game24Verifier, card_values, evaluate, generate_puzzles, leaves, parse, solve

KA22 = {"cards": ["K", "A", "2", "2"], "rule": "ten"}
KA22_RANK = {"cards": ["K", "A", "2", "2"], "rule": "rank"}
EIGHTS = {"cards": ["3", "3", "8", "8"]}
FOURS_SIXES = {"cards": ["4", "4", "6", "6"]}
ONE_ONE_TWO_TWO = {"cards": ["A", "A", "2", "2"]}

# (id, response, reference, passed, reason prefix)
VERIFY_CASES = [
    ("plain_expression_passes", "(10 + 2) * 2 * 1", KA22, True, "pass"),
    ("answer_tag_passes", "<think>12 * 2 = 24</think><answer>(10 + 2) * 2 * 1</answer>", KA22, True, "pass"),
    ("unicode_times_and_divide_accepted", "(10 + 2) × 2 ÷ 1", KA22, True, "pass"),
    ("unicode_minus_accepted", "13 × 2 − 2 × 1", KA22_RANK, True, "pass"),
    ("trailing_equals_target_accepted", "(10 + 2) * 2 * 1 = 24", KA22, True, "pass"),
    ("latex_operators_accepted", r"$(10 + 2) \times 2 \div 1 = 24$", KA22, True, "pass"),
    ("free_text_last_expression_is_read", "First 10 + 2 = 12. So (10 + 2) * 2 * 1 = 24.", KA22, True, "pass"),
    ("prose_inside_answer_tag_still_read", "<answer>It is (10 + 2) * 2 * 1.</answer>", KA22, True, "pass"),
    ("last_answer_tag_wins", "<answer>10 + 2</answer> no: <answer>(10 + 2) * 2 * 1</answer>", KA22, True, "pass"),
    ("exact_fractions_not_floats", "8 / (3 - 8 / 3)", EIGHTS, True, "pass"),
    ("rank_rule_answer_passes", "13 * 2 - 2 * 1", KA22_RANK, True, "pass"),
    ("rank_rule_changes_the_answer", "(10 + 2) * 2 * 1", KA22_RANK, False, "fail: wrong numbers"),
    ("rank_answer_wrong_under_ten", "13 * 2 - 2 * 1", KA22, False, "fail: wrong numbers"),
    ("trailing_equals_other_number_rejected", "(10 + 2) * 2 * 1 = 25", KA22, False, "fail: expression ends with"),
    ("digit_concatenation_rejected", "(1 2) * 2 * 1", ONE_ONE_TWO_TWO, False, "fail: digit concatenation"),
    ("two_cards_written_as_12_rejected", "12 * 2 * 1", ONE_ONE_TWO_TWO, False, "fail: wrong numbers"),
    ("unary_minus_rejected", "(10 + 2) * 2 * -1", KA22, False, "fail: unary minus"),
    ("exponent_caret_rejected", "2 ^ 2 * (10 - 1)", KA22, False, "fail: exponent"),
    ("exponent_double_star_rejected", "2 ** 2 * (10 - 1)", KA22, False, "fail: exponent"),
    ("card_used_twice_rejected", "10 + 10 + 2 + 2", KA22, False, "fail: wrong numbers"),
    ("card_left_unused_rejected", "(10 + 2) * 2", KA22, False, "fail: wrong numbers"),
    ("wrong_value_reported", "(10 + 2) * 2 - 1", KA22, False, "fail: evaluates to 23"),
    ("fractional_value_reported_exactly", "10 / 2 / 2 + 1", KA22, False, "fail: evaluates to 7/2"),
    ("division_by_zero_fails_cleanly", "6 / (4 - 4) * 6", FOURS_SIXES, False, "fail: division by zero"),
    ("no_expression", "I am not sure.", KA22, False, "fail: no expression"),
    ("card_letters_not_numbers", "<answer>(K + 2) * 2 * A</answer>", KA22, False, "fail: card 'K'"),
    ("implicit_multiplication_rejected", "2(10 + 2) * 1", KA22, False, "fail: missing operator"),
    ("closing_parenthesis_unmatched", "<answer>(10 + 2)) * 2 * 1</answer>", KA22, False, "fail: unbalanced"),
    ("unbalanced_parentheses_rejected", "<answer>((10 + 2) * 2 * 1</answer>", KA22, False, "fail: unbalanced"),
    ("zero_padded_number_rejected", "(010 + 2) * 2 * 1", KA22, False, "fail: zero-padded"),
    ("json_string_reference", "(10 + 2) * 2 * 1", json.dumps(KA22), True, "pass"),
    ("list_reference_uses_default_rule", "(10 + 2) * 2 * 1", ["K", "A", "2", "2"], True, "pass"),
    ("values_reference", "(10 + 2) * 2 * 1", {"values": [10, 1, 2, 2]}, True, "pass"),
    ("reference_target_overrides", "10 + 2 * 2 * 1", {"cards": ["K", "A", "2", "2"], "target": 14}, True, "pass"),
]


@pytest.mark.parametrize(
    ("response", "reference", "ok", "reason"), [c[1:] for c in VERIFY_CASES], ids=[c[0] for c in VERIFY_CASES]
)
def test_verify(response, reference, ok, reason):
    v = Game24Verifier().verify(response, reference)
    assert v.passed is ok, v.reason
    assert v.reason.startswith(reason), v.reason
    assert v.score == (1.0 if ok else 0.0)


def test_extracted_is_the_normalised_expression():
    v = Game24Verifier().verify("so <answer>(10 + 2) × 2 × 1 = 24</answer>", KA22)
    assert v.extracted == "(10 + 2) * 2 * 1"
    assert v.reason == "pass: (10 + 2) * 2 * 1 = 24"


def test_constructor_rule_is_the_default_and_reference_rule_wins():
    assert Game24Verifier(rule="rank").verify("13 * 2 - 2 * 1", ["K", "A", "2", "2"]).passed
    assert not Game24Verifier(rule="rank").verify("13 * 2 - 2 * 1", KA22).passed  # the reference says "ten"


SKIP_CASES = [
    ("no_reference", None),
    ("empty_reference", ""),
    ("reference_not_json", "K A 2 2"),
    ("unknown_card", {"cards": ["Z", "A", "2", "2"]}),
    ("unknown_rule", {"cards": ["K", "A", "2", "2"], "rule": "bogus"}),
    ("not_a_puzzle", 42),
    ("no_cards_key", {"rule": "ten"}),
    ("non_integer_target", {"cards": ["K"], "target": "24"}),
]


@pytest.mark.parametrize("reference", [c[1] for c in SKIP_CASES], ids=[c[0] for c in SKIP_CASES])
def test_unusable_reference_is_skipped_not_failed(reference):
    v = Game24Verifier().verify("(10 + 2) * 2 * 1", reference)
    assert not v.gradable and v.reason.startswith("skip: unusable puzzle")


HOSTILE = [
    ("long_chain_is_capped", "1+" * 99_000 + "1", "fail: expression too long"),
    ("deep_parentheses_are_capped", "(" * 40 + "1" + ")" * 40 + "+2*2*10", "fail: expression too long"),
    ("response_over_the_size_cap", "9" * (game24.MAX_RESPONSE_CHARS + 1), "too_large"),
    ("many_candidates", "1 + 1, " * 20_000, "fail: wrong numbers"),
    ("non_text_response", None, "fail: response is NoneType"),
]


@pytest.mark.parametrize(("response", "reason"), [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_huge_or_hostile_input_fails_fast(response, reason):
    start = time.perf_counter()
    v = Game24Verifier().verify(response, KA22)
    assert time.perf_counter() - start < 1.0
    assert not v.passed and v.reason.startswith(reason), v.reason


def test_parser_never_evals_model_text():
    # Python syntax that eval would accept is simply not an expression here.
    v = Game24Verifier().verify("<answer>__import__('os').getcwd()</answer>", KA22)
    assert not v.passed and v.reason.startswith("fail")


# --------------------------------------------------------------------------- cards, solver, generator

CARD_CASES = [
    ("ten_faces_are_10", ["A", "7", "J", "Q", "K"], "ten", [1, 7, 10, 10, 10]),
    ("rank_faces_are_11_12_13", ["A", "7", "J", "Q", "K"], "rank", [1, 7, 11, 12, 13]),
    ("lowercase_and_ints_accepted", ["a", "10", 3, "k"], "rank", [1, 10, 3, 13]),
]


@pytest.mark.parametrize(("cards", "rule", "values"), [c[1:] for c in CARD_CASES], ids=[c[0] for c in CARD_CASES])
def test_card_values(cards, rule, values):
    assert card_values(cards, rule) == values


@pytest.mark.parametrize(
    ("cards", "rule"), [(["Z"], "ten"), ([11], "ten"), (["A"], "eleven")], ids=["bad_card", "int_over_10", "bad_rule"]
)
def test_card_values_rejects_unknown(cards, rule):
    with pytest.raises(ValueError):
        card_values(cards, rule)


SOLVABLE = [
    ("needs_fractions", [3, 3, 8, 8]),
    ("five_fives_minus_fifth", [1, 5, 5, 5]),
    ("needs_division_of_difference", [1, 3, 4, 6]),
    ("big_product", [4, 4, 10, 10]),
    ("rank_faces", [13, 12, 11, 1]),
    ("simple", [10, 1, 2, 2]),
]


@pytest.mark.parametrize("values", [c[1] for c in SOLVABLE], ids=[c[0] for c in SOLVABLE])
def test_solver_finds_a_solution_that_parses_back(values):
    expression = solve(values)
    assert expression is not None
    tree = parse(expression)
    assert sorted(leaves(tree)) == sorted(values)
    assert evaluate(tree) == 24


@pytest.mark.parametrize("values", [[1, 1, 1, 1], [1, 1, 1, 2], [1, 1, 2, 2]], ids=["1111", "1112", "1122"])
def test_solver_returns_none_when_unsolvable(values):
    assert solve(values) is None


def test_solver_other_target():
    assert solve([1, 1, 1, 1], target=4) == "1 + 1 + 1 + 1"


def test_solver_counts_the_known_1362_solvable_sets():
    # Of the 1820 multisets of four numbers in 1..13, exactly 1362 can make 24 (a known
    # count): the exhaustive search neither misses solutions nor invents them. ~3 s.
    combos = itertools.combinations_with_replacement(range(1, 14), 4)
    assert sum(solve(c) is not None for c in combos) == 1362


@pytest.mark.parametrize("rule", ["ten", "rank"])
def test_every_generated_solution_verifies_under_its_rule(rule):
    puzzles = generate_puzzles(60, rule=rule, seed=7)
    assert len(puzzles) == 60
    other = "rank" if rule == "ten" else "ten"
    v = Game24Verifier(rule=other)  # the puzzle's own rule must win over the default
    for p in puzzles:
        assert p["rule"] == rule and p["values"] == card_values(p["cards"], rule)
        verdict = v.verify(f"<answer>{p['solution']}</answer>", p)
        assert verdict.passed, (p, verdict.reason)
        assert "<answer>" in p["prompt"] and ", ".join(p["cards"]) in p["prompt"]


def test_rank_split_is_out_of_distribution():
    # Solutions learned under one rule stop being valid under the other when faces appear.
    puzzles = generate_puzzles(60, rule="rank", seed=1)
    broken = [p for p in puzzles if not Game24Verifier().verify(p["solution"], {**p, "rule": "ten"}).passed]
    assert broken, "expected face cards to change some answers"


def test_generator_is_deterministic_and_can_keep_unsolvable():
    assert generate_puzzles(5, seed=3) == generate_puzzles(5, seed=3)
    assert generate_puzzles(5, seed=3) != generate_puzzles(5, seed=4)
    mixed = generate_puzzles(80, seed=0, solvable_only=False)
    assert any(p["solution"] is None for p in mixed)
    with pytest.raises(ValueError):
        generate_puzzles(1, rule="eleven")


def test_impossible_target_raises_instead_of_looping():
    start = time.perf_counter()
    with pytest.raises(ValueError, match="solvable"):
        generate_puzzles(1, target=10**6)
    assert time.perf_counter() - start < 10


# --------------------------------------------------------------------------- batch, reward, composite


def test_verify_batch_keeps_order_in_a_process_pool():
    responses = ["(10 + 2) * 2 * 1", "nothing", "13 * 2 - 2 * 1"]
    references = [KA22, KA22, KA22_RANK]
    verdicts = Game24Verifier().verify_batch(responses, references, workers=2)
    assert [v.passed for v in verdicts] == [True, False, True]
    assert Game24Verifier().verify_batch(responses, references, workers=1) == verdicts


def test_registry_builds_it():
    assert isinstance(get("game24", rule="rank"), Game24Verifier)


def test_as_reward_plain_and_conversational():
    reward = Game24Verifier().as_reward(reference_field="puzzle")
    assert reward.__name__ == "game24_reward"
    completions = ["(10 + 2) * 2 * 1", [{"role": "assistant", "content": "<answer>10 + 2</answer>"}], "3 * 8"]
    assert reward(prompts=["p"] * 3, completions=completions, puzzle=[KA22, KA22, None]) == [1.0, 0.0, None]


def test_composite_exposes_both_raw_scores():
    composite = Composite({"correct": (Game24Verifier(), 0.8), "format": (ThinkAnswerVerifier(), 0.2)})
    good = composite.verify("<think>12 * 2</think><answer>(10 + 2) * 2 * 1</answer>", KA22)
    assert good.passed and good.score == pytest.approx(1.0)
    right_but_unformatted = composite.verify("(10 + 2) * 2 * 1", KA22)
    parts = right_but_unformatted.meta["components"]
    assert (parts["correct"]["score"], parts["format"]["score"]) == (1.0, 0.0)
    assert right_but_unformatted.score == pytest.approx(0.8) and not right_but_unformatted.passed
    formatted_but_wrong = composite.verify("<think>hm</think><answer>10 + 2 + 2 + 1</answer>", KA22)
    parts = formatted_but_wrong.meta["components"]
    assert (parts["correct"]["score"], parts["format"]["score"]) == (0.0, 1.0)
    reward = composite.as_reward(reference_field="puzzle")
    assert reward(completions=["(10 + 2) * 2 * 1"], puzzle=[KA22]) == [pytest.approx(0.8)]


def test_module_doctests():
    result = doctest.testmod(game24)
    assert result.attempted > 0 and result.failed == 0


# (id, response, why): every call ends within 0.5 s, whatever the input (game24 has no time limit of its own)
HOSTILE_INPUTS = [
    ("unclosed_answer_tags", "<answer>" * 25000, "a lazy tag regex was quadratic: 84 s"),
    ("unclosed_tags_1mb", "<answer>" * 125_000, "past the size limit: refused at once"),
    ("closed_and_open", "<answer>" * 24_000 + "</answer>", "one closer after many openers"),
    ("operators", "1+" * 99_000 + "1", "one huge candidate expression"),
    ("parentheses", "(" * 99_000 + "1+2+3*6" + ")" * 99_000, "deep nesting"),
    ("digits", "9" * 199_000, "one huge number"),
]


@pytest.mark.parametrize(("response", "why"), [c[1:] for c in HOSTILE_INPUTS], ids=[c[0] for c in HOSTILE_INPUTS])
def test_hostile_inputs_end_quickly(response, why):
    t0 = time.perf_counter()
    v = Game24Verifier().verify(response, [1, 2, 3, 6])
    assert time.perf_counter() - t0 < 0.5, why
    assert not v.passed, why
