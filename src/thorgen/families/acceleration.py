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

Only Flux's transformer has diffusers' cache hooks (``CacheMixin``); Cosmos's does not in diffusers
0.42, and its pipelines set no cache context, so for Cosmos the TaylorSeer hooks are put on directly
(``apply_taylorseer_cache``) and a pre-hook on the transformer names each call "cond" or "uncond" (the
guidance pass repeats the step's timestep), so the two passes keep separate Taylor factors:
- "regular": TaylorSeer on every attention layer (self and cross), as Flux's regular;
- "high": TaylorSeer on whole transformer blocks (their feed-forward layers skipped too).
benchmarks/bench_acceleration_cosmos.py measures both against plain and plain with fewer steps.
Stable Audio's transformer has no hooks here yet, so it takes no level.

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
# Transformers without diffusers' CacheMixin (Cosmos): TaylorSeer put on by hand, see above.
DIRECT_METHODS: dict[Level, str] = {
    "none": "plain",
    "regular": "TaylorSeer on attention (cache_interval 5, first 3 steps full, order 1)",
    "high": "TaylorSeer on whole blocks (cache_interval 5, first 3 steps full, order 1)",
}
_DIRECT_TARGETS = {"regular": r"^transformer_blocks\.\d+\.attn\d$", "high": r"^transformer_blocks\.\d+$"}


def direct_cache_config(level: Level, dtype: Any) -> Any:
    """TaylorSeer for a transformer without CacheMixin, or None for "none"."""
    if level == "none":
        return None
    from diffusers.hooks import TaylorSeerCacheConfig

    return TaylorSeerCacheConfig(cache_interval=5, disable_cache_before_step=3, max_order=1,
                                 taylor_factors_dtype=dtype, cache_identifiers=[_DIRECT_TARGETS[level]])


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
    cache_bytes: int = 0  # the most the cache's state held after a transformer pass (models/memory.py)
    _handles: list[Any] = field(default_factory=list)


@contextmanager
def accelerated(transformer: Any, level: Level, steps: int) -> Iterator[Accelerated]:
    """Run the ``with`` body with the level's cache hooks on ``transformer``; off again afterwards.

    ``computed`` counts the passes in which the first block's attention really ran (a skipped or
    predicted pass does not call it), so the output can report the work actually done.
    """
    if not hasattr(transformer, "enable_cache"):
        with _accelerated_directly(transformer, level) as report:
            yield report
        return
    report = Accelerated(level, METHODS[level])
    _count_attention(transformer, report)
    config = cache_config(level, steps, transformer.dtype)
    try:
        if config is not None:
            if transformer.is_cache_enabled:  # left over by a crash inside diffusers: start clean
                transformer.disable_cache()
            transformer.enable_cache(config)
            _measure_cache(transformer, report)
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


@contextmanager
def _accelerated_directly(transformer: Any, level: Level) -> Iterator[Accelerated]:
    """TaylorSeer on a transformer without CacheMixin, with a cache context per guidance pass."""
    import torch
    from diffusers.hooks import HookRegistry, apply_taylorseer_cache
    from diffusers.hooks.hooks import CacheContext, _set_cache_context
    from diffusers.hooks.taylorseer_cache import _TAYLORSEER_CACHE_HOOK

    report = Accelerated(level, DIRECT_METHODS[level])
    _count_attention(transformer, report)
    config = direct_cache_config(level, transformer.dtype)
    registry = HookRegistry.check_if_exists_or_initialize(transformer)
    try:
        if config is not None:
            registry.remove_hook(_TAYLORSEER_CACHE_HOOK, recurse=True)  # a crash's leftovers: start clean
            apply_taylorseer_cache(transformer, config)
            # The registry caches which children have hooks; new hooks on other modules (another
            # level than the last job's) are invisible to the context setter until it is invalidated.
            registry.invalidate_child_registries_cache()
            _measure_cache(transformer, report)
            last: list[Any] = [None]

            def name_the_pass(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
                # Cosmos calls the transformer twice per step with the same timestep (cond, then
                # the guidance pass): a repeated timestep is the second pass of the step.
                timestep = kwargs.get("timestep")
                repeated = (isinstance(timestep, torch.Tensor) and isinstance(last[0], torch.Tensor)
                            and torch.equal(timestep, last[0]))
                last[0] = timestep
                _set_cache_context(module, CacheContext("uncond" if repeated else "cond"))

            report._handles.append(transformer.register_forward_pre_hook(name_the_pass, with_kwargs=True))
        yield report
    finally:
        for handle in report._handles:
            handle.remove()
        if config is not None:
            _set_cache_context(transformer, None)
            registry.remove_hook(_TAYLORSEER_CACHE_HOOK, recurse=True)
            registry.invalidate_child_registries_cache()


def _measure_cache(transformer: Any, report: Accelerated) -> None:
    """Keep the most the cache's state holds after any transformer pass. Measured during the job, since
    the pipeline itself resets the hooks' state when it ends (``maybe_free_model_hooks``)."""
    from thorgen.models.memory import hook_state_bytes

    def measure(module: Any, inputs: Any, output: Any) -> None:
        report.cache_bytes = max(report.cache_bytes, hook_state_bytes(module))

    report._handles.append(transformer.register_forward_hook(measure))


def _count_attention(transformer: Any, report: Accelerated) -> None:
    """Count the passes in which the first block's first attention really ran."""
    block = transformer.transformer_blocks[0]
    probe = (block.attn if hasattr(block, "attn") else block.attn1).to_q

    def count(module: Any, inputs: Any, output: Any) -> None:
        report.computed += 1

    report._handles.append(probe.register_forward_hook(count))
