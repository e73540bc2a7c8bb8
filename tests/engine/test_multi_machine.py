"""Training across "machines" on one host (CPU, GLOO): the batch rule, checkpoints, resume,
torchrun, and a killed peer. Every launch takes its ports from the OS."""

import time

import pytest
import torch

from seqrank.engine import build_cfg
from seqrank.engine.launch import check_world, peer_failure, torchrun_environment
from seqrank.engine.setup import batch_derivation
from tests.conftest import REPO, require_shared
from tests.engine import launchers

# Runs the command end to end (subprocesses): left out of `make test-fast`.
pytestmark = pytest.mark.e2e

SWIN = str(REPO / "configs" / "swinL.yaml")
LOSS_KEYS = ("total_loss", "mask_loss", "bbox_loss", "obj_loss", "sal_loss")


# ---------------------------------------------------------------------------- cheap unit tests


def test_batch_is_ims_per_gpu_times_all_processes():
    one = build_cfg(SWIN, ["SOLVER.IMS_PER_GPU", "4"], num_gpus=2)
    two = build_cfg(SWIN, ["SOLVER.IMS_PER_GPU", "4"], num_gpus=2, num_machines=3)
    assert (one.SOLVER.IMS_PER_BATCH, two.SOLVER.IMS_PER_BATCH) == (8, 24)
    assert batch_derivation(two, 2, 3) == (
        "Total batch SOLVER.IMS_PER_BATCH = 24 = SOLVER.IMS_PER_GPU 4 x 2 process(es) per "
        "machine x 3 machine(s)"
    )
    # The original's quirk: a NUM_GPUS in the config wins over --num-gpus ...
    quirk = build_cfg(SWIN, ["SOLVER.IMS_PER_GPU", "1", "SOLVER.NUM_GPUS", "3"], 2, 2)
    assert quirk.SOLVER.IMS_PER_BATCH == 6 and quirk.SOLVER.NUM_GPUS == 2
    assert "SOLVER.NUM_GPUS 3 from the config, not --num-gpus 2" in batch_derivation(quirk, 2, 2)


def test_a_batch_that_cannot_be_split_is_a_one_line_error():
    class Args:
        config_file, num_gpus, num_machines = SWIN, 2, 2
        opts = ["SOLVER.IMS_PER_GPU", "1", "SOLVER.NUM_GPUS", "3"]

    # ... and can then leave a batch (6) that 4 processes cannot share.
    with pytest.raises(ValueError, match=r"IMS_PER_BATCH 6 .* cannot be split evenly over 4"):
        check_world(Args, 4)


def test_torchrun_environment_is_all_or_nothing():
    assert torchrun_environment({}) is None
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    env.update(MASTER_ADDR="node0", MASTER_PORT="29500")
    assert torchrun_environment(env) == {
        "RANK": 3, "WORLD_SIZE": 4, "LOCAL_RANK": 1, "LOCAL_WORLD_SIZE": 2,
    }  # fmt: skip
    with pytest.raises(ValueError, match="RANK, WORLD_SIZE set but not LOCAL_RANK"):
        torchrun_environment({"RANK": "0", "WORLD_SIZE": "2"})


def test_peer_failures_become_one_line():
    gloo = RuntimeError("[gloo/transport/tcp/pair.cc:538] Connection closed by peer [::1]:4242")
    assert "Connection closed by peer" in peer_failure(gloo)
    spawned = torch.multiprocessing.ProcessRaisedException(
        "\n\n-- Process 0 terminated with the following error:\nTraceback (most recent call "
        "last):\n  File ...\nRuntimeError: [pair.cc:598] Timed out waiting 60000ms for recv",
        0,
        123,
    )
    message = peer_failure(spawned)
    assert "\n" not in message and "Timed out waiting 60000ms" in message
    killed = torch.multiprocessing.ProcessExitedException(
        "process 0 terminated with signal SIGKILL", 0, 123, -9, "SIGKILL"
    )
    assert "SIGKILL" in peer_failure(killed)
    assert peer_failure(ValueError("config.yaml: config file not found")) is None


# ---------------------------------------------------------------------------- multi-process


@pytest.fixture(scope="module")
def one_by_two(tmp_path_factory):
    """The reference: one machine, 2 processes (--num-gpus 2), 3 iterations."""
    require_shared()
    out = tmp_path_factory.mktemp("one_by_two")
    proc = launchers.one_machine(out, "SOLVER.MAX_ITER", "3", num_gpus=2)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return out


def _assert_same_losses(out, reference):
    got, expected = launchers.losses(out), launchers.losses(reference)
    assert sorted(expected) == [0, 1, 2] and sorted(got)[:3] == [0, 1, 2]
    for it in (0, 1, 2):
        for key in LOSS_KEYS:
            assert got[it][key] == pytest.approx(expected[it][key], abs=1e-4), (it, key)


def test_two_machines_train_checkpoint_once_and_resume_together(one_by_two, tmp_path):
    out = tmp_path / "two_by_one"
    opts = ["SOLVER.MAX_ITER", "3", "SOLVER.CHECKPOINT_PERIOD", "2"]
    for code, output in launchers.machines(out, *opts):
        assert code == 0, output[-4000:]
        assert "FutureWarning" not in output
    _assert_same_losses(out, one_by_two)
    log0, log1 = (out / "log.txt").read_text(), (out / "log.txt.rank1").read_text()
    assert "IMS_PER_BATCH = 2 = SOLVER.IMS_PER_GPU 1 x 1 process(es) per machine x 2" in log0
    assert log0.count("Saving checkpoint to") == 2 and "Saving checkpoint" not in log1
    assert sorted(p.name for p in out.glob("*.pth")) == ["model_0000001.pth", "model_final.pth"]

    resumed = launchers.machines(out, "SOLVER.MAX_ITER", "5", flags=["--resume"])
    for code, output in resumed:
        assert code == 0, output[-4000:]
    for log in ("log.txt", "log.txt.rank1"):
        text = (out / log).read_text()
        assert text.count("Starting training from iteration 3") == 1, log
    assert "All 2 processes start from iteration 3" in (out / "log.txt").read_text()
    assert sorted(launchers.losses(out)) == [0, 1, 2, 3, 4]
    assert torch.load(out / "model_final.pth", weights_only=True)["iteration"] == 4


def test_torchrun_trains_like_num_gpus_and_evaluates_like_one_process(one_by_two, tmp_path):
    proc = launchers.torchrun(tmp_path / "torchrun", "SOLVER.MAX_ITER", "3")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    _assert_same_losses(tmp_path / "torchrun", one_by_two)
    log = (tmp_path / "torchrun" / "log.txt").read_text()
    assert "torchrun environment: rank 0 of 2, local rank 0 of 2, 1 machine(s)" in log

    weights = str(one_by_two / "model_final.pth")
    evaluation = ["DATASETS.TEST", "('assr_test',)", "MODEL.WEIGHTS", weights]
    under_torchrun = launchers.torchrun(tmp_path / "eval2", *evaluation, flags=["--eval-only"])
    alone = launchers.one_machine(tmp_path / "eval1", *evaluation, flags=["--eval-only"])
    for proc in (under_torchrun, alone):
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    two = (tmp_path / "eval2" / "assr_test_metrics.json").read_text()
    assert two == (tmp_path / "eval1" / "assr_test_metrics.json").read_text()


def test_a_killed_peer_ends_the_other_with_one_line(tmp_path):
    require_shared()
    port, out = launchers.free_port(), tmp_path / "run"
    flags = ["--dist-timeout", "60"]
    opts = ["SOLVER.MAX_ITER", "100000", "SOLVER.CHECKPOINT_PERIOD", "100000"]
    workers = [launchers.torchrun_worker(out, r, 2, port, *opts, flags=flags) for r in (0, 1)]
    try:
        deadline = time.time() + 400
        log1 = out / "log.txt.rank1"
        while not (log1.exists() and "Starting training" in log1.read_text()):
            ended = [r for r, w in enumerate(workers) if w.poll() is not None]
            errors = [(tmp_path / f"worker{r}.err").read_text()[-2000:] for r in ended]
            assert not ended, f"a worker ended before training: {errors}"
            assert time.time() < deadline, "training did not start"
            time.sleep(0.5)
        workers[1].kill()
        killed_at = time.time()
        workers[0].wait(timeout=60 + 120)
        ended_after = time.time() - killed_at
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait()
    stderr = (tmp_path / "worker0.err").read_text()
    assert workers[0].returncode not in (0, None)
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("train_net.py: error: distributed job failed:"), stderr[-3000:]
    assert "Traceback" not in stderr
    assert ended_after < 60 + 60, ended_after


UNREGISTERED = "train_net.py: error: DATASETS.TEST: dataset 'nope' is not registered"


def _frames_of_ours(stderr):
    """Traceback frames in this repository's files (torchrun's own report has none)."""
    return [
        line
        for line in stderr.splitlines()
        if line.strip().startswith("File ") and ("train_net.py" in line or "/seqrank/" in line)
    ]


def test_a_user_error_of_spawned_processes_is_printed_once(tmp_path):
    require_shared()
    proc = launchers.one_machine(tmp_path, "DATASETS.TEST", "('nope',)", num_gpus=2)
    assert proc.returncode == 1, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith(UNREGISTERED), proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == errors[0]
    assert "Traceback" not in proc.stderr and "Terminating process" not in proc.stderr


def test_a_user_error_under_torchrun_is_one_line_per_process(tmp_path):
    require_shared()
    proc = launchers.torchrun(tmp_path, "DATASETS.TEST", "('nope',)")
    assert proc.returncode == 1, proc.stderr[-3000:]
    # Each worker is a process of its own (under srun each has its own log): one line each, or
    # only the first when torchrun stopped the other before it got there. torchrun then prints
    # its own failure report, with a traceback of torchrun itself.
    errors = [line for line in proc.stderr.splitlines() if line.startswith("train_net.py: ")]
    assert 1 <= len(errors) <= 2, proc.stderr[-3000:]
    assert all(line.startswith(UNREGISTERED) for line in errors), errors
    assert not _frames_of_ours(proc.stderr), proc.stderr[-3000:]


def test_more_processes_than_gpus_is_a_one_line_error(monkeypatch):
    class Args:
        config_file, num_gpus, num_machines, opts = SWIN, 4, 1, []

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ValueError, match=r"--num-gpus 4, but this machine has 2 CUDA device"):
        check_world(Args, 4)


def test_processes_resuming_from_different_iterations_stop(monkeypatch):
    from types import SimpleNamespace

    from detectron2.utils import comm

    from seqrank.engine import Trainer

    checkpointer = SimpleNamespace(resume_or_load=lambda *a, **k: None, has_checkpoint=lambda: True)
    cfg = SimpleNamespace(MODEL=SimpleNamespace(WEIGHTS=""), OUTPUT_DIR="output/x")
    trainer = Trainer.__new__(Trainer)  # just what resume_or_load reads
    trainer.checkpointer, trainer.cfg, trainer.iter, trainer.start_iter = checkpointer, cfg, 6, 0
    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    monkeypatch.setattr(comm, "all_gather", lambda value: [value, 0])
    with pytest.raises(ValueError, match=r"different iterations \(rank 0: 7, rank 1: 0\)"):
        Trainer.resume_or_load(trainer, resume=True)
    monkeypatch.setattr(comm, "all_gather", lambda value: [value, value])
    Trainer.resume_or_load(trainer, resume=True)
    assert trainer.start_iter == 7
