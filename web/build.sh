#!/usr/bin/env bash
# Builds the page's WebAssembly into web/pkg/ (lskbb_web.js, lskbb_web_bg.wasm), installing
# what is missing: the wasm32 target (rustup) and wasm-bindgen-cli at the version Cargo.lock
# pins (cargo install, from crates.io: a few minutes the first time). Then serve web/ over
# http://localhost (`python3 -m http.server -d web 8000`) and open it in a WebGPU browser.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"
say() { echo "web/build.sh: $*" >&2; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi
version="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)"
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$version" ]; then
  say "installing wasm-bindgen-cli $version (it must match the wasm-bindgen crate)"
  cargo install --quiet wasm-bindgen-cli --version "$version"
fi
target="${CARGO_TARGET_DIR:-$root/target}"
# The library alone, without the CLI: what an app that embeds lskbb on the web builds.
cargo build --quiet --release --lib --target wasm32-unknown-unknown --no-default-features
cargo build --quiet -p lskbb-web --target wasm32-unknown-unknown --release
wasm-bindgen --target web --no-typescript --out-dir web/pkg \
  "$target/wasm32-unknown-unknown/release/lskbb_web.wasm"
say "built web/pkg ($(du -sh web/pkg | cut -f1))"
