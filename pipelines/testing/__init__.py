"""Test support that ships with the package, like ``click.testing``.

- :mod:`pipelines.testing.tinymodel`: tiny character-level models and tokenizers trained
  from scratch offline in seconds (the demo's and the tests' models).
- :mod:`pipelines.testing.openai_server`: a scripted OpenAI-compatible server for fault
  injection (500, 429, 401, 404, timeouts). Successful generation is tested against a
  real engine, never against this.

Nothing in the pipeline imports these modules.
"""
