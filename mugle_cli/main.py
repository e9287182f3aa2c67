"""The ``mugle`` command line.

Each subcommand imports its implementation lazily, so ``mugle serve`` never pulls in torch or gensim
and works in the slim serving image, where the training package's heavy dependencies are absent.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

logger = logging.getLogger(__name__)


def _cmd_demo_data(args: argparse.Namespace) -> int:
    from training.demo import Structure, generate

    structure = Structure(playlist_length=args.playlist_length, theme_purity=args.theme_purity,
                          pop_exponent=args.pop_exponent, curator_order=args.curator_order)
    summary = generate(Path(args.out), songs=args.songs, playlists=args.playlists, seed=args.seed,
                       mels=not args.no_mels, progress=not args.quiet, overwrite=args.overwrite,
                       structure=structure)
    print(f"demo dataset written to {args.out}: {summary}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from training.pipeline import options_from_args, train

    version_dir = train(Path(args.data), Path(args.out), options_from_args(args))
    print(f"trained {version_dir}; `current` now points to {version_dir.name}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from app.main import serve

    if args.workers < 1:
        raise ValueError(f"--workers: must be at least 1, got {args.workers}")
    serve(artifacts=Path(args.artifacts) if args.artifacts else None, host=args.host, port=args.port,
          workers=args.workers)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from evaluation.evaluate import run_from_args

    return int(run_from_args(args) or 0)


def _cmd_real_audio(args: argparse.Namespace) -> int:
    from evaluation.realaudio import main as real_audio_main

    return real_audio_main(args.rest)


def _cmd_artifacts_list(args: argparse.Namespace) -> int:
    from mugle_core.artifacts import list_versions, read_current, read_manifest

    root = Path(args.artifacts)
    current = read_current(root)
    versions = list_versions(root)
    if not versions:
        print(f"no versions in {root}")
        return 0
    for name in versions:
        m = read_manifest(root / name)
        counts = ", ".join(f"{k} {v.count:,}" for k, v in m.models.items())
        mark = "*" if name == current else " "
        print(f"{mark} {name}  created {m.created_at}  songs {m.songs:,}  {counts}")
    return 0


def _cmd_artifacts_use(args: argparse.Namespace) -> int:
    from mugle_core.artifacts import set_current

    set_current(Path(args.artifacts), args.version)
    print(f"current -> {args.version}")
    return 0


def _cmd_artifacts_prune(args: argparse.Namespace) -> int:
    from mugle_core.artifacts import prune_versions

    removed = prune_versions(Path(args.artifacts), keep=args.keep)
    print(f"removed {len(removed)} version(s): {', '.join(removed) or '-'}")
    return 0


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; stage options of ``train``/``evaluate`` are added only when that command runs,
    so that other commands (``serve`` above all) never import the training stack."""
    parser = argparse.ArgumentParser(prog="mugle", description="Mugle music recommender")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo-data", help="write a demo dataset in the Melon layout")
    p.add_argument("--out", required=True, help="dataset folder to write")
    p.add_argument("--songs", type=int, default=3000)
    p.add_argument("--playlists", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-mels", action="store_true", help="metadata only (for real-size benchmarks)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    # Catalog structure (defaults: the default demo's; see training.demo.Structure). Kept as literals so
    # that `mugle serve` never imports the training package to build its parser.
    g = p.add_argument_group("catalog structure")
    g.add_argument("--playlist-length", type=float, default=16.0, help="mean songs per playlist (default 16)")
    g.add_argument("--theme-purity", type=float, default=0.85,
                   help="mean share of a playlist's songs from its theme, the rest random (default 0.85)")
    g.add_argument("--pop-exponent", type=float, default=1.1,
                   help="popularity skew: weight 1/(rank+60)^e, 0 = flat (default 1.1)")
    g.add_argument("--curator-order", type=float, default=1.0,
                   help="share of playlists in curator order (grouped by genre); the rest shuffled (default 1)")
    p.set_defaults(func=_cmd_demo_data)

    p = sub.add_parser("train", help="train a new artifacts version and point `current` at it")
    p.add_argument("--data", required=True, help="dataset folder in the Melon layout")
    p.add_argument("--out", default="artifacts", help="artifacts folder (default: artifacts)")
    if command == "train":
        from training.pipeline import add_train_arguments

        add_train_arguments(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("serve", help="serve the API and web page")
    p.add_argument("--artifacts", default=None, help="artifacts folder (default: $MUGLE_ARTIFACTS or artifacts)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=int(os.environ.get("MUGLE_WORKERS", "1") or 1),
                   help="server processes; each loads the version and follows hot swaps "
                        "(default: $MUGLE_WORKERS or 1)")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("evaluate", help="offline evaluation of an artifacts version, with a report")
    if command == "evaluate":
        from evaluation.evaluate import add_evaluate_arguments

        add_evaluate_arguments(p)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("real-audio", add_help=False,
                       help="build, train on and evaluate the real-audio sets (see `mugle real-audio --help`)")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=_cmd_real_audio)

    p = sub.add_parser("artifacts", help="list, switch or prune artifacts versions")
    asub = p.add_subparsers(dest="action", required=True)
    a = asub.add_parser("list", help="list versions; * marks current")
    a.add_argument("--artifacts", default="artifacts")
    a.set_defaults(func=_cmd_artifacts_list)
    a = asub.add_parser("use", help="point `current` at VERSION (rollback)")
    a.add_argument("version")
    a.add_argument("--artifacts", default="artifacts")
    a.set_defaults(func=_cmd_artifacts_use)
    a = asub.add_parser("prune", help="delete old versions, keeping current and the N newest others")
    a.add_argument("--keep", type=int, default=2)
    a.add_argument("--artifacts", default="artifacts")
    a.set_defaults(func=_cmd_artifacts_prune)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    if command == "real-audio":
        # Its own parser (with its own --help) takes everything after the word.
        return _cmd_real_audio(argparse.Namespace(rest=argv[argv.index(command) + 1:]))
    args = build_parser(command).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from mugle_core.artifacts import ArtifactError

    try:
        return args.func(args)
    except (ArtifactError, ValueError, FileNotFoundError, FileExistsError) as exc:  # MelonFormatError: ValueError
        print(f"mugle {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mugle {args.command}: interrupted; nothing was changed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
