"""The Ray engine's tests run a real local multi-node cluster inside a network namespace that
holds only loopback (Ray binds the machine's own address otherwise): ``test_engine.py`` makes the
namespace and runs ``cluster/`` in it; collected anywhere else, ``cluster/`` is left out."""

import os

collect_ignore = [] if os.environ.get("DFSTREAM_LOOPBACK_NETNS") == "1" else ["cluster"]
