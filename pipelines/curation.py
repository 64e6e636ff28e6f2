"""Dataset curation: the cleaning steps between generating data and training on it.

Used by ``synthesize`` and ``rejection_sample``. KNOWLEDGE.md section 3 in code: drop
duplicates, leaked secrets and personal e-mail addresses; keep one answer style; mix a little general data into
narrow RL prompt pools; and check that no eval item leaked into training.

Every step is a plain function ``step(rows, ...) -> (rows_out, StepLog)``. Rows are dicts
(JSONL rows); steps never modify them, they only choose which to keep and in what order.
The :class:`StepLog` records rows in and out, counts, a few examples and any warning, and
goes into the stage's ``metrics.json``. :func:`run_pipeline` chains steps::

    from functools import partial
    rows, logs = run_pipeline(rows, [
        partial(dedupe_exact, key="answer"),
        partial(dedupe_near, key="answer", threshold=0.8),
        partial(filter_length, key="answer", min_chars=1, max_chars=8000),
        partial(remove_sensitive, keys=None),
    ])

One function is a report, not a step: :func:`style_report` (is one answer style used?).
Contamination (which eval items overlap the training set) lives in
:mod:`pipelines.contamination`.

Near-duplicates are found exactly, not by sampling: word n-gram sets compared by Jaccard
similarity, with candidates from a prefix-filter index (a pair with Jaccard >= t must
share a token in the first ``|x| - ceil(t|x|) + 1`` tokens of each set, in a fixed
rare-first order). No MinHash, so no false negatives and no extra dependency.

>>> rows = [{"a": "The cat sat on the mat today."}, {"a": "the cat sat on the mat today"},
...         {"a": "A different answer entirely, nothing alike."}]
>>> kept, log = dedupe_near(rows, "a", threshold=0.8, ngram=3)
>>> len(kept), log.rows_in, log.rows_out
(2, 3, 2)
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

Row = dict[str, Any]
#: How many removed rows a StepLog lists as examples (counts are always complete).
MAX_EXAMPLES = 20
#: Below this share of the dominant answer style, style_report warns.
STYLE_UNIFORMITY = 0.9
#: The 5-10% rule for general data in an RL prompt pool.
GENERAL_SHARE_RANGE = (0.05, 0.10)


@dataclass
class StepLog:
    """What one curation step did.

    Attributes:
        name: The step (``dedupe_exact``, ``remove_sensitive``...).
        rows_in: Rows given to the step.
        rows_out: Rows it returned.
        details: Counts and up to :data:`MAX_EXAMPLES` examples (indices into the input).
        warnings: Sentences naming something probably wrong and its fix.
    """

    name: str
    rows_in: int
    rows_out: int
    details: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "details": self.details,
            "warnings": self.warnings,
        }


def _done(
    name: str, rows_in: int, rows: list[Row], details: dict[str, Any], warnings: Sequence[str] = ()
) -> tuple[list[Row], StepLog]:
    step = StepLog(name, rows_in, len(rows), details, list(warnings))
    log.info("%s: %d -> %d rows", name, rows_in, len(rows))
    for warning in step.warnings:
        log.warning("%s: %s", name, warning)
    return rows, step


def run_pipeline(
    rows: Sequence[Row], steps: Sequence[Callable[[list[Row]], tuple[list[Row], StepLog]]]
) -> tuple[list[Row], list[StepLog]]:
    """Apply curation steps in order; each step's log records rows in and out.

    Args:
        rows: The input rows.
        steps: Callables ``rows -> (rows, StepLog)``: the functions of this module with
            their options bound (``functools.partial``), or your own.

    Returns:
        The curated rows and one :class:`StepLog` per step.

    >>> from functools import partial
    >>> rows = [{"q": "a"}, {"q": "a"}, {"q": "bb"}]
    >>> out, logs = run_pipeline(rows, [partial(dedupe_exact, key="q"), partial(filter_length, key="q", min_chars=2)])
    >>> out, [(s.name, s.rows_in, s.rows_out) for s in logs]
    ([{'q': 'bb'}], [('dedupe_exact', 3, 2), ('filter_length', 2, 1)])
    """
    current = list(rows)
    logs = []
    for step in steps:
        current, step_log = step(current)
        logs.append(step_log)
    return current, logs


# --------------------------------------------------------------------------------------
# text helpers
# --------------------------------------------------------------------------------------


def text_of(value: Any) -> str:
    """A field as text: strings as they are, chat messages by content, else JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and "content" in value:
        return text_of(value["content"])
    if isinstance(value, (list, tuple)):
        return "\n".join(text_of(v) for v in value)
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _normalize(text: str) -> str:
    return " ".join(text.lower().split())


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    """Word n-grams of lower-cased text; a text shorter than ``n`` words is one n-gram.

    >>> sorted(ngrams("A b, c d", 3))
    [('a', 'b', 'c'), ('b', 'c', 'd')]
    """
    words = _tokens(text)
    if len(words) <= n:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: set, b: set) -> float:
    """|a & b| / |a | b|; 1.0 for two empty sets."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


# --------------------------------------------------------------------------------------
# duplicates, lengths, secrets
# --------------------------------------------------------------------------------------


def dedupe_exact(rows: Sequence[Row], key: str | Sequence[str]) -> tuple[list[Row], StepLog]:
    """Drop rows whose ``key`` text repeats an earlier row's, after case and whitespace folding.

    Args:
        rows: Input rows.
        key: A field, or several (``("question", "answer")``: a pair is a duplicate only
            when every field repeats).

    Returns:
        The first of each group of duplicates, in input order, and the log.
    """
    keys = [key] if isinstance(key, str) else list(key)
    seen: dict[tuple[str, ...], int] = {}
    kept, removed = [], []
    for i, row in enumerate(rows):
        sig = tuple(_normalize(text_of(row.get(k))) for k in keys)
        if sig in seen:
            removed.append({"index": i, "duplicate_of": seen[sig]})
        else:
            seen[sig] = i
            kept.append(row)
    return _done("dedupe_exact", len(rows), kept, {"removed": len(removed), "examples": removed[:MAX_EXAMPLES]})


def dedupe_near(rows: Sequence[Row], key: str, threshold: float = 0.8, ngram: int = 5) -> tuple[list[Row], StepLog]:
    """Drop rows whose word n-gram Jaccard similarity to a kept row is ``>= threshold``.

    Greedy in input order: each row is compared with the rows kept so far, so in a chain
    A ~ B ~ C where A and C are not alike, A and C are kept and B goes. Texts shorter than
    ``ngram`` words are one n-gram, so they match only when equal after folding. Exact:
    candidates come from a prefix-filter index (see the module docstring), then the real
    Jaccard decides.

    Args:
        rows: Input rows.
        key: The field to compare (usually the answer, or question + answer joined).
        threshold: Jaccard similarity in (0, 1] at which a row counts as a duplicate.
        ngram: Words per shingle; 5 suits paragraphs, 3 suits one-line answers.

    Returns:
        The kept rows, in input order, and the log (``examples`` name the kept row each
        removed row duplicated and their similarity).
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if ngram < 1:
        raise ValueError(f"ngram must be >= 1, got {ngram}")
    # An empty text gets a shingle no word can make, so empty texts duplicate each other.
    # Shingles become ranks in one global order, rarest first: prefixes of rare shingles
    # make short candidate lists, and sorting ints is cheap.
    ids: dict[tuple[str, ...], int] = {}
    sets = [{ids.setdefault(g, len(ids)) for g in ngrams(text_of(row.get(key)), ngram) or {("",)}} for row in rows]
    frequency = Counter(g for s in sets for g in s)
    rank = {g: r for r, g in enumerate(sorted(frequency, key=lambda g: (frequency[g], g)))}
    sets = [{rank[g] for g in s} for s in sets]
    ordered = [sorted(s) for s in sets]
    index: dict[int, list[int]] = defaultdict(list)
    kept_ids: list[int] = []
    removed = []
    for i, tokens in enumerate(ordered):
        prefix = len(tokens) - math.ceil(threshold * len(tokens) - 1e-9) + 1
        candidates = {j for g in tokens[:prefix] for j in index.get(g, ())}
        match = next(
            ((j, sim) for j in sorted(candidates) if (sim := jaccard(sets[i], sets[j])) >= threshold),
            None,
        )
        if match is not None:
            removed.append({"index": i, "duplicate_of": match[0], "similarity": round(match[1], 3)})
            continue
        kept_ids.append(i)
        for g in tokens[:prefix]:
            index[g].append(i)
    kept = [rows[i] for i in kept_ids]
    details = {"threshold": threshold, "ngram": ngram, "removed": len(removed), "examples": removed[:MAX_EXAMPLES]}
    return _done("dedupe_near", len(rows), kept, details)


def filter_length(
    rows: Sequence[Row], key: str, min_chars: int = 1, max_chars: int | None = None
) -> tuple[list[Row], StepLog]:
    """Keep rows whose ``key`` text has ``min_chars <= len <= max_chars`` characters.

    Surrounding whitespace does not count, so an all-blank answer is 0 characters long.

    Args:
        rows: Input rows.
        key: The field to measure.
        min_chars: Shortest allowed length (default 1: drops empty answers).
        max_chars: Longest allowed length; ``None`` for no limit. Answers cut off at the
            generation limit are the usual reason for one.
    """
    kept, short, long_ = [], [], []
    for i, row in enumerate(rows):
        n = len(text_of(row.get(key)).strip())
        if n < min_chars:
            short.append(i)
        elif max_chars is not None and n > max_chars:
            long_.append(i)
        else:
            kept.append(row)
    details = {
        "min_chars": min_chars,
        "max_chars": max_chars,
        "too_short": len(short),
        "too_long": len(long_),
        "examples": [{"index": i, "why": "too_short"} for i in short[:MAX_EXAMPLES]]
        + [{"index": i, "why": "too_long"} for i in long_[:MAX_EXAMPLES]],
    }
    return _done("filter_length", len(rows), kept, details)


#: (kind, pattern) pairs for remove_sensitive. Vendor formats are exact prefixes with
#: enough characters after them that prose does not match by accident.
SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("private_key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")),
    ("aws_access_key", re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b")),
    ("github_token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})\b")),
    ("openai_key", re.compile(r"\bsk-(?:proj-|svcacct-|admin-|ant-)?[A-Za-z0-9_-]{20,}")),
    ("slack_token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("google_api_key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("stripe_key", re.compile(r"\b[rs]k_live_[0-9A-Za-z]{16,}")),
    (
        "assigned_secret",
        re.compile(
            r"(?i)\b[\w.-]{0,40}?(?:api[_-]?key|secret(?:[_-]?access)?(?:[_-]?key)?|access[_-]?token|auth[_-]?token"
            r"|token|password|passwd|pwd)"
            r"[\"']?\s*[:=]\s*[\"']([^\"'\s]{8,})[\"']"
        ),
    ),
)
# Bounded parts and a look-behind keep the scan linear on long junk (no "@" anywhere).
EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]{1,64}@((?:[A-Za-z0-9-]{1,63}\.){1,8}[A-Za-z]{2,24})\b")
#: RFC 2606 / 6761 names that cannot be anyone's address; e-mails there are kept.
RESERVED_EMAIL_DOMAINS = ("example.com", "example.org", "example.net", "example", "test", "invalid", "localhost")
_PLACEHOLDER = re.compile(r"(?i)your|xxx|\.\.\.|<|\*\*\*|example|placeholder|changeme|dummy|redacted|\{|\$")


def _is_reserved(domain: str, reserved: Sequence[str]) -> bool:
    domain = domain.lower()
    return any(domain == r or domain.endswith("." + r) for r in reserved)


def find_sensitive(text: str, allowed_email_domains: Sequence[str] = RESERVED_EMAIL_DOMAINS) -> list[str]:
    """Kinds of secret or personal data found in ``text`` (empty when clean).

    Placeholders in generic assignments (``api_key = "YOUR_API_KEY"``) and e-mail
    addresses at reserved domains (``user@example.com``) do not count.

    >>> find_sensitive('key = "AKIAIOSFODNN7EXAMPLE"; mail bob@corp.io, not ann@example.com')
    ['aws_access_key', 'email']
    >>> find_sensitive('api_key = "YOUR_API_KEY"')
    []
    """
    kinds = []
    for kind, pattern in SECRET_PATTERNS:
        for match in pattern.finditer(text):
            if kind == "assigned_secret" and _PLACEHOLDER.search(match.group(1)):
                continue
            kinds.append(kind)
            break
    if any(not _is_reserved(m.group(1), allowed_email_domains) for m in EMAIL.finditer(text)):
        kinds.append("email")
    return kinds


def remove_sensitive(
    rows: Sequence[Row],
    keys: Sequence[str] | None = None,
    allowed_email_domains: Sequence[str] = RESERVED_EMAIL_DOMAINS,
) -> tuple[list[Row], StepLog]:
    """Drop rows that contain a secret (API keys, tokens, private keys) or an e-mail address.

    What it catches: AWS access key ids, GitHub, OpenAI/Anthropic-style ``sk-``, Slack,
    Google and Stripe live keys, PEM private key blocks, quoted values assigned to
    ``api_key``/``secret``/``token``/``password`` (8+ characters, not a placeholder),
    and e-mail addresses outside reserved example domains. What it misses: secrets with
    no recognisable shape (a bare random string), names, phone numbers, street
    addresses. The log names the kind and row, never the secret itself.

    Args:
        rows: Input rows.
        keys: Fields to scan; ``None`` scans every field.
        allowed_email_domains: Domains whose addresses are kept.
    """
    kept, removed = [], []
    kinds: Counter[str] = Counter()
    for i, row in enumerate(rows):
        fields = row.keys() if keys is None else keys
        found = sorted({k for f in fields for k in find_sensitive(text_of(row.get(f)), allowed_email_domains)})
        if found:
            kinds.update(found)
            removed.append({"index": i, "kinds": found})
        else:
            kept.append(row)
    details = {"removed": len(removed), "kinds": dict(kinds), "examples": removed[:MAX_EXAMPLES]}
    return _done("remove_sensitive", len(rows), kept, details)


# --------------------------------------------------------------------------------------
# answer style
# --------------------------------------------------------------------------------------

_SQL_START = re.compile(r"(?i)\s*(?:select|with)\b")  # a query, not prose that says "select"
# Each piece matches one way only (no operator inside a name), so a failed match is linear.
_SQL_NAME = r"[\w\"`\[\]']+"
_SQL_TERM = rf"(?:\w+\((?:[^()]|\([^()]*\))*\)|\*|{_SQL_NAME}(?:\.(?:{_SQL_NAME}|\*))*)"
_SQL_ITEM = rf"{_SQL_TERM}(?:\s*(?:[-+*/%]|\|\|)\s*{_SQL_TERM})*(?:\s+(?:as\s+)?[\w\"`]+)?"
# A select list of columns, expressions and aliases; "the largest number" is prose.
_SQL_COLUMNS = re.compile(rf"(?is){_SQL_ITEM}(?:\s*,\s*{_SQL_ITEM})*")
_SQL_SELECT = re.compile(r"(?is)\bselect\s+(distinct\s+)?(.+?)\s+from\b")
_FENCED = re.compile(r"^\s*```[\w-]*\s*\n(.*?)\n?```\s*$", re.S)
_BOXED_END = re.compile(r"\\boxed\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\}[\s.$)\]]*$")


def answer_style(answer: str) -> str:
    """The one style an answer is written in.

    ``json`` (the whole answer, or its only code fence, parses as a JSON object or
    array), ``sql_star`` / ``sql_columns`` (a query starting with ``SELECT``/``WITH``
    whose first select list is ``*`` or named columns), ``boxed`` (ends in ``\\boxed{...}``), ``tagged``
    (``<answer>...</answer>``), ``code`` (a code fence), else ``plain``.

    >>> [answer_style(a) for a in ('{"a": 1}', "SELECT * FROM t", "select id from t", "so \\\\boxed{4}.")]
    ['json', 'sql_star', 'sql_columns', 'boxed']
    """
    text = answer.strip()
    fenced = _FENCED.match(text)
    inner = fenced.group(1) if fenced else text
    try:
        if isinstance(json.loads(inner), (dict, list)):
            return "json"
    except ValueError:
        pass
    select = _SQL_SELECT.search(inner) if _SQL_START.match(inner) else None
    if select and _SQL_COLUMNS.fullmatch(select.group(2).strip()):
        return "sql_star" if select.group(2).strip() == "*" else "sql_columns"
    if _BOXED_END.search(text):
        return "boxed"
    if re.search(r"<answer>.*?</answer>", text, re.S):
        return "tagged"
    if "```" in text:
        return "code"
    return "plain"


def style_report(answers: Iterable[str], uniformity: float = STYLE_UNIFORMITY) -> dict[str, Any]:
    """How uniform the answers' style is: one style only, or the model learns to drift.

    Args:
        answers: Answer texts.
        uniformity: The share the dominant style must reach; below it, a warning.

    Returns:
        ``rows``; ``styles`` (count per :func:`answer_style`); ``shares`` of answers that
        parse as JSON, end in ``\\boxed{}``, use ``SELECT *``, select named columns, use
        ``<answer>`` tags, contain a code fence; ``dominant`` and ``dominant_share``;
        ``warning`` (a sentence, or ``None``). Mixed SQL styles always warn.

    >>> report = style_report(['{"a": 1}'] * 9 + ["a = 1"])
    >>> report["dominant"], report["dominant_share"], report["warning"] is None
    ('json', 0.9, True)
    """
    answers = [text_of(a) for a in answers]
    styles = Counter(answer_style(a) for a in answers)
    n = len(answers)
    share = {
        "json": styles["json"] / n if n else 0.0,
        "boxed": sum(bool(_BOXED_END.search(a.strip())) for a in answers) / n if n else 0.0,
        "sql_star": styles["sql_star"] / n if n else 0.0,
        "sql_columns": styles["sql_columns"] / n if n else 0.0,
        "answer_tags": sum("<answer>" in a for a in answers) / n if n else 0.0,
        "code_fence": sum("```" in a for a in answers) / n if n else 0.0,
    }
    dominant, count = styles.most_common(1)[0] if styles else (None, 0)
    dominant_share = round(count / n, 4) if n else 0.0
    warning = None
    if styles["sql_star"] and styles["sql_columns"]:
        warning = (
            f"SQL answers mix SELECT * ({styles['sql_star']}) and named columns ({styles['sql_columns']}): "
            "keep one style, preferably named columns"
        )
    elif n and dominant_share < uniformity:
        mix = ", ".join(f"{s} {c}" for s, c in styles.most_common())
        warning = (
            f"answers mix styles ({mix}); the dominant style '{dominant}' covers {dominant_share:.0%} < "
            f"{uniformity:.0%}: rewrite or drop the others so every answer has one format"
        )
    if warning:
        log.warning(warning)
    return {
        "rows": n,
        "styles": dict(styles),
        "shares": share,
        "dominant": dominant,
        "dominant_share": dominant_share,
        "warning": warning,
    }


# --------------------------------------------------------------------------------------
# general data
# --------------------------------------------------------------------------------------


def mix_general(
    rl_prompts: Sequence[Row], general_prompts: Sequence[Row], share: float = 0.05, seed: int = 0
) -> tuple[list[Row], StepLog]:
    """Mix general prompts into a narrow RL prompt pool, as ``share`` of the final pool.

    Training a small model on one narrow domain can damage its general ability; 5-10%
    general data in the pool (:data:`GENERAL_SHARE_RANGE`) guards against it.
    ``round(share * n / (1 - share))`` general prompts are drawn (seeded, without
    replacement) and inserted at random positions; the RL prompts keep their relative
    order, so a curriculum survives the mixing.

    Args:
        rl_prompts: The task's prompt rows.
        general_prompts: General-purpose prompt rows to draw from.
        share: The general share of the final pool, in [0, 1).
        seed: Makes the draw and the positions repeatable.

    Returns:
        The mixed pool and the log (``rows_in`` counts the RL prompts only). Too few
        general prompts, or a share outside 5-10%, is warned about.

    >>> pool, step = mix_general([{"q": i} for i in range(19)], [{"g": i} for i in range(5)], share=0.05)
    >>> len(pool), step.details["general"]
    (20, 1)
    """
    if not 0 <= share < 1:
        raise ValueError(f"share must be in [0, 1), got {share}")
    wanted = round(share * len(rl_prompts) / (1 - share))
    rng = random.Random(seed)
    general = rng.sample(list(general_prompts), min(wanted, len(general_prompts)))
    warnings = []
    if len(general) < wanted:
        warnings.append(
            f"wanted {wanted} general prompts for a {share:.0%} share but only {len(general_prompts)} given: "
            "add general prompts or lower the share"
        )
    low, high = GENERAL_SHARE_RANGE
    if rl_prompts and not low <= share <= high:
        warnings.append(f"general share {share:.0%} is outside the usual {low:.0%}-{high:.0%}")
    total = len(rl_prompts) + len(general)
    slots = set(rng.sample(range(total), len(general)))
    rl_iter, general_iter = iter(rl_prompts), iter(general)
    pool = [next(general_iter) if i in slots else next(rl_iter) for i in range(total)]
    details = {"rl": len(rl_prompts), "general": len(general), "share": len(general) / total if total else 0.0}
    return _done("mix_general", len(rl_prompts), pool, details, warnings)
