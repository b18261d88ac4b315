"""One atomic writer (amobilenet_jax/files.py): whole files or nothing."""

import os

import pytest

from amobilenet_jax import files


def test_write_atomic_leaves_nothing_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        files.write_atomic(str(target), b"new" * 1000)
    assert os.listdir(tmp_path) == ["model.onnx"] and target.read_bytes() == b"old"
    monkeypatch.undo()
    files.write_atomic(str(target), b"new")
    assert os.listdir(tmp_path) == ["model.onnx"] and target.read_bytes() == b"new"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would make it, not mkstemp's 0600
