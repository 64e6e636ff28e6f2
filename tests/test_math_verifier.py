"""MathVerifier: the equivalence conventions, the labeled set, and the never-hang guarantee.

Each table row says why the pair should pass or fail. The labeled set
(tests/data/math_pairs.jsonl) is shared with benchmarks/math_vs_mathverify.py.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import verifiers
from verifiers.math import MathVerifier

DATA = Path(__file__).parent / "data" / "math_pairs.jsonl"
LIMIT = 1.0  # seconds; small so the timeout tests stay fast
SLACK = 0.5  # the promise: a verdict within the limit plus half a second


@pytest.fixture(scope="module")
def v() -> MathVerifier:
    """For correctness tests: a generous limit, so a loaded machine cannot flip a verdict."""
    verifier = MathVerifier(timeout_s=10.0)
    verifier.warm_up(2)
    return verifier


@pytest.fixture(scope="module")
def strict_v(v: MathVerifier) -> MathVerifier:
    """For the never-hang tests: a short limit (same worker pool as ``v``)."""
    return MathVerifier(timeout_s=LIMIT)


# (id, response, gold, expected, why)
CASES = [
    ("boxed-frac-vs-decimal", r"so \boxed{\frac{1}{2}}", "0.5", True, "1/2 equals the exact decimal 0.5"),
    ("gsm8k-marker", "48 + 24 = 72\n#### 72", "72", True, "GSM8K answers follow ####"),
    ("answer-tag", "<think>hmm</think><answer>12</answer>", "12", True, "<answer> tags"),
    ("answer-is", "Thus the answer is 7.", "7", True, "'the answer is' marker"),
    ("final-answer", "Final Answer: The final answer is $8$. I hope it is correct.", "8", True, "Minerva format"),
    ("last-dollar", "So $x$ equals $5$", "5", True, "last $...$ span"),
    ("fallback-on", "after all that we get 41 apples in total", "41", True, "last-number fallback"),
    ("unreduced", r"\boxed{\frac{6}{8}}", "3/4", True, "unreduced fraction equals its value"),
    ("unevaluated-power", r"\boxed{2^{10}}", "1024", True, "unevaluated power equals its value"),
    ("round-6dp", r"\boxed{0.333333}", r"\frac13", True, "agrees with 1/3 to 6 decimal places"),
    ("round-3dp", r"\boxed{0.333}", r"\frac13", False, "0.333 is not 1/3 at 6 decimal places"),
    ("rounded-gold", r"\boxed{\frac13}", "0.333", False, "a rounded decimal gold does not accept the exact value"),
    ("pct-to-frac", r"\boxed{30\%}", "0.3", True, "with the sign, 30% = 0.3"),
    ("pct-to-int", r"\boxed{30\%}", "30", True, "with the sign, 30% = 30"),
    ("bare-half-vs-50", r"\boxed{0.5}", "50", False, "without a sign, 0.5 is not 50"),
    ("unit-absent", r"\boxed{5\text{ cm}}", "5", True, "units are ignored when absent on one side"),
    ("unit-differs", r"\boxed{5\text{ m}}", r"5\text{ cm}", False, "same number, different unit"),
    ("currency", r"\boxed{\$1,000}", "1000", True, "currency sign and thousands comma"),
    ("decimal-comma", r"\boxed{3,5}", "3.5", False, "a comma is never a decimal point"),
    ("thin-space", r"\boxed{1\,000}", "1000", True, r"\, is a thousands separator"),
    ("set-order", r"\boxed{\{2,1\}}", r"\{1,2\}", True, "sets are unordered"),
    ("tuple-order", r"\boxed{(2,1)}", "(1,2)", False, "tuples are ordered"),
    ("pm", r"\boxed{\pm 3}", "3, -3", True, "±a is {a, -a}"),
    ("x-equals", r"\boxed{x=3}", "3", True, "x=3 matches 3"),
    ("named-point", r"\boxed{x=1, y=2}", "(1, 2)", True, "x=1, y=2 matches (1, 2)"),
    ("ineq-gold", r"\boxed{(2, \infty)}", "x > 2", True, "a gold inequality accepts the interval"),
    ("interval-gold", r"\boxed{x > 2}", r"(2, \infty)", False, "a gold interval does not accept an inequality"),
    (
        "matrix",
        r"\boxed{\begin{pmatrix}1&2\\3&4\end{pmatrix}}",
        r"\begin{bmatrix}1&2\\3&4\end{bmatrix}",
        True,
        "same matrix",
    ),
    ("complex-j", r"\boxed{3+4j}", "3+4i", True, "j is the imaginary unit when no i appears"),
    ("sci", r"\boxed{6.02e23}", r"6.02\times10^{23}", True, "two spellings of scientific notation"),
    ("unicode", "The answer is √2/2", r"\frac{\sqrt2}{2}", True, "unicode root"),
    ("degrees", r"\boxed{\sin 30^\circ}", "1/2", True, "degrees inside trig"),
    ("mixed", r"\boxed{2\frac{1}{2}}", "5/2", True, "mixed number"),
    ("base", r"\boxed{1010_2}", "12_8", True, "same value, both with base subscripts"),
    ("infinity", r"\boxed{-\infty}", r"\infty", False, "sign of infinity"),
    ("choice", r"\boxed{(B)}", "B", True, "multiple-choice letter"),
    ("text", r"\boxed{\text{Yes}}", "yes", True, "text is case-insensitive"),
    ("hedge-boxes", r"\boxed{3} or maybe \boxed{4}", "3", False, "two different final answers"),
    ("hedge-or", "The answer is 3 or 4", "3", False, "two answers in one"),
    ("same-box-twice", r"\boxed{3}, indeed \boxed{3}", "3", True, "repeating one answer is not hedging"),
]


@pytest.mark.parametrize(("response", "gold", "expected", "why"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_conventions(v: MathVerifier, response: str, gold: str, expected: bool, why: str) -> None:
    verdict = v.verify(response, gold)
    assert verdict.passed is expected, f"{why}: got {verdict.reason}"
    assert verdict.status == ("pass" if expected else "fail"), verdict.reason


def _rows() -> list[dict]:
    return [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]


def test_labeled_set_is_big_and_balanced() -> None:
    rows = _rows()
    assert len(rows) >= 150
    assert {"response", "gold", "expected", "category", "why"} <= set(rows[0])
    assert sum(r["expected"] for r in rows) > 40 and sum(not r["expected"] for r in rows) > 40


@pytest.mark.parametrize("row", _rows(), ids=lambda r: f"{r['category']}:{r['why'][:40]}")
def test_labeled_set(v: MathVerifier, row: dict) -> None:
    verdict = v.verify(row["response"], row["gold"])
    assert verdict.passed is row["expected"], f"{row['why']}: got {verdict.reason}"


def test_labeled_set_in_batch(v: MathVerifier) -> None:
    """The batch path (extraction inside the workers) agrees with the labels too."""
    rows = _rows()
    verdicts = MathVerifier(timeout_s=10.0, cache_size=0).verify_batch(
        [r["response"] for r in rows], [r["gold"] for r in rows], workers=2
    )
    wrong = [(r["why"], d.reason) for r, d in zip(rows, verdicts, strict=True) if d.passed is not r["expected"]]
    assert not wrong


def test_fallback_off_finds_nothing(v: MathVerifier) -> None:
    strict = MathVerifier(fallback_last_number=False)
    text = "After all that work we get 41 apples in total, which seems right to me.\nI checked it twice and I am sure."
    assert v.verify(text, "41").passed  # the fallback reads the last number
    verdict = strict.verify(text, "41")
    assert not verdict.passed and verdict.reason == "fail: no answer found"


def test_extracted_and_reason_format(v: MathVerifier) -> None:
    verdict = v.verify(r"We get \boxed{\dfrac{3}{4}}.", "0.75")
    assert verdict.passed and verdict.reason.startswith("pass: ")
    assert verdict.extracted == r"\frac{3}{4}"
    assert v.verify(r"\boxed{3}", "4").reason.startswith("fail: ")


@pytest.mark.parametrize(
    ("gold", "why"),
    [
        (None, "no reference"),
        ("", "empty reference"),
        (r"\frac{1}{", "unbalanced braces"),
        (r"\foo{3}", "unknown command"),
    ],
    ids=["none", "empty", "unbalanced", "unknown-command"],
)
def test_unparseable_gold_is_skipped(v: MathVerifier, gold: object, why: str) -> None:
    verdict = v.verify(r"\boxed{3}", gold)
    assert verdict.status == "skip" and not verdict.gradable, f"{why}: {verdict.reason}"


# ------------------------------------------------------------------ never hang, never crash

HOSTILE = [
    ("power-tower", r"\boxed{2^{2^{2^{2^{2^{2^{2}}}}}}}"),
    ("short-tower", r"\boxed{9^{9^{9}}}"),
    ("huge-factorial", r"\boxed{99999999999!}"),
    ("deep-parens", r"\boxed{" + "(" * 3000 + "1" + ")" * 3000 + "}"),
    ("deep-fracs", r"\boxed{" + r"\frac{1}{" * 100 + "2" + "}" * 100 + "}"),
    ("megabyte", "1" * 1_000_000),
    ("megabyte-boxed", r"\boxed{" + "9" * 1_000_000 + "}"),
]


@pytest.mark.parametrize("response", [h[1] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_inputs_return_in_time(strict_v: MathVerifier, response: str) -> None:
    t0 = time.monotonic()
    verdict = strict_v.verify(response, "1")
    elapsed = time.monotonic() - t0
    assert not verdict.passed
    assert verdict.status in {"timeout", "too_large", "fail"}, verdict.reason
    assert elapsed < LIMIT + SLACK, f"{elapsed:.2f}s for {verdict.reason}"


def test_timeout_kills_worker_and_pool_recovers(strict_v: MathVerifier) -> None:
    t0 = time.monotonic()
    verdict = strict_v.verify(r"\boxed{9^{9^{9}}}", "2")  # C-level integer power: only SIGKILL stops it
    assert verdict.status == "timeout" and time.monotonic() - t0 < LIMIT + SLACK
    assert strict_v.verify(r"\boxed{\sqrt{4}}", "2").passed  # a fresh worker answers the next call


def test_eight_threads_at_once(strict_v: MathVerifier) -> None:
    pairs = [(rf"\boxed{{\frac{{{k}}}{{2}}}}", str(k / 2), True) for k in range(1, 25)]
    pairs += [(rf"\boxed{{x^{{{k}}}}}", f"x^{k + 1}", False) for k in range(1, 9)]
    pairs += [(r"\boxed{9^{9^{9}}}", "1", False)]
    t0 = time.monotonic()
    with ThreadPoolExecutor(8) as ex:
        verdicts = list(ex.map(lambda p: strict_v.verify(p[0], p[1]), pairs))
    assert [d.passed for d in verdicts] == [p[2] for p in pairs]
    assert verdicts[-1].status == "timeout"
    assert time.monotonic() - t0 < 15


def test_workers_without_zygote(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where fds cannot be passed, workers start directly; limits still hold."""
    import socket

    monkeypatch.delattr(socket, "send_fds")
    verifier = MathVerifier(timeout_s=LIMIT, memory_mb=1023)  # its own pool
    verifier.warm_up(1)
    assert verifier.verify(r"\boxed{\sqrt{16}}", "4").passed
    t0 = time.monotonic()
    assert verifier.verify(r"\boxed{9^{9^{9}}}", "1").status == "timeout"
    assert time.monotonic() - t0 < LIMIT + SLACK


def test_verify_off_main_thread_times_out(strict_v: MathVerifier) -> None:
    with ThreadPoolExecutor(1) as ex:
        verdict = ex.submit(strict_v.verify, r"\boxed{10^{10^{10}}}", "1").result(timeout=LIMIT + 5)
    assert verdict.status in {"timeout", "too_large"}


def test_verify_batch_keeps_order(strict_v: MathVerifier) -> None:
    responses = (
        [rf"\boxed{{{k}}}" for k in range(20)] + [r"\boxed{9^{9^{9}}}"] + [rf"\boxed{{{k}/1}}" for k in range(5)]
    )
    golds = [str(k if k % 3 else k + 1) for k in range(20)] + ["1"] + [str(k) for k in range(5)]
    for workers in (1, 2):
        verdicts = strict_v.verify_batch(responses, golds, workers=workers)
        assert [d.passed for d in verdicts[:20]] == [k % 3 != 0 for k in range(20)]
        assert verdicts[20].status == "timeout"
        assert all(d.passed for d in verdicts[21:])
    with pytest.raises(ValueError):
        strict_v.verify_batch(["1"], ["1", "2"])


def test_repeated_pairs_hit_the_cache() -> None:
    verifier = MathVerifier(timeout_s=LIMIT)
    first = verifier.verify(r"so \boxed{\frac{2}{4}}", r"\sqrt{0.25}")
    again = verifier.verify(r"hence \boxed{\frac{2}{4}}", r"\sqrt{0.25}")  # same answer, other prose
    assert first.passed and again.passed
    assert first.meta["path"] == "worker" and again.meta["path"] == "cache"
    batch = [r"\boxed{\sqrt{9}}"] * 10
    assert all(d.passed for d in verifier.verify_batch(batch, ["3"] * 10, workers=2))
    assert {d.meta["path"] for d in verifier.verify_batch(batch, ["3"] * 10, workers=2)} == {"cache"}


def test_as_reward_plain_and_conversational(v: MathVerifier) -> None:
    reward = v.as_reward(reference_field="answer")
    plain = reward(
        prompts=["p"] * 4, completions=[r"\boxed{2}", "#### 3", r"\boxed{5}", "2"], answer=["2", "3", "4", None]
    )
    assert plain == [1.0, 1.0, 0.0, None]
    chat = [
        [{"role": "assistant", "content": r"The answer is \boxed{\frac{1}{2}}"}],
        [{"role": "assistant", "content": "7"}],
    ]
    assert reward(prompts=["p", "q"], completions=chat, answer=["0.5", r"\frac{1}{"]) == [1.0, None]
    assert reward(completions=[r"\boxed{1}"]) == [None]  # no reference column at all


def test_registry_and_pickle() -> None:
    verifier = verifiers.get("math", timeout_s=2.0, fallback_last_number=False)
    assert isinstance(verifier, MathVerifier) and verifier.timeout_s == 2.0
    clone = pickle.loads(pickle.dumps(verifier))
    assert clone.verify(r"\boxed{2}", "2").passed


def test_workers_stop_when_the_caller_exits() -> None:
    code = (
        "from verifiers.math import MathVerifier; from verifiers._math import worker as _worker; v = MathVerifier(); v.warm_up(2); "
        "pool = next(iter(_worker._POOLS.values())); "
        "print(pool.zygote.proc.pid, *[w.pid for w in pool.idle.queue])"
    )
    pids = [int(p) for p in subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split()]
    assert len(pids) == 3
    deadline = time.monotonic() + 5
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _alive(p)]
        time.sleep(0.05)
    assert not alive, f"left running: {alive}"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_import_stays_light() -> None:
    code = "import sys, verifiers, verifiers.math; assert 'torch' not in sys.modules and 'sympy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------ property test

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

PIECES = ["\\boxed{", "\\frac{", "}{", "{", "}", "^{", "^", "_", "\\sqrt[", "]", "(", ")", "[", "\\{", "\\}", "\\left(",
          "\\right)", "9", "99", "0", ".", ",", "-", "+", "*", "/", "!", "%", "\\pi", "x", "i", "e", "=", "<", "\\le",
          "\\pm", "\\cup", "\\infty", "\\text{", "or", " ", "$", "\\\\", "&", "\\begin{pmatrix}", "\\end{pmatrix}",
          "#### ", "<answer>", "</answer>", "°", "√", "×", "\\sin", "\\log_", "|", "1e99", "\\binom{"]  # fmt: skip


@hypothesis.settings(max_examples=60, deadline=None, suppress_health_check=list(hypothesis.HealthCheck))
@hypothesis.given(
    response=st.one_of(st.text(max_size=80), st.lists(st.sampled_from(PIECES), max_size=40).map("".join)),
    gold=st.one_of(st.sampled_from(["1", "x+1", r"\{1,2\}", "x>2", r"\frac{1}{2}", "C", "yes"]), st.text(max_size=20)),
)
def test_never_raises_never_hangs(strict_v: MathVerifier, response: str, gold: str) -> None:
    t0 = time.monotonic()
    verdict = strict_v.verify(response, gold)
    assert time.monotonic() - t0 < LIMIT + SLACK
    assert verdict.status in {"pass", "fail", "timeout", "too_large", "skip", "error"}
    assert verdict.passed == (verdict.status == "pass")


STATED_RESULTS = [
    ("19 + 7 is 26.", "26", True, "a short sentence stating the result of the sum"),
    ("13 + 14 equals 25.", "27", False, "the stated result is wrong"),
    ("2 + 2 is not 5", "5", False, "a negated statement states no result"),
]


@pytest.mark.parametrize(("response", "gold", "expected", "why"), STATED_RESULTS, ids=[c[3] for c in STATED_RESULTS])
def test_stated_result_sentences(response, gold, expected, why):
    assert MathVerifier().verify(response, gold).passed is expected
