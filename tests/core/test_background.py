"""The background-job base: the work runs on its own named thread, its error is kept
rather than raised, and the after-hook runs once done is set, on success and on error."""

from __future__ import annotations

import threading

from core.background import BackgroundJob


class _Job(BackgroundJob):
    thread_name = "test-job"
    daemon = False

    def __init__(self, fail: bool) -> None:
        self.fail, self.ran_on, self.after_saw_done = fail, None, None
        super().__init__()

    def _work(self) -> None:
        self.ran_on = threading.current_thread().name
        if self.fail:
            raise ValueError("broken")

    def _after(self) -> None:
        self.after_saw_done = self.done.is_set()


def test_work_runs_on_its_thread_and_the_hook_after_it() -> None:
    job = _Job(fail=False)
    assert job.start() is job and job.wait(30)
    assert job.ran_on == "test-job" and job.error is None and job.after_saw_done is True
    assert job._thread.daemon is False


def test_an_error_is_kept_and_done_is_still_set() -> None:
    job = _Job(fail=True).start()
    assert job.wait(30)
    assert isinstance(job.error, ValueError) and str(job.error) == "broken"
    assert job.after_saw_done is True
