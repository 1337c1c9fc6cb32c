"""The security suite attacks a real `dfstream serve` on loopback, started as the service tests
start it."""

from tests.service.conftest import Served, serve, write_config  # noqa: F401 -- fixtures, used by name
