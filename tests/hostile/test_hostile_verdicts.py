"""The downloads journal may reuse downloads, never stale verdicts: verdicts that depend on the
class list or the crawl list are judged again on every run."""
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from omni import pipeline
from omni.config import load_config


def _world(tmp_path: Path) -> Path:
    from omni.demo.world import write_jpeg, write_video

    rng = np.random.default_rng(0)
    (tmp_path / "t").mkdir()
    for name in ("a0", "b0"):
        write_video(tmp_path / "t" / f"{name}.mp4", rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8), 8)
    (tmp_path / "t" / "train.csv").write_text("path,label\na0.mp4,a\nb0.mp4,b\n")
    (tmp_path / "crawl").mkdir()
    for i in range(2):
        write_jpeg(tmp_path / "crawl" / f"img{i}.jpg", rng.integers(0, 255, (40, 40, 3), dtype=np.uint8), 90)
    return tmp_path


def _run_ingest(tmp_path: Path, classes: list[str], rows: list[tuple[str, str]]):
    pd.DataFrame(rows, columns=["url", "query"]).to_csv(tmp_path / "crawl" / "images.csv", index=False)
    cfg = {"workdir": str(tmp_path / "work"), "classes": classes,
           "target": {"train": "t/train.csv", "val": "t/train.csv"},
           "sources": [{"name": "imgs", "kind": "image", "list": "crawl/images.csv"}],
           "ingest": {"leak_check": False}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    res = pipeline.run_stage(load_config(tmp_path / "c.yaml"), "ingest")
    items = pd.read_parquet(tmp_path / "work" / "ingest" / "imgs" / "items.parquet")
    return res, items.set_index("url")


def test_an_unknown_class_heals_when_the_class_list_is_fixed_and_an_edited_query_is_judged_again(tmp_path):
    w = _world(tmp_path)
    rows = [("img0.jpg", "a"), ("img1.jpg", "c")]
    _, items = _run_ingest(w, ["a", "b"], rows)
    img1 = str(w / "crawl" / "img1.jpg")
    assert items.loc[img1, "status"] == "failed" and items.loc[img1, "reason"].startswith("unknown query class")

    res, items = _run_ingest(w, ["a", "b", "c"], rows)  # the class list fixed
    assert (items.loc[img1, "status"], items.loc[img1, "label"]) == ("ok", 2)

    _, items = _run_ingest(w, ["a", "b", "c"], [("img0.jpg", "zzz"), ("img1.jpg", "c")])  # a query edited
    img0 = str(w / "crawl" / "img0.jpg")
    assert items.loc[img0, "status"] == "failed" and items.loc[img0, "label"] == -1
    assert items.loc[img0, "reason"].startswith("unknown query class")


def test_a_refusal_by_older_media_checks_is_judged_again(tmp_path):
    """A workdir's journal holds what an older omni refused (here: a film behind a cover-image
    track, once read as a truncated video); the next ingest judges that file again, while a
    download that failed is not fetched again for it."""
    import json
    import shutil

    from test_hostile_media import _cover_first_mkv

    from omni.fetching.ingest import _to_check
    from omni.fetching.journal import Journal

    w = _world(tmp_path)
    _cover_first_mkv(w / "crawl" / "film.mkv")
    shutil.copy(w / "t" / "a0.mp4", w / "crawl" / "plain.mp4")

    def ingest(rows):
        pd.DataFrame(rows, columns=["url", "query"]).to_csv(w / "crawl" / "videos.csv", index=False)
        cfg = {"workdir": str(w / "work"), "classes": ["a", "b"],
               "target": {"train": "t/train.csv", "val": "t/train.csv"},
               "sources": [{"name": "vids", "kind": "video", "list": "crawl/videos.csv"}],
               "ingest": {"leak_check": False}}
        (w / "c.yaml").write_text(yaml.safe_dump(cfg))
        pipeline.run_stage(load_config(w / "c.yaml"), "ingest")
        return pd.read_parquet(w / "work" / "ingest" / "vids" / "items.parquet").set_index("url")

    film = str(w / "crawl" / "film.mkv")
    items = ingest([("film.mkv", "a")])
    assert items.loc[film, "status"] == "ok" and items.loc[film, "width"] == 64

    [journal_path] = [p for p in (w / "work").rglob("journal.jsonl") if film in p.read_text()]
    recs = [json.loads(line) for line in journal_path.read_text().splitlines()]
    old = [{**{k: v for k, v in r.items() if k not in ("checks", "path", "width", "height")},
            "status": "failed", "reason": "truncated video: frames stop at 0.0s of 2.0s"}
           if r["url"] == film else r for r in recs]
    journal_path.write_text("".join(json.dumps(r) + "\n" for r in old))  # as an older omni left it

    items = ingest([("film.mkv", "a"), ("plain.mp4", "b")])  # an edited list re-runs ingest
    assert items.loc[film, "status"] == "ok" and items.loc[film, "reason"] == ""
    with Journal(journal_path) as journal:
        assert not _to_check(journal, film, "video")  # judged once, not on every run
        journal.add({"url": "https://example.invalid/x.mp4", "kind": "video", "status": "failed",
                     "reason": "http 404", "sha256": None})
        assert not _to_check(journal, "https://example.invalid/x.mp4", "video")


def test_a_web_image_grabbed_between_sampled_frames_of_a_val_clip_is_a_leak_also_after_a_list_move(tmp_path):
    """A val clip whose every frame differs (4 s at 10 fps), and a web image that is a re-encoded,
    cropped grab of its frame 1. Run 1 lists the clip as train only: nothing to leak. Run 2 moves it
    to val: its journal record (made as a train clip, no leak thumbnails) is checked again, and
    the grab is found although it falls between the frames 8 evenly spread thumbnails would see."""
    from PIL import Image

    from omni.demo.world import write_jpeg, write_video

    w = _world(tmp_path)
    rng = np.random.default_rng(1)
    blocks = rng.integers(0, 255, (40, 6, 8, 3), dtype=np.uint8)
    frames = np.stack([np.asarray(Image.fromarray(b).resize((64, 48), Image.NEAREST)) for b in blocks])
    write_video(w / "t" / "moving.mp4", frames, 10)
    write_jpeg(w / "crawl" / "grab.jpg", np.asarray(Image.fromarray(frames[1][2:-2, 3:-3]).resize((90, 66))), 80)
    pd.DataFrame([("grab.jpg", "a")], columns=["url", "query"]).to_csv(w / "crawl" / "images.csv", index=False)

    def ingest(train: str, val: str):
        (w / "t" / "train.csv").write_text(train)
        (w / "t" / "val.csv").write_text(val)
        cfg = {"workdir": str(w / "work"), "classes": ["a", "b"],
               "target": {"train": "t/train.csv", "val": "t/val.csv"},
               "sources": [{"name": "imgs", "kind": "image", "list": "crawl/images.csv"}]}
        (w / "c.yaml").write_text(yaml.safe_dump(cfg))
        pipeline.run_stage(load_config(w / "c.yaml"), "ingest")
        return pd.read_parquet(w / "work" / "ingest" / "imgs" / "items.parquet").set_index("url")

    grab = str(w / "crawl" / "grab.jpg")
    items = ingest("path,label\na0.mp4,a\nmoving.mp4,a\n", "path,label\nb0.mp4,b\n")
    assert items.loc[grab, "status"] == "ok"
    items = ingest("path,label\na0.mp4,a\n", "path,label\nb0.mp4,b\nmoving.mp4,a\n")
    assert items.loc[grab, "status"] == "leak", items.loc[grab, "reason"]
    assert items.loc[grab, "reason"].startswith("near-duplicate of val item")
