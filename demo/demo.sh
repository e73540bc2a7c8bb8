#!/bin/sh
# SeqRank terminal demo on the bundled example images, as the original demo.sh.
#
#   sh demo/demo.sh PATH_TO_CHECKPOINT [extra demo.py options]
#
# The config follows the checkpoint (demo.py logs which and why): SEQRANK_CONFIG when set, else
# config.yaml in the checkpoint's folder, else the original's file-name rule (*correct_ckp.pth ->
# configs/swinL_correct.yaml, anything else -> configs/swinL.yaml). Outputs go to demo/output/.
set -eu

if [ $# -lt 1 ]; then
    echo "usage: sh demo/demo.sh PATH_TO_CHECKPOINT [extra demo.py options]" >&2
    exit 2
fi
checkpoint=$1
shift
case "$checkpoint" in
    /*) ;;
    *) checkpoint="$(pwd)/$checkpoint" ;;
esac
if [ -n "${SEQRANK_CONFIG:-}" ]; then
    case "$SEQRANK_CONFIG" in
        /*) ;;
        *) SEQRANK_CONFIG="$(pwd)/$SEQRANK_CONFIG" ;;
    esac
    export SEQRANK_CONFIG
fi

cd "$(dirname "$0")"
if [ -n "${PYTHON:-}" ]; then
    python=$PYTHON
elif [ -x ../.venv/bin/python ]; then
    python=../.venv/bin/python
else
    python=python3
fi

exec "$python" demo.py --input examples/*.jpg --output output "$@" \
    --opts MODEL.WEIGHTS "$checkpoint"
