"""nanoGPT-style configuration: a script defines plain hyperparameters at its top, then calls
`override(globals())`; `--name=value` or `--name value` on the command line replaces a default.
Values are parsed as Python literals when they look like one (numbers, booleans, None, lists),
and must keep the default's type (an int default accepts a float only if it is whole).  A setting
whose default is None states its type with an annotation (`top_tokens: int | None = None`), so a
wrong value fails before any work.

A script that shares another's settings (the BPE scripts share the natural ones) calls
`inherit(globals(), "other_script.py")` before its own block: every hyperparameter of the other
script, and its comment for --help, without a star import.

The script's block is the one home of each default and its comment; library code receives the
settings as a typed object (every settings class derives from `Settings`).  A settings class names its
script and declares nothing else of it: its fields, their types and defaults are the block's, read when
the class is first used (the block's annotation, else its default's type), so a setting added to the
block is a field of the class with no second copy:

    class ComparisonConfig(Settings, script="pythia.py"):   # every setting of pythia.py's block
        target_layer: Optional[int] = None                  # a field the block lacks: declared here

`names=(...)` takes a part of the block (LDAParameters: the corpus settings of topic_structure.py),
`frozen=True` makes the instances immutable.  Build one with `from_settings` (a script's settings) or with
keyword arguments, the others keeping the block's defaults.
"""
import ast
import copy
import dataclasses
import difflib
import functools
import importlib.util
import io
import sys
import tokenize
import typing
from dataclasses import fields
from pathlib import Path

from common.io import UserError

TYPE_NAMES = {int: "a whole number", float: "a number", str: "a string", list: "a list", tuple: "a list",
              bool: "True or False"}
SIMPLE = (int, float, bool, str, list, tuple, type(None))
HELP_COLUMN = 40   # a longer `--name=default` puts its comment on the next line


ROOT = Path(__file__).resolve().parents[1]   # the scripts' folder (the repository root)
DATACLASS_ATTRIBUTES = ("__dataclass_fields__", "__dataclass_params__", "__match_args__")


class SettingsType(type):
    """The metaclass of `Settings`: asking a settings class for its dataclass fields (`dataclasses.fields`,
    `is_dataclass`) builds it first."""

    def __getattr__(cls, name):
        if name in DATACLASS_ATTRIBUTES and "_script" in cls.__dict__:
            cls._build()
            return type.__getattribute__(cls, name)
        raise AttributeError(f"type object {cls.__name__!r} has no attribute {name!r}")


class Settings(metaclass=SettingsType):
    """Base of the typed settings objects (dataclasses) the library receives from a script (module
    docstring).  The class becomes a dataclass on first use, not when it is defined: the block is read by
    running the script's top level, which imports the library (pythia.py imports the module that defines
    ComparisonConfig), so reading it at definition time would be an import circle."""

    def __init_subclass__(cls, script=None, names=None, frozen=False, **kwargs):
        super().__init_subclass__(**kwargs)
        if script is not None:
            cls._script, cls._names, cls._frozen = script, names, frozen

    def __new__(cls, *args, **kwargs):   # also when an instance is copied or unpickled
        cls._build()
        return super().__new__(cls)

    @classmethod
    def _build(cls):
        """Make the class a dataclass with its script's settings as fields (once)."""
        if "_script" not in cls.__dict__ or "__dataclass_fields__" in cls.__dict__:
            return
        values, annotations = script_block(ROOT / cls._script)
        names = cls._names or list(values)
        missing = [name for name in names if name not in values]
        if missing:
            raise UserError(f"{cls.__name__}: {cls._script} has no setting {', '.join(missing)}")
        declared = dict(cls.__dict__.get("__annotations__", {}))   # fields of no script, after the block's
        fields_ = {}
        for name in names:
            default = values[name]
            fields_[name] = annotations.get(name, typing.Any if default is None else type(default))
            setattr(cls, name, dataclasses.field(default_factory=functools.partial(copy.deepcopy, default))
                    if isinstance(default, (list, dict, set)) else default)
        cls.__annotations__ = dict(fields_, **{k: v for k, v in declared.items() if k not in fields_})
        dataclasses.dataclass(frozen=cls._frozen)(cls)

    @classmethod
    def from_settings(cls, settings: dict):
        """The settings object of a script's settings (extra keys — other scripts' or private ones — are
        left out; missing ones keep the block's default)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in settings.items() if k in names})


def _parse(raw: str, default, annotation=None):
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    if default is None and annotation is not None:
        return _parse_annotated(raw, value, annotation)
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise UserError(f"expected True or False, got {raw!r}")
    if isinstance(default, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(default, str) and not isinstance(value, str):
        return raw
    if isinstance(default, (list, tuple)):
        # `--revisions=step0,step1` and `--sizes=256,2048` both become lists
        if isinstance(value, (list, tuple)):
            return list(value)
        return [_parse(v.strip(), None) for v in raw.split(",")]
    if not isinstance(value, type(default)):
        raise UserError(f"expected {TYPE_NAMES.get(type(default), type(default).__name__)}, got {raw!r}")
    return value


def _parse_annotated(raw: str, value, annotation):
    """A value for a setting whose default is None, checked against its annotation (`int | None`)."""
    allowed = [a for a in typing.get_args(annotation) or (annotation,) if a is not type(None)]
    if value is None:
        return None
    for kind in allowed:
        try:
            return _parse(raw, kind() if kind is not bool else False)
        except (UserError, TypeError):
            continue
    names = " or ".join(TYPE_NAMES.get(kind, getattr(kind, "__name__", str(kind))) for kind in allowed)
    raise UserError(f"expected {names} (or None), got {raw!r}")


def hyperparameter_names(config: dict) -> set:
    return {k for k, v in config.items() if not k.startswith("_") and isinstance(v, SIMPLE)
            and not isinstance(v, type)}


def override(config: dict, argv=None) -> dict:
    """Apply `--key=value` / `--key value` overrides to the hyperparameters in `config` (a script's
    globals()); returns {key: value} of every hyperparameter, for the run, plus `_explicit`: the
    settings given on the command line (a resumed run takes the others from its saved config.json).
    Every argument is checked before the script does any work."""
    argv = sys.argv[1:] if argv is None else list(argv)
    keys = hyperparameter_names(config)
    annotations = config.get("__annotations__", {})
    i, explicit = 0, []
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            print(help_text(config, keys))
            sys.exit(0)
        if not arg.startswith("--"):
            raise UserError(f"unexpected argument {arg!r}; use --name=value")
        key, eq, raw = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(argv):
                raise UserError(f"--{key} needs a value")
            i += 1
            raw = argv[i]
        if key not in keys:
            close = difflib.get_close_matches(key, sorted(keys), n=1)
            raise UserError(f"unknown option --{key}" + (f"; did you mean --{close[0]}?" if close
                                                         else "; --help lists the options"))
        try:
            config[key] = _parse(raw, config[key], annotations.get(key))
        except UserError as error:
            raise UserError(f"--{key}: {error}") from None
        explicit.append(key)
        i += 1
    return dict({k: config[k] for k in sorted(keys)}, _explicit=explicit)


# -- sharing another script's settings -------------------------------------------------------------
def load_script(path):
    """The module of a script (its hyperparameter block runs; its `__main__` body does not)."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(f"_settings_of_{path.stem}", path)
    if spec is None or not path.exists():
        raise UserError(f"{path} does not exist")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def inherit(config: dict, script: str, names=None) -> None:
    """Copy every hyperparameter of `script` (a file beside the calling script) into `config` (the
    calling script's globals()), with its annotation; --help lists them with the other script's
    comments.  `names`: only those (a script that shares part of another's block, e.g. its corpus)."""
    path = Path(config["__file__"]).resolve().with_name(script)
    module = vars(load_script(path))
    keys = hyperparameter_names(module)
    unknown = sorted(set(names or ()) - keys)
    if unknown:
        raise UserError(f"{script} has no setting {', '.join(unknown)}")
    for key in (keys if names is None else names):
        config[key] = module[key]
        if key in module.get("__annotations__", {}):
            config.setdefault("__annotations__", {})[key] = module["__annotations__"][key]
    config["__inherits__"] = str(path)


def script_settings(path) -> dict:
    """{name: default} of a script's hyperparameter block (inherited ones included), in the block's order."""
    return script_block(path)[0]


def script_block(path) -> tuple:
    """({name: default}, {name: annotation}) of a script's hyperparameter block, in the block's order."""
    module = vars(load_script(path))
    names = hyperparameter_names(module)
    return {k: v for k, v in module.items() if k in names}, dict(module.get("__annotations__", {}))


# -- help ------------------------------------------------------------------------------------------
def hyperparameter_comments(path) -> dict:
    """{name: comment} of a script's top-level assignments, in file order, read with Python's own
    parser and tokenizer: the comment on the assignment's last line, continued on the comment-only
    lines indented below it."""
    try:
        source = Path(path).read_text(encoding="utf-8")
    except (OSError, TypeError):
        return {}
    comments_by_line, comment_only = {}, set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            row, column = token.start
            comments_by_line[row] = token.string[1:].strip()
            if not token.line[:column].strip() and column > 0:
                comment_only.add(row)
    comments = {}
    for node in ast.parse(source).body:
        targets = ([node.target] if isinstance(node, ast.AnnAssign) else
                   node.targets if isinstance(node, ast.Assign) else [])
        if len(targets) != 1 or not isinstance(targets[0], ast.Name):
            continue
        row = node.end_lineno
        text = [comments_by_line[row]] if row in comments_by_line and row not in comment_only else []
        while row + 1 in comment_only:
            row += 1
            text.append(comments_by_line[row])
        comments[targets[0].id] = " ".join(text)
    return comments


def help_text(config: dict, keys) -> str:
    """The script's docstring, then every hyperparameter with its default and its comment (an
    inherited one with the comment of the script it comes from, unless this script comments it)."""
    comments = hyperparameter_comments(config.get("__inherits__"))
    own = hyperparameter_comments(config.get("__file__"))
    comments.update({k: c for k, c in own.items() if c or k not in comments})
    ordered = [k for k in comments if k in keys] + sorted(k for k in keys if k not in comments)
    lines = [(config.get("__doc__") or "").rstrip(), "", "hyperparameters (override with --name=value):"]
    for k in ordered:
        option = f"--{k}={config[k]!r}"
        comment = comments.get(k, "")
        if len(option) > HELP_COLUMN and comment:
            lines += [f"  {option}", f"  {'':<{HELP_COLUMN}}  {comment}"]
        else:
            lines.append(f"  {option:<{HELP_COLUMN}}  {comment}".rstrip())
    return "\n".join(lines)
