"""Shared test fixtures: paths to the repository and to ../shared reference data."""

import os
import random
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

# The test machines have 2 shared cores: with torch's default intra-op threads, concurrent
# processes (subprocess CLIs, 2-process DDP) oversubscribe them and run many times slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SEQRANK_SHARED", REPO.parent / "shared"))
PARITY = SHARED / "reference" / "parity_fpn"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


# End-to-end modules marked here rather than in the file: the parity test stays as written, and
# the demo / web-demo tests belong to the demo's own work. Every other e2e test carries
# ``@pytest.mark.e2e`` (or a module ``pytestmark``) itself.
E2E_MODULES = (
    "tests/test_parity_eval.py",  # evaluates the parity checkpoint with train_net.py
    "tests/demo/test_demo_cli.py",  # runs demo/demo.py in subprocesses
    "tests/online/test_browser.py",  # a headless browser against the web demo
)
# Single e2e tests in such files: launch.sh runs in a subprocess.
E2E_TESTS = ("tests/online/test_app.py::test_launch_sh_",)


def pytest_collection_modifyitems(config, items):
    for item in items:
        node = item.nodeid
        if node.split("::")[0] in E2E_MODULES or node.startswith(E2E_TESTS):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def reset_random_state():
    """Every test starts from the same torch / NumPy / Python RNG state, whatever ran before it
    (a test must not pass or fail depending on the order or the selection of tests)."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def repo_root():
    return REPO


def require_shared():
    """SHARED, or a test failure naming the missing folder (reference tests never skip)."""
    if not SHARED.is_dir():
        pytest.fail(f"shared reference data not found at {SHARED} (set SEQRANK_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def shared_dir():
    return require_shared()


@pytest.fixture(scope="session")
def parity_dir(shared_dir):
    return PARITY


@pytest.fixture
def sigterm_handler(monkeypatch):
    """``exit_on_sigterm`` installed in this process with a fresh state; the previous SIGTERM
    handler is restored afterwards."""
    from seqrank.utils import sigterm

    previous = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(sigterm, "_state", {"received": False, "deferring": 0, "pending": False})
    sigterm.exit_on_sigterm()
    yield
    signal.signal(signal.SIGTERM, previous)
