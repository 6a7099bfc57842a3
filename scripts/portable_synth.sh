#!/usr/bin/env bash
# Packs `npm run synth` for a machine without Node.js or npm (a lent GPU machine, which reaches no
# registry): build/portable/ gets synth.cjs (the CLI bundled by esbuild, sharp left external),
# node_modules.tar.xz (sharp with its native libvips and its three small dependencies) and node.xz
# (this machine's node binary). On the other machine (x86-64 Linux, glibc at least this one's):
#
#   python3 scripts/portable_synth.py unpack build/portable /tmp/synth   # then
#   /tmp/synth/node /tmp/synth/synth.cjs --out DIR --train N ...       # the same flags as npm run synth
#
# About 31 MB in all; made in about 30 s. Nothing here is committed (build/ is ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/portable
mkdir -p "$out"
npx esbuild src/cli/synth.ts --bundle --platform=node --target=node20 --external:sharp \
  --outfile="$out/synth.cjs" --log-level=warning
tar -cJf "$out/node_modules.tar.xz" node_modules/sharp node_modules/@img node_modules/detect-libc node_modules/semver
node_bin=$(readlink -f "$(command -v node)")
if [ ! -f "$out/node.xz" ] || [ "$node_bin" -nt "$out/node.xz" ]; then
  xz -T0 -6 -c "$node_bin" > "$out/node.xz"
fi
du -sh "$out"/*
