"""Write the association explorer of an existing checkpoint comparison (docs/theory.md §6): one offline
page, {output_dir}/explorer.html, where a token's partners in the corpus statistics (B̄, Q̄) sit beside the
model's own single-token associations (its next-token distribution given the token alone, each layer's
and each head's attention scores of the token as a query), revision by revision; and the per-token
agreement measure, {output_dir}/association_agreement.json with its curves (PNG, PDF).
(common/checkpoints/explorer.py, common/checkpoints/agreement.py.)

The comparison's settings are read from {output_dir}/pythia_config.json (pythia.py writes it); a
setting given here wins.  The statistics come from the comparison's cache (--cache_dir), the next-token
counts are cached beside them.  With --models, the folders of several models (seeds) whose explorers
are written are aggregated instead: mean and min–max band of their agreement, and an index page in
--output_dir linking to each model's page.

Single process, one device (a GPU when present); no distributed launch.

    python pythia_explore.py --output_dir=out/pythia
    python pythia_explore.py --output_dir=out/demo_pythia/results --top=12 --k=16 --view=both
    python pythia_explore.py --output_dir=out/seeds --models=out/seeds/seed1,out/seeds/seed2
    chromium "file://$PWD/out/pythia/explorer.html#token=bird&revision=step0"   # or any browser
"""
from common.config import inherit, override
from common.io import exit_on_user_error

inherit(globals(), "pythia.py")   # the comparison's settings (pythia_config.json in --output_dir wins over these)
top = 8                      # partners per token and map on the page
k = 8                        # top-k of the agreement measure
max_mb = 40.0                # page size limit: past it only the most frequent tokens' rows are kept (the page says so)
min_count = 10               # a token is measured when seen at least this often as an input
view = "normalised"          # view shown first: normalised (row ÷ P̂(x=a)), raw, both
models = []                  # several models' folders (their explorers written): aggregate them into --output_dir

if __name__ == "__main__":
    with exit_on_user_error():
        settings = override(globals())
        from common.checkpoints.explorer import (ExplorerConfig, comparison_settings, write_explorer_overview,
                                                 write_explorers)
        from common.io import read_json
        if models:
            paths = write_explorer_overview(models, output_dir)
        else:
            paths = write_explorers(comparison_settings(output_dir, settings), ExplorerConfig.from_settings(settings))
        pages = [p for p in paths if p.suffix == ".html"]
        print("wrote " + ", ".join(f"{p} ({p.stat().st_size / 1e6:.2f} MB)" for p in pages) + ", "
              + ", ".join(str(p) for p in paths if p.suffix != ".html"))
        record = read_json([p for p in paths if p.suffix == ".json"][-1])   # the aggregate's, for several models
        value = lambda v: "–" if v is None else f"{v['mean'] if isinstance(v, dict) else v:.3f}"
        count = lambda v: f"{v['mean'] if isinstance(v, dict) else v:.0f}"
        chance = record["chance"]
        print(f"agreement{' (mean over the models)' if 'models' in record else ''}, k = {record['k']}, "
              f"{count(record['n_tokens']['next_token'])} tokens (chance: top-1 {value(chance['next_token_top1'])}, "
              f"next overlap {value(chance['next_token_overlap'])}, attention overlap "
              f"{value(chance['attention_overlap'])}):")
        for revision, entry in record["revisions"].items():
            print(f"  {revision:>12}  top-1 {value(entry['next_token_top1'])}  next overlap "
                  f"{value(entry['next_token_overlap'])}  attention overlap by layer "
                  + " ".join(value(v) for v in entry["attention_overlap"].values()))
