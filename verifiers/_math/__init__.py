"""The math verifier's engine (private; the public face is ``verifiers.math``).

- ``text``: extraction, cleaning and the sympy-free fast paths (runs in the caller).
- ``numbers``: plain numerals as exact rationals; the decimal and percent rules.
- ``latex``: one LaTeX expression to sympy.
- ``parse``: the structure of an answer (sets, tuples, intervals, equations, units).
- ``equal``: the equivalence conventions documented in ``verifiers.math``.
- ``worker``: killable worker processes that run ``parse``/``equal`` under a hard limit.

Only ``text`` and ``worker`` are imported by the caller's process; sympy loads
in the workers.
"""
