"""``advisor estimate``: model sizes from configs, per-stage prices, warnings, JSON, and the CLI.

The model-size tests count the tiny test models both ways (analytically from config.json
and exactly on the meta device) and check the table of known hub models against their
published sizes. The estimate tests drive the real CLI on plans ``advisor plan`` writes.
How close the times are to measured runs is ``benchmarks/estimate.md``'s job.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import run_cli, write_plan


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_config_count_equals_the_meta_device_count(tmp_path, arch):
    from advisor.model_size import model_shape
    from pipelines.stages.train import count_parameters
    from pipelines.testing.tinymodel import build_tiny_model

    folder = build_tiny_model(tmp_path / arch, arch=arch, seed=0)
    shape = model_shape(str(folder), tmp_path)
    assert shape.source == "config.json"
    assert shape.parameters == count_parameters(str(folder)), "the analytic count is exact for Llama-like configs"


def test_known_hub_ids_and_sizes_in_names():
    from advisor.errors import InputError
    from advisor.model_size import model_shape

    here = Path(".")
    # published sizes: Qwen2.5-1.5B 1,543,714,304; Llama-3.1-8B 8,030,261,248
    assert model_shape("Qwen/Qwen2.5-1.5B-Instruct", here).parameters == 1_543_714_304
    assert model_shape("meta-llama/Llama-3.1-8B-Instruct", here).parameters == 8_030_261_248
    guessed = model_shape("someone/Mistral-7B-v0.1", here)
    assert guessed.source == "name" and guessed.parameters == 7_000_000_000
    with pytest.raises(InputError, match="model size unknown"):
        model_shape("someone/mystery-model", here)


def _estimate_json(folder: Path, *extra: str) -> dict:
    result = run_cli("estimate", folder / "plan.yaml", "--json", *extra, cwd=folder)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_json_has_one_object_per_enabled_stage_and_a_total(tmp_path):
    plan = write_plan(tmp_path, labeled_rows=250, verifiable=True, cot_helps="yes")
    data = yaml.safe_load(plan.read_text())
    data["stages"][1]["enabled"] = False  # a disabled stage costs nothing and is not listed
    plan.write_text(yaml.safe_dump(data, sort_keys=False))
    out = _estimate_json(tmp_path)
    names = [s["stage"] for s in out["stages"]]
    enabled = [f"{i:02d}-{s['kind']}" for i, s in enumerate(data["stages"], 1) if s.get("enabled", True)]
    assert names == enabled
    for s in out["stages"]:
        assert {"stage", "seconds", "flops", "peak_memory_bytes"} <= set(s)
        assert s["seconds"] > 0 and s["flops"] > 0 and s["peak_memory_bytes"] > 0
    total = out["total"]
    assert total["seconds"] == pytest.approx(sum(s["seconds"] for s in out["stages"]), abs=1)
    assert total["generated_tokens"] == sum(s["generated_tokens"] for s in out["stages"])
    sft = next(s for s in out["stages"] if s["kind"] == "sft")
    # lora: auto trains an adapter on the 1.5B default: about 4N per trained token (6N in full fine-tuning)
    assert any("LoRA" in a for a in sft["assumptions"])
    assert sft["flops"] >= 4 * sft["parameters"] * sft["trained_tokens"]
    assert any("file not found" in a for s in out["stages"] for a in s["assumptions"]), "missing data is assumed, said"


def test_seven_b_judges_on_a_cpu_plan_warn_that_they_cannot_fit(tmp_path):
    write_plan(tmp_path, labeled_rows=250, verifiable=True, cot_helps="yes", judge_models=["Qwen/Qwen2.5-7B-Instruct"])
    out = _estimate_json(tmp_path, "--memory-gib", "16")
    assert out["device"].startswith("cpu")
    assert any("cannot fit" in w for w in out["warnings"]), out["warnings"]
    assert any("takes about" in w for w in out["warnings"]), "a 7B teacher on one CPU thread takes days"


def test_a_gpu_plan_is_priced_on_the_gpu_kind(tmp_path):
    write_plan(tmp_path, labeled_rows=250, verifiable=True, cot_helps="yes", gpus=4)
    cpu_like = _estimate_json(tmp_path, "--gpu", "t4")
    fast = _estimate_json(tmp_path, "--gpu", "H100")
    assert fast["device"] == "4 x h100" and fast["total"]["gpu_hours"] > 0
    assert fast["total"]["seconds"] < cpu_like["total"]["seconds"], "an H100 is faster than a T4"
    assert fast["total"]["flops"] == cpu_like["total"]["flops"], "the work does not depend on the machine"


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    write_plan(tmp_path, labeled_rows=250, verifiable=True, cot_helps="yes")
    result = run_cli("estimate", tmp_path / "plan.yaml", "--gpu", "abacus", cwd=tmp_path)
    assert result.exit_code == 2 and "unknown kind" in result.output
    result = run_cli("estimate", tmp_path / "missing.yaml", cwd=tmp_path)
    assert result.exit_code == 2 and "not found" in result.output and "Traceback" not in result.output


def test_plan_prints_the_estimate_totals(tmp_path):
    out = tmp_path / "p"
    result = run_cli("plan", "--labeled-rows", "250", "--verifiable", "yes", "--cot-helps", "yes", "--no-input",
                     "--out", out, cwd=tmp_path)  # fmt: skip
    assert result.exit_code == 0, result.output
    last = [line for line in result.output.splitlines() if line.startswith("estimate:")]
    assert last and ("GPU-hours" in last[0] or "CPU-hours" in last[0]), result.output


def test_tokens_are_counted_with_the_models_own_tokenizer(tmp_path, tiny_model_dir):
    """The tiny model's character tokenizer: one token per character, and its chat template
    (<bos><|user|>...<eos><|assistant|>) adds 4 tokens; a model without a tokenizer keeps the rule
    of thumb, and a training stage trains on the rows left after the validation split."""
    from advisor.estimate import estimate_plan, measure_tokens, sample_texts
    from advisor.model_size import model_shape
    from advisor.validate import load_plan

    rows = [{"question": f"What is {a}+{b}?", "answer": str(a + b)} for a in range(10) for b in range(10)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    plan_file = write_plan(
        tmp_path, keep=("sft",), stage={"max_steps": -1, "batch_size": 10, "epochs": 1.0}, labeled_rows=100,
        verifiable=True, cot_helps="no", task_kind="math", base_model=str(tiny_model_dir), train_data="train.jsonl",
    )  # fmt: skip
    plan = load_plan(plan_file)
    texts = sample_texts(plan, tmp_path)
    assert len(texts) == 200, "100 prompts and 100 answers of data.train (data.eval is not written yet)"
    shape = measure_tokens(model_shape(str(tiny_model_dir), tmp_path), str(tiny_model_dir), texts, tmp_path)
    assert shape.chars_per_token == pytest.approx(1.0) and shape.chat_tokens == 4
    qwen = "Qwen/Qwen2.5-1.5B-Instruct"
    bare = measure_tokens(model_shape(qwen, tmp_path), qwen, texts, tmp_path)
    assert bare.chars_per_token is None and bare.chat_tokens is None, "no local tokenizer: nothing is guessed"
    sft = estimate_plan(plan, tmp_path).stages[0]
    assert sft.steps == 8, "80 training rows (20 of the 100 held out to choose checkpoints) at 10 a step"
