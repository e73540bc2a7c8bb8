"""The test helpers that keep multi-process tests off each other's ports."""

import socket
import sys

from tests import helpers

# Stands in for a multi-process CLI: binds the port of its --dist-url as the rendezvous does.
BIND_SCRIPT = """
import socket, sys
port = int(sys.argv[sys.argv.index("--dist-url") + 1].rsplit(":", 1)[1])
with socket.socket() as sock:
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sys.exit(f"EADDRINUSE: {exc}")
print("bound", port, *sys.argv[sys.argv.index("--dist-url") + 2 :])
"""


def test_free_port_is_bindable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", helpers.free_port()))


def test_run_distributed_retries_on_a_taken_port(tmp_path, monkeypatch):
    script = tmp_path / "bind.py"
    script.write_text(BIND_SCRIPT)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = [taken.getsockname()[1], helpers.free_port()]
        monkeypatch.setattr(helpers, "free_port", lambda: ports.pop(0))
        proc = helpers.run_distributed([sys.executable, str(script), "--flag", "x"], timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[2:] == ["--flag", "x"]
    assert ports == []  # the second port was used


def test_run_distributed_does_not_retry_other_failures(tmp_path, monkeypatch):
    script = tmp_path / "fail.py"
    script.write_text("import sys; sys.exit('boom')")
    calls = []
    monkeypatch.setattr(helpers, "free_port", lambda: calls.append(1) or 1)
    proc = helpers.run_distributed([sys.executable, str(script)], timeout=60)
    assert proc.returncode == 1 and "boom" in proc.stderr and len(calls) == 1
