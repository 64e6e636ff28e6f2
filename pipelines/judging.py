"""LLM judges: ask a panel to label (question, answer) pairs, keep the agreed ones.

A stronger model writes answers; several models then label each pair (does it follow
the instructions, is it correct), and only the pairs the panel agrees on are kept
(KNOWLEDGE.md section 3). This module is the labelling half of the ``synthesize`` stage:

1. :func:`judge_pairs` renders a rubric (``templates/judge_rubric.j2``, or the plan's own
   jinja2 text) for every pair and asks each judge once per pair, through any generation
   backend. Judges are asked for ``{"pass": bool, "score": 0-10, "reason": str}``.
2. :func:`parse_label` reads a reply robustly: a JSON object (bare, in a code fence, or
   inside prose), ``key: value`` lines, or a bare yes/no. A reply it cannot read is an
   **abstention** (``Label.passed is None``), never a fail: a judge that rambles must not
   sink a good pair.
3. :func:`verifier_label` turns a verifier's :class:`~verifiers.base.Verdict` into one
   more vote when the task is verifiable; :func:`aggregate` can *require* it.
4. :func:`aggregate` decides one pair: ``majority``, ``unanimous`` or ``mean_score``.
5. :func:`agreement_report` measures whether the panel's labels mean anything: pairwise
   Cohen's kappa and Fleiss' kappa with the Landis-Koch reading. Below "moderate"
   (0.41) the labels are close to noise, and a warning says so.

Ties and abstentions, in one place (every rule is applied after the veto below):

* ``require`` (e.g. ``("verifier",)``): a required voter that fails, abstains or is
  missing vetoes the pair, whatever the others say.
* Abstentions are left out of the tallies. Fewer than ``min_votes`` non-abstaining
  votes (default 1) rejects; in particular, all abstaining rejects. A label with a
  score but no pass/fail counts only for ``mean_score``.
* ``majority``: kept when passes > fails, strictly. A tie rejects.
* ``unanimous``: kept when no vote fails (and at least ``min_votes`` voted).
* ``mean_score``: kept when the mean score of the non-abstaining votes is
  ``>= threshold``; a vote with pass/fail but no score counts as 10 or 0, a verifier's
  0-1 score is scaled to 0-10.

A tiny panel, end to end:

>>> votes = {"a": parse_label('{"pass": true, "score": 9, "reason": "ok"}'),
...          "b": parse_label("```json\\n{\\"pass\\": false, \\"score\\": 3}\\n```"),
...          "c": parse_label("Yes."),
...          "d": parse_label("I am not sure what you want.")}
>>> [votes[k].passed for k in "abcd"]
[True, False, True, None]
>>> aggregate(votes).kept, aggregate(votes).detail
(True, 'majority: 2 pass, 1 fail, 1 abstain')
>>> aggregate(votes, method="unanimous").kept
False
>>> round(cohen_kappa([True, True, False, False], [True, False, False, False]), 3)
0.5
>>> landis_koch(0.5)
'moderate'
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipelines.labels import Label, parse_label

log = logging.getLogger(__name__)

#: The rubric template in ``templates/``; a plan may give its own jinja2 text instead.
JUDGE_RUBRIC = "judge_rubric.j2"
METHODS = ("majority", "unanimous", "mean_score")
#: Landis & Koch (1977): lower bound of each reading. Below MODERATE labels are noise.
LANDIS_KOCH = ((0.81, "almost perfect"), (0.61, "substantial"), (0.41, "moderate"), (0.21, "fair"), (0.0, "slight"))
MODERATE = 0.41
VERIFIER = "verifier"


@dataclass(frozen=True)
class Decision:
    """What :func:`aggregate` decided for one pair.

    Attributes:
        kept: Whether the pair passes.
        detail: One line saying why (``"majority: 2 pass, 1 fail, 1 abstain"``).
        passes: Non-abstaining pass votes.
        fails: Non-abstaining fail votes.
        abstentions: Votes without a pass/fail label.
        mean_score: Mean 0-10 score of the scored votes, or ``None``.
    """

    kept: bool
    detail: str
    passes: int
    fails: int
    abstentions: int
    mean_score: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kept": self.kept,
            "detail": self.detail,
            "passes": self.passes,
            "fails": self.fails,
            "abstentions": self.abstentions,
            "mean_score": self.mean_score,
        }


def rubric_template(rubric: str | None = None) -> Any:
    """The jinja2 rubric: the plan's own text when given, else ``templates/judge_rubric.j2``.

    Variables: ``question``, ``answer``, ``reference`` (``None`` when absent), ``task_kind``.
    """
    from advisor.render import environment

    env = environment()
    return env.from_string(rubric) if rubric is not None else env.get_template(JUDGE_RUBRIC)


def rubric_problem(rubric: str) -> str | None:
    """Why a plan's rubric text cannot be used, or ``None`` when it renders.

    Renders it once with sample values (with and without a reference), so a typo in a
    variable name is reported at ``advisor validate`` time, not after the teacher ran.

    >>> rubric_problem("Q: {{ question }} A: {{ answer }}") is None
    True
    >>> rubric_problem("Q: {{ questoin }}")
    "rubric does not render: 'questoin' is undefined"
    """
    import jinja2

    try:
        template = rubric_template(rubric)
        for reference in ("4", None):
            template.render(question="2+2?", answer="4", reference=reference, task_kind="math")
    except jinja2.TemplateError as err:
        return f"rubric does not render: {err}"
    return None


def judge_prompt(template: Any, pair: Mapping[str, Any], task_kind: str) -> list[dict[str, str]]:
    """One pair as a chat conversation for a judge: the rendered rubric as a user turn.

    A single user message (no system turn) works with every chat template, including
    those that reject a system role.
    """
    text = template.render(
        question=pair["question"], answer=pair["answer"], reference=pair.get("reference"), task_kind=task_kind
    )
    return [{"role": "user", "content": text.strip()}]


def judge_pairs(
    judges: Mapping[str, Any],
    pairs: Sequence[Mapping[str, Any]],
    rubric: str | None = None,
    task_kind: str = "open_ended",
    temperature: float = 0.0,
    max_new_tokens: int = 256,
    seed: int | None = 0,
) -> list[dict[str, Label]]:
    """Ask every judge about every pair; one ``generate`` call per judge.

    Args:
        judges: Name to generation backend (anything with ``Generator.generate``). The
            name ``"verifier"`` is reserved for :func:`verifier_label` votes.
        pairs: Dicts with ``question``, ``answer`` and optionally ``reference``.
        rubric: jinja2 text overriding ``templates/judge_rubric.j2``.
        task_kind: The plan's ``task.kind``; the default rubric adds criteria per kind.
        temperature: 0 (greedy) by default: a judge should not flip on a re-run.
        max_new_tokens: Room for the JSON and a short reason.
        seed: Passed to the backends.

    Returns:
        ``result[i][name]`` is judge ``name``'s label for ``pairs[i]``.

    Raises:
        ValueError: If a judge is named ``"verifier"``.
        pipelines.generation.GenerationError: If a judge's backend fails for good
            (bad key, unknown model); unreadable replies are abstentions, not errors.
    """
    if VERIFIER in judges:
        raise ValueError(f"judge name {VERIFIER!r} is reserved for the verifier's vote: rename the judge")
    template = rubric_template(rubric)
    prompts = [judge_prompt(template, pair, task_kind) for pair in pairs]
    results: list[dict[str, Label]] = [{} for _ in pairs]
    for name, generator in judges.items():
        replies = generator.generate(
            prompts, n=1, temperature=temperature, top_p=1.0, max_new_tokens=max_new_tokens, seed=seed
        )
        labels = [parse_label(r[0] if r else "") for r in replies]
        abstained = sum(label.passed is None for label in labels)
        if labels and abstained / len(labels) > 0.2:
            log.warning(
                "judge %s gave no readable pass/fail on %d of %d pairs: check its rubric (the plan's "
                "synthesize rubric) asks for the JSON reply, or raise max_new_tokens",
                name,
                abstained,
                len(labels),
            )
        for row, label in zip(results, labels, strict=True):
            row[name] = label
    return results


# --------------------------------------------------------------------------------------
# deciding one pair
# --------------------------------------------------------------------------------------


def _score_of(label: Label) -> float | None:
    if label.score is not None:
        return label.score
    if label.passed is None:
        return None
    return 10.0 if label.passed else 0.0


def aggregate(
    votes: Mapping[str, Label],
    method: str = "majority",
    threshold: float = 7.0,
    require: Sequence[str] = (),
    min_votes: int = 1,
) -> Decision:
    """Decide whether a pair passes the panel. The rules are in the module docstring.

    Args:
        votes: Judge name to label (the verifier's under ``"verifier"``).
        method: ``"majority"``, ``"unanimous"`` or ``"mean_score"``.
        threshold: The ``mean_score`` cut-off on the 0-10 scale (kept when ``>=``).
        require: Voters that must pass (e.g. ``("verifier",)``); a fail, an abstention
            or a missing vote from one of them vetoes the pair.
        min_votes: Non-abstaining votes (pass/fail, or scores for ``mean_score``) needed
            for any decision; fewer rejects.

    Returns:
        A :class:`Decision`.

    Raises:
        ValueError: If ``method`` is unknown.

    >>> v = {"a": Label(True, 8, "", ""), "b": Label(False, 6, "", ""), "verifier": Label(False, 0, "fail", "")}
    >>> aggregate(v, method="mean_score", threshold=4).kept
    True
    >>> aggregate(v, method="mean_score", threshold=4, require=("verifier",)).detail
    'vetoed: verifier fails (fail)'
    """
    if method not in METHODS:
        raise ValueError(f"unknown aggregation method {method!r}: choose one of {', '.join(METHODS)}")
    passes = sum(v.passed is True for v in votes.values())
    fails = sum(v.passed is False for v in votes.values())
    abstentions = sum(v.passed is None for v in votes.values())
    scores = [s for s in (_score_of(v) for v in votes.values()) if s is not None]
    mean = sum(scores) / len(scores) if scores else None

    def decide(kept: bool, detail: str) -> Decision:
        return Decision(kept, detail, passes, fails, abstentions, mean)

    for name in require:
        vote = votes.get(name)
        if vote is None:
            return decide(False, f"vetoed: required {name} vote is missing")
        if vote.passed is None:
            return decide(False, f"vetoed: {name} abstains ({vote.reason})")
        if vote.passed is False:
            return decide(False, f"vetoed: {name} fails ({vote.reason})")
    counts = f"{passes} pass, {fails} fail, {abstentions} abstain"
    if method == "mean_score":
        if len(scores) < max(1, min_votes):
            return decide(False, f"mean_score: {len(scores)} scored votes, need {max(1, min_votes)}")
        return decide(mean >= threshold, f"mean_score: {mean:.2f} {'>=' if mean >= threshold else '<'} {threshold:g}")
    if passes + fails < max(1, min_votes):
        return decide(False, f"{method}: {counts}, need {max(1, min_votes)} votes")
    if method == "majority":
        return decide(passes > fails, f"majority: {counts}" + (" (tie rejects)" if passes == fails else ""))
    return decide(fails == 0, f"unanimous: {counts}")


def provenance(votes: Mapping[str, Label], decision: Decision) -> dict[str, Any]:
    """Every vote and the decision, as the ``judges`` / ``verdict`` fields of an output row.

    >>> provenance({"a": Label(True, 9.0, "ok", "{...}")}, aggregate({"a": Label(True, 9.0, "ok", "")}))["judges"]
    {'a': {'pass': True, 'score': 9.0, 'reason': 'ok'}}
    """
    return {
        "judges": {name: {"pass": v.passed, "score": v.score, "reason": v.reason} for name, v in votes.items()},
        "verdict": decision.to_dict(),
    }


# --------------------------------------------------------------------------------------
# agreement
# --------------------------------------------------------------------------------------


def landis_koch(kappa: float | None) -> str:
    """The Landis & Koch (1977) reading of a kappa value.

    ``poor`` < 0 <= ``slight`` < 0.21 <= ``fair`` < 0.41 <= ``moderate`` < 0.61 <=
    ``substantial`` < 0.81 <= ``almost perfect``; ``undefined`` for ``None``.

    >>> [landis_koch(k) for k in (-0.1, 0.1, 0.3, 0.41, 0.7, 0.9, None)]
    ['poor', 'slight', 'fair', 'moderate', 'substantial', 'almost perfect', 'undefined']
    """
    if kappa is None:
        return "undefined"
    for lower, reading in LANDIS_KOCH:
        if kappa >= lower:
            return reading
    return "poor"


def cohen_kappa(a: Sequence[Hashable | None], b: Sequence[Hashable | None]) -> float | None:
    """Cohen's kappa of two raters over the items both labelled (``None`` = abstained).

    kappa = (p_o - p_e) / (1 - p_e), with p_o the observed agreement and p_e the chance
    agreement from each rater's own label frequencies. Labels may be any hashable values
    (booleans for pass/fail).

    Returns:
        Kappa, or ``None`` when undefined: no item labelled by both, or p_e = 1 (both
        raters gave one and the same label to every item, so agreement cannot be told
        from chance).

    Raises:
        ValueError: If the sequences differ in length.

    >>> cohen_kappa([True] * 3, [True] * 3) is None
    True
    """
    if len(a) != len(b):
        raise ValueError(f"raters labelled {len(a)} and {len(b)} items: they must label the same items")
    both = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    n = len(both)
    if n == 0:
        return None
    observed = sum(x == y for x, y in both) / n
    count_a = Counter(x for x, _ in both)
    count_b = Counter(y for _, y in both)
    expected = sum(count_a[k] * count_b[k] for k in count_a) / (n * n)
    if math.isclose(expected, 1.0):
        return None
    return (observed - expected) / (1 - expected)


def fleiss_kappa(ratings: Sequence[Sequence[Hashable | None]]) -> float | None:
    """Fleiss' kappa for a panel; ``ratings[i]`` holds every rater's label for item i.

    ``None`` entries are abstentions and are dropped, so items may carry different
    numbers of ratings. Items with fewer than two ratings are left out. Each item's
    agreement P_i = sum_j n_ij (n_ij - 1) / (n_i (n_i - 1)) weighs equally; the chance
    agreement P_e = sum_j p_j^2 uses the label shares p_j over all ratings kept. With
    the same number of raters on every item this is exactly Fleiss (1971).

    Returns:
        Kappa, or ``None`` when undefined (no item with two ratings, or P_e = 1:
        every rating was the same label).
    """
    items = [[r for r in row if r is not None] for row in ratings]
    items = [row for row in items if len(row) >= 2]
    if not items:
        return None
    totals: Counter[Hashable] = Counter()
    agreement = 0.0
    for row in items:
        counts = Counter(row)
        totals.update(counts)
        k = len(row)
        agreement += sum(c * (c - 1) for c in counts.values()) / (k * (k - 1))
    observed = agreement / len(items)
    n_ratings = sum(totals.values())
    expected = sum((c / n_ratings) ** 2 for c in totals.values())
    if math.isclose(expected, 1.0):
        return None
    return (observed - expected) / (1 - expected)


def agreement_report(votes_per_pair: Sequence[Mapping[str, Label]]) -> dict[str, Any]:
    """How far the panel agrees on pass/fail, and whether its labels can be trusted.

    Args:
        votes_per_pair: One ``{judge name: Label}`` per pair (:func:`judge_pairs` output,
            with the verifier's vote added when there is one).

    Returns:
        ``raters``; per rater ``pass_rate`` and ``abstain_rate``; ``pairwise`` (for each
        pair of raters ``"a|b"``: ``kappa``, ``reading``, ``items`` labelled by both);
        ``fleiss`` (``kappa``, ``reading``, ``items`` with two or more ratings);
        ``warning``: a sentence when Fleiss' kappa is below moderate (0.41), else
        ``None``; ``note``: a sentence when kappa is undefined, else ``None``.

    >>> t, f = Label(True, None, "", ""), Label(False, None, "", "")
    >>> report = agreement_report([{"a": t, "b": t}, {"a": f, "b": f}, {"a": t, "b": f}])
    >>> report["fleiss"]["reading"], report["warning"] is None
    ('fair', False)
    """
    raters: list[str] = []
    for votes in votes_per_pair:
        raters += [name for name in votes if name not in raters]
    column = {r: [v[r].passed if r in v else None for v in votes_per_pair] for r in raters}
    per_rater = {}
    for r in raters:
        labelled = [x for x in column[r] if x is not None]
        per_rater[r] = {
            "pass_rate": sum(labelled) / len(labelled) if labelled else None,
            "abstain_rate": 1 - len(labelled) / len(column[r]) if column[r] else None,
        }
    pairwise = {}
    for i, a in enumerate(raters):
        for b in raters[i + 1 :]:
            kappa = cohen_kappa(column[a], column[b])
            both = sum(x is not None and y is not None for x, y in zip(column[a], column[b], strict=True))
            pairwise[f"{a}|{b}"] = {"kappa": kappa, "reading": landis_koch(kappa), "items": both}
    matrix = [[column[r][i] for r in raters] for i in range(len(votes_per_pair))]
    fleiss = fleiss_kappa(matrix)
    rated = sum(sum(x is not None for x in row) >= 2 for row in matrix)
    warning = note = None
    if len(raters) < 2:
        note = "agreement needs at least two judges (or a judge and the verifier)"
    elif fleiss is None:
        note = (
            "kappa undefined: no pair had two readable votes, or every vote was the same label; agreement "
            "cannot be told from chance (check the rubric is not so lenient or strict that it says one thing)"
        )
    elif fleiss < MODERATE:
        warning = (
            f"judge agreement is only {landis_koch(fleiss)} (Fleiss' kappa {fleiss:.2f} < {MODERATE}): their labels "
            "are close to noise; sharpen the synthesize rubric, use stronger judges, or review a sample by hand"
        )
        log.warning(warning)
    return {
        "raters": raters,
        "per_rater": per_rater,
        "pairwise": pairwise,
        "fleiss": {"kappa": fleiss, "reading": landis_koch(fleiss), "items": rated},
        "warning": warning,
        "note": note,
    }
