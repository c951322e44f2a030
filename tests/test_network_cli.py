"""The `closedloop` command with the service network: the demo reports it, `serve` says
whether it dispatches by itself, and a bad setting is explained, not a traceback."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from test_cli import EXE, free_port, one_line, run


def test_the_demo_reports_dispatches_alarms_parts_and_permits(tmp_path: Path):
    done = run(["demo", "--no-serve", "--port", str(free_port()), "--days", "2", "--calls-per-day", "80"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "The service network (automatic dispatch on):" in done.stdout
    for words in ("dispatches", "of which by the engine", "alarms", "part requests", "decided by the engine",
                  "permits", "point changes recorded"):
        assert words in done.stdout, words


def test_serve_says_whether_it_dispatches_by_itself(tmp_path: Path):
    proc = subprocess.Popen(EXE + ["serve", "--port", str(free_port()), "--no-auto-dispatch",
                                   "--database", f"sqlite:///{tmp_path}/s.db"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        lines = []
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            if "automatic dispatch" in line:
                break
        assert any("automatic dispatch off, part approval on" in line for line in lines), lines
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_bad_network_setting_is_explained(tmp_path: Path):
    r = run(["status", "--database", f"sqlite:///{tmp_path}/x.db"], tmp_path, CLOSEDLOOP_AUTO_DISPATCH="maybe")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert one_line(r.stderr).startswith('closedloop status: CLOSEDLOOP_AUTO_DISPATCH: "maybe" is not on or off')
    r = run(["status", "--database", f"sqlite:///{tmp_path}/x.db"], tmp_path,
            CLOSEDLOOP_PERMIT_RULES='{"deductions": {"lateness": 1}}')
    assert r.returncode == 2 and "deductions.lateness is not a rule" in one_line(r.stderr)
    r = run(["serve", "--no-auto-dispatch", "--port", "http"], tmp_path)
    assert r.returncode == 2 and '--port: "http" is not a port number' in one_line(r.stderr)
    assert not (tmp_path / "x.db").exists()
