"""The questionnaire behind ``advisor plan``.

Each question can be answered four ways, in this order of precedence:
a command-line flag, ``--set key=value``, an ``--answers`` file, or an
interactive prompt (with choices, a default, and re-asking on invalid input).
With ``--no-input`` nothing is asked: a missing required answer is an error that
lists every missing key at once.

The flowchart questions come from ``advisor.flowchart.QUESTIONS`` and are asked
in the order the graph reaches them; the rest are listed in :data:`OTHER`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from advisor.errors import InputError
from advisor.flowchart import FEW_ROWS, MANY_ROWS, QUESTIONS, walk
from advisor.plan import TASK_KINDS
from advisor.planner import (
    DEFAULT_BASE,
    DEFAULT_JUDGES,
    DEFAULT_TEACHER,
    DEFAULT_VERIFIER,
    USUALLY_VERIFIABLE,
    PlanAnswers,
)


@dataclass(frozen=True)
class Ask:
    """One question: its key, text, type and default (a value or a function of earlier answers)."""

    key: str
    text: str
    kind: str  # int | bool | choice | str | list
    choices: tuple[str, ...] = ()
    default: Any = None
    help: str = ""

    def default_for(self, answers: Mapping[str, Any]) -> Any:
        return self.default(answers) if callable(self.default) else self.default


def _verifier_names() -> tuple[str, ...]:
    from verifiers.registry import names

    return tuple(names())


TASK_KIND = Ask(
    "task_kind",
    "What kind of task is it?",
    "choice",
    TASK_KINDS,
    "math",
    "math, code, structured (JSON/SQL), classification, open_ended (writing, chat), game24",
)

OTHER: tuple[Ask, ...] = (
    Ask("description", "Describe the task in a few words", "str", default="", help="shown in the plan and README"),
    Ask("base_model", "Base model to fine-tune (hub id or local path)", "str", default=DEFAULT_BASE),
    Ask("teacher_model", "Stronger teacher model that writes data", "str", default=DEFAULT_TEACHER),
    Ask(
        "judge_models",
        "Judge models, comma-separated (ideally three from different families)",
        "list",
        default=",".join(DEFAULT_JUDGES),
    ),
    Ask("train_data", "Training data (JSONL, Parquet, CSV or hub id)", "str", default="data/train.jsonl"),
    Ask("eval_data", "Held-out eval prompts (JSONL, Parquet, CSV or hub id)", "str", default="data/eval.jsonl"),
    Ask("prompt_field", "Field that holds the prompt", "str", default="question"),
    Ask("answer_field", "Field that holds the gold answer", "str", default="answer"),
    Ask(
        "verifier",
        "Verifier that judges answers",
        "choice",
        (),  # filled from the registry at ask time
        default=lambda a: DEFAULT_VERIFIER[a.get("task_kind") or "math"],
    ),
    Ask("gpus", "GPUs available (0 for CPU only)", "int", default=0),
    Ask(
        "backend",
        "Generation backend",
        "choice",
        ("hf", "vllm", "openai"),
        default=lambda a: "vllm" if (a.get("gpus") or 0) > 0 else "hf",
        help="hf: transformers; vllm: fast GPU sampling; openai: any OpenAI-compatible server",
    ),
    Ask("name", "Plan name", "str", default=lambda a: None, help="defaults to <task kind>-<route>"),
)


def flow_ask(key: str) -> Ask:
    q = QUESTIONS[key]
    if key == "verifiable":
        default: Any = lambda a: USUALLY_VERIFIABLE[a.get("task_kind") or "math"]  # noqa: E731
    elif key == "cot_helps":
        default = "unknown"
    elif key == "preference_pairs":
        default = False
    else:
        default = None
    return Ask(key, q.text, q.kind, q.choices, default, q.help)


ALL_KEYS = ("task_kind", *QUESTIONS, *(a.key for a in OTHER))


# ---- reading answers from files and --set ----


def read_answers_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: answers file not found") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark else ""
        raise InputError(f"{path}:{where} not valid YAML or JSON ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: answers must be a mapping of key: value, got {type(data).__name__}")
    return data


def parse_set(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set {item!r}: expected key=value")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def check_keys(answers: Mapping[str, Any], source: str) -> None:
    unknown = [k for k in answers if k not in ALL_KEYS]
    if unknown:
        raise InputError(
            "\n".join(f"{source}: {k}: unknown answer key (known: {', '.join(ALL_KEYS)})" for k in unknown),
            problems=[f"{source}: {k}: unknown answer key" for k in unknown],
        )


# ---- asking ----

Prompter = Callable[[Ask, Any], Any]


def click_prompter(question: Ask, default: Any) -> Any:
    """Ask on the terminal with click; click re-asks until the value parses."""
    import click

    text = question.text
    if question.kind == "int":
        return click.prompt(text, type=click.IntRange(min=0), default=default)
    if question.kind == "bool":
        shown = None if default is None else ("yes" if default else "no")
        return click.prompt(text, type=click.Choice(["yes", "no"]), default=shown) == "yes"
    if question.kind == "choice":
        choices = question.choices or _verifier_names()
        return click.prompt(text, type=click.Choice(list(choices)), default=default)
    value = click.prompt(text, default="" if default is None else str(default), show_default=default not in (None, ""))
    return value if value != "" else default


def required_missing(answers: Mapping[str, Any]) -> list[str]:
    """Every flowchart answer that is still needed, as far as the given answers tell."""
    missing = []
    if answers.get("labeled_rows") is None:
        missing.append("labeled_rows")
    if answers.get("verifiable") is None:
        missing.append("verifiable")
    rows = answers.get("labeled_rows")
    if answers.get("cot_helps") is None and (rows is None or (isinstance(rows, int) and FEW_ROWS <= rows <= MANY_ROWS)):
        missing.append(
            "cot_helps" if rows is not None else f"cot_helps (needed when labeled_rows is {FEW_ROWS} to {MANY_ROWS})"
        )
    return missing


def collect(given: Mapping[str, Any], interactive: bool, ask: Prompter = click_prompter) -> PlanAnswers:
    """Complete ``given`` by asking (or by defaults) and validate the result."""
    answers: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if interactive:
        if "task_kind" not in answers:
            answers["task_kind"] = ask(TASK_KIND, TASK_KIND.default)
        for key in ("labeled_rows", "verifiable"):
            if key not in answers:
                q = flow_ask(key)
                answers[key] = ask(q, q.default_for(answers))
        while True:
            try:
                path = walk(answers)
            except ValueError as exc:
                raise InputError(str(exc)) from None
            if not path.missing:
                break
            q = flow_ask(path.missing)
            answers[path.missing] = ask(q, q.default_for(answers))
        for q in OTHER:
            if q.key not in answers:
                value = ask(q, q.default_for(answers))
                if value is not None:
                    answers[q.key] = value
    else:
        missing = required_missing(answers)
        if missing:
            raise InputError(
                f"missing answers: {', '.join(missing)} (give them with --answers FILE, --set key=value or flags)"
            )
    try:
        return PlanAnswers.model_validate(answers)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in e["loc"]) or "answers"
            msg = e["msg"].removeprefix("Value error, ")
            got = f" (got {e['input']!r})" if e["type"] != "value_error" and "input" in e else ""
            problems.append(f"{loc}: {msg}{got}")
        raise InputError("\n".join(problems), problems=problems) from None
