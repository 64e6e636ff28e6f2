"""What the runner hands a stage, and what a stage hands back.

:class:`StageContext` carries the plan, the stage's options and folders, and the
settings every sampling or training stage needs, read once: the policy being
improved and the prompt settings the probe chose (:class:`PromptSettings`).
:class:`StageResult` is what ``run(ctx)`` returns.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advisor.plan import Plan
from pipelines.artifacts import read_json
from pipelines.stages import POLICY_KINDS


@dataclass
class StageResult:
    """What a stage hands back: metrics, output files, and optionally a gate verdict."""

    metrics: dict[str, Any]
    outputs: dict[str, Path] = field(default_factory=dict)
    summary: str = ""
    stop: str | None = None  # a gate verdict: the runner stops with exit 1
    settled_route: str | None = None  # a provisional route settled by measurement


@dataclass(frozen=True)
class PromptSettings:
    """How prompts are rendered, so that probe, training and evaluate see the same inputs.

    ``style`` is the one the probe settled on (``direct`` or ``cot``); ``template`` is an
    inline jinja2 template or ``None`` for the task's default. ``probe`` is the probe
    stage's options (``None`` when the plan has no finished probe).
    """

    style: str
    template: str | None
    probe: Any = None


@dataclass
class StageContext:
    plan: Plan
    stage: Any
    index: int
    dir: Path
    run_dir: Path
    plan_dir: Path
    console: Any
    fresh: bool = False
    stage_dirs: list[Path] = field(default_factory=list)
    generators: list[Any] = field(default_factory=list)  # built by sampling.generator_for, released at the end

    def release(self, generator: Any = None) -> None:
        """Free a generation engine now (``None``: every one this stage built).

        A vLLM engine reserves its KV cache up front (a share of GPU memory, or GiBs of RAM on
        CPU): a second engine, or the trainer that follows, cannot get that memory until the
        first one is shut down. The runner releases a stage's engines when the stage ends.
        """
        chosen = list(self.generators) if generator is None else [generator]
        for gen in chosen:
            close = getattr(gen, "close", None)
            if callable(close):
                close()
            if gen in self.generators:
                self.generators.remove(gen)

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.plan_dir / p

    def earlier(self, kind: str) -> Path | None:
        """The folder of the last finished earlier stage of ``kind``, if any."""
        found = self.earlier_stage(kind)
        return None if found is None else found[1]

    def earlier_stage(self, *kinds: str) -> tuple[Any, Path] | None:
        """The options and folder of the last finished earlier stage among ``kinds``."""
        for i in range(self.index - 1, -1, -1):
            d = self.stage_dirs[i]
            if self.plan.stages[i].kind in kinds and (d / "manifest.json").exists():
                return self.plan.stages[i], d
        return None

    @functools.cached_property
    def policy(self) -> str:
        """The model the pipeline is improving: the last earlier training stage's ``model/``, else the base."""
        found = self.earlier_stage(*POLICY_KINDS)
        return str(found[1] / "model") if found is not None else self.plan.models.base

    @functools.cached_property
    def prompts(self) -> PromptSettings:
        """The probe's prompt style and template; a stage's own ``prompt_template`` wins over the probe's."""
        found = self.earlier_stage("probe")
        own = getattr(self.stage, "prompt_template", None)
        if found is None:
            return PromptSettings("cot" if self.plan.route == "rft" else "direct", own)
        probe, folder = found
        style = read_json(folder / "metrics.json").get("style", "direct")
        return PromptSettings(style, own if own is not None else probe.prompt_template, probe)

    @contextlib.contextmanager
    def progress(self, description: str, total: int, unit: str = "prompts") -> Iterator[Callable[[int], None]]:
        """A rich progress bar (done/total, rate, ETA); yields ``advance(n)``."""
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = [
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        ]
        start = time.monotonic()
        with Progress(*columns, console=self.console, transient=False) as bar:
            task = bar.add_task(description, total=total, rate="")

            def advance(n: int) -> None:
                bar.advance(task, n)
                done = bar.tasks[0].completed
                elapsed = max(time.monotonic() - start, 1e-6)
                bar.update(task, rate=f"{done / elapsed:.1f} {unit}/s")

            yield advance
