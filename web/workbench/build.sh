#!/bin/sh
# Rebuilds the workbench editor bundle, src/workbench/page/editor.js, from src/editor.js and
# the packages pinned in package-lock.json. The bundle is committed, so neither `cargo build`
# nor the running service needs node or the network; run this only after changing the editor
# or its packages, and commit the bundle with the change.
set -eu
cd "$(dirname "$0")"
# Exactly the locked versions; no install scripts (esbuild's binary comes as a package).
npm ci --ignore-scripts --no-audit --no-fund
out=../../src/workbench/page/editor.js
mkdir -p "$(dirname "$out")"
./node_modules/.bin/esbuild src/editor.js \
  --bundle --format=iife --minify --target=es2019 --legal-comments=none \
  --charset=utf8 --outfile="$out" \
  --banner:js="/* Packwell workbench editor, built by web/workbench/build.sh: CodeMirror 6 (MIT license, Marijn Haverbeke and others), crelt, style-mod, w3c-keyname and @lezer (MIT); versions in web/workbench/package-lock.json. */"
echo "built $out ($(wc -c < "$out") bytes)"
