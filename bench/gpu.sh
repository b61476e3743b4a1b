#!/usr/bin/env bash
# One prepared run for a GPU machine (no hub needed): bench/scorer.py on a randomly initialised
# 8B-class model in bf16 (first: it is what a short lease is for), naive vs reer at a few
# batch budgets, with the rows of a forward packed (flash attention over variable-length rows)
# and padded, then with the model's blocks compiled (scorer --compile), with tokens/s and model
# FLOP utilisation, then the scorer's correctness tests on CUDA. Each measurement is printed as
# it ends, so a run cut short still reports.
#
#   bash bench/gpu.sh                      # writes bench-gpu.json (or $OUT/bench-gpu.json)
#   RECORDS=8 MODEL=llama-8b bash bench/gpu.sh
#
# If time is left of the ~10 minutes one call on a lent GPU may take (BUDGET seconds in all),
# the same benchmark then runs, with packed rows only, on the reference's scoring model's shape
# (SECOND=qwen3-8b, Qwen3-8B-Base; SECOND= skips it).
#
# Needs python3 with a CUDA torch, transformers, tokenizers, httpx, psutil and pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
MODEL=${MODEL:-llama-8b}
DEVICE=${DEVICE:-cuda}
RECORDS=${RECORDS:-16}
BATCH_TOKENS=${BATCH_TOKENS:-"65536 131072"}
ROWS=${ROWS:-"packed padded"}
SECOND=${SECOND-qwen3-8b}
BUDGET=${BUDGET:-570}
DEST=${OUT:-.}
mkdir -p "$DEST"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
$PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, \
'cuda', torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name())" || exit 1

echo "== scorer benchmark: $MODEL (random weights), $RECORDS records, bf16"
# shellcheck disable=SC2086
timeout 400 $PY bench/scorer.py --random "$MODEL" --records "$RECORDS" --device "$DEVICE" --dtype bfloat16 \
    --max-batch-tokens $BATCH_TOKENS --rows $ROWS --compile --profile --json "$DEST/bench-gpu.json"
bench=$?

echo "== scorer correctness on CUDA (float32: equal to full recomputation to 1e-5; bf16 flash over packed rows)"
REER_TEST_DEVICE=$DEVICE timeout 180 $PY -m pytest -q -p no:cacheprovider \
    tests/scorer tests/unit/test_prefix_cache.py tests/unit/test_batching.py tests/unit/test_scoring_service.py
tests=$?

left=$(( BUDGET - SECONDS ))
if [ -n "$SECOND" ] && [ "$MODEL" != "$SECOND" ] && [ "$left" -gt 90 ]; then
    echo "== scorer benchmark: $SECOND (random weights), $RECORDS records, bf16, packed rows ($left s left)"
    timeout "$left" $PY bench/scorer.py --random "$SECOND" --records "$RECORDS" --device "$DEVICE" --dtype bfloat16 \
        --max-batch-tokens "${BATCH_TOKENS%% *}" --rows packed --compile --json "$DEST/bench-gpu-$SECOND.json"
    echo "$SECOND exit $? (not counted: a second model, time permitting)"
fi
echo "tests exit $tests, bench exit $bench"
exit $(( tests || bench ))
