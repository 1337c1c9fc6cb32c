"""A real Mosquitto for tests: password file, ACL, a plain and a TLS listener on loopback, with a
CA made by the test. Can be SIGKILLed and restarted on the same ports."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

USERS = {"dfstream": "df-secret-pw", "reader": "reader-pw"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


class Mosquitto:
    def __init__(self, persistent: bool = False) -> None:
        if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
            pytest.fail("mosquitto is missing: apt-get install mosquitto")
        # mosquitto run as root drops to user mosquitto: its files must be readable by it
        self.dir = Path(tempfile.mkdtemp(prefix="dfstream-mosquitto-"))
        os.chmod(self.dir, 0o755)
        self.port, self.tls_port = _port(), _port()
        self._make_certificates()
        passwd = self.dir / "passwd"
        for i, (user, password) in enumerate(USERS.items()):
            _run("mosquitto_passwd", *(["-c"] if i == 0 else []), "-b", str(passwd), user, password)
        (self.dir / "acl").write_text("user dfstream\ntopic write dfstream/#\ntopic write homeassistant/#\n\nuser reader\ntopic read #\n")
        data = self.dir / "data"
        data.mkdir()
        os.chmod(data, 0o777)
        # sessions saved every second: a subscriber's subscription survives a SIGKILL of the broker
        persistence = f"persistence true\npersistence_location {data}/\nautosave_interval 1" if persistent else "persistence false"
        (self.dir / "mosquitto.conf").write_text(
            f"""per_listener_settings false
allow_anonymous false
password_file {passwd}
acl_file {self.dir / 'acl'}
{persistence}
log_dest stderr
log_type error
log_type warning
listener {self.port} 127.0.0.1
listener {self.tls_port} 127.0.0.1
cafile {self.dir / 'ca.crt'}
certfile {self.dir / 'server.crt'}
keyfile {self.dir / 'server.key'}
"""
        )
        for f in self.dir.iterdir():
            if f.is_file():
                os.chmod(f, 0o644)
        self.process: subprocess.Popen | None = None

    def _make_certificates(self) -> None:
        d = self.dir
        _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=dfstream test CA",
             "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"))  # fmt: skip
        _run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", str(d / "server.key"),
             "-out", str(d / "server.csr"))  # fmt: skip
        (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        _run("openssl", "x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"),
             "-CAcreateserial", "-days", "2", "-extfile", str(d / "san.ext"), "-out", str(d / "server.crt"))  # fmt: skip
        # a CA the broker does not know, for the mismatch case
        _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=someone else",
             "-keyout", str(d / "other.key"), "-out", str(d / "other.crt"))  # fmt: skip

    @property
    def ca_file(self) -> str:
        return str(self.dir / "ca.crt")

    def start(self) -> "Mosquitto":
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.process = subprocess.Popen([binary, "-c", str(self.dir / "mosquitto.conf")], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"mosquitto exited: {self.process.stderr.read().strip()}")
            try:
                for port in (self.port, self.tls_port):
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        pytest.fail("mosquitto did not listen within 10 s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(5)
            self.process.stderr.close()

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
