"""``runbook worker``: a Temporal worker of runbook workflows and their step activities."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import TextIO

from engine.temporal.client import Connection

__all__ = ["worker"]


def worker(connection: Connection | None = None, *, max_activities: int = 100,
           stdout: TextIO = sys.stdout) -> int:
    """Poll the task queue until SIGTERM or Ctrl-C, then stop taking work, let the activities in
    flight finish (up to a grace period) and exit 0. Run as many as wanted, anywhere."""
    return asyncio.run(_worker(connection or Connection(), max_activities, stdout))


async def _worker(connection: Connection, max_activities: int, stdout: TextIO) -> int:
    from datetime import timedelta

    from temporalio.worker import Worker

    from engine.temporal.activities import Activities
    from engine.temporal.client import connect
    from engine.temporal.sandbox import workflow_runner
    from engine.temporal.workflow import RunbookWorkflow

    client = await connect(connection)
    activities = Activities(client, threads=max_activities)
    queues: dict[str, Worker] = {}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    def rate_queue(queue: str, per_second: float) -> None:
        """Poll a rate-limited provider's task queue too (the server spaces its activities)."""
        if queue in queues:
            return
        queues[queue] = Worker(client, task_queue=queue, activities=activities.all,
                               max_concurrent_activities=max_activities,
                               max_task_queue_activities_per_second=per_second,
                               graceful_shutdown_timeout=timedelta(seconds=10))
        loop.create_task(queues[queue].run())

    activities.on_rate_queue = rate_queue
    main = Worker(client, task_queue=connection.queue, workflows=[RunbookWorkflow], activities=activities.all,
                  workflow_runner=workflow_runner(client.data_converter), max_concurrent_activities=max_activities,
                  graceful_shutdown_timeout=timedelta(seconds=10))
    address = client.service_client.config.target_host
    try:
        async with main:
            stdout.write(f"runbook worker: polling task queue {connection.queue} at {address} "
                         f"(namespace {client.namespace}); SIGTERM or Ctrl-C stops it\n")
            stdout.flush()
            await stop.wait()
            stdout.write("runbook worker: stopping (finishing the activities in flight)\n")
            stdout.flush()
            await asyncio.gather(*(w.shutdown() for w in queues.values()))
    finally:
        activities.close()
    return 0
