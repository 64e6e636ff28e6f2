"""Train/eval contamination: which eval items overlap the training set, and removing them.

An eval item is contaminated when a large share of its word n-grams (default 8-grams,
or the whole item when shorter) appears in the training texts. :func:`contamination`
reports; :func:`decontaminate` is the curation step that drops the overlapping
training rows (``step(rows, ...) -> (rows_out, StepLog)`` like the others).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from pipelines.curation import MAX_EXAMPLES, Row, StepLog, _done, _tokens, text_of

log = logging.getLogger(__name__)


def _overlap(eval_text: str, train_grams: Callable[[int], set], ngram: int) -> float:
    words = _tokens(eval_text)
    if not words:
        return 0.0
    n = min(ngram, len(words))
    grams = {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}
    index = train_grams(n)
    return sum(g in index for g in grams) / len(grams)


def _train_index(texts: Sequence[str]) -> Callable[[int], set]:
    """n -> set of all word n-grams in the training texts, built once per n."""
    words = [_tokens(t) for t in texts]
    cache: dict[int, set] = {}

    def grams(n: int) -> set:
        if n not in cache:
            cache[n] = {tuple(w[i : i + n]) for w in words for i in range(len(w) - n + 1)}
        return cache[n]

    return grams


def contamination_report(
    train_rows: Sequence[Row],
    eval_rows: Sequence[Row],
    key_train: str | Sequence[str],
    key_eval: str | Sequence[str],
    ngram: int = 8,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """Which eval items overlap the training data (word n-gram overlap).

    An eval item's overlap is the share of its word n-grams that occur anywhere in the
    training texts; it is contaminated when the overlap is ``>= threshold``. Eval items
    shorter than ``ngram`` words are checked with n-grams of their own length (so a short
    item counts only if it occurs verbatim, after case and punctuation folding).

    Args:
        train_rows: Training rows.
        eval_rows: Evaluation rows.
        key_train: Training field(s) to search (e.g. ``("question", "answer")``).
        key_eval: Eval field(s) whose text is checked (usually the question).
        ngram: Words per n-gram; 8 to 13 is usual.
        threshold: Overlap share that flags an item.

    Returns:
        ``eval_items``, ``contaminated`` (count), ``share``, ``items`` (every flagged
        item: ``index``, ``overlap``, the first 200 characters of its ``text``), and
        ``warning`` (a sentence, or ``None``).

    >>> train = [{"q": "What is the capital of France? Paris is the capital."}]
    >>> evals = [{"q": "what is the capital of France"}, {"q": "How many legs does a spider have?"}]
    >>> report = contamination_report(train, evals, "q", "q", ngram=4)
    >>> report["contaminated"], [item["index"] for item in report["items"]]
    (1, [0])
    """
    keys_t = [key_train] if isinstance(key_train, str) else list(key_train)
    keys_e = [key_eval] if isinstance(key_eval, str) else list(key_eval)
    index = _train_index(["\n".join(text_of(r.get(k)) for k in keys_t) for r in train_rows])
    items = []
    for i, row in enumerate(eval_rows):
        text = "\n".join(text_of(row.get(k)) for k in keys_e)
        overlap = _overlap(text, index, ngram)
        if overlap >= threshold and overlap > 0:
            items.append({"index": i, "overlap": round(overlap, 3), "text": text[:200]})
    share = len(items) / len(eval_rows) if eval_rows else 0.0
    warning = None
    if items:
        warning = (
            f"{len(items)} of {len(eval_rows)} eval items overlap the training data (>= {threshold:.0%} of their "
            f"{ngram}-grams): eval scores overstate; drop them from training (decontaminate) or from eval"
        )
        log.warning(warning)
    return {
        "ngram": ngram,
        "threshold": threshold,
        "eval_items": len(eval_rows),
        "contaminated": len(items),
        "share": share,
        "items": items,
        "warning": warning,
    }


def decontaminate(
    rows: Sequence[Row],
    eval_rows: Sequence[Row],
    key: str | Sequence[str],
    key_eval: str | Sequence[str],
    ngram: int = 8,
    threshold: float = 0.5,
) -> tuple[list[Row], StepLog]:
    """Drop training rows that contain an eval item (the step form of :func:`contamination`).

    A training row goes when some eval item has ``>= threshold`` of its n-grams in that
    row. One pass over the training rows against an inverted index of eval n-grams.

    >>> train = [{"t": "the quick brown fox jumps over the lazy dog"}, {"t": "unrelated text"}]
    >>> kept, step = decontaminate(train, [{"q": "Quick brown fox jumps over the lazy dog?"}], "t", "q", ngram=4)
    >>> kept, step.details["removed"]
    ([{'t': 'unrelated text'}], 1)
    """
    keys_t = [key] if isinstance(key, str) else list(key)
    keys_e = [key_eval] if isinstance(key_eval, str) else list(key_eval)
    # Inverted index: eval n-gram -> eval items holding it, per n-gram size in use.
    index: dict[int, dict[tuple[str, ...], list[int]]] = defaultdict(lambda: defaultdict(list))
    sizes = []
    for j, row in enumerate(eval_rows):
        words = _tokens("\n".join(text_of(row.get(k)) for k in keys_e))
        n = min(ngram, len(words))
        grams = {tuple(words[i : i + n]) for i in range(len(words) - n + 1)} if words else set()
        sizes.append(len(grams))
        for g in grams:
            index[n][g].append(j)
    kept, removed = [], []
    for i, row in enumerate(rows):
        words = _tokens("\n".join(text_of(row.get(k)) for k in keys_t))
        hits: Counter[int] = Counter()
        for n, by_gram in index.items():
            for g in {tuple(words[k : k + n]) for k in range(len(words) - n + 1)}:
                hits.update(by_gram.get(g, ()))
        hit = next((j for j in sorted(hits) if hits[j] / sizes[j] >= threshold), None)
        if hit is None:
            kept.append(row)
        else:
            removed.append({"index": i, "eval_index": hit, "overlap": round(hits[hit] / sizes[hit], 3)})
    details = {"ngram": ngram, "threshold": threshold, "removed": len(removed), "examples": removed[:MAX_EXAMPLES]}
    return _done("decontaminate", len(rows), kept, details)
