"""The flowchart: every leaf and every row-count boundary, plus the plans it builds."""

from __future__ import annotations

import pytest
import yaml

from advisor.flowchart import (
    FEW_ROWS,
    MANY_ROWS,
    OUTCOMES,
    QUESTIONS,
    alternatives,
    describe_alternative,
    mermaid,
    walk,
)
from advisor.plan import Plan, dump_plan
from advisor.planner import PlanAnswers, build_plan, render_plan_files

CASES = [
    # (answers, route, outcome, why)
    ({"labeled_rows": 0, "verifiable": True}, "rft", "rft", "no labels but a verifier: sample and verify"),
    (
        {"labeled_rows": 0, "verifiable": False, "preference_pairs": True},
        "rlhf",
        "rlhf_dpo",
        "no ground truth, pairs: DPO",
    ),
    (
        {"labeled_rows": 0, "verifiable": False, "preference_pairs": False},
        "rlhf",
        "rlhf_rm",
        "no pairs: reward model + RL",
    ),
    ({"labeled_rows": 1, "verifiable": True}, "rft", "rft", "lower edge of the few-rows band"),
    (
        {"labeled_rows": 99, "verifiable": False},
        "rft",
        "rft",
        "99 is still under 100 rows; unverifiable gets a warning",
    ),
    (
        {"labeled_rows": 100, "verifiable": True, "cot_helps": "yes"},
        "rft",
        "rft",
        "100 enters the middle band; reasoning helps",
    ),
    ({"labeled_rows": 100, "verifiable": True, "cot_helps": "no"}, "sft", "sft", "100 rows, reasoning does not help"),
    (
        {"labeled_rows": 5000, "verifiable": True, "cot_helps": "unknown"},
        "rft",
        "rft_provisional",
        "unknown: provisional",
    ),
    (
        {"labeled_rows": MANY_ROWS, "verifiable": True, "cot_helps": "yes"},
        "rft",
        "rft",
        "100000 is still the middle band",
    ),
    ({"labeled_rows": MANY_ROWS, "verifiable": True, "cot_helps": "no"}, "sft", "sft", "100000, no reasoning: sft"),
    (
        {"labeled_rows": MANY_ROWS + 1, "verifiable": True, "cot_helps": "yes"},
        "sft",
        "sft",
        "over 100000 rows SFT wins even when CoT helps",
    ),
    ({"labeled_rows": MANY_ROWS + 1, "verifiable": False}, "sft", "sft", "over 100000 rows, cot not asked"),
]


@pytest.mark.parametrize(("answers", "route", "outcome", "why"), CASES, ids=[c[3] for c in CASES])
def test_walk_reaches_expected_leaf(answers, route, outcome, why):
    path = walk(answers)
    assert path.missing is None
    assert path.route == route
    assert path.outcome.key == outcome


def test_every_outcome_is_reachable_by_some_case():
    reached = {walk(c[0]).outcome.key for c in CASES}
    assert reached == set(OUTCOMES)


def test_thresholds_are_the_named_constants():
    assert (FEW_ROWS, MANY_ROWS) == (100, 100_000)
    assert walk({"labeled_rows": FEW_ROWS - 1}).route == "rft"
    assert walk({"labeled_rows": FEW_ROWS}).missing == "cot_helps"


def test_walk_stops_at_first_missing_answer():
    assert walk({}).missing == "labeled_rows"
    assert walk({"labeled_rows": 0}).missing == "verifiable"
    assert walk({"labeled_rows": 500}).missing == "cot_helps"
    assert walk({"labeled_rows": 0, "verifiable": False}).missing == "preference_pairs"


def test_alternatives_name_the_answer_that_changes_the_route():
    alts = {
        describe_alternative(a) for a in alternatives({"labeled_rows": 250, "verifiable": True, "cot_helps": "yes"})
    }
    assert "with more than 100000 labeled rows the route would be sft (final stage: sft)" in alts
    assert "if cot_helps were 'no' the route would be sft (final stage: sft)" in alts
    # the walked edge itself is not an alternative
    assert not any("100 to 100000" in a for a in alts)


def test_alternative_needing_an_unanswered_question_says_so():
    alts = alternatives({"labeled_rows": 5, "verifiable": True})
    mid = [a for a in alts if a.condition == "100 to 100000"][0]
    assert mid.route is None
    assert "depend on further answers" in describe_alternative(mid)


def test_mermaid_highlights_taken_edges_only():
    text = mermaid(walk({"labeled_rows": 0, "verifiable": False, "preference_pairs": True}))
    assert text.startswith("flowchart TD")
    style = [line for line in text.splitlines() if "linkStyle" in line][0]
    edges = [line for line in text.splitlines() if "-->" in line]
    taken = [edges[int(i)] for i in style.split()[1].split(",")]
    assert taken == [
        '    labeled_rows -->|"0"| verifiable',
        '    verifiable -->|"no"| preference_pairs',
        '    preference_pairs -->|"yes"| rlhf_dpo',
    ]
    assert "style rlhf_dpo" in text


def test_graph_edges_point_to_known_nodes():
    for q in QUESTIONS.values():
        for e in q.edges:
            assert e.to in QUESTIONS or e.to in OUTCOMES, (q.key, e.to)
            assert e.because


# ---- plans per route ----


def kinds(plan: Plan) -> list[str]:
    return [s.kind for s in plan.stages]


def test_rft_plan_has_probe_synthesize_rs_sft_optional_grpo_evaluate():
    plan = build_plan(PlanAnswers(labeled_rows=250, verifiable=True, cot_helps="yes"))
    assert kinds(plan) == ["probe", "synthesize", "rejection_sample", "sft", "grpo", "evaluate"]
    probe, grpo = plan.stages[0], plan.stages[4]
    assert probe.gate == 0.2 and probe.why["gate"]
    assert grpo.enabled is False, "grpo is the optional continuation"
    assert grpo.lr == pytest.approx(plan.stages[3].lr / 10), "RL lr one order below SFT"
    assert plan.stages[2].samples == 16 and plan.stages[2].max_per_prompt == 10


def test_rft_with_plenty_of_gold_skips_synthesize():
    plan = build_plan(PlanAnswers(labeled_rows=5000, verifiable=True, cot_helps="yes"))
    assert "synthesize" not in kinds(plan)


def test_sft_plan():
    plan = build_plan(PlanAnswers(labeled_rows=200_000, verifiable=True))
    assert plan.route == "sft"
    assert kinds(plan) == ["probe", "sft", "evaluate"]
    assert plan.stages[1].lr == 1e-4 and plan.stages[1].weight_decay == 0.25


def test_rlhf_dpo_and_reward_model_plans():
    dpo = build_plan(PlanAnswers(labeled_rows=0, verifiable=False, preference_pairs=True, task_kind="open_ended"))
    assert kinds(dpo) == ["probe", "dpo", "evaluate"]
    assert dpo.verifier.name == "judge", "open-ended replies are scored by a judge model"
    assert dpo.verifier.options["model"] == dpo.models.judges, "the plan's judges form the panel"
    rm = build_plan(PlanAnswers(labeled_rows=0, verifiable=False, task_kind="open_ended"))
    assert kinds(rm) == ["probe", "rejection_sample", "reward_model", "grpo", "evaluate"]
    assert rm.verifier.name == "judge"
    assert rm.stages[3].reward == "reward_model" and rm.stages[3].enabled
    assert rm.stages[3].beta == 0.0, "no KL needed starting from a model without SFT"
    assert "PPOTrainer" in rm.decision[-1].because


def test_rft_on_unverifiable_task_warns():
    plan = build_plan(PlanAnswers(labeled_rows=50, verifiable=False, task_kind="classification"))
    assert plan.route == "rft"
    assert any("weaker" in w for w in plan.warnings)
    verified = build_plan(PlanAnswers(labeled_rows=50, verifiable=True))
    assert verified.warnings == []


def test_unknown_cot_makes_a_provisional_plan_with_compare_probe():
    plan = build_plan(PlanAnswers(labeled_rows=500, verifiable=True, cot_helps="unknown"))
    assert plan.provisional
    assert plan.stages[0].prompt_style == "compare"


def test_verifier_defaults_from_task_kind():
    expected = {"math": "math", "code": "code", "structured": "json", "classification": "exact", "game24": "game24"}
    for kind, name in expected.items():
        plan = build_plan(PlanAnswers(labeled_rows=10, verifiable=True, task_kind=kind))
        assert plan.verifier.name == name


def test_plan_round_trip_from_rendered_yaml():
    for answers, *_ in CASES:
        plan = build_plan(PlanAnswers(**answers))
        loaded = Plan.model_validate(yaml.safe_load(render_plan_files(plan)["plan.yaml"]))
        assert loaded == plan
        again = Plan.model_validate(yaml.safe_load(dump_plan(loaded)))
        assert again == loaded
