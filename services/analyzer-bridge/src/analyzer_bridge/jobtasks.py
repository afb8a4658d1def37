"""Background work of this process, at most one task per job: the requests under way
(:mod:`analyzer_bridge.requesting`) and the ``analyzing`` notices not yet due
(:mod:`analyzer_bridge.finishing`). Each can be called off by job, awaited as a whole,
or cancelled as a whole at the stop."""

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


class JobTasks:
    def __init__(self, name: str) -> None:
        self._name = name
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, job_id: str, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``work()`` as the job's task, unless one is under way already."""
        if job_id in self._tasks:
            return
        task = asyncio.create_task(work(), name=f"{self._name}-{job_id}")
        self._tasks[job_id] = task
        task.add_done_callback(lambda done: self._forget(job_id, done))

    def _forget(self, job_id: str, task: "asyncio.Task[None]") -> None:
        if self._tasks.get(job_id) is task:
            del self._tasks[job_id]

    async def cancel(self, job_id: str) -> None:
        """Call the job's task off, if one is under way, and wait for its end."""
        task = self._tasks.get(job_id)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def cancel_soon(self, job_id: str) -> None:
        """Call the job's task off, if one is under way, without waiting for its end."""
        task = self._tasks.get(job_id)
        if task is not None:
            task.cancel()

    async def join(self) -> None:
        """Wait until the tasks under way have ended."""
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def cancel_all(self) -> None:
        """Cancel every task under way and wait for their ends."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
