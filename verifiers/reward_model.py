"""The ``reward_model`` verifier: a trained sequence classifier scores (prompt, reply).

A reward model (for example the ``model/`` the ``reward_model`` stage writes, trained by
TRL's ``RewardTrainer``) maps a prompt and a reply to one number. Raw reward-model
numbers have no fixed scale, so this verifier reads them against held-out scores:

- **threshold**: ``passed`` when the raw score is at or above it. By default it is the
  midpoint between the mean score of the held-out *chosen* and *rejected* replies (the
  ``heldout.jsonl`` pairs next to the stage's ``model/``), else 0.
- **normalisation**: ``Verdict.score`` is ``sigmoid((raw - threshold) / spread)`` in
  [0, 1], ``spread`` the standard deviation of the held-out scores (1 without them), so
  a reward of 0.5 sits at the threshold whatever the model's raw scale.

The raw number is kept in ``meta["raw"]``. Like the judge, it needs the prompt: the
reference is ``{"question": prompt}`` (or the prompt as a string), and ``as_reward``
reads TRL's ``prompts`` column. The text scored is ``prompt + reply + eos``, as
``RewardTrainer`` saw its pairs.

The constructor reads only the model's ``config.json``, so a plan is checked before
any compute: a folder that holds a causal LM instead of a sequence classifier is an
error. ``transformers`` loads on first use.

>>> RewardModelVerifier("no/such/folder")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: reward model folder not found: no/such/folder
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from verifiers.base import BatchedVerifier, Verdict, completion_text, failed, passed
from verifiers.judge import context_of, prompt_reward


def config_problem(model: str) -> str | None:
    """Why ``model`` is not a sequence-classification model folder, or None."""
    path = Path(model).expanduser()
    if not path.is_dir():
        return f"reward model folder not found: {model}"
    config_file = path / "config.json"
    if not config_file.exists():
        return f"reward model {model}: no config.json (not a transformers model folder)"
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as exc:
        return f"reward model {model}: config.json unreadable ({exc})"
    architectures = config.get("architectures") or []
    if not any(str(a).endswith("ForSequenceClassification") for a in architectures):
        found = ", ".join(architectures) or "none recorded"
        return (
            f"reward model {model} is not a sequence classifier (architectures: {found}); "
            "use a reward model, e.g. the reward_model stage's model/"
        )
    return None


class RewardModelVerifier(BatchedVerifier):
    """Score replies with a trained reward model (see the module docstring).

    Args:
        model: The reward model folder (``AutoModelForSequenceClassification``).
        threshold: Raw score at which a reply passes; default from the held-out pairs.
        heldout: Held-out pairs (JSONL with prompt, chosen, rejected) that set the threshold
            and the spread; default ``heldout.jsonl`` beside the model folder, if present.
        batch_size: Sequences per forward pass.
        max_length: Tokens kept per (prompt, reply), from the left.
    """

    name = "reward_model"
    needs_reference = False
    needs_prompt = True

    def __init__(
        self,
        model: str,
        threshold: float | None = None,
        heldout: str | None = None,
        batch_size: int = 16,
        max_length: int = 512,
    ):
        problem = config_problem(model)
        if problem:
            raise ValueError(problem)
        if heldout is not None and not Path(heldout).expanduser().exists():
            raise ValueError(f"heldout file not found: {heldout}")
        if batch_size < 1 or max_length < 1:
            raise ValueError("batch_size and max_length must be >= 1")
        self.model_path = str(Path(model).expanduser())
        beside = Path(self.model_path).parent / "heldout.jsonl"
        self.heldout = heldout if heldout is not None else (str(beside) if beside.exists() else None)
        self.batch_size, self.max_length = batch_size, max_length
        self._threshold = threshold
        self._spread = 1.0
        self._calibration: dict[str, Any] | None = None
        self._model: Any = None
        self._tokenizer: Any = None

    # ---- the model ----

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        model = AutoModelForSequenceClassification.from_pretrained(self.model_path, dtype=torch.float32)
        if model.config.pad_token_id is None:
            model.config.pad_token_id = self._tokenizer.pad_token_id or self._tokenizer.eos_token_id
        self._model = model.eval()
        self._calibrate()

    def raw_scores(self, prompts: Sequence[str], replies: Sequence[str]) -> list[float]:
        """The reward model's raw number for each (prompt, reply)."""
        import torch

        self._load()
        tok = self._tokenizer
        eos = tok.eos_token or ""
        texts = [p + r + (eos if not r.endswith(eos) else "") for p, r in zip(prompts, replies, strict=True)]
        out: list[float] = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = tok(
                    texts[start : start + self.batch_size],
                    return_tensors="pt",
                    padding=True,
                    padding_side="right",
                    truncation=True,
                    max_length=self.max_length,
                )
                out += self._model(**batch).logits[:, 0].float().tolist()
        return out

    def _calibrate(self) -> None:
        """Threshold and spread from the held-out pairs' scores (once, on first use)."""
        if self.heldout is None or self._calibration is not None:
            if self._threshold is None:
                self._threshold = 0.0
            return
        rows = [json.loads(line) for line in Path(self.heldout).read_text().splitlines() if line.strip()]
        rows = [r for r in rows if all(isinstance(r.get(k), str) for k in ("prompt", "chosen", "rejected"))]
        if not rows:
            self._threshold = 0.0 if self._threshold is None else self._threshold
            return
        self._calibration = {}  # set before scoring: raw_scores calls back here
        prompts = [r["prompt"] for r in rows]
        chosen = self.raw_scores(prompts, [r["chosen"] for r in rows])
        rejected = self.raw_scores(prompts, [r["rejected"] for r in rows])
        every = chosen + rejected
        mean = sum(every) / len(every)
        spread = math.sqrt(sum((x - mean) ** 2 for x in every) / len(every)) or 1.0
        mid = (sum(chosen) / len(chosen) + sum(rejected) / len(rejected)) / 2
        if self._threshold is None:
            self._threshold = mid
        self._spread = spread
        self._calibration = {
            "pairs": len(rows),
            "mean_chosen": sum(chosen) / len(chosen),
            "mean_rejected": sum(rejected) / len(rejected),
            "pairwise_accuracy": sum(c > r for c, r in zip(chosen, rejected, strict=True)) / len(rows),
            "threshold": self._threshold,
            "spread": spread,
        }

    @property
    def calibration(self) -> dict[str, Any]:
        """What the held-out pairs said (loads the model): threshold, spread, pairwise accuracy."""
        self._load()
        return dict(self._calibration or {"threshold": self._threshold, "spread": self._spread})

    # ---- the verifier API ----

    def verify(self, response: str, reference: Any = None) -> Verdict:
        return self.verify_batch([response], [reference])[0]

    def verify_batch(
        self, responses: Sequence[str], references: Sequence[Any], workers: int | None = None
    ) -> list[Verdict]:
        if len(responses) != len(references):
            raise ValueError(f"{len(responses)} responses but {len(references)} references")
        if not responses:
            return []
        prompts = [context_of(r)[0] for r in references]
        replies = [r if isinstance(r, str) else completion_text(r) for r in responses]
        raw = self.raw_scores(prompts, replies)
        threshold = float(self._threshold or 0.0)
        verdicts = []
        for x in raw:
            score = 1 / (1 + math.exp(-max(-60.0, min(60.0, (x - threshold) / self._spread))))
            detail = f"reward {x:.3f} {'>=' if x >= threshold else '<'} threshold {threshold:.3f}"
            if x >= threshold:
                verdicts.append(passed(detail, f"{x:.3f}", score=score, raw=x))
            else:
                verdicts.append(failed("fail", detail, f"{x:.3f}", score=score, raw=x))
        return verdicts

    def as_reward(self, reference_field: str = "reference", **kwargs: Any) -> Callable[..., list[float | None]]:
        """A TRL reward function: the normalised reward (0-1) of each (prompt, completion)."""
        return prompt_reward(self, None)
