"""fal's own Python client (fal-client 1.0.3) against a real thorgen on a loopback port."""

from __future__ import annotations

from pathlib import Path

import av
import fal_client
import httpx
import numpy as np
import pytest
from mediagen import make_audio, make_image, make_video


@pytest.fixture(scope="module")
def media(media_dir: Path) -> dict[str, Path]:
    return {
        "clip": make_video(media_dir / "py-clip.mp4", seconds=2.0),
        "still": make_image(media_dir / "py-still.png"),
        "music": make_audio(media_dir / "py-music.wav", seconds=3.0),
        "voice": make_audio(media_dir / "py-voice.mp3", seconds=1.0, freq=880.0),
    }


def test_upload_file_v3_path_stores_the_bytes(fal, media, server, caplog):
    url = fal.upload_file(media["clip"])
    assert url.startswith(f"{server.base_url}/files/") and url.endswith(".mp4")
    assert "falling back" not in caplog.text.lower()  # the v3 (token + /files/upload) path answered
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    assert response.content == media["clip"].read_bytes()


def test_upload_initiate_path_stores_the_bytes(fal, media, server):
    url = fal.upload(media["still"].read_bytes(), "image/png", file_name="still.png", repository="fal")
    assert url.startswith(f"{server.base_url}/files/") and url.endswith(".png")
    assert httpx.get(url).content == media["still"].read_bytes()


def test_subscribe_metadata_with_logs_and_queue_updates(fal, media):
    url = fal.upload_file(media["clip"])
    updates = []
    output = fal.subscribe(
        "fal-ai/ffmpeg-api/metadata",
        {"media_url": url, "extract_frames": True},
        with_logs=True,
        on_queue_update=updates.append,
    )
    media_info = output["media"]
    assert media_info["media_type"] == "video"
    assert media_info["duration"] == pytest.approx(2.0, abs=0.1)
    assert media_info["resolution"]["width"] == 320 and media_info["resolution"]["height"] == 180
    assert media_info["audio"]["channels"] >= 1
    for key in ("start_frame_url", "end_frame_url"):
        frame = httpx.get(media_info[key])
        assert frame.status_code == 200 and frame.headers["content-type"] == "image/png"
    assert isinstance(updates[-1], fal_client.Completed)
    assert any("running fal-ai/ffmpeg-api/metadata" in log["message"] for log in updates[-1].logs)


def test_submit_status_result_by_hand(fal, media):
    url = fal.upload_file(media["music"])
    handle = fal.submit("fal-ai/ffmpeg-api/waveform", {"media_url": url, "points_per_second": 5})
    output = handle.get()
    assert output["points"] == len(output["waveform"]) == pytest.approx(15, abs=1)
    assert all(0 <= value <= 1 for value in output["waveform"])
    assert isinstance(fal.status("fal-ai/ffmpeg-api", handle.request_id, with_logs=True), fal_client.Completed)
    assert fal.result("fal-ai/ffmpeg-api", handle.request_id) == output  # repeatable


def test_run_and_stream(fal, media):
    url = fal.upload_file(media["voice"])
    output = fal.run("fal-ai/ffmpeg-api/metadata", {"media_url": url})
    assert output["media"]["media_type"] == "audio"
    assert output["media"]["duration"] == pytest.approx(1.0, abs=0.1)
    events = list(fal.stream("fal-ai/ffmpeg-api/metadata", {"media_url": url}))
    assert events[-1]["media"]["duration"] == output["media"]["duration"]


def test_validation_error_is_a_422_with_field_errors(fal):
    with pytest.raises(fal_client.FalClientHTTPError) as caught:
        fal.subscribe("fal-ai/ffmpeg-api/metadata", {"media_url": None})
    assert caught.value.status_code == 422
    detail = caught.value.message
    assert isinstance(detail, list) and detail[0]["loc"] == ["body", "media_url"]


def test_failed_job_reports_completed_then_result_error(fal, server):
    # Input passes the schema, fails in the job: an address thorgen refuses to fetch.
    handle = fal.submit("fal-ai/ffmpeg-api/metadata", {"media_url": "http://10.0.0.1/clip.mp4"})
    with pytest.raises(fal_client.FalClientHTTPError) as caught:
        handle.get()
    assert caught.value.status_code == 422
    status = httpx.get(f"{server.base_url}/queue/fal-ai/ffmpeg-api/requests/{handle.request_id}/status").json()
    assert status["status"] == "COMPLETED"
    assert "private" in status["error"] and status["error_type"] == "validation_error"


def test_compose_three_tracks_exports_a_playable_mp4(fal, media, tmp_path):
    urls = {name: fal.upload_file(path) for name, path in media.items()}
    tracks = [
        {"id": "v", "type": "video", "keyframes": [
            {"timestamp": 1, "duration": 2000, "url": urls["clip"]},
            {"timestamp": 2500, "duration": 1500, "url": urls["still"]},
        ]},
        {"id": "m", "type": "audio", "keyframes": [{"timestamp": 0, "duration": 3000, "url": urls["music"]}]},
        {"id": "vo", "type": "audio", "keyframes": [
            {"timestamp": 500, "duration": 1000, "url": urls["voice"]},
            {"timestamp": 3000, "duration": 500, "url": None},  # the editor sends null for failed items
        ]},
    ]
    output = fal.subscribe("fal-ai/ffmpeg-api/compose", {"tracks": tracks})
    assert isinstance(output["video_url"], str) and isinstance(output["thumbnail_url"], str)
    video = tmp_path / "export.mp4"
    video.write_bytes(httpx.get(output["video_url"]).content)
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.width, stream.height) == (1024, 576)
        assert float(stream.average_rate) == pytest.approx(30, abs=0.01)
        assert float(container.duration / av.time_base) == pytest.approx(4.0, abs=0.15)
        assert container.streams.audio, "the export must carry an audio stream"
        brightness = {}
        for frame in container.decode(video=0):
            brightness[round(float(frame.time), 2)] = frame.to_ndarray(format="gray").mean()
    assert _near(brightness, 1.0) > 10, "the video clip is visible at 1 s"
    assert _near(brightness, 2.25) < 2, "the gap between clips is black"
    assert _near(brightness, 3.2) > 10, "the still image is visible at 3.2 s"
    thumb = httpx.get(output["thumbnail_url"])
    assert thumb.headers["content-type"] == "image/jpeg" and len(thumb.content) > 500


def _near(samples: dict[float, float], t: float) -> float:
    closest = min(samples, key=lambda s: abs(s - t))
    return float(np.float64(samples[closest]))
