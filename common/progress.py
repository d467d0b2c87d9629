"""Progress bars: every bar of the package is made here, so that a log never fills with them.

On a terminal a bar is tqdm's, redrawn in place with carriage returns.  When the stream it writes to
is not a terminal (output redirected to a file, a pipe, a CI log, a test capturing it) those redrawn
frames would pile up as one long line of '\r'-separated copies; there a bar instead writes plain
lines, ASCII only, at most one per `LOG_INTERVAL` seconds plus the final one.  The bars of the
libraries the pipelines call (`datasets`' map and save progress) are turned off in that case
(`quiet_library_bars`).
"""
import sys

from tqdm.auto import tqdm as _terminal_tqdm
from tqdm.std import tqdm as _plain_tqdm

LOG_INTERVAL = 30.0   # seconds between two lines of a bar written to a log


def is_terminal(stream=None) -> bool:
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):   # no isatty, or a closed stream
        return False


class _Lines:
    """A stream that passes on whole lines only: tqdm's own '\r' and '\n' around a bar are dropped."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str):
        text = text.replace("\r", "")
        if text.strip():
            self.stream.write(text)

    def flush(self):
        getattr(self.stream, "flush", lambda: None)()


class LogLines(_plain_tqdm):
    """A tqdm bar that writes whole lines (no carriage return, no cursor movement): for logs."""

    def __init__(self, *args, **kwargs):
        kwargs["file"] = _Lines(kwargs.get("file") or sys.stderr)
        kwargs.setdefault("mininterval", LOG_INTERVAL)
        kwargs.setdefault("maxinterval", max(LOG_INTERVAL, kwargs["mininterval"]))
        kwargs.setdefault("ascii", True)
        kwargs["dynamic_ncols"] = False
        kwargs.setdefault("ncols", 80)
        super().__init__(*args, **kwargs)

    def display(self, msg=None, pos=None):   # (close() calls it after setting self.disable)
        text = self.__str__() if msg is None else msg
        if self.total is None and self.n == 0:   # "0it [00:00, ?it/s]": nothing to say yet
            return True
        if text.strip() and self.n != getattr(self, "_last_n", None):   # tqdm redisplays at close
            self._last_n = self.n
            self.fp.write(text.strip() + "\n")
            self.fp.flush()
        return True

    def clear(self, *args, **kwargs):   # nothing drawn in place, so nothing to clear
        pass


def progress_bar(iterable=None, **kwargs):
    """A progress bar (tqdm's arguments): tqdm's own on a terminal, LogLines elsewhere."""
    if is_terminal(kwargs.get("file")):
        return _terminal_tqdm(iterable, **kwargs)
    return LogLines(iterable, **kwargs)


def write(message: str) -> None:
    """Print a line without breaking a bar drawn on the terminal (tqdm.write)."""
    _terminal_tqdm.write(message)


def quiet_library_bars() -> None:
    """Turn off the progress bars of `datasets` when stderr is not a terminal (see module docstring)."""
    if not is_terminal():
        import datasets
        datasets.disable_progress_bars()
