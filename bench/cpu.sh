#!/usr/bin/env bash
# The no-GPU table (issue 18): lskbb on the machine's CPU Vulkan driver (lavapipe) against
# PyTorch on the same CPU cores, side by side in one run, for the bilateral training step at
# 32x32 (LSK and plain, batch 16 and 64 per branch). Needs the release binary
# (cargo build --release) and PyTorch (pip install -r reference/requirements.txt).
# A third column, Burn's version of the step on its wgpu backend (bench/burn/README.md), runs
# when that crate is built (BURN_BIN, default ${CARGO_TARGET_DIR:-bench/burn/target}/release/
# lskbb-burn-bench); BURN=1 builds it first (a long compile), BURN=0 leaves it out.
# usage: bash bench/cpu.sh [OUT_DIR]   (SHAPES="size batch lsk rust_steps" lines replace the table)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/lskbb-cpu-bench}
mkdir -p "$OUT"
BIN=${LSKBB_BIN:-target/release/lskbb}
BURN_BIN=${BURN_BIN:-${CARGO_TARGET_DIR:-bench/burn/target}/release/lskbb-burn-bench}
burn=0
if [ "${BURN:-}" = 1 ]; then
    [ -x "$BURN_BIN" ] || cargo build --release --locked --manifest-path bench/burn/Cargo.toml
    burn=1
elif [ "${BURN:-}" != 0 ] && [ -x "$BURN_BIN" ]; then
    burn=1
fi
rm -f "$OUT"/burn_*.json
SHAPES=${SHAPES:-"32 16 1 2
32 16 0 2
32 64 1 1
32 64 0 1"}
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; torch threads: $(python3 -c 'import torch; print(torch.get_num_threads())')"
while read -r size batch lsk steps; do
    [ -z "$size" ] && continue
    if [ "$lsk" = 1 ]; then method=lskbb; flag=--lsk; else method=bbn; flag=--plain; fi
    tag="${size}_b${batch}_${method}"
    "$BIN" bench --image-size "$size" --batch-size "$batch" --method "$method" --steps "$steps" \
        --warmup 1 --profile-steps 0 --json "$OUT/rust_$tag.json" >"$OUT/rust_$tag.log" 2>&1
    python3 bench/torch_step.py --device cpu --image-size "$size" --batch-size "$batch" $flag \
        --steps 3 --warmup 1 >"$OUT/torch_$tag.json"
    if [ "$burn" = 1 ]; then
        "$BURN_BIN" --image-size "$size" --batch-size "$batch" $flag --steps "$steps" --warmup 1 \
            >"$OUT/burn_$tag.json" 2>"$OUT/burn_$tag.log"
    fi
done <<<"$SHAPES"
python3 - "$OUT" <<'PY'
import glob, json, os, sys
rows = {}
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    impl, tag = os.path.basename(f)[:-5].split("_", 1)
    with open(f) as fh:
        text = fh.read().strip()
    rows.setdefault(tag, {})[impl] = json.loads(text.splitlines()[-1] if impl in ("torch", "burn") else text)
burn = any("burn" in d for d in rows.values())
ms = lambda d, impl: d.get(impl, {}).get("ms_per_step", float("nan"))
head = "| step (32x32 input) | lskbb on lavapipe, ms | PyTorch CPU, ms | lskbb / PyTorch |"
print(head + (" Burn wgpu on lavapipe, ms | lskbb / Burn |" if burn else ""))
print("|---|---|---|---|" + ("---|---|" if burn else ""))
for tag, d in rows.items():
    r, t, b = ms(d, "rust"), ms(d, "torch"), ms(d, "burn")
    print(f"| {tag} | {r:.0f} | {t:.0f} | {r / t:.1f}x |" + (f" {b:.0f} | {r / b:.1f}x |" if burn else ""))
PY
