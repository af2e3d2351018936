"""What every diffusers-backed family does the same way: seeds, step reports, media as data URIs."""

from __future__ import annotations

import base64
import secrets
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from thorgen.families.base import Context


def pick_seed(seed: int | None) -> int:
    """The client's seed, or a random one (returned in the output so the result can be repeated)."""
    return seed if seed is not None else secrets.randbelow(2**32)


def seeded_generator(seed: int) -> Any:
    import torch

    # A CPU generator makes the same seed give the same output on the CPU and on a GPU.
    return torch.Generator(device="cpu").manual_seed(seed)


def step_reporter(ctx: Context, total: int, what: str = "denoising step") -> Any:
    """A diffusers ``callback_on_step_end`` that logs each step and stops there if the job was cancelled."""

    def on_step_end(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        ctx.step(step + 1, getattr(pipe, "num_timesteps", None) or total, what)
        return tensors

    return on_step_end


def data_uri(data: bytes, content_type: str) -> str:
    """fal's sync_mode: the media inline, nothing stored."""
    return f"data:{content_type};base64,{base64.b64encode(data).decode()}"
