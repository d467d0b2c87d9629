"""Text corpora from the hub or from local files, behind one function.

`load_text_dataset(source)` returns a `datasets.Dataset` (or a streamed `IterableDataset` for hub
corpora) with a `text` column, whatever the source is:
  - `synthetic`                         the embedded generator (common/corpus/synthetic.py)
  - `lda` or `lda:overlap=2,alpha=0.5,…`  the LDA topic corpus (common/corpus/lda.py); `generated_files`
                                        gives its word → topics table, written beside the tokens
  - a folder written by `Dataset.save_to_disk` (a DatasetDict: its `split`)
  - a `.txt` file (documents separated by blank lines), `.jsonl` or `.parquet` with a `text` field
  - a hub name (`roneneldan/TinyStories`, `openwebtext`, `fineweb`, …), streamed when asked.
Nothing here can reach a hub; a failed download becomes one `UserError` line saying to pass a local
path.  `datasets` is imported lazily so that modules using only tensors run where it is absent.
"""
import json
import shlex
from pathlib import Path
from typing import Optional

from common.io import UserError
from common.corpus.lda import TABLE_FILE, generate_lda, parse_source, topic_table

# short names → (hub path, configuration) for the corpora the paper uses
HUB_ALIASES = {
    "tinystories": ("roneneldan/TinyStories", None),
    "openwebtext": ("Skylion007/openwebtext", None),
    "fineweb": ("HuggingFaceFW/fineweb", "sample-10BT"),
}
LOCAL_SUFFIXES = (".txt", ".jsonl", ".json", ".parquet")


def _read_utf8(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        # iconv needs the encoding to convert from (-f); cp1252 (Windows) is the usual one of English text
        quoted = shlex.quote(str(path))
        raise UserError(f"{path} is not UTF-8 text (byte {error.start}); convert it first, naming its encoding "
                        f"(`file -i {quoted}` guesses it), e.g. `iconv -f cp1252 -t utf-8 {quoted} > "
                        f"{shlex.quote(str(path.with_suffix('.utf8' + path.suffix)))}`") from None


def read_txt_documents(path: Path) -> list:
    """Documents of a .txt file, separated by one or more blank lines."""
    text = _read_utf8(path).replace("\r\n", "\n")
    documents = []
    for block in text.split("\n\n"):
        block = block.strip()
        if block:
            documents.append(block)
    return documents


def read_jsonl_documents(path: Path, text_field: str) -> list:
    documents = []
    for number, line in enumerate(_read_utf8(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(f"{path}:{number} is not a JSON object") from None
        if not isinstance(record, dict) or text_field not in record:
            raise UserError(f"{path}:{number} has no {text_field!r} field")
        documents.append(str(record[text_field]))
    return documents


def _from_local(path: Path, split: str, text_field: str):
    import datasets
    if path.is_dir():
        try:
            loaded = datasets.load_from_disk(str(path))
        except FileNotFoundError:
            raise UserError(f"{path} is a folder but not a dataset saved with save_to_disk") from None
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise UserError(f"{path} has no split {split!r} (it has {', '.join(loaded)})")
            loaded = loaded[split]
    elif path.suffix == ".txt":
        loaded = datasets.Dataset.from_dict({text_field: read_txt_documents(path)})
    elif path.suffix in (".jsonl", ".json"):
        loaded = datasets.Dataset.from_dict({text_field: read_jsonl_documents(path, text_field)})
    elif path.suffix == ".parquet":
        try:
            loaded = datasets.Dataset.from_parquet(str(path))
        except Exception as error:
            raise UserError(f"{path} is not a readable parquet file ({error.__class__.__name__})") from None
    else:
        raise UserError(f"{path}: unsupported file type; use .txt, .jsonl, .parquet or a saved dataset folder")
    if text_field not in loaded.column_names:
        raise UserError(f"{path} has no {text_field!r} column (it has {', '.join(loaded.column_names)})")
    return loaded.select_columns([text_field])


def _from_hub(name: str, split: str, streaming: bool):
    import datasets

    from common.hub import require_hub
    hub_name, configuration = HUB_ALIASES.get(name.lower(), (name, None))
    require_hub(hub_name, "pass a local path (.txt, .jsonl, .parquet or a saved dataset folder) or 'synthetic'")
    try:
        return datasets.load_dataset(hub_name, configuration, split=split, streaming=streaming)
    except Exception as error:  # offline, unknown name, gated: all end the same way for the user
        raise UserError(f"could not load {hub_name!r} from the hub ({error.__class__.__name__}); "
                        f"pass a local path (.txt, .jsonl, .parquet or a saved dataset folder) "
                        f"or 'synthetic'") from None


def load_text_dataset(source: str, split: str = "train", text_field: str = "text",
                      streaming: bool = False, n_synthetic: int = 20000, seed: int = 0):
    """A dataset with a `text` column from `source` (see module docstring)."""
    import datasets

    from common.progress import quiet_library_bars
    quiet_library_bars()
    if source == "synthetic":
        from common.corpus.synthetic import generate_stories
        return datasets.Dataset.from_dict({"text": generate_stories(n_synthetic, seed)})
    lda = parse_source(source, n_synthetic)
    if lda is not None:
        return datasets.Dataset.from_dict({"text": generate_lda(lda, seed).documents})
    path = Path(source).expanduser()
    if path.exists():
        loaded = _from_local(path, split, text_field)
        return loaded.rename_column(text_field, "text") if text_field != "text" else loaded
    if path.suffix in LOCAL_SUFFIXES or source.startswith((".", "/", "~")):
        raise UserError(f"data not found: {source}")
    return _from_hub(source, split, streaming)


def generated_files(source: str) -> dict:
    """{file name: JSON data} a generated corpus keeps beside its tokens: the LDA word → topics table."""
    lda = parse_source(source)
    return {TABLE_FILE: topic_table(lda)} if lda is not None else {}


def iter_texts(dataset, limit: Optional[int] = None):
    """The `text` of the first `limit` documents (all when None), streamed or in memory."""
    for i, row in enumerate(dataset):
        if limit is not None and i >= limit:
            break
        yield row["text"]
