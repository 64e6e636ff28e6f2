"""The vllm backend's options from the plan, the broken-sampler stop, and the 404 hint.

No vLLM needed: these run in the main venv. The engines themselves are tested in
``test_vllm_engines.py`` (marker ``vllm``, run from ``.venv-vllm``).
"""

from __future__ import annotations

import doctest
import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from helpers import run_cli, write_plan

from advisor.errors import StageFailed
from advisor.plan import Compute
from pipelines.generation import GenerationError, OpenAIGenerator, make_generator
from pipelines.generation import vllm as vllm_backend
from pipelines.generation.vllm import engine_options
from pipelines.sampling import SamplerCheck
from pipelines.testing.openai_server import ScriptedServer


def set_compute_vllm(plan: Path, options: dict) -> None:
    data = yaml.safe_load(plan.read_text())
    data["compute"]["vllm"] = options
    plan.write_text(yaml.safe_dump(data, sort_keys=False))


# -- compute.vllm in the plan --------------------------------------------------------------


def test_compute_vllm_defaults_leave_every_engine_choice_to_the_device():
    options = Compute().vllm.model_dump()
    assert options == {
        "gpu_memory_utilization": None,
        "kv_cache_gb": None,
        "enforce_eager": None,
        "max_model_len": None,
        "dtype": "auto",
        "chunked_prefill": None,
    }


def test_tensor_parallel_size_has_one_home():
    moved = Compute.model_validate({"vllm": {"tensor_parallel_size": 2, "kv_cache_gb": 2}})
    assert moved.tensor_parallel_size == 2 and "tensor_parallel_size" not in moved.vllm.model_dump()
    assert (
        Compute.model_validate({"tensor_parallel_size": 2, "vllm": {"tensor_parallel_size": 2}}).tensor_parallel_size
        == 2
    )
    assert Compute.model_validate({"tensor_parallel_size": 4}).tensor_parallel_size == 4
    with pytest.raises(ValueError, match="tensor_parallel_size is 2 but vllm.tensor_parallel_size is 4: set one"):
        Compute.model_validate({"tensor_parallel_size": 2, "vllm": {"tensor_parallel_size": 4}})


def test_bad_compute_vllm_options_are_one_line_each_exit_2(tmp_path):
    plan = write_plan(tmp_path, keep=("probe",), labeled_rows=20, verifiable=True, task_kind="math", base_model="m")
    set_compute_vllm(plan, {"gpu_memory_utilization": 1.5, "enforce_eager": "maybe", "swap_gb": 4})
    result = run_cli("validate", plan, cwd=tmp_path)
    assert result.exit_code == 2, result.output
    for field in ("gpu_memory_utilization", "enforce_eager", "swap_gb"):
        assert f"compute.vllm.{field}" in result.output
    assert "Traceback" not in result.output


# -- engine options per device -------------------------------------------------------------


def test_cpu_defaults_a_fixed_kv_cache_eager_mode_and_no_chunked_prefill():
    options, seeded = engine_options(True)
    assert options["kv_cache_memory_bytes"] == 2**30 and "gpu_memory_utilization" not in options
    assert options["enforce_eager"] is True and options["enable_chunked_prefill"] is False
    assert seeded, "without chunked prefill a per-request seed is safe on CPU"


def test_gpu_defaults_are_vllms_own():
    options, seeded = engine_options(False)
    assert options["gpu_memory_utilization"] == 0.9 and "kv_cache_memory_bytes" not in options
    assert options["enforce_eager"] is False and "enable_chunked_prefill" not in options
    assert seeded


def test_plan_choices_override_the_device_defaults():
    options, seeded = engine_options(
        True, gpu_memory_utilization=0.3, enforce_eager=False, max_model_len=512, dtype="float32", chunked_prefill=True
    )
    assert options["gpu_memory_utilization"] == 0.3 and "kv_cache_memory_bytes" not in options
    assert (options["enforce_eager"], options["max_model_len"], options["dtype"]) == (False, 512, "float32")
    assert not seeded, "chunked prefill on CPU: only the engine seed"
    gpu, _ = engine_options(False, kv_cache_gb=2.5, tensor_parallel_size=4)
    assert gpu["kv_cache_memory_bytes"] == int(2.5 * 2**30) and gpu["tensor_parallel_size"] == 4


def test_the_stage_passes_compute_vllm_to_the_engine(tmp_path, monkeypatch):
    """``generator_for`` hands every compute.vllm option and the stage seed to the backend."""
    seen = {}

    class Recorder:
        def __init__(self, model, **options):
            seen.update(options, model=model)
            raise GenerationError("recorded")

    monkeypatch.setattr(vllm_backend, "VLLMGenerator", Recorder)
    monkeypatch.setattr("pipelines.generation.VLLMGenerator", Recorder)
    plan = write_plan(
        tmp_path,
        keep=("probe",),
        stage={"seed": 7, "samples": 2},
        labeled_rows=20,
        verifiable=True,
        task_kind="math",
        base_model="some/model",
        backend="vllm",
        eval_data="eval.jsonl",
        train_data="eval.jsonl",
    )
    (tmp_path / "eval.jsonl").write_text(json.dumps({"question": "1+1?", "answer": "2"}) + "\n")
    set_compute_vllm(plan, {"kv_cache_gb": 2, "tensor_parallel_size": 1})
    result = run_cli("run", plan, cwd=tmp_path)
    assert result.exit_code == 1 and "vllm backend, model some/model: recorded" in result.output
    assert seen["kv_cache_gb"] == 2 and seen["seed"] == 7 and seen["tensor_parallel_size"] == 1
    assert seen["enforce_eager"] is None and seen["chunked_prefill"] is None


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_without_vllm_the_error_says_how_to_install_it_on_cpu_too():
    with pytest.raises(GenerationError) as info:
        make_generator("vllm", "m")
    assert "make vllm" in info.value.message and "CUDA machine" not in info.value.message.split(",")[0]


def test_vllm_module_doctests():
    result = doctest.testmod(vllm_backend)
    assert result.attempted > 0 and result.failed == 0


# -- broken samplers -----------------------------------------------------------------------

LONG = "Let me add the two numbers step by step: the answer is 5."


def test_identical_long_samples_on_most_prompts_stop_with_one_line():
    check = SamplerCheck("probe (cot)", "the openai backend at http://x/v1", n=4, temperature=0.7)
    check.add([[LONG + str(i)] * 4 for i in range(7)])  # under MIN_PROMPTS: no verdict yet
    with pytest.raises(StageFailed) as info:
        check.add([[LONG + "7"] * 4, [LONG, LONG + "!", LONG, LONG]])
    message = str(info.value)
    assert message.startswith("probe (cot): the openai backend at http://x/v1 returned 4 identical samples")
    assert "8 of 9 prompts at temperature 0.7" in message and "ignores n or temperature" in message
    assert "\n" not in message


def test_honest_repeats_do_not_stop_the_run():
    # short answers: a confident model repeats "42"
    short = SamplerCheck("probe", "the hf backend", n=4, temperature=1.0)
    short.add([["42"] * 4 for _ in range(50)])
    # a few peaked prompts among sampled ones
    mixed = SamplerCheck("probe", "the hf backend", n=4, temperature=1.0)
    mixed.add([[LONG] * 4 for _ in range(7)] + [[LONG + str(j) for j in range(4)] for _ in range(3)])
    # greedy, low temperature or one sample: identical is what was asked for
    for n, temperature in ((4, 0.0), (4, 0.2), (1, 1.0)):
        SamplerCheck("probe", "the hf backend", n=n, temperature=temperature).add([[LONG] * n for _ in range(50)])


def test_a_server_that_ignores_temperature_stops_the_probe(tmp_path):
    """A server that answers every request with the same text (fault injection): the probe stops
    with exit 1 and names the backend, instead of reporting pass@4 = pass@1."""
    rows = [{"question": f"What is {a}+{a}?", "answer": str(2 * a)} for a in range(1, 13)]
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with ScriptedServer(reply=lambda messages: LONG, model_name="greedy") as server:
        plan = write_plan(
            tmp_path,
            keep=("probe",),
            stage={"samples": 4, "shard_size": 4, "prompt_style": "direct", "temperature": 0.7},
            labeled_rows=20,
            verifiable=True,
            task_kind="math",
            base_model="greedy",
            backend="openai",
            base_url=server.base_url,
            eval_data="eval.jsonl",
            train_data="eval.jsonl",
            name="broken",
        )
        result = run_cli("run", plan, cwd=tmp_path)
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert f"the openai backend at {server.base_url} returned 4 identical samples for" in " ".join(
        result.output.split()
    )
    assert "Traceback" not in result.output and last.startswith("error:")
    assert not (Path(tmp_path) / "runs" / "broken" / "01-probe" / "metrics.json").exists()


# -- 404 hints -----------------------------------------------------------------------------


def test_unknown_model_lists_what_the_server_serves():
    with ScriptedServer(reply=lambda m: "x", model_name=("judge-a", "judge-b")) as server:
        gen = OpenAIGenerator("judge-c", base_url=server.base_url, retry_base_delay=0.01)
        with pytest.raises(GenerationError) as info:
            gen.generate(["q"])
    assert "model 'judge-c' not found" in info.value.message
    assert "the server serves 'judge-a', 'judge-b'" in info.value.message


def test_unknown_model_on_a_server_that_cannot_list_does_not_point_at_models():
    with ScriptedServer(reply=lambda m: "x", model_name="served", models_status=500) as server:
        gen = OpenAIGenerator("missing", base_url=server.base_url, retry_base_delay=0.01)
        with pytest.raises(GenerationError) as info:
            gen.generate(["q"])
    message = info.value.message
    assert "HTTP 404" in message and "does not list its models: HTTP 500" in message
    assert "lists them" not in message and "\n" not in message
