"""Choosing a training stage's checkpoint by task accuracy, and turning it into a plain model.

Loss can fall while quality falls, so every saved checkpoint is scored (greedy
pass@1 on a validation split, or a reward model's held-out pairwise accuracy) and
the best one becomes the stage's ``model/``: LoRA adapters merged, optimizer state
left out, the policy's tokenizer files copied unchanged.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

#: Evenly spaced checkpoints saved (and scored) per stage; the last step is always one.
CHECKPOINTS = 4
#: Files of a Trainer checkpoint that are training state, not the model.
TRAINING_STATE = ("optimizer.pt", "scheduler.pt", "trainer_state.json", "training_args.bin", "scaler.pt")
#: Tokenizer files: copied from a local policy unchanged (training does not change the tokenizer,
#: and re-saving through transformers 5 would rewrite it in a form older versions cannot read).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
)


def materialize(checkpoint: Path, out: Path, lora: bool, reward_model: bool, policy: str | None = None) -> Path:
    """A plain model folder from a checkpoint: LoRA adapters merged, training state left out.

    With ``policy`` (a local model folder) its tokenizer files replace the re-saved ones.
    """
    if out.exists():
        shutil.rmtree(out)
    if not lora:
        shutil.copytree(checkpoint, out, ignore=shutil.ignore_patterns(*TRAINING_STATE, "rng_state*"))
    else:
        _merge_adapter(checkpoint, out, reward_model)
    source = Path(policy) if policy else None
    if source is not None and (source / "tokenizer_config.json").exists():
        for name in TOKENIZER_FILES:
            (out / name).unlink(missing_ok=True)
            if (source / name).exists():
                shutil.copy2(source / name, out / name)
    return out


def _merge_adapter(checkpoint: Path, out: Path, reward_model: bool) -> None:
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    base_path = PeftConfig.from_pretrained(str(checkpoint)).base_model_name_or_path
    if reward_model:  # one score per sequence, as RewardTrainer built it
        base = AutoModelForSequenceClassification.from_pretrained(base_path, num_labels=1)
    else:
        base = AutoModelForCausalLM.from_pretrained(base_path)
    with warnings.catch_warnings():  # peft calls a transformers API that transformers 5 deprecates
        warnings.simplefilter("ignore", FutureWarning)
        merged = PeftModel.from_pretrained(base, str(checkpoint)).merge_and_unload()
    merged.save_pretrained(out)
    AutoTokenizer.from_pretrained(str(checkpoint)).save_pretrained(out)


def pass_rate(
    model: Path, prompts: list[Any], refs: list[Any], verifier: Any, max_new_tokens: int, batch_size: int
) -> float | None:
    """Greedy pass@1 over the gradable eval prompts (None when the verifier can grade none)."""
    return greedy_scores(model, prompts, refs, verifier, max_new_tokens, batch_size)["eval_pass@1"]


def greedy_scores(
    model: Path,
    prompts: list[Any],
    refs: list[Any],
    verifier: Any,
    max_new_tokens: int,
    batch_size: int,
    threads: int | None = None,
) -> dict[str, Any]:
    """``eval_pass@1`` (as :func:`pass_rate`) and the greedy outputs' diversity (``distinct``,
    ``distinct_2``, ``mean_length``: what the doctor reads to see repetition and length drift).
    ``threads`` (``compute.threads``) sizes torch and the verifier's workers."""
    from pipelines.doctor.history import diversity
    from pipelines.generation.hf import HFGenerator

    generator = HFGenerator(str(model), batch_size=batch_size, threads=threads)
    outputs = generator.generate(prompts, n=1, temperature=0.0, max_new_tokens=max_new_tokens, seed=0)
    del generator  # free the model before the next checkpoint loads
    _release_memory()
    texts = [o[0] for o in outputs]
    from pipelines.sampling import references_for

    verdicts = verifier.verify_batch(texts, references_for(verifier, prompts, refs), workers=threads)
    graded = [v for v in verdicts if v.gradable]
    rate = sum(v.passed for v in graded) / len(graded) if graded else None
    return {"eval_pass@1": rate, **{k: round(v, 4) for k, v in diversity([str(t) for t in texts]).items()}}


def _release_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def score_checkpoints(
    ctx: Any,
    job: dict[str, Any],
    result: dict[str, Any],
    prompts: list[Any],
    refs: list[Any],
    verifier: Any,
    max_new_tokens: int,
) -> list[dict[str, Any]]:
    """One row per checkpoint: its step and score (eval pass@1, or a reward model's pairwise accuracy)."""
    from pipelines.training.job import complete_checkpoints

    found = complete_checkpoints(Path(job["output_dir"]))
    if job["kind"] == "reward_model":
        accuracy = {e["step"]: e["eval_accuracy"] for e in result["log_history"] if "eval_accuracy" in e}
        return [{"step": s, "pairwise_accuracy": accuracy.get(s), "path": str(p)} for s, p in found]
    rows = []
    with ctx.progress("scoring checkpoints", total=len(found), unit="checkpoints") as advance:
        for step, folder in found:
            model = materialize(folder, ctx.dir / "eval-model", job["lora"], False) if job["lora"] else folder
            scores = (
                greedy_scores(
                    model,
                    prompts,
                    refs,
                    verifier,
                    max_new_tokens,
                    ctx.plan.compute.generation_batch_size,
                    threads=ctx.plan.compute.threads_per_process(),
                )
                if prompts
                else {"eval_pass@1": None}
            )
            rows.append({"step": step, **scores, "path": str(folder)})
            advance(1)
    shutil.rmtree(ctx.dir / "eval-model", ignore_errors=True)
    return rows


def choose(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The best-scoring checkpoint; ties (and no scores at all) go to the later one."""
    return max(rows, key=lambda r: (r[key] if r[key] is not None else -1.0, r["step"]))
