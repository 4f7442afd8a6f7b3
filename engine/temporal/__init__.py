"""Scale-out on Temporal (SPEC §10): the runbook workflow, its activities, and the connection.

The seam is small. :mod:`engine.temporal.spec` (no ``temporalio``) turns a checked runbook into
the workflow's input: the step skeletons the conductor needs (no templates), what each step's
templates reference, the activity options of each step. :mod:`~engine.temporal.workflow` runs
:class:`~engine.conductor.Conductor` and :class:`~engine.conductor.FanOut` as the workflow's
logic; :mod:`~engine.temporal.activities` runs each step or ``for_each`` item with the
:class:`~engine.executor.Executor` inside a worker, whose environment holds the secrets;
:mod:`~engine.temporal.client` connects; :mod:`~engine.temporal.sandbox` is the sandbox the
worker runs the workflow in. Only ``runbook worker``, ``submit``, ``status`` and ``results`` import
``temporalio`` (the optional extra ``[temporal]``).
"""

from __future__ import annotations

__all__ = ["DEFAULT_TASK_QUEUE", "WORKFLOW", "STEP_ACTIVITY", "ITEMS_ACTIVITY", "OUTPUTS_ACTIVITY", "PREPARE_ACTIVITY",
           "CALL_ACTIVITY"]

#: The task queue a worker polls and ``submit`` starts workflows on, unless told otherwise.
DEFAULT_TASK_QUEUE = "runbook"
WORKFLOW = "runbook"
STEP_ACTIVITY = "runbook.step"
ITEMS_ACTIVITY = "runbook.items"
OUTPUTS_ACTIVITY = "runbook.outputs"
PREPARE_ACTIVITY = "runbook.prepare"
CALL_ACTIVITY = "runbook.call"
