"""A teacher and a three-judge panel of memorized tiny models, shared by the synthesize and
judging tests (the ``memorized`` fixture trains each once per session).

The teacher answers four sums: right for 1+2 and 3+4, wrong for 5+6, right for 7+8 but
with a leaked API key; asked for a new question it always writes :data:`NEW`. The judges,
asked with :data:`RUBRIC`: ``judge-a`` passes everything, ``judge-b`` fails the wrong sum,
``judge-c`` never gives a label (an abstention).
"""

from __future__ import annotations

from pathlib import Path

from advisor.render import render
from pipelines.data import render_prompts
from pipelines.judging import judge_prompt, rubric_template

QUESTIONS = ["What is 1+2?", "What is 3+4?", "What is 5+6?", "What is 7+8?"]
GOLD = "What is 9+9?"  # a row with its own solution: no teacher needed
NEW = "What is 10+11?"
KEY = "sk-abcdefghijklmnopqrstuvwx"  # an OpenAI-style key: curation must drop the row
RUBRIC = "Q: {{ question }}\nA: {{ answer }}\nRight?"  # short: the tiny models see 512 positions
JUDGES = ("judge-a", "judge-b", "judge-c")


def operands(question: str) -> tuple[int, int]:
    a, b = question.removeprefix("What is ").removesuffix("?").split("+")
    return int(a), int(b)


def teacher_answer(question: str) -> str:
    a, b = operands(question)
    if (a, b) == (5, 6):
        return "5+6=12\n12"
    if (a, b) == (7, 8):
        return f"7+8=15 {KEY}\n15"
    return f"{a}+{b}={a + b}\n{a + b}"


def judge_vote(name: str, answer: str) -> str:
    if name == "judge-a":
        return "Yes."
    if name == "judge-b":
        return "No." if "12" in answer else "Yes."
    return "I cannot decide, sorry."


def solve_prompt(question: str) -> str:
    """The prompt a stage sends the teacher (the default chain-of-thought style, math)."""
    return render_prompts([{"question": question}], "question", "cot", "math", False)[0]


def judge_text(question: str, answer: str) -> str:
    return judge_prompt(rubric_template(RUBRIC), {"question": question, "answer": answer}, "math")[0]["content"]


def panel_models(memorized) -> dict[str, Path]:
    """``{"teacher": dir, "judge-a": dir, ...}``: the memorized teacher and judges."""
    asked = [*QUESTIONS, NEW]
    ask_new = render("synthesize_prompts.j2", examples=[*QUESTIONS, GOLD], task_kind="math")
    models = {
        "teacher": memorized("panel-teacher", [*((solve_prompt(q), teacher_answer(q)) for q in asked), (ask_new, NEW)])
    }
    for name in JUDGES:
        votes = [(judge_text(q, teacher_answer(q)), judge_vote(name, teacher_answer(q))) for q in asked]
        models[name] = memorized(f"panel-{name}", votes)
    return models
