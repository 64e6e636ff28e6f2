"""Loading prompts and rendering them into model inputs.

Data comes through ``datasets.load_dataset``: local JSONL/JSON, Parquet and CSV
files by extension, anything else as a hub id (``org/name`` or ``org/name:split``).
Prompt templates are jinja2: a direct variant and a chain-of-thought variant per
task kind (``templates/prompts/``), or an inline template from the plan.
"""

from __future__ import annotations

import json
import random
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
    rows = ds.to_list()
    if limit is not None and limit < len(rows):
        rng = random.Random(seed)
        rows = [rows[i] for i in sorted(rng.sample(range(len(rows)), limit))]
    return rows


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
