"""The decision flowchart: which post-training route fits a task.

The graph is data. Nodes are questions; each edge carries a condition on the
answer, a target (another question or an outcome) and the rule that fired, as a
rationale. The questionnaire, ``advisor explain`` and the generated README all
render this one structure, so what the user reads is what the code decides.

The rules (Predibase, "How Reinforcement Learning Beats Supervised Fine-Tuning
When Data is Scarce", 2025; see KNOWLEDGE.md section 1)::

    labeled_rows == 0            verifiable -> rft, else no ground truth -> rlhf
    1 <= labeled_rows <= 99      rft
    100 <= labeled_rows <= 100k  cot_helps: yes -> rft, no -> sft, unknown -> rft (provisional)
    labeled_rows > 100k          sft
    rlhf                         preference_pairs: yes -> dpo, no -> reward model + online RL

>>> walk({"labeled_rows": 250, "verifiable": True, "cot_helps": "yes"}).route
'rft'
>>> walk({"labeled_rows": 250000}).route
'sft'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Above this many labeled rows, SFT wins: the model can fit the distribution.
MANY_ROWS = 100_000
#: Under this many labeled rows, SFT has too little to learn from: RFT.
FEW_ROWS = 100
#: Probe gate: fine-tuning only pays when at least this share of answers is right.
PROBE_GATE = 0.2
#: Under this many labeled rows, gold solutions are scarce and a teacher writes them
#: (KNOWLEDGE.md section 3: about 400 good examples per domain are often enough).
ENOUGH_GOLD_ROWS = 400

#: A provisional plan settles to rft when chain-of-thought prompting beats direct
#: prompting by at least this much pass@1 (absolute), else to sft.
COT_GAIN = 0.05

COT_CHOICES = ("yes", "no", "unknown")


@dataclass(frozen=True)
class Condition:
    """A test on one answer. ``lo``/``hi`` bound an integer; ``equals`` matches a value."""

    lo: int | None = None
    hi: int | None = None
    equals: Any = None
    label: str = ""

    def matches(self, value: Any) -> bool:
        if self.equals is not None:
            return value == self.equals
        if isinstance(value, bool) or not isinstance(value, int):
            return False
        return (self.lo is None or value >= self.lo) and (self.hi is None or value <= self.hi)

    def example(self) -> Any:
        """A representative answer that satisfies this condition (for "what if")."""
        if self.equals is not None:
            return self.equals
        return self.lo if self.lo is not None else 0

    def describe(self) -> str:
        if self.label:
            return self.label
        if self.equals is not None:
            return {True: "yes", False: "no"}.get(self.equals, str(self.equals))
        if self.lo is not None and self.hi is not None:
            return str(self.lo) if self.lo == self.hi else f"{self.lo} to {self.hi}"
        return f"more than {self.lo - 1}" if self.lo is not None else f"at most {self.hi}"


@dataclass(frozen=True)
class Edge:
    when: Condition
    to: str
    because: str


@dataclass(frozen=True)
class Question:
    key: str
    text: str
    help: str
    kind: str  # "int" | "bool" | "choice"
    edges: tuple[Edge, ...]
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """A leaf: the route and the final training stage(s) it implies."""

    key: str
    route: str  # sft | rft | rlhf
    final: tuple[str, ...]
    summary: str
    provisional: bool = False


def _is(value: Any) -> Condition:
    return Condition(equals=value)


QUESTIONS: dict[str, Question] = {
    "labeled_rows": Question(
        key="labeled_rows",
        text="How many labeled rows (prompt with a gold answer) do you have?",
        help="Count high-quality rows only. 0 is a valid answer.",
        kind="int",
        edges=(
            Edge(
                Condition(lo=0, hi=0, label="0"),
                "verifiable",
                "With no labeled data, only a verifier or preferences can supply a training signal.",
            ),
            Edge(
                Condition(lo=1, hi=FEW_ROWS - 1),
                "rft",
                f"Under {FEW_ROWS} rows SFT has too little to fit; sampling many reasoning paths "
                "and keeping the verified ones (RFT) learns from each prompt many times.",
            ),
            Edge(
                Condition(lo=FEW_ROWS, hi=MANY_ROWS),
                "cot_helps",
                f"Between {FEW_ROWS} and {MANY_ROWS} rows the choice turns on whether reasoning helps.",
            ),
            Edge(
                Condition(lo=MANY_ROWS + 1),
                "sft",
                f"With more than {MANY_ROWS} high-quality rows SFT is king: the model can fit the distribution.",
            ),
        ),
    ),
    "verifiable": Question(
        key="verifiable",
        text="Can code or rules judge an answer right or wrong (math engine, unit tests, schema, puzzle rules)?",
        help="yes: a verifier can grade answers; no: quality is a matter of preference (tone, safety, helpfulness).",
        kind="bool",
        edges=(
            Edge(
                _is(True),
                "rft",
                "A verifier can grade sampled answers, so RFT needs no labels: sample, verify, train on the correct ones.",
            ),
            Edge(
                _is(False),
                "preference_pairs",
                "No ground truth and no verifier: the signal must come from human or model preferences (RLHF).",
            ),
        ),
    ),
    "cot_helps": Question(
        key="cot_helps",
        text="Does chain-of-thought reasoning help the model on this task?",
        help="yes (math, code, planning), no (classification, extraction, format conversion), "
        "unknown (the probe measures direct vs chain-of-thought prompting and decides).",
        kind="choice",
        choices=COT_CHOICES,
        edges=(
            Edge(
                _is("yes"),
                "rft",
                "Reasoning helps and data is modest: RFT trains on verified reasoning paths, "
                "which teaches more than the gold answers alone.",
            ),
            Edge(
                _is("no"),
                "sft",
                "Reasoning does not help: SFT learns the mapping directly, even from a few hundred rows.",
            ),
            Edge(
                _is("unknown"),
                "rft_provisional",
                "Unknown whether reasoning helps: the plan is provisional; the probe compares "
                "direct and chain-of-thought prompting and settles sft or rft at run time.",
            ),
        ),
    ),
    "preference_pairs": Question(
        key="preference_pairs",
        text="Do you have preference pairs (a chosen and a rejected answer per prompt)?",
        help="yes: train on them directly with DPO; no: train a reward model, then online RL against it.",
        kind="bool",
        edges=(
            Edge(
                _is(True),
                "rlhf_dpo",
                "Preference pairs exist: DPO learns from them directly, with no reward model and no PPO.",
            ),
            Edge(
                _is(False),
                "rlhf_rm",
                "No pairs yet: collect rankings, train a reward model (TRL RewardTrainer), then "
                "online RL (GRPO or RLOO) with it as the reward. TRL 1.x removed PPOTrainer, so PPO is not offered.",
            ),
        ),
    ),
}

OUTCOMES: dict[str, Outcome] = {
    "rft": Outcome(
        "rft", "rft", ("rejection_sample", "sft"), "RFT: rejection-sample verified answers, then SFT on them."
    ),
    "rft_provisional": Outcome(
        "rft_provisional",
        "rft",
        ("rejection_sample", "sft"),
        "RFT, provisional: the probe's direct vs chain-of-thought comparison may switch it to SFT.",
        provisional=True,
    ),
    "sft": Outcome("sft", "sft", ("sft",), "SFT on the labeled data."),
    "rlhf_dpo": Outcome("rlhf_dpo", "rlhf", ("dpo",), "RLHF: DPO on preference pairs."),
    "rlhf_rm": Outcome(
        "rlhf_rm", "rlhf", ("reward_model", "grpo"), "RLHF: a reward model, then GRPO with it as the reward."
    ),
}

START = "labeled_rows"
#: Flowchart answers that must come from the user (no default).
FLOW_KEYS = tuple(QUESTIONS)


@dataclass(frozen=True)
class Step:
    question: str
    answer: Any
    because: str
    edge: Edge


@dataclass
class Path:
    """The walk through the graph for one set of answers."""

    steps: list[Step] = field(default_factory=list)
    outcome: Outcome | None = None
    missing: str | None = None  # the first question without an answer

    @property
    def route(self) -> str | None:
        return self.outcome.route if self.outcome else None

    @property
    def asked(self) -> list[str]:
        return [s.question for s in self.steps]


class FlowError(ValueError):
    pass


def next_edge(question: Question, answer: Any) -> Edge:
    for edge in question.edges:
        if edge.when.matches(answer):
            return edge
    raise FlowError(f"{question.key}: {answer!r} is not a valid answer")


def walk(answers: Mapping[str, Any]) -> Path:
    """Follow the graph from the start with ``answers``; stop at an outcome or a missing answer."""
    path = Path()
    node = START
    while node in QUESTIONS:
        question = QUESTIONS[node]
        if answers.get(node) is None:
            path.missing = node
            return path
        edge = next_edge(question, answers[node])
        path.steps.append(Step(node, answers[node], edge.because, edge))
        node = edge.to
    path.outcome = OUTCOMES[node]
    return path


@dataclass(frozen=True)
class Alternative:
    question: str
    answer: Any
    condition: str
    route: str | None
    outcome: str | None
    final: tuple[str, ...]


def alternatives(answers: Mapping[str, Any]) -> list[Alternative]:
    """For each answer on the path, the other answers and the route each would give.

    Answers further down are kept as given; a question the new branch reaches but
    the user never answered is reported as needing an answer (route ``None``).
    """
    out: list[Alternative] = []
    for step in walk(answers).steps:
        for edge in QUESTIONS[step.question].edges:
            if edge is step.edge:
                continue
            trial = dict(answers)
            trial[step.question] = edge.when.example()
            result = walk(trial)
            out.append(
                Alternative(
                    question=step.question,
                    answer=edge.when.example(),
                    condition=edge.when.describe(),
                    route=result.route,
                    outcome=result.outcome.key if result.outcome else None,
                    final=result.outcome.final if result.outcome else (),
                )
            )
    return out


def describe_alternative(alt: Alternative) -> str:
    what = {
        "labeled_rows": f"with {alt.condition} labeled rows",
        "verifiable": "if answers were verifiable" if alt.answer else "if answers were not verifiable",
        "cot_helps": f"if cot_helps were '{alt.answer}'",
        "preference_pairs": "with preference pairs" if alt.answer else "without preference pairs",
    }[alt.question]
    if alt.route is None:
        return f"{what} the route would depend on further answers"
    return f"{what} the route would be {alt.route} (final stage: {' + '.join(alt.final)})"


def mermaid(path: Path | None = None) -> str:
    """The whole graph as a Mermaid flowchart, with the taken path highlighted."""
    taken = {(s.question, s.edge.to) for s in path.steps} if path else set()
    lines = ["flowchart TD"]
    for q in QUESTIONS.values():
        lines.append(f'    {q.key}{{"{q.key}"}}')
    for o in OUTCOMES.values():
        lines.append(f'    {o.key}(["{o.route}: {" + ".join(o.final)}"])')
    link = 0
    highlighted = []
    for q in QUESTIONS.values():
        for e in q.edges:
            lines.append(f'    {q.key} -->|"{e.when.describe()}"| {e.to}')
            if (q.key, e.to) in taken:
                highlighted.append(str(link))
            link += 1
    if highlighted:
        lines.append(f"    linkStyle {','.join(highlighted)} stroke:#d33,stroke-width:3px")
    if path and path.outcome:
        lines.append(f"    style {path.outcome.key} fill:#fdd,stroke:#d33")
    return "\n".join(lines)
