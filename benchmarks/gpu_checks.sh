#!/usr/bin/env bash
# Issue 11's GPU checks as one short script, for a CUDA machine (an H100 takes about 10 minutes).
# Names the card with every figure and writes everything under $OUT (default /tmp/omni-gpu):
#   gpu.txt                 the card (nvidia-smi)
#   train_speed_cuda.md     omni's loop vs a plain loop per model, fp32 and bf16, GPU busy % sampled
#                           (benchmarks/train_speed.py --device cuda, 6 loader workers, pinned memory)
#   train_speed_cuda_cl.md  the same with channels_last
#   demo.log, dmon.txt      the demo world through omni with torchvision's r3d_18 at 112 px as video
#                           teacher and student (teacher training, teacher scoring of every web video
#                           and window, the OmniSource student over about one pass of its training
#                           set), with `nvidia-smi dmon` sampling utilisation every second
#   summary.txt             mean GPU busy % while each stage ran (from dmon and the stage log times)
# Usage: bash benchmarks/gpu_checks.sh   (after `bash scripts/setup.sh`; nothing is downloaded)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/omni-gpu}
mkdir -p "$OUT"
PY=${PY:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"

"$PY" benchmarks/train_speed.py --device cuda --loader-workers 6 --steps 20 --rounds 2 \
    --models tsn_resnet10t,c3d_small,c3d_small_joint,r3d_18 --out "$OUT/train_speed_cuda.md"
"$PY" benchmarks/train_speed.py --device cuda --loader-workers 6 --steps 20 --rounds 2 --channels-last \
    --models c3d_small,r3d_18 --precisions bf16 --out "$OUT/train_speed_cuda_cl.md"

nvidia-smi dmon -s u -d 1 -o T > "$OUT/dmon.txt" &
DMON=$!
trap 'kill $DMON 2>/dev/null || true' EXIT
R3D="arch=r3d_18 input_size=112 num_frames=8 batch_size=32"
sets=()
for sec in teacher.video train.model; do
    for kv in $R3D; do sets+=(--set "$sec.$kv"); done
done
# the student: about one pass over its training set (the demo keeps ~400 web samples + 18 target clips)
"$PY" -m omni demo --workdir "$OUT/demo" --no-prefect "${sets[@]}" --set teacher.video.steps=60 \
    --set train.model.steps=30 --set train.loader_workers=6 --set evaluate.batch_size=64 2>&1 | tee "$OUT/demo.log"
kill $DMON 2>/dev/null || true

"$PY" - "$OUT" <<'EOF'
import re, sys
from datetime import datetime
from pathlib import Path

out = Path(sys.argv[1])
util = []  # (HH:MM:SS, sm %)
for line in (out / "dmon.txt").read_text().splitlines():
    f = line.split()
    if len(f) >= 3 and re.match(r"\d\d:\d\d:\d\d", f[0]) and f[2].isdigit():
        util.append((f[0], int(f[2])))
# stage start times from the omni log ("HH:MM:SS omni INFO <unit>: ...")
starts = []
for line in (out / "demo.log").read_text().splitlines():
    m = re.match(r"(\d\d:\d\d:\d\d) omni INFO (\w+)/?(\S*?):", line)
    if m and (not starts or starts[-1][1] != m.group(2)):
        starts.append((m.group(1), m.group(2)))
lines = [f"card: {(out / 'gpu.txt').read_text().splitlines()[-1]}"]
for i, (t0, stage) in enumerate(starts):
    t1 = starts[i + 1][0] if i + 1 < len(starts) else "99:99:99"
    u = [v for t, v in util if t0 <= t < t1]
    if u:
        lines.append(f"{stage:<10} {len(u):>4} s sampled, GPU busy mean {sum(u) / len(u):.0f}%")
(out / "summary.txt").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
