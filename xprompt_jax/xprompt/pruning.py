"""XPrompt's stage 2 and 3 after scoring: hierarchical token/piece pruning, ratios, rewinding.

``importance.importance_scores`` gives the scores (Ma et al. 2022, eqs. 3 and 5); this module turns
them into masks. Pruning removes the lowest-scored surviving tokens first, then the lowest-scored pieces
of the tokens that survive (``level='hierarchical'``), or only tokens / only pieces (the paper's
granularity ablations). A compression ratio is the fraction of prompt scalars removed, counted against
the full m x e prompt, and is hit exactly as a whole number of pieces (see ``plan_for_ratio``). A
schedule of increasing ratios prunes from the previous ratio's masks, so masks only ever lose entries.

Rewinding (stage 3) resets the survivors to their stage-1 values and fixes the rest at zero.

Masks and scores here are small host-side NumPy arrays. ``masks.surviving_parameters`` counts what
masks keep.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from xprompt_jax.errors import ConfigError
from xprompt_jax.prompted import PROMPT
from xprompt_jax.prompts import masks as mask_lib
from xprompt_jax.prompts.modules import MATRIX, matrix_mask

TOKEN, PIECE = "token", "piece"
LEVELS = ("hierarchical", "token", "piece")
DEFAULT_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)

Scores = Dict[str, np.ndarray]   # {'token': (m,), 'piece': (m, k)}
Masks = Dict[str, np.ndarray]    # {'token_mask': (m,), 'piece_mask': (m, k)}


# ------------------------------------------------------------------------------------------------
# Checks
# ------------------------------------------------------------------------------------------------
def check_masks(masks: Mapping) -> Tuple[np.ndarray, np.ndarray]:
    """``(token_mask (m,), piece_mask (m, k))`` as float32 NumPy copies; a clear error if malformed."""
    missing = [name for name in (mask_lib.TOKEN_MASK, mask_lib.PIECE_MASK) if name not in masks]
    if missing:
        raise ConfigError(f"masks need {missing}; got keys {sorted(masks)} (use PromptedT5.init or masks.ones)")
    token = np.array(masks[mask_lib.TOKEN_MASK], np.float32)
    piece = np.array(masks[mask_lib.PIECE_MASK], np.float32)
    if token.ndim != 1 or piece.ndim != 2 or piece.shape[0] != token.shape[0]:
        raise ConfigError(f"masks must be token_mask (m,) and piece_mask (m, k) for one prompt; got "
                          f"{token.shape} and {piece.shape} (per-example masks are internal to scoring)")
    if not (np.isin(token, (0, 1)).all() and np.isin(piece, (0, 1)).all()):
        raise ConfigError("masks must hold only 0 and 1")
    return token, piece


def check_scores(scores: Mapping, token: np.ndarray, piece: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(token_scores, piece_scores)`` as float64 arrays shaped like the masks."""
    if TOKEN not in scores or PIECE not in scores:
        raise ConfigError(f"scores need keys {[TOKEN, PIECE]}; got {sorted(scores)}")
    token_scores = np.asarray(scores[TOKEN], np.float64)
    piece_scores = np.asarray(scores[PIECE], np.float64)
    if token_scores.shape != token.shape or piece_scores.shape != piece.shape:
        raise ConfigError(f"scores {token_scores.shape}/{piece_scores.shape} do not match the masks "
                          f"{token.shape}/{piece.shape}")
    if not (np.isfinite(token_scores).all() and np.isfinite(piece_scores).all()):
        raise ConfigError("importance scores contain NaN or inf; check the stage-1 prompt and the loss")
    return token_scores, piece_scores


def check_ratio(ratio: float) -> float:
    ratio = float(ratio)
    if not 0.0 < ratio < 1.0:
        raise ConfigError(f"compression ratio {ratio} must lie strictly between 0 and 1 "
                          "(the fraction of prompt scalars removed, e.g. 0.3)")
    return ratio


def _check_level(level: str):
    if level not in LEVELS:
        raise ConfigError(f"unknown pruning level {level!r}; choose one of {list(LEVELS)}")


# ------------------------------------------------------------------------------------------------
# Pruning primitives
# ------------------------------------------------------------------------------------------------
def _ascending(scores: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Flat indices of ``candidates``, lowest score first; ties go to the lower index (deterministic)."""
    flat = np.flatnonzero(candidates.reshape(-1))
    return flat[np.argsort(scores.reshape(-1)[flat], kind="stable")]


def _prune_tokens_within(token_scores, token_mask, piece_mask, n_prune: int, budget: Optional[int]):
    """Zero up to ``n_prune`` lowest-scored surviving tokens, stopping before one whose surviving pieces
    no longer fit in ``budget`` (None: no limit). Returns the new token mask and the pieces it removed."""
    token_mask = token_mask.copy()
    removed = 0
    for i in _ascending(token_scores, token_mask > 0)[:max(n_prune, 0)]:
        cost = int(piece_mask[i].sum())
        if budget is not None and removed + cost > budget:
            break
        token_mask[i] = 0
        removed += cost
    return token_mask, removed


def prune_tokens(token_scores, token_mask, n_prune: int) -> np.ndarray:
    """``token_mask`` with its ``n_prune`` lowest-scored surviving tokens set to 0."""
    token_mask = np.array(token_mask, np.float32)
    token_scores = np.asarray(token_scores, np.float64)
    if token_scores.shape != token_mask.shape or token_mask.ndim != 1:
        raise ConfigError(f"token scores {token_scores.shape} must match the token mask {token_mask.shape} (m,)")
    surviving = int((token_mask > 0).sum())
    if not 0 <= n_prune <= surviving:
        raise ConfigError(f"cannot prune {n_prune} tokens: {surviving} survive")
    return _prune_tokens_within(token_scores, token_mask, np.ones((token_mask.size, 1)), n_prune, None)[0]


def prune_pieces(piece_scores, token_mask, piece_mask, n_prune: int) -> np.ndarray:
    """``piece_mask`` with the ``n_prune`` lowest-scored pieces of SURVIVING tokens set to 0."""
    token_mask = np.asarray(token_mask, np.float32)
    piece_mask = np.array(piece_mask, np.float32)
    piece_scores = np.asarray(piece_scores, np.float64)
    if piece_scores.shape != piece_mask.shape or piece_mask.shape[:1] != token_mask.shape:
        raise ConfigError(f"piece scores {piece_scores.shape}, piece mask {piece_mask.shape} and token mask "
                          f"{token_mask.shape} must be (m, k), (m, k) and (m,)")
    candidates = (token_mask[:, None] > 0) & (piece_mask > 0)
    if not 0 <= n_prune <= int(candidates.sum()):
        raise ConfigError(f"cannot prune {n_prune} pieces: {int(candidates.sum())} survive in surviving tokens")
    flat = piece_mask.reshape(-1)
    flat[_ascending(piece_scores, candidates)[:n_prune]] = 0
    return flat.reshape(piece_mask.shape)


def pruned_pieces(token_mask, piece_mask) -> int:
    """Pieces the masks remove, counting every piece of a pruned token."""
    return int(np.sum((np.asarray(token_mask)[:, None] * np.asarray(piece_mask)) == 0))


# ------------------------------------------------------------------------------------------------
# Ratios
# ------------------------------------------------------------------------------------------------
def round_half_up(x: float) -> int:
    """Nearest integer, halves rounded up (Python's round() sends halves to even, which surprises)."""
    return int(math.floor(x + 0.5 + 1e-9))


@dataclasses.dataclass(frozen=True)
class Plan:
    """What masks at a ratio remove, in total: ``tokens`` whole tokens and ``pieces`` pieces (those of
    pruned tokens included). Surviving scalars are ``(m * k - pieces) * (e / k)``."""
    tokens: int
    pieces: int


def plan_for_ratio(ratio: float, length: int, pieces: int, level: str = "hierarchical",
                   token_share: float = 0.5) -> Plan:
    """How many tokens and pieces a compression ``ratio`` removes from an m x k prompt.

    The ratio counts removed scalars over all m * e, and a piece is the smallest unit, so the target is
    ``round_half_up(ratio * m * k)`` pieces: the nearest achievable sparsity, at most half a piece
    (e / 2k scalars) away, identical for every variant that can reach it.
    - 'piece': that many pieces, no token pruning.
    - 'token': ``round_half_up(ratio * m)`` whole tokens (the nearest whole-token sparsity; the same
      count as the others whenever ratio * m is whole, e.g. the paper's m = 20 at every 10%).
    - 'hierarchical': tokens first, then pieces among survivors, for the same piece total. The split
      gives each level a share of the compression: the kept token fraction is about
      ``(1 - ratio) ** token_share`` (default 0.5: tokens and pieces each keep about sqrt(1 - ratio)),
      i.e. ``round_half_up(m * (1 - (1 - ratio) ** token_share))`` tokens, capped so that their pieces
      do not exceed the total. A greedy "whole tokens while they fit" split would never prune a piece
      when ratio * m is whole (m = 20, every 10%), turning XPrompt into its token-only ablation.
    At least one piece (and one token) must survive.
    """
    ratio = check_ratio(ratio)
    _check_level(level)
    if not 0.0 <= token_share <= 1.0:
        raise ConfigError(f"token_share {token_share} must lie in [0, 1]")
    total = length * pieces
    if level == "token":
        tokens = round_half_up(ratio * length)
        plan = Plan(tokens, tokens * pieces)
    else:
        removed = round_half_up(ratio * total)
        tokens = 0 if level == "piece" else min(round_half_up(length * (1 - (1 - ratio) ** token_share)),
                                                 removed // pieces)
        plan = Plan(tokens, removed)
    if plan.pieces >= total or plan.tokens >= length:
        raise ConfigError(f"ratio {ratio} would prune the whole {length} x {pieces}-piece prompt at level "
                          f"{level!r}; use a smaller ratio or a longer prompt")
    if plan.pieces == 0:  # the table would show a pruned row that kept every parameter
        unit, units = ("token", length) if level == "token" else ("piece", total)
        raise ConfigError(f"ratio {ratio} removes nothing from the {length} x {pieces}-piece prompt at level "
                          f"{level!r} (it rounds to 0 of {units} {unit}s); a ratio of {1 / units:.4g} prunes one "
                          f"{unit}: use that or larger")
    return plan


def planned_surviving_parameters(ratio: float, length: int, width: int, pieces: int,
                                 level: str = "hierarchical", token_share: float = 0.5) -> int:
    """The surviving-scalar count ``masks_for_ratio`` reaches from unpruned (or same-level) masks."""
    piece_width = mask_lib.check_pieces(width, pieces)
    return (length * pieces - plan_for_ratio(ratio, length, pieces, level, token_share).pieces) * piece_width


def masks_for_ratio(scores: Mapping, masks: Mapping, ratio: float, *, level: str = "hierarchical",
                    reverse: bool = False, token_share: float = 0.5) -> Masks:
    """Prune ``masks`` further, by ``scores``, until they remove exactly ``plan_for_ratio``'s count.

    Pruning starts from ``masks`` (only ever removing entries), so the ratio must be at least the one
    they already reach. 'hierarchical' prunes the lowest-scored surviving tokens up to the plan's token
    count (stopping early rather than overshoot the piece total), then the lowest-scored pieces of the
    surviving tokens until the piece total is met exactly. ``reverse=True`` keeps the LOWEST-scored
    parts instead (Reversed XPrompt) at the same counts.
    """
    token, piece = check_masks(masks)
    token_scores, piece_scores = check_scores(scores, token, piece)
    if reverse:
        token_scores, piece_scores = -token_scores, -piece_scores
    length, k = piece.shape
    plan = plan_for_ratio(ratio, length, k, level, token_share)
    already, tokens_gone = pruned_pieces(token, piece), int((token == 0).sum())
    if already > plan.pieces or (level == "token" and tokens_gone > plan.tokens):
        raise ConfigError(f"the masks already remove {already} of {length * k} pieces ({tokens_gone} tokens), "
                          f"more than ratio {ratio} at level {level!r} allows; ratios must increase")
    if level == "token":
        token, _ = _prune_tokens_within(token_scores, token, piece, plan.tokens - tokens_gone, None)
    else:
        token, _ = _prune_tokens_within(token_scores, token, piece, plan.tokens - tokens_gone,
                                        plan.pieces - already)
        piece = prune_pieces(piece_scores, token, piece, plan.pieces - pruned_pieces(token, piece))
    return {mask_lib.TOKEN_MASK: token, mask_lib.PIECE_MASK: piece}


def random_scores(rng, masks_like: Mapping) -> Scores:
    """Uniform random scores shaped like the masks: any planner turns them into random masks."""
    token, piece = check_masks(masks_like)
    token_rng, piece_rng = jax.random.split(rng)
    return {TOKEN: np.asarray(jax.random.uniform(token_rng, token.shape), np.float64),
            PIECE: np.asarray(jax.random.uniform(piece_rng, piece.shape), np.float64)}


def random_masks(rng, masks_like: Mapping, ratio: float, *, level: str = "hierarchical",
                 token_share: float = 0.5) -> Masks:
    """Random Prompt: masks at exactly XPrompt's sparsity and token/piece split, chosen at random.

    Pruning starts from ``masks_like`` (all ones for a fresh Random Prompt)."""
    return masks_for_ratio(random_scores(rng, masks_like), masks_like, ratio, level=level,
                           token_share=token_share)


def random_score_fn(rng) -> Callable[[Mapping], Scores]:
    """A ``score_fn`` for ``ratio_schedule`` drawing fresh random scores at every ratio."""
    calls = [0]

    def score_fn(masks):
        calls[0] += 1
        return random_scores(jax.random.fold_in(rng, calls[0]), masks)
    return score_fn


class ScheduleStep(NamedTuple):
    ratio: float
    masks: Masks
    scores: Scores   # the scores this ratio's pruning used


def ratio_schedule(score_fn: Callable[[Mapping], Scores], masks: Mapping,
                   ratios: Sequence[float] = DEFAULT_RATIOS, *, level: str = "hierarchical",
                   reverse: bool = False, recompute: bool = True, token_share: float = 0.5) -> List[ScheduleStep]:
    """Masks for each of the increasing ``ratios``, each pruned from the previous ratio's masks.

    The paper repeats token- and piece-level pruning to reach each ratio; the faithful reading is to
    score again at the current masks (``recompute=True``: ``score_fn(masks)`` is called once per ratio,
    on the previous ratio's masks). ``recompute=False`` scores once, at the starting masks, and ranks
    every ratio by those scores. Either way each ratio's masks are a subset of the previous ratio's.
    ``score_fn`` is typically ``lambda m: importance_scores(model, stage1_trainable, frozen, m, batches())``.
    """
    ratios = [check_ratio(r) for r in ratios]
    if any(b <= a for a, b in zip(ratios, ratios[1:])):
        raise ConfigError(f"ratios {ratios} must be strictly increasing")
    check_masks(masks)
    steps, scores = [], None
    for ratio in ratios:
        if scores is None or recompute:
            scores = score_fn(masks)
        masks = masks_for_ratio(scores, masks, ratio, level=level, reverse=reverse, token_share=token_share)
        steps.append(ScheduleStep(ratio, masks, scores))
    return steps


# ------------------------------------------------------------------------------------------------
# Rewinding
# ------------------------------------------------------------------------------------------------
def rewind(stage1_trainable, masks: Mapping):
    """Stage 3's starting point: surviving prompt entries equal to stage 1's exactly, pruned ones 0.

    Retraining with these masks keeps the pruned entries at zero (the train step masks their updates).
    """
    token, piece = check_masks(masks)
    prompt = stage1_trainable[PROMPT][MATRIX]
    if prompt.shape[0] != token.shape[0]:
        raise ConfigError(f"masks for {token.shape[0]} tokens do not fit the {prompt.shape[0]}-token prompt")
    mask_lib.check_pieces(prompt.shape[-1], piece.shape[-1])
    dense = matrix_mask(prompt, {mask_lib.TOKEN_MASK: jnp.asarray(token), mask_lib.PIECE_MASK: jnp.asarray(piece)})
    return {**stage1_trainable, PROMPT: {**stage1_trainable[PROMPT], MATRIX: prompt * dense}}
