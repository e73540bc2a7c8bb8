"""Starting the processes of a job on one or many machines, and ending them when a peer is lost.

Two ways to run W processes:

* detectron2's spawner: every machine runs ``train_net.py --num-gpus N --num-machines M
  --machine-rank R --dist-url tcp://HOST:PORT``, which starts N processes there (W = N x M);
* torchrun, or any launcher that sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
  ``MASTER_PORT`` for every process (SLURM's ``srun`` with a small wrapper): each process joins
  the process group from that environment (``env://``) instead of spawning. ``LOCAL_WORLD_SIZE``
  (set by torchrun) gives the processes per machine; without it every process counts as a
  machine of its own.

Either way the total batch is ``SOLVER.IMS_PER_GPU x W`` (:func:`seqrank.engine.build_cfg`). A
process that dies or stops answering ends the others with one line (:class:`PeerLost`): at once
when its connections close, after ``--dist-timeout`` seconds when it hangs. A user error in a
spawned process (its ``main_func`` exits with a message, see :func:`seqrank.cli.user_errors`)
is printed once, by the launching process, which exits with code 1.
"""

import functools
import logging
import os
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine import launch
from detectron2.utils import comm

from ..cli import ConfigError, debug_requested
from .setup import build_cfg

__all__ = [
    "TORCHRUN_VARIABLES",
    "PeerLost",
    "ProcessUserError",
    "add_launch_arguments",
    "launch_job",
    "peer_failure",
    "torchrun_environment",
]

logger = logging.getLogger(__name__)
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
DEFAULT_TIMEOUT_S = 1800
# What the GLOO / NCCL / store errors say when the other side of a collective has gone.
PEER_SIGNS = (
    "Connection closed by peer",
    "Connection reset by peer",
    "Broken pipe",
    "Connection refused",
    "Timed out",
    "timed out",
    "timeout after",
    "NCCL communicator was aborted",
)


class PeerLost(RuntimeError):
    """Another process of the job died, stopped answering, or was never reached."""


class ProcessUserError(Exception):
    """A spawned process's one-line user error, handed to the launching process to print.

    Printed by every process that hit it, the same line would appear once per process (a config
    error stops them all at once); torch hands the parent only the first failure.
    """


def add_launch_arguments(parser):
    """``--dist-timeout`` (the other launch flags come from detectron2's parser)."""
    parser.add_argument(
        "--dist-timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help="how long a process waits for the others in a collective (start-up, gradient "
        "all-reduce, metrics) before the job ends with an error; a peer that dies is usually "
        f"noticed at once (default {DEFAULT_TIMEOUT_S})",
    )
    return parser


def torchrun_environment(environ=None):
    """``{RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE}`` as ints when all five torchrun
    variables are set, None when none is.

    Raises:
        ConfigError (a ValueError): only some of them are set, or they are not integers / out of
            range.
    """
    environ = os.environ if environ is None else environ
    present = [name for name in TORCHRUN_VARIABLES if environ.get(name)]
    if not present:
        return None
    missing = [name for name in TORCHRUN_VARIABLES if name not in present]
    if missing:
        raise ConfigError(
            f"{', '.join(present)} set but not {', '.join(missing)}: set all of "
            f"{', '.join(TORCHRUN_VARIABLES)} (as torchrun does) or none"
        )
    try:
        env = {k: int(environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
        env["LOCAL_WORLD_SIZE"] = int(environ.get("LOCAL_WORLD_SIZE", 1))
    except ValueError:
        raise ConfigError(
            "RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE must be integers"
        ) from None
    world, local_world = env["WORLD_SIZE"], env["LOCAL_WORLD_SIZE"]
    if not (0 <= env["RANK"] < world and 0 <= env["LOCAL_RANK"] < local_world):
        raise ConfigError(f"inconsistent torchrun environment {env}")
    if world % local_world:
        raise ConfigError(f"WORLD_SIZE {world} is not a multiple of LOCAL_WORLD_SIZE {local_world}")
    return env


def check_world(args, world_size):
    """One-line errors, before any process starts, for a batch that cannot be split over the
    ``world_size`` processes and for more processes per machine than it has GPUs."""
    cfg = build_cfg(args.config_file, args.opts, args.num_gpus, args.num_machines)
    batch, per_gpu = cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.IMS_PER_GPU
    if batch <= 0 or batch % world_size:
        raise ConfigError(
            f"SOLVER.IMS_PER_BATCH {batch} (SOLVER.IMS_PER_GPU {per_gpu} x "
            f"{batch // max(1, per_gpu * args.num_machines) if per_gpu else 0} per machine x "
            f"{args.num_machines} machine(s)) cannot be split evenly over {world_size} processes"
        )
    # detectron2's spawner asserts this wherever CUDA exists (one GPU per process).
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count and args.num_gpus > count:
        raise ConfigError(
            f"--num-gpus {args.num_gpus}, but this machine has {count} CUDA device(s)"
        )


def launch_job(main_func, args):
    """Run ``main_func(args)`` in every process of the job (see the module docstring).

    Raises:
        PeerLost: another process failed, was killed or timed out (one-line message).
        SystemExit: a spawned process's user error (its one line as the message, exit code 1).
    """
    timeout = timedelta(seconds=args.dist_timeout)
    env = torchrun_environment()
    try:
        if env is not None:
            return _run_in_environment(main_func, args, env, timeout)
        world_size = args.num_gpus * args.num_machines
        if world_size > 1:
            check_world(args, world_size)
            if not debug_requested(args):
                # "Terminating process N via signal SIGTERM" after the first failure: the
                # failure's own line is what the user needs.
                logging.getLogger("torch.multiprocessing.spawn").setLevel(logging.ERROR)
        return launch(
            functools.partial(_report_to_parent, main_func) if world_size > 1 else main_func,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
            timeout=timeout,
        )
    except (RuntimeError, mp.ProcessExitedException, mp.ProcessRaisedException) as exc:
        reported = reported_user_error(exc)
        if reported is not None:
            raise SystemExit(reported) from None
        message = peer_failure(exc)
        if message is None:
            raise
        raise PeerLost(message) from None


def _report_to_parent(main_func, args):
    """``main_func(args)`` in a spawned process; a user error (``SystemExit`` with a message)
    leaves as :class:`ProcessUserError` so that the parent prints it (and torch then stops the
    other processes). Exit codes (e.g. 143 after SIGTERM) stay as they are."""
    try:
        return main_func(args)
    except SystemExit as exc:
        if isinstance(exc.code, str):
            raise ProcessUserError(exc.code) from None
        raise


def reported_user_error(exc):
    """The one-line message of a :class:`ProcessUserError` raised in a spawned process (torch
    hands the parent its traceback as text, ending with that line), else None."""
    if not isinstance(exc, mp.ProcessRaisedException):
        return None
    lines = str(exc).strip().splitlines()
    prefix = f"{ProcessUserError.__module__}.{ProcessUserError.__qualname__}: "
    if lines and lines[-1].startswith(prefix):
        return lines[-1][len(prefix) :]
    return None


def _run_in_environment(main_func, args, env, timeout):
    """The torchrun path: this process is one of WORLD_SIZE, already started by the launcher."""
    world, local_world = env["WORLD_SIZE"], env["LOCAL_WORLD_SIZE"]
    ignored = args.num_gpus != 1 or args.num_machines != 1 or args.machine_rank != 0
    args.num_gpus, args.num_machines = local_world, world // local_world
    args.machine_rank = env["RANK"] // local_world
    args.launch_notes = [
        f"torchrun environment: rank {env['RANK']} of {world}, local rank {env['LOCAL_RANK']} "
        f"of {local_world}, {args.num_machines} machine(s)"
    ]
    if ignored:
        args.launch_notes.append("--num-gpus / --num-machines / --machine-rank are ignored")
    if world == 1:
        return main_func(args)
    check_world(args, world)
    cuda = torch.cuda.is_available()
    if cuda:
        if env["LOCAL_RANK"] >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK {env['LOCAL_RANK']}, but this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
        torch.cuda.set_device(env["LOCAL_RANK"])
    dist.init_process_group(
        "nccl" if cuda else "gloo",
        init_method="env://",
        world_size=world,
        rank=env["RANK"],
        timeout=timeout,
    )
    comm.create_local_process_group(local_world)
    comm.synchronize()
    result = main_func(args)
    # Not on failure: with a lost peer the teardown itself could wait for it.
    dist.destroy_process_group()
    return result


def peer_failure(exc):
    """A one-line message when ``exc`` is a distributed failure (a lost peer), else None.

    ``exc`` is raised in this process, or by a spawned process of this machine
    (``ProcessRaisedException``, whose text ends with the child's exception line).
    """
    if isinstance(exc, mp.ProcessExitedException):
        return f"a process of this machine ended abnormally: {exc}"
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    cause = lines[-1] if lines else type(exc).__name__
    is_dist_error = isinstance(exc, getattr(dist, "DistError", ()))
    if not (is_dist_error or any(sign in cause for sign in PEER_SIGNS)):
        return None
    if len(cause) > 300:
        cause = cause[:297] + "..."
    return (
        f"distributed job failed: {cause} (another process died, was killed or hung past "
        "--dist-timeout: see its log)"
    )
