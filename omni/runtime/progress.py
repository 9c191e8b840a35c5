"""A command-line progress bar fed by the stages' ``progress(done, total)`` callback."""
from __future__ import annotations

import sys

_OPEN: set = set()  # bars not finished yet


def close_open_bars() -> None:
    """End every unfinished bar's line (before an error message, so it starts a line of its own)."""
    for bar in list(_OPEN):
        bar.close()
    _OPEN.clear()


class TextProgress:
    def __init__(self, stage: str):
        self.stage = stage
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=total, desc=self.stage, unit="it", file=sys.stderr, leave=True,
                            mininterval=0.5, dynamic_ncols=True)
            _OPEN.add(self.bar)
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh() if done >= total else self.bar.update(0)
        if done >= total:
            self.bar.close()
            _OPEN.discard(self.bar)
            self.bar = None
