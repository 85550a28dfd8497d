"""Speed and memory of the prompt-tuning train step on a T5 1.1 of a named size (random weights).

    python benchmarks/train_step.py --size base [--batch 32 --inputs 512 --targets 8 --prompt 100]
        [--frozen_dtype bfloat16] [--remat none|full|minimal] [--scan_layers] [--attention auto] [--steps 20]
        [--out step.json]

Prints the planned device memory (``compiled.memory_analysis()``) before the first step, then examples/s,
achieved TFLOP/s (model FLOPs: ``model_flops_per_example``, equal to XLA's
``cost_analysis()`` within 2%, tests/test_flop_count.py), peak device memory and compile time. The step is the one ``xprompt-jax train`` runs: jitted, sharded on a
(data, model) mesh over all local devices, frozen weights as a separate argument.
Reference (Hugging Face PEFT prompt tuning, PyTorch bfloat16, one H100): 162 ex/s base, 64 large,
out of memory for xl and xxl at batch 32.
"""
from __future__ import annotations

import argparse
import time

import jax
import numpy as np


def model_flops_per_example(config, inputs: int, targets: int) -> float:
    """Matrix-product FLOPs of one prompt-tuning step per example: forward and backward, counted as XLA runs it.

    ``inputs`` is the encoder length (tokens + prompt). The weights are frozen, so the backward pass takes
    activation gradients only: one product per weight product (``dX = dY W^T``), but two per attention
    product (``dQ`` and ``dK`` from ``dS``; ``dP`` and ``dV`` from the output). Only what reaches the
    prompt is computed: the whole encoder, every decoder layer above the first, and in the first decoder
    layer its MLP and the cross-attention's keys and values (not its query, nor its self-attention).
    Cross-attention keys and values run over the encoder positions.
    """
    d, inner, f = config.emb_dim, config.num_heads * config.head_dim, config.mlp_dim
    mlp_products = len(config.mlp_activations) + 1
    L, T = inputs, targets
    enc_proj, enc_attn, enc_mlp = 4 * 2 * L * d * inner, 2 * 2 * L * L * inner, mlp_products * 2 * L * d * f
    dec_self_proj, dec_self_attn = 4 * 2 * T * d * inner, 2 * 2 * T * T * inner
    dec_cross_qo, dec_cross_kv, dec_cross_attn = 2 * 2 * T * d * inner, 2 * 2 * L * d * inner, 2 * 2 * T * L * inner
    dec_mlp = mlp_products * 2 * T * d * f
    logits = 2 * T * d * config.vocab_size
    encoder_layer = 2 * enc_proj + 3 * enc_attn + 2 * enc_mlp            # forward + backward
    decoder_layer = (2 * (dec_self_proj + dec_cross_qo + dec_cross_kv + dec_mlp)
                     + 3 * (dec_self_attn + dec_cross_attn))
    # The first decoder layer's backward: MLP, the output projection, dP and dV, dK, K/V projections only.
    first_decoder_layer = (dec_self_proj + dec_cross_qo + dec_cross_kv + dec_mlp + dec_self_attn + dec_cross_attn
                           + dec_mlp + dec_cross_qo / 2 + dec_cross_attn + dec_cross_attn / 2 + dec_cross_kv)
    return float(config.num_encoder_layers * encoder_layer + first_decoder_layer
                 + (config.num_decoder_layers - 1) * decoder_layer + 2 * logits)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="base")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--inputs", type=int, default=512)
    parser.add_argument("--targets", type=int, default=8)
    parser.add_argument("--prompt", type=int, default=100)
    parser.add_argument("--frozen_dtype", default="bfloat16")
    parser.add_argument("--dtype", default="bfloat16", help="activation dtype")
    parser.add_argument("--remat", default="none")
    parser.add_argument("--scan_layers", action="store_true", help="T5Config.scan_layers: compile one layer per stack")
    parser.add_argument("--attention", default=None, choices=(None, "xla", "cudnn", "auto"),
                        help="T5Config.attention_implementation (default: the explicit einsums)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--model_parallel", type=int, default=1)
    parser.add_argument("--out", default=None, help="JSON file, written after compiling and again after timing")
    return parser.parse_args(argv)


def _write(path, record):
    if path:
        from xprompt_jax import export
        export.save_json(path, record)  # atomic: a step cut short keeps its last complete record


def _memory_analysis(compiled) -> dict:
    """What XLA plans to hold on the device, known before a single step runs (the out-of-memory forecast)."""
    analysis = compiled.memory_analysis() if hasattr(compiled, "memory_analysis") else None
    keys = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes", "alias_size_in_bytes",
            "generated_code_size_in_bytes")
    return {} if analysis is None else {k: getattr(analysis, k, None) for k in keys}


def _setup(args):
    from xprompt_jax import assembly, partitioning, train_step
    from xprompt_jax.models.config import t5_config
    from xprompt_jax.models.t5 import init_params
    from xprompt_jax.optimizers import make_optimizer
    from xprompt_jax.prompts.kinds import make_spec

    config = t5_config(variant="t5_1_1", size=args.size, dtype=args.dtype, param_dtype=args.frozen_dtype,
                       remat=args.remat, scan_layers=args.scan_layers, attention_implementation=args.attention)
    mesh = partitioning.make_mesh(-1, args.model_parallel)
    shapes = jax.eval_shape(lambda: init_params(config))
    frozen = assembly.random_frozen(config, mesh)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))
    model = assembly.prompted_model(config, make_spec(length=args.prompt, init="uniform", pieces=1), frozen)
    opt = make_optimizer("adafactor", learning_rate=0.3)
    state = train_step.create_state(model, opt, jax.random.PRNGKey(0))
    step = assembly.compile_step(model, opt, state, mesh)
    state = step.place_state(state)
    rng = np.random.RandomState(0)
    targets = rng.randint(3, 32000, (args.batch, args.targets)).astype(np.int32)
    batch = partitioning.global_batch({
        "encoder_input_tokens": rng.randint(3, 32000, (args.batch, args.inputs)).astype(np.int32),
        "decoder_target_tokens": targets,
        "decoder_input_tokens": np.pad(targets, ((0, 0), (1, 0)))[:, :-1],
        "decoder_loss_weights": np.ones_like(targets)}, mesh)
    return config, n_params, frozen, step, state, batch


def main(argv=None):
    args = parse_args(argv)
    config, n_params, frozen, step, state, batch = _setup(args)
    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()} ({jax.default_backend()})")
    print(f"model: t5_1_1_{args.size} ({n_params / 1e6:.1f}M frozen params, {args.frozen_dtype}), prompt "
          f"{args.prompt}, batch {args.batch}, inputs {args.inputs}, targets {args.targets}, remat {args.remat}, "
          f"{'scanned' if args.scan_layers else 'unrolled'} layers, attention {args.attention or 'explicit'}",
          flush=True)
    record = {"args": vars(args), "device": jax.devices()[0].device_kind, "backend": jax.default_backend(),
              "frozen_params": n_params}
    t0 = time.time()
    compiled = step.lower(state, frozen, batch).compile()
    record["compile_s"] = round(time.time() - t0, 2)
    record["memory_analysis"] = memory = _memory_analysis(compiled)
    planned = sum(memory.get(k) or 0 for k in ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes"))
    print(f"compile: {record['compile_s']:.1f} s; planned device memory (arguments + outputs + temporaries): "
          f"{planned / 2**30:.2f} GiB {memory}", flush=True)
    _write(args.out, record)
    state, metrics = step(state, frozen, batch)  # warm-up
    jax.block_until_ready(metrics)
    t0 = time.time()
    for _ in range(args.steps):
        state, metrics = step(state, frozen, batch)
    jax.block_until_ready(metrics)
    seconds = (time.time() - t0) / args.steps
    flops = model_flops_per_example(config, args.inputs + args.prompt, args.targets) * args.batch / seconds
    try:
        peak = (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use")
    except Exception:  # noqa: BLE001 - CPU backends have no memory stats
        peak = None
    record.update(step_ms=round(seconds * 1000, 2), examples_per_s=round(args.batch / seconds, 2),
                  model_tflop_per_s=round(flops / 1e12, 3), peak_bytes_in_use=peak, loss=float(metrics["loss"]))
    _write(args.out, record)
    print(f"step: {seconds * 1000:.1f} ms  examples/s: {args.batch / seconds:.1f}  achieved TFLOP/s: {flops / 1e12:.2f}")
    if peak is not None:
        print(f"peak device memory: {peak / 2**30:.2f} GiB")
    print(f"loss {float(metrics['loss']):.3f}")


if __name__ == "__main__":
    main()
