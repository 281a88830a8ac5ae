#!/usr/bin/env bash
# Creates (or refreshes) the project's isolated environment in .venv and installs the whole stack:
# torch + torchvision whose compiled ops load on CPU and CUDA, detectron2 with ViTDet support,
# what detectron2 needs beside it, timm, pycocotools and lift_det itself (editable).
#
# Idempotent: a stamp in .venv records a hash of this script and setup.py; when it matches and the
# stack imports, the script exits in seconds.
#
# Environment knobs:
#   LIFT_DET_VENV=path         where the environment lives (default: .venv in the repo root)
#   LIFT_DET_PYTHON=python3.11 interpreter used to create it
#   LIFT_DET_D2_SOURCE=auto|upstream|registry
#       upstream: pip install detectron2 from its git source (needs a route to the source host)
#       registry: the registry's republish sal-detectron2==0.7.2, repacked as a pure-Python wheel
#       auto (default): upstream when the source host answers within a few seconds, else registry
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LIFT_DET_VENV:-$ROOT/.venv}"
PY_BOOT="${LIFT_DET_PYTHON:-}"
D2_SOURCE="${LIFT_DET_D2_SOURCE:-auto}"
D2_GIT="https://github.com/facebookresearch/detectron2.git"

# Versions known to work together (see README, "Installing").
TORCH_PIN="torch==2.14.1"
TORCHVISION_PIN="torchvision==0.29.1"
D2_REGISTRY_PIN="sal-detectron2==0.7.2"
D2_DEPS=(
  "setuptools<81"          # detectron2.model_zoo imports pkg_resources, gone from setuptools>=81
  "wheel"
  "numpy<2"
  "Pillow>=9" "matplotlib" "pycocotools>=2.0.6" "termcolor>=1.1" "yacs>=0.1.8" "tabulate"
  "cloudpickle" "tqdm>4.29.0" "tensorboard" "omegaconf>=2.1,<2.4" "hydra-core>=1.1" "black"
  "packaging" "fvcore>=0.1.5,<0.1.6" "iopath>=0.1.7,<0.1.10"
)

log() { printf '[setup] %s\n' "$*" >&2; }
fail() {
  printf '[setup] ERROR: %s\n' "$1" >&2
  [ -n "${2:-}" ] && printf '[setup] try: %s\n' "$2" >&2
  exit 1
}

STAMP="$VENV/.lift_det_setup"
want_stamp() {
  cat "$ROOT/dev/setup_env.sh" "$ROOT/setup.py" | sha256sum | cut -d' ' -f1
}

check_stack() {
  "$VENV/bin/python" - <<'PY'
import torch, torchvision, detectron2, lift_det, onnx, onnxruntime, psutil  # noqa: F401
from torchvision.ops import nms
from detectron2.modeling.backbone.vit import ViT  # noqa: F401
import torch as t
nms(t.rand(4, 4) * 10, t.rand(4), 0.5)
print(f"lift_det {lift_det.__version__} | detectron2 {detectron2.__version__} "
      f"({detectron2.__file__.rsplit('/', 2)[0]}) | torch {torch.__version__} | "
      f"torchvision {torchvision.__version__} | cuda available: {torch.cuda.is_available()}")
PY
}

# up to date: one import of the stack (seconds) says so, and its versions
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(want_stamp)" ] && stack="$(check_stack 2>/dev/null)"; then
  log "environment up to date: $stack"
  exit 0
fi

start=$(date +%s)

# 1. the interpreter and the venv
if [ ! -x "$VENV/bin/python" ]; then
  if [ -z "$PY_BOOT" ]; then
    for cand in python3.11 python3.10 python3.12 python3; do
      if command -v "$cand" >/dev/null 2>&1; then PY_BOOT="$cand"; break; fi
    done
  fi
  [ -n "$PY_BOOT" ] || fail "no python3 interpreter found" "install Python 3.10-3.12 and set LIFT_DET_PYTHON"
  log "creating $VENV with $($PY_BOOT --version 2>&1)"
  "$PY_BOOT" -m venv "$VENV" || fail "could not create a venv with $PY_BOOT" "apt-get install python3-venv, or set LIFT_DET_PYTHON"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

pip_step() {  # pip_step "what" args...
  local what="$1"; shift
  log "installing $what"
  "${PIP[@]}" install -q "$@" || fail "pip could not install $what" \
    "rerun with network access to the package registry; check 'pip install $*' by hand for the error"
}

pip_step "pip/setuptools/wheel" --upgrade "pip" "setuptools<81" "wheel"

# 2. torch + torchvision. The registry's default builds carry CUDA libraries; their compiled
# torchvision ops load on CPU-only machines too (the CPU-only torch wheel has no matching
# torchvision build whose ops load).
if ! "$PY" -c "import torch, torchvision, torchvision.ops as o, torch as t; o.nms(t.rand(2,4)*9, t.rand(2), .5); assert torch.__version__.startswith('${TORCH_PIN#torch==}') and torchvision.__version__.startswith('${TORCHVISION_PIN#torchvision==}')" >/dev/null 2>&1; then
  pip_step "$TORCH_PIN $TORCHVISION_PIN (several GB on first install)" "$TORCH_PIN" "$TORCHVISION_PIN"
fi
"$PY" -c "import torchvision.ops as o, torch as t; o.nms(t.rand(2,4)*9, t.rand(2), .5)" \
  || fail "torchvision's compiled ops do not load with this torch" \
     "pip install --force-reinstall $TORCH_PIN $TORCHVISION_PIN (CPU-only torch wheels have no working torchvision)"

# 3. detectron2's own dependencies
pip_step "detectron2's dependencies" "${D2_DEPS[@]}"

# 4. detectron2 itself
d2_ok() { "$PY" -c "from detectron2.modeling.backbone.vit import ViT, SimpleFeaturePyramid; import detectron2.model_zoo" >/dev/null 2>&1; }
if ! d2_ok; then
  if [ "$D2_SOURCE" = "auto" ]; then
    if timeout 8 git ls-remote --heads "$D2_GIT" >/dev/null 2>&1; then D2_SOURCE=upstream; else D2_SOURCE=registry; fi
  fi
  case "$D2_SOURCE" in
    upstream)
      log "detectron2: building upstream from source ($D2_GIT)"
      "${PIP[@]}" install -q --no-build-isolation "git+$D2_GIT" \
        || fail "building detectron2 from source failed" \
             "install a C++ compiler (and CUDA toolkit for GPU ops), or LIFT_DET_D2_SOURCE=registry"
      ;;
    registry)
      log "detectron2: using the registry republish $D2_REGISTRY_PIN (upstream sources, repacked pure-Python)"
      tmp="$(mktemp -d)"
      trap 'rm -rf "$tmp"' EXIT
      "${PIP[@]}" download -q --no-deps --only-binary=:all: --python-version 3.10 \
        -d "$tmp/dl" "$D2_REGISTRY_PIN" \
        || fail "could not download $D2_REGISTRY_PIN" "check that the package registry is reachable"
      whl="$(ls "$tmp"/dl/*.whl | head -n1)"
      # The wheel is tagged cp310 and carries a _C extension built for another torch: drop _C
      # (detectron2 falls back to pure-Python / torchvision ops) and retag it as pure Python.
      "$PY" -m wheel unpack -d "$tmp/src" "$whl" >/dev/null
      pkgdir="$(ls -d "$tmp"/src/*/)"
      find "$pkgdir" -name '_C*.so' -delete
      wheelfile="$(ls "$pkgdir"/*.dist-info/WHEEL)"
      sed -i -e 's/^Tag: .*/Tag: py3-none-any/' -e 's/^Root-Is-Purelib: .*/Root-Is-Purelib: true/' "$wheelfile"
      mkdir -p "$tmp/out"
      "$PY" -m wheel pack -d "$tmp/out" "$pkgdir" >/dev/null
      "${PIP[@]}" install -q --no-deps --force-reinstall "$tmp"/out/*.whl \
        || fail "installing the repacked detectron2 wheel failed" "rerun with LIFT_DET_D2_SOURCE=registry after 'rm -rf $VENV'"
      ;;
    *) fail "LIFT_DET_D2_SOURCE must be auto, upstream or registry (got '$D2_SOURCE')" ;;
  esac
  d2_ok || fail "detectron2 was installed but its ViT backbone does not import" \
    "run: $PY -c 'import detectron2.modeling.backbone.vit' to see the error"
  log "detectron2 source: $D2_SOURCE"
else
  log "detectron2 already installed"
fi
log "detectron2 $("$PY" -c 'import detectron2; print(detectron2.__version__, detectron2.__file__)')"

# 5. the project (editable), with its declared dependencies (timm, pycocotools, ...)
pip_step "lift_det (editable) and its dependencies" -e "$ROOT" "setuptools<81"
# export checks (tests): ONNX and onnxruntime; numpy stays < 2 for detectron2
pip_step "test, export and format tools" "pytest>=7" "pytest-timeout" "pytest-xdist>=3" "isort>=5" "flake8" \
  "onnx>=1.15,<1.20" "onnxruntime>=1.17,<1.21" "psutil" "numpy<2"

check_stack || fail "the stack does not import after install" "rm -rf $VENV and run this script again"
want_stamp > "$STAMP"
log "done in $(( $(date +%s) - start )) s"
