"""Loading prompts and rendering them into model inputs.

Data comes through ``datasets.load_dataset``: local JSONL/JSON, Parquet and CSV
files by extension, anything else as a hub id (``org/name`` or ``org/name:split``).
Prompt templates are jinja2: a direct variant and a chain-of-thought variant per
task kind (``templates/prompts/``), or an inline template from the plan.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advisor.errors import InputError

LOCAL_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def load_rows(
    source: str,
    base_dir: Path | None = None,
    fields: tuple[str, ...] = (),
    limit: int | None = None,
    seed: int = 0,
    split: str = "train",
    label: str = "data",
) -> list[dict[str, Any]]:
    """Load rows with ``datasets``; check that ``fields`` exist; optionally sample ``limit`` rows.

    Raises:
        InputError: the file is missing or unreadable, or a field is absent.
    """
    import datasets

    datasets.disable_progress_bars()
    path = Path(source).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    builder = LOCAL_BUILDERS.get(path.suffix.lower())
    try:
        if builder:
            if not path.exists():
                raise InputError(f"{label}: file not found: {source}")
            ds = datasets.load_dataset(builder, data_files=str(path), split="train")
        else:
            name, _, hub_split = source.partition(":")
            ds = datasets.load_dataset(name, split=hub_split or split)
    except InputError:
        raise
    except Exception as exc:  # datasets raises many types; the user needs one line
        if path.suffix.lower() == ".jsonl":
            try:
                read_rows(path)  # names the first malformed line
            except InputError as bad:
                raise InputError(f"{label}: {bad}") from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{label}: cannot load {source}: {first}") from None
    missing = [f for f in fields if f not in ds.column_names]
    if missing:
        raise InputError(f"{label}: {source} has no field {', '.join(map(repr, missing))} (columns: {ds.column_names})")
    return sample_rows(ds.to_list(), limit, seed)


def sample_rows(rows: list[dict[str, Any]], limit: int | None, seed: int = 0) -> list[dict[str, Any]]:
    """A seeded sample of ``limit`` rows in their original order (all of them when ``limit`` is None)."""
    if limit is None or limit >= len(rows):
        return rows
    rng = random.Random(seed)
    return [rows[i] for i in sorted(rng.sample(range(len(rows)), limit))]


# ---- the training split and the validation split that chooses checkpoints ----

#: Without ``data.validation``: the share of ``data.train`` held out to choose checkpoints,
#: its cap, the fewest training rows that allow a hold-out, and the seed of the draw.
VALIDATION_SHARE = 0.2
VALIDATION_MAX = 64
VALIDATION_MIN_ROWS = 10
VALIDATION_SEED = 0


@dataclass(frozen=True)
class Splits:
    """``data.train`` for training and the validation rows that choose checkpoints.

    ``train`` never holds a validation prompt. ``validation_source`` names where the
    validation rows came from (``data.validation``, or ``data.train (held out ...)``),
    or is ``None`` when there are none. ``data.eval`` is never one: the gain is
    reported there, so no choice may be made on it.
    """

    train: list[dict[str, Any]]
    validation: list[dict[str, Any]]
    validation_source: str | None


def prompt_key(value: Any) -> str:
    """What makes two prompts the same prompt: the text (stripped), or a conversation's JSON."""
    return value.strip() if isinstance(value, str) else json.dumps(value, sort_keys=True)


def training_splits(data: Any, base_dir: Path | None = None, fields: tuple[str, ...] = ()) -> Splits:
    """The plan's ``data.train`` split into training and validation rows.

    With ``data.validation`` those rows validate, and training drops any row whose
    prompt is one of theirs. Without it, a seeded :data:`VALIDATION_SHARE` of the
    distinct training prompts (at most :data:`VALIDATION_MAX`, none under
    :data:`VALIDATION_MIN_ROWS` rows) is held out, drawn only from prompts that are not
    ``data.eval`` prompts, so validation stays disjoint from the split the gain is
    reported on. Every stage that reads ``data.train`` calls this, so all of them see
    the same split.

    Args:
        data: The plan's ``data`` section.
        base_dir: Where relative paths start (the plan's folder).
        fields: Columns ``data.train`` must have.
    """
    field = data.prompt_field
    train = load_rows(data.train, base_dir, fields=(field, *fields), label="data.train") if data.train else []
    if data.validation:
        validation = load_rows(data.validation, base_dir, fields=(field,), label="data.validation")
        held = {prompt_key(r[field]) for r in validation}
        return Splits([r for r in train if prompt_key(r[field]) not in held], validation, "data.validation")
    if len(train) < VALIDATION_MIN_ROWS:
        return Splits(train, [], None)
    eval_rows = load_rows(data.eval, base_dir, fields=(field,), label="data.eval") if data.eval else []
    reported = {prompt_key(r[field]) for r in eval_rows}
    candidates = sorted({prompt_key(r[field]) for r in train} - reported)
    size = min(VALIDATION_MAX, max(1, round(len(train) * VALIDATION_SHARE)), len(candidates))
    if size == 0:
        return Splits(train, [], None)
    held = set(random.Random(VALIDATION_SEED).sample(candidates, size))
    validation, seen, kept = [], set(), []
    for r in train:
        key = prompt_key(r[field])
        if key not in held:
            kept.append(r)
        elif key not in seen:  # one row per held-out prompt; its duplicates leave training too
            seen.add(key)
            validation.append(r)
    source = f"data.train (held out: {len(validation)} of {len(train)} rows, seed {VALIDATION_SEED})"
    return Splits(kept, validation, source)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL (one object per line) or Parquet file; a bad line is an error naming it."""
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise InputError(
                f"{path}: reading Parquet needs pyarrow (pip install 'posttrain-advisor[train]')"
            ) from None
        return pq.read_table(path).to_pylist()
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}: line {number}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise InputError(f"{path}: line {number}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


def prompt_template(style: str, inline: str | None = None):
    """The jinja2 template for a prompt style (``direct`` or ``cot``), or an inline one."""
    from advisor.render import environment

    env = environment()
    if inline is not None:
        return env.from_string(inline)
    return env.get_template(f"prompts/{style}.j2")


def render_prompts(
    rows: list[dict[str, Any]], prompt_field: str, style: str, task_kind: str, chat: bool, inline: str | None = None
) -> list[Any]:
    """Model inputs for ``rows``: strings, or one-message chats when the model has a chat template."""
    template = prompt_template(style, inline)
    prompts: list[Any] = []
    for row in rows:
        question = row[prompt_field]
        if isinstance(question, list):  # already conversational
            prompts.append(question)
            continue
        text = template.render(question=question, task_kind=task_kind, row=row)
        prompts.append([{"role": "user", "content": text}] if chat else text)
    return prompts
