"""The Ray engine's tests run real local multi-node clusters inside a network namespace that holds
only loopback (Ray binds the machine's own address otherwise): ``test_engine.py`` makes the
namespace and runs ``cluster/`` in it, and ``autoscaling/`` in one of its own (with its own PIDs);
collected anywhere else, both are left out."""

import os

import pytest

collect_ignore = [] if os.environ.get("DFSTREAM_LOOPBACK_NETNS") == "1" else ["cluster", "autoscaling"]


# Inside those runs only (never in the run that starts them): the Ray driver starts many threads
# and processes; once, a child it forked stopped before its exec and a thread of the driver's waited
# for it forever, so the run never left its interpreter's shutdown (seen in CI: every test passed,
# the cluster was down, the process still waiting). The tests are over and reported when pytest
# unconfigures: leave then, without waiting on foreign threads.
_status = {"code": 0}


def pytest_sessionfinish(session, exitstatus) -> None:  # noqa: ANN001
    _status["code"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config) -> None:  # noqa: ANN001
    if os.environ.get("DFSTREAM_LOOPBACK_NETNS") != "1":
        return
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_status["code"])
