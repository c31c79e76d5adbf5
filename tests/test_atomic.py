"""Atomic file writes: the target holds the old bytes or the new ones, never a part, and no temporary file stays."""

from __future__ import annotations

import pytest

from writetune.atomic import atomic_file


def test_atomic_file_replaces_the_target_only_when_the_block_ends(tmp_path):
    target = tmp_path / "model.gguf"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_file(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed while writing")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["model.gguf"]
    with atomic_file(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_bytes(b"new")
        assert target.read_bytes() == b"old"
    assert target.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["model.gguf"]
