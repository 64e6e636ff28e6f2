"""The library's small set of exceptions. The CLI maps them to exit codes.

- :class:`InputError` (and :class:`PlanError`): bad usage or invalid input -> exit 2
- :class:`GateStop`: the pipeline stopped at a gate with a verdict -> exit 1
- :class:`StageFailed`: a stage could not finish -> exit 1
"""

from __future__ import annotations


class AdvisorError(Exception):
    exit_code = 1

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or [message]


class InputError(AdvisorError):
    """Invalid input: a file, field or value the user must fix."""

    exit_code = 2


class PlanError(InputError):
    """An invalid plan file; ``problems`` holds one line per problem."""


class GateStop(AdvisorError):
    """A gate stopped the pipeline (e.g. probe pass rate under 20%)."""

    exit_code = 1


class StageFailed(AdvisorError):
    exit_code = 1
