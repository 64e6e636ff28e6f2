"""Reading a judge model's reply as a label: the parser lives in :mod:`verifiers.labels`.

The ``judge`` verifier and the synthesize stage's panel read replies with one parser,
so it sits in ``verifiers`` (which imports nothing of the project) and is re-exported
here for the pipeline's modules.
"""

from __future__ import annotations

from verifiers.labels import Label, parse_label, parse_preference, verifier_label

__all__ = ["Label", "parse_label", "parse_preference", "verifier_label"]
