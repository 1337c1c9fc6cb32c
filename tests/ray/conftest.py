"""The Ray engine's tests run real local multi-node clusters inside a network namespace that holds
only loopback (Ray binds the machine's own address otherwise): ``test_engine.py`` makes the
namespace and runs ``cluster/`` in it, and ``autoscaling/`` in one of its own (with its own PIDs);
collected anywhere else, both are left out."""

import os

collect_ignore = [] if os.environ.get("DFSTREAM_LOOPBACK_NETNS") == "1" else ["cluster", "autoscaling"]
