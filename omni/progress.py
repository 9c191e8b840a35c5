"""A command-line progress bar fed by the stages' ``progress(done, total)`` callback."""
from __future__ import annotations

import sys


class TextProgress:
    def __init__(self, stage: str):
        self.stage = stage
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=total, desc=self.stage, unit="it", file=sys.stderr, leave=True,
                            mininterval=0.5, dynamic_ncols=True)
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh() if done >= total else self.bar.update(0)
        if done >= total:
            self.bar.close()
            self.bar = None
