"""Is the turn of W's topic contrast an early-regime effect?  On the LDA corpus, W's same-topic −
different-topic contrast follows its leading term early in training and later turns negative
(topic_structure.py, docs/theory.md §11).  This computes the Taylor series of training on the same
sequences (docs/theory.md §14) and says whether its partial sums turn the contrast at the same τ = ηs,
or whether the turn lies beyond the series' radius of convergence.

Usage:
    python topic_structure.py --out_dir=out/topics          # first: the trained run and its data
    python topic_series.py --structure_dir=out/topics --out_dir=out/topic_series
    python topic_series.py --order=12 --series_sequences=0      # every training sequence (cost linear in them)
Single process.  Writes --out_dir/{topic_series.json, topic_series.png/.pdf} (replaced as a whole when
the run succeeds): per layer the contrast's series coefficients, where each partial sum turns negative,
where the trained contrast does, and the radius estimates.
"""
from common.config import override
from common.io import exit_on_user_error

structure_dir = "out/topics"    # a finished topic_structure.py run (its topic_structure.json and data/)
order = 10                      # K: the series' coefficients c_1 … c_K (≥ 5: W leads with τ⁴)
series_sequences = 2000         # sequences the series is computed on (a seeded sample; 0: all training sequences)
series_chunk = 250              # sequences per jet pass (memory, not the result, depends on it)
seed = 0                        # the sample's seed
device = "cpu"                  # cpu, cuda or auto
progress = True                 # progress bar
out_dir = "out/topic_series"    # replaced as a whole when the run succeeds

if __name__ == "__main__":
    with exit_on_user_error():
        from common.tiny.topic_series import TopicSeriesConfig, run_topic_series, summary_lines
        print("\n".join(summary_lines(run_topic_series(TopicSeriesConfig.from_settings(override(globals()))))))
        print(f"wrote {out_dir}/topic_series.json and topic_series.png/.pdf")
