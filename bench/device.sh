#!/usr/bin/env bash
# One-shot speed/memory benchmark on a GPU machine (issue 5), under 8 minutes in all.
# Run from the repository root with:
#   target/release/lskbb       the release binary (cargo build --release)
#   reference/                 the PyTorch reference (torch must be installed on the machine)
#   tests/fixtures/golden/     the golden files for `lskbb verify`
#   bench/ckpt/lskbb.safetensors a checkpoint written by `lskbb train` (interop check)
#   .gl/*.deb                  the Vulkan loader packages
# Writes two files (the device tool returns at most 8): $OUT/bench.log with everything and
# $OUT/results.json, every run's JSON report keyed by impl_size_bBATCH_method.
# A failed or slow shape is logged and skipped; the script carries on.
# With the device tool: run(command="bash bench/device.sh", carry=[".gl", "target/release/lskbb",
# "target/release/examples/conv_bench"], timeout_s=540) (BUDGET=seconds caps the whole script,
# default 450; CONV=0 skips the convolution kernel lab, INTEROP=0 the interop checks, SHAPES replaces
# the table of shapes below).
set -u

OUT=${OUT:-/tmp/lskbb-bench}
mkdir -p "$OUT"
LOG="$OUT/bench.log"
RUNS=$(mktemp -d)
BIN=${LSKBB_BIN:-target/release/lskbb}
BUDGET=${BUDGET:-450}   # seconds for the whole script
START=$SECONDS

log() { echo "$@" | tee -a "$LOG"; }

# Runs a command under `timeout`, capped by what is left of the budget; logs its output.
run() {
    local limit=$1; shift
    local left=$((BUDGET - (SECONDS - START)))
    if [ "$left" -lt 15 ]; then
        log "SKIPPED (budget spent): $*"
        return 1
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    log ""
    log "\$ $* (timeout ${limit}s, t=$((SECONDS - START))s)"
    timeout -k 5 "$limit" "$@" </dev/null >>"$LOG" 2>&1
    local rc=$?
    [ "$rc" -ne 0 ] && log "EXIT $rc$([ "$rc" -eq 124 ] && echo ' (timed out)')"
    return "$rc"
}

for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json

log "date: $(date -u)"
[ -x "$BIN" ] || log "MISSING $BIN: build it with cargo build --release before running this script"
log "git: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
run 20 nvidia-smi -L
run 30 "$BIN" devices
run 90 "$BIN" verify --failures-only tests/fixtures/golden/*.safetensors

# The kernel lab: each convolution shape of the model on the direct kernels against the
# GEMM (dense) and tiled (depthwise) ones, side by side.
LAB=target/release/examples/conv_bench
if [ -x "$LAB" ] && [ "${CONV:-1}" = 1 ]; then
    run 90 "$LAB" full
fi

# Interop both ways (bench/interop.py), and golden files drawn afresh, verified right away.
EXTRA="$OUT/extra"
if [ -f bench/ckpt/lskbb.safetensors ] && [ "${INTEROP:-1}" = 1 ]; then
    run 120 python3 bench/interop.py bench/ckpt/lskbb.safetensors "$EXTRA"
    run 120 python3 reference/gen_golden.py "$EXTRA/golden"
    run 120 "$BIN" verify --failures-only "$EXTRA"/golden/*.safetensors
    run 20 python3 -c "from PIL import Image; import numpy as np; Image.fromarray((np.random.default_rng(0).random((20, 20)) * 255).astype('uint8')).save('$RUNS/probe.png')"
    run 30 "$BIN" predict --checkpoint "$EXTRA/torch_model.safetensors" --image-size 16 "$RUNS/probe.png"
fi

# size batch lsk rust-steps rust-timeout recompute autotune: the issue's table, slowest shapes
# last; recompute=1 rows run lskbb alone with --recompute, autotune=1 rows lskbb alone with
# --autotune (tuned in the warm-up step; the PyTorch row is the same baseline).
SHAPES=${SHAPES:-"
224 32 1 2 25 0 0
224 32 0 2 20 0 0
224 32 1 2 25 1 0
32 128 1 3 15 0 0
32 128 0 3 15 0 0
224 32 1 2 60 0 1
32 128 1 3 40 0 1
224 64 1 2 30 0 0
224 64 0 2 25 0 0
"}
while read -r size batch lsk steps limit recompute autotune; do
    [ -z "$size" ] && continue
    if [ "$lsk" = 1 ]; then method=lskbb; flag=--lsk; else method=bbn; flag=--plain; fi
    tag="${size}_b${batch}_${method}"
    if [ "$recompute" = 1 ]; then
        # The card's own count of memory in use, sampled every 100 ms: the engine's figure
        # leaves out the driver's allocations.
        SMI_LOG="$RUNS/smi_${tag}.txt"
        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 \
            >"$SMI_LOG" 2>/dev/null &
        SMI=$!
        run "$limit" "$BIN" bench --image-size "$size" --batch-size "$batch" --method "$method" \
            --steps "$steps" --warmup 1 --profile-steps 0 --recompute --json "$RUNS/rust_${tag}_recompute.json"
        kill "$SMI" 2>/dev/null
        log "nvidia-smi peak memory.used during $tag --recompute: $(sort -n "$SMI_LOG" | tail -1) MiB"
        continue
    fi
    if [ "$autotune" = 1 ]; then
        run "$limit" "$BIN" bench --image-size "$size" --batch-size "$batch" --method "$method" \
            --steps "$steps" --warmup 1 --profile-steps 1 --autotune --json "$RUNS/rust_${tag}_autotune.json"
        continue
    fi
    run "$limit" "$BIN" bench --image-size "$size" --batch-size "$batch" --method "$method" \
        --steps "$steps" --warmup 1 --profile-steps 1 --json "$RUNS/rust_${tag}.json"
    run 40 sh -c "python3 bench/torch_step.py --image-size $size \
        --batch-size $batch $flag --steps 5 --warmup 2 --device cuda > '$RUNS/torch_${tag}.json'"
    cat "$RUNS/torch_${tag}.json" >>"$LOG" 2>/dev/null
done <<<"$SHAPES"

log ""
log "summary (t=$((SECONDS - START))s)"
python3 - "$RUNS" "$OUT/results.json" <<'PY' 2>&1 | tee -a "$LOG"
import glob, json, os, sys
rows = {}
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    try:
        with open(f) as fh:
            r = json.loads(fh.read().strip().splitlines()[-1] if "torch_" in f else fh.read())
    except Exception:
        continue
    impl, tag = os.path.basename(f)[:-5].split("_", 1)
    rows.setdefault(tag, {})[impl] = r
with open(sys.argv[2], "w") as fh:
    json.dump({f"{i}_{t}": r for t, d in rows.items() for i, r in d.items()}, fh, indent=1)
print(f"{'shape':<20} {'rust ms':>9} {'torch ms':>9} {'ratio':>7} {'rust img/s':>11} "
      f"{'torch img/s':>11} {'rust GB':>8} {'torch GB':>8} {'rust TF/s':>9}")
for tag, d in rows.items():
    r, t = d.get("rust", {}), d.get("torch", {})
    g = lambda x, k: x.get(k) if x.get(k) is not None else float("nan")
    print(f"{tag:<20} {g(r,'ms_per_step'):>9.1f} {g(t,'ms_per_step'):>9.1f} "
          f"{g(r,'ms_per_step') / g(t,'ms_per_step'):>7.2f} {g(r,'images_per_s'):>11.1f} "
          f"{g(t,'images_per_s'):>11.1f} {g(r,'peak_mem_gb'):>8.2f} {g(t,'peak_mem_gb'):>8.2f} "
          f"{g(r,'tflops'):>9.3f}")
PY
log "done in $((SECONDS - START))s"
