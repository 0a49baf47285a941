#!/usr/bin/env bash
# Sets the machine up (scripts/setup.sh) and trains: with no arguments, the paper's LSKBB
# recipe on the built-in synthetic long-tailed set; any `lskbb train` flags pass through,
# e.g. `bash run.sh --data /data/BreaKHis_v1 --imbalance 50 --long-tail-cap`.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo run --release -- train "$@"
