#!/usr/bin/env bash
# GPU self-check: one command on a machine with a CUDA GPU, at most about 10
# minutes on one GPU (the steps' time limits add up to 595 s, plus 120 s
# for ddp_nccl with two GPUs).
#
#   bash tools/analysis_tools/gpu_check.sh [--work-dir DIR] [--quick]
#   bash tools/analysis_tools/gpu_check.sh --dry-run    # no GPU needed
#
# Steps (each one logged to WORK_DIR/<step>.log; a failing step does not
# stop the others; each has a time limit):
#   cuda_tests        the tests that need CUDA (marked `cuda`, or named
#                     *cuda*; they skip on the CPU)
#   benchmark_match   tools/analysis_tools/benchmark_match.py --device cuda --amp
#   market_fp16       a Market-1501-sized QAConv matching under float16
#                     autocast against the public evaluator's formula
#   graph_devices     the class graph on the GPU against the CPU: exact,
#                     two-stage with match_pairs, two-stage through the union
#                     second stage; 'gap' and 'pooled' proxies; QAConv and
#                     TransMatcher maps at paper size (gpu_check.py graph)
#   gs_qaconv_exact, gs_qaconv_pairs, gs_tm_exact, gs_tm_union
#                     --amp training: one Graph Sampler epoch (graph from the
#                     first epoch: exact / two-stage forced) of the QAConv
#                     and TransMatcher demos, then their validation; fails on
#                     a step skipped for a non-finite loss (gpu_check.py train)
#   msmt_qaconv_shortlist, msmt_tm_shortlist
#                     an MSMT17-size (11,659 x 82,161 maps) test by shortlist
#                     (N=100) with the features in host memory, its peak
#                     device memory against matching_device_bytes
#                     (gpu_check.py shortlist)
#   tm_fp16, tm_fp16_large
#                     TransMatcherHead.match under float16 autocast against
#                     float32, unit-scale maps and maps x32 (similarities
#                     beyond float16's range), 2% tolerance
#   ddp_nccl          with two GPUs or more: 2-process NCCL DDP training
#                     (--amp, one GS epoch) and its re-ranked validation
# then prints one summary table (gpu_check.py summary).
#
# --quick: a quarter of the Market-sized queries, the public reference on
#          512 of them, a tenth of the MSMT17-size queries.
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
        -h|--help) sed -n '2,45p' "$0"; exit 0 ;;
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
    timeout "$STEP_LIMIT" "$@" > "$log" 2>&1
    status=$?
    [ $status -eq 124 ] && echo "timed out after ${STEP_LIMIT}s" >> "$log"
    end=$(date +%s%N)
    seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
    figure=$(bash -c "$figure_cmd" < "$log" 2>/dev/null | tr '\t\n' '  ' | cut -c1-110)
    if [ $status -eq 0 ]; then
        record "$step" ok "$figure" "$seconds"
    else
        record "$step" FAIL "exit $status ($(tail -n 1 "$log" | tr '\t' ' ' | cut -c1-60)); see $log" "$seconds"
    fi
}

NQ=3368
MSMT_Q=11659
REF_Q=()
if [ "$QUICK" = 1 ]; then
    NQ=842
    MSMT_Q=1166
    REF_Q=(--ref-queries 512)
fi
GC=tools/analysis_tools/gpu_check.py
GRAB="grep -vE '^[0-9]{2}/[0-9]{2} ' | tail -n 1"

STEP_LIMIT=45 run_step cuda_tests "tail -n 1" -- \
    "$PY" -m pytest -q -m "not benchmark" -k cuda tests
STEP_LIMIT=30 run_step benchmark_match \
    "grep -E '^(QAConvHead.match|autocast)' | sed -E 's/ +/ /g'" -- \
    "$PY" tools/analysis_tools/benchmark_match.py --device cuda --amp
STEP_LIMIT=40 run_step market_fp16 "grep -E 'QAConvHead.match|public einsum|ratio' | sed -E 's/ +/ /g'" -- \
    "$PY" $GC market --device cuda \
    --num-query "$NQ" --num-gallery 15913 --dtype float16 "${REF_Q[@]}" \
    --json "$WORK_DIR/market_fp16.json"
STEP_LIMIT=50 run_step graph_devices "tail -n 1" -- \
    "$PY" $GC graph --device cuda
for spec in qaconv:qaconv_gs_demo:exact qaconv:qaconv_gs_demo:pairs \
            tm:transmatcher_gs_demo:exact tm:transmatcher_gs_demo:union; do
    IFS=: read -r short config graph <<< "$spec"
    # the first one generates the demo data (data/synthetic_reid)
    limit=40; [ "$spec" = qaconv:qaconv_gs_demo:exact ] && limit=80
    STEP_LIMIT=$limit run_step "gs_${short}_${graph}" "$GRAB" -- \
        "$PY" $GC train "configs/$config.py" --graph "$graph" --amp \
        --iters 20 --work-dir "$WORK_DIR/gs_${short}_${graph}"
done
for head in qaconv transmatcher; do
    short=${head/transmatcher/tm}
    STEP_LIMIT=100 run_step "msmt_${short}_shortlist" "tail -n 1" -- \
        "$PY" $GC shortlist --head "$head" --device cuda \
        --num-query "$MSMT_Q" --num-gallery 82161 --num 100 \
        --json "$WORK_DIR/msmt_${short}_shortlist.json"
done
STEP_LIMIT=15 run_step tm_fp16 "tail -n 1" -- \
    "$PY" $GC tm-fp16 --device cuda --scale 1
STEP_LIMIT=15 run_step tm_fp16_large "tail -n 1" -- \
    "$PY" $GC tm-fp16 --device cuda --scale 32
GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
if [ "$DRY_RUN" = 1 ] || [ "${GPUS:-0}" -ge 2 ]; then
    STEP_LIMIT=120 run_step ddp_nccl "grep -oE 'Epoch\(val\).*mAP_rerank: [0-9.]+' | tail -n 1 | cut -c1-100" -- \
        bash tools/dist_train.sh configs/qaconv_gs_demo.py 2 --amp \
        --work-dir "$WORK_DIR/ddp_nccl" --cfg-options train_cfg.max_epochs=1 \
        train_cfg.val_interval=1 train_dataloader.sampler.batches_per_epoch=20 \
        custom_hooks.0.pk_epochs=0 val_evaluator.rerank=True
else
    record ddp_nccl skipped "one GPU (needs two)" 0
fi

echo
echo "GPU self-check summary ($("$PY" -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')" 2>/dev/null)); logs in $WORK_DIR"
"$PY" tools/analysis_tools/gpu_check.py summary "$RESULTS"
if grep -q $'\tFAIL\t' "$RESULTS"; then
    exit 1
fi
exit 0
