#!/usr/bin/env bash
# Installs detectron2 into the given interpreter's environment, preferring, in order:
#   1. a detectron2 that already imports;
#   2. upstream git (the official install; needs GitHub);
#   3. the pure-Python wheel of sal-detectron2 0.7.2 (upstream @ a59f0563), unpacked into
#      <venv>/detectron2-pure and put on sys.path with a .pth file (see shared/spec/ENVIRONMENT.md).
# It prints which source it used.
set -euo pipefail
VPY=${1:-.venv/bin/python}
log() { echo "[detectron2] $*"; }

if "$VPY" -c 'import detectron2, detectron2.engine' 2>/dev/null; then
  log "using the detectron2 already installed: $("$VPY" -c 'import detectron2,os;print(os.path.dirname(detectron2.__file__))')"
  exit 0
fi

if [ "${SEQRANK_TRY_D2_GIT:-1}" = 1 ] && timeout 20 git ls-remote https://github.com/facebookresearch/detectron2.git HEAD >/dev/null 2>&1; then
  log "installing upstream detectron2 from GitHub"
  if "$VPY" -m pip install --quiet --no-build-isolation 'git+https://github.com/facebookresearch/detectron2.git'; then
    log "source: upstream git"
    exit 0
  fi
  log "upstream build failed; falling back to the pure-Python wheel"
fi

venv=$("$VPY" -c 'import sys;print(sys.prefix)')
site=$("$VPY" -c 'import sysconfig;print(sysconfig.get_paths()["purelib"])')
target="$venv/detectron2-pure"
rm -rf "$target"
"$VPY" -m pip install --quiet --no-deps --only-binary=:all: --python-version 3.10 \
  --target "$target" sal-detectron2==0.7.2
# The bundled _C extension is built for CPython 3.10 / CUDA 12 and never loads here; drop it.
rm -f "$target"/detectron2/_C*.so
# Its metadata pins numpy<2 for the 3.10 build; pip would report a false conflict on every install.
rm -rf "$target"/sal_detectron2-*.dist-info
echo "$target" > "$site/detectron2_pure.pth"
"$VPY" -c 'import detectron2.engine, detectron2.config, detectron2.modeling' \
  || { log "error: detectron2 does not import after installing sal-detectron2" >&2; exit 1; }
log "source: sal-detectron2==0.7.2 (pure Python, upstream a59f0563) in $target"
