#!/usr/bin/env bash
# Run one xprompt-jax command on every worker of a Cloud TPU VM pod slice (see tpu_pod.py for the steps).
#
#   launch/tpu_pod.sh --project=P --zone=us-central2-b --accelerator=v4-32 --tpu=xprompt-v4-32 \
#       --model_dir=gs://BUCKET/runs/pt_rte [--dry_run] -- \
#       train --gin_file=models/t5_1_1.gin --gin_file=sizes/base.gin --gin_file=prompts/sampled_vocabulary.gin \
#       --gin_file=runs/prompt_tune.gin --gin.TASK="'taskless_super_glue_rte_v102'" --gin.CHECKPOINT="'gs://...'"
set -euo pipefail
exec "${PYTHON:-python3}" "$(dirname "${BASH_SOURCE[0]}")/tpu_pod.py" "$@"
