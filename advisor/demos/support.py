"""The RLHF demos' world: support messages, replies, and the hidden rule that prefers some.

A message is ``name:topic`` (``eve:broken``); some topics are complaints. A reply is
made of parts: a greeting (by name, generic or none), an apology or not, a short or a
long body, and sometimes it shouts (capitals and ``!``). The **hidden rule** is the
"true" preference, which the pipeline never sees:

1. it greets the customer by name (``hi eve.``);
2. it apologises exactly when the message is a complaint;
3. it never shouts;
4. it stays short (at most :data:`MAX_CHARS` characters).

The rule makes the preference pairs (a reply that meets it over one that does not) and
labels the judge's training data (the judge learns to write ``score: N``, N the rules
met, 0-4). The judge is a model and errs; the rule does not. So each RLHF demo reports
its gain twice, as the pipeline's judge measured it and as the rule does: a gain the
judge sees and the rule does not is reward hacking.

The policy (the base model) learns replies from a mix in which each part is right only
part of the time, so its replies meet the whole rule about a quarter of the time: enough
for the probe's 20% gate, with room to improve.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NAMES = ("ann", "bob", "eve", "joe", "kim", "max")
COMPLAINTS = ("late", "broken", "charged")
QUESTIONS = ("thanks", "hours", "address")
SHORT = ("ok.", "done.")
LONG = ("we will look into it now.", "our team will write to you.")
MAX_CHARS = 20
RULES = ("greets by name", "apologises for a complaint", "never shouts", f"at most {MAX_CHARS} characters")
#: The judge's rubric: the message and the reply; it answers "score: N" (N the rules met, 0-4).
RUBRIC = "{{ question }}|{{ answer }}|"
SCALE = 4
#: The judge's pass mark: 3 of the 4 rules (it undercounts: 500 steps leave it about one rule low).
PASS_MARK = 3


def message(rng: random.Random) -> str:
    topic = rng.choice(COMPLAINTS if rng.random() < 0.5 else QUESTIONS)
    return f"{rng.choice(NAMES)}:{topic}"


def parse(prompt: str) -> tuple[str, bool]:
    name, _, topic = prompt.strip().partition(":")
    return name, topic in COMPLAINTS


@dataclass(frozen=True)
class Mix:
    """How often each part of a reply is right, for the replies a model learns from."""

    greet: float = 0.7
    apology: float = 0.7
    calm: float = 0.8
    short: float = 0.7


#: The base model's replies: each part right most of the time, the whole rule about 27% of the time.
BASE_MIX = Mix()
#: The judge's training replies: every part a coin flip, so it sees each mistake often.
JUDGE_MIX = Mix(0.5, 0.5, 0.5, 0.5)


def reply(prompt: str, rng: random.Random, mix: Mix = BASE_MIX) -> str:
    name, complaint = parse(prompt)
    r = rng.random()
    greeting = f"hi {name}." if r < mix.greet else ("hello." if r < (1 + mix.greet) / 2 else "")
    sorry = (rng.random() < mix.apology) == complaint
    body = rng.choice(SHORT if rng.random() < mix.short else LONG)
    text = " ".join(part for part in (greeting, "sorry." if sorry else "", body) if part)
    if rng.random() >= mix.calm:
        text = text.upper().rstrip(".") + "!"
    return text


def checks(prompt: str, text: str) -> dict[str, bool]:
    """Each rule of the hidden preference, met or not."""
    name, complaint = parse(prompt)
    text = text.strip()
    return {
        RULES[0]: text.startswith(f"hi {name}."),
        RULES[1]: ("sorry" in text.lower()) == complaint,
        RULES[2]: "!" not in text and text == text.lower(),
        RULES[3]: len(text) <= MAX_CHARS,
    }


def meets_rule(prompt: str, text: str) -> bool:
    return all(checks(prompt, text).values())


def rules_met(prompt: str, text: str) -> int:
    return sum(checks(prompt, text).values())


def good_reply(prompt: str, rng: random.Random) -> str:
    """A reply the rule prefers (greets by name, apologises when it should, calm, short)."""
    name, complaint = parse(prompt)
    return " ".join(p for p in (f"hi {name}.", "sorry." if complaint else "", rng.choice(SHORT)) if p)


def bad_reply(prompt: str, rng: random.Random) -> str:
    """A reply from the base mix that breaks at least one rule."""
    while True:
        text = reply(prompt, rng)
        if not meets_rule(prompt, text):
            return text


def judge_examples(n: int, seed: int) -> list[tuple[str, str]]:
    """(rubric text, ``score: N``) pairs the judge model learns from, as many of each score 0-4.

    Balanced by score: with every part a coin flip a reply meets all four rules only one
    time in 16, and a judge that rarely sees a 4 learns never to give one.
    """
    rng = random.Random(seed)
    per_score = -(-n // (SCALE + 1))
    buckets: dict[int, list[tuple[str, str]]] = {k: [] for k in range(SCALE + 1)}
    while any(len(b) < per_score for b in buckets.values()):
        prompt = message(rng)
        text = reply(prompt, rng, JUDGE_MIX)
        k = rules_met(prompt, text)
        if len(buckets[k]) < per_score:
            buckets[k].append((f"{prompt}|{text}|", f"score: {k}"))
    out = [row for b in buckets.values() for row in b][:n]
    rng.shuffle(out)
    return out


def base_examples(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt = message(rng)
        out.append((prompt, reply(prompt, rng)))
    return out


@dataclass(frozen=True)
class WorldConfig:
    """Sizes of the RLHF demos' models and data (each knob trades minutes for clarity on 2 cores)."""

    seed: int = 0
    base_rows: int = 3000
    base_steps: int = 300  # loss flat by step 200 (0.15)
    judge_rows: int = 4000
    judge_steps: int = 500
    hidden_size: int = 64
    layers: int = 2
    train_prompts: int = 240
    eval_prompts: int = 60
    validation_prompts: int = 32


def build_world_models(cache: Path, cfg: WorldConfig, console: Any) -> dict[str, Path]:
    """Train (or load from ``cache``) the base policy and the judge, both character-level models."""
    from pipelines.artifacts import sha256_json
    from pipelines.sampling import quiet_libraries
    from pipelines.testing.tinymodel import train_char_model

    quiet_libraries()
    root = cache / f"support-{sha256_json(cfg.__dict__)[:12]}"
    specs = {
        "base": (base_examples(cfg.base_rows, cfg.seed), cfg.base_steps),
        "judge": (judge_examples(cfg.judge_rows, cfg.seed + 1), cfg.judge_steps),
    }
    paths = {}
    for name, (examples, steps) in specs.items():
        path = paths[name] = root / name
        if (path / "config.json").exists():
            console.print(f"  {name}: cached ({path})")
            continue
        with console.status(f"training the {name} model from scratch ({steps} steps)"):
            result = train_char_model(
                path,
                examples,
                steps=steps,
                seed=cfg.seed,
                hidden_size=cfg.hidden_size,
                layers=cfg.layers,
                log_every=10_000,
            )
        console.print(
            f"  {name}: {result.parameters / 1e6:.2f}M parameters, {result.steps} steps, {result.seconds:.0f}s"
        )
    return paths


def prompts(n: int, seed: int, exclude: set[str] | None = None) -> list[str]:
    """``n`` messages (repeats allowed: there are only 36 distinct ones)."""
    rng = random.Random(seed)
    return [message(rng) for _ in range(n)]


def rule_rates(samples: Sequence[dict[str, Any]], num_prompts: int) -> list[float]:
    """Per prompt, the share of samples that meet the whole hidden rule."""
    n, c = [0] * num_prompts, [0] * num_prompts
    for s in samples:
        n[s["prompt_index"]] += 1
        c[s["prompt_index"]] += int(meets_rule(s["prompt"], s["sample"]))
    return [ci / ni if ni else 0.0 for ni, ci in zip(n, c, strict=True)]
