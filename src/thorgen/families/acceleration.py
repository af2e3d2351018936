"""fal's ``acceleration`` field ("none" / "regular" / "high") as diffusers' cache hooks on a transformer.

Which cache each level uses, and why (measured on this project's 2-core CPU, see
benchmarks/bench_acceleration.py and /work/shared/reference/acceleration.md):

- "regular": TaylorSeer with its defaults (a full transformer pass every 5th step after the first 3;
  between them each attention output is predicted from a first-order Taylor series). About 0.8 of
  plain's compute, and its deviation from plain is ten times smaller than plain with 20 of 28 steps.
- "high": MagCache with diffusers' ``FLUX_MAG_RATIOS`` (the magnitude ratios measured on trained
  FLUX.1) and its default threshold: about half the compute, with less deviation than plain with 14
  of 28 steps.

Both are fixed-schedule methods: which steps they skip depends only on the step count (and for
MagCache on the fixed ratios), never on the activations. Adaptive caches (FirstBlockCache, MagCache
with ratios calibrated on the model) decide from how fast activations settle, which random weights do
not show the way trained ones do, so a speed measured here would say nothing about the real model.
A fixed schedule does the same work on any weights, so the speed measured here transfers.

Only Flux's transformer has diffusers' cache hooks (``CacheMixin``); Cosmos's and Stable Audio's do
not in diffusers 0.42, so those families do not take the field.

The hooks are put on for one job and taken off in a ``finally``, so one job never sees another's
state, whatever happens in between (a cancel, an error).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

Level = Literal["none", "regular", "high"]
LEVELS: tuple[Level, ...] = ("none", "regular", "high")

METHODS: dict[Level, str] = {
    "none": "plain",
    "regular": "TaylorSeer (cache_interval 5, first 3 steps full, order 1)",
    "high": "MagCache (FLUX_MAG_RATIOS, threshold 0.06, at most 3 steps skipped in a row)",
}


def cache_config(level: Level, steps: int, dtype: Any) -> Any:
    """diffusers' cache config for a level, or None for "none"."""
    if level == "none":
        return None
    if level == "regular":
        from diffusers.hooks import TaylorSeerCacheConfig

        # Factors kept in the model's own dtype: bf16 on a GPU (diffusers' default), fp32 in tiny mode.
        return TaylorSeerCacheConfig(cache_interval=5, disable_cache_before_step=3, max_order=1,
                                     taylor_factors_dtype=dtype)
    from diffusers.hooks import MagCacheConfig
    from diffusers.hooks.mag_cache import FLUX_MAG_RATIOS

    # The ratios are per step of a 28-step run; diffusers interpolates them to the job's step count.
    return MagCacheConfig(threshold=0.06, max_skip_steps=3, retention_ratio=0.2, num_inference_steps=steps,
                          mag_ratios=FLUX_MAG_RATIOS)


@dataclass
class Accelerated:
    """What ran: the level, the method, and in how many passes the attention really ran."""

    level: Level
    method: str
    computed: int = 0
    _handles: list[Any] = field(default_factory=list)


@contextmanager
def accelerated(transformer: Any, level: Level, steps: int) -> Iterator[Accelerated]:
    """Run the ``with`` body with the level's cache hooks on ``transformer``; off again afterwards.

    ``computed`` counts the passes in which the first block's attention really ran (a skipped or
    predicted pass does not call it), so the output can report the work actually done.
    """
    report = Accelerated(level, METHODS[level])
    probe = transformer.transformer_blocks[0].attn.to_q

    def count(module: Any, inputs: Any, output: Any) -> None:
        report.computed += 1

    report._handles.append(probe.register_forward_hook(count))
    config = cache_config(level, steps, transformer.dtype)
    try:
        if config is not None:
            if transformer.is_cache_enabled:  # left over by a crash inside diffusers: start clean
                transformer.disable_cache()
            transformer.enable_cache(config)
            # Pipelines without their own cache_context (Flux image-to-image) still need one for the
            # hooks' state; FluxPipeline's own "cond" context nests inside it harmlessly.
            with transformer.cache_context("cond"):
                yield report
        else:
            yield report
    finally:
        for handle in report._handles:
            handle.remove()
        if config is not None and transformer.is_cache_enabled:
            transformer.disable_cache()
