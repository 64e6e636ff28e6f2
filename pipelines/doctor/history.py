"""Training histories, read from wherever they live, as one plain shape the rules read.

Three kinds of folder hold a history:

- an advisor stage folder (``runs/<plan>/04-sft/``): ``metrics.json`` with ``log_history``,
  the ``hyperparameters`` used and every checkpoint's score (and output diversity);
- an advisor run directory (``runs/<plan>/``): every stage folder above, plus the
  probe's ``pass@k`` as evidence for the reward rules;
- a plain TRL / transformers output directory: ``trainer_state.json``, or the latest
  ``checkpoint-N/trainer_state.json`` under it (hyperparameters unknown; the stage kind
  is read from the metrics logged).

Anything else (no history, truncated JSON, a log with no steps) raises
:class:`~advisor.errors.InputError`: one line, exit 2 at the CLI.

Also here: :func:`diversity`, the distinct-n statistics of a batch of completions that
training logs (``completions/distinct``, ``completions/distinct_2``) and that checkpoint
scoring records for each checkpoint's greedy outputs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advisor.errors import InputError


@dataclass
class History:
    """One training run's logs and what is known about how it was run."""

    stage: str  # the run folder name (``04-sft``) or the output folder's name
    kind: str  # sft, psft, dpo, grpo, rloo, reward_model
    rows: list[dict[str, Any]]  # training log rows (each with ``step``)
    source: Path
    hyper: dict[str, Any] = field(default_factory=dict)  # lr, beta, max_grad_norm, ... (empty when unknown)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)  # step, score, diversity per checkpoint
    score_key: str | None = None  # eval_pass@1 or pairwise_accuracy
    score_n: int | None = None  # prompts (or held-out pairs) behind each checkpoint score
    chosen: int | None = None  # the checkpoint the stage kept
    probe: dict[str, Any] | None = None  # the run's probe metrics (pass@1, pass@k), when known
    base_diversity: dict[str, float] = field(default_factory=dict)  # the base model's, from the probe's samples

    def series(self, key: str) -> list[tuple[float, float]]:
        """``(step, value)`` for every row that logged a finite ``key``."""
        out = []
        for row in self.rows:
            value, step = row.get(key), row.get("step")
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                out.append((float(step if isinstance(step, (int, float)) else len(out) + 1), float(value)))
        return out


# ---- distinct-n: how varied a batch of completions is ----


def _units(text: str) -> list[str]:
    """Words when the text has a few, else characters (short answers such as ``146``)."""
    words = text.split()
    return words if len(words) >= 4 else list(text)


def distinct_n(text: str, n: int = 2) -> float | None:
    """Unique n-grams over all n-grams of one text (1.0: no repetition); None if too short."""
    units = _units(text)
    grams = [tuple(units[i : i + n]) for i in range(len(units) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def diversity(texts: Sequence[str], prompts: Sequence[Any] | None = None) -> dict[str, float]:
    """``distinct``: unique completions over prompts (one per prompt); ``distinct_2``: the mean
    within-text distinct-2 (low: a text repeats itself); ``mean_length``: characters.

    >>> diversity(["12", "35", "12", "77"])["distinct"]
    0.75
    >>> round(diversity(["7777777", "146"])["distinct_2"], 3)
    0.583
    """
    if prompts is not None:  # one completion per prompt: a group of samples for one prompt may agree
        firsts: dict[str, str] = {}
        for prompt, text in zip(prompts, texts, strict=False):
            firsts.setdefault(json.dumps(prompt, default=str, sort_keys=True), text)
        texts = list(firsts.values())
    if not texts:
        return {}
    d2 = [d for d in (distinct_n(t) for t in texts) if d is not None]
    out = {"distinct": len(set(texts)) / len(texts), "mean_length": sum(len(t) for t in texts) / len(texts)}
    if d2:
        out["distinct_2"] = sum(d2) / len(d2)
    return out


# ---- reading folders ----


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputError(f"{path}: not valid JSON (truncated?): {exc}") from None


def _log_rows(log: Any, path: Path) -> list[dict[str, Any]]:
    """The training rows of a ``log_history`` (eval-only rows and the final summary row left out)."""
    if not isinstance(log, list):
        raise InputError(f"{path}: log_history is not a list")
    rows = [r for r in log if isinstance(r, dict) and not any(k.startswith("eval_") for k in r)]
    rows = [r for r in rows if "train_runtime" not in r]  # the Trainer's end-of-training summary
    if not rows:
        raise InputError(f"{path}: the log has no training steps (log_history is empty)")
    return rows


def guess_kind(rows: list[dict[str, Any]]) -> str:
    """The trainer behind a plain TRL log, from the metrics it logged."""
    keys = {k for r in rows for k in r}
    if "rewards/margins" in keys:
        return "dpo"
    if "reward" in keys or "completions/mean_length" in keys:
        return "grpo"
    if "margin" in keys and "accuracy" in keys:
        return "reward_model"
    return "sft"


def _eval_accuracy(log: list[Any]) -> dict[int, float]:
    return {r["step"]: r["eval_accuracy"] for r in log if isinstance(r, dict) and "eval_accuracy" in r}


def from_trainer_state(path: Path) -> History:
    """A plain TRL/transformers ``trainer_state.json``."""
    state = _read_json(path)
    if not isinstance(state, dict) or "log_history" not in state:
        raise InputError(f"{path}: no log_history (is this a trainer_state.json?)")
    rows = _log_rows(state["log_history"], path)
    folder = path.parent.parent if path.parent.name.startswith("checkpoint-") else path.parent
    history = History(stage=folder.name, kind=guess_kind(rows), rows=rows, source=path)
    accuracy = _eval_accuracy(state["log_history"])
    if accuracy:  # a reward model's held-out pairs, evaluated at each save
        history.checkpoints = [{"step": s, "pairwise_accuracy": a} for s, a in sorted(accuracy.items())]
        history.score_key = "pairwise_accuracy"
    return history


def from_stage_metrics(path: Path, run_dir: Path | None = None) -> History:
    """An advisor training stage's ``metrics.json`` (``run_dir``: where to find the probe's evidence)."""
    metrics = _read_json(path)
    if not isinstance(metrics, dict) or "log_history" not in metrics:
        raise InputError(f"{path}: no log_history (not a training stage's metrics)")
    return from_metrics(metrics, path.parent.name, path, run_dir)


def from_metrics(metrics: dict[str, Any], stage: str, source: Path, run_dir: Path | None = None) -> History:
    """A training stage's metrics (as ``pipelines.stages.train`` builds them) as a history."""
    rows = _log_rows(metrics["log_history"], source)
    checkpoints = [c for c in metrics.get("checkpoints") or [] if isinstance(c, dict)]
    key = next((k for k in ("eval_pass@1", "pairwise_accuracy") if any(k in c for c in checkpoints)), None)
    kind = metrics.get("kind") if isinstance(metrics.get("kind"), str) else guess_kind(rows)
    hyper = metrics.get("hyperparameters") if isinstance(metrics.get("hyperparameters"), dict) else {}
    chosen = metrics.get("chosen_checkpoint")
    evaluated = metrics.get("checkpoint_eval") if isinstance(metrics.get("checkpoint_eval"), dict) else {}
    n = evaluated.get("prompts") if key == "eval_pass@1" else metrics.get("heldout_pairs")
    return History(
        stage=stage,
        kind=kind,
        rows=rows,
        source=source,
        hyper=hyper,
        checkpoints=checkpoints,
        score_key=key,
        score_n=n if isinstance(n, int) and n > 0 else None,
        chosen=chosen if isinstance(chosen, int) else None,
        probe=_probe_metrics(run_dir) if run_dir else None,
        base_diversity=_probe_diversity(run_dir) if run_dir else {},
    )


def _probe_metrics(run_dir: Path) -> dict[str, Any] | None:
    for folder in sorted(run_dir.glob("*-probe")):
        if (folder / "metrics.json").exists():
            try:
                data = json.loads((folder / "metrics.json").read_text())
            except (OSError, ValueError):
                return None  # evidence only: a broken probe file does not stop the diagnosis
            return data if isinstance(data, dict) else None
    return None


def _probe_diversity(run_dir: Path) -> dict[str, float]:
    """The base model's output diversity: the probe's first sample for each prompt."""
    for folder in sorted(run_dir.glob("*-probe")):
        texts, prompts = [], []
        try:
            with open(folder / "samples.jsonl") as f:
                for line in f:
                    row = json.loads(line)
                    if isinstance(row, dict) and isinstance(row.get("sample"), str):
                        texts.append(row["sample"])
                        prompts.append(row.get("prompt_index", row.get("prompt")))
        except (OSError, ValueError):
            return {}  # evidence only
        return diversity(texts, prompts)
    return {}


def _has_log(path: Path) -> bool:
    try:
        return "log_history" in json.loads(path.read_text())
    except (OSError, ValueError, TypeError):
        return path.exists()  # unreadable: let the reader say why


def load_histories(path: Path) -> list[History]:
    """Every training history at ``path`` (a stage folder, a run directory, a TRL output dir, or a file).

    Raises:
        InputError: nothing there holds a training history, or its JSON is unreadable.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_file():
        if path.name == "trainer_state.json":
            return [from_trainer_state(path)]
        return [from_stage_metrics(path, path.parent.parent)]
    if (path / "metrics.json").exists() and _has_log(path / "metrics.json"):
        return [from_stage_metrics(path / "metrics.json", path.parent)]
    if (path / "trainer_state.json").exists():
        return [from_trainer_state(path / "trainer_state.json")]
    stages = sorted(p / "metrics.json" for p in path.iterdir() if p.is_dir() and _has_log(p / "metrics.json"))
    if stages:
        return [from_stage_metrics(p, path) for p in stages]
    states = _latest_states(path)
    if states:
        return [from_trainer_state(s) for s in states]
    raise InputError(
        f"{path}: no training history here (expected a stage's metrics.json with log_history, "
        "a run directory of stages, or a TRL output directory with trainer_state.json)"
    )


def _latest_states(path: Path) -> list[Path]:
    """The latest checkpoint's ``trainer_state.json`` under ``path`` or its ``checkpoints/``."""
    for folder in (path, path / "checkpoints"):
        found = []
        for state in folder.glob("checkpoint-*/trainer_state.json"):
            step = state.parent.name.split("-", 1)[1]
            if step.isdigit():
                found.append((int(step), state))
        if found:
            return [max(found)[1]]
    return []
