"""nanoGPT-style configuration: a script defines plain hyperparameters at its top, then calls
`override(globals())`; `--name=value` or `--name value` on the command line replaces a default.
Values are parsed as Python literals when they look like one (numbers, booleans, None, lists),
and must keep the default's type (an int default accepts a float only if it is whole)."""
import ast
import re
import sys
from pathlib import Path

from common.io import UserError


TYPE_NAMES = {int: "a whole number", float: "a number", str: "a string", list: "a list", tuple: "a list"}


def _parse(raw: str, default):
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
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


def override(config: dict, argv=None) -> dict:
    """Apply `--key=value` / `--key value` overrides to the hyperparameters in `config` (a script's
    globals()); returns {key: value} of every hyperparameter, for logging."""
    argv = sys.argv[1:] if argv is None else list(argv)
    keys = {k for k, v in config.items() if not k.startswith("_")
            and isinstance(v, (int, float, bool, str, list, tuple, type(None)))}
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
            raise UserError(f"unknown option --{key}; known: {', '.join('--' + k for k in sorted(keys))}")
        try:
            config[key] = _parse(raw, config[key])
        except UserError as error:
            raise UserError(f"--{key}: {error}") from None
        explicit.append(key)
        i += 1
    # `_explicit`: which settings the user gave (a resumed run takes the others from its saved config.json)
    return dict({k: config[k] for k in sorted(keys)}, _explicit=explicit)


def hyperparameter_comments(path) -> dict:
    """{name: comment} of the script's top-level `name = value   # comment` lines, in file order;
    a comment continued on the following comment-only lines is joined."""
    comments, last = {}, None
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, TypeError):
        return comments
    for line in lines:
        inherited = re.match(r"from (\w+) import \*", line)   # a script sharing another's hyperparameters
        if inherited:
            comments.update(hyperparameter_comments(Path(path).with_name(inherited.group(1) + ".py")))
            continue
        match = re.match(r"([A-Za-z]\w*)\s*=\s*[^#]*?(?:#\s*(.*))?$", line)
        if match:
            last = match.group(1)
            comments[last] = (match.group(2) or "").strip() or comments.get(last, "")
        elif last and re.match(r"\s{8,}#\s*(.*)", line):
            comments[last] += " " + line.strip()[1:].strip()
        else:
            last = None
    return comments


def help_text(config: dict, keys) -> str:
    """The script's docstring, then every hyperparameter with its default and its comment."""
    comments = hyperparameter_comments(config.get("__file__"))
    ordered = [k for k in comments if k in keys] + sorted(k for k in keys if k not in comments)
    width = max((len(f"--{k}={config[k]!r}") for k in ordered), default=0)
    lines = [(config.get("__doc__") or "").rstrip(), "", "hyperparameters (override with --name=value):"]
    for k in ordered:
        lines.append(f"  {f'--{k}={config[k]!r}':<{width}}  {comments.get(k, '')}".rstrip())
    return "\n".join(lines)
