"""What a Prefect user sees of an omni run, in a real browser.

Starts a Prefect server on 127.0.0.1 (temporary home), deploys omni as the README does, runs
the pipeline deployment on the tiny demo world through a process worker, and saves headless
Chromium screenshots: the Artifacts page while training runs (keyed progress), the run graph,
a stage's artifacts (its counts table and pictures), the Artifacts page at the end, and one
picture artifact. Everything it starts, it stops.

    .venv/bin/python scripts/screenshots.py --out docs/screenshots     # needs Debian's `chromium`
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_prefect import ROOT, LocalPrefect, run_id, wait_for  # noqa: E402


class Browser:
    """Headless Chromium (Debian's ``chromium``) driven by Playwright: open a page, click a tab, save it."""

    def __init__(self, executable: str):
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self._browser = self._pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        self.page = self._browser.new_page(viewport={"width": 1600, "height": 1000})

    def shoot(self, url: str, out: Path, click: str | None = None, full_page: bool = True) -> Path:
        self.page.goto(url, wait_until="networkidle")
        if click:
            self.page.get_by_text(click, exact=True).first.click()
            self.page.wait_for_load_state("networkidle")
        self.page.wait_for_timeout(2500)  # charts and images settle
        self.page.screenshot(path=str(out), full_page=full_page)
        self.page.goto("about:blank")  # a live run graph keeps a core busy: leave it to the pipeline
        print(f"  {out}  <- {url}" + (f" [{click}]" if click else ""), flush=True)
        return out

    def close(self) -> None:
        self._browser.close()
        self._pw.stop()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    ap.add_argument("--steps", type=int, default=3000, help="student steps (long enough to catch training mid-run)")
    args = ap.parse_args(argv)
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        import playwright  # noqa: F401
    except ImportError:
        exe = None
    if not exe:
        print("needs Debian's chromium and Playwright: apt-get install -y chromium; "
              ".venv/bin/pip install playwright", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="omni-screens-"))
    subprocess.run([sys.executable, "-m", "omni", "demo", "--tiny", "--generate-only", "--workdir", str(work / "demo")],
                   cwd=ROOT, check=True, capture_output=True)
    cfg = yaml.safe_load((work / "demo" / "config-local.yaml").read_text())
    cfg_path = work / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    browser = Browser(exe)
    with LocalPrefect(work / "prefect-home") as prefect:
        prefect.deploy_all()
        prefect.start_worker("omni-cpu")
        params = json.dumps({"config_path": str(cfg_path), "settings": {"student_steps": args.steps}})
        rid = run_id(prefect.cli("deployment", "run", "omnisource/omnisource-cpu", "--params", params).stdout)
        print(f"pipeline run {rid}; UI at {prefect.ui}", flush=True)

        def training() -> bool:
            a = prefect.artifacts().get("progress-train-omnisource")
            return a is not None and 2 < float(a["data"]) < 95

        wait_for(training, 900, "the student's training", every=1.0)
        browser.shoot(f"{prefect.ui}/artifacts", args.out / "1-artifacts-while-training.png", full_page=False)
        progress = prefect.artifacts()["progress-train-omnisource"]["latest_id"]
        browser.shoot(f"{prefect.ui}/artifacts/artifact/{progress}",
                      args.out / "1b-progress-artifact-while-training.png", full_page=False)
        browser.shoot(f"{prefect.ui}/runs/flow-run/{rid}", args.out / "2-run-graph-while-training.png",
                      full_page=False)
        wait_for(lambda: prefect.api(f"/flow_runs/{rid}")["state_type"] in ("COMPLETED", "FAILED", "CRASHED"), 900,
                 "the run to finish", every=2.0)
        state = prefect.api(f"/flow_runs/{rid}")["state_type"]
        print(f"run finished: {state}", flush=True)
        browser.shoot(f"{prefect.ui}/runs/flow-run/{rid}", args.out / "3-run-graph-done.png", full_page=False)
        names = prefect.flow_names()
        subs = {names[r["flow_id"]]: r["id"] for r in prefect.flow_runs() if r.get("parent_task_run_id")}
        browser.shoot(f"{prefect.ui}/runs/flow-run/{subs['filter']}", args.out / "4-filter-stage-artifacts.png",
                      click="Artifacts")
        browser.shoot(f"{prefect.ui}/runs/flow-run/{rid}", args.out / "5-pipeline-report.png", click="Artifacts")
        art = prefect.artifacts()
        for i, key in enumerate(("omnisource-report", "ingest-counts", "evaluate-omnisource-confusion-matrix",
                                 "train-omnisource-training-curve", "filter-kept-vs-rejected-web-videos"), 6):
            browser.shoot(f"{prefect.ui}/artifacts/artifact/{art[key]['latest_id']}", args.out / f"{i}-{key}.png")
    browser.close()
    return 0 if state == "COMPLETED" else 1


if __name__ == "__main__":
    sys.exit(main())
