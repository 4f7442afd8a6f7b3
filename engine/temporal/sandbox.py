"""The workflow sandbox, without the serialization contexts a context-free converter ignores.

Temporal's worker passes the payloads of each workflow activation, and of its completion, through
the data converter in three rounds (storage references, external storage, codec), and each round
asks the sandboxed workflow instance for the payload's serialization context: an ``exec`` of source
text compiled anew inside the sandbox, an eighth of a worker's CPU (0.7 ms a step). A converter with no
codec, no external storage and no context-aware payload converter (runbook's: the default JSON
one) makes the same bytes whatever the context, so :func:`workflow_runner` then gives a sandbox
whose instances answer from outside it. The workflow code still runs in the sandbox, with its
restrictions: what it may import and call is checked as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import temporalio.workflow
from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.converter import (
    DataConverter,
    SerializationContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
    WorkflowSerializationContext,
)
from temporalio.worker import WorkflowInstance, WorkflowInstanceDetails
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

__all__ = ["workflow_runner", "takes_no_context"]


def takes_no_context(converter: DataConverter) -> bool:
    """Whether ``converter`` converts every payload the same whatever its serialization context."""
    sample = WorkflowSerializationContext(namespace="", workflow_id="")
    return (converter.payload_codec is None and converter.external_storage is None
            and converter.with_context(sample) is converter)


def workflow_runner(converter: DataConverter) -> SandboxedWorkflowRunner:
    """The sandbox runner of a worker whose client converts payloads with ``converter`` (Temporal's
    own when the SDK's WorkflowInstance asks for more than :class:`_ContextFree` implements)."""
    fits = not getattr(_ContextFree, "__abstractmethods__", frozenset())
    return _ContextFreeRunner() if fits and takes_no_context(converter) else SandboxedWorkflowRunner()


@dataclass(frozen=True)
class _ContextFreeRunner(SandboxedWorkflowRunner):
    """Temporal's sandbox, whose instances skip the per-payload serialization context."""

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return _ContextFree(super().create_instance(det))


class _ContextFree(WorkflowInstance):
    """A sandboxed workflow instance that gives no serialization context (the converter takes
    none) and its external-storage target without entering the sandbox (there is no storage)."""

    def __init__(self, inner: WorkflowInstance) -> None:
        self._inner = inner

    def activate(self, act: WorkflowActivation) -> WorkflowActivationCompletion:
        return self._inner.activate(act)

    def get_serialization_context(self, command_info: Any) -> SerializationContext | None:
        return None

    def get_external_store_context(self, command_info: Any) -> StorageDriverStoreContext:
        info = self._inner.get_info()
        return StorageDriverStoreContext(target=StorageDriverWorkflowInfo(
            id=info.workflow_id, run_id=info.run_id, type=info.workflow_type, namespace=info.namespace))

    def get_info(self) -> temporalio.workflow.Info:
        return self._inner.get_info()

    def get_thread_id(self) -> int | None:
        return self._inner.get_thread_id()
