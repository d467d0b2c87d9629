"""Write the association explorer of an existing checkpoint comparison (docs/theory.md §6): one offline
page, {output_dir}/explorer.html, where a token's partners in the corpus statistics (B̄, Q̄) sit beside the
model's own single-token associations (its next-token distribution given the token alone, each layer's
and each head's attention scores of the token as a query), revision by revision; and the per-token
agreement measure, {output_dir}/association_agreement.json with its curves (PNG, PDF).
(common/checkpoints/explorer.py, common/checkpoints/agreement.py.)

The comparison's settings are read from {output_dir}/pythia_config.json (pythia.py writes it); a
setting given here wins.  The statistics come from the comparison's cache (--cache_dir), the next-token
counts are cached beside them.  A comparison of several models (seeds: --model_name a comma list or a
brace range) gets one page per model in {output_dir}/{model}/ and, beside them, their agreement
aggregated (mean and min–max band) with an index page.  With --models, only that aggregation runs, over
folders whose explorers are written.  Prints the agreement over revisions (the aggregate's means for
several models).

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
        from common.checkpoints.agreement import agreement_lines
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
        print("\n".join(agreement_lines(read_json([p for p in paths if p.suffix == ".json"][-1]))))
