"""Export a trained prompt: as ``.npy`` (Lester et al.'s format) and as a Hugging Face PEFT adapter.

What is exported is always the materialised prompt the encoder saw: the masked matrix for XPrompt,
the network's output for EPT and P-Tuning. A PEFT prompt-tuning adapter is ``adapter_config.json`` plus
``adapter_model.safetensors`` holding one tensor, ``prompt_embeddings`` [num_virtual_tokens, token_dim];
``num_transformer_submodules`` is 1 because Lester et al.'s prompt goes to the encoder only.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Optional, Tuple

import numpy as np

from xprompt_jax.errors import ConfigError

PROMPT_FILE = "prompt.npy"
EXPORT_DIR = "export"


def _atomic_dir(target: str):
    """A temporary sibling of ``target`` to fill, then ``_commit`` it into place."""
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=".tmp-" + os.path.basename(target), dir=parent)


def _commit(tmp: str, target: str):
    if os.path.exists(target):
        old = tmp + ".old"
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old)
    else:
        os.replace(tmp, target)


def save_npy(path: str, prompt) -> str:
    """``numpy.save`` written atomically (a temporary file renamed into place)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.npy"
    np.save(tmp, np.asarray(prompt, np.float32))
    os.replace(tmp, path)
    return path


def save_json(path: str, value) -> str:
    """JSON written atomically (a temporary file renamed into place), keys sorted, so a run killed
    mid-write leaves the previous file, never half of one."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2, sort_keys=True)
    os.replace(tmp, path)
    return path


def save_npz(path: str, **arrays) -> str:
    """``numpy.savez`` written atomically."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path


def save_peft_adapter(directory: str, prompt, base_model_name_or_path: Optional[str] = None,
                      config=None) -> str:
    """A PEFT ``PROMPT_TUNING`` adapter for a ``SEQ_2_SEQ_LM`` T5 (loadable with ``PeftModel.from_pretrained``)."""
    from safetensors.numpy import save_file

    prompt = np.ascontiguousarray(np.asarray(prompt, np.float32))
    length, width = prompt.shape
    adapter_config = {
        "peft_type": "PROMPT_TUNING",
        "task_type": "SEQ_2_SEQ_LM",
        "num_virtual_tokens": int(length),
        "token_dim": int(width),
        "num_transformer_submodules": 1,
        "num_attention_heads": int(config.num_heads) if config is not None else None,
        "num_layers": int(config.num_encoder_layers) if config is not None else None,
        "prompt_tuning_init": "RANDOM",
        "prompt_tuning_init_text": None,
        "tokenizer_name_or_path": None,
        "base_model_name_or_path": base_model_name_or_path,
        "inference_mode": True,
        "revision": None,
        "auto_mapping": None,
    }
    tmp = _atomic_dir(directory)
    with open(os.path.join(tmp, "adapter_config.json"), "w") as f:
        json.dump(adapter_config, f, indent=2)
    save_file({"prompt_embeddings": prompt}, os.path.join(tmp, "adapter_model.safetensors"))
    _commit(tmp, directory)
    return directory


def save_t5_checkpoint(directory: str, params) -> str:
    """T5 weights as an Orbax PyTree checkpoint ``{'target': params}``: ``load_t5_checkpoint`` reads it
    (with a config, as any T5X checkpoint), so a fine-tuned or pre-trained model can be frozen next."""
    import orbax.checkpoint as ocp

    directory = os.path.abspath(directory)
    checkpointer = ocp.PyTreeCheckpointer()
    checkpointer.save(directory, {"target": params}, force=True)  # orbax writes to a temp dir, then renames
    return directory


def load_peft_adapter(directory: str) -> np.ndarray:
    from safetensors.numpy import load_file
    tensors = load_file(os.path.join(directory, "adapter_model.safetensors"))
    return tensors["prompt_embeddings"]


def load_prompt_source(path: str) -> Tuple[np.ndarray, str]:
    """A prompt from a ``.npy`` file, a PEFT adapter folder, or a run's ``MODEL_DIR`` (its export).

    NaN or Inf in it is refused: such a prompt comes from a diverged run and would score as a guess.
    """
    values, where = _read_prompt(path)
    if not np.isfinite(values).all():
        raise ConfigError(f"the prompt in {where} has {int((~np.isfinite(values)).sum())} non-finite values "
                          "(NaN or Inf): it comes from a diverged run; retrain it with a lower LEARNING_RATE")
    return values, where


def _read_prompt(path: str) -> Tuple[np.ndarray, str]:
    candidates = [path, os.path.join(path, EXPORT_DIR, PROMPT_FILE), os.path.join(path, PROMPT_FILE)]
    for candidate in candidates:
        if os.path.isfile(candidate):
            values = np.load(candidate)
            if values.ndim != 2:
                raise ConfigError(f"prompt file {candidate} holds shape {values.shape}; expected (length, width)")
            return values, candidate
    if os.path.isfile(os.path.join(path, "adapter_model.safetensors")):
        return load_peft_adapter(path), path
    raise ConfigError(f"no prompt at {path}: expected a .npy file, a PEFT adapter folder, or a run's MODEL_DIR "
                      f"with {EXPORT_DIR}/{PROMPT_FILE} (a finished `xprompt-jax train` or `xprompt-jax xprompt` "
                      "run writes it)")
