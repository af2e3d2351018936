"""The registry: ids, aliases, model-backed endpoints whose model is missing, and fal-style 422s."""

from __future__ import annotations

import msgspec
import pytest

from thorgen.config import Config, ModelConfig, StorageConfig
from thorgen.errors import FalError, InputError
from thorgen.families.base import Endpoint
from thorgen.families.registry import Registry


class Prompt(msgspec.Struct):
    prompt: str
    steps: int = 4


class Out(msgspec.Struct):
    text: str


def needs_model(tmp_path) -> Registry:
    config = Config(
        storage=StorageConfig(models_dir=str(tmp_path)),
        models={"tiny-flux": ModelConfig(family="flux", path="tiny-flux")},
        aliases={"fal-ai/flux-pro/v1.1-ultra": "fal-ai/flux/dev"},
    )
    endpoint = Endpoint("fal-ai/flux/dev", Prompt, Out, lambda ctx, inp: Out(inp.prompt), "gpu",
                        "test", model="tiny-flux")
    return Registry(config, [endpoint])


def test_missing_model_is_a_clear_error_naming_model_and_command(tmp_path):
    registry = needs_model(tmp_path)
    with pytest.raises(FalError) as caught:
        registry.require("fal-ai/flux-pro/v1.1-ultra")
    assert caught.value.status == 424
    assert "tiny-flux" in caught.value.detail and "thorgen models pull tiny-flux" in caught.value.detail
    listing = {row["id"]: row for row in registry.listing()}
    assert listing["fal-ai/flux/dev"]["available"] is False
    assert listing["fal-ai/flux-pro/v1.1-ultra"]["alias_of"] == "fal-ai/flux/dev"

    (tmp_path / "tiny-flux").mkdir()
    (tmp_path / "tiny-flux" / "model_index.json").write_text("{}")
    assert registry.require("fal-ai/flux-pro/v1.1-ultra").id == "fal-ai/flux/dev"


def test_unknown_id_is_404_naming_it(tmp_path):
    with pytest.raises(FalError) as caught:
        needs_model(tmp_path).require("fal-ai/nothing/here")
    assert caught.value.status == 404 and "fal-ai/nothing/here" in caught.value.detail


@pytest.mark.parametrize("raw,loc,kind", [
    ({}, ["body", "prompt"], "missing"),
    ({"prompt": 3}, ["body", "prompt"], "type_error"),
    ({"prompt": "x", "steps": "many"}, ["body", "steps"], "type_error"),
    ([], ["body"], "dict_type"),
])
def test_input_errors_have_fal_shape(tmp_path, raw, loc, kind):
    endpoint = needs_model(tmp_path).find("fal-ai/flux/dev")
    with pytest.raises(InputError) as caught:
        endpoint.decode_input(raw)
    detail = caught.value.body()["detail"][0]
    assert detail["loc"] == loc and detail["type"] == kind and caught.value.status == 422


def test_unknown_extra_fields_are_ignored(tmp_path):
    endpoint = needs_model(tmp_path).find("fal-ai/flux/dev")
    assert endpoint.decode_input({"prompt": "x", "seconds_total": 30, "image_size": "square_1_1"}).prompt == "x"


def test_alias_to_unknown_endpoint_is_refused():
    with pytest.raises(ValueError, match="aliases.fal-ai/x"):
        Registry(Config(aliases={"fal-ai/x": "fal-ai/none"}))


def test_openapi_lists_alias_ids_with_their_target_schemas():
    registry = Registry(Config(aliases={"fal-ai/my-metadata": "fal-ai/ffmpeg-api/metadata"}))
    paths = registry.openapi()["paths"]
    for alias, target in (("fal-ai/veo2", "fal-ai/cosmos-predict-2.5/text-to-video"),
                          ("fal-ai/flux-pro/v1.1-ultra", "fal-ai/flux/dev"),
                          ("fal-ai/my-metadata", "fal-ai/ffmpeg-api/metadata")):
        for prefix in ("run", "queue"):
            aliased, original = paths[f"/{prefix}/{alias}"]["post"], paths[f"/{prefix}/{target}"]["post"]
            assert aliased["requestBody"] == original["requestBody"]
            assert aliased["operationId"] == f"{'run' if prefix == 'run' else 'submit'}:{alias}"
        assert (paths[f"/run/{alias}"]["post"]["responses"]["200"]
                == paths[f"/run/{target}"]["post"]["responses"]["200"])
    assert {f"/run/{row['id']}" for row in registry.listing()} <= set(paths)


def test_unavailable_reason_names_every_missing_piece_once_and_short(tmp_path):
    from thorgen.config import load_config

    config = load_config(None, environ={"THORGEN_STORAGE__MODELS_DIR": str(tmp_path)})
    rows = {row["id"]: row for row in Registry(config).listing()}
    reason = rows["fal-ai/cosmos-predict-2.5/text-to-video"]["reason"]
    assert "thorgen models pull cosmos-predict25" in reason  # the weights are missing too, not only the guardrail
    if reason.count("thorgen[guardrail]"):  # cosmos_guardrail is not installed here
        assert reason.count("thorgen[guardrail]") == 1 and "guardrail = false" not in reason
    assert len(reason) - len(str(tmp_path)) < 320  # it was over 400 with the licence paragraph in it


NOT_LOCAL = ["fal-ai/sync-lipsync", "fal-ai/sync-lipsync/image-to-video", "fal-ai/topaz/upscale/video",
             "fal-ai/topaz/upscale/video/image-to-video"]


def test_endpoints_no_local_model_does_are_listed_unavailable_yet_still_take_jobs(tmp_path):
    """Listed as unavailable, with why; still accepted, so the job fails with its 501 and the editor
    shows a failed item rather than nothing."""
    registry = Registry(Config(storage=StorageConfig(data_dir=str(tmp_path), models_dir=str(tmp_path))))
    rows = {row["id"]: row for row in registry.listing()}
    for endpoint_id in NOT_LOCAL:
        assert rows[endpoint_id]["available"] is False, rows[endpoint_id]
        assert "not available locally" in rows[endpoint_id]["reason"]
        assert registry.require(endpoint_id).lane == "utility"
    assert rows["fal-ai/ffmpeg-api/compose"]["available"] is True


def test_thorgen_endpoints_says_which_are_unavailable(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "THORGEN_CONFIG": "", "THORGEN_STORAGE__MODELS_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "thorgen", "endpoints"], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    lines = {endpoint_id: [line for line in done.stdout.splitlines() if endpoint_id + " " in line + " "]
             for endpoint_id in ("fal-ai/sync-lipsync", "fal-ai/topaz/upscale/video", "fal-ai/ffmpeg-api/compose")}
    assert "unavailable" in lines["fal-ai/sync-lipsync"][0] and "lip sync" in lines["fal-ai/sync-lipsync"][0]
    assert "unavailable" in lines["fal-ai/topaz/upscale/video"][0]
    assert "unavailable" not in lines["fal-ai/ffmpeg-api/compose"][0]
