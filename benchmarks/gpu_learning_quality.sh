#!/usr/bin/env bash
# The zoo's largest world on a CUDA machine: omni's default models, then torchvision's r3d_18 at
# 112 px as video teacher and student (both with the default two-round filter), through
# benchmarks/learning_quality.py. bf16 autocast (train.amp=auto picks it on CUDA), 6 loader workers.
# Writes $OUT/gpu.txt (the card), $OUT/{r3d,c3d}/{runs.jsonl,table.md} and $OUT/log.txt.
#   WORLD   zoo world (default c12_t10_n30: 12 classes x 10 target clips, the most data)
#   SEEDS   comma list (default 0)
#   CACHE_R3D, CACHE_C3D   worlds + workdirs, outside $OUT (a cache prepared elsewhere is reused:
#                          ingest and extract are cache hits when the settings match)
#   UNFILTERED=1           also the r3d_18 student of the unfiltered crawl
# Usage: bash benchmarks/gpu_learning_quality.sh   (after `bash scripts/setup.sh`; nothing is downloaded)
# On a machine with its own Python and torch but no package index (how the H200 run of 2026-11-28
# went): download the missing wheels here for its Python (pydantic, pydantic_core, annotated-types,
# typing-inspection, typing_extensions, av; `pip download --only-binary=:all: --python-version 3.12
# --platform manylinux_2_28_x86_64 ... -d .whl`), carry .whl, then there:
#   pip install --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
#   PY=python3 UNFILTERED=1 bash benchmarks/gpu_learning_quality.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-/tmp/omni-gpu-lq}
WORLD=${WORLD:-c12_t10_n30}
SEEDS=${SEEDS:-0}
CACHE_R3D=${CACHE_R3D:-/tmp/omni-gpu-lq-cache-r3d}
CACHE_C3D=${CACHE_C3D:-/tmp/omni-gpu-lq-cache-c3d}
mkdir -p "$OUT/r3d" "$OUT/c3d"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
GPU=(--set train.amp=auto --set train.loader_workers=6 --set train.threads=8 --set evaluate.batch_size=64)
R3D=()
for sec in teacher.video train.model; do
    for kv in arch=r3d_18 input_size=112 num_frames=8 batch_size=32; do R3D+=(--set "$sec.$kv"); done
done
unf=(--no-unfiltered)
[ "${UNFILTERED:-0}" = "1" ] && unf=()
run() {  # name cache extra-args...
    local name=$1 cache=$2; shift 2
    "$PY" benchmarks/learning_quality.py --worlds "$WORLD" --seeds "$SEEDS" --cache "$cache" \
        --out "/tmp/omni-gpu-lq-$name" --fresh --no-reference "${GPU[@]}" "$@" 2>&1 | tee -a "$OUT/log.txt"
    cp "/tmp/omni-gpu-lq-$name/runs.jsonl" "/tmp/omni-gpu-lq-$name/table.md" "$OUT/$name/"
}
run r3d "$CACHE_R3D" "${unf[@]}" "${R3D[@]}"
run c3d "$CACHE_C3D" --no-unfiltered
