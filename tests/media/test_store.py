"""MediaStore: files appear whole under their key, durably, and are never replaced."""

from __future__ import annotations

import os

import pytest

from thorgen.media.store import AlreadyStored, MediaStore


def test_a_file_is_under_its_key_only_once_placed(tmp_path):
    media = MediaStore(tmp_path / "files")
    key = media.new_key("mp4")
    temp = media.temp_path(key)
    temp.write_bytes(b"half")
    assert not media.exists(key)  # what is still being written is not a stored file
    assert MediaStore.key_in_path(f"/files/{temp.name}") is None  # and no URL names the temporary
    media.place(temp, key)
    assert media.exists(key) and media.path(key).read_bytes() == b"half"
    assert not temp.exists()


def test_place_never_replaces_a_stored_file(tmp_path):
    media = MediaStore(tmp_path / "files")
    key = media.new_key("png")
    first = media.temp_path(key)
    first.write_bytes(b"original")
    media.place(first, key)
    second = media.temp_path(key)
    second.write_bytes(b"overwrite")
    with pytest.raises(AlreadyStored):
        media.place(second, key)
    assert media.path(key).read_bytes() == b"original"
    assert not second.exists()  # the refused temporary is gone too


def test_place_flushes_the_file_and_its_folder(tmp_path, monkeypatch):
    media = MediaStore(tmp_path / "files")
    key = media.new_key("jpg")
    temp = media.temp_path(key)
    temp.write_bytes(b"jpeg")
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    media.place(temp, key)
    assert synced == [str(temp), str(media.root)]  # the data first, then the folder entry


def test_temporaries_left_by_a_killed_process_are_removed_at_start(tmp_path):
    media = MediaStore(tmp_path / "files")
    kept = media.new_key("mp4")
    media.path(kept).write_bytes(b"done")
    orphan = media.temp_path(media.new_key("mp4"))
    orphan.write_bytes(b"partial")
    assert media.remove_partials() == 1
    assert not orphan.exists() and media.exists(kept)
