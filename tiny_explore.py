"""Write the association explorer of a trained run: one self-contained HTML page (no network) where a
token's top partners in every corpus statistic and every trained weight sit side by side, over the
saved checkpoints, beside the training curves (common/tiny/explorer.py). The trainer writes the same page
at the end of every run; this script writes it again for an existing run, from its checkpoints, its
log and its data (refusing data that does not match the checkpoints).

Usage:
    python tiny_explore.py --out_dir=out/natural                 # writes out/natural/explorer.html
    python tiny_explore.py --out_dir=out/demo/run --top=12 --view=both
    chromium "file://$PWD/out/natural/explorer.html#token=bird"   # or any browser; #token= selects a token
Runs in one process (no torchrun needed).
"""
from common.config import override
from common.io import exit_on_user_error

out_dir = "out/natural"     # run folder: checkpoints/, training_logs.json, config.json
data_dir = ""               # tokenized data (default: the folder recorded in the checkpoints)
output = ""                 # the page (default: explorer.html in out_dir)
top = 8                     # partners kept per token and map
view = "normalised"         # view shown first: normalised (row a / P̂(x=a)), raw, both, lift (switchable on the page)
max_mb = 5.0                # page size limit: past it only the most frequent tokens' rows are kept (the page says so)
device = "auto"             # where the corpus statistics are computed: auto, cpu, cuda
progress = True

if __name__ == "__main__":
    with exit_on_user_error():
        override(globals())
        from pathlib import Path

        from common.device import resolve_device
        resolve_device(device)                      # a mistyped device fails before any work
        from common.tiny.explorer import EXPLORER_FILE, write_explorer
        from common.io import UserError, read_json
        from common.theory.association_views import VIEWS, check_view
        from common.tiny.training import CHECKPOINT_DIR, LOG_FILE, checkpoint_paths, load_run
        check_view(view, "view", VIEWS)
        found = checkpoint_paths(out_dir)
        if not found:
            raise UserError(f"no checkpoint in {Path(out_dir) / CHECKPOINT_DIR}: {out_dir} is not a trained run "
                            f"(train it with tiny_self_attn_natural.py first)")
        log_path = Path(out_dir) / LOG_FILE
        logs = read_json(log_path, "training log") if log_path.exists() else []
        _, _, vocabulary, stats, meta = load_run(found[-1], data_dir, device, progress)
        path = write_explorer(Path(output or Path(out_dir) / EXPLORER_FILE), stats, vocabulary, found, logs,
                              view, top, int(max_mb * 1e6), title=f"{out_dir}, step {meta['step']}")
        print(f"explorer for {len(found)} checkpoint(s) written to {path} ({path.stat().st_size / 1e6:.2f} MB)")
