"""The two sides of ``compare_peft.py``: the project's prompt-tuning step and Hugging Face PEFT's, and their data.

Each side lives in its own worker process (``compare_peft.py --worker``), so XLA's and PyTorch's thread
pools never share a process; this module builds what one worker times.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

TASK_NAMES = {"rte": "taskless_super_glue_rte_v102", "wic": "taskless_super_glue_wic_v102",
              "boolq": "taskless_super_glue_boolq_v102", "cb": "taskless_super_glue_cb_v102",
              "copa": "taskless_super_glue_copa_v102"}
TASK_FOLDERS = {"rte": "RTE", "wic": "WiC", "boolq": "BoolQ", "cb": "CB", "copa": "COPA"}


# -- models ------------------------------------------------------------------------------------------
def project_config(args, size: str):
    from xprompt_jax.models.config import t5_config
    return t5_config(size, dtype=args.dtype, param_dtype=args.dtype, remat=args.remat,
                     scan_layers=getattr(args, "scan_layers", False))  # a bare size: T5 1.1


def hf_config(cfg):
    """transformers' T5Config of the same shape (inverse of t5_import.huggingface.config_from_hf)."""
    import transformers
    gated = len(cfg.mlp_activations) == 2
    act = {"gelu": "gelu_new", "relu": "relu"}[cfg.mlp_activations[0]]
    return transformers.T5Config(
        vocab_size=cfg.vocab_size, d_model=cfg.emb_dim, d_kv=cfg.head_dim, d_ff=cfg.mlp_dim,
        num_layers=cfg.num_encoder_layers, num_decoder_layers=cfg.num_decoder_layers, num_heads=cfg.num_heads,
        relative_attention_num_buckets=cfg.relative_attention_num_buckets,
        relative_attention_max_distance=cfg.relative_attention_max_distance,
        feed_forward_proj=("gated-gelu" if act == "gelu_new" else "gated-relu") if gated else act,
        tie_word_embeddings=cfg.logits_via_embedding, dropout_rate=cfg.dropout_rate,
        layer_norm_epsilon=cfg.layer_norm_epsilon, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
        use_cache=False)


def build_hf(cfg, device, dtype):
    """A random PyTorch T5 of ``cfg``'s shape, on ``device``; T5 1.1 gets its own (untied) output layer.

    Each call under seed 0 draws the same weights on the same device and dtype (``same_weights_hf``: the same
    weights in every process, whatever device it times on)."""
    import torch
    import transformers
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = transformers.T5ForConditionalGeneration(hf_config(cfg))
            if not cfg.logits_via_embedding:
                head = torch.randn(cfg.vocab_size, cfg.emb_dim) * cfg.emb_dim ** -0.5
                model.lm_head.weight = torch.nn.Parameter(head.to(dtype))
    finally:
        torch.set_default_dtype(old)
    return model


def same_weights_hf(cfg, device, dtype):
    """The PyTorch T5 of seed 0 drawn on the CPU in float32, then moved to ``device`` in ``dtype``: the same
    weights in every worker process (a GPU's random stream differs from the CPU's)."""
    import torch
    return build_hf(cfg, "cpu", torch.float32).to(device=device, dtype=dtype)


def frozen_from_hf(model, cfg):
    """The PyTorch weights as the project's frozen tree, through the project's own HF importer."""
    import jax.numpy as jnp
    from flax import traverse_util

    from xprompt_jax.t5_import.huggingface import convert
    tensors = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    converted_cfg, flat = convert(tensors, cfg, "the benchmark's PyTorch T5")
    assert converted_cfg.logits_via_embedding == cfg.logits_via_embedding
    del tensors
    return traverse_util.unflatten_dict({k: jnp.asarray(v, cfg.param_dtype) for k, v in flat.items()}, sep="/")


@dataclasses.dataclass
class ProjectModel:
    model: object
    optimizer: object
    frozen: object
    shardings: object
    step: object
    mesh: object

    def fresh_state(self):
        import jax

        from xprompt_jax import train_step
        state = train_step.create_state(self.model, self.optimizer, jax.random.PRNGKey(0))
        return jax.device_put(state, self.shardings.state)


def build_project(cfg, args, frozen):
    import jax

    from xprompt_jax import assembly, partitioning, train_step
    from xprompt_jax.optimizers import make_optimizer
    from xprompt_jax.prompts.kinds import make_spec
    mesh = partitioning.make_mesh(-1, 1)
    spec = make_spec(length=args.prompt, init="sampled_vocabulary", pieces=16 if cfg.emb_dim % 16 == 0 else 1)
    frozen = assembly.random_frozen(cfg, mesh) if frozen is None else frozen
    model = assembly.prompted_model(cfg, spec, frozen)
    opt = make_optimizer(args.optimizer, learning_rate=args.lr)
    state = train_step.create_state(model, opt, jax.random.PRNGKey(0))
    compiled = assembly.compile_step(model, opt, state, mesh, z_loss=0.0)
    frozen = compiled.place_frozen(frozen)
    return ProjectModel(model, opt, frozen, compiled.shardings, compiled, mesh)


def build_peft(hf_model, cfg, prompt_length: int, gradient_checkpointing: bool):
    """PEFT prompt tuning (``num_virtual_tokens=prompt_length``) around the PyTorch T5."""
    from peft import PromptTuningConfig, TaskType, get_peft_model
    if gradient_checkpointing:
        hf_model.gradient_checkpointing_enable()
    # num_transformer_submodules=1: the prompt goes to the encoder only (Lester et al., and what the project
    # trains). PEFT's seq2seq default of 2 prepends a second prompt to the decoder inputs as well.
    peft_model = get_peft_model(hf_model, PromptTuningConfig(task_type=TaskType.SEQ_2_SEQ_LM,
                                                             num_virtual_tokens=prompt_length,
                                                             num_transformer_submodules=1))
    if not cfg.logits_via_embedding:
        base = peft_model.get_base_model()
        assert base.lm_head.weight.data_ptr() != base.shared.weight.data_ptr(), "lm_head got tied"
    peft_model.train()
    return peft_model


def reset_peft(peft_model, args, initial_prompt):
    """The project's initial prompt (when there is one) into PEFT's table, and a fresh optimiser."""
    import torch
    table = peft_model.prompt_encoder["default"].embedding.weight
    if initial_prompt is not None:
        with torch.no_grad():  # one prompt, the encoder's (num_transformer_submodules=1)
            table[:args.prompt].copy_(torch.from_numpy(np.array(initial_prompt, np.float32)).to(table))
    params = [p for p in peft_model.parameters() if p.requires_grad]
    if args.optimizer == "adafactor":
        from transformers.optimization import Adafactor
        return Adafactor(params, lr=args.lr, scale_parameter=False, relative_step=False, warmup_init=False,
                         decay_rate=-0.8, clip_threshold=1.0, weight_decay=1e-5)
    return torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-5)


# -- the timed sides ---------------------------------------------------------------------------------
class ProjectSide:
    kind = "project"

    def __init__(self, name, pm: ProjectModel, batches, prompt_length: int):
        self.name, self.pm, self.batches, self.prompt_length = name, pm, batches, prompt_length
        self.state, self.metrics, self.first_loss, self.widths = pm.fresh_state(), None, None, []

    def run(self, batch):
        from xprompt_jax import partitioning
        from xprompt_jax.train_step import BATCH_KEYS
        device_batch = partitioning.global_batch({k: batch[k] for k in BATCH_KEYS}, self.pm.mesh)
        self.state, self.metrics = self.pm.step(self.state, self.pm.frozen, device_batch)

    def step(self) -> int:
        batch = next(self.batches)
        self.widths.append(batch["encoder_input_tokens"].shape[1] + self.prompt_length)
        self.run(batch)
        return len(batch["encoder_input_tokens"])

    def sync(self):
        import jax
        jax.block_until_ready(self.metrics)
        if self.first_loss is None:
            self.first_loss = float(self.metrics["loss"])

    def reset_peak(self):
        pass

    def peak_bytes(self):
        import jax
        try:
            return (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use")
        except Exception:  # noqa: BLE001 - CPU devices report no memory stats
            return None


class PeftSide:
    kind = "peft"

    def __init__(self, name, model, optimizer, batches, device, prompt_length: int, dynamic: bool, compiled: bool):
        import torch
        self.torch, self.name, self.model, self.opt, self.batches = torch, name, model, optimizer, batches
        self.device, self.prompt_length, self.dynamic = device, prompt_length, dynamic
        # Real data changes the padded length every batch: compile for dynamic shapes, not once per length.
        self.forward = torch.compile(model, dynamic=dynamic or None) if compiled else model
        self.first_loss, self.widths, self.loss = None, [], None

    def step(self) -> int:
        torch = self.torch
        batch = next(self.batches)
        inputs, targets = batch["encoder_input_tokens"], batch["decoder_target_tokens"]
        weights = batch["decoder_loss_weights"]
        if self.dynamic:  # DataCollatorWithPadding / DataCollatorForSeq2Seq: pad to the batch's longest
            inputs = inputs[:, :max(1, int((inputs != 0).sum(1).max()))]
            keep = max(1, int((weights != 0).sum(1).max()))
            targets, weights = targets[:, :keep], weights[:, :keep]
        self.widths.append(inputs.shape[1] + self.prompt_length)
        ids = torch.from_numpy(np.ascontiguousarray(inputs)).long().to(self.device, non_blocking=True)
        labels = torch.from_numpy(np.where(weights > 0, targets, -100)).long().to(self.device, non_blocking=True)
        out = self.forward(input_ids=ids, attention_mask=(ids != 0).long(), labels=labels)
        out.loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.loss = out.loss.detach()
        if self.first_loss is None:  # the loss of the very first step (same weights and prompt as the project's)
            self.first_loss = float(self.loss)
        return len(inputs)

    def sync(self):
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()

    def reset_peak(self):
        if self.device.startswith("cuda"):
            self.torch.cuda.reset_peak_memory_stats()

    def peak_bytes(self):
        return self.torch.cuda.max_memory_allocated() if self.device.startswith("cuda") else None


def precompile(side: ProjectSide, shapes, template):
    """One step at every (encoder, decoder) width the timed steps will meet (each is one XLA program).

    ``template`` is a batch of another iterator, so the side's own batches start at the stream's start."""
    from xprompt_jax.data.buckets import DECODER_KEYS, fit_length
    for width, targets in sorted(set(shapes)):
        batch = dict(template, encoder_input_tokens=fit_length(template["encoder_input_tokens"], width))
        batch.update({k: fit_length(template[k], targets) for k in DECODER_KEYS})
        side.run(batch)
        side.sync()


# -- data --------------------------------------------------------------------------------------------
def fixed_batches(args, vocab_size: int):
    rng = np.random.RandomState(0)
    targets = rng.randint(3, min(vocab_size, 32000), (args.batch, args.targets)).astype(np.int32)
    batch = {"encoder_input_tokens": rng.randint(3, min(vocab_size, 32000), (args.batch, args.inputs)).astype(np.int32),
             "decoder_target_tokens": targets, "decoder_input_tokens": np.pad(targets, ((0, 0), (1, 0)))[:, :-1],
             "decoder_loss_weights": np.ones_like(targets)}
    while True:
        yield batch


def task_split(args, task: str):
    """'train', or 'validation' when neither a train cache nor the official train file is there."""
    lengths = f"{args.input_length}-{args.target_length}"
    if os.path.isdir(os.path.join(args.data_cache, task, f"train-{lengths}")):
        return "train"
    if os.path.isfile(os.path.join(args.data_dir, TASK_FOLDERS[task], "train.jsonl")):
        return "train"
    return "validation"


def open_task(args, task: str, split: str):
    """The numpy cache of ``task:split`` under ``--data_cache``, written (seqio, TensorFlow) when missing."""
    from xprompt_jax.data.cache import CachedSplit
    path = os.path.join(args.data_cache, task, f"{split}-{args.input_length}-{args.target_length}")
    if not os.path.isdir(path):
        import tasks.superglue
        from xprompt_jax.data.write_cache import write_cache
        tasks.superglue.register_superglue(data_dir=args.data_dir, vocab_path=args.vocab_path)
        write_cache(TASK_NAMES[task], split, path, {"inputs": args.input_length, "targets": args.target_length})
    return CachedSplit.open(path)


def project_sides(args, cfg, pm, split):
    """The project's timed sides, compiled for every width their timed steps meet: one fixed-shape side, or
    on real data the fixed length, the length buckets, and buckets with length-grouped shuffling."""
    if split is None:
        side = ProjectSide("project", pm, fixed_batches(args, cfg.vocab_size), args.prompt)
        precompile(side, [(args.inputs, args.targets)], next(fixed_batches(args, cfg.vocab_size)))
        return [side]
    from xprompt_jax.data.buckets import bucket_lengths
    buckets = bucket_lengths(split.features["encoder_input_tokens"].shape[1])
    kinds = {"project_fixed": dict(), "project_buckets": dict(buckets=buckets),
             "project_grouped": dict(buckets=buckets, group_by_length=True)}
    needed = args.warmup + args.rounds * args.steps + 1
    sides = []
    for name, kw in kinds.items():
        side = ProjectSide(name, pm, split.batches(args.batch, shuffle=True, seed=0, **kw), args.prompt)
        peek = split.batches(args.batch, shuffle=True, seed=0, **kw)
        peeked = [next(peek) for _ in range(needed)]
        precompile(side, [(b["encoder_input_tokens"].shape[1], b["decoder_target_tokens"].shape[1])
                          for b in peeked], split.batches(args.batch, shuffle=True, seed=0).__next__())
        sides.append(side)
    return sides


def peft_sides(args, cfg, model, device, name: str, compiled: bool, split, initial_prompt):
    """PEFT's timed sides: the fixed batch, or on real data each batch padded to its longest example
    (``DataCollatorWithPadding``), and with ``--peft_grouped`` also length-grouped batches."""
    if split is None:
        return [PeftSide(name, model, reset_peft(model, args, initial_prompt), fixed_batches(args, cfg.vocab_size),
                         device, args.prompt, dynamic=False, compiled=compiled)]
    sides = [PeftSide(name, model, reset_peft(model, args, initial_prompt),
                      split.batches(args.batch, shuffle=True, seed=0), device, args.prompt, dynamic=True,
                      compiled=compiled)]
    if args.peft_grouped and not compiled:
        sides.append(PeftSide(f"{name}_grouped", model, reset_peft(model, args, initial_prompt),
                              split.batches(args.batch, shuffle=True, seed=0, group_by_length=True),
                              device, args.prompt, dynamic=True, compiled=False))
    return sides
