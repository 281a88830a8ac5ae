#!/usr/bin/env bash
# Time `make test` as CI runs it (.ci/run), from a fresh clone of this checkout's HEAD, and write
# the result to docs/make_test.md, which tools/update_readme.py copies into the README. Written
# only when every test passed. Usage: bash dev/time_make_test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/clone"
cd "$work/clone"
cache=${UV_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/uv}
if [ -n "$(ls -A "$cache" 2>/dev/null)" ]; then cache="uv's download cache filled"; else
    cache="an empty download cache"; fi
start=$(date +%s)
make setup >"$work/setup.log" 2>&1 || { tail -30 "$work/setup.log"; exit 1; }
setup=$(($(date +%s) - start))
make test 2>&1 | tee "$work/test.log"
total=$(($(date +%s) - start))
# pytest's last line, e.g. "626 passed, 105 warnings in 291.84s (0:04:51)"
last=$(grep -E "^[0-9]+ passed.* in [0-9.]+s" "$work/test.log" | tail -1)
tests=${last%% passed*}
pytest_s=$(sed -E 's/.* in ([0-9]+)(\.[0-9]+)?s.*/\1/' <<<"$last")
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
gpu=$(command -v nvidia-smi >/dev/null && nvidia-smi -L | head -1 || echo "no GPU")
cat >"$repo/docs/make_test.md" <<EOF
\`make test\` from a fresh clone took **$((total / 60)) min $((total % 60)) s** on $(nproc) CPUs
($cpu, $gpu), $(date -u +%F) at commit \`$(git rev-parse --short HEAD)\`: $setup s of setup
(with $cache) and $pytest_s s of pytest for $tests tests. Measured by
\`bash dev/time_make_test.sh\`.
EOF
cat "$repo/docs/make_test.md"
