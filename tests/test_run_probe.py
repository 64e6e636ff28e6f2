"""``advisor run`` with the probe stage: gate outcomes, manifests, resume, errors.

The policy is a real model behind a real server: a tiny model that has memorized one reply
per prompt (right for a known share of them), served through transformers over the OpenAI
API, sampled at a low temperature. So each gate outcome is forced honestly: the stage
really generates over HTTP, verifies, and measures. The scripted server only injects faults.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import run_cli, write_plan

from pipelines.data import render_prompts
from pipelines.testing.model_server import ModelServer
from pipelines.testing.openai_server import ScriptedServer

QUESTIONS = [(a, b) for a in range(1, 6) for b in range(1, 5)]  # 20 prompts


def write_data(folder: Path) -> None:
    with open(folder / "eval.jsonl", "w") as f:
        for a, b in QUESTIONS:
            f.write(json.dumps({"question": f"What is {a}+{b}?", "answer": str(a + b)}) + "\n")


def prompt_text(a: int, b: int, style: str) -> str:
    """The prompt the probe sends for one question, rendered by the pipeline's own template."""
    return render_prompts([{"question": f"What is {a}+{b}?"}], "question", style, "classification", False)[0]


def policy(memorized, name: str, answer) -> Path:
    """A memorized model answering ``answer(a, b, style)`` to every question, in both styles."""
    return memorized(name, [(prompt_text(a, b, s), answer(a, b, s)) for s in ("direct", "cot") for a, b in QUESTIONS])


@pytest.fixture(scope="module")
def right_when_a_is_odd(memorized) -> Path:
    """Correct for a in {1, 3, 5}: 12 of 20 prompts, pass@1 = 60%, in either style."""
    return policy(memorized, "probe-odd", lambda a, b, style: str(a + b) if a % 2 else str(a + b + 1))


@pytest.fixture(scope="module")
def right_only_with_cot(memorized) -> Path:
    """Always wrong when asked directly (every answer a number: format compliance 100%); right
    when asked to think step by step."""
    return policy(
        memorized, "probe-cot", lambda a, b, style: f"thinking...\n{a + b}" if style == "cot" else str(a + b + 1)
    )


@pytest.fixture(scope="module")
def silent(memorized) -> Path:
    """Stops at once: empty replies, no answer to extract."""
    return policy(memorized, "probe-silent", lambda a, b, style: "")


def make_plan(folder: Path, base_url: str, **probe) -> Path:
    write_data(folder)
    return write_plan(
        folder,
        stage={"samples": 4, "shard_size": 4, "prompt_style": "direct", "temperature": 0.3, **probe},
        labeled_rows=20 if "prompt_style" not in probe else 500,
        verifiable=True,
        cot_helps=None if "prompt_style" not in probe else "unknown",
        task_kind="classification",
        base_model="policy",
        backend="openai",
        base_url=base_url,
        eval_data="eval.jsonl",
        train_data="eval.jsonl",
        name="probe-test",
    )


def test_gate_passes_and_metrics_are_measured(tmp_path, right_when_a_is_odd):
    with ModelServer(right_when_a_is_odd, model_name="policy") as server:
        plan = make_plan(tmp_path, server.base_url)
        result = run_cli("run", plan, "--only", "probe", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    stage = tmp_path / "runs" / "probe-test" / "01-probe"
    metrics = json.loads((stage / "metrics.json").read_text())
    assert metrics["pass@1"] == pytest.approx(12 / 20)
    assert metrics["pass@k"]["4"] == pytest.approx(12 / 20), "memorized replies: pass@4 equals pass@1"
    assert metrics["gate_passed"] is True
    assert metrics["no_signal_share"] == 1.0, "every prompt is all right or all wrong"
    lo, hi = metrics["pass@1_ci95"]
    assert lo < 0.6 < hi
    rows = [json.loads(line) for line in (stage / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 20 * 4
    assert {(r["prompt_index"], r["sample_index"]) for r in rows} == {(p, s) for p in range(20) for s in range(4)}
    manifest = json.loads((stage / "manifest.json").read_text())
    assert manifest["status"] == "done" and manifest["outputs"]["samples"]["rows"] == 80
    assert "data.eval" in manifest["input_hashes"]


def test_gate_fails_with_verdict_and_exit_1(tmp_path, right_only_with_cot):
    with ModelServer(right_only_with_cot, model_name="policy") as server:  # asked directly: always wrong
        plan = make_plan(tmp_path, server.base_url)
        result = run_cli("run", plan, cwd=tmp_path)
        assert result.exit_code == 1, result.output
        assert "stopped: probe: pass@1 = 0.0%" in result.output, result.output[-600:]
        assert "under the 20% gate" in result.output and "change the base model" in result.output
        # every answer is a number (format compliance 100%): the verdict blames the skill, not the format
        assert "cannot solve these prompts" in result.output and "improve the prompt" not in result.output
        assert not (tmp_path / "runs" / "probe-test" / "02-synthesize").exists(), "nothing after the gate runs"
        # a re-run does not re-probe: the finished probe's verdict stands
        before = len(server.requests)
        again = run_cli("run", plan, cwd=tmp_path)
        assert again.exit_code == 1 and len(server.requests) == before


def test_gate_verdict_asks_for_a_better_prompt_when_answers_lack_the_format(tmp_path, silent):
    """Empty replies: no answer to extract (format compliance 0%), so the prompt is what to fix first."""
    with ModelServer(silent, model_name="policy") as server:
        result = run_cli("run", make_plan(tmp_path, server.base_url), cwd=tmp_path)
    assert result.exit_code == 1, result.output
    assert "improve the prompt" in result.output and "format compliance now 0%" in result.output
    assert "cannot solve these prompts" not in result.output


def test_rerun_skips_matching_manifest_and_fresh_redoes(tmp_path, right_when_a_is_odd):
    with ModelServer(right_when_a_is_odd, model_name="policy") as server:
        plan = make_plan(tmp_path, server.base_url)
        assert run_cli("run", plan, "--only", "probe", cwd=tmp_path).exit_code == 0
        first = len(server.requests)
        result = run_cli("run", plan, "--only", "probe", cwd=tmp_path)
        assert result.exit_code == 0 and len(server.requests) == first, "cached: no new requests"
        assert "up to date" in result.output
        assert run_cli("run", plan, "--only", "probe", "--fresh", cwd=tmp_path).exit_code == 0
        assert len(server.requests) == 2 * first
        # changing a stage option invalidates the manifest
        data = yaml.safe_load(plan.read_text())
        data["stages"][0]["samples"] = 2
        plan.write_text(yaml.safe_dump(data, sort_keys=False))
        assert run_cli("run", plan, "--only", "probe", cwd=tmp_path).exit_code == 0
        assert len(server.requests) == 3 * first


def test_compare_mode_settles_provisional_route(tmp_path, right_only_with_cot):
    with ModelServer(right_only_with_cot, model_name="policy") as server:
        plan = make_plan(tmp_path, server.base_url, prompt_style="compare")
        result = run_cli("run", plan, "--only", "probe", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "probe-test"
    metrics = json.loads((run_dir / "01-probe" / "metrics.json").read_text())
    assert metrics["compare"]["direct"]["pass@1"] == 0.0
    assert metrics["compare"]["cot"]["pass@1"] == 1.0
    assert metrics["settled_route"] == "rft" and metrics["style"] == "cot"
    settled = yaml.safe_load((run_dir / "plan.settled.yaml").read_text())
    assert settled["route"] == "rft" and settled["provisional"] is False and settled["answers"]["cot_helps"] == "yes"


def test_compare_mode_settles_to_sft_and_turns_off_rft_stages(tmp_path, right_when_a_is_odd):
    with ModelServer(right_when_a_is_odd, model_name="policy") as server:
        plan = make_plan(tmp_path, server.base_url, prompt_style="compare")
        result = run_cli("run", plan, "--only", "probe", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    settled = yaml.safe_load((tmp_path / "runs" / "probe-test" / "plan.settled.yaml").read_text())
    assert settled["route"] == "sft" and settled["answers"]["cot_helps"] == "no"
    enabled = {s["kind"] for s in settled["stages"] if s["enabled"]}
    assert "rejection_sample" in {s["kind"] for s in settled["stages"]}
    assert enabled == {"probe", "sft", "evaluate"}, "rft-only stages are off once the route is sft"


def test_missing_data_file_is_one_line_exit_2(tmp_path):
    plan = make_plan(tmp_path, "http://127.0.0.1:9/v1")
    (tmp_path / "eval.jsonl").unlink()
    result = run_cli("run", plan, cwd=tmp_path)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines == [
        f"error: {plan}: data.train: file not found: eval.jsonl",
        f"error: {plan}: data.eval: file not found: eval.jsonl",
    ], "every problem at once, one line each"
    assert "Traceback" not in result.output


def test_missing_prompt_field_is_clear(tmp_path):
    plan = make_plan(tmp_path, "http://127.0.0.1:9/v1")  # caught before any request is sent
    data = yaml.safe_load(plan.read_text())
    data["data"]["prompt_field"] = "problem"
    plan.write_text(yaml.safe_dump(data))
    result = run_cli("run", plan, cwd=tmp_path)
    assert result.exit_code == 2
    assert "has no field 'problem'" in result.output


def test_auth_failure_is_a_clear_stage_failure(tmp_path):
    with ScriptedServer(reply=lambda messages: "1", model_name="policy", always_status=401) as server:
        plan = make_plan(tmp_path, server.base_url)
        result = run_cli("run", plan, cwd=tmp_path)
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: probe (direct): generation failed: authentication failed") and "401" in last
    assert "Traceback" not in result.output


def test_only_unknown_stage_is_usage_error(tmp_path):
    plan = make_plan(tmp_path, "http://127.0.0.1:9/v1")
    result = run_cli("run", plan, "--only", "dpo", cwd=tmp_path)
    assert result.exit_code == 2 and "no such stage" in result.output


def start_probe_until_shards(folder: Path, base_url: str, shards_wanted: int):
    """``advisor run --only probe`` in a real subprocess, returned once it has finished some shards."""
    plan = make_plan(folder, base_url, shard_size=2)
    shards = folder / "runs" / "probe-test" / "01-probe" / "shards-direct"
    proc = subprocess.Popen(
        [sys.executable, "-m", "advisor.cli", "run", str(plan), "--only", "probe"],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(shards.glob("shard-*.jsonl"))) < shards_wanted:
        time.sleep(0.05)
    return plan, shards, proc


def test_kill_9_loses_at_most_the_shard_in_flight(tmp_path, right_when_a_is_odd):
    """A real ``kill -9`` of ``advisor run`` mid-probe, then a resume: no duplicated or missing rows."""
    with ModelServer(right_when_a_is_odd, model_name="policy", delay=0.05) as server:
        plan, shards, proc = start_probe_until_shards(tmp_path, server.base_url, 3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        finished = len(list(shards.glob("shard-*.jsonl")))
        assert 3 <= finished < 10, "killed mid-run"
        assert not (shards.parent / "manifest.json").exists()
        sent_before = len(server.requests)
        result = run_cli("run", plan, "--only", "probe", cwd=tmp_path)
        assert result.exit_code == 0, result.output
        resent = len(server.requests) - sent_before
    assert resent <= 20 - 2 * finished, "finished shards are not generated again"
    rows = [json.loads(line) for line in (shards.parent / "samples.jsonl").read_text().splitlines()]
    keys = [(r["prompt_index"], r["sample_index"]) for r in rows]
    assert len(keys) == len(set(keys)) == 80
    assert json.loads((shards.parent / "metrics.json").read_text())["pass@1"] == pytest.approx(0.6)
    # the killed attempt's time counts: timed to the last shard it wrote
    killed, resumed = json.loads((shards.parent / "started.json").read_text())["attempts"]
    assert killed["ended"].startswith("killed") and killed["seconds"] > 0
    manifest = json.loads((shards.parent / "manifest.json").read_text())
    assert manifest["attempts"] == 2 and manifest["attempt_seconds"] == resumed["seconds"]
    assert manifest["seconds"] == pytest.approx(killed["seconds"] + resumed["seconds"], abs=1e-2)


def test_ctrl_c_stops_cleanly_and_the_rerun_resumes(tmp_path, right_when_a_is_odd):
    """SIGINT (Ctrl-C) mid-probe: exit 130 with a one-line message; finished shards are kept."""
    with ModelServer(right_when_a_is_odd, model_name="policy", delay=0.05) as server:
        plan, shards, proc = start_probe_until_shards(tmp_path, server.base_url, 2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "interrupted: finished shards are kept" in err and "Traceback" not in err
        kept = len(list(shards.glob("shard-*.jsonl")))
        assert kept >= 2
        result = run_cli("run", plan, "--only", "probe", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    rows = (shards.parent / "samples.jsonl").read_text().splitlines()
    assert len(rows) == 80
    interrupted, _ = json.loads((shards.parent / "started.json").read_text())["attempts"]
    assert interrupted["seconds"] > 0 and "ended" not in interrupted, "Ctrl-C records its own time"
    manifest = json.loads((shards.parent / "manifest.json").read_text())
    assert manifest["seconds"] > manifest["attempt_seconds"] and manifest["attempts"] == 2


def test_malformed_data_row_names_the_line(tmp_path):
    plan = make_plan(tmp_path, "http://127.0.0.1:9/v1")
    with open(tmp_path / "eval.jsonl", "a") as f:
        f.write('{"question": "What is 1+1?", "answer": \n')
    result = run_cli("run", plan, cwd=tmp_path)
    assert result.exit_code == 2
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: data.eval:") and "line 21: not valid JSON" in last
