"""common/io.py: atomic files and folders, JSON, safetensors with a sidecar, one-line user errors."""
import json
import subprocess
import sys

import pytest
import torch

from common.io import (UserError, atomic_directory, atomic_path, exit_on_user_error, load_tensors, read_json,
                       save_tensors, write_json)


def test_atomic_path_leaves_nothing_when_the_block_fails(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not target.exists() and list((tmp_path / "sub").iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole" and [p.name for p in (tmp_path / "sub").iterdir()] == ["out.txt"]


def test_atomic_directory_replaces_only_on_success(tmp_path):
    folder = tmp_path / "results"
    with atomic_directory(folder) as tmp:
        (tmp / "a.json").write_text("1")
    with pytest.raises(ValueError):
        with atomic_directory(folder) as tmp:
            (tmp / "b.json").write_text("2")
            raise ValueError
    assert sorted(p.name for p in folder.iterdir()) == ["a.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["results"]


def test_json_round_trip_and_bad_files(tmp_path):
    write_json(tmp_path / "x.json", {"a": [1, 2.5]})
    assert read_json(tmp_path / "x.json") == {"a": [1, 2.5]}
    with pytest.raises(UserError, match="log not found"):
        read_json(tmp_path / "missing.json", "log")
    (tmp_path / "bad.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(UserError, match="not valid UTF-8 JSON"):
        read_json(tmp_path / "bad.json")


def test_tensors_with_sidecar_and_no_pickle(tmp_path):
    tensors = {"W": torch.arange(6.0).view(2, 3), "P": torch.ones(4, dtype=torch.float64)}
    save_tensors(tmp_path / "ckpt.safetensors", tensors, {"step": 3})
    loaded, meta = load_tensors(tmp_path / "ckpt.safetensors")
    assert meta == {"step": 3} and all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    assert json.loads((tmp_path / "ckpt.json").read_text()) == {"step": 3}
    torch.save(tensors, tmp_path / "pickled.safetensors")           # a pickle under the right name
    with pytest.raises(UserError, match="not a readable safetensors file"):
        load_tensors(tmp_path / "pickled.safetensors")


def test_user_errors_and_interrupts_are_one_line():
    code = ("import sys; sys.path.insert(0, '.')\nfrom common.io import UserError, exit_on_user_error\n"
            "with exit_on_user_error():\n    raise {}\n")
    for raised, status, line in (("UserError('bad --lr')", 2, "error: bad --lr"),
                                 ("KeyboardInterrupt", 130, "interrupted (nothing partial was written)")):
        done = subprocess.run([sys.executable, "-c", code.format(raised)], capture_output=True, text=True)
        assert done.returncode == status and done.stderr.strip().splitlines() == [line]
    with pytest.raises(SystemExit):
        with exit_on_user_error():
            raise UserError("x")


def test_outputs_get_the_modes_of_ordinary_files(tmp_path):
    import os
    mask = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {})
        with atomic_directory(tmp_path / "folder") as tmp:
            (tmp / "x").write_text("1")
    finally:
        os.umask(mask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o755
