"""Shared fixtures. Tiers: default (fast, CPU, offline), ``-m slow`` (tiny models
that train for real), ``-m gpu`` (skipped cleanly without CUDA)."""

from __future__ import annotations

import pytest


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config, items):
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
