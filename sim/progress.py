"""Progress on long work (bench sections, sweeps, the paper, model builds): a live tqdm
line on a terminal, plain lines otherwise (CI logs)."""

import sys
import threading
import time

__all__ = ["progress", "ticker"]


def _tty():
    return sys.stderr.isatty()


def progress(items, what, *, log=print, label=str):
    """Iterate ``items`` (a sized iterable) reporting each step: a tqdm bar on a terminal,
    else a line per item ``[k/n] what: label(item)`` with the elapsed seconds."""
    items = list(items)
    if _tty():
        from tqdm import tqdm
        bar = tqdm(items, desc=what, unit="step", leave=True)
        for item in bar:
            bar.set_postfix_str(str(label(item)))
            yield item
        return
    t0 = time.perf_counter()
    for k, item in enumerate(items, 1):
        log(f"[{k}/{len(items)}] {what}: {label(item)} ({time.perf_counter() - t0:.0f} s)")
        yield item


class ticker:
    """``with ticker("building ...", log):`` — while the body runs, a live elapsed-time
    line on a terminal, else a line every ``every`` seconds; then the total."""

    def __init__(self, what, log=print, every=30.0):
        self.what, self.log, self.every = what, log, every
        self._stop = threading.Event()

    def _run(self):
        t0 = time.perf_counter()
        tty = _tty()
        while not self._stop.wait(1.0 if tty else self.every):
            s = time.perf_counter() - t0
            if tty:
                sys.stderr.write(f"\r{self.what}: {s:.0f} s")
                sys.stderr.flush()
            else:
                self.log(f"{self.what}: still running after {s:.0f} s")
        if tty:
            sys.stderr.write("\r\033[K")

    def __enter__(self):
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False
