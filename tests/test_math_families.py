"""How the math verifier reads answers as models write them, family by family.

Each case cites its reason; the readings are the ones stated in ``verifiers.math``.
The reward-hacking group must have no false pass at all.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from verifiers.math import MathVerifier


@pytest.fixture(scope="module")
def v():
    return MathVerifier(cache_size=0)


# (id, response, gold, why): every one of these must fail
REWARD_HACKING = [
    ("or_in_box", r"\boxed{7 \textrm{ or 8}}", "7", "text inside the box adds a second answer"),
    ("or_more", r"\boxed{7 \text{ or more}}", "7", "a bound, not the value"),
    ("not_the_answer", r"\boxed{5 \text{ is not the answer}}", "5", "text negates the number"),
    ("thousand", r"\boxed{5 \text{ thousand}}", "5", "a scale word is not a unit"),
    ("squared", r"\boxed{2 \text{ squared}}", "2", "an operation word is not a unit"),
    ("plain_scale_word", r"\boxed{5 thousand}", "5", "the same without \\text"),
    ("at_least", r"\boxed{\text{at least } 3}", "3", "a bound before the number"),
    ("list_as_thousands", r"\boxed{2100}", "2, 100", "a list is not a thousands separator"),
    ("nested_product", r"\boxed{5 \boxed{6}}", "30", "nested boxes are not a product"),
    ("nested_inner", r"\boxed{5 \boxed{6}}", "6", "nor the inner answer"),
    ("nested_outer", r"\boxed{5 \boxed{6}}", "5", "nor the outer one"),
    ("restated", "prove that the final answer is $42$. Hmm, I don't know.", "42", "only restates the problem"),
    ("restated_show", "We must show that the answer is 42.", "42", "only restates the problem"),
    (
        "restated_boxed",
        r"Prove that the final answer is \boxed{42}. I don't know.",
        "42",
        "a box does not make it an answer",
    ),
    ("vanishing_97", r"\boxed{x^2 + \sin(97\pi x)}", "x^2", "vanishes on a fixed grid of 97ths"),
    ("vanishing_integers", r"\boxed{x^2 + \sin(\pi x)}", "x^2", "vanishes at every integer"),
    ("vanishing_poly", r"\boxed{x + x(x-1)(x-2)(x-3)(x-4)}", "x", "vanishes at five small points"),
    ("two_boxes_one_gold", r"\boxed{7}, \boxed{8}", "7", "several boxes for one answer is hedging"),
    ("negated_is_not_answer", "The answer is 34, not 35.", "35", "the negated number is not the answer"),
    ("bold_hedging", "Maybe **41**, or **42**.", "42", "two bold answers are hedging, like two boxes"),
    ("bold_guess_then_other", "Is it **42**? No: the answer is 41.", "42", "the marker wins over a bold guess"),
    ("negated_only", "The answer is not 34.", "34", "a negation is not an answer"),
    ("box_and_not", r"\boxed{7 \text{ and not } 8}", "8", "the negated number is not the answer"),
    ("wrong_letter", r"\boxed{(D) 12}", "C", "another choice"),
    ("wrong_named_part", r"\boxed{k = 2, n = 45}", "k = 45, n = 2", "named parts swapped"),
    ("reversed_ratio", r"\boxed{32:7}", "7:32", "a ratio has an order"),
    ("bare_number_for_angle", r"\boxed{90}", r"\frac{\pi}{2}", "a number without the degree sign is radians"),
    ("not_all_reals", r"\boxed{\mathbb{R}}", r"[0, \infty)", "a different set"),
    ("repeating_vs_truncated", r"\boxed{0.\overline{3}}", "0.33", "1/3 is not 0.33"),
    ("decimal_comma_ambiguous", r"\boxed{3,5}", "3.5", "3,5 is the list {3, 5}"),
]


@pytest.mark.parametrize(
    ("response", "gold", "why"), [c[1:] for c in REWARD_HACKING], ids=[c[0] for c in REWARD_HACKING]
)
def test_reward_hacking_never_passes(v, response, gold, why):
    verdict = v.verify(response, gold)
    assert not verdict.passed, (why, verdict.reason)


def test_vanishing_points_are_not_predictable(v):
    # a term built to vanish on any fixed grid of rationals still fails, call after call
    verdicts = [v.verify(rf"\boxed{{x + \sin({k} \pi x)}}", "x") for k in (97, 101, 89, 2, 1)]
    assert not any(x.passed for x in verdicts), [x.reason for x in verdicts]


# (id, response, gold, why): every one of these must pass
FAMILIES = [
    ("prose_after_marker", "Final Answer: The largest $n$ is 34.", "34", "a sentence stating the value"),
    ("negated_alternative", "the answer is 34, not 35", "34", "the negated number is not a second answer"),
    ("and_not", "The answer is 7 and not 8.", "7", "likewise"),
    ("sum_relation", r"\boxed{a+b=7}", "7", "asked for a+b: stated as a relation"),
    ("function_value", r"\boxed{f(2) = -4}", "-4", "asked for f(2)"),
    ("variable_on_right", r"\boxed{5 = x}", "5", "x = 5 written backwards"),
    ("named_tuple", r"\boxed{(p,q)=(3,2)}", "(3,2)", "a tuple named by its variables"),
    ("rearranged_line", r"\boxed{y = 2x + 3}", "2x - y + 3 = 0", "the same equation rearranged"),
    ("several_boxes", r"\boxed{1}, \boxed{2}, \boxed{4}", "1, 2, 4", "one answer per box for a list gold"),
    ("or_solutions", "x = 2 or x = 3", "2, 3", "alternatives for a list gold"),
    ("pairs_or", r"\boxed{(11,7) \text{ or } (7,11)}", "(11,7), (7,11)", "both ordered pairs"),
    ("named_parts", r"\boxed{AB=4, CD=5}", "AB = 4, CD = 5", "a gold with named parts"),
    ("named_parts_kn", r"\boxed{k = 45, n = 2}", "k = 45, n = 2", "a gold with named parts"),
    ("ratio", r"\boxed{7:32}", "7:32", "a ratio"),
    ("ratio_as_fraction", r"\boxed{\frac{7}{32}}", "7:32", "a ratio is its quotient"),
    ("range_inequality", r"\boxed{0<f(x)<1}", "(0,1)", "a range stated as an inequality in f(x)"),
    ("list_true_order", r"\boxed{100, 2}", "2, 100", "the unordered solutions, not 2100"),
    ("worked_gold_boxed", r"\boxed{5}", r"We get $2 + 3 = \boxed{5}$.", "a worked-solution gold: its box"),
    (
        "worked_gold_marker",
        "5",
        "Add the two numbers. Two plus three makes five, so the answer is 5.",
        "a worked-solution gold: its stated answer",
    ),
    ("repeating_bar", r"\boxed{0.\overline{3}}", r"\frac{1}{3}", "repeating decimal"),
    ("repeating_dots", r"\boxed{0.333\ldots}", r"\frac{1}{3}", "an ellipsis repeats the digits"),
    ("degrees_for_radians", r"\boxed{90^\circ}", r"\frac{\pi}{2}", "the same angle in degrees"),
    ("radians_for_degrees", r"\boxed{\frac{\pi}{6}}", r"30^\circ", "the same angle in radians"),
    ("all_reals", r"\boxed{\mathbb{R}}", r"(-\infty,\infty)", "the reals"),
    ("empty_set", r"\boxed{\emptyset}", r"\varnothing", "the empty set"),
    ("not_equal_as_set", r"\boxed{x \ne 2}", r"(-\infty,2)\cup(2,\infty)", "all reals but 2"),
    ("markdown_bold", "Counting them all gives **17**.", "17", "a bold final answer"),
    ("letter_for_choice_value", r"\boxed{C}", "(C) 12", "the letter of the right choice"),
    ("choice_value_for_letter", r"\boxed{(C) 12}", "C", "letter and value"),
    ("value_for_choice_value", r"\boxed{12}", "(C) 12", "the value of the right choice"),
    ("decimal_comma_zero", r"\boxed{0,5}", "0.5", "a zero whole part: no list reading"),
]


@pytest.mark.parametrize(("response", "gold", "why"), [c[1:] for c in FAMILIES], ids=[c[0] for c in FAMILIES])
def test_families_of_model_answers_pass(v, response, gold, why):
    verdict = v.verify(response, gold)
    assert verdict.passed, (why, verdict.reason)


@pytest.mark.parametrize(
    "response",
    [
        "<answer>" * 25_000,
        r"\boxed{" * 30_000,
        "$" * 190_000,
        "The answer is " * 14_000,
        "**" * 99_000,
        "0." + "3" * 199_000 + r"\ldots",
        r"\boxed{" + "x+" * 900 + "x}",
        "x" * 1_000_000,
    ],
    ids=["tags", "open_boxes", "dollars", "markers", "bold", "long_repeating", "long_sum", "1mb"],
)
def test_every_call_ends_within_the_limit(response):
    v = MathVerifier(timeout_s=1.0, cache_size=0)
    t0 = time.perf_counter()
    verdict = v.verify(response, "1")
    assert time.perf_counter() - t0 < 1.5, verdict.reason
    assert not verdict.passed


FORK_SCRIPT = """
import os, sys
from verifiers.math import MathVerifier
from verifiers._math import worker
v = MathVerifier(cache_size=0)
assert v.verify(r"\\\\boxed{x^2+2x+1}", "(x+1)^2").passed  # warm workers in the parent
with worker._POOLS_LOCK, v._own_lock():  # as if a thread were inside verify at the fork
    pid = os.fork()
    if pid == 0:
        ok = v.verify(r"\\\\boxed{(x+2)^2}", "x^2+4x+4").passed  # its own pool, its own locks
        sys.exit(0 if ok else 3)  # a normal exit: atexit runs in the child
_, status = os.waitpid(pid, 0)
after = v.verify(r"\\\\boxed{(x+3)^2}", "x^2+6x+9").passed  # the parent's workers were not closed
print("child", os.waitstatus_to_exitcode(status), "after", after)
"""


def test_fork_gives_the_child_its_own_workers_and_locks():
    proc = subprocess.run([sys.executable, "-c", FORK_SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip().splitlines()[-1:] == ["child 0 after True"], proc.stdout + proc.stderr
