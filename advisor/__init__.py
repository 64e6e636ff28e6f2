"""advisor: choose SFT, RFT or RLHF for a task, then run that post-training pipeline.

The app, in layers:

- leaf modules, which ``pipelines`` may import: ``errors`` (exceptions and exit codes),
  ``flowchart`` (the decision graph as data, with its thresholds), ``plan`` (the plan
  file's schema), ``render`` (jinja2 templates).
- the app: ``cli`` (click only), ``questionnaire`` and ``planner`` (answers to a plan and
  its files), ``validate`` (every problem before compute), ``runner`` (stages in order,
  resumably), ``report`` and ``charts`` (report.html/.md), ``scoring`` (``advisor
  verify``), ``demos`` (each flowchart route run offline end to end,
  with its control; ``demo`` keeps the old import path).

The app imports ``pipelines`` and ``verifiers``; neither imports the app back.
"""
