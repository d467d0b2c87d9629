"""common/progress.py: a bar drawn to a terminal is tqdm's; written to a log it is whole lines, no '\\r'."""
import io

from common.progress import LogLines, is_terminal, progress_bar


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_bar_written_to_a_log_is_lines_without_carriage_returns():
    log = io.StringIO()
    bar = progress_bar(range(5), desc="steps", file=log, mininterval=0)
    assert isinstance(bar, LogLines) and not is_terminal(log)
    assert list(bar) == list(range(5))
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and log.getvalue().endswith("\n")
    assert [line.split("|")[0].strip() for line in lines] == [f"steps: {p:3d}%" for p in (0, 20, 40, 60, 80, 100)]
    assert lines[-1].split("|")[2].strip().startswith("5/5") and all(line.isascii() for line in lines)
    # a bar that is not left on screen writes no frame at its close, and a closed bar nothing more
    log = io.StringIO()
    bar = progress_bar(total=3, desc="pass", file=log, leave=False)
    bar.update(3)
    bar.close()
    assert log.getvalue().count("\n") == 1 and "\r" not in log.getvalue()


def test_a_log_bar_writes_at_most_one_line_per_interval():
    log = io.StringIO()
    for _ in progress_bar(range(1000), desc="fast", file=log):   # default interval: seconds, not steps
        pass
    lines = log.getvalue().splitlines()
    assert 2 <= len(lines) <= 4 and lines[-1].startswith("fast: 100%")


def test_a_bar_on_a_terminal_is_tqdms_own():
    screen = Terminal()
    bar = progress_bar(range(3), desc="live", file=screen, mininterval=0)
    assert not isinstance(bar, LogLines)
    list(bar)
    assert "\r" in screen.getvalue()                              # redrawn in place, as tqdm does


def test_a_log_bar_of_unknown_length_writes_no_empty_first_line():
    """A pass over a generator (the statistics passes) has no length: its first frame, "0it [00:00, ?it/s]",
    says nothing and is not written; the frames with counts are."""
    log = io.StringIO()
    for _ in progress_bar((i for i in range(3)), desc="statistics pass 1", file=log, leave=False):
        pass
    assert "0it" not in log.getvalue()
    log = io.StringIO()
    for _ in progress_bar((i for i in range(3)), desc="pass", file=log, mininterval=0):
        pass
    assert [line.split(" [")[0] for line in log.getvalue().splitlines()] == ["pass: 1it", "pass: 2it", "pass: 3it"]
