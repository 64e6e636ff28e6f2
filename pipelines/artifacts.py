"""Artifacts on disk: atomic JSON/JSONL writes, content hashes, and resumable shards.

Every write goes to a temp file in the same folder and is renamed into place, so a
reader (or a resumed run) never sees half a file. Generation writes one shard per
slice of prompts; a killed run resumes after the last finished shard, with no
duplicated or missing rows::

    shards = Shards(stage_dir / "shards", total=len(prompts), size=64)
    for shard in shards.pending():
        rows = generate(prompts[shard.start:shard.stop])
        shards.write(shard, rows)
    rows = shards.read_all()
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def write_text(path: Path, text: str, executable: bool = False) -> None:
    """Write via a temp file and rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    if executable:
        os.chmod(tmp, os.stat(tmp).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    n = 0
    with open(tmp, "w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            n += 1
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return n


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path) as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
    return rows


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_json(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def fingerprint(path: Path) -> str:
    """A content hash of a file, or of a directory's files (names and contents)."""
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for child in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
        h.update(str(child.relative_to(path)).encode())
        h.update(sha256_file(child).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class Shard:
    index: int
    start: int
    stop: int


class Shards:
    """Fixed slices of ``total`` items, each saved as ``shard-NNNNN.jsonl`` once complete."""

    def __init__(self, folder: Path, total: int, size: int):
        self.folder = folder
        self.total = total
        self.size = max(1, size)
        folder.mkdir(parents=True, exist_ok=True)

    def all(self) -> list[Shard]:
        return [
            Shard(i, start, min(start + self.size, self.total))
            for i, start in enumerate(range(0, self.total, self.size))
        ]

    def path(self, shard: Shard) -> Path:
        return self.folder / f"shard-{shard.index:05d}.jsonl"

    def done(self, shard: Shard) -> bool:
        return self.path(shard).exists()

    def pending(self) -> Iterator[Shard]:
        for shard in self.all():
            if not self.done(shard):
                yield shard

    def finished_items(self) -> int:
        return sum(s.stop - s.start for s in self.all() if self.done(s))

    def write(self, shard: Shard, rows: Iterable[dict[str, Any]]) -> None:
        write_jsonl(self.path(shard), rows)

    def read_all(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for shard in self.all():
            rows.extend(read_jsonl(self.path(shard)))
        return rows

    def clear(self) -> None:
        for p in self.folder.glob("shard-*.jsonl"):
            p.unlink()
