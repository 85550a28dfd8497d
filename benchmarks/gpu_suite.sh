#!/usr/bin/env bash
# The GPU measurement as ONE prepared command that fits one device call of at most 8 minutes, most valuable
# numbers first, so a call cut short still returns them.
#
#   bash benchmarks/gpu_suite.sh --prepare     # here, with network and the test extra: wheels, caches, vocabulary
#   bash benchmarks/gpu_suite.sh --dry_run     # here, on the CPU: the same steps on tiny shapes (also a test)
#   bash benchmarks/gpu_suite.sh               # on the GPU machine, in the repository root
#
#   device run  carry=["benchmarks/wheels", "benchmarks/data_cache"]  command="bash benchmarks/gpu_suite.sh"
#               timeout_s=500
#
# The GPU machine has jax, flax, optax, orbax, torch, transformers and peft but not gin-config,
# tensorboardX, seqio or TensorFlow, and no network and no ../shared. --prepare downloads the pure-Python
# wheels into benchmarks/wheels/ and writes the numpy caches of RTE, WiC and BoolQ and a copy of the T5
# vocabulary into benchmarks/data_cache/ (both git-ignored; together well under the 64 MiB a call carries).
# No benchmark needs the wheels, so a failed install is reported and the suite goes on.
#
# Order (every step under its own limit, cut to the time left; each writes its JSON under $OUT as it goes):
#   1. checks: JAX's backend and PyTorch's CUDA are the GPU (else stop: the numbers would be CPU numbers);
#   2. the bf16 matrix-product ceiling;
#   3. the project alone, base and large at batch 32 (train_step.py; large with scanned layers);
#   4. the flash-attention variant (attention_implementation='auto': cuDNN) on base and large;
#   5. PEFT eager, base and large (compare_peft.py --sides peft: PEFT alone in its own process);
#   6. xl with remat and scanned layers, compiled.memory_analysis() printed before the first step;
#   7. PEFT under torch.compile on base;
#   8. if time is left: real data on base (RTE, WiC, BoolQ, both sides alternating), then xxl.
# Last, benchmarks/gpu_summary.py prints the table against the targets (ratios, % of the ceiling).
set -uo pipefail
cd "$(dirname "$0")/.."
MODE="${1:-gpu}"
WHEELS=benchmarks/wheels
CACHE="${GPU_SUITE_CACHE:-benchmarks/data_cache}"
VOCAB="${GPU_SUITE_VOCAB:-$CACHE/t5_sentencepiece.model}"
OUT_DIR="${OUT:-benchmarks/results}"
BUDGET_S="${GPU_SUITE_BUDGET_S:-470}"
START=$SECONDS
WHEEL_SPECS=("gin-config==0.5.0" "tensorboardX==2.6.2.2")
BLOCKED="seqio,tensorflow,tensorflow_datasets"

prepare() {
  mkdir -p "$WHEELS" "$CACHE"
  rm -f "$WHEELS"/*.whl
  for spec in "${WHEEL_SPECS[@]}"; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform any -d "$WHEELS" "$spec" || exit 1
  done
  local py=python3
  [ -x .venv/bin/python ] && py=.venv/bin/python
  "$py" benchmarks/compare_peft.py --write_caches_only --tasks rte,wic,boolq --data_cache "$CACHE" || exit 1
  cp ../shared/fixtures/t5_sentencepiece.model "$VOCAB" || exit 1  # ../shared does not travel to the device
  du -sh "$WHEELS" "$CACHE"
  local total
  total=$(du -sm "$WHEELS" "$CACHE" | awk '{s += $1} END {print s}')
  [ "$total" -lt 60 ] || { echo "gpu_suite --prepare: the bundle is ${total} MiB, over what one call carries"; exit 1; }
  echo "prepared: carry [\"$WHEELS\", \"$CACHE\"] and run: bash benchmarks/gpu_suite.sh"
}

install_wheels() {  # a private --target folder, no index, no dependencies; a failure is not fatal
  local site="$1"
  if ls "$WHEELS"/*.whl >/dev/null 2>&1 && "${PY:-python3}" -m pip install -q --no-index --no-deps --no-compile \
      --no-cache-dir --upgrade --target "$site" "$WHEELS"/*.whl; then
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
  else
    echo "gpu_suite: no wheels installed from $WHEELS (none there, or pip failed); going on: no benchmark needs them"
  fi
}

# step NAME SECONDS COMMAND...: one measurement under min(SECONDS, time left); its exit status is recorded.
DRY_RUN_SAME=""  # the dry run's steps whose code path another step already runs on the same tiny shapes

step() {
  local name="$1" limit="$2"
  shift 2
  if [[ " $DRY_RUN_SAME " == *" $name "* ]]; then
    echo "=== $name: dry run: skipped (the same code path as an earlier step at these tiny shapes)"
    echo "{\"step\": \"$name\", \"skipped\": \"dry run\"}" >> "$OUT_DIR/steps.jsonl"
    return 0
  fi
  local left=$((BUDGET_S - (SECONDS - START)))
  if [ "$left" -lt 15 ]; then
    echo "=== $name: skipped (${left}s of the ${BUDGET_S}s budget left)"
    echo "{\"step\": \"$name\", \"skipped\": true}" >> "$OUT_DIR/steps.jsonl"
    return 0
  fi
  [ "$limit" -gt $((left - 5)) ] && limit=$((left - 5))
  echo "=== $name (limit ${limit}s, ${left}s left): $*"
  local t0=$SECONDS
  timeout --signal=TERM --kill-after=5 "$limit" "$@"
  local status=$?
  echo "=== $name: exit $status after $((SECONDS - t0))s"
  echo "{\"step\": \"$name\", \"exit\": $status, \"seconds\": $((SECONDS - t0))}" >> "$OUT_DIR/steps.jsonl"
  return $status
}

run_suite() {  # PY SCALE: SCALE=gpu (the measurement) or cpu (the dry run's tiny shapes)
  local py="$1" scale="$2"
  export PYTHONUNBUFFERED=1 XPROMPT_BENCH_BLOCK_IMPORTS="$BLOCKED"
  local base=base large=large xl=xl xxl=xxl batch=32 inputs=512 targets=16 steps=10 prompt=100
  local ceiling=(--size 8192 --repeats 10) dtype=bfloat16 expect=gpu
  local rounds=(--rounds 4 --steps 3 --warmup 2 --time_budget 20) compiled=peft_compiled
  if [ "$scale" = cpu ]; then  # torch.compile takes minutes on a CPU: the dry run times eager PEFT in its place
    base=tiny large=tiny xl=tiny xxl=tiny batch=2 inputs=16 targets=4 steps=1 prompt=4 compiled=peft
    ceiling=(--size 256 --repeats 2) dtype=float32 expect=cpu rounds=(--rounds 1 --steps 1 --warmup 1)
    # large, flash large and xxl are base's and xl's code paths at these shapes; compiled PEFT would be eager
    # PEFT again; real data is tests/test_benchmarks.py's real-mode test. Each runs on the GPU.
    DRY_RUN_SAME="project_large flash_large peft_compiled real_base project_xxl"
  fi
  local peft_sizes="$base"
  [ "$large" != "$base" ] && peft_sizes="$base,$large"
  local shape=(--batch "$batch" --inputs "$inputs" --targets "$targets" --prompt "$prompt" --dtype "$dtype")
  local tstep=("$py" benchmarks/train_step.py "${shape[@]}" --frozen_dtype "$dtype" --steps "$steps")
  local peft=("$py" benchmarks/compare_peft.py --mode fixed "${shape[@]}" "${rounds[@]}" --weights independent
              --data_cache "$CACHE" --vocab_path "$VOCAB")
  step checks 60 "$py" benchmarks/device_checks.py --expect "$expect" --out "$OUT_DIR/checks.json" \
    || { echo "gpu_suite: the device checks failed: nothing measured here would be a $expect number"; return 1; }
  step matmul_ceiling 40 "$py" benchmarks/matmul_ceiling.py "${ceiling[@]}" --out "$OUT_DIR/matmul_ceiling.json"
  step project_base 70 "${tstep[@]}" --size "$base" --out "$OUT_DIR/project_$base.json"
  step project_large 80 "${tstep[@]}" --size "$large" --scan_layers --out "$OUT_DIR/project_$large.json"
  step flash_base 60 "${tstep[@]}" --size "$base" --attention auto --out "$OUT_DIR/flash_$base.json"
  step flash_large 70 "${tstep[@]}" --size "$large" --scan_layers --attention auto --out "$OUT_DIR/flash_$large.json"
  step peft_eager 100 "${peft[@]}" --sides peft --sizes "$peft_sizes" --out "$OUT_DIR/peft_eager.json"
  step project_xl 90 "${tstep[@]}" --size "$xl" --remat full --scan_layers --out "$OUT_DIR/project_$xl.json"
  step peft_compiled 150 "${peft[@]}" --sides "$compiled" --sizes "$base" --out "$OUT_DIR/peft_compiled.json"
  step real_base 120 "$py" benchmarks/compare_peft.py --mode real --tasks "${GPU_SUITE_REAL_TASKS:-rte,wic,boolq}" --sizes "$base" \
    --batch "$batch" --prompt "$prompt" --dtype "$dtype" "${rounds[@]}" --data_cache "$CACHE" --vocab_path "$VOCAB" \
    --input_length "${GPU_SUITE_INPUT_LENGTH:-512}" --target_length "${GPU_SUITE_TARGET_LENGTH:-16}" \
    --out "$OUT_DIR/real_base.json"
  step project_xxl 120 "${tstep[@]}" --size "$xxl" --remat full --scan_layers --out "$OUT_DIR/project_$xxl.json"
  "$py" benchmarks/gpu_summary.py "$OUT_DIR"
}

case "$MODE" in
  --prepare)
    prepare ;;
  --dry_run)  # the GPU path on this CPU: tiny shapes, seqio/TF imports blocked, wheels from the folder if any
    py=python3
    [ -x .venv/bin/python ] && py=.venv/bin/python
    site=$(mktemp -d)
    PY="$py" install_wheels "$site"
    OUT_DIR="${OUT:-benchmarks/results/dry_run}"
    mkdir -p "$OUT_DIR"
    run_suite "$py" cpu 2>&1 | tee "$OUT_DIR/gpu_suite.log"
    exit "${PIPESTATUS[0]}" ;;
  gpu)
    mkdir -p "$OUT_DIR"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    install_wheels /tmp/xprompt_site
    run_suite python3 gpu 2>&1 | tee "$OUT_DIR/gpu_suite.log"
    exit "${PIPESTATUS[0]}" ;;
  *)
    echo "usage: bash benchmarks/gpu_suite.sh [--prepare | --dry_run]"; exit 2 ;;
esac
