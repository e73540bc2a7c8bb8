#!/bin/sh
# SeqRank terminal demo on the bundled example images, as the original demo.sh.
#
#   sh demo/demo.sh PATH_TO_CHECKPOINT [extra demo.py options]
#
# Uses ../configs/swinL.yaml like the original; a *correct_ckp.pth checkpoint gets
# ../configs/swinL_correct.yaml instead (it does not load with swinL.yaml), and
# SEQRANK_CONFIG=path/to/config.yaml overrides both. Outputs go to demo/output/.
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
case "$checkpoint" in
    *correct_ckp.pth) config=../configs/swinL_correct.yaml ;;
    *) config=../configs/swinL.yaml ;;
esac
if [ -n "${SEQRANK_CONFIG:-}" ]; then
    case "$SEQRANK_CONFIG" in
        /*) config=$SEQRANK_CONFIG ;;
        *) config="$(pwd)/$SEQRANK_CONFIG" ;;
    esac
fi

cd "$(dirname "$0")"
if [ -n "${PYTHON:-}" ]; then
    python=$PYTHON
elif [ -x ../.venv/bin/python ]; then
    python=../.venv/bin/python
else
    python=python3
fi

exec "$python" demo.py --config-file "$config" --input examples/*.jpg --output output "$@" \
    --opts MODEL.WEIGHTS "$checkpoint"
