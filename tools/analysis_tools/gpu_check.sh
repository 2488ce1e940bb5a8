#!/usr/bin/env bash
# GPU self-check: one command on a machine with a CUDA GPU.
#
#   bash tools/analysis_tools/gpu_check.sh [--work-dir DIR] [--quick]
#   bash tools/analysis_tools/gpu_check.sh --dry-run    # no GPU needed
#
# Steps (each one logged to WORK_DIR/<step>.log; a failing step does not
# stop the others):
#   1. the tests that need CUDA (marked `cuda`, or named *cuda*; they skip
#      on the CPU): pytest -m "not benchmark" -k cuda
#   2. tools/analysis_tools/benchmark_match.py --device cuda --amp
#   3. a Market-1501-sized matching, 3,368 x 15,913 maps of 64x24x8, under
#      float16 autocast: QAConvHead.match and the public evaluator's fp16
#      einsum (128 x 128 blocks) timed in the same run
#      (gpu_check.py market)
#   4. one AMP training epoch of the demo (configs/qaconv_gs_demo.py --amp,
#      no validation)
# then prints one summary table (gpu_check.py summary).
#
# --quick: a quarter of the Market-sized queries and the public reference on
#          512 of them (its time scaled to all), for a first look.
# --dry-run: no GPU: every step is listed as skipped and the summary is
#          printed (checks the script itself).
# Exit code: 0 when every step passed, 1 otherwise (2: bad arguments).
set -uo pipefail
cd "$(dirname "$0")/../.."

WORK_DIR=work_dirs/gpu_check
QUICK=0
DRY_RUN=0
while [ $# -gt 0 ]; do
    case "$1" in
        --work-dir) WORK_DIR="${2:?--work-dir needs a folder}"; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

mkdir -p "$WORK_DIR"
RESULTS="$WORK_DIR/results.tsv"
: > "$RESULTS"
PY=${PYTHON:-python}

if [ "$DRY_RUN" = 0 ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "error: no CUDA GPU visible to PyTorch; nothing to check (--dry-run checks the script only)" >&2
    exit 1
fi

# record STEP STATUS FIGURE SECONDS
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$RESULTS"; }

# run_step STEP FIGURE_COMMAND -- COMMAND...: run COMMAND with its output in
# WORK_DIR/STEP.log; FIGURE_COMMAND reads that log and prints the figure.
run_step() {
    local step="$1" figure_cmd="$2"; shift 3
    local log="$WORK_DIR/$step.log"
    if [ "$DRY_RUN" = 1 ]; then
        record "$step" skipped "dry run: $*" 0
        return
    fi
    echo "== $step: $*"
    local start end status figure seconds
    start=$(date +%s%N)
    "$@" > "$log" 2>&1
    status=$?
    end=$(date +%s%N)
    seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
    figure=$(bash -c "$figure_cmd" < "$log" 2>/dev/null | tr '\t\n' '  ' | cut -c1-110)
    if [ $status -eq 0 ]; then
        record "$step" ok "$figure" "$seconds"
    else
        record "$step" FAIL "exit $status; see $log" "$seconds"
    fi
}

NQ=3368
REF_Q=()
if [ "$QUICK" = 1 ]; then
    NQ=842
    REF_Q=(--ref-queries 512)
fi

run_step cuda_tests "tail -n 1" -- \
    "$PY" -m pytest -q -m "not benchmark" -k cuda tests
run_step benchmark_match \
    "grep -E '^(QAConvHead.match|autocast)' | sed -E 's/ +/ /g'" -- \
    "$PY" tools/analysis_tools/benchmark_match.py --device cuda --amp
run_step market_fp16 "grep -E 'QAConvHead.match|public einsum|ratio' | sed -E 's/ +/ /g'" -- \
    "$PY" tools/analysis_tools/gpu_check.py market --device cuda \
    --num-query "$NQ" --num-gallery 15913 --dtype float16 "${REF_Q[@]}" \
    --json "$WORK_DIR/market_fp16.json"
run_step amp_train_epoch "grep -oE 'Epoch\(train\) +\[1\]\[[0-9]+/[0-9]+\].*loss: [0-9.]+' | tail -n 1 | sed -E 's/ +/ /g'" -- \
    "$PY" tools/train.py configs/qaconv_gs_demo.py --amp --no-validate \
    --work-dir "$WORK_DIR/amp_epoch" --cfg-options train_cfg.max_epochs=1

echo
echo "GPU self-check summary ($("$PY" -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')" 2>/dev/null)); logs in $WORK_DIR"
"$PY" tools/analysis_tools/gpu_check.py summary "$RESULTS"
if grep -q $'\tFAIL\t' "$RESULTS"; then
    exit 1
fi
exit 0
