"""LLM judges: parsing replies, aggregation rules, kappa against hand-computed values, and
a teacher plus a judge panel of real (memorized tiny) models behind an OpenAI-compatible server."""

from __future__ import annotations

import doctest
import subprocess
import sys

import pytest
from panel import JUDGES, QUESTIONS, RUBRIC, panel_models, solve_prompt, teacher_answer

from pipelines import judging
from pipelines.generation import GenerationError, OpenAIGenerator
from pipelines.judging import (
    aggregate,
    agreement_report,
    cohen_kappa,
    fleiss_kappa,
    judge_pairs,
    landis_koch,
    provenance,
)
from pipelines.labels import Label, parse_label, verifier_label
from pipelines.testing.model_server import ModelServer
from pipelines.testing.openai_server import ScriptedServer
from verifiers.base import failed, passed, skipped

T, F = True, False


def vote(p: bool | None, score: float | None = None) -> Label:
    return Label(p, score, "", "")


# -- parse_label ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "expected_pass", "expected_score"),
    [
        ('{"pass": true, "score": 9, "reason": "right"}', T, 9.0),  # the format asked for
        ('```json\n{"pass": false, "score": 2, "reason": "wrong sum"}\n```', F, 2.0),  # code fence
        ('The answer checks out.\n{"pass": true, "score": 8, "reason": "ok"}\nHope this helps!', T, 8.0),  # prose
        ("{'pass': True, 'score': 7}", T, 7.0),  # a Python dict, not JSON
        ('{"pass": false, "score": 1,}', F, 1.0),  # trailing comma
        ('{"Pass": "yes", "Score": "8/10"}', T, 8.0),  # strings for both, any key case
        ('{"verdict": "FAIL", "rating": 3}', F, 3.0),  # synonyms of the keys
        ('{"pass": true, "score": 85}', T, None),  # score off the 0-10 scale is dropped, vote kept
        ('<think>maybe {"pass": false}</think>{"pass": true, "score": 10}', T, 10.0),  # reasoning ignored
        ('Reply format {"pass": bool}. My label: {"pass": false, "score": 0}', F, 0.0),  # echoed format skipped
        ("Verdict: PASS\nScore: 9/10\nReason: correct.", T, 9.0),  # key: value lines
        ("**Pass:** no", F, None),  # markdown key: value
        ("Yes.", T, None),  # a bare yes
        ("no", F, None),  # a bare no
        ("No, the sum is 12, not 13.", F, None),  # a no that starts an explanation
        ("score: 6", None, 6.0),  # a score alone: no pass/fail vote, but not an abstention
    ],
)
def test_parse_label_reads_the_shapes_judges_reply_in(reply, expected_pass, expected_score):
    label = parse_label(reply)
    assert label.passed is expected_pass
    assert label.score == expected_score
    assert label.raw == reply


@pytest.mark.parametrize(
    "reply",
    [
        "I'm not able to grade this.",  # garbage: abstains, not a fail
        "",  # empty
        None,  # a backend that returned nothing
        "{not json at all}",
        '{"reason": "no vote in here"}',  # JSON, but neither pass nor score
        "Nothing problematic here, though the answer is long.",  # starts with "No" but is not a no
        "<think>pass: yes</think>",  # only reasoning, no answer
        '<think>{"pass": true} hmm, but then again',  # reasoning cut off by the token limit
    ],
)
def test_garbage_replies_are_abstentions_not_fails(reply):
    label = parse_label(reply)
    assert label.passed is None and label.score is None and label.abstained
    assert aggregate({"judge": label}).kept is False  # alone it cannot keep a pair...
    with_one_pass = aggregate({"judge": label, "other": vote(T)})
    assert with_one_pass.kept and with_one_pass.abstentions == 1  # ...nor sink one


def test_verifier_label_maps_verdicts_to_votes():
    assert verifier_label(passed("match")) == Label(T, 10.0, "pass: match", "")
    assert verifier_label(failed("fail", "got 3", extracted="3")) == Label(F, 0.0, "fail: got 3", "3")
    ungradable = verifier_label(skipped("no reference"))  # cannot grade: abstains
    assert ungradable.passed is None and ungradable.abstained


# -- aggregate ------------------------------------------------------------------------------


def test_majority_needs_strictly_more_passes_than_fails():
    assert aggregate({"a": vote(T), "b": vote(T), "c": vote(F)}).kept
    tie = aggregate({"a": vote(T), "b": vote(F)})
    assert not tie.kept and "tie" in tie.detail
    # an abstention neither breaks nor makes a tie
    assert not aggregate({"a": vote(T), "b": vote(F), "c": vote(None)}).kept
    assert aggregate({"a": vote(T), "b": vote(None), "c": vote(None)}).kept


def test_all_abstaining_rejects_under_every_method():
    votes = {"a": vote(None), "b": vote(None)}
    for method in judging.METHODS:
        decision = aggregate(votes, method=method, threshold=0)
        assert not decision.kept, method


def test_unanimous_needs_no_fail_and_at_least_one_vote():
    assert aggregate({"a": vote(T), "b": vote(T), "c": vote(None)}, method="unanimous").kept
    assert not aggregate({"a": vote(T), "b": vote(T), "c": vote(F)}, method="unanimous").kept


def test_min_votes_sets_a_quorum_of_non_abstaining_votes():
    votes = {"a": vote(T), "b": vote(None), "c": vote(None)}
    decision = aggregate(votes, min_votes=2)
    assert not decision.kept and "need 2" in decision.detail


def test_mean_score_uses_scores_and_maps_bare_votes_to_10_or_0():
    votes = {"a": vote(T, 8), "b": vote(F, 5), "c": vote(T), "d": vote(None)}  # (8 + 5 + 10) / 3
    decision = aggregate(votes, method="mean_score", threshold=7.0)
    assert decision.mean_score == pytest.approx(23 / 3)
    assert decision.kept
    assert not aggregate(votes, method="mean_score", threshold=8.0).kept
    # a score alone counts for mean_score, even without a pass/fail vote
    assert aggregate({"a": vote(None, 9)}, method="mean_score").kept


def test_required_verifier_vetoes_whatever_the_judges_say():
    judges = {"a": vote(T, 10), "b": vote(T, 10), "c": vote(T, 10)}
    vetoed = aggregate({**judges, "verifier": verifier_label(failed("fail", "wrong"))}, require=("verifier",))
    assert not vetoed.kept and vetoed.detail.startswith("vetoed: verifier fails")
    abstained = aggregate({**judges, "verifier": verifier_label(skipped("no gold"))}, require=("verifier",))
    assert not abstained.kept and "abstains" in abstained.detail
    missing = aggregate(judges, require=("verifier",))
    assert not missing.kept and "missing" in missing.detail
    ok = aggregate({**judges, "verifier": verifier_label(passed())}, method="unanimous", require=("verifier",))
    assert ok.kept
    # not required: the verifier is just one vote among four
    assert aggregate({**judges, "verifier": verifier_label(failed("fail"))}).kept


def test_unknown_method_is_an_error():
    with pytest.raises(ValueError, match="majority"):
        aggregate({"a": vote(T)}, method="vote")


def test_provenance_carries_every_vote_reason_and_the_verdict():
    votes = {"a": Label(T, 9.0, "right", "{...}"), "b": Label(None, None, "abstain: unparseable judge reply", "??")}
    record = provenance(votes, aggregate(votes))
    assert record["judges"]["a"] == {"pass": T, "score": 9.0, "reason": "right"}
    assert record["judges"]["b"]["pass"] is None
    assert record["verdict"]["kept"] is True and record["verdict"]["abstentions"] == 1


# -- kappa ----------------------------------------------------------------------------------


def test_cohen_kappa_matches_the_textbook_example():
    # 50 items: both yes 20, A yes / B no 5, A no / B yes 10, both no 15.
    # p_o = 35/50 = 0.7; p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5; kappa = 0.2 / 0.5 = 0.4.
    a = [T] * 20 + [T] * 5 + [F] * 10 + [F] * 15
    b = [T] * 20 + [F] * 5 + [T] * 10 + [F] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert landis_koch(0.4) == "fair"


def test_cohen_kappa_skips_abstentions_and_is_undefined_without_variation():
    # items 2 and 3 are dropped (an abstention each); the rest agree perfectly
    assert cohen_kappa([T, F, None, T], [T, F, T, None]) == pytest.approx(1.0)
    assert cohen_kappa([T, T, T], [T, T, T]) is None  # p_e = 1
    assert cohen_kappa([None, T], [F, None]) is None  # nothing labelled by both
    assert cohen_kappa([T, F], [F, T]) == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        cohen_kappa([T], [T, F])


def test_fleiss_kappa_matches_the_fleiss_1971_worked_example():
    # Fleiss (1971) / Wikipedia: 10 subjects, 14 raters, 5 categories; kappa = 0.210.
    counts = [
        (0, 0, 0, 0, 14),
        (0, 2, 6, 4, 2),
        (0, 0, 3, 5, 6),
        (0, 3, 9, 2, 0),
        (2, 2, 8, 1, 1),
        (7, 7, 0, 0, 0),
        (3, 2, 6, 3, 0),
        (2, 5, 3, 2, 2),
        (6, 5, 2, 1, 0),
        (0, 2, 2, 3, 7),
    ]
    ratings = [[cat for cat, n in enumerate(row) for _ in range(n)] for row in counts]
    assert fleiss_kappa(ratings) == pytest.approx(0.2099, abs=1e-4)


def test_fleiss_kappa_with_abstentions_by_hand():
    # item 1: T T T -> P = 1;  item 2: T F -> P = 0;  item 3: F F -> P = 1;
    # item 4 has one rating and is left out. P_bar = 2/3.
    # Ratings kept: T 4, F 3 of 7 -> P_e = (16 + 9) / 49 = 25/49.
    # kappa = (2/3 - 25/49) / (1 - 25/49) = 23/72.
    ratings = [[T, T, T], [T, F, None], [F, F, None], [T, None, None]]
    assert fleiss_kappa(ratings) == pytest.approx(23 / 72)
    assert fleiss_kappa([[T, T], [T, T]]) is None  # every rating the same: undefined
    assert fleiss_kappa([[T, None], [None, F]]) is None  # no item with two ratings


# A scripted panel: judge c's reply to pair 4 is garbage (an abstention).
PANEL = {
    "a": [T, T, T, F, F, T],
    "b": [T, T, F, F, F, T],
    "c": [T, F, T, F, None, T],
}


def panel_votes() -> list[dict[str, Label]]:
    return [{name: vote(labels[i]) for name, labels in PANEL.items()} for i in range(6)]


def test_scripted_panel_gives_known_aggregates_and_kappas():
    votes = panel_votes()
    assert [aggregate(v).kept for v in votes] == [T, T, T, F, F, T]
    assert [aggregate(v, method="unanimous").kept for v in votes] == [T, F, F, F, F, T]
    report = agreement_report(votes)
    assert report["raters"] == ["a", "b", "c"]
    # a|b: p_o = 5/6, p_e = (4*3 + 2*3)/36 = 1/2 -> kappa = 2/3
    assert report["pairwise"]["a|b"]["kappa"] == pytest.approx(2 / 3)
    # a|c over the 5 items both labelled: p_o = 4/5, p_e = (4*3 + 1*2)/25 = 14/25 -> 6/11
    assert report["pairwise"]["a|c"] == {"kappa": pytest.approx(6 / 11), "reading": "moderate", "items": 5}
    # Fleiss: P_bar = (1 + 1/3 + 1/3 + 1 + 1 + 1)/6 = 7/9; T 10, F 7 of 17 ratings:
    # P_e = 149/289; kappa = (7/9 - 149/289) / (140/289) = 682/1260.
    assert report["fleiss"] == {"kappa": pytest.approx(682 / 1260), "reading": "moderate", "items": 6}
    assert report["warning"] is None
    assert report["per_rater"]["c"] == {"pass_rate": pytest.approx(3 / 5), "abstain_rate": pytest.approx(1 / 6)}


def test_agreement_below_moderate_warns_that_labels_are_noise():
    votes = [{"a": vote(x), "b": vote(y)} for x, y in [(T, T), (T, F), (F, T), (F, F), (T, F), (F, F)]]
    report = agreement_report(votes)
    assert report["fleiss"]["kappa"] < judging.MODERATE
    assert "noise" in report["warning"]


def test_agreement_undefined_when_everyone_always_passes():
    report = agreement_report([{"a": vote(T), "b": vote(T)}] * 4)
    assert report["fleiss"]["kappa"] is None and report["fleiss"]["reading"] == "undefined"
    assert report["warning"] is None and "undefined" in report["note"]
    assert "two judges" in agreement_report([{"a": vote(T)}])["note"]


# -- judge_pairs ----------------------------------------------------------------------------


class ScriptedJudge:
    """A generation backend that answers from a script and records its calls."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.calls = []

    def generate(self, prompts, n=1, temperature=1.0, top_p=1.0, max_new_tokens=256, seed=0, stop=None):
        self.calls.append({"prompts": prompts, "temperature": temperature, "max_new_tokens": max_new_tokens})
        return [[self.replies[i]] for i in range(len(prompts))]


PAIRS = [
    {"question": "What is 2+2?", "answer": "\\boxed{4}", "reference": "4"},
    {"question": "Name a prime.", "answer": "9", "reference": None},
]


def test_judge_pairs_asks_each_judge_once_with_the_rendered_rubric():
    good = ScriptedJudge(
        ['{"pass": true, "score": 9, "reason": "ok"}', '{"pass": false, "score": 1, "reason": "9=3*3"}']
    )
    noisy = ScriptedJudge(["blah", "Yes."])
    labels = judge_pairs({"good": good, "noisy": noisy}, PAIRS, task_kind="math")
    assert [row["good"].passed for row in labels] == [T, F]
    assert [row["noisy"].passed for row in labels] == [None, T]  # garbage abstains
    assert len(good.calls) == 1 and good.calls[0]["temperature"] == 0.0
    first, second = good.calls[0]["prompts"]
    assert [m["role"] for m in first] == ["user"]  # one user turn: any chat template accepts it
    assert "What is 2+2?" in first[0]["content"] and "<reference>\n4\n</reference>" in first[0]["content"]
    assert "\\boxed{}" in first[0]["content"]  # the math criteria
    assert "<reference>" not in second[0]["content"]  # no reference, no reference block
    assert '"pass"' in first[0]["content"]  # asks for the JSON label


def test_judge_pairs_uses_the_plans_rubric_when_given():
    judge = ScriptedJudge(["yes", "no"])
    rubric = "Q={{ question }} A={{ answer }} R={{ reference }} K={{ task_kind }}. Answer yes or no."
    judge_pairs({"j": judge}, PAIRS, rubric=rubric, task_kind="math")
    assert judge.calls[0]["prompts"][1][0]["content"] == "Q=Name a prime. A=9 R=None K=math. Answer yes or no."


def test_a_rubric_with_a_typo_is_reported_before_any_judge_runs():
    assert judging.rubric_problem("{{ question }} {{ answer }} {% if reference %}{{ reference }}{% endif %}") is None
    assert "undefined" in judging.rubric_problem("{{ question }} {{ answr }}")
    assert "does not render" in judging.rubric_problem("{% if question %}unclosed")


def test_judge_name_verifier_is_reserved():
    with pytest.raises(ValueError, match="reserved"):
        judge_pairs({"verifier": ScriptedJudge([])}, PAIRS)


# -- end to end over HTTP, against real models ----------------------------------------------


# A loaded CI machine can refuse a connection (the test server's listen backlog is small):
# retry quickly rather than flake.
RETRY = {"max_retries": 3, "retry_base_delay": 0.05}


def test_teacher_and_judge_panel_over_a_real_server(memorized):
    """The memorized teacher and panel of ``tests/panel.py`` behind the OpenAI API: the
    teacher's answers, every judge's votes and the agreement figures are known in advance."""
    with ModelServer(panel_models(memorized)) as server:
        teacher = OpenAIGenerator("teacher", base_url=server.base_url, **RETRY)
        prompts = [solve_prompt(q) for q in QUESTIONS]
        answers = [c[0] for c in teacher.generate(prompts, n=1, temperature=0.3, seed=0, max_new_tokens=48)]
        pairs = [{"question": q, "answer": a, "reference": None} for q, a in zip(QUESTIONS, answers, strict=True)]
        judges = {name: OpenAIGenerator(name, base_url=server.base_url, **RETRY) for name in JUDGES}
        votes = judge_pairs(judges, pairs, rubric=RUBRIC, task_kind="math", max_new_tokens=32)
        judge_requests = [r for r in server.requests if r["model"] in JUDGES]

    assert answers == [teacher_answer(q) for q in QUESTIONS]
    assert len(judge_requests) == 3 * len(pairs) and {r["temperature"] for r in judge_requests} == {0.0}
    assert [v["judge-a"].passed for v in votes] == [T, T, T, T]  # lenient
    assert [v["judge-b"].passed for v in votes] == [T, T, F, T]  # 5+6 answered 12
    assert all(v["judge-c"].abstained for v in votes)
    # majority over a and b (c abstains): the 1-1 tie at 5+6 rejects
    assert [aggregate(v).kept for v in votes] == [T, T, F, T]
    assert [aggregate(v, method="mean_score", threshold=7).mean_score for v in votes] == [10.0, 10.0, 5.0, 10.0]
    report = agreement_report(votes)
    assert report["per_rater"]["judge-c"]["abstain_rate"] == 1.0
    # a passes everything: p_o = 3/4 = p_e, so kappa 0 (no agreement beyond chance): a warning
    assert report["pairwise"]["judge-a|judge-b"]["kappa"] == pytest.approx(0.0)
    assert report["warning"] is not None


def test_a_judge_with_a_bad_key_fails_the_call_clearly():
    with ScriptedServer(reply=lambda messages: "Yes.", model_name="j", api_key="right") as srv:
        judge = OpenAIGenerator("j", base_url=srv.base_url, api_key="wrong", max_retries=0)
        with pytest.raises(GenerationError, match="authentication"):
            judge_pairs({"j": judge}, PAIRS)


# -- module hygiene -------------------------------------------------------------------------


def test_module_doctests():
    result = doctest.testmod(judging)
    assert result.attempted > 0 and result.failed == 0


def test_importing_judging_and_curation_does_not_import_torch():
    code = "import sys, pipelines.judging, pipelines.curation; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
