"""The autoscaling test runs as its own process (see ../test_engine.py)."""

import os

import pytest

# The Ray driver here starts many threads and processes; once, a child it forked stopped before its
# exec and a thread of the driver's waited for it forever, so this run never left its interpreter's
# shutdown (seen in CI: every test passed, the cluster was down, the process still waiting). The
# tests are over and reported when pytest unconfigures: leave then, without waiting on foreign threads.
_status = {"code": 0}


def pytest_sessionfinish(session, exitstatus) -> None:  # noqa: ANN001
    _status["code"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config) -> None:  # noqa: ANN001
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_status["code"])
