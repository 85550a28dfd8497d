#!/usr/bin/env bash
# The GPU measurement of issue 14 as ONE prepared command that fits one device call (at most 9 minutes).
#
#   bash benchmarks/gpu_suite.sh --prepare     # here, with network and the test extra: wheels + data caches
#   bash benchmarks/gpu_suite.sh --dry_run     # here, on the CPU: the same steps, tiny shapes, imports blocked
#   bash benchmarks/gpu_suite.sh               # on the GPU machine, in the repository root
#
# The GPU machine has jax, flax, optax, orbax, torch, transformers and peft, but not gin-config,
# tensorboardX, seqio or TensorFlow, and no network. --prepare downloads the pure-Python wheels the
# project imports into benchmarks/wheels/ and writes the numpy caches of RTE, WiC and BoolQ (T5 format,
# the real T5 vocabulary) into benchmarks/data_cache/; both are git-ignored and travel with the call:
#
#   device run  carry=["benchmarks/wheels", "benchmarks/data_cache"]
#               command="bash benchmarks/gpu_suite.sh"   timeout_s=560
#
# On the GPU the suite installs the wheels into a private folder (nothing of the image is upgraded) and
# runs, each step under its own time limit so one slow size cannot starve the rest:
#   1. the bf16 matrix-product ceiling (benchmarks/matmul_ceiling.py);
#   2. compare_peft.py fixed mode, base and large at batch 32, bf16, PEFT eager and torch.compile;
#   3. compare_peft.py real mode (RTE, WiC, BoolQ) on base at batch 32;
#   4. eval_speed.py: BoolQ validation, whole split, base, fixed length against buckets;
#   5. compare_peft.py fixed mode, xl and xxl at batch 32 with remat (PEFT with gradient checkpointing).
# Every step writes its JSON under $OUT (or benchmarks/results/ when OUT is unset) as it goes, so a step
# cut short by its limit still leaves what it measured; the log is $OUT/gpu_suite.log.
set -uo pipefail
cd "$(dirname "$0")/.."
MODE="${1:-gpu}"
WHEELS=benchmarks/wheels
CACHE=benchmarks/data_cache
OUT_DIR="${OUT:-benchmarks/results}"
mkdir -p "$OUT_DIR"
# Pure-Python packages the project imports that the GPU image lacks (seqio/TensorFlow are not needed:
# the benchmarks read the numpy caches, and the dry run blocks their imports to prove it).
WHEEL_SPECS=("gin-config==0.5.0" "tensorboardX==2.6.2.2")
BLOCKED="seqio,tensorflow,tensorflow_datasets"

prepare() {
  mkdir -p "$WHEELS"
  rm -f "$WHEELS"/*.whl
  for spec in "${WHEEL_SPECS[@]}"; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform any -d "$WHEELS" "$spec" || exit 1
  done
  local py=python3
  [ -x .venv/bin/python ] && py=.venv/bin/python
  # the caches compare_peft.py and eval_speed.py read (written once, with seqio and TensorFlow, here)
  "$py" benchmarks/compare_peft.py --write_caches_only --tasks rte,wic,boolq --data_cache "$CACHE" || exit 1
  du -sh "$WHEELS" "$CACHE"
  echo "prepared: carry [\"$WHEELS\", \"$CACHE\"] and run: bash benchmarks/gpu_suite.sh"
}

install_wheels() {  # as the device README says: a private --target folder, no index, no dependencies
  local site="$1"
  "${PY:-python3}" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
    "$WHEELS"/*.whl || { echo "gpu_suite: installing $WHEELS/*.whl failed (run --prepare here first)"; exit 1; }
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
}

# step NAME SECONDS COMMAND...: one measurement under its own limit; its exit status is logged, not fatal.
step() {
  local name="$1" limit="$2"
  shift 2
  echo "=== $name (limit ${limit}s): $*"
  local t0=$SECONDS
  timeout --signal=TERM --kill-after=10 "$limit" "$@"
  echo "=== $name: exit $? after $((SECONDS - t0))s"
}

run_suite() {  # PY SCALE: SCALE=gpu (the measurement) or cpu (the dry run's tiny shapes)
  local py="$1" scale="$2"
  export PYTHONUNBUFFERED=1 XPROMPT_BENCH_BLOCK_IMPORTS="$BLOCKED"
  local common=(--data_cache "$CACHE" --time_budget 25)
  if [ "$scale" = gpu ]; then
    local dtype=(--dtype bfloat16) batch=(--batch 32) base=base large=large xl=xl xxl=xxl
    local fixed=(--inputs 512 --targets 16) rounds=(--rounds 6 --steps 5 --warmup 3) limits=(40 140 100 70 150)
    local eval_examples=0
  else
    local dtype=(--dtype float32) batch=(--batch 4) base=tiny large=tiny
    local xl=tiny xxl=tiny fixed=(--inputs 64 --targets 8)
    local rounds=(--rounds 1 --steps 1 --warmup 1) limits=(60 300 300 300 300) eval_examples=64
  fi
  step matmul_ceiling "${limits[0]}" "$py" benchmarks/matmul_ceiling.py --out "$OUT_DIR/matmul_ceiling.json" \
    $( [ "$scale" = cpu ] && echo --size 512 --repeats 2 )
  step fixed_base_large "${limits[1]}" "$py" benchmarks/compare_peft.py --mode fixed --sizes "$base,$large" \
    "${batch[@]}" "${dtype[@]}" "${fixed[@]}" "${rounds[@]}" "${common[@]}" --peft_compile \
    --out "$OUT_DIR/fixed_base_large.json"
  step real_base "${limits[2]}" "$py" benchmarks/compare_peft.py --mode real --tasks rte,wic,boolq --sizes "$base" \
    "${batch[@]}" "${dtype[@]}" "${rounds[@]}" "${common[@]}" --peft_compile --out "$OUT_DIR/real_base.json"
  step eval_boolq "${limits[3]}" "$py" benchmarks/eval_speed.py --task boolq --split validation \
    --examples "$eval_examples" --size "$base" "${dtype[@]}" "${batch[@]}" --rounds 2 --data_cache "$CACHE" \
    --out "$OUT_DIR/eval_boolq.json"
  step fixed_xl_xxl "${limits[4]}" "$py" benchmarks/compare_peft.py --mode fixed --sizes "$xl,$xxl" \
    "${batch[@]}" "${dtype[@]}" "${fixed[@]}" "${rounds[@]}" "${common[@]}" --remat full --weights independent \
    --out "$OUT_DIR/fixed_xl_xxl.json"
}

case "$MODE" in
  --prepare)
    prepare ;;
  --dry_run)  # the GPU path on this CPU: wheels from the folder, seqio/TF imports blocked, tiny shapes
    [ -d "$WHEELS" ] && [ -d "$CACHE" ] || { echo "gpu_suite --dry_run: run --prepare first"; exit 1; }
    py=python3
    [ -x .venv/bin/python ] && py=.venv/bin/python
    site=$(mktemp -d)
    PY="$py" install_wheels "$site"  # the same install as on the GPU (into a throw-away folder)
    OUT_DIR="${OUT:-benchmarks/results/dry_run}"
    mkdir -p "$OUT_DIR"
    run_suite "$py" cpu 2>&1 | tee "$OUT_DIR/gpu_suite.log" ;;
  gpu)
    [ -d "$WHEELS" ] && [ -d "$CACHE" ] || { echo "gpu_suite: $WHEELS and $CACHE must travel (carry them)"; exit 1; }
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    install_wheels /tmp/xprompt_site
    python3 -c "import jax, torch, transformers, peft; print('jax', jax.__version__, jax.devices(), '| torch', \
torch.__version__, '| transformers', transformers.__version__, '| peft', peft.__version__)" || exit 1
    run_suite python3 gpu 2>&1 | tee "$OUT_DIR/gpu_suite.log" ;;
  *)
    echo "usage: bash benchmarks/gpu_suite.sh [--prepare | --dry_run]"; exit 2 ;;
esac
