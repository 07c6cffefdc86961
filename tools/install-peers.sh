#!/usr/bin/env bash
# The third-party peers the tests talk to, none of them written here:
#   - Debian's Chromium (a real browser's WebSocket),
#   - the Node `ws` package (npm), pinned in tests/peers/package.json,
#   - Autobahn|Testsuite's wstest (the WebSocket conformance suite, Python 2.7).
# Idempotent; CI runs it before `make test`. Tests whose peer is missing say so and skip.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
    echo "installing chromium (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
echo "chromium: $(chromium --version 2>/dev/null || echo missing)"

npm install --prefix tests/peers --no-audit --no-fund --loglevel=error
echo "node ws: $(node -e 'console.log(require("./tests/peers/node_modules/ws/package.json").version)')"

bash tools/autobahn/setup.sh
