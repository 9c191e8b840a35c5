"""Run one unit's body on several GPUs of this machine: ``torchrun`` as a child process.

Used when ``train.nproc_per_node`` > 1 and omni was not itself started by torchrun (the
pipeline's teacher, score and train stages on a Prefect GPU worker). The parent keeps what it
always does (the workdir lock, the unit's folder, its done marker); the ranks only run the
body (``python -m omni _unit CONFIG UNIT``) and rank 0 leaves the result in
``_ranked_result.json``. The children's log lines are passed on to this process's log, a stop
request reaches them as SIGTERM (rank 0 writes its checkpoint), and a failure is one error.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import yaml

from .cancel import Cancelled

log = logging.getLogger(__name__)

RESULT = "_ranked_result.json"


class LaunchError(RuntimeError):
    """The ranks failed."""


def run_ranked_body(config: dict, unit: str, unit_dir: Path, nproc: int,
                    should_stop: Callable[[], bool] | None = None) -> dict:
    """Run ``unit``'s body on ``nproc`` ranks; returns rank 0's result."""
    unit_dir = Path(unit_dir)
    cfg_file = unit_dir / "_torchrun-config.yaml"
    cfg_file.write_text(yaml.safe_dump(config, sort_keys=False))
    (unit_dir / RESULT).unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
           "-m", "omni", "_unit", str(cfg_file), unit]
    log.info("%s: %d ranks: %s", unit, nproc, " ".join(cmd[1:]))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    tail: list[str] = []

    def relay() -> None:
        for line in proc.stdout:
            line = line.rstrip()
            tail[:] = (tail + [line])[-40:]
            if line and "it/s]" not in line:
                log.info("%s | %s", unit, line)

    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    try:
        while proc.poll() is None:
            if should_stop and should_stop():
                raise Cancelled(f"{unit}: stop requested")
            time.sleep(0.5)
    except BaseException:
        _stop(proc)
        raise
    reader.join(timeout=10)
    if proc.returncode != 0:
        raise LaunchError(f"{unit}: torchrun with {nproc} ranks failed (exit {proc.returncode}); its last lines:\n"
                          + "\n".join(tail[-15:]))
    return json.loads((unit_dir / RESULT).read_text())


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the launcher and its ranks (each rank checkpoints and exits), SIGKILL after 60 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
