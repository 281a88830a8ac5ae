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
#   LIFT_DET_INSTALLER=auto|uv|pip
#       uv: install with uv (pinned below; the uv on PATH at that version, else installed once
#           from the registry into ~/.cache/lift_det): one resolver run with pip's own inputs
#           (the index URLs, find-links and constraints of pip's configuration, and pip's choice
#           of the best version across all indexes), so the same versions as pip, in parallel
#       pip: pip alone (slower)
#       auto (default): uv, or pip when uv cannot be had or pip's configuration has a setting this
#           script does not hand over to uv
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LIFT_DET_VENV:-$ROOT/.venv}"
PY_BOOT="${LIFT_DET_PYTHON:-}"
D2_SOURCE="${LIFT_DET_D2_SOURCE:-auto}"
D2_GIT="https://github.com/facebookresearch/detectron2.git"
INSTALLER="${LIFT_DET_INSTALLER:-auto}"

# Versions known to work together (see README, "Installing").
TORCH_PIN="torch==2.14.1"
TORCHVISION_PIN="torchvision==0.29.1"
UV_PIN="uv==0.13.9"  # the installer only: what it installs is resolved as pip would
D2_REGISTRY_PIN="sal-detectron2==0.7.2"
D2_DEPS=(
  "setuptools<81"          # detectron2.model_zoo imports pkg_resources, gone from setuptools>=81
  "wheel"
  "numpy<2"
  "Pillow>=9" "matplotlib" "pycocotools>=2.0.6" "termcolor>=1.1" "yacs>=0.1.8" "tabulate"
  "cloudpickle" "tqdm>4.29.0" "tensorboard" "omegaconf>=2.1,<2.4" "hydra-core>=1.1" "black"
  "packaging" "fvcore>=0.1.5,<0.1.6" "iopath>=0.1.7,<0.1.10"
)
# export checks (tests): ONNX and onnxruntime; numpy stays < 2 for detectron2
TOOLS=("pytest>=7" "pytest-timeout" "pytest-xdist>=3" "isort>=5" "flake8"
  "onnx>=1.15,<1.20" "onnxruntime>=1.17,<1.21" "psutil" "numpy<2")

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

case "$INSTALLER" in
  auto | uv | pip) ;;
  *) fail "LIFT_DET_INSTALLER must be auto, uv or pip (got '$INSTALLER')" ;;
esac

# 1. the interpreter and the venv (without pip: the install below brings the newest pip)
if [ ! -x "$VENV/bin/python" ]; then
  if [ -z "$PY_BOOT" ]; then
    for cand in python3.11 python3.10 python3.12 python3; do
      if command -v "$cand" >/dev/null 2>&1; then PY_BOOT="$cand"; break; fi
    done
  fi
  [ -n "$PY_BOOT" ] || fail "no python3 interpreter found" "install Python 3.10-3.12 and set LIFT_DET_PYTHON"
  log "creating $VENV with $($PY_BOOT --version 2>&1)"
  "$PY_BOOT" -m venv --without-pip "$VENV" || fail "could not create a venv with $PY_BOOT" "apt-get install python3-venv, or set LIFT_DET_PYTHON"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

# a pip that works on the venv: its own, or the creating interpreter's driving it (pip --python)
BOOT_PIP=()
find_pip() {
  "$PY" -m pip --version >/dev/null 2>&1 && return 0
  local boot="${PY_BOOT:-python3}"
  if "$boot" -m pip --disable-pip-version-check --python "$PY" --version >/dev/null 2>&1; then
    BOOT_PIP=("$boot" -m pip --disable-pip-version-check --python "$PY")
    return 0
  fi
  return 1
}
ensure_pip() {  # the venv's own pip (the pip path, and pip download / the upstream build below)
  "$PY" -m pip --version >/dev/null 2>&1 && return 0
  log "installing pip into $VENV (ensurepip)"
  "$PY" -m ensurepip --upgrade >/dev/null \
    || fail "could not install pip into $VENV" "apt-get install python3-venv, or set LIFT_DET_PYTHON"
}

# 2. the installer: uv when it can be had (LIFT_DET_INSTALLER), else pip
UV_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/lift_det/${UV_PIN/==/-}"  # uv's own cache is beside it
UV=""
UV_ARGS=()
UV_ENV=()  # pip's timeout and certificate bundle, for uv's own variables
uv_config() {  # pip's index / find-links / constraint settings as uv arguments (one per line)
  local pipcmd=("${PIP[@]}")
  [ ${#BOOT_PIP[@]} -gt 0 ] && pipcmd=("${BOOT_PIP[@]}")
  "${pipcmd[@]}" config list | "$PY" -c '
import ast, sys
rank = {"global": 0, "install": 1, ":env:": 2}  # pip: environment > [install] > [global]
cfg = {}
for line in sys.stdin:
    key, sep, raw = line.rstrip("\n").partition("=")
    section, _, name = key.partition(".")
    if not sep or section not in rank:
        continue
    name = name.replace("_", "-")
    if name not in cfg or rank[section] >= cfg[name][0]:
        cfg[name] = (rank[section], ast.literal_eval(raw))
true = lambda v: str(v).lower() in ("1", "true", "yes", "on")
out = ["--index-strategy", "unsafe-best-match"]  # pip: the best version found on any index
harmless = {"disable-pip-version-check", "no-input", "progress-bar", "quiet", "verbose", "no-color",
            "root-user-action", "require-virtualenv", "retries", "cache-dir", "no-cache-dir",
            "break-system-packages", "no-warn-script-location"}
for name, (_, value) in sorted(cfg.items()):
    if name == "index-url":
        out += ["--index-url", value]
    elif name in ("extra-index-url", "find-links", "constraint"):
        for v in value.split():
            out += ["--" + name, v]
    elif name == "no-index":
        out += ["--no-index"] if true(value) else []
    elif name == "pre":
        out += ["--prerelease", "allow"] if true(value) else []
    elif name in ("timeout", "default-timeout"):
        out += ["ENV", "UV_HTTP_TIMEOUT=%d" % int(float(value))]
    elif name == "cert":
        out += ["ENV", "SSL_CERT_FILE=" + value]
    elif name == "trusted-host":
        for v in value.split():
            out += ["--allow-insecure-host", v]
    elif name == "upgrade-strategy":
        if value != "only-if-needed":
            sys.exit("UNSUPPORTED " + name)
    elif name not in harmless:
        sys.exit("UNSUPPORTED " + name)
print("\n".join(out))
'
}
get_uv() {  # uv: on PATH at the pinned version, or installed once per user beside its cache
  local want="${UV_PIN#uv==}" cfg line env_next=0
  UV="$(command -v uv || true)"
  if [ -z "$UV" ] || [ "$("$UV" --version 2>/dev/null | cut -d' ' -f2)" != "$want" ]; then
    UV="$UV_DIR/bin/uv"
    if [ "$("$UV" --version 2>/dev/null | cut -d' ' -f2)" != "$want" ]; then
      find_pip || return 1
      log "installing $UV_PIN (the installer) into $UV_DIR"
      local pipcmd=("${PIP[@]}") part="$UV_DIR.part.$$"
      [ ${#BOOT_PIP[@]} -gt 0 ] && pipcmd=("${BOOT_PIP[@]}")
      mkdir -p "$(dirname "$UV_DIR")" && rm -rf "$part" \
        && "${pipcmd[@]}" install -q --no-deps --target "$part" "$UV_PIN" || { rm -rf "$part"; return 1; }
      # another setup may have put it there meanwhile: either copy is the same
      mv -T "$part" "$UV_DIR" 2>/dev/null || rm -rf "$part"
      [ "$("$UV" --version 2>/dev/null | cut -d' ' -f2)" = "$want" ] || return 1
    fi
  fi
  find_pip || return 1
  cfg="$(uv_config 2>&1)" || { log "uv: pip's configuration has a setting not handed over: ${cfg##*$'\n'}"; return 1; }
  while IFS= read -r line; do
    if [ "$line" = ENV ]; then env_next=1
    elif [ "$env_next" = 1 ]; then UV_ENV+=("$line"); env_next=0
    else UV_ARGS+=("$line"); fi
  done <<<"$cfg"
}
if [ "$INSTALLER" != pip ]; then
  if get_uv; then
    INSTALLER=uv
  elif [ "$INSTALLER" = uv ]; then
    fail "could not set up $UV_PIN" "check that the package registry is reachable, or LIFT_DET_INSTALLER=pip"
  else
    log "uv cannot be had here: installing with pip (slower, the same versions)"
    INSTALLER=pip
  fi
fi
[ "$INSTALLER" = pip ] && ensure_pip

install_step() {  # install_step "what" args... (with the chosen installer)
  local what="$1"; shift
  log "installing $what (with $INSTALLER)"
  if [ "$INSTALLER" = uv ]; then
    env "${UV_ENV[@]}" "$UV" pip install -q --python "$PY" --compile-bytecode "${UV_ARGS[@]}" "$@" || fail "uv could not install $what" \
      "rerun with network access to the package registry; check '${UV_ENV[*]} $UV pip install --python $PY ${UV_ARGS[*]} $*' by hand for the error, or LIFT_DET_INSTALLER=pip"
  else
    "${PIP[@]}" install -q "$@" || fail "pip could not install $what" \
      "rerun with network access to the package registry; check 'pip install $*' by hand for the error"
  fi
}

# 3. the whole stack in one resolver run; what is installed and satisfies it stays.
# torch + torchvision: the registry's default builds carry CUDA libraries; their compiled
# torchvision ops load on CPU-only machines too (the CPU-only torch wheel has no matching
# torchvision build whose ops load). Then detectron2's own dependencies, the project (editable)
# with its declared dependencies (timm, pycocotools, ...), and the test, export and format tools.
if [ "$INSTALLER" = pip ]; then
  install_step "pip/setuptools/wheel" --upgrade "pip" "setuptools<81" "wheel"
  STACK=()
else  # uv brings pip too (pip download and the upstream build below use it); --upgrade as above
  STACK=(--upgrade-package pip --upgrade-package setuptools --upgrade-package wheel "pip" "setuptools<81" "wheel")
fi
install_step "the stack: $TORCH_PIN $TORCHVISION_PIN (several GB on first install), detectron2's dependencies, lift_det (editable) and its dependencies, test, export and format tools" \
  "${STACK[@]}" "$TORCH_PIN" "$TORCHVISION_PIN" "${D2_DEPS[@]}" -e "$ROOT" "${TOOLS[@]}"
"$PY" -c "import torchvision.ops as o, torch as t; o.nms(t.rand(2,4)*9, t.rand(2), .5)" \
  || fail "torchvision's compiled ops do not load with this torch" \
     "pip install --force-reinstall $TORCH_PIN $TORCHVISION_PIN (CPU-only torch wheels have no working torchvision)"

# 4. detectron2 itself
d2_ok() {  # prints detectron2's version and file when its ViT backbone and model zoo import
  "$PY" -c "from detectron2.modeling.backbone.vit import ViT, SimpleFeaturePyramid; import detectron2.model_zoo, detectron2 as d; print(d.__version__, d.__file__)" 2>/dev/null
}
if ! d2_info="$(d2_ok)"; then
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
      if [ "$INSTALLER" = uv ]; then
        env "${UV_ENV[@]}" "$UV" pip install -q --python "$PY" --compile-bytecode --no-deps --reinstall "$tmp"/out/*.whl
      else
        "${PIP[@]}" install -q --no-deps --force-reinstall "$tmp"/out/*.whl
      fi || fail "installing the repacked detectron2 wheel failed" "rerun with LIFT_DET_D2_SOURCE=registry after 'rm -rf $VENV'"
      ;;
    *) fail "LIFT_DET_D2_SOURCE must be auto, upstream or registry (got '$D2_SOURCE')" ;;
  esac
  d2_info="$(d2_ok)" || fail "detectron2 was installed but its ViT backbone does not import" \
    "run: $PY -c 'import detectron2.modeling.backbone.vit' to see the error"
  log "detectron2 source: $D2_SOURCE"
else
  log "detectron2 already installed"
fi
log "detectron2 $d2_info"

check_stack || fail "the stack does not import after install" "rm -rf $VENV and run this script again"
want_stamp > "$STAMP"
log "done in $(( $(date +%s) - start )) s"
