#!/usr/bin/env bash
# Checks that the committed web/dist (embedded in the binary) is what a
# fresh build of js/ produces. Exits non-zero on a mismatch.
# Needs node and npm; installs js/'s locked dependencies when missing.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -d node_modules ]; then
  npm ci --no-audit --no-fund
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
node build.mjs --out "$out/dist" --size
if ! diff -r "$out/dist" ../web/dist; then
  echo "web/dist does not match a fresh build of js/: run 'npm run build' in js/ and commit web/dist" >&2
  exit 1
fi
echo "web/dist matches a fresh build of js/"
