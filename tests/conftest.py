"""Shared fixtures. Tiers: default (fast, CPU, offline), ``-m slow`` (tiny models
that train for real), ``-m gpu`` (skipped cleanly without CUDA), ``-m vllm`` (real vLLM
engines; from ``.venv-vllm``, skipped elsewhere)."""

from __future__ import annotations

import importlib.util

import pytest


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config, items):
    if any(item.get_closest_marker("vllm") for item in items) and importlib.util.find_spec("vllm") is None:
        skip_vllm = pytest.mark.skip(reason="needs vLLM: make vllm, then make test-vllm")
        for item in items:
            if item.get_closest_marker("vllm"):
                item.add_marker(skip_vllm)
    if any(item.get_closest_marker("gpu") for item in items) and not _has_cuda():
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if item.get_closest_marker("gpu"):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A randomly initialised tiny Llama (about 140k parameters) with the char tokenizer,
    saved with ``save_pretrained``: loadable by path, as TRL and the stages expect."""
    from pipelines.testing.tinymodel import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), arch="llama", seed=0)


@pytest.fixture(scope="session")
def memorized(tmp_path_factory):
    """``memorized(name, examples)``: a tiny model trained (once per session and name) until
    greedy decoding, and sampling at temperature 0.3 or less, answers each prompt with its
    own reply. A real engine with known outputs, so tests can check a stage's arithmetic."""
    from pipelines.testing.tinymodel import memorize

    made: dict[str, object] = {}

    def make(name: str, examples: list[tuple[str, str]]):
        if name not in made:
            out = tmp_path_factory.mktemp(f"memorized-{name}")
            memorize(out, examples)
            made[name] = out
        return made[name]

    return make
