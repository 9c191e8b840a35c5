"""The ``omni`` command: run the pipeline, one stage, or the built-in demo."""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from pathlib import Path

from omni.pipeline import HELP as STAGE_HELP

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="omni", description="OmniSource: turn noisy web images and videos into "
                                "better video-recognition models.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sp):
        sp.add_argument("config", help="pipeline config (YAML); see README 'Inputs'")
        sp.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.model.epochs=5 (repeatable)")
        sp.add_argument("--no-prefect", action="store_true",
                        help="call the stages directly instead of through Prefect flows")

    demo = sub.add_parser("demo", help="generate the demo world, serve it on 127.0.0.1, run the pipeline "
                          "and print what the web data was worth")
    demo.add_argument("--workdir", default="omni-demo", help="where the world and all outputs go "
                      "(default: ./omni-demo)")
    demo.add_argument("--tiny", action="store_true", help="a very small world and short training (for tests)")
    demo.add_argument("--seed", type=int, default=0, help="world generator seed (default 0)")
    demo.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a demo config value (repeatable)")
    demo.add_argument("--no-prefect", action="store_true", help="call the stages directly instead of through Prefect")
    demo.add_argument("--generate-only", action="store_true",
                      help="only write the world and a config over its local files (WORKDIR/config-local.yaml)")
    run = sub.add_parser("run", help="run every stage in order (cached stages are skipped)")
    common(run)
    for name, text in STAGE_HELP.items():
        common(stage := sub.add_parser(name, help=f"run one stage: {text}"))
        if name == "ingest":
            stage.add_argument("--retry-failed", nargs="*", default=None, metavar="REASON",
                               help="first fetch again only the rows whose download failed for a transient "
                               "reason (timeout, 5xx, 429, connection, truncated, slow, dns; default: all of "
                               "them), then ingest; good and permanently bad rows are left as they are")
    abl = sub.add_parser("ablate", help="the paper's ablation table from the cached stages: target only, each "
                         "source, all, unfiltered, each training practice off")
    common(abl)
    abl.add_argument("--seeds", type=int, default=1, help="repeat each variant with this many seeds (default 1)")
    unit = sub.add_parser("_unit")  # internal: one unit's body on the ranks of a torchrun job (omni/runtime/launch.py)
    unit.add_argument("config")
    unit.add_argument("unit")
    rep = sub.add_parser("report", help="print the summary tables of a finished run")
    rep.add_argument("config", help="pipeline config (YAML)")
    rep.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config value (repeatable)")
    return p


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in ("httpx", "httpcore", "urllib3", "prefect.server", "uvicorn", "alembic", "docket"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _run_stages(config_path: str, overrides: list[str], stage: str | None, no_prefect: bool,
                retry: list[str] | None = None):
    from omni import pipeline
    from omni.config import load_config

    cfg = load_config(config_path, overrides)  # a bad config fails here, before any server starts
    pipeline.check_config(cfg)
    from omni.runtime import ranks

    if ranks.launched_by_torchrun():  # every rank calls the stages itself; rank 0 records them
        _run_ranked(cfg, stage)
        return
    if no_prefect:
        from omni.runtime.progress import TextProgress

        if retry is not None:  # before the keys: a repaired source has a new one
            for counts in pipeline.retry_failed(cfg, retry):
                print(counts.line(), flush=True)
        for r in pipeline.iter_pipeline(cfg, [stage] if stage else None, progress_for=TextProgress):
            print(f"{r.stage}: {'cache hit' if r.cached else 'done'}", flush=True)
        return
    if stage:
        from flows.stages import STAGE_FLOWS

        extra = {"retry_failed": True, "retry_reasons": retry} if retry is not None else {}
        STAGE_FLOWS[stage](config_path, overrides, **extra)
    else:
        from flows.pipeline import omnisource

        omnisource(config_path, overrides)


def _ablate(args) -> int:
    from omni.config import load_config

    if args.seeds < 1:
        raise SystemExit("omni ablate: --seeds must be at least 1")
    cfg = load_config(args.config, args.overrides)
    from omni import pipeline

    pipeline.check_config(cfg)
    if args.no_prefect:
        from omni.pipeline.ablate import run_ablation
        from omni.runtime.progress import TextProgress

        keys = pipeline.Keys(cfg)
        for _ in pipeline.iter_pipeline(cfg, pipeline.STAGES_BEFORE_TRAINING, keys, progress_for=TextProgress):
            pass
        run_ablation(cfg, keys, args.seeds, progress_for=TextProgress)
    else:
        from flows.ablate import ablate_flow

        ablate_flow(args.config, args.overrides, args.seeds)
    out = cfg.workdir / "ablation"
    print((out / "ablation.md").read_text())
    print(f"table: {out / 'ablation.csv'}; chart: {out / 'ablation.png'}")
    return 0


def _run_ranked(cfg, stage: str | None) -> None:
    from omni import pipeline
    from omni.runtime import ranks
    from omni.runtime.progress import TextProgress

    me = ranks.init_from_env(cfg.train.device)
    logging.getLogger().setLevel(logging.INFO if me.main else logging.WARNING)
    try:
        for r in pipeline.iter_pipeline(cfg, [stage] if stage else None,
                                        progress_for=TextProgress if me.main else None):
            if me.main:
                print(f"{r.stage}: {'cache hit' if r.cached else 'done'} ({me.world_size} ranks)", flush=True)
    finally:
        ranks.leave()


def _demo(args) -> int:
    import yaml

    from omni.config import load_config
    from omni.demo.world import WorldSpec, demo_config, generate_world, ground_truth_report, served_lists, tiny_spec
    from omni.reporting.report import pipeline_report, report_table
    from omni.demo.serve import StaticServer

    import pandas as pd

    workdir = Path(args.workdir).resolve()
    started = time.time()
    world = generate_world(workdir / "world", tiny_spec(args.seed) if args.tiny else WorldSpec(seed=args.seed))
    local_cfg = workdir / "config-local.yaml"
    local_cfg.write_text(yaml.safe_dump(demo_config(world, workdir / "run-local", world / "crawl", tiny=args.tiny),
                                        sort_keys=False))
    if args.generate_only:
        print(f"demo world: {world}\nconfig over its local files: {local_cfg}")
        return 0
    port = 20000 + int(hashlib.sha256(str(workdir).encode()).hexdigest(), 16) % 20000
    with StaticServer(world, port) as server:
        served_lists(world, server.url, workdir / "crawl")
        cfg_dict = demo_config(world, workdir / "run", workdir / "crawl", tiny=args.tiny)
        cfg_path = workdir / "config.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg_dict, sort_keys=False))
        print(f"demo world: {world}\nserved at {server.url}; config: {cfg_path}", flush=True)
        _run_stages(str(cfg_path), args.overrides, None, args.no_prefect)
    cfg = load_config(cfg_path, args.overrides)
    rep = pipeline_report(cfg)
    web = pd.read_parquet(cfg.workdir / "manifest" / "web_items.parquet")
    truth = ground_truth_report(world, web)
    rep["ground_truth"] = truth
    print("\n" + report_table(rep, truth))
    print(f"val leaks planted {truth['leaks_planted']}, found {truth['leaks_found']}; "
          f"false leaks among clean items: {truth['false_leaks']}")
    refined = cfg.workdir / "train" / "omnisource" / "web_items.parquet"
    if cfg.filter.refine and refined.exists():  # the second round's selection, by the first-round student
        rep["ground_truth_refined"] = ground_truth_report(world, pd.read_parquet(refined))
        print("second round's selection (precision / recall of kept): " + ", ".join(
            f"{src} {100 * r['precision_kept']:.1f}% / {100 * r['recall_kept']:.1f}%"
            + (f" ({r['relabeled']} relabeled, {100 * r['relabel_precision']:.0f}% right)" if r["relabeled"] else "")
            for src, r in rep["ground_truth_refined"]["sources"].items() if r["precision_kept"] is not None))
    print(f"manifest: {cfg.workdir / 'manifest' / 'web_items.parquet'}; metrics: {cfg.workdir / 'eval'}")
    print(f"demo finished in {time.time() - started:.0f}s")
    (workdir / "report.json").write_text(json.dumps(rep, indent=2, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    from flows import env

    env.apply()
    args = _parser().parse_args(argv)
    _setup_logging()
    from omni.runtime.cancel import Cancelled, raise_on_signals

    if argv is None:  # the real command line (tests call main() with arguments and keep their handlers)
        raise_on_signals()
    from omni.config import ConfigError
    from omni.fetching.lists import ListError
    from omni.runtime.fanout import FanoutError
    from omni.runtime.launch import LaunchError
    from omni.pipeline import StageError
    from omni.runtime.diskspace import NoSpace

    try:
        if args.command == "demo":
            return _demo(args)
        if args.command == "ablate":
            return _ablate(args)
        if args.command == "_unit":
            from omni import pipeline
            from omni.runtime import ranks
            from omni.config import load_config

            cfg = load_config(args.config)
            ranks.init_from_env(cfg.train.device)
            try:
                pipeline.run_body_on_ranks(cfg, args.unit)
            finally:
                ranks.leave()
            return 0
        if args.command == "report":
            from omni.config import load_config
            from omni.reporting.report import pipeline_report, report_table

            print(report_table(pipeline_report(load_config(args.config, args.overrides))))
            return 0
        stage = None if args.command == "run" else args.command
        _run_stages(args.config, args.overrides, stage, args.no_prefect, getattr(args, "retry_failed", None))
        if stage is None:
            from omni.config import load_config
            from omni.reporting.report import pipeline_report, report_table

            print("\n" + report_table(pipeline_report(load_config(args.config, args.overrides))))
        return 0
    except (ConfigError, ListError, StageError, FanoutError, LaunchError, NoSpace) as exc:
        from omni.runtime.progress import close_open_bars

        close_open_bars()
        print(f"omni: error: {exc}", file=sys.stderr)
        return 2
    except Cancelled as exc:
        print(f"omni: {exc}: finished work and checkpoints are kept; run the same command again to resume",
              file=sys.stderr)
        return 143


if __name__ == "__main__":
    sys.exit(main())
