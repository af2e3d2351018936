"""Write-once upload targets (media/uploads.py), with an injected clock: no sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from thorgen.errors import FalError
from thorgen.media.store import MediaStore
from thorgen.media.uploads import UploadTargets


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def _targets(tmp_path, clock: Clock, ttl_s: float = 60.0) -> UploadTargets:
    return UploadTargets(MediaStore(tmp_path / "files"), b"s" * 32, ttl_s=ttl_s, max_bytes=1000,
                         parts_root=tmp_path / "parts", clock=clock)


def _refusal(coroutine) -> FalError:
    with pytest.raises(FalError) as caught:
        asyncio.run(coroutine)
    return caught.value


def test_one_write_then_409(tmp_path):
    targets = _targets(tmp_path, Clock())
    target = targets.create("wav")
    path = asyncio.run(targets.write(target.key, target.token, _chunks(b"RI", b"FF")))
    assert path.read_bytes() == b"RIFF"
    replay = _refusal(targets.write(target.key, target.token, _chunks(b"EVIL")))
    assert replay.status == 409 and replay.error_type == "upload_exists"
    assert path.read_bytes() == b"RIFF"


def test_expired_target_is_410_and_stores_nothing(tmp_path):
    clock = Clock()
    targets = _targets(tmp_path, clock, ttl_s=60)
    target = targets.create("png")
    clock.now += 60.001
    expired = _refusal(targets.write(target.key, target.token, _chunks(b"png")))
    assert expired.status == 410 and expired.error_type == "upload_expired"
    assert not targets.media.exists(target.key)


@pytest.mark.parametrize("token", [None, "", "open", "123.abc", "9999999999999.0000"])
def test_forged_or_missing_tokens_are_403(tmp_path, token):
    targets = _targets(tmp_path, Clock())
    key = targets.media.new_key("mp4")  # never initiated
    refused = _refusal(targets.write(key, token, _chunks(b"x")))
    assert refused.status == 403 and refused.error_type == "upload_forbidden"
    assert not targets.media.exists(key)


def test_a_token_is_bound_to_its_key_and_its_expiry(tmp_path):
    targets = _targets(tmp_path, Clock())
    first, second = targets.create("mp4"), targets.create("mp4")
    assert _refusal(targets.write(second.key, first.token, _chunks(b"x"))).status == 403
    stamp, _, signature = first.token.partition(".")
    stretched = f"{int(stamp) + 3_600_000}.{signature}"  # a later expiry with the old signature
    assert _refusal(targets.write(first.key, stretched, _chunks(b"x"))).status == 403


def test_a_grant_is_not_a_target_token_and_expires(tmp_path):
    clock = Clock()
    targets = _targets(tmp_path, clock)
    grant, expires_at = targets.grant()
    targets.check_grant(grant)
    key = targets.media.new_key("bin")
    assert _refusal(targets.write(key, grant, _chunks(b"x"))).status == 403
    clock.now = expires_at
    with pytest.raises(FalError) as caught:
        targets.check_grant(grant)
    assert caught.value.status == 410


def test_multipart_completes_once(tmp_path):
    targets = _targets(tmp_path, Clock())
    target = targets.create("bin")
    asyncio.run(targets.put_part(target.key, target.token, 2, _chunks(b"b")))
    asyncio.run(targets.put_part(target.key, target.token, 1, _chunks(b"a")))
    assert asyncio.run(targets.complete(target.key, target.token)).read_bytes() == b"ab"
    assert _refusal(targets.put_part(target.key, target.token, 1, _chunks(b"z"))).status == 409
    assert _refusal(targets.complete(target.key, target.token)).status == 409
    assert targets.media.path(target.key).read_bytes() == b"ab"


def test_the_secret_outlives_a_restart(tmp_path):
    media = MediaStore(tmp_path / "files")
    first = UploadTargets.in_data_dir(media, tmp_path, ttl_s=60, max_bytes=10, parts_root=tmp_path / "p")
    target = first.create("txt")
    again = UploadTargets.in_data_dir(media, tmp_path, ttl_s=60, max_bytes=10, parts_root=tmp_path / "p")
    again.check(target.key, target.token)  # a pending target survives the restart
    assert (tmp_path / "upload-secret").stat().st_mode & 0o777 == 0o600
