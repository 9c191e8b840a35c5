"""A throw-away Prefect deployment setup on 127.0.0.1, as the README does it by hand.

``LocalPrefect`` starts ``prefect server start`` with a temporary home, and on request creates
the work pools, runs ``prefect deploy --all`` and starts process workers; everything it starts
it stops on exit. Used by tests/test_deployment.py and scripts/screenshots.py.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(p: subprocess.Popen, sig=signal.SIGINT, timeout=30) -> None:
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def wait_for(cond, timeout: float, what: str, every: float = 0.5) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def run_id(cli_output: str) -> str:
    """The flow run id printed by ``prefect deployment run``."""
    m = re.search(r"UUID: ([0-9a-f-]{36})", cli_output)
    if not m:
        raise ValueError(f"no flow run id in: {cli_output[-1000:]}")
    return m.group(1)


class LocalPrefect:
    def __init__(self, home: Path | None = None, port: int | None = None):
        self.home = Path(home or tempfile.mkdtemp(prefix="omni-prefect-home-"))
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.ui = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "PREFECT_HOME": str(self.home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                    "PREFECT_LOGGING_EXTRA_LOGGERS": "omni", "PREFECT_API_URL": self.url, "OMNI_HOME": str(ROOT)}
        self.procs: list[tuple[subprocess.Popen, object, int]] = []
        self.server: subprocess.Popen | None = None

    # -- processes
    def _start(self, name: str, args: list[str], sig=signal.SIGINT) -> subprocess.Popen:
        log = open(self.home / f"{name}.log", "a")  # a restarted server adds to its log
        env = dict(self.env)
        if name == "server":
            env.pop("PREFECT_API_URL")
            env["PREFECT_UI_API_URL"] = self.url  # else the UI calls port 4200's API, whatever --port says
        p = subprocess.Popen([str(BIN / "prefect"), *args], env=env, cwd=ROOT if name != "server" else self.home,
                             stdout=log, stderr=subprocess.STDOUT)
        self.procs.append((p, log, sig))
        return p

    def log(self, name: str) -> str:
        try:
            return (self.home / f"{name}.log").read_text()
        except OSError:
            return ""

    def start_server(self) -> subprocess.Popen:
        """``prefect server start`` on this home and port (again, after ``stop_server``: the same
        database); returns once its API answers."""
        p = self._start("server", ["server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                        sig=signal.SIGTERM)
        self.server = p

        def up() -> bool:
            if p.poll() is not None:
                raise RuntimeError("prefect server exited:\n" + self.log("server")[-2000:])
            try:
                self.api("/health")
                return True
            except OSError:
                return False

        wait_for(up, 180, "the Prefect server")
        return p

    def stop_server(self) -> None:
        """Stop the server (SIGTERM) and wait until it has exited; workers and runs are left alone."""
        for entry in [e for e in self.procs if e[0] is self.server]:
            stop(entry[0], entry[2])
            entry[1].close()
            self.procs.remove(entry)

    def __enter__(self) -> "LocalPrefect":
        try:
            self.start_server()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for p, log, sig in reversed(self.procs):  # workers first (SIGINT: a worker ignores SIGTERM), then the server
            stop(p, sig)
            log.close()
        self.procs.clear()

    # -- the API and the CLI
    def api(self, path: str, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"},
                                     method="POST" if body is not None else "GET")
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or "null")

    def cli(self, *args, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "prefect"), *args], env=self.env, cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout)

    def deploy_all(self, pools=("omni-cpu", "omni-gpu")) -> None:
        """The README's steps: create every pool, then ``prefect deploy --all``."""
        for pool in pools:
            p = self.cli("work-pool", "create", pool, "--type", "process")
            if p.returncode:
                raise RuntimeError(p.stdout + p.stderr)
        p = self.cli("--no-prompt", "deploy", "--all")
        if p.returncode:
            raise RuntimeError((p.stdout + p.stderr)[-3000:])

    def start_worker(self, pool: str = "omni-cpu", name: str = "worker") -> subprocess.Popen:
        return self._start(name, ["worker", "start", "--pool", pool])

    def flow_runs(self) -> list[dict]:
        return self.api("/flow_runs/filter", {"limit": 200})

    def flow_names(self) -> dict[str, str]:
        return {f["id"]: f["name"] for f in self.api("/flows/filter", {})}

    def logs(self, flow_run_ids: list[str] | None = None) -> list[dict]:
        ids = flow_run_ids if flow_run_ids is not None else [r["id"] for r in self.flow_runs()]
        out, offset = [], 0
        while True:
            page = self.api("/logs/filter", {"limit": 200, "offset": offset,
                                             "logs": {"flow_run_id": {"any_": ids}}})
            out += page
            if len(page) < 200:
                return out
            offset += 200

    def artifacts(self) -> dict[str, dict]:
        """The latest artifact of every key."""
        return {a["key"]: a for a in self.api("/artifacts/latest/filter", {"limit": 200}) if a.get("key")}
