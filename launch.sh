#!/bin/sh
# SeqRank browser demo.
#
#   sh launch.sh PATH_TO_CHECKPOINT [--host H] [--port P] [--max-upload-mb N] [--max-side N]
#
# Serves http://127.0.0.1:10000 by default. The config follows the checkpoint: SEQRANK_CONFIG when
# set, else config.yaml in the checkpoint's folder (what training writes to OUTPUT_DIR), else the
# original's file-name rule (*correct_ckp.pth -> configs/swinL_correct.yaml, anything else ->
# configs/swinL.yaml); the server logs which and why. Runs on the CPU when there is no GPU.
# Uses .venv/bin/python when it exists (else python3; override with PYTHON=...). Installs nothing.
set -eu

usage() {
    echo "usage: sh launch.sh PATH_TO_CHECKPOINT [--host H] [--port P] [--max-upload-mb N]" >&2
    echo "       (SEQRANK_CONFIG=config.yaml overrides the config that follows the checkpoint)" >&2
}

if [ $# -lt 1 ]; then
    usage
    exit 2
fi
case "$1" in
    -h | --help)
        usage
        exit 0
        ;;
esac

checkpoint=$1
shift
if [ ! -f "$checkpoint" ]; then
    echo "launch.sh: checkpoint not found: $checkpoint" >&2
    exit 1
fi

# Paths given relative to the caller's directory stay valid after the cd below.
absolute() {
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s/%s\n' "$(pwd)" "$1" ;;
    esac
}
checkpoint=$(absolute "$checkpoint")
if [ -n "${SEQRANK_CONFIG:-}" ]; then
    SEQRANK_CONFIG=$(absolute "$SEQRANK_CONFIG")
    export SEQRANK_CONFIG
fi

cd "$(dirname "$0")"
if [ -n "${PYTHON:-}" ]; then
    python=$PYTHON
elif [ -x .venv/bin/python ]; then
    python=.venv/bin/python
else
    python=python3
fi

exec "$python" -m online.app --output output "$@" \
    --opts MODEL.WEIGHTS "$checkpoint"
