"""nanoGPT-style configuration: a script defines plain hyperparameters at its top, then calls
`override(globals())`; `--name=value` or `--name value` on the command line replaces a default.
Values are parsed as Python literals when they look like one (numbers, booleans, None, lists),
and must keep the default's type (an int default accepts a float only if it is whole)."""
import ast
import sys

from common.io import UserError


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
        raise UserError(f"expected a {type(default).__name__}, got {raw!r}")
    return value


def override(config: dict, argv=None) -> dict:
    """Apply `--key=value` / `--key value` overrides to the hyperparameters in `config` (a script's
    globals()); returns {key: value} of every hyperparameter, for logging."""
    argv = sys.argv[1:] if argv is None else list(argv)
    keys = {k for k, v in config.items() if not k.startswith("_")
            and isinstance(v, (int, float, bool, str, list, tuple, type(None)))}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            print(config.get("__doc__") or "")
            print("hyperparameters (override with --name=value):")
            for k in sorted(keys):
                print(f"  --{k}={config[k]!r}")
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
        i += 1
    return {k: config[k] for k in sorted(keys)}
