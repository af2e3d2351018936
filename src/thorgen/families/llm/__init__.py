"""fal's any-llm with one local instruct model (transformers), for the editor's prompt helpers.

Whatever ``model`` a request names (the editor asks for meta-llama/llama-3.2-1b-instruct), the
configured ``llm`` model answers; the log names the one that did. The prompt goes through the
tokenizer's own chat template; ``temperature`` 0 is greedy decoding, above 0 sampling.

JSON: the editor's project suggestion asks for JSON in its system prompt and ``JSON.parse``s the
answer (starter-kit.md §3). When the system prompt or the prompt mentions JSON, the first JSON object
or array in the generated text is returned as bare JSON. When the text holds none (a small model
rambling, and always with the tiny random model), the answer is a fallback object in the shape the
editor reads, ``{"title": <the prompt's first 8 words>, "description": <the prompt>}``, and the job's
log says so. The output then always parses.

Control characters: the generated text goes straight into the editor's prompt box, and a small model
(always the tiny random one) can emit NUL and other C0/C1 controls. They are removed from the decoded
text before anything reads it; newlines and tabs stay.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Annotated, Any

from msgspec import Meta, Struct

from thorgen.errors import InputError
from thorgen.families.base import ANY_PIPELINE, CatalogEntry, Context, Endpoint, Family, LoadRequest
from thorgen.models.catalog import TRANSFORMERS_FILES

PROGRESS_EVERY = 32  # tokens between progress log lines (cancel is checked at every token)
_MENTIONS_JSON = re.compile(r"\bjson\b", re.IGNORECASE)


class AnyLlmInput(Struct, kw_only=True):
    prompt: Annotated[str, Meta(min_length=1, max_length=200_000)]
    system_prompt: Annotated[str, Meta(max_length=200_000)] | None = None
    model: str = "meta-llama/llama-3.2-1b-instruct"  # any value: the configured local model answers
    max_tokens: Annotated[int, Meta(ge=1, le=8192)] = 512
    temperature: Annotated[float, Meta(ge=0, le=2)] = 0.7
    reasoning: bool = False  # accepted and ignored: no separate reasoning output


class AnyLlmOutput(Struct):
    output: str
    partial: bool = False


def any_llm(ctx: Context, args: AnyLlmInput) -> AnyLlmOutput:
    messages = ([{"role": "system", "content": args.system_prompt}] if args.system_prompt else [])
    messages.append({"role": "user", "content": args.prompt})
    with ctx.lease() as lease:
        ctx.log(f"'{args.model}' is answered by the local model '{lease.name}'")
        text = generate(ctx, lease.pipeline, messages, args.max_tokens, args.temperature)
    if wants_json(args.system_prompt, args.prompt):
        found = extract_json(text)
        if found is None:
            ctx.log("the model's answer held no JSON; answering with the fallback object {title, description} "
                    "built from the prompt", "WARNING")
            found = fallback_object(args.prompt)
        return AnyLlmOutput(output=json.dumps(found, ensure_ascii=False))
    return AnyLlmOutput(output=text.strip())


def generate(ctx: Context, llm: Any, messages: list[dict[str, str]], max_tokens: int,
             temperature: float) -> str:
    """Generate after the chat template's assistant prefix, up to ``max_tokens`` new tokens."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    tokenizer, model = llm.tokenizer, llm.model
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)
    inputs = {key: value.to(model.device) for key, value in inputs.items()}
    prompt_tokens = int(inputs["input_ids"].shape[1])
    window = getattr(model.config, "max_position_embeddings", None)
    if window is not None and prompt_tokens >= window:
        raise InputError("prompt", f"system_prompt and prompt are {prompt_tokens} tokens; the model reads at "
                         f"most {window}", "too_long")
    new_tokens = min(max_tokens, window - prompt_tokens) if window is not None else max_tokens

    class Progress(StoppingCriteria):
        """Never stops generation itself: logs progress, and raises Cancelled when the client cancels."""

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            made = int(input_ids.shape[1]) - prompt_tokens
            if made % PROGRESS_EVERY == 0:
                ctx.step(made, new_tokens, "token")
            else:
                ctx.check_cancelled()
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    sampling: dict[str, Any] = ({"do_sample": True, "temperature": temperature} if temperature > 0
                                else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None})
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=new_tokens, stopping_criteria=StoppingCriteriaList(
            [Progress()]), **sampling)
    generated = output[0, prompt_tokens:]
    ctx.log(f"generated {int(generated.shape[0])} tokens (prompt {prompt_tokens} tokens)")
    return strip_control_characters(str(tokenizer.decode(generated, skip_special_tokens=True)))


def strip_control_characters(text: str) -> str:
    """Drop Unicode control characters (category Cc: NUL, ESC, DEL, C1...), keeping newline and tab."""
    return "".join(char for char in text
                   if char in "\n\t" or unicodedata.category(char) != "Cc")


def wants_json(system_prompt: str | None, prompt: str) -> bool:
    return any(_MENTIONS_JSON.search(text) for text in (system_prompt or "", prompt))


def extract_json(text: str) -> dict[str, Any] | list[Any] | None:
    """The first JSON object or array in ``text`` (prose or a ```json fence around it is skipped)."""
    decoder = json.JSONDecoder()
    for start, char in enumerate(text):
        if char not in "{[":
            continue
        try:
            value, _ = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if isinstance(value, dict | list) and value:
            return value
    return None


def fallback_object(prompt: str) -> dict[str, str]:
    words = prompt.split()
    return {"title": " ".join(words[:8]), "description": " ".join(words)}


ENDPOINTS = [
    Endpoint("fal-ai/any-llm", AnyLlmInput, AnyLlmOutput, any_llm, "gpu",
             "Chat completion by a local instruct model (the editor's prompt helpers)", model="llm"),
]

CATALOG = {
    "llm": CatalogEntry(
        config={"family": "llm", "path": "llm", "source": "Qwen/Qwen2.5-1.5B-Instruct",
                "pipeline": "AutoModelForCausalLM", "dtype": "bfloat16"},
        licence="Apache-2.0",
        gated=False,
        approx_bytes=3_090_000_000,
        allow_patterns=list(TRANSFORMERS_FILES),
    ),
}


def load(request: LoadRequest) -> Any:
    """A transformers causal LM, not a diffusers pipeline (llm/model.py)."""
    from thorgen.families.llm.model import load_causal_lm

    return load_causal_lm(request.name, request.path, request.model.dtype, request.device)


def build_tiny() -> Any:
    from thorgen.families.llm.model import build_tiny

    return build_tiny()


FAMILY = Family(
    name="llm",
    title="LLM",
    endpoints=ENDPOINTS,
    catalog=CATALOG,
    load=load,
    tiny={ANY_PIPELINE: build_tiny},
)
