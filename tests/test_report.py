"""The run report: a fake run directory with crafted metrics for every stage kind.

No model runs here: each stage folder gets the ``metrics.json``, ``manifest.json`` and
sample files a real stage writes, so the report's route, numbers, plots and escaping
can be checked exactly. The slow test opens the HTML in headless Chromium.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import pytest

from advisor.plan import Plan, plan_to_dict
from advisor.planner import PlanAnswers, build_plan
from advisor.report import write_report

HOSTILE = '<script>alert("pwned")</script> | & <img src=x onerror=alert(1)>'
ALL_KINDS = [
    "probe",
    "synthesize",
    "rejection_sample",
    "sft",
    "psft",
    "dpo",
    "reward_model",
    "grpo",
    "rloo",
    "evaluate",
]


def make_plan(kinds: list[str]) -> Plan:
    """An RFT plan (250 rows, chain-of-thought helps) with the given stages."""
    data = plan_to_dict(build_plan(PlanAnswers(labeled_rows=250, verifiable=True, cot_helps="yes", name="gsm-mini")))
    data["stages"] = [{"kind": k} for k in kinds]
    return Plan.model_validate(data)


def write_stage(run: Path, name: str, metrics: dict, status: str = "done", stop: str | None = None, **files) -> None:
    folder = run / name
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    for filename, rows in files.items():
        (folder / filename.replace("_", ".")).write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest = {"stage": name, "kind": name.split("-", 1)[1], "status": status, "seconds": 1.5}
    manifest.update(summary=f"{name} summary", stop=stop)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def sample_rows(n_prompts: int, samples: int) -> list[dict]:
    """Prompt p is right on its first p samples; prompt 0 carries the hostile text."""
    rows = []
    for p in range(n_prompts):
        for s in range(samples):
            passed = s < p
            rows.append(
                {
                    "prompt_index": p,
                    "sample_index": s,
                    "prompt": HOSTILE if p == 0 else f"What is {p}+{p}?",
                    "sample": HOSTILE if p == 0 else f"answer {2 * p if passed else 0}",
                    "reference": str(2 * p),
                    "passed": passed,
                    "score": float(passed),
                    "reason": "correct" if passed else f"wrong: expected {2 * p}, got 0",
                    "extracted": "0",
                    "style": "cot",
                }
            )
    return rows


PROBE = {
    "prompts": 20,
    "graded_prompts": 20,
    "pass@1": 0.4125,
    "pass@1_ci95": [0.22, 0.63],
    "pass@k": {"1": 0.4125, "8": 0.95},
    "format_compliance": 0.9,
    "verdicts": {"correct": 66, "wrong": 94},
    "difficulty_histogram": [1, 2, 3, 4, 2, 3, 2, 1, 1, 1],
    "no_signal_share": 0.1,
    "gate": 0.2,
    "gate_passed": True,
}


def log_history(kind: str) -> list[dict]:
    rows = [{"step": s, "loss": 2.0 / s, "learning_rate": 1e-4} for s in range(1, 11)]
    if kind in ("grpo", "rloo"):
        for r in rows:
            r.update(reward=0.1 * r["step"], kl=0.01 * r["step"])
    rows.append({"step": 10, "eval_loss": 0.5})
    return rows


def full_run(tmp_path: Path) -> tuple[Plan, Path]:
    plan = make_plan(ALL_KINDS)
    run = tmp_path / "runs" / plan.name
    names = plan.stage_dirs()
    write_stage(run, names[0], PROBE, samples_jsonl=sample_rows(6, 4))
    # the brief's shape ("votes"/"passed") and synthesize's ("judges"/"pass" plus a verdict)
    pairs = [
        {
            "question": HOSTILE if i == 0 else f"q{i}",
            "answer": f"a{i}",
            "kept": i % 2 == 0,
            "votes": {"judge-a": {"passed": i % 2 == 0, "score": 8.0, "reason": f"reason a{i}"}},
        }
        for i in range(4)
    ]
    pairs += [
        {
            "prompt_index": i,
            "question": f"q{i}",
            "answer": f"a{i}",
            "kept": False,
            "judges": {"judge-b": {"pass": None, "score": None, "reason": f"unparseable reply {i}"}},
            "verdict": {"kept": False, "detail": "majority: 0 pass, 0 fail, 1 abstain"},
        }
        for i in range(4, 6)
    ]
    synth = {
        "prompts": 20,
        "candidates": 80,
        "kept": 30,
        "agreement": {
            "fleiss": 0.41,
            "reading": "moderate",
            "pairwise": {"judge-a|judge-b": 0.37},
            "warning": "judges disagree often",
        },
        "curation": [
            {"name": "dedupe", "rows_in": 40, "rows_out": 31},
            {"name": "length", "rows_in": 31, "rows_out": 30},
        ],
    }
    write_stage(run, names[1], synth, pairs_jsonl=pairs)
    rs = {"pass_rate": 0.35, "prompts": 20, "prompts_without_correct": 3, "distinct_correct_per_prompt": 2.5}
    rs.update({"yield": 0.3, "rows": 320, "pairs": 52})
    write_stage(run, names[2], rs, samples_jsonl=sample_rows(5, 3))
    for name, kind in zip(names[3:9], ALL_KINDS[3:9], strict=True):
        key = "pairwise_accuracy" if kind == "reward_model" else "eval_pass@1"
        checkpoints = [{"step": 5, key: 0.5}, {"step": 10, key: 0.55}]
        metrics = {"log_history": log_history(kind), "checkpoints": checkpoints, "chosen_checkpoint": 10}
        write_stage(run, name, {**metrics, "steps": 10, "train_seconds": 12.5})
    evaluate = {
        "before": {
            "pass@1": 0.4125,
            "pass@1_ci95": [0.22, 0.63],
            "difficulty_histogram": PROBE["difficulty_histogram"],
        },
        "after": {
            "pass@1": 0.6375,
            "pass@1_ci95": [0.43, 0.81],
            "difficulty_histogram": [0, 1, 1, 2, 2, 3, 3, 4, 2, 2],
        },
        "difference": {"mean": 0.225, "ci95": [0.11, 0.34]},
        "ood": {"before": {"pass@1": 0.3}, "after": {"pass@1": 0.32}},
        "control": {
            "label": "sft on gold\x1b",  # a control character must not break the SVG
            "after": {"pass@1": 0.5},
            "difference": {"mean": 0.1375, "ci95": [0.02, 0.25]},
        },
    }
    write_stage(run, names[9], evaluate)
    return plan, run


def text_of(html: str) -> str:
    """The page's text, tags removed: what a reader sees."""
    return unescape(re.sub(r"<[^>]+>", "", html))


def images(html: str) -> list[str]:
    return re.findall(r'<img src="(data:image/svg\+xml;base64,[^"]+)"', html)


def test_full_run_report_has_route_numbers_plots_and_samples(tmp_path):
    plan, run = full_run(tmp_path)
    html_path, md_path = write_report(plan, run)
    html, md = html_path.read_text(), md_path.read_text()
    for text in (text_of(html), md):
        assert "Route: rft" in text and "labeled_rows = 250" in text and "cot_helps = yes" in text
        assert "if cot_helps were 'no' the route would be sft" in text
        assert "41.2%" in text and "22.0%, 63.0%" in text and "95.0%" in text, "pass@1, its interval, pass@8"
        assert "63.7%" in text and "+22.5% (+11.0% to +34.0%)" in text, "after pass@1 and the difference with its CI"
        assert "out-of-distribution" in text and "+2.0%" in text and "control: sft on gold" in text
        assert "judges disagree often" in text and "judge-a vs judge-b" in text and "dedupe" in text
        assert "wrong: expected 2, got 0" in text, "a rejected sample shows the verifier's reason"
        assert "reason a1" in text, "a rejected pair shows the judge's reason"
        assert "majority: 0 pass, 0 fail, 1 abstain" in text and "judge-b: abstain" in text
        assert "train_seconds" in text and "12.5" in text, "training stage scalars"
    assert "| 10 | 55.0% | yes |" in md, "checkpoint table: step, eval pass@1, the chosen one"
    assert "| step | pairwise accuracy | chosen |" in md, "a reward model's checkpoints by pairwise accuracy"
    assert "difference +22.5% (95% CI +11.0% to +34.0%), the interval excludes 0" in html
    # 2 overview (pass@1, difficulty) + 4 loss-only stages x (loss, checkpoints) + grpo/rloo x (loss, reward, kl, ckpt)
    assert len(images(html)) == 2 + 4 * 2 + 2 * 4
    assert "<img" not in md, "the Markdown report has no plots"
    for uri in images(html):
        svg = base64.b64decode(uri.split(",", 1)[1]).decode()
        assert svg.startswith("<svg") and 'width="560"' in svg and "<script" not in svg


def test_hostile_sample_text_is_escaped(tmp_path):
    # the model wrote markup: it must show as text, never run or break the table
    plan, run = full_run(tmp_path)
    html_path, md_path = write_report(plan, run)
    html, md = html_path.read_text(), md_path.read_text()
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;" in html
    assert "<script" not in html.lower(), "the report itself has no script either"
    assert "<script>" not in md and "&lt;script&gt;alert" in md
    assert "\\| &amp;" in md, "a pipe in model text does not split the Markdown table"
    table_lines = [line for line in md.splitlines() if "&lt;script&gt;" in line and line.startswith("|")]
    pipes = {len(re.findall(r"(?<!\\)\|", line)) for line in table_lines}
    assert pipes == {4, 5}, "pairs (3 columns) and samples (4 columns) keep their column count"


def test_sample_tables_are_capped_and_prefer_distinct_prompts(tmp_path):
    plan = make_plan(["probe"])
    run = tmp_path / "run"
    write_stage(run, "01-probe", PROBE, samples_jsonl=sample_rows(30, 8))
    html = write_report(plan, run)[0].read_text()
    accepted = html.split("<h3>accepted samples</h3>")[1].split("</table>")[0]
    assert accepted.count("<tr>") == 1 + 10, "header + 10 rows"
    prompts = re.findall(r"What is (\d+)\+", accepted)
    assert len(set(prompts)) == 10, "one sample per prompt while prompts last"


def test_run_stopped_at_probe_gate_says_so(tmp_path):
    plan = make_plan(["probe", "rejection_sample", "sft", "evaluate"])
    run = tmp_path / "run"
    verdict = "probe: pass@1 = 5.0% (95% CI 1.0% to 20.0%) on 20 prompts is under the 20% gate for tiny."
    metrics = {**PROBE, "pass@1": 0.05, "pass@1_ci95": [0.01, 0.2], "gate_passed": False}
    write_stage(run, "01-probe", metrics, status="stopped_at_gate", stop=verdict, samples_jsonl=sample_rows(3, 2))
    html_path, md_path = write_report(plan, run)
    html, md = html_path.read_text(), md_path.read_text()
    for text in (text_of(html), md):
        assert "Stopped at the probe gate" in text and "under the 20% gate for tiny" in text
        assert "stopped at gate" in text and "02-rejection_sample (not run)" in text and "04-evaluate (not run)" in text
    # probe-only plots: pass@1 of the base model and the difficulty histogram
    assert len(images(html)) == 2 and "pass@1 of the base model" in html


def test_empty_run_dir_and_compare_probe(tmp_path):
    # nothing ran yet: the report still renders, and says what is missing
    plan = make_plan(["probe", "sft", "evaluate"])
    html_path, md_path = write_report(plan, tmp_path / "nothing")
    assert "Run incomplete: 0 of 3 stages finished" in md_path.read_text()
    assert len(images(html_path.read_text())) == 0
    # a provisional plan's probe compares direct and chain-of-thought prompting
    compare = {"direct": {"pass@1": 0.3, "pass@1_ci95": [0.2, 0.4]}, "cot": {"pass@1": 0.5, "pass@1_ci95": [0.4, 0.6]}}
    run = tmp_path / "run"
    write_stage(run, "01-probe", {**PROBE, "compare": compare, "settled_route": "rft"})
    html = write_report(plan, run)[0].read_text()
    assert "settled the route to rft" in html and "compare.cot.pass@1" in html and "50.0%" in html
    assert "not run" in html


def test_training_stage_with_nan_loss_and_no_checkpoints(tmp_path):
    # NaN losses are skipped in the curve (a diverged step must not break the report)
    plan = make_plan(["sft"])
    run = tmp_path / "run"
    history = [{"step": 1, "loss": 1.0}, {"step": 2, "loss": float("nan")}, {"step": 3, "loss": 0.5}]
    write_stage(run, "01-sft", {"log_history": history, "steps": 3, "chosen_checkpoint": "checkpoint-3"})
    html = write_report(plan, run)[0].read_text()
    assert len(images(html)) == 1 and "checkpoint-3" in html


def test_report_names_the_split_of_each_choice_and_a_resumed_stages_time(tmp_path):
    plan = make_plan(["probe", "sft"])
    run = tmp_path / "run"
    write_stage(run, "01-probe", {**PROBE, "split": "data.eval"})
    source = "data.train (held out: 14 of 71 rows, seed 0)"
    checkpoints = [{"step": 10, "eval_pass@1": 0.9}, {"step": 20, "eval_pass@1": 1.0}]
    sft = {"checkpoints": checkpoints, "chosen_checkpoint": 20, "checkpoint_eval": {"source": source, "prompts": 14}}
    write_stage(run, "02-sft", sft)
    manifest = run / "02-sft" / "manifest.json"
    manifest.write_text(
        json.dumps({**json.loads(manifest.read_text()), "seconds": 90.0, "attempts": 2, "attempt_seconds": 30.0})
    )
    md = write_report(plan, run)[1].read_text()
    assert f"checkpoint chosen on {source} (14 prompts" in md and "played no part in the choice" in md
    assert "the gate: decided on data.eval" in md
    assert "resumed: 90.0s over 2 attempts, the last 30.0s" in md, "a resumed stage's time counts every attempt"


def test_malformed_metrics_do_not_break_the_report(tmp_path):
    # a stage's files may be hand-edited or half-written: wrong types are skipped, not fatal
    plan = make_plan(["probe", "synthesize", "sft", "evaluate"])
    run = tmp_path / "run"
    write_stage(run, "01-probe", {"pass@1": "n/a", "pass@1_ci95": [0.1], "difficulty_histogram": [1, 2]})
    write_stage(run, "02-synthesize", {"agreement": [], "curation": "none"}, pairs_jsonl=[{"kept": True, "votes": 3}])
    write_stage(run, "03-sft", {"log_history": "x", "checkpoints": 5, "chosen_checkpoint": None})
    write_stage(run, "04-evaluate", {"before": 3, "after": {"pass@1": 0.5, "pass@1_ci95": "?"}, "ood": "x"})
    (run / "03-sft" / "metrics.json").write_text("{not json")
    html_path, md_path = write_report(plan, run)
    assert "after pass@1" in md_path.read_text() and "50.0%" in md_path.read_text()
    assert len(images(html_path.read_text())) == 1, "only the after bar has a number to draw"


def test_import_does_not_load_torch_or_a_plotting_library():
    code = "import sys, advisor.report; print(' '.join(m for m in ('torch', 'matplotlib') if m in sys.modules))"
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


# ---- headless Chromium: the page loads and every image decodes ----

CHECK = """
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const out = document.createElement("pre");
  out.id = "image-check";
  out.textContent = JSON.stringify({
    title: document.title,
    total: imgs.length,
    rendered: imgs.filter(i => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0).length,
  });
  document.body.appendChild(out);
});
"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if os.environ.get("CI"):
        pytest.fail("chromium not found: CI must install the Debian package 'chromium' for this test")
    pytest.skip("chromium not installed (apt-get install chromium)")


def image_check(browser: str, html: str, folder: Path) -> dict:
    """Open a copy of ``html`` in headless Chromium; return the title and image counts after load.

    The copy gets one script that counts decoded images. The report's CSP forbids scripts, so
    the copy allows exactly this one by its hash and keeps the rest of the policy (img-src data:).
    """
    digest = base64.b64encode(hashlib.sha256(CHECK.encode()).digest()).decode()
    assert "default-src 'none';" in html
    page = html.replace("default-src 'none';", f"default-src 'none'; script-src 'sha256-{digest}';")
    path = folder / "check.html"
    path.write_text(page.replace("</body>", f"<script>{CHECK}</script></body>"))
    args = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    args += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    args += [f"--user-data-dir={folder / 'profile'}", "--virtual-time-budget=5000", "--dump-dom", path.as_uri()]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    match = re.search(r'<pre id="image-check">(.*?)</pre>', result.stdout)
    assert match, f"the page did not finish loading:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return json.loads(unescape(match.group(1)))


@pytest.mark.slow
def test_report_loads_in_headless_chromium_and_every_image_renders(tmp_path):
    browser = chromium()
    plan, run = full_run(tmp_path)
    html = write_report(plan, run)[0].read_text()
    check = image_check(browser, html, tmp_path)
    assert check == {"title": "gsm-mini: run report", "total": 18, "rendered": 18}
    # the check can fail: a corrupt image is counted as not rendered
    broken = html.replace(images(html)[0], "data:image/svg+xml;base64," + base64.b64encode(b"<svg").decode())
    (tmp_path / "broken").mkdir()
    assert image_check(browser, broken, tmp_path / "broken")["rendered"] == 17
