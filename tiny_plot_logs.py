"""Plot a training log: cosine of each weight with its leading-term matrix against epoch (attention,
value, output, position; a band for the range across layers) and the relative errors to the §3
prediction. Reads our `training_logs.json` or one with only the release's keys.

Usage:
    python tiny_plot_logs.py --log=out/natural/training_logs.json    # → out/natural/training_curves.png/.pdf
    python tiny_plot_logs.py --log=release_logs.json --out=figures/release_curves
"""
from common.config import override
from common.io import exit_on_user_error

log = "out/natural/training_logs.json"   # the trainer's log (a JSON list of entries)
out = ""                                 # figure stem (default: training_curves beside the log)
title = ""                               # figure title (default: the log's folder)

if __name__ == "__main__":
    with exit_on_user_error():
        override(globals())
        from pathlib import Path

        from common.io import UserError, read_json
        from common.plotting import training_curves
        logs = read_json(log, "training log")
        if not isinstance(logs, list) or not logs or not all(isinstance(e, dict) for e in logs):
            raise UserError(f"{log} is not a non-empty JSON list of log entries")
        stem = out or Path(log).with_name("training_curves")
        try:
            paths = training_curves(logs, stem, title or Path(log).parent.name)
        except ValueError as error:
            raise UserError(f"{log}: {error}") from None
        print("figure:", ", ".join(map(str, paths)))
