#!/usr/bin/env bash
# SeqRank GPU smoke test: one PASS / FAIL / SKIP line per check, in a few minutes on one GPU,
# from a copy of this repository alone (no ../shared: it generates its own synthetic data).
#
#   bash benchmarks/gpu_smoke.sh            # exit 0 when no check failed
#
# Checks (the tiny quick-schedule model on a small synthetic benchmark; logs under $WORK):
#   data           python -m scripts.make_synthetic_sor (64 train / 8 test images, 128 px)
#   matcher-fp16   the issue-17 matcher case (62 % object, logits +-12) under fp16 autocast
#   ranking-syncs  host syncs of the inference ranking loop (CUDA sync debug mode): one per step
#   train-fp16     20 training iterations, AMP fp16 (GradScaler), one GPU
#   train-bf16     20 training iterations, AMP bf16, one GPU
#   eval-fp32      train_net.py --eval-only (fp32) with the fp16 run's checkpoint
#   ddp-2proc      2 processes x 1 GPU (NCCL), 20 iterations fp16 + periodic evaluation
#                  (SKIP on a machine with one GPU)
#   demo           demo/demo.py on one example photo with that checkpoint
#   gpu-bench      python -m benchmarks.gpu_bench (inference rows, training step, device paths);
#                  a row outside the parity tolerances is reported in its log and fails the check
# Without CUDA it prints "SKIP: no CUDA device" and exits 0.
#
# Environment: PYTHON (default .venv/bin/python, else python3); SEQRANK_SMOKE_DIR (work folder,
# default a new /tmp/seqrank_smoke.*); SEQRANK_SMOKE_DEVICE=cpu (development: runs every check
# that is not CUDA-only on the CPU, fewer iterations, GLOO for the 2 processes).
#
# Installing the pinned dependencies on a GPU machine without network
# ---------------------------------------------------------------------
# The versions are those of requirements.txt (torch 2.14.1 + torchvision 0.29.1, CUDA builds) and
# tools/install_detectron2.sh (pure-Python detectron2 from sal-detectron2 0.7.2). On a machine
# with network and the same platform (x86_64 Linux, Python 3.11), fill a folder with the wheels:
#   python3.11 -m pip download -d wheels -r requirements.txt pip==25.3 setuptools==80.9.0 wheel
#   python3.11 -m pip download -d wheels --no-deps --only-binary=:all: --python-version 3.10 \
#       sal-detectron2==0.7.2
# Carry wheels/ beside the repository (about 3 GB, mostly torch and its CUDA libraries); then on
# the GPU machine, with pip reading only that folder:
#   PIP_NO_INDEX=1 PIP_FIND_LINKS=$PWD/wheels SEQRANK_TRY_D2_GIT=0 bash tools/bootstrap.sh
# which creates .venv with exactly those versions. Check it with
#   .venv/bin/python -c "import torch, detectron2.engine; print(torch.cuda.is_available())"
set -uo pipefail
SCRIPT=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$0")/.."
REPO=$PWD
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=$REPO/.venv/bin/python
else PY=python3; fi
DEVICE=${SEQRANK_SMOKE_DEVICE:-cuda}
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
if [ "$DEVICE" = cpu ]; then
  # Development mode on a CPU: small and single-threaded (the tiny model on shared cores).
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
  ITERS=6 IMS=4 WORKERS=0 DDP_ITERS=4 AMP=bf16
else
  ITERS=20 IMS=8 WORKERS=2 DDP_ITERS=20 AMP=fp16
fi
CONFIG=configs/quick_schedules/synsor_tiny.yaml

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# train NAME PRECISION ITERS NUM_PROCS EXTRA...: train_net.py, then its log and outputs checked.
train() {
  local name=$1 precision=$2 iters=$3 procs=$4
  shift 4
  "$PY" train_net.py --num-gpus "$procs" --dist-url "tcp://127.0.0.1:$(free_port)" \
    --config-file "$CONFIG" MODEL.DEVICE "$DEVICE" DATASETS.ROOT "$WORK/data" \
    SOLVER.IMS_PER_GPU "$IMS" SOLVER.CHECKPOINT_PERIOD 100000 SOLVER.LOG_PERIOD 5 \
    DATALOADER.NUM_WORKERS "$WORKERS" SOLVER.AMP.ENABLED True SOLVER.AMP.PRECISION "$precision" \
    SOLVER.MAX_ITER "$iters" OUTPUT_DIR "$WORK/$name" "$@" >"$WORK/$name.run.log" 2>&1 \
    || { tail -n 5 "$WORK/$name.run.log"; return 1; }
  "$PY" -m benchmarks.smoke_checks train-run "$WORK/$name" "$WORK/$name.run.log" \
    --iters "$iters" --precision "$precision"
}

evaluate() {
  "$PY" train_net.py --eval-only --config-file "$CONFIG" MODEL.DEVICE "$DEVICE" \
    DATASETS.ROOT "$WORK/data" MODEL.WEIGHTS "$1" OUTPUT_DIR "$WORK/eval" \
    >"$WORK/eval.run.log" 2>&1 || { tail -n 5 "$WORK/eval.run.log"; return 1; }
  "$PY" -m benchmarks.smoke_checks eval-run "$WORK/eval" synsor_test "$WORK/eval.run.log"
}

demo() {
  local image
  image=$(ls "$REPO"/demo/examples/*.jpg | head -n 1)
  (cd "$REPO/demo" && "$PY" demo.py --config-file "../$CONFIG" --input "$image" \
    --output "$WORK/demo" --opts MODEL.WEIGHTS "$1" MODEL.DEVICE "$DEVICE") || return 1
  "$PY" -m benchmarks.smoke_checks demo-run "$WORK/demo" "$(basename "$image" .jpg)"
}

# A check that is a shell function runs in a fresh copy of this script: `timeout` needs a program.
if [ "${1:-}" = --step ]; then
  shift
  "$@"
  exit $?
fi

if [ "$DEVICE" != cpu ]; then
  if ! "$PY" -c 'import torch' 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1; then
      echo "FAIL env: $PY cannot import torch (install the pinned wheels: see this script's header)"
      exit 1
    fi
    echo "SKIP: no CUDA device"
    exit 0
  fi
  if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "SKIP: no CUDA device"
    exit 0
  fi
  GPUS=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
else
  GPUS=2
fi
export WORK=${SEQRANK_SMOKE_DIR:-$(mktemp -d /tmp/seqrank_smoke.XXXXXX)}
export SEQRANK_SMOKE_DIR=$WORK
mkdir -p "$WORK"
START=$SECONDS
FAILED=0

echo "seqrank gpu_smoke: device $DEVICE, work folder $WORK"
"$PY" -c 'import torch; c = torch.cuda.is_available(); print("  torch", torch.__version__, "|",
  (torch.cuda.get_device_name() + ", %d GPU(s)" % torch.cuda.device_count()) if c else "CPU")'

# run_check NAME TIMEOUT COMMAND...: PASS / FAIL with the command's last output line.
run_check() {
  local name=$1 limit=$2 t0=$SECONDS log="$WORK/$1.log" rc=0
  shift 2
  timeout "$limit" "$@" >"$log" 2>&1 || rc=$?
  if [ $rc = 0 ]; then
    echo "PASS $name ($((SECONDS - t0)) s): $(tail -n 1 "$log")"
  else
    [ $rc = 124 ] && echo "timed out after $limit s" >>"$log"
    echo "FAIL $name ($((SECONDS - t0)) s, exit $rc): $(tail -n 1 "$log") [log: $log]"
    FAILED=$((FAILED + 1))
  fi
}

run_check data 300 "$PY" -m scripts.make_synthetic_sor --root "$WORK/data" --name synsor \
  --seed 0 --num-train 64 --num-test 8 --size 128 --no-progress
run_check matcher-fp16 120 "$PY" -m benchmarks.smoke_checks matcher --device "$DEVICE"
run_check ranking-syncs 180 "$PY" -m benchmarks.smoke_checks ranking-syncs --device "$DEVICE"
if [ "$DEVICE" = cpu ]; then
  echo "SKIP train-fp16: fp16 autocast training is CUDA-only"
else
  run_check train-fp16 300 bash "$SCRIPT" --step train fp16 fp16 "$ITERS" 1 DATASETS.TEST "()"
fi
run_check train-bf16 300 bash "$SCRIPT" --step train bf16 bf16 "$ITERS" 1 DATASETS.TEST "()"
CKPT=$WORK/fp16/model_final.pth
[ -f "$CKPT" ] || CKPT=$WORK/bf16/model_final.pth
run_check eval-fp32 300 bash "$SCRIPT" --step evaluate "$CKPT"
if [ "$GPUS" -ge 2 ]; then
  run_check ddp-2proc 400 bash "$SCRIPT" --step train ddp "$AMP" "$DDP_ITERS" 2 \
    TEST.EVAL_PERIOD $((DDP_ITERS / 2))
else
  echo "SKIP ddp-2proc: needs 2 GPUs, this machine has $GPUS"
fi
run_check demo 300 bash "$SCRIPT" --step demo "$CKPT"
if [ "$DEVICE" = cpu ]; then
  run_check gpu-bench 900 "$PY" -m benchmarks.gpu_bench --device cpu --only tiny --reps 1 \
    --train-model tiny --train-size 64 --train-batch 2 --train-steps 1 --tiny-weights "$CKPT"
else
  run_check gpu-bench 600 "$PY" -m benchmarks.gpu_bench --reps 3 --train-steps 3 \
    --tiny-weights "$CKPT"
fi

echo "gpu_smoke: $FAILED check(s) failed, $((SECONDS - START)) s in all (logs in $WORK)"
[ "$FAILED" = 0 ]
