"""Export a trained prompt: as ``.npy`` (Lester et al.'s format) and as a Hugging Face PEFT adapter.

What is exported is always the materialised prompt the encoder saw: the masked matrix for XPrompt,
the network's output for EPT and P-Tuning. A PEFT prompt-tuning adapter is ``adapter_config.json`` plus
``adapter_model.safetensors`` holding one tensor, ``prompt_embeddings`` [num_virtual_tokens, token_dim];
``num_transformer_submodules`` is 1 because Lester et al.'s prompt goes to the encoder only.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from typing import Optional, Tuple

import numpy as np

from xprompt_jax.errors import ConfigError

PROMPT_FILE = "prompt.npy"
EXPORT_DIR = "export"


@contextlib.contextmanager
def _atomic_file(path: str, suffix: str):
    """A temporary sibling of ``path`` to write, renamed into place on success and removed on any failure
    (a full disk leaves the previous file, never a ``*.tmp*`` beside it)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + suffix
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


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
    with _atomic_file(path, ".tmp.npy") as tmp:
        np.save(tmp, np.asarray(prompt, np.float32))
    return path


def save_json(path: str, value) -> str:
    """JSON written atomically (a temporary file renamed into place), keys sorted, so a run killed
    mid-write leaves the previous file, never half of one."""
    with _atomic_file(path, ".tmp") as tmp, open(tmp, "w") as f:
        json.dump(value, f, indent=2, sort_keys=True)
    return path


def save_text(path: str, text: str) -> str:
    """A text file written atomically (a sweep's tables)."""
    with _atomic_file(path, ".tmp") as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def save_png(path: str, figure) -> str:
    """A matplotlib figure as a PNG at ``path``, appearing atomically (heatmaps, a sweep's plot)."""
    with _atomic_file(path, ".tmp.png") as tmp, open(tmp, "wb") as out:
        figure.savefig(out, format="png")
    return path


def save_jsonl(path: str, records) -> str:
    """One JSON object a line, written atomically (the metrics log when it is rewritten, predictions)."""
    with _atomic_file(path, ".tmp") as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    return path


def save_npz(path: str, **arrays) -> str:
    """``numpy.savez`` written atomically."""
    with _atomic_file(path, ".tmp.npz") as tmp:
        np.savez(tmp, **arrays)
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
    try:
        with open(os.path.join(tmp, "adapter_config.json"), "w") as f:
            json.dump(adapter_config, f, indent=2)
        save_file({"prompt_embeddings": prompt}, os.path.join(tmp, "adapter_model.safetensors"))
        _commit(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
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


PROMPT_FORMATS = (f"an m x e float array saved with numpy.save (.npy), a PEFT adapter folder, or a run's MODEL_DIR "
                  f"(with {EXPORT_DIR}/{PROMPT_FILE})")


def _read_npy(path: str) -> np.ndarray:
    """An m x e numeric array from ``path``; anything else is one ConfigError naming the file and the format."""
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic != b"\x93NUMPY" and not magic.startswith(b"PK"):  # np.load would call any other file "pickled"
        raise ConfigError(f"prompt file {path} is not a .npy file (it starts with {magic!r}); expected {PROMPT_FORMATS}")
    try:
        values = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:  # text, pickled objects, truncated files
        raise ConfigError(f"prompt file {path} is not a readable .npy array ({type(err).__name__}: "
                          f"{str(err).splitlines()[0][:120] if str(err) else 'truncated'}); expected {PROMPT_FORMATS}") from None
    if isinstance(values, np.lib.npyio.NpzFile):
        names = list(values.files)
        values.close()
        raise ConfigError(f"prompt file {path} is an .npz archive (arrays {names}), not one array; expected "
                          f"{PROMPT_FORMATS}")
    if values.dtype.kind not in "fiu" or values.ndim != 2:
        raise ConfigError(f"prompt file {path} holds a {values.dtype} array of shape {values.shape}; expected "
                          f"{PROMPT_FORMATS}")
    return values.astype(np.float32)


def _read_prompt(path: str) -> Tuple[np.ndarray, str]:
    candidates = [path, os.path.join(path, EXPORT_DIR, PROMPT_FILE), os.path.join(path, PROMPT_FILE)]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return _read_npy(candidate), candidate
    if os.path.isfile(os.path.join(path, "adapter_model.safetensors")):
        return _read_peft(path), path
    raise ConfigError(f"no prompt at {path}: expected a .npy file, a PEFT adapter folder, or a run's MODEL_DIR "
                      f"with {EXPORT_DIR}/{PROMPT_FILE} (a finished `xprompt-jax train` or `xprompt-jax xprompt` "
                      "run writes it)")


def _read_peft(directory: str) -> np.ndarray:
    try:
        values = np.asarray(load_peft_adapter(directory))
    except Exception as err:  # safetensors raises its own kinds for truncated files
        raise ConfigError(f"the PEFT adapter in {directory} cannot be read ({type(err).__name__}: "
                          f"{str(err)[:120]}); expected adapter_model.safetensors with prompt_embeddings") from None
    if values.ndim != 2:
        raise ConfigError(f"the PEFT adapter in {directory} holds prompt_embeddings of shape {values.shape}; "
                          "expected (num_virtual_tokens, token_dim)")
    return values.astype(np.float32)
