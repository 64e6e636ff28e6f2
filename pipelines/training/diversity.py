"""A TRL reward function that also logs how varied the sampled completions are.

Repetition and mode collapse show early in the samples, before the reward or the loss
says anything. :func:`logging_diversity` wraps a reward function and, through the
``log_metric`` TRL hands every reward function, logs per step:

- ``completions/distinct``: unique answers over the last ``window`` prompts (one answer
  each): the same answer to every prompt is collapse;
- ``completions/distinct_2``: the mean within-text distinct-2: a text repeating itself.

:mod:`pipelines.doctor` reads them (rule ``repetition``). See
:func:`pipelines.doctor.history.diversity`.
"""

from __future__ import annotations

from typing import Any


def logging_diversity(reward: Any, window: int = 32) -> Any:
    """``reward``, logging ``completions/distinct`` and ``completions/distinct_2`` as it goes."""
    import collections
    import functools
    import json

    from pipelines.doctor.history import diversity
    from verifiers.base import completion_text

    recent: collections.OrderedDict[str, str] = collections.OrderedDict()

    @functools.wraps(reward)
    def logged(*args: Any, **kwargs: Any) -> Any:
        log_metric = kwargs.get("log_metric")
        if callable(log_metric):
            texts = [completion_text(c) for c in kwargs.get("completions") or ()]
            for prompt, text in zip(kwargs.get("prompts") or [None] * len(texts), texts, strict=False):
                key = json.dumps(prompt, default=str, sort_keys=True)
                recent.pop(key, None)
                recent[key] = text
                while len(recent) > window:
                    recent.popitem(last=False)
            if len(recent) >= 8:
                log_metric("completions/distinct", diversity(list(recent.values()))["distinct"])
            stats = diversity(texts)
            if "distinct_2" in stats:
                log_metric("completions/distinct_2", stats["distinct_2"])
        return reward(*args, **kwargs)

    return logged
