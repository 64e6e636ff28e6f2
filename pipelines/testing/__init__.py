"""Test support that ships with the package, like ``click.testing``.

- :mod:`pipelines.testing.tinymodel`: tiny character-level models and tokenizers trained
  from scratch offline in seconds (the demo's and the tests' models).
- :mod:`pipelines.testing.model_server`: real model directories behind the OpenAI API,
  through transformers: what successful generation over HTTP is tested against.
- :mod:`pipelines.testing.vllm_server`: vLLM's own OpenAI server as a subprocess.
- :mod:`pipelines.testing.openai_server`: the shared HTTP layer and a scripted server for
  fault injection (500, 429, 401, 404, servers that ignore ``n``). Successful generation is
  tested against a real engine, never against this.

Nothing in the pipeline imports these modules.
"""
