"""Helpers of the multi-process tests (not tests): free ports, train_net.py launched as one
machine, as several "machines" on this host, under torchrun, or as bare torchrun-style workers."""

import json
import os
import socket
import subprocess
import sys

from tests.conftest import PARITY, REPO

TINY_OPTS = [
    "--config-file", str(PARITY / "config.yaml"),
    "MODEL.DEVICE", "cpu",
    "DATASETS.ROOT", str(PARITY / "datasets"),
    "DATASETS.TRAIN", "('assr_train',)",
    "DATASETS.TEST", "()",
    "INPUT.FT_SIZE_TRAIN", "64",
    "INPUT.FT_SIZE_TEST", "64",
    "SOLVER.IMS_PER_GPU", "1",
    "SOLVER.WARMUP_ITERS", "0",
    "SOLVER.LOG_PERIOD", "1",
    "DATALOADER.NUM_WORKERS", "0",
    "TEST.EVAL_PERIOD", "0",
    "SEED", "3",
]  # fmt: skip
TRAIN_NET = str(REPO / "train_net.py")
TORCHRUN_ENV = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
)
TIMEOUT = 600


def free_port():
    """A port the OS reports free right now (never a fixed one: tests run side by side)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(**extra):
    """This environment without torchrun variables, one OpenMP thread, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV}
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


def run(cmd, **extra_env):
    return subprocess.run(
        cmd, cwd=REPO, env=_env(**extra_env), capture_output=True, text=True, timeout=TIMEOUT
    )


def one_machine(out, *opts, num_gpus=1, flags=()):
    """``train_net.py --num-gpus N`` (detectron2's spawner for N > 1)."""
    port = f"tcp://127.0.0.1:{free_port()}"
    cmd = [sys.executable, TRAIN_NET, "--num-gpus", str(num_gpus), "--dist-url", port, *flags]
    return run(cmd + TINY_OPTS + ["OUTPUT_DIR", str(out), *opts])


def machines(out, *opts, count=2, flags=()):
    """``count`` "machines" of one process each on this host; returns their CompletedProcess-like
    (returncode, output) pairs, machine 0 first."""
    url = f"tcp://127.0.0.1:{free_port()}"
    procs = []
    for rank in range(count):
        cmd = [
            sys.executable, TRAIN_NET, "--num-gpus", "1", "--num-machines", str(count),
            "--machine-rank", str(rank), "--dist-url", url, *flags,
        ]  # fmt: skip
        procs.append(
            subprocess.Popen(
                cmd + TINY_OPTS + ["OUTPUT_DIR", str(out), *opts],
                cwd=REPO,
                env=_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    results = []
    try:
        for proc in procs:
            output, _ = proc.communicate(timeout=TIMEOUT)
            results.append((proc.returncode, output))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def torchrun(out, *opts, nproc=2, flags=()):
    """``torchrun --standalone --nproc-per-node N train_net.py`` (torchrun picks the port)."""
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc-per-node", str(nproc), TRAIN_NET, *flags,
    ]  # fmt: skip
    return run(cmd + TINY_OPTS + ["OUTPUT_DIR", str(out), *opts])


def torchrun_worker(out, rank, world, port, *opts, flags=()):
    """One bare worker with the torchrun variables set (as SLURM's srun + a wrapper would).

    Its stdout / stderr go to ``worker{rank}.out`` / ``.err`` beside ``out`` (a pipe nobody reads
    would fill up and stall it); returns the Popen.
    """
    env = _env(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK="0",
        LOCAL_WORLD_SIZE="1",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    cmd = [sys.executable, TRAIN_NET, *flags] + TINY_OPTS + ["OUTPUT_DIR", str(out), *opts]
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f"worker{rank}.out", "w") as stdout:
        with open(out.parent / f"worker{rank}.err", "w") as stderr:
            return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=stdout, stderr=stderr)


def losses(out):
    """metrics.json records with losses, by iteration."""
    lines = (out / "metrics.json").read_text().splitlines()
    records = [json.loads(line) for line in lines if "total_loss" in line]
    return {r["iteration"]: r for r in records}
