#!/bin/sh
# SeqRank browser demo.
#
#   sh launch.sh PATH_TO_CHECKPOINT [--host H] [--port P] [--max-upload-mb N] [--max-side N]
#
# Serves http://127.0.0.1:10000 by default. The config follows the checkpoint's file name, as in
# the original: *correct_ckp.pth -> configs/swinL_correct.yaml, anything else -> configs/swinL.yaml;
# set SEQRANK_CONFIG=path/to/config.yaml to choose another. Runs on the CPU when there is no GPU.
# Uses .venv/bin/python when it exists (else python3; override with PYTHON=...). Installs nothing.
set -eu

usage() {
    echo "usage: sh launch.sh PATH_TO_CHECKPOINT [--host H] [--port P] [--max-upload-mb N]" >&2
    echo "       (SEQRANK_CONFIG=config.yaml overrides the config chosen from the file name)" >&2
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

case "$checkpoint" in
    *correct_ckp.pth) config=configs/swinL_correct.yaml ;;
    *) config=configs/swinL.yaml ;;
esac
config=${SEQRANK_CONFIG:-$config}

# Paths given relative to the caller's directory stay valid after the cd below.
absolute() {
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s/%s\n' "$(pwd)" "$1" ;;
    esac
}
checkpoint=$(absolute "$checkpoint")
if [ -n "${SEQRANK_CONFIG:-}" ] && [ -f "$SEQRANK_CONFIG" ]; then
    config=$(absolute "$SEQRANK_CONFIG")
fi

cd "$(dirname "$0")"
if [ -n "${PYTHON:-}" ]; then
    python=$PYTHON
elif [ -x .venv/bin/python ]; then
    python=.venv/bin/python
else
    python=python3
fi

echo "launch.sh: config $config, checkpoint $checkpoint" >&2
exec "$python" -m online.app --config-file "$config" --output output "$@" \
    --opts MODEL.WEIGHTS "$checkpoint"
