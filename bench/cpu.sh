#!/usr/bin/env bash
# The no-GPU table (issue 18): lskbb on the machine's CPU Vulkan driver (lavapipe) against
# PyTorch on the same CPU cores, side by side in one run, for the bilateral training step at
# 32x32 (LSK and plain, batch 16 and 64 per branch). Needs the release binary
# (cargo build --release) and PyTorch (pip install -r reference/requirements.txt).
# usage: bash bench/cpu.sh [OUT_DIR]   (SHAPES="size batch lsk rust_steps" lines replace the table)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/lskbb-cpu-bench}
mkdir -p "$OUT"
BIN=${LSKBB_BIN:-target/release/lskbb}
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
done <<<"$SHAPES"
python3 - "$OUT" <<'PY'
import glob, json, os, sys
rows = {}
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    impl, tag = os.path.basename(f)[:-5].split("_", 1)
    with open(f) as fh:
        text = fh.read().strip()
    rows.setdefault(tag, {})[impl] = json.loads(text.splitlines()[-1] if impl == "torch" else text)
print(f"| step (32x32 input) | lskbb on lavapipe, ms | PyTorch CPU, ms | lskbb / PyTorch |")
print("|---|---|---|---|")
for tag, d in rows.items():
    r, t = d.get("rust", {}).get("ms_per_step", float("nan")), d.get("torch", {}).get("ms_per_step", float("nan"))
    print(f"| {tag} | {r:.0f} | {t:.0f} | {r / t:.1f}x |")
PY
