"""``xprompt-jax predict``: a saved prompt's predictions for every example of a task split, in order.

Labels are not needed, so the unlabelled test splits of SuperGLUE and GLUE are the main use. Each line of
``output_file`` (JSON lines, written atomically) is one example: its position, its ``idx``, its input
text and the prediction; under rank classification also the label index and its log-likelihood.
"""
from __future__ import annotations

import logging
import os
import tempfile
from typing import Any, Dict, List, Optional

from xprompt_jax import assembly, export
from xprompt_jax.commands import submission, text_inputs
from xprompt_jax.errors import DataError
from xprompt_jax.logs import is_main_process
from xprompt_jax.run.config import DataConfig, EvalConfig, FrozenModel, require_string
from xprompt_jax.vocabulary import DEFAULT_VOCAB_PATH, load_vocabulary

logger = logging.getLogger(__name__)


def predict(prompt_source: str,
            output_file: str,
            data: DataConfig = DataConfig(),
            model: FrozenModel = FrozenModel(),
            evaluation: EvalConfig = EvalConfig(),
            combine: str = "prefix",
            submission_dir: Optional[str] = None,
            input_file: Optional[str] = None) -> List[Dict[str, Any]]:
    """Predictions of a saved prompt on ``data.eval_split`` (or ``data.eval_cache``), written to ``output_file``;
    with ``submission_dir`` (SUBMISSION_DIR) also the benchmark's leaderboard file for the task
    (``<Task>.jsonl`` for SuperGLUE, ``<Task>.tsv`` for GLUE: ``commands/submission.py``). ``input_file``
    (INPUT_FILE) predicts for new text instead of a split: JSON lines of ``{"inputs": ...}`` or of a
    SuperGLUE task's raw fields, formatted by the task's preprocessors (``commands/text_inputs.py``)."""
    require_string("PROMPT_SOURCE", prompt_source, "predict.prompt_source")
    require_string("OUTPUT_FILE", output_file, "predict.output_file")
    saved = assembly.read_saved_prompt(prompt_source)
    with tempfile.TemporaryDirectory(prefix="xprompt_predict_") as workdir:
        if input_file:
            vocabulary = load_vocabulary(data.vocabulary_path or os.environ.get("XPROMPT_VOCAB_PATH") or DEFAULT_VOCAB_PATH)
            split = text_inputs.text_input_split(input_file, vocabulary, data.task, data.input_length,
                                                 data.target_length, workdir)
        else:
            split, vocabulary = assembly.open_predict_data(data)
        return _predict(saved, split, vocabulary, output_file, data, model, evaluation, combine, submission_dir)


def _predict(saved, split, vocabulary, output_file, data, model, evaluation, combine, submission_dir):
    if split.num_examples == 0:
        raise DataError(f"the split {split.meta.get('task')}:{split.meta.get('split')} ({split.path}) has no examples")
    spec = _benchmark_spec(split) if submission_dir else None  # refused before any work
    config, frozen = assembly.open_model(model, data.seed, vocabulary)
    prompted, trainable, masks = assembly.prompted_from_saved(config, saved, combine,
                                                              assembly.cached_input_length(split))
    evaluator = assembly.evaluator_for(prompted, split, vocabulary, data, evaluation)
    rows = [{"index": i, "idx": example.get("idx"), "inputs": example.get("inputs_pretokenized"), **prediction}
            for i, (example, prediction) in enumerate(zip(split.examples, evaluator.predictions(trainable, frozen,
                                                                                                 masks)))]
    if is_main_process():
        export.save_jsonl(output_file, rows)
    logger.info(f"[predict] {len(rows)} predictions of {saved.where} on {split.meta.get('task')}:"
                f"{split.meta.get('split')} ({evaluator.mode}) written to {output_file}")
    if spec is not None and is_main_process():
        path = submission.write_submission(submission_dir, spec, rows)
        logger.info(f"[predict] leaderboard file written to {path}")
    return rows


def _benchmark_spec(split):
    from tasks.specs import TASK_SPECS
    task = split.meta.get("task")
    if task not in TASK_SPECS:
        raise DataError(f"SUBMISSION_DIR: the split's task {task!r} ({split.path}) is not a SuperGLUE or GLUE task; "
                        "leaderboard files exist for those only (unset SUBMISSION_DIR)")
    return TASK_SPECS[task]
