"""``advisor doctor``: reading histories, each rule's trigger and its silence, bad input, real runs.

The fast tests write ``trainer_state.json`` files shaped as TRL writes them (the format
a user without advisor has) with curves that show one symptom each, and check that the
rule names it, gives the fix as a setting, and stays silent on a healthy curve. The
``slow`` tests train the session's tiny Llama for real and induce failures (a reward no
sample earns; a learning rate far too high), then run the doctor on the stage folders;
``benchmarks/doctor_induced.py`` does the full set on a stronger model.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from helpers import run_cli


def state(folder: Path, rows: list[dict], name: str = "trainer_state.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    log = [{**r, "step": i + 1} for i, r in enumerate(rows)]
    (folder / name).write_text(json.dumps({"global_step": len(log), "log_history": log}))
    return folder


def rules_named(folder: Path) -> dict[str, dict]:
    from pipelines.doctor import diagnose

    return {f.rule: f.to_dict() for f in diagnose(folder) if not f.not_enough_data}


def grpo_rows(n: int = 40, **curves) -> list[dict]:
    """A GRPO-shaped log: flat defaults, overridden by ``curves`` (functions of the step fraction)."""
    base = {
        "loss": lambda t: 0.0,
        "reward": lambda t: 0.4 + 0.2 * t,
        "reward_std": lambda t: 0.4,
        "frac_reward_zero_std": lambda t: 0.1,
        "kl": lambda t: 0.01 + 0.02 * t,
        "entropy": lambda t: 0.5,
        "completions/mean_length": lambda t: 40.0,
        "grad_norm": lambda t: 1.0 + 0.1 * math.sin(7 * t),
    }
    base.update(curves)
    return [{k: f(i / (n - 1)) for k, f in base.items()} for i in range(n)]


# ---- reading histories; bad input ----


def test_bad_input_is_one_line_exit_2(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli("doctor", tmp_path / "empty", cwd=tmp_path)
    assert result.exit_code == 2 and "no training history" in result.output

    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "trainer_state.json").write_text('{"log_history": [{"loss": 1.2, "st')
    result = run_cli("doctor", truncated, cwd=tmp_path)
    assert result.exit_code == 2 and "not valid JSON" in result.output and "Traceback" not in result.output

    state(tmp_path / "nosteps", [])
    result = run_cli("doctor", tmp_path / "nosteps", cwd=tmp_path)
    assert result.exit_code == 2 and "no training steps" in result.output
    assert run_cli("doctor", tmp_path / "absent", cwd=tmp_path).exit_code == 2


def test_a_rule_without_its_metrics_says_not_enough_data(tmp_path):
    # an SFT log with loss only: the diversity and length rules cannot judge, and say so
    folder = state(tmp_path / "sft", [{"loss": 2.0 - i / 40} for i in range(40)])
    result = run_cli("doctor", folder, "--json", cwd=tmp_path)
    assert result.exit_code == 0, "missing metrics are not an input error"
    findings = json.loads(result.output)
    silent = {f["rule"]: f for f in findings if f["evidence"]["summary"].startswith("not enough data")}
    assert {"repetition", "length_drift"} <= set(silent)
    assert all(f["severity"] == "info" for f in silent.values())
    assert all({"rule", "severity", "stage", "evidence", "fix"} <= set(f) for f in findings)
    assert not [f for f in findings if f["severity"] != "info"], "a falling loss is healthy"


def test_latest_checkpoint_state_is_read_from_an_output_dir(tmp_path):
    out = tmp_path / "my-trl-run"
    state(out / "checkpoint-10", [{"loss": 1.0}] * 10)
    state(out / "checkpoint-20", [{"loss": 1.0}] * 10 + [{"loss": 30.0}] + [{"loss": 1.0}] * 9)
    assert "loss_spikes" in rules_named(out), "the latest checkpoint's history is the one read"


# ---- one symptom each (trigger, then silence) ----


def test_kl_rising_fast_with_reward_is_a_weak_kl(tmp_path):
    weak = rules_named(
        state(tmp_path / "a", grpo_rows(kl=lambda t: 0.001 + 2.0 * t**2, reward=lambda t: 0.2 + 0.6 * t))
    )
    assert weak["kl_too_weak"]["severity"] == "error"
    assert "kl" in weak["kl_too_weak"]["evidence"]["summary"]
    assert "kl_too_weak" not in rules_named(state(tmp_path / "b", grpo_rows())), "a small, slowly rising KL is fine"


def test_kl_that_jumps_within_the_first_quarter_and_stays_high_is_too_weak(tmp_path):
    """The quarters compare high with high, so the held level is the evidence, not the ratio."""
    jump = grpo_rows(kl=lambda t: 0.0 if t == 0 else 0.5 + 0.2 * math.sin(40 * t), reward=lambda t: 0.3 - 0.1 * t)
    found = rules_named(state(tmp_path / "a", jump))["kl_too_weak"]
    assert "median" in found["evidence"]["summary"] and found["evidence"]["values"]["kl_second_half_median"] > 0.3
    assert "beta" in found["fix"] and "lr" in found["fix"], "the reward fell: a smaller step too"
    held_low = grpo_rows(kl=lambda t: 0.0 if t == 0 else 0.15 + 0.1 * math.sin(40 * t), reward=lambda t: 0.3)
    assert "kl_too_weak" not in rules_named(state(tmp_path / "b", held_low)), "a KL held near 0.15 is not runaway"


def test_kl_flat_and_reward_flat_is_a_strong_kl(tmp_path):
    rows = grpo_rows(kl=lambda t: 1e-5, reward=lambda t: 0.4 + 0.05 * math.sin(9 * t))
    assert "kl_too_strong" in rules_named(state(tmp_path / "a", rows))
    assert "kl_too_strong" not in rules_named(state(tmp_path / "b", grpo_rows(kl=lambda t: 1e-5)))


def test_length_drift_and_entropy_collapse(tmp_path):
    drift = rules_named(state(tmp_path / "a", grpo_rows(**{"completions/mean_length": lambda t: 40 + 160 * t})))
    assert "length penalty" in drift["length_drift"]["fix"]
    collapse = rules_named(state(tmp_path / "b", grpo_rows(entropy=lambda t: max(0.02, 0.8 - 3 * t))))
    assert "entropy_collapse" in collapse and "clip" in collapse["entropy_collapse"]["fix"]
    calm = rules_named(state(tmp_path / "c", grpo_rows(entropy=lambda t: 0.8 - 0.3 * t)))
    assert not {"length_drift", "entropy_collapse"} & set(calm), "a slow entropy fall is learning"


def test_reward_never_rising_and_repetition(tmp_path):
    never = grpo_rows(reward=lambda t: 0.0, reward_std=lambda t: 0.0, frac_reward_zero_std=lambda t: 1.0)
    assert rules_named(state(tmp_path / "a", never))["reward_never_rises"]["severity"] == "error"
    collapsed = grpo_rows(**{"completions/distinct": lambda t: 0.9 - 0.8 * t, "completions/distinct_2": lambda t: 1.0})
    assert "repetition" in rules_named(state(tmp_path / "b", collapsed))


def test_dpo_beta_rules_read_the_margin_in_nats(tmp_path):
    from pipelines.doctor import diagnose_history
    from pipelines.doctor.history import from_trainer_state

    def dpo(beta: float, loss, margin_nats) -> list[str]:
        rows = [
            {
                "loss": loss(i / 39),
                "rewards/margins": beta * margin_nats(i / 39),
                "logps/chosen": -2.0,
                "grad_norm": 1.0,
            }
            for i in range(40)
        ]
        history = from_trainer_state(state(tmp_path / f"dpo{beta}", rows) / "trainer_state.json")
        history.hyper = {"beta": beta, "lr": 5e-4}  # an advisor stage records them; a bare TRL log does not
        return [f.rule for f in diagnose_history(history) if not f.not_enough_data]

    assert "dpo_beta_too_high" in dpo(5.0, lambda t: 0.69 - 0.5 * t, lambda t: 0.5 * t)
    assert "dpo_beta_too_low" in dpo(0.01, lambda t: 0.69 - 0.01 * t, lambda t: 4.0 * t)
    assert not {"dpo_beta_too_high", "dpo_beta_too_low"} & set(dpo(0.1, lambda t: 0.69 - 0.15 * t, lambda t: 3 * t))


def test_loss_falling_while_checkpoint_scores_fall_names_the_winner(tmp_path):
    folder = tmp_path / "04-sft"
    folder.mkdir()
    metrics = {
        "kind": "sft",
        "log_history": [{"loss": 1.0 - i / 50, "step": i + 1} for i in range(40)],
        "checkpoints": [
            {"step": 10, "eval_pass@1": 0.6},
            {"step": 20, "eval_pass@1": 0.5},
            {"step": 40, "eval_pass@1": 0.3},
        ],
        "chosen_checkpoint": 10,
        "checkpoint_eval": {"prompts": 64},
        "hyperparameters": {"max_steps": 40, "lr": 1e-4},
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    finding = rules_named(folder)["loss_vs_score"]
    assert "checkpoint 10" in finding["title"] and "+30.0%" in finding["title"], finding["title"]
    assert "max_steps 40 -> 20" in finding["fix"]


def test_a_plateau_then_a_steady_fall_counts_as_a_fall(tmp_path):
    """Scores 40.6, 40.6, 32.8, 32.8% over 64 prompts: the first two tie, then they fall and stay
    down. A steady fall needs half the single-drop evidence; the tie must not hide it."""
    folder = tmp_path / "02-sft"
    folder.mkdir()
    scores = [0.40625, 0.40625, 0.328125, 0.328125]
    metrics = {
        "kind": "sft",
        "log_history": [{"loss": 0.7 - i / 300, "step": i + 1} for i in range(160)],
        "checkpoints": [{"step": 40 * (i + 1), "eval_pass@1": v} for i, v in enumerate(scores)],
        "chosen_checkpoint": 80,
        "checkpoint_eval": {"prompts": 64},
        "hyperparameters": {"max_steps": 160, "lr": 1e-5},
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    assert "checkpoint 80" in rules_named(folder)["loss_vs_score"]["title"]
    metrics["checkpoints"][2]["eval_pass@1"] = 0.421875  # a small rise in between: not a steady fall
    (folder / "metrics.json").write_text(json.dumps(metrics))
    assert "loss_vs_score" not in rules_named(folder)


# ---- real runs on the tiny model ----


@pytest.mark.slow
def test_real_runs_reward_never_rises_and_a_far_too_high_lr(tmp_path, tiny_model_dir):
    """GRPO on a reward no sample can earn, and SFT at lr 0.3: the stages' own doctor names both;
    the same SFT at a sane lr shows no loss trouble."""
    from test_train import make_plan, run_stage

    never = {"name": "regex", "options": {"pattern": r"^[a-z]{5}$", "fullmatch": True}}
    rl = {"kind": "grpo", "max_steps": 8, "batch_size": 8, "num_generations": 4, "max_new_tokens": 4, "lr": 1e-4}
    plan = make_plan(tmp_path / "rl", tiny_model_dir, [rl], verifier=never)
    metrics = run_stage(plan, tmp_path / "rl", 1)
    assert "reward_never_rises" in {f["rule"] for f in metrics["doctor"]}, metrics["doctor"]

    sft = {"kind": "sft", "max_steps": 24, "batch_size": 8, "lora": "no"}
    hot = run_stage(make_plan(tmp_path / "hot", tiny_model_dir, [{**sft, "lr": 0.3}]), tmp_path / "hot", 1)
    named = {f["rule"] for f in hot["doctor"] if f["severity"] != "info"}
    assert named & {"loss_spikes", "loss_diverges", "repetition"}, hot["doctor"]

    calm = run_stage(make_plan(tmp_path / "calm", tiny_model_dir, [{**sft, "lr": 1e-3}]), tmp_path / "calm", 1)
    # the untrained tiny model may collapse onto one answer at any lr (the doctor says so); what a
    # sane lr must not show is the loss blowing up (healthy runs of a trained model: the benchmark)
    assert not {f["rule"] for f in calm["doctor"]} & {"loss_spikes", "loss_diverges"}, calm["doctor"]
    # the same history read back by the CLI, from the stage's plain TRL checkpoint folder too
    result = run_cli("doctor", tmp_path / "hot" / "runs", "--json", cwd=tmp_path)
    assert result.exit_code == 0 and {f["rule"] for f in json.loads(result.output)} >= named


def test_the_report_shows_the_stages_findings(tmp_path):
    """What a training stage stores (diagnose_stage on its metrics) is what the report shows."""
    from test_report import make_plan, write_stage

    from advisor.report import write_report
    from pipelines.doctor import diagnose_stage

    run = tmp_path / "run"
    history = [{"step": i + 1, "loss": 30.0 if i == 20 else 1.0 - i / 100} for i in range(40)]
    metrics = {"kind": "sft", "log_history": history, "hyperparameters": {"lr": 2e-4, "max_grad_norm": 1.0}}
    metrics["doctor"] = diagnose_stage(metrics, run / "01-sft")
    assert [f["rule"] for f in metrics["doctor"]] == ["loss_spikes"], "not-enough-data rules are left out"
    write_stage(run, "01-sft", metrics)
    md = write_report(make_plan(["sft"]), run)[1].read_text()
    assert "doctor: findings on the training history" in md and "doctor (warn): loss spikes" in md
    assert "max_grad_norm 1 -&gt; 0.2" in md, "the fix, as a setting (HTML-escaped in Markdown cells)"


def test_a_history_the_doctor_cannot_read_never_fails_the_stage(tmp_path):
    # a stage resumed past its last step logs no new rows: the doctor has nothing to say, the stage goes on
    from types import SimpleNamespace

    from rich.console import Console

    from pipelines.stages.train import run_doctor

    ctx = SimpleNamespace(dir=tmp_path / "02-sft", console=Console(quiet=True))
    assert run_doctor(ctx, {"kind": "sft", "log_history": []}) == []
