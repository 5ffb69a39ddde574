"""The sampler's progress display: samples done / total, elapsed, ETA and s/design, on stderr.

On a terminal it redraws one line; elsewhere (logs, pipes) it prints a line at most every
`interval` seconds and a final one. PXDIFF_PROGRESS=0 silences it, PXDIFF_PROGRESS=1 forces
the terminal form, PXDIFF_PROGRESS_INTERVAL sets the seconds between lines off a terminal.

    bar = Progress(total=10, desc="pxdiff sampling")
    bar.update(samples_done=2, step=150, n_step=400, chunk=5)   # fractional progress in a chunk
    bar.close()
"""
import os
import sys
import time

__all__ = ["Progress", "format_time"]


def format_time(s):
    if s is None or s != s or s == float("inf"):
        return "?"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


class Progress:
    """Progress of one sampling run (one design, one seed)."""

    def __init__(self, total, desc="pxdiff sampling", stream=None, interval=None, enabled=None,
                 width=24):
        self.total = max(int(total), 0)
        self.desc = desc
        self.stream = stream if stream is not None else sys.stderr
        env = os.environ.get("PXDIFF_PROGRESS", "").strip().lower()
        if enabled is None:
            enabled = env not in ("0", "off", "false", "no")
        self.enabled = bool(enabled)
        try:
            tty = self.stream.isatty()
        except Exception:
            tty = False
        self.tty = tty or env in ("1", "on", "tty")
        if interval is None:
            try:
                interval = float(os.environ.get("PXDIFF_PROGRESS_INTERVAL", "60"))
            except ValueError:
                interval = 60.0
        self.interval = interval
        self.width = width
        self.t0 = time.monotonic()
        self.last_print = None
        self.done = 0
        self.frac = 0.0  # samples done, counting the finished part of the running chunk
        self.closed = False
        self.lines = []  # every line printed (tests, the self-test)

    # ----------------------------------------------------------------- state --
    @property
    def elapsed(self):
        return time.monotonic() - self.t0

    def s_per_design(self):
        return self.elapsed / self.frac if self.frac > 0 else None

    def eta(self):
        spd = self.s_per_design()
        return None if spd is None else max(self.total - self.frac, 0.0) * spd

    def update(self, samples_done, step=0, n_step=0, chunk=0):
        """samples_done: samples finished; step/n_step: progress of the running chunk of
        `chunk` samples (0 when between chunks)."""
        self.done = min(int(samples_done), self.total)
        frac = float(self.done)
        if n_step > 0 and chunk > 0 and step < n_step:
            frac += chunk * step / n_step
        self.frac = min(frac, float(self.total))
        self._show(final=False)

    def close(self):
        if self.closed:
            return
        self.closed = True
        self._show(final=True)

    # ------------------------------------------------------------------ text --
    def line(self):
        total = self.total
        pct = 100.0 * self.frac / total if total else 100.0
        n_fill = int(self.width * self.frac / total) if total else self.width
        bar = "#" * n_fill + " " * (self.width - n_fill)
        spd = self.s_per_design()
        rate = f"{spd:.2f} s/design" if spd is not None else "? s/design"
        return (f"{self.desc}: {pct:3.0f}%|{bar}| {self.done}/{total} "
                f"[{format_time(self.elapsed)}<{format_time(self.eta())}, {rate}]")

    def _show(self, final):
        if not self.enabled:
            return
        now = time.monotonic()
        text = self.line()
        if self.tty:
            if not final and self.last_print is not None and now - self.last_print < 0.1:
                return
            self.stream.write("\r" + text + ("\n" if final else ""))
        else:
            due = self.last_print is None or now - self.last_print >= self.interval
            if not (final or due):
                return
            if self.last_print is None and not final and self.frac == 0:
                return  # nothing to say yet
            self.stream.write(text + "\n")
        self.lines.append(text)
        self.last_print = now
        try:
            self.stream.flush()
        except Exception:
            pass
