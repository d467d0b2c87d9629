import json
import shutil
import subprocess

import pytest

from common.io import UserError
from common.corpus.text import iter_texts, load_text_dataset


def test_local_formats_give_the_same_documents(tmp_path):
    docs = ["One day a bird flew.", "The dog barked!\nIt ran home."]
    (tmp_path / "c.txt").write_text("\n\n".join(docs) + "\n\n\n", encoding="utf-8")
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps({"text": d}) for d in docs), encoding="utf-8")
    import datasets
    datasets.Dataset.from_dict({"text": docs}).to_parquet(str(tmp_path / "c.parquet"))
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": docs})}).save_to_disk(str(tmp_path / "saved"))
    for name in ("c.txt", "c.jsonl", "c.parquet", "saved"):
        assert list(iter_texts(load_text_dataset(str(tmp_path / name)))) == docs, name
    assert list(iter_texts(load_text_dataset(str(tmp_path / "c.txt")), limit=1)) == docs[:1]


def test_synthetic_source():
    texts = list(iter_texts(load_text_dataset("synthetic", n_synthetic=5, seed=1)))
    assert len(texts) == 5 and all(t[0].isupper() for t in texts)


@pytest.mark.parametrize("content,match", [(b"caf\xe9 au lait", "not UTF-8"), (b"{oops", "not a JSON")])
def test_bad_files(tmp_path, content, match):
    path = tmp_path / ("bad.txt" if match == "not UTF-8" else "bad.jsonl")
    path.write_bytes(content)
    with pytest.raises(UserError, match=match):
        load_text_dataset(str(path))


def test_missing_path_and_field(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_text_dataset(str(tmp_path / "missing.txt"))
    (tmp_path / "c.jsonl").write_text(json.dumps({"body": "x"}), encoding="utf-8")
    with pytest.raises(UserError, match="no 'text' field"):
        load_text_dataset(str(tmp_path / "c.jsonl"))


def test_failed_download_is_one_clear_error(monkeypatch):
    # offline mode makes the hub attempt fail at once (here and in CI nothing can reach a hub anyway)
    import datasets
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="'roneneldan/TinyStories' is not a local path.*offline.*pass a local path"):
        load_text_dataset("roneneldan/TinyStories")
    with pytest.raises(UserError, match="'Skylion007/openwebtext' is not a local path"):
        load_text_dataset("openwebtext", streaming=True)


@pytest.mark.skipif(shutil.which("iconv") is None, reason="no iconv on this machine")
def test_the_printed_iconv_command_converts_the_file(tmp_path):
    """The non-UTF-8 hint is a command that works as printed (iconv needs -f, the encoding to convert from)."""
    path = tmp_path / "notes.txt"
    path.write_bytes("Caf\u00e9 au lait \u2014 na\u00efve.\n\nA second story.".encode("cp1252"))
    with pytest.raises(UserError, match="not UTF-8") as error:
        load_text_dataset(str(path))
    command = str(error.value).split("e.g. `")[1].rstrip("`")
    assert command.startswith("iconv -f cp1252 -t utf-8 ")
    subprocess.run(command, shell=True, check=True, cwd=tmp_path)
    converted = tmp_path / "notes.utf8.txt"
    assert list(iter_texts(load_text_dataset(str(converted)))) == ["Caf\u00e9 au lait \u2014 na\u00efve.",
                                                                   "A second story."]
