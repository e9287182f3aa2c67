"""Evaluating audio similarity on the real-audio sets, through the served API (issue 13).

Commands (also ``mugle real-audio ...``)::

    python -m evaluation.realaudio build    --what all --cache /work/cache/realaudio --debs /work/cache/debs
    python -m evaluation.realaudio train    --set /work/cache/realaudio/recordings [mugle train flags]
    python -m evaluation.realaudio evaluate --set /work/cache/realaudio/recordings --set /work/cache/realaudio/melodies

``train`` runs the project's training (``mugle train``) on a set with a fixed seed into
``<set>/artifacts``. ``evaluate`` measures, per set:

* the learned models through the served API, on the app built from the artifacts (FastAPI's
  ``TestClient``, the same routes and engine as ``mugle serve``): for ``recordings`` each query WAV is
  uploaded to ``POST /recommend/audio?method=...&k=100``; for ``melodies`` every performance asks
  ``GET /recommend/{id}?method=...&k=100`` (a demo dataset folder, with its ``demo_truth.json``, is
  scored the same way on its planted version groups, so the demo's figures sit beside the real ones);
* the fixed baselines of :mod:`evaluation.retrieval` on the same catalog mels, cosine over the whole
  catalog, in the same run;

and writes a table per set with P@1, hit@10, MRR (within the top 100) and, for recordings, the share of
the top 10 from the query's game, each with a 95 % bootstrap interval, to the console, to a JSON file
and to a Markdown report (default ``docs/eval/real_audio.md`` and ``.json``).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evaluation import retrieval
from mugle_core.melfile import load_mel, mel_path
from training.realaudio import layout

logger = logging.getLogger(__name__)

ARTIFACTS_DIR = "artifacts"
DEMO_TRUTH = "demo_truth.json"
DEFAULT_REPORT = Path("docs/eval/real_audio.md")
API_METHODS = ("tcae", "cel")
SEED = 0


class EvaluationSetError(ValueError):
    """A set folder is missing, incomplete or inconsistent; the message names the file."""


@dataclass
class Query:
    """One query: what is sent (a WAV path or a catalog id), its mel, and what counts as relevant."""

    name: str
    relevant: set[int]
    mel: np.ndarray
    wav: Path | None = None  # recordings: the clip uploaded to POST /recommend/audio
    song_id: int | None = None  # melodies: the catalog song asked for with GET /recommend/{id}
    group: set[int] | None = None
    facts: dict[str, Any] = field(default_factory=dict)  # melodies: how the performance was played


@dataclass
class EvalSet:
    """A built set: its catalog mels and its queries."""

    name: str
    folder: Path
    catalog_ids: list[int]
    catalog_mels: list[np.ndarray]
    queries: list[Query]
    info: dict[str, Any] = field(default_factory=dict)
    task: str = ""


def _read_mel(path: Path) -> np.ndarray:
    mel, status = load_mel(path)
    if mel is None:
        raise EvaluationSetError(f"{path}: mel is {status}")
    return mel.astype(np.float32)


def load_set(folder: Path) -> EvalSet:
    """Read a set written by :mod:`training.realaudio` (``READY`` must be there)."""
    folder = Path(folder)
    ready = layout.read_ready(folder)
    if ready is None and (folder / DEMO_TRUTH).is_file():
        return load_demo(folder)
    if ready is None:
        raise EvaluationSetError(f"{folder}: no READY marker; build the set first (mugle real-audio build)")
    try:
        truth = json.loads((folder / layout.TRUTH_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EvaluationSetError(f"{folder / layout.TRUTH_FILE}: unreadable ({exc})") from exc
    name = truth.get("set")
    queries: list[Query] = []
    catalog_ids: list[int]
    if name == "recordings":
        tracks = truth["tracks"]
        catalog_ids = [int(t["song_id"]) for t in tracks]
        by_game = {g: set(map(int, ids)) for g, ids in truth["groups"]["game"].items()}
        for t in tracks:
            for q in t["queries"]:
                queries.append(Query(q["wav"], {int(t["song_id"])}, _read_mel(folder / q["mel"]),
                                     wav=folder / q["wav"], group=by_game[t["game"]]))
    elif name in ("melodies", "chorales"):
        catalog_ids = [int(s) for tune in truth["tunes"] for s in tune["song_ids"]]
        for tune in truth["tunes"]:
            ids = [int(s) for s in tune["song_ids"]]
            played = {int(p["song_id"]): p for p in tune.get("performances", [])}
            for s in ids:
                queries.append(Query(f"song {s}", set(ids) - {s}, np.empty((0, 0)), song_id=s,
                                     facts=played.get(s, {})))
    else:
        raise EvaluationSetError(f"{folder / layout.TRUTH_FILE}: unknown set {name!r}")
    catalog_mels = [_read_mel(mel_path(folder, s)) for s in catalog_ids]
    if name in ("melodies", "chorales"):
        position = {s: i for i, s in enumerate(catalog_ids)}
        for q in queries:
            q.mel = catalog_mels[position[int(q.song_id or 0)]]
    keys = ("songs", "queries", "tunes", "playlists", "per_game", "per_collection")
    info: dict[str, Any] = {k: ready[k] for k in keys if k in ready}
    return EvalSet(name, folder, catalog_ids, catalog_mels, queries, info, str(truth.get("task", "")))


def load_demo(folder: Path) -> EvalSet:
    """The demo catalog's version task, scored like ``melodies``: the same numbers side by side.

    Queries are the songs of the planted version groups (``demo_truth.json``); the catalog for the
    baselines is every song with a readable mel.
    """
    truth = json.loads((folder / DEMO_TRUTH).read_text(encoding="utf-8"))
    groups = [[int(s) for s in g] for g in truth.get("version_groups", []) if len(g) >= 2]
    if not groups:
        raise EvaluationSetError(f"{folder / DEMO_TRUTH}: no version_groups to evaluate")
    meta = json.loads((folder / "song_meta.json").read_text(encoding="utf-8"))
    catalog_ids: list[int] = []
    catalog_mels: list[np.ndarray] = []
    for song in meta:
        mel, _ = load_mel(mel_path(folder, int(song["id"])))
        if mel is not None:
            catalog_ids.append(int(song["id"]))
            catalog_mels.append(mel.astype(np.float32))
    position = {s: i for i, s in enumerate(catalog_ids)}
    # Only songs with a mel can be found by audio: the others are neither queries nor answers.
    queries = [Query(f"song {s}", {t for t in g if t != s and t in position}, catalog_mels[position[s]], song_id=s)
               for g in groups for s in g if s in position and any(t != s and t in position for t in g)]
    return EvalSet("demo versions", folder, catalog_ids, catalog_mels, queries, {"groups": len(groups)},
                   "from one song of a planted version group, find another version of the same melody")


# -- baselines ---------------------------------------------------------------------------------------------


def baseline_rankings(data: EvalSet, seed: int = SEED) -> dict[str, list[list[int]]]:
    """Ranked lists of every baseline for every query (the query's own song left out)."""
    exclude = [q.song_id for q in data.queries]
    out = {"random": retrieval.random_rankings(len(data.queries), data.catalog_ids, exclude, seed)}
    for name in retrieval.BASELINES:
        if name == "random":
            continue
        cat, qry = retrieval.baseline_vectors(name, data.catalog_mels, [q.mel for q in data.queries])
        out[name] = retrieval.cosine_rankings(qry, cat, data.catalog_ids, exclude)
    return out


# -- the served API --------------------------------------------------------------------------------------


def _canonical_map(version_dir: Path) -> Callable[[int], int | None]:
    """Any song id -> its canonical id in the version's catalog, or None when the catalog left it out."""
    from mugle_core.artifacts import CATALOG
    from mugle_core.catalog import Catalog

    catalog = Catalog.load(version_dir / CATALOG)

    def canon(song_id: int) -> int | None:
        c = catalog.canonical(int(song_id))
        return None if c is None or catalog.row(c) is None else int(c)

    return canon


def restrict_to_served(data: EvalSet, canon: Callable[[int], int | None]) -> int:
    """Keep only what the service can answer: catalog songs it serves, queries on them, answers among them.

    A dataset's catalog filters (an instrumental title, "Various Artists") leave songs out of the
    served catalog; asking for them is a 404, and no method can return them. Returns how many catalog
    songs were left out. Relevant and group sets become canonical ids.
    """
    keep = [i for i, s in enumerate(data.catalog_ids) if canon(s) is not None]
    dropped = len(data.catalog_ids) - len(keep)
    data.catalog_ids = [data.catalog_ids[i] for i in keep]
    data.catalog_mels = [data.catalog_mels[i] for i in keep]
    queries = []
    for q in data.queries:
        if q.song_id is not None and canon(q.song_id) is None:
            continue
        q.relevant = {c for c in (canon(s) for s in q.relevant) if c is not None}
        if q.group is not None:
            q.group = {c for c in (canon(s) for s in q.group) if c is not None}
        if q.relevant:
            queries.append(q)
    data.queries = queries
    return dropped


def _upload(q: Query, upload: str) -> tuple[str, bytes, str]:
    """The multipart file part of a recordings query: the WAV, or (faster) its precomputed mel as .npy."""
    if upload == "mel":
        buf = io.BytesIO()
        np.save(buf, q.mel.astype(np.float32), allow_pickle=False)
        return (Path(q.name).with_suffix(".npy").name, buf.getvalue(), "application/octet-stream")
    assert q.wav is not None
    return (q.wav.name, q.wav.read_bytes(), "audio/wav")


def api_rankings(data: EvalSet, artifacts: Path, methods: Sequence[str] = API_METHODS, depth: int = retrieval.DEPTH,
                 progress: bool = True, upload: str = "wav",
                 ) -> tuple[dict[str, list[list[int]]], dict[str, Any], Callable[[int], int | None]]:
    """Ranked lists from the app built on ``artifacts``: uploads (recordings) or catalog ids (melodies).

    ``upload`` is ``wav`` (the clip, decoded by the service: the real path) or ``mel`` (the query's mel
    as a ``.npy``, which the service takes as is: the same mel, without the decoding time).

    Returns the lists per method, facts about the served version, and the map from any song id to its
    canonical id in that version (merged duplicates answer as one song). A method the version cannot
    serve (503: no CEL model, no torch) is reported and skipped; any other non-200 answer stops the run.
    """
    from fastapi.testclient import TestClient
    from tqdm import tqdm

    from app.main import create_app, version_dir_of
    from app.settings import Settings

    version_dir = version_dir_of(Path(artifacts))
    manifest = json.loads((version_dir / "manifest.json").read_text(encoding="utf-8"))
    canon = _canonical_map(version_dir)
    out: dict[str, list[list[int]]] = {}
    served: dict[str, Any] = {"version": version_dir.name, "skipped": {}}
    served["left_out_songs"] = restrict_to_served(data, canon)
    # WARNING: one access-log line per query would bury the table.
    with TestClient(create_app(Settings(artifacts=Path(artifacts), log_level="WARNING"))) as client:
        health = client.get("/health").json()
        served["songs"] = health.get("songs")
        served["models"] = health.get("models")
        for method in methods:
            lists: list[list[int]] = []
            started = time.perf_counter()
            for q in tqdm(data.queries, desc=f"{data.name} {method} via API", disable=not progress):
                if q.wav is not None:
                    r = client.post("/recommend/audio", params={"method": method, "k": depth},
                                    files={"file": _upload(q, upload)})
                else:
                    r = client.get(f"/recommend/{q.song_id}", params={"method": method, "k": depth})
                if r.status_code == 503:
                    served["skipped"][method] = f"{r.status_code}: {r.json().get('detail')}"
                    break
                if r.status_code != 200:
                    raise RuntimeError(f"{method} {q.name}: HTTP {r.status_code}: {r.text[:300]}")
                lists.append([int(x["song_id"]) for x in r.json()["recommendations"]])
            else:
                out[method] = lists
                served.setdefault("seconds", {})[method] = round(time.perf_counter() - started, 1)
    served["merged_songs"] = sum(1 for s in data.catalog_ids if canon(s) != s)
    served["train_seconds"] = manifest.get("timings", {})
    served["train_params"] = {k: manifest.get("params", {}).get(k) for k in ("seed", "tcae", "cel") if k in
                              manifest.get("params", {})}
    return out, served, canon


def canonical_lists(lists: Sequence[Sequence[int]], queries: Sequence[Query], canon: Callable[[int], int | None]
                    ) -> list[list[int]]:
    """Ranked lists in canonical ids as the API answers them: duplicates once, the query's own song left out."""
    out = []
    for ranked, q in zip(lists, queries, strict=True):
        own = canon(q.song_id) if q.song_id is not None else None
        seen: set[int] = set()
        row = []
        for s in ranked:
            c = canon(s)
            if c is not None and c != own and c not in seen:
                seen.add(c)
                row.append(c)
        out.append(row)
    return out


# -- evaluation and report -----------------------------------------------------------------------------


def pair_factors(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, str]:
    """How two performances of one tune differ: accompaniment, tempo ratio, key distance."""
    acc = int(bool(a["accompaniment"])) + int(bool(b["accompaniment"]))
    ratio = max(a["tempo"], b["tempo"]) / min(a["tempo"], b["tempo"])
    keys = abs(int(a["transpose"]) - int(b["transpose"]))
    return {
        "accompaniment": ("both solo", "one accompanied", "both accompanied")[acc],
        "tempo": "ratio < 1.1" if ratio < 1.1 else "ratio >= 1.1",
        "key": "0-2 semitones apart" if keys <= 2 else "3+ semitones apart",
    }


def factor_breakdown(data: EvalSet, rankings: Mapping[str, list[list[int]]]) -> dict[str, Any]:
    """Melodies: per method, the share of (query, other performance) pairs found in the top 10, by how
    the two performances differ. Says which change (tempo, accompaniment, key) a method does not survive."""
    facts = {q.song_id: q.facts for q in data.queries if q.facts}
    out: dict[str, Any] = {}
    for method, lists in rankings.items():
        found: dict[str, list[float]] = {}
        for ranked, q in zip(lists, data.queries, strict=True):
            top = set(ranked[:10])
            for other in q.relevant:
                if not q.facts or other not in facts:
                    continue
                for factor, value in pair_factors(q.facts, facts[other]).items():
                    found.setdefault(f"{factor}: {value}", []).append(float(other in top))
        out[method] = {k: {"pairs": len(v), "found@10": round(float(np.mean(v)), 4)} for k, v in sorted(found.items())}
    return out


def score(data: EvalSet, rankings: Mapping[str, list[list[int]]], seed: int = SEED) -> dict[str, Any]:
    """Per method: the metrics' means and bootstrap intervals over the set's queries."""
    results: dict[str, Any] = {}
    for method, lists in rankings.items():
        if len(lists) != len(data.queries):
            raise ValueError(f"{method}: {len(lists)} ranked lists for {len(data.queries)} queries")
        values = [retrieval.query_values(r, q.relevant, q.group) for r, q in zip(lists, data.queries, strict=True)]
        results[method] = retrieval.summarise(values, seed)
    return results


def evaluate_set(folder: Path, artifacts: Path | None = None, methods: Sequence[str] = API_METHODS,
                 seed: int = SEED, progress: bool = True, upload: str = "wav") -> dict[str, Any]:
    """Evaluate one set: the API methods (when artifacts exist) and the baselines."""
    started = time.perf_counter()
    data = load_set(folder)
    artifacts = Path(artifacts) if artifacts else data.folder / ARTIFACTS_DIR
    rankings: dict[str, list[list[int]]] = {}
    served: dict[str, Any] | None = None
    if methods:
        if not artifacts.exists():
            raise EvaluationSetError(f"{artifacts}: no artifacts; train first (mugle real-audio train --set {folder})")
        api, served, canon = api_rankings(data, artifacts, methods, progress=progress, upload=upload)
        served["upload"] = upload if data.name == "recordings" else None
        rankings.update(api)
    baselines = baseline_rankings(data, seed)
    if served is not None and served["merged_songs"]:
        # Score the baselines on the catalog the service has: merged duplicates count as one song.
        baselines = {k: canonical_lists(v, data.queries, canon) for k, v in baselines.items()}
    rankings.update(baselines)
    return {
        "set": data.name,
        "folder": str(data.folder),
        "artifacts": str(artifacts) if methods else None,
        "served": served,
        "task": data.task,
        "size": {"catalog": len(data.catalog_ids), "queries": len(data.queries), **data.info},
        "results": score(data, rankings, seed),
        "factors": factor_breakdown(data, rankings) if any(q.facts for q in data.queries) else None,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _cell(m: Mapping[str, float] | None) -> str:
    if not m:
        return "–"
    return f"{m['mean']:.3f} [{m['low']:.2f}, {m['high']:.2f}]"


def table_lines(result: Mapping[str, Any]) -> list[str]:
    """A Markdown table of one set's results, learned methods first."""
    metrics = ["p@1", "hit@10", "mrr"] + (["group@10"] if result["set"] == "recordings" else [])
    head = {"p@1": "P@1", "hit@10": "hit@10", "mrr": "MRR@100", "group@10": "same game @10"}
    lines = ["| method | " + " | ".join(head[m] for m in metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for method, block in result["results"].items():
        label = f"{method} (API)" if method in API_METHODS else method
        lines.append(f"| {label} | " + " | ".join(_cell(block.get(m)) for m in metrics) + " |")
    return lines


def _train_lines(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """The training command behind each evaluated artifacts folder (a demo folder is trained by ``mugle train``)."""
    lines = []
    for r in results:
        if not r.get("artifacts"):
            continue
        if (Path(r["folder"]) / DEMO_TRUTH).exists():
            lines.append(f"mugle demo-data --out {r['folder']} && "
                         f"mugle train --data {r['folder']} --out {r['artifacts']} --seed {SEED}")
        else:
            lines.append(f"mugle real-audio train --set {r['folder']} --out {r['artifacts']}")
    return lines


def write_report(results: Sequence[Mapping[str, Any]], report: Path, command: str) -> Path:
    """Write the JSON and the Markdown report; returns the JSON path."""
    report = Path(report)
    report.parent.mkdir(parents=True, exist_ok=True)
    payload = {"command": command, "python": platform.python_version(), "sets": list(results)}
    json_path = report.with_suffix(".json")
    json_path.write_text(json.dumps(payload, indent=1, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    lines = ["# Audio similarity on real audio", "",
             "Written by `mugle real-audio evaluate` (module `evaluation.realaudio`). Each cell: mean over the "
             "queries [95 % bootstrap interval]. Learned methods are measured through the served API; the "
             "baselines rank the same catalog mels by cosine over the whole catalog. MRR is cut at rank 100, "
             "the API's largest `k`.", "",
             "Reproduce (the sets are built outside the repository; training is the default `mugle train`, seed 0):",
             "", "```bash",
             "nice -n 10 mugle real-audio build --what all --cache /work/cache/realaudio --debs /work/cache/debs",
             *_train_lines(results),
             command, "```", ""]
    for r in results:
        size = r["size"]
        lines += [f"## {r['set']}", "",
                  f"Set `{r['folder']}`: {size['catalog']} catalog songs, {size['queries']} queries"
                  + (f", {size['tunes']} tunes" if "tunes" in size else "") + "."]
        if r.get("task"):
            lines.append(f"Task: {r['task']}.")
        if r.get("served"):
            s = r["served"]
            total = s.get("train_seconds", {}).get("total")
            took = f", trained in {total / 60:.1f} min" if total else ""
            lines.append(f"Artifacts `{r['artifacts']}` (version {s['version']}, {s.get('songs')} songs served{took}).")
            for method, why in s.get("skipped", {}).items():
                lines.append(f"Method {method} not served: {why}.")
        lines += [""] + table_lines(r) + [""]
        if r.get("factors"):
            methods = list(r["factors"])
            rows = sorted({k for m in methods for k in r["factors"][m]})
            lines += ["Pairs of performances of one tune found in the top 10, by how the two differ:", "",
                      "| pair | pairs | " + " | ".join(methods) + " |", "|---" * (len(methods) + 2) + "|"]
            for row in rows:
                n = next(r["factors"][m][row]["pairs"] for m in methods if row in r["factors"][m])
                cells = [f"{r['factors'][m][row]['found@10']:.3f}" if row in r["factors"][m] else "–" for m in methods]
                lines.append(f"| {row} | {n} | " + " | ".join(cells) + " |")
            lines.append("")
    report.write_text("\n".join(lines), encoding="utf-8")
    return json_path


# -- training on a set ---------------------------------------------------------------------------------


def train_on_set(folder: Path, extra: Sequence[str] = (), seed: int = SEED, out: Path | None = None) -> Path:
    """Run the project's training (``mugle train``) on a set with a fixed seed.

    ``out`` is the artifacts folder (default ``<set>/artifacts``); ``extra`` are further ``mugle train``
    flags (e.g. ``--tcae-steps 3000``); ``--seed`` in them wins.
    """
    from training.pipeline import add_train_arguments, options_from_args, train

    folder = Path(folder)
    if layout.read_ready(folder) is None:
        raise EvaluationSetError(f"{folder}: no READY marker; build the set first (mugle real-audio build)")
    parser = argparse.ArgumentParser(prog="mugle real-audio train")
    add_train_arguments(parser)
    args = parser.parse_args(["--seed", str(seed), *extra])
    started = time.perf_counter()
    version = train(folder, Path(out) if out else folder / ARTIFACTS_DIR, options_from_args(args))
    logger.info("trained %s on %s in %.0f s", version, folder, time.perf_counter() - started)
    return version


# -- command line ----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from training.realaudio.build import add_build_arguments

    parser = argparse.ArgumentParser(prog="mugle real-audio", description="real-audio evaluation sets (issue 13)")
    sub = parser.add_subparsers(dest="action", required=True)
    add_build_arguments(sub.add_parser("build", help="build the recordings and/or melodies set"))
    p = sub.add_parser("train", help="mugle train on a set (fixed seed) into <set>/artifacts; extra flags pass on")
    p.add_argument("--set", dest="set_dir", type=Path, required=True, help="a built set folder")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--out", type=Path, default=None, help="artifacts folder (default <set>/artifacts)")
    p = sub.add_parser("evaluate", help="P@1, hit@10, MRR through the API and the baselines, with intervals")
    p.add_argument("--set", dest="sets", type=Path, action="append", required=True,
                   help="a built set folder (repeatable)")
    p.add_argument("--artifacts", type=Path, action="append", default=None,
                   help="artifacts folder per --set, in order (default <set>/artifacts)")
    p.add_argument("--methods", default=",".join(API_METHODS),
                   help="API methods, comma-separated; empty for baselines only (default tcae,cel)")
    p.add_argument("--report", type=Path, default=DEFAULT_REPORT,
                   help=f"Markdown report; the JSON goes beside it (default {DEFAULT_REPORT})")
    p.add_argument("--seed", type=int, default=SEED, help="seed of the random baseline and the bootstrap")
    p.add_argument("--upload", choices=("wav", "mel"), default="wav",
                   help="recordings: upload the WAV clips (default) or their mels as .npy (same mel, faster)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.action != "train":
        parser.error(f"unrecognised arguments: {' '.join(extra)}")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.action == "evaluate":
        # One line per request from the app and the HTTP client would bury the table.
        for name in ("app", "httpx"):
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        if args.action == "build":
            from training.realaudio.build import run_build

            return run_build(args)
        if args.action == "train":
            version = train_on_set(args.set_dir, extra, args.seed, args.out)
            print(f"trained {version}")
            return 0
        methods = [m for m in args.methods.split(",") if m]
        bad = [m for m in methods if m not in API_METHODS]
        if bad:
            parser.error(f"--methods: unknown {bad}; choose among {', '.join(API_METHODS)}")
        if args.artifacts and len(args.artifacts) != len(args.sets):
            parser.error("--artifacts: give one per --set, in the same order")
        artifacts = args.artifacts or [None] * len(args.sets)
        results = [evaluate_set(s, a, methods, args.seed, not args.quiet, args.upload)
                   for s, a in zip(args.sets, artifacts, strict=True)]
        for r in results:
            print(f"\n{r['set']} ({r['size']['catalog']} songs, {r['size']['queries']} queries)")
            print("\n".join(table_lines(r)))
        json_path = write_report(results, args.report, "mugle real-audio " + " ".join(argv))
        print(f"\nwrote {args.report} and {json_path}")
        return 0
    except (EvaluationSetError, FileNotFoundError) as exc:
        print(f"real-audio: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
