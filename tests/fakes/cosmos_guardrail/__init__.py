"""A stand-in for the cosmos_guardrail package, which cannot run here (it needs torchvision and
downloads its weights). Same duck type as its CosmosSafetyChecker; its decisions are rigged so a
test can see each of thorgen's guardrail paths: a prompt containing "forbidden" is refused, a clip
of exactly 13 frames is refused, and every other clip comes back blacked out (as a face blur would
change it), which proves the frames thorgen stores are the ones the guardrail returned.
"""

import numpy as np
import torch


class CosmosSafetyChecker(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("weight", torch.zeros(1000))  # something for the swapper to measure

    @property
    def nn_models(self):
        return [self]

    def check_text_safety(self, prompt: str) -> bool:
        return "forbidden" not in prompt

    def check_video_safety(self, frames: np.ndarray):
        assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[-1] == 3
        if frames.shape[0] == 13:
            return None
        return np.zeros_like(frames)
