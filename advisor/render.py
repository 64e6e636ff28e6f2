"""Render the project's jinja2 templates (plan.yaml, README.md, run.sh, reports).

Templates live in ``templates/`` at the repository root and ship inside the wheel
as ``advisor/templates``; :func:`template_dir` finds whichever copy is present.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

PACKAGE_DIR = Path(__file__).resolve().parent


def template_dir() -> Path:
    """The installed templates (in the wheel) or, in a source checkout, the repo's."""
    for candidate in (PACKAGE_DIR / "templates", PACKAGE_DIR.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("advisor templates not found (broken installation)")


def to_yaml(value: Any, flow: bool = False) -> str:
    return yaml.safe_dump(value, sort_keys=False, default_flow_style=flow, allow_unicode=True, width=10_000).strip()


def yaml_item(value: Any, indent: int = 2) -> str:
    """A mapping as one YAML list item, indented to sit under a ``key:`` line."""
    text = to_yaml([value])
    pad = " " * indent
    return "\n".join(pad + line for line in text.splitlines())


def answer_text(value: Any) -> str:
    return {True: "yes", False: "no"}.get(value, str(value)) if isinstance(value, bool) else str(value)


@functools.cache
def environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"), default_for_string=False),
    )
    env.filters.update(to_yaml=to_yaml, yaml_item=yaml_item, answer=answer_text)
    return env


def render(name: str, **context: Any) -> str:
    return environment().get_template(name).render(**context)
