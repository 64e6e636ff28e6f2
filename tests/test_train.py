"""Training stages (sft, psft, dpo, grpo, rloo, reward_model) through TRL on a tiny model.

The fast tests check the pieces that need no training: where each stage takes its
data from, the checkpoint choice, the launch commands and accelerate configs. The
``slow`` tests train the session's tiny Llama (about 140k parameters) for a few
steps each, on CPU, and check what a stage promises: ``model/`` written and
loadable, a score for every checkpoint with the best one chosen, the curves in
``log_history``, two real ranks under ``compute.num_processes: 2``, and a resume
from the last checkpoint after a crash.

Prompts are ``12+34=`` (the probe's inline template ``{{ question }}``), and the
verifier is a regex, so even an untrained model earns rewards that vary.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from advisor.plan import Plan
from pipelines.artifacts import read_json, write_json, write_jsonl
from pipelines.context import StageContext
from pipelines.testing.tinymodel import addition_task

DIGITS_ONLY = {"name": "regex", "options": {"pattern": r"^\d+$", "fullmatch": True}}
ANY_DIGIT = {"name": "regex", "options": {"pattern": r"\d"}}


def write_data(folder: Path) -> None:
    rows = []
    for r in addition_task(40, seed=1):
        wrong = str(int(r["answer"]) + 1)
        rows.append({"question": r["prompt"], "answer": r["answer"], "chosen": r["answer"], "rejected": wrong})
    write_jsonl(folder / "train.jsonl", rows)
    write_jsonl(folder / "eval.jsonl", [{"question": r["prompt"], "answer": r["answer"]} for r in addition_task(8, 2)])


def make_plan(
    folder: Path, model: Path, stages: list[dict[str, Any]], verifier=DIGITS_ONLY, chat: bool = False, **compute
) -> Plan:
    """A plan whose probe already ran (direct style, template ``{{ question }}``)."""
    write_data(folder)
    plan = Plan.model_validate(
        {
            "name": "train-test",
            "task": {"kind": "math"},
            "answers": {"labeled_rows": 500, "verifiable": True, "cot_helps": "no"},  # the flowchart's sft
            "route": "sft",
            "models": {"base": str(model), "chat": chat},
            "data": {"train": "train.jsonl", "eval": "eval.jsonl"},
            "verifier": verifier,
            "compute": compute,
            "stages": [{"kind": "probe", "prompt_template": "{{ question }}", "max_new_tokens": 6}, *stages],
        }
    )
    probe = folder / "runs" / plan.stage_dirs()[0]
    write_json(probe / "metrics.json", {"style": "direct"})
    write_json(probe / "manifest.json", {"status": "done"})
    return plan


def context(plan: Plan, folder: Path, index: int) -> StageContext:
    run_dir = folder / "runs"
    dirs = [run_dir / name for name in plan.stage_dirs()]
    dirs[index].mkdir(parents=True, exist_ok=True)
    return StageContext(plan, plan.stages[index], index, dirs[index], run_dir, folder, Console(quiet=True), False, dirs)


def run_stage(plan: Plan, folder: Path, index: int) -> dict[str, Any]:
    """Run one training stage as the runner would: metrics.json, then manifest.json."""
    from pipelines.stages.train import run

    ctx = context(plan, folder, index)
    result = run(ctx)
    write_json(ctx.dir / "metrics.json", result.metrics)
    write_json(ctx.dir / "manifest.json", {"status": "done", "outputs": {k: str(v) for k, v in result.outputs.items()}})
    assert result.outputs == {"model": ctx.dir / "model"}
    return result.metrics


def steps(metrics: dict[str, Any], key: str) -> list[float]:
    return [e[key] for e in metrics["log_history"] if key in e]


# ---------------------------------------------------------------- fast: no training


def test_sft_data_prefers_rejection_sampling_and_matches_the_prompt_form(tmp_path, tiny_model_dir):
    from pipelines.stages.train import load_pair_rows, load_sft_rows

    plan = make_plan(tmp_path, tiny_model_dir, [{"kind": "rejection_sample"}, {"kind": "sft"}])
    ctx = context(plan, tmp_path, 2)
    rows, source = load_sft_rows(ctx)
    assert source == "data.train" and rows[0]["prompt"].endswith("=") and rows[0]["completion"].isdigit()

    rs = tmp_path / "runs" / plan.stage_dirs()[1]
    chat = [{"role": "user", "content": "1+2="}]
    write_jsonl(rs / "sft.jsonl", [{"prompt": chat, "completion": "3"}, {"prompt": "2+2=", "completion": "4"}])
    write_jsonl(rs / "pairs.jsonl", [{"prompt": chat, "chosen": "3", "rejected": "4"}])
    assert load_sft_rows(ctx)[1] == "data.train", "an unfinished stage (no manifest) is not an input"
    write_json(rs / "manifest.json", {"status": "done"})
    rows, source = load_sft_rows(ctx)
    assert source.endswith("rejection_sample/sft.jsonl")
    # a chat prompt gets an assistant-message completion (TRL's conversational form); a string, a string
    assert rows == [
        {"prompt": chat, "completion": [{"role": "assistant", "content": "3"}]},
        {"prompt": "2+2=", "completion": "4"},
    ]
    pairs, _ = load_pair_rows(ctx)
    assert pairs[0]["chosen"] == [{"role": "assistant", "content": "3"}]


def test_rl_rows_mix_in_general_prompts(tmp_path, tiny_model_dir):
    from pipelines.stages.train import load_rl_rows

    plan = make_plan(tmp_path, tiny_model_dir, [{"kind": "grpo", "general_mix": 0.2}])
    write_jsonl(tmp_path / "general.jsonl", [{"prompt": f"say {i}"} for i in range(50)])
    plan = Plan.model_validate({**plan.model_dump(), "data": {**plan.data.model_dump(), "general": "general.jsonl"}})
    rows, source = load_rl_rows(context(plan, tmp_path, 1))
    general = [r for r in rows if r["reference"] is None]
    # 8 of the 40 training prompts are held out to choose checkpoints: 32 task prompts + 8 general (20%)
    assert len(rows) == 40 and len(general) == 8, "20% of the final pool: 32 task prompts + 8 general"
    assert "8 general prompts" in source


def test_checkpoint_choice_is_by_score_not_by_step():
    from pipelines.training.checkpoints import choose

    rows = [{"step": 2, "s": 0.5}, {"step": 4, "s": 0.75}, {"step": 6, "s": 0.25}, {"step": 8, "s": 0.75}]
    assert choose(rows, "s")["step"] == 8, "the best score wins; a tie goes to the later checkpoint"
    assert choose(rows[:3], "s")["step"] == 4, "a later but worse checkpoint loses"
    assert choose([{"step": 1, "s": None}, {"step": 2, "s": None}], "s")["step"] == 2, "no scores: the last"


def test_launch_commands_and_accelerate_configs(tmp_path):
    from pipelines.training.launch import launch_command, render_accelerate_config

    job = tmp_path / "job.json"
    cpu = launch_command(job, 2, "ddp", cuda=False)
    assert cpu[1:4] == ["-m", "torch.distributed.run", "--standalone"] and "--nproc_per_node=2" in cpu
    assert cpu[-3:] == ["-m", "pipelines.training.launch", str(job)]
    gpu = launch_command(job, 4, "fsdp", cuda=True)
    assert gpu[1:3] == ["-m", "accelerate.commands.launch"] and gpu[gpu.index("--config_file") + 1].endswith(".yaml")
    assert yaml.safe_load((tmp_path / "accelerate.yaml").read_text())["distributed_type"] == "FSDP"
    configs = {d: yaml.safe_load(render_accelerate_config(d, 4)) for d in ("ddp", "deepspeed", "fsdp")}
    assert {d: c["distributed_type"] for d, c in configs.items()} == {
        "ddp": "MULTI_GPU",
        "deepspeed": "DEEPSPEED",
        "fsdp": "FSDP",
    }
    assert all(c["num_processes"] == 4 for c in configs.values())
    assert configs["deepspeed"]["deepspeed_config"]["zero_stage"] == 2
    assert yaml.safe_load(render_accelerate_config("deepspeed", 2, zero_stage=3))["deepspeed_config"]["zero3_init_flag"]
    assert configs["fsdp"]["fsdp_config"]["fsdp_state_dict_type"] == "FULL_STATE_DICT"


def test_lora_auto_follows_model_size(tiny_model_dir):
    from pipelines.stages.train import use_lora

    assert use_lora("auto", str(tiny_model_dir)) == (False, use_lora("no", str(tiny_model_dir))[1])
    assert use_lora("yes", str(tiny_model_dir))[0] is True


# ---------------------------------------------------------------- slow: trains for real


@pytest.mark.slow
def test_sft_writes_model_and_chooses_checkpoint_by_eval_pass_rate(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    plan = make_plan(tmp_path, tiny_model_dir, [{"kind": "sft", "max_steps": 4, "lr": 1e-3}])
    m = run_stage(plan, tmp_path, 1)
    stage = tmp_path / "runs" / "02-sft"
    AutoModelForCausalLM.from_pretrained(stage / "model")
    assert not (stage / "model" / "optimizer.pt").exists(), "model/ holds the model, not training state"
    for name in ("tokenizer.json", "tokenizer_config.json"):  # the policy's tokenizer, byte for byte
        assert (stage / "model" / name).read_bytes() == (tiny_model_dir / name).read_bytes()
    assert [c["step"] for c in m["checkpoints"]] == [1, 2, 3, 4]
    scores = [c["eval_pass@1"] for c in m["checkpoints"]]
    assert all(s is not None for s in scores)
    best = max(scores)
    assert m["chosen_checkpoint"] == max(c["step"] for c in m["checkpoints"] if c["eval_pass@1"] == best)
    assert m["chosen_by"] == "eval_pass@1" and m["checkpoint_eval"]["prompts"] == 8
    assert m["kind"] == "sft" and m["lora"] is False and m["world_size"] == 1 and m["steps"] == 4
    assert len(steps(m, "loss")) == 4 and m["rows"] == 32 and m["data"] == "data.train", "8 rows validate"
    assert not (stage / "checkpoints").exists(), "model/ holds the choice; a finished stage keeps no checkpoint"
    assert m["checkpoint_eval"]["source"].startswith("data.train (held out: 8 of 40 rows")


@pytest.mark.slow
def test_psft_trains_with_the_clipped_loss_and_refreshes_the_old_policy(tmp_path, tiny_model_dir):
    stage = {"kind": "psft", "max_steps": 4, "lr": 3e-3, "refresh_every": 2, "warmup_ratio": 0.0}
    plan = make_plan(tmp_path, tiny_model_dir, [stage])
    m = run_stage(plan, tmp_path, 1)
    ratios = steps(m, "psft/ratio_mean")
    assert len(ratios) == 4 and len(steps(m, "psft/clip_fraction")) == 4
    # pi_old is the policy at steps 0 and 2: the ratio is exactly 1 there, and moves in between
    assert ratios[0] == pytest.approx(1.0) and ratios[2] == pytest.approx(1.0)
    assert ratios[1] != pytest.approx(1.0, abs=1e-6) and ratios[3] != pytest.approx(1.0, abs=1e-6)
    assert m["hyperparameters"]["epsilon"] == 0.28 and m["hyperparameters"]["refresh_every"] == 2


@pytest.mark.slow
def test_lora_psft_merges_the_adapter_into_model(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    stage = {"kind": "psft", "max_steps": 2, "lr": 3e-3, "lora": "yes", "refresh_every": 1, "warmup_ratio": 0.0}
    m = run_stage(make_plan(tmp_path, tiny_model_dir, [stage]), tmp_path, 1)
    model_dir = tmp_path / "runs" / "02-psft" / "model"
    assert m["lora"] is True and not (model_dir / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert sum(p.numel() for p in merged.parameters()) == sum(p.numel() for p in base.parameters())
    assert steps(m, "psft/ratio_mean") == pytest.approx([1.0, 1.0]), "refresh_every 1: pi_old is always current"


@pytest.mark.slow
def test_dpo_on_user_pairs_with_chat_prompts(tmp_path, tiny_model_dir):
    stage = {"kind": "dpo", "max_steps": 3, "lr": 1e-3, "loss_type": ["sigmoid", "sft"]}
    plan = make_plan(tmp_path, tiny_model_dir, [stage], chat=True)
    m = run_stage(plan, tmp_path, 1)
    train = [json.loads(line) for line in (tmp_path / "runs" / "02-dpo" / "train.jsonl").read_text().splitlines()]
    assert train[0]["prompt"][0]["role"] == "user" and train[0]["chosen"][0]["role"] == "assistant"
    assert m["rows"] == 32 and len(m["checkpoints"]) == 3, "8 of the 40 prompts validate, not train"
    assert len(steps(m, "rewards/margins")) == 3 and m["hyperparameters"]["loss_type"] == ["sigmoid", "sft"]


@pytest.mark.slow
def test_grpo_with_the_verifier_reward_on_chat_prompts(tmp_path, tiny_model_dir):
    stage = {"kind": "grpo", "max_steps": 3, "lr": 1e-4, "num_generations": 4, "max_new_tokens": 6, "beta": 0.01}
    m = run_stage(make_plan(tmp_path, tiny_model_dir, [stage], verifier=ANY_DIGIT, chat=True), tmp_path, 1)
    rewards = steps(m, "reward")
    assert len(rewards) == 3 and any(0 < r < 1 for r in rewards), "a digit somewhere: rewards vary"
    assert len(steps(m, "kl")) == 3, "beta > 0 logs the KL to the reference model"
    assert m["reward"] == {"verifier": "regex", "options": ANY_DIGIT["options"]} and m["use_vllm"] is False
    assert m["hyperparameters"]["epsilon_high"] == 0.28 and m["hyperparameters"]["loss_type"] == "dapo"


@pytest.mark.slow
def test_reward_model_then_rloo_with_it_as_the_reward(tmp_path, tiny_model_dir):
    from transformers import AutoModelForSequenceClassification

    stages = [
        {"kind": "reward_model", "max_steps": 3, "lr": 1e-3, "lora": "yes"},  # the adapter is merged into model/
        {"kind": "rloo", "max_steps": 2, "num_generations": 4, "max_new_tokens": 6, "reward": "reward_model"},
    ]
    plan = make_plan(tmp_path, tiny_model_dir, stages)
    rm = run_stage(plan, tmp_path, 1)
    # 8 of the 40 prompts validate (left out of training), and 10% of the other 32 pairs score checkpoints
    assert rm["heldout_pairs"] == 3 and rm["rows"] == 29, "10% of the pairs are held out to score checkpoints"
    assert all(c["pairwise_accuracy"] is not None for c in rm["checkpoints"])
    assert rm["chosen_by"] == "pairwise_accuracy"
    model_dir = tmp_path / "runs" / "02-reward_model" / "model"
    assert rm["lora"] is True and not (model_dir / "adapter_config.json").exists()
    assert AutoModelForSequenceClassification.from_pretrained(model_dir).config.num_labels == 1

    rl = run_stage(plan, tmp_path, 2)
    assert rl["reward"] == {"model": str(model_dir)}
    assert rl["policy"] == str(tiny_model_dir), "the reward model is not a policy"
    assert len(steps(rl, "reward")) == 2 and any(r != 0 for r in steps(rl, "reward"))


@pytest.mark.slow
def test_two_processes_really_train_on_two_ranks(tmp_path, tiny_model_dir):
    import torch

    if 0 < torch.cuda.device_count() < 2:
        pytest.skip("two ranks need two GPUs when CUDA is visible (on CPU they run through torchrun)")
    plan = make_plan(tmp_path, tiny_model_dir, [{"kind": "sft", "max_steps": 2, "batch_size": 4}], num_processes=2)
    m = run_stage(plan, tmp_path, 1)
    assert m["world_size"] == 2, "torchrun started two gloo ranks"
    assert (tmp_path / "runs" / "02-sft" / "model" / "model.safetensors").exists()
    assert "step 2/2" in (tmp_path / "runs" / "02-sft" / "launch.log").read_text()


@pytest.mark.slow
def test_a_killed_stage_resumes_from_its_last_checkpoint(tmp_path, tiny_model_dir, monkeypatch):
    """Through ``advisor run``: a crash after checkpoint-2, then the same command again."""
    import transformers

    from advisor.plan import dump_plan
    from advisor.runner import run_plan

    class Killed(Exception):
        pass

    save = transformers.Trainer._save_checkpoint

    def save_then_die(self, model, trial):  # the process dies right after checkpoint-3 is on disk
        save(self, model, trial)
        if self.state.global_step == 3:
            raise Killed

    plan = make_plan(tmp_path, tiny_model_dir, [{"kind": "sft", "max_steps": 4, "lr": 1e-3}])
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(dump_plan(plan))
    quiet = Console(quiet=True)
    monkeypatch.setattr(transformers.Trainer, "_save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        run_plan(plan_file, run_dir=tmp_path / "runs", only="sft", console=quiet)
    stage = tmp_path / "runs" / "02-sft"
    assert not (stage / "model").exists() and not (stage / "manifest.json").exists()
    ckpt = stage / "checkpoints"
    assert (ckpt / "checkpoint-3" / "trainer_state.json").exists() and (ckpt / "checkpoint-3" / "optimizer.pt").exists()
    # while training, an older checkpoint keeps only its weights (to be scored), not the optimizer state
    assert (ckpt / "checkpoint-1" / "model.safetensors").exists()
    assert not (ckpt / "checkpoint-1" / "optimizer.pt").exists()
    monkeypatch.undo()

    rows = run_plan(plan_file, run_dir=tmp_path / "runs", only="sft", console=quiet)
    assert rows[1]["status"] == "done"
    m = read_json(stage / "metrics.json")
    assert m["resumed_from_step"] == 3 and m["steps"] == 4
    assert [c["step"] for c in m["checkpoints"]] == [1, 2, 3, 4]
    assert len(steps(m, "loss")) == 4, "the curve from before the crash is kept"
    manifest = read_json(stage / "manifest.json")
    assert manifest["outputs"]["model"]["path"] == "model" and not ckpt.exists()
    crashed = read_json(stage / "started.json")["attempts"][0]
    assert manifest["attempts"] == 2 and manifest["seconds"] == pytest.approx(
        crashed["seconds"] + manifest["attempt_seconds"], abs=1e-2
    ), "the crashed attempt's training time counts"
