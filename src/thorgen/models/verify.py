"""`thorgen models verify NAME`: is an installed model folder complete, as its loader will need it?

Torch-free and quick: it reads only JSON and the safetensors headers (the first bytes of each file),
never the weights. What it checks:

- a diffusers folder: model_index.json readable, and every component it names present;
- each model component: config.json readable; its weights (one ``*.safetensors`` or a sharded set
  with its ``*.safetensors.index.json``) complete: each header parses and the file is exactly as long
  as the header's last tensor says (a truncated download is the common failure), and the index names
  only tensors its shards hold, each shard present;
- each tokenizer: tokenizer_config.json plus a whole vocabulary (tokenizer.json, or vocab.json with
  merges.txt, or a SentencePiece model, with the sentencepiece package installed when it is the only
  form);
- each scheduler: scheduler_config.json readable;
- a transformers folder (config.json at the root, the LLM): the same checks on the root;
- a .nemo file: a readable tar archive holding model_config.yaml;
- a Kokoro folder (voices/ beside config.json): the .pth weights and every voices/*.pt readable.

Every problem is one line naming the file and what is wrong with it.
"""

from __future__ import annotations

import importlib.util
import json
import struct
import tarfile
import zipfile
from pathlib import Path
from typing import Any

SCHEDULER_FILE = "scheduler_config.json"
PROCESSOR_FILE = "preprocessor_config.json"


def verify_model_folder(path: Path) -> list[str]:
    """Every problem found in an installed model (a folder, or a .nemo file); empty when it is whole."""
    if not path.exists():
        return [f"{path}: not installed (no such file or folder)"]
    if path.is_file():
        return _verify_nemo(path) if path.suffix == ".nemo" else _verify_weights_file(path)
    if (path / "model_index.json").exists():
        return _verify_diffusers(path)
    if (path / "voices").is_dir():
        return _verify_kokoro(path)
    if (path / "config.json").exists():
        return _verify_model_component(path, needs_weights=True) + _verify_tokenizer(path, optional=True)
    nemo_files = sorted(path.glob("*.nemo"))
    if nemo_files:
        return [problem for file in nemo_files for problem in _verify_nemo(file)]
    return [f"{path}: neither model_index.json (diffusers) nor config.json (transformers) nor a .nemo file"]


def _verify_diffusers(root: Path) -> list[str]:
    index, problem = _read_json(root / "model_index.json")
    if index is None:
        return [problem]
    problems: list[str] = []
    for name, value in index.items():
        if name.startswith("_") or not isinstance(value, list) or len(value) != 2 or value[0] is None:
            continue  # metadata, or an optional component the pipeline does without ([null, null])
        library, class_name = str(value[0]), str(value[1])
        folder = root / name
        standard = library in ("diffusers", "transformers")
        if not folder.is_dir():
            if standard:
                problems.append(f"{folder}: missing: model_index.json names component '{name}' "
                                f"({library}.{class_name}), and its folder is not there")
            continue
        if class_name.endswith("Scheduler") or "Scheduler" in class_name:
            problems += _require_json(folder / SCHEDULER_FILE)
        elif "Tokenizer" in class_name:
            problems += _verify_tokenizer(folder)
        elif class_name.endswith(("ImageProcessor", "FeatureExtractor")):
            problems += _require_json(folder / PROCESSOR_FILE)
        else:
            # A class from outside diffusers/transformers (thorgen's own pass-through checker) may
            # have no weights; a diffusers or transformers model always has them.
            problems += _verify_model_component(folder, needs_weights=standard)
    return problems


def _verify_model_component(folder: Path, *, needs_weights: bool) -> list[str]:
    problems = _require_json(folder / "config.json")
    indexes = sorted(folder.glob("*.safetensors.index.json"))
    singles = sorted(file for file in folder.glob("*.safetensors"))
    if indexes:
        for index in indexes:
            problems += _verify_sharded(index)
    elif singles:
        for file in singles:
            problems += _verify_weights_file(file)
    elif needs_weights:
        if any(folder.glob("*.bin")):
            return problems  # old PyTorch pickles: the loader reads them; they carry no header to check
        problems.append(f"{folder}: no weights: expected *.safetensors (or a *.safetensors.index.json "
                        "with its shards)")
    return problems


def _verify_sharded(index_path: Path) -> list[str]:
    index, problem = _read_json(index_path)
    if index is None:
        return [problem]
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        return [f"{index_path}: has no weight_map"]
    problems: list[str] = []
    by_shard: dict[str, set[str]] = {}
    for tensor, shard in weight_map.items():
        by_shard.setdefault(str(shard), set()).add(str(tensor))
    for shard, tensors in sorted(by_shard.items()):
        file = index_path.parent / shard
        if not file.exists():
            problems.append(f"{file}: missing: {index_path.name} names it for {len(tensors)} tensors")
            continue
        header, shard_problems = _read_header(file)
        problems += shard_problems
        if header is not None:
            absent = sorted(tensors - set(header))
            if absent:
                problems.append(f"{file}: does not hold {len(absent)} tensor(s) {index_path.name} puts there, "
                                f"e.g. {absent[0]}")
    return problems


def _verify_weights_file(file: Path) -> list[str]:
    return _read_header(file)[1]


def _read_header(file: Path) -> tuple[dict[str, Any] | None, list[str]]:
    """A safetensors file's tensor table, and what is wrong with the file (truncation, a bad header).

    The format: 8 bytes (little-endian length N), N bytes of JSON naming each tensor's byte range in
    the data that follows; the file is exactly 8 + N + the end of the last range."""
    size = file.stat().st_size
    if size < 8:
        return None, [f"{file}: truncated: {size} bytes, shorter than a safetensors header"]
    with file.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        if 8 + length > size:
            return None, [f"{file}: truncated: {size} bytes, but its header alone is {8 + length} bytes"]
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return None, [f"{file}: not a safetensors file (its header is not JSON: {exc})"]
    if not isinstance(header, dict):
        return None, [f"{file}: not a safetensors file (its header is not a table)"]
    tensors = {name: entry for name, entry in header.items() if name != "__metadata__"}
    ends = []
    for name, entry in tensors.items():
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and 0 <= offsets[0] <= offsets[1]):
            return None, [f"{file}: tensor {name} has no valid data_offsets in the header"]
        ends.append(int(offsets[1]))
    expected = 8 + length + max(ends, default=0)
    if size < expected:
        return tensors, [f"{file}: truncated: {size} bytes, its header says {expected} "
                         f"({expected - size} bytes missing)"]
    if size > expected:
        return tensors, [f"{file}: {size - expected} bytes more than its header accounts for ({expected})"]
    return tensors, []


def _verify_tokenizer(folder: Path, *, optional: bool = False) -> list[str]:
    """A tokenizer folder: its config and one whole vocabulary in a form transformers can read."""
    present = {file.name for file in folder.iterdir()} if folder.is_dir() else set()
    vocabulary = {"tokenizer.json", "vocab.json", "merges.txt", "spiece.model", "tokenizer.model", "vocab.txt"}
    if optional and not present & (vocabulary | {"tokenizer_config.json"}):
        return []  # a model folder without a tokenizer (the loader takes it from elsewhere)
    problems: list[str] = []
    if "tokenizer_config.json" not in present:
        problems.append(f"{folder / 'tokenizer_config.json'}: missing (every tokenizer needs it)")
    else:
        problems += _require_json(folder / "tokenizer_config.json")
    if "tokenizer.json" in present:
        return problems + _require_json(folder / "tokenizer.json")
    if "vocab.json" in present or "merges.txt" in present:
        for needed in ("vocab.json", "merges.txt"):
            if needed not in present:
                other = "merges.txt" if needed == "vocab.json" else "vocab.json"
                problems.append(f"{folder / needed}: missing: a BPE tokenizer needs it beside {other} "
                                "(or a tokenizer.json)")
        return problems
    sentencepiece = present & {"spiece.model", "tokenizer.model"}
    if sentencepiece:
        if importlib.util.find_spec("sentencepiece") is None:
            problems.append(f"{folder / sorted(sentencepiece)[0]}: needs the sentencepiece package, which is "
                            "not installed (or add a tokenizer.json)")
        return problems
    if "vocab.txt" in present:
        return problems
    problems.append(f"{folder}: no vocabulary: expected tokenizer.json, vocab.json with merges.txt, "
                    "spiece.model or vocab.txt")
    return problems


def _verify_nemo(file: Path) -> list[str]:
    try:
        with tarfile.open(file) as archive:
            names = {Path(name).name for name in archive.getnames()}
    except (tarfile.TarError, EOFError, OSError) as exc:
        return [f"{file}: not a readable .nemo archive ({exc}); a truncated download?"]
    return [] if "model_config.yaml" in names else [f"{file}: the archive holds no model_config.yaml"]


def _verify_kokoro(root: Path) -> list[str]:
    """hexgrad/Kokoro-82M's layout: config.json, one .pth, voices/*.pt; torch files are zip archives."""
    problems = _require_json(root / "config.json")
    weights = sorted(root.glob("*.pth"))
    voices = sorted((root / "voices").glob("*.pt"))
    if not weights:
        problems.append(f"{root}: no Kokoro weights (*.pth)")
    if not voices:
        problems.append(f"{root / 'voices'}: no voice packs (*.pt)")
    for file in [*weights, *voices]:
        if not zipfile.is_zipfile(file):
            problems.append(f"{file}: not a readable torch file (a zip archive); a truncated download?")
    return problems


def _require_json(file: Path) -> list[str]:
    return [] if _read_json(file)[0] is not None else [_read_json(file)[1]]


def _read_json(file: Path) -> tuple[dict[str, Any] | None, str]:
    if not file.exists():
        return None, f"{file}: missing"
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"{file}: not readable JSON ({exc})"
    if not isinstance(data, dict):
        return None, f"{file}: not a JSON object"
    return data, ""
