"""What the pipeline's stages are made of.

- ``stages/``: probe, synthesize, rejection_sample, train, evaluate, one file each, and the
  stage registry (``pipelines.stages.STAGES``, the one table of stage kinds).
- ``context.py``: :class:`~pipelines.context.StageContext` (what a stage is handed: the plan,
  its folders, the policy and the probe's prompt settings, read once) and ``StageResult``.
- ``generation/``: the backend Protocol and ``make_generator``; ``hf``, ``vllm`` and
  ``openai`` one file each.
- ``training/``: the TRL job, multi-process launch, the PSFT loss, checkpoint choice.
- ``testing/``: tiny offline models and the scripted fault-injecting server (test support).
- shared libraries: ``sampling`` (sample-and-verify, resumable shards), ``data`` (rows and
  prompts), ``artifacts`` (atomic writes, JSONL, hashes), ``stats`` (intervals, pass@k),
  ``labels`` and ``judging`` (LLM judge panels), ``curation`` and ``contamination``.

Imports go one way: ``pipelines`` imports ``verifiers`` and only advisor's leaf modules
(``advisor.errors``, ``advisor.plan``, ``advisor.render``, ``advisor.flowchart``), never the
app (cli, runner, planner, questionnaire, validate, report, demo, scoring). Heavy
libraries (torch, transformers, trl, vllm, datasets) load inside the functions that use them.
"""
