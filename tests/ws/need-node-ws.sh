#!/usr/bin/env bash
# Installs Node.js's `ws` package (npm) under the folder given (build/node),
# once. Needs node and npm (the suite installs them with apt when root).
# Exit status 0 when build/node/node_modules/ws is there.
set -u
dir=${1:-build/node}
[ -f "$dir/node_modules/ws/package.json" ] && exit 0
command -v npm >/dev/null || { echo "need-node-ws: npm not found" >&2; exit 1; }
mkdir -p "$dir"
[ -f "$dir/package.json" ] || echo '{"name":"chopin-ws-tests","private":true}' >"$dir/package.json"
timeout 180 npm install --prefix "$dir" --no-audit --no-fund --silent ws@8 >/dev/null 2>&1 || {
  echo "need-node-ws: npm install ws failed" >&2
  exit 1
}
[ -f "$dir/node_modules/ws/package.json" ]
