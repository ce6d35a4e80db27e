#!/usr/bin/env bash
# The real-client suites of tests/suites/ws.sh:
#     tests/ws/clients.sh node      Node.js `ws` (npm) against build/chat
#     tests/ws/clients.sh browser   headless Chromium against build/chat
# What they need is installed when missing and we are root (Debian's
# nodejs, npm and chromium; `ws` from npm into build/node); otherwise the
# suite is skipped with the reason. Last line: "N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
what=${1:-node}
skip() { echo "# skipped: $*"; echo "0 passed, 0 failed"; exit 0; }
apt_install() { # PACKAGE...: as root, when apt-get exists
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || return 1
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq "$@"; } >/dev/null 2>&1
}
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt_install nodejs npm || skip "node and npm are not installed (and cannot be: not root, or no apt-get)"
fi
bash tests/ws/need-node-ws.sh build/node || skip "npm could not install the ws package (offline?)"
make -s build/chat || { echo "0 passed, 1 failed"; exit 1; }
export NODE_PATH=$PWD/build/node/node_modules
case $what in
  node)
    exec bash tests/ws/with_server.sh ./build/chat node tests/ws/node/client_test.js '{PORT}'
    ;;
  browser)
    chromium=$(command -v chromium || command -v chromium-browser || true)
    if [ -z "$chromium" ]; then
      apt_install chromium || skip "chromium is not installed (and cannot be: not root, or no apt-get)"
      chromium=$(command -v chromium || true)
      [ -n "$chromium" ] || skip "chromium did not install"
    fi
    exec bash tests/ws/with_server.sh ./build/chat node tests/ws/node/browser_test.js "$chromium" '{PORT}'
    ;;
  *)
    echo "usage: $0 node|browser" >&2
    exit 2
    ;;
esac
