"""The ``musrec`` command line.

``musrec reproduce`` runs the paper's whole experiment (WMF, audio features, the five
networks, Table 1 and Figures 2 and 3) on the embedded synthetic world or on a real dataset
directory, and writes the tables and figures. ``musrec export`` writes a trained pipeline as
a model bundle; ``musrec serve`` runs the edge service on one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from ._musrec import MusrecError
from .experiment import PRESETS


def _kinds(text: str) -> tuple[str, ...]:
    return tuple(k.strip() for k in text.split(",") if k.strip())


def _rates(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(r) for r in text.split(",") if r.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated learning rates, got {text!r}") from None


def reproduce(args: argparse.Namespace) -> int:
    """Run ``musrec reproduce``: the paper's experiment end to end, and print its results.

    Runs :func:`musrec.reproduce` on the preset (default: ``"small"`` on the embedded
    synthetic world, ``"paper"`` with ``--data``), then prints the data's sizes, Table 1 next
    to the paper's numbers, Figure 2 at N=10 (or the first N measured), the paper's claims
    checked on these results, each network's verdict against its linear counterpart, the
    time and peak memory, and the files written to ``--out``. ``--kinds``,
    ``--learning-rates``, ``--epochs`` (the model's ``max_epochs``) and ``--factors`` override
    the preset's settings; ``--ray`` (with or without an address) sets ``executor="ray"``.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``reproduce`` arguments: ``data``, ``preset``, ``out``, ``work``, ``ray``,
        ``kinds``, ``learning_rates``, ``epochs``, ``factors``, ``threads``, ``seed`` and
        ``quiet``, as :func:`main` parses them.

    Returns
    -------
    int
        The exit status, 0.

    Raises
    ------
    FileNotFoundError
        When ``--data`` is given but is not a directory, or a required dataset file is missing.
    ValueError
        For an unknown preset or settings that cannot work (see :class:`musrec.Pipeline`).
    KeyboardInterrupt
        On Ctrl-C; the finished stages stay cached.

    See Also
    --------
    musrec.reproduce : The same experiment from Python.
    main : The command line that parses ``args``.

    Examples
    --------
    >>> import argparse
    >>> from musrec import cli
    >>> args = argparse.Namespace(
    ...     data=None, preset="tiny", out="musrec-results", work=None, ray=None, kinds=None, learning_rates=None,
    ...     epochs=None, factors=None, threads=0, seed=0, quiet=True,
    ... )
    >>> cli.reproduce(args)  # doctest: +SKIP
    """
    from .experiment import reproduce as run

    preset = args.preset or ("paper" if args.data else "small")
    if args.data and not os.path.isdir(args.data):
        raise FileNotFoundError(f"--data {args.data!r} is not a directory (expected the layout of musrec.data)")
    overrides: dict = {}
    if args.kinds is not None:
        overrides["kinds"] = args.kinds
    if args.learning_rates is not None:
        overrides["learning_rates"] = args.learning_rates
    if args.epochs is not None:
        overrides["model"] = {"max_epochs": args.epochs}
    if args.factors is not None:
        overrides["n_factors"] = args.factors
    if getattr(args, "ray", None) is not None:
        overrides["executor"] = "ray"
        overrides["ray_address"] = args.ray or None
    source = f"the dataset in {args.data}" if args.data else "the embedded synthetic world"
    print(f"musrec reproduce: preset {preset!r} on {source}; results in {args.out}")
    start = time.perf_counter()
    result = run(
        preset,
        args.data,
        args.out,
        args.work,
        random_state=args.seed,
        num_threads=args.threads,
        show_progress=not args.quiet,
        log=print,
        **overrides,
    )
    s = result.summary
    n = 10 if 10 in {r["N"] for r in result.figure2} else result.figure2[0]["N"]
    print()
    print(
        f"{s['users']:,} users x {s['songs']:,} songs, {s['plays']:,} plays; {s['training_songs']:,} training and "
        f"{s['test_songs']:,} cold-start test songs ({s['test_users']:,} users played one); "
        f"{s['songs_without_usable_audio']:,} songs without usable audio left out"
    )
    print("\nTable 1: error of the predicted cold-start song vectors (the paper's numbers next to ours)\n")
    print(result.table1_markdown(paper=True))
    print(f"\nFigure 2 at N={n}: Top-N of the cold-start songs\n")
    print(result.figure2_markdown(n))
    print("\nThe paper's claims on these results\n")
    print(result.claims_markdown(n))
    print("\nEach network against the linear (ridge) model on the same inputs\n")
    for line in result.verdict_lines(n):
        print("  " + line)
    peak = max((st["peak_rss_mb"] for st in s["stages"]), default=0.0)
    print(f"\ndone in {time.perf_counter() - start:.0f} s, peak memory {peak:,.0f} MB; wrote:")
    for path in s.get("files", []):
        print(f"  {path}")
    return 0


def export(args: argparse.Namespace) -> int:
    """Run ``musrec export``: write a trained pipeline as a model bundle for the edge service.

    Builds the preset's :class:`musrec.Pipeline` (default: ``"small"`` on the synthetic world,
    ``"paper"`` with ``--data``) on the work directory, which trains what its caches lack,
    writes the ``--kind`` model's bundle to ``--out`` with
    :meth:`musrec.Pipeline.export_bundle` and prints a line on what was written.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``export`` arguments: ``work``, ``out``, ``data``, ``preset``, ``kind``,
        ``encoding``, ``model_version``, ``threads``, ``seed`` and ``quiet``, as :func:`main`
        parses them.

    Returns
    -------
    int
        The exit status, 0.

    Raises
    ------
    FileNotFoundError
        When ``--data`` is given but is not a directory, or a required dataset file is missing.
    ValueError
        For an unknown preset or kind, or when ``--out`` already exists.

    See Also
    --------
    musrec.Pipeline.export_bundle : The same from Python.

    Examples
    --------
    >>> import argparse
    >>> from musrec import cli
    >>> args = argparse.Namespace(
    ...     work="musrec-results/work", out="bundle", data=None, preset="tiny", kind="fusion", encoding="f32",
    ...     model_version=None, threads=0, seed=0, quiet=True,
    ... )
    >>> cli.export(args)  # doctest: +SKIP
    """
    from .experiment import pipeline

    preset = args.preset or ("paper" if args.data else "small")
    if args.data and not os.path.isdir(args.data):
        raise FileNotFoundError(f"--data {args.data!r} is not a directory (expected the layout of musrec.data)")
    pipe = pipeline(
        preset,
        args.data,
        args.work,
        random_state=args.seed,
        num_threads=args.threads,
        show_progress=not args.quiet,
        log=None if not args.quiet else (lambda line: None),
    )
    manifest = pipe.export_bundle(args.out, args.kind, encoding=args.encoding, model_version=args.model_version)
    size = sum(f["bytes"] for f in manifest["files"].values())
    print(
        f"musrec export: wrote {args.out} (model {manifest['model_version']}, {manifest['n_users']:,} users, "
        f"{manifest['n_songs']:,} songs, {manifest['factors']} factors, {size / 2**20:.1f} MiB, song vectors "
        f"{manifest['song_encoding']}, top-10 overlap with f32 {manifest['song_encoding_top10_overlap']:.3f})"
    )
    return 0


def serve(args: argparse.Namespace) -> int:
    """Run ``musrec serve``: the edge service on a model bundle, until it stops or Ctrl-C.

    Starts :func:`musrec.edge.serve` (``--max-upload-mb`` becomes ``max_upload_bytes``),
    prints the address it listens on, the model version and, with ``--events``, how many
    logged events were folded in, then waits. Ctrl-C stops it (and returns 0).

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``serve`` arguments: ``bundle``, ``host``, ``port``, ``events``,
        ``edge_id``, ``durability``, ``token_file``, ``max_upload_mb`` and ``workers``, as
        :func:`main` parses them.

    Returns
    -------
    int
        The exit status, 0.

    Raises
    ------
    FileNotFoundError
        When the bundle directory does not exist.

    See Also
    --------
    musrec.edge.serve : The same from Python.

    Examples
    --------
    >>> import argparse
    >>> from musrec import cli
    >>> args = argparse.Namespace(
    ...     bundle="bundle", host="127.0.0.1", port=8080, events=None, edge_id="edge", durability="buffered",
    ...     token_file=None, max_upload_mb=32.0, workers=2,
    ... )
    >>> cli.serve(args)  # doctest: +SKIP
    """
    from . import edge

    server = edge.serve(
        args.bundle,
        host=args.host,
        port=args.port,
        events=args.events,
        edge_id=args.edge_id,
        durability=args.durability,
        token_file=args.token_file,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        workers=args.workers,
    )
    replayed = f"; {server.replayed_events:,} logged events folded in" if args.events else ""
    print(f"musrec serve: listening on {server.url} (model {server.model_version}{replayed})", flush=True)
    try:
        server.wait()
    except KeyboardInterrupt:
        print("musrec serve: stopped", file=sys.stderr)
    return 0


def cloud_update(args: argparse.Namespace) -> int:
    """Run ``musrec cloud update``: merge the edges' new events into a new bundle.

    Calls :func:`musrec.cloud.update`, prints every song that could not be embedded again to
    stderr, and one line on what was merged, skipped and added, how the users were updated
    (fold-in, or a warm-started WMF refit with ``--refit``) and where the new bundle went.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``cloud update`` arguments: ``bundle``, ``events`` (a list of event-log
        directories), ``out``, ``refit``, ``iterations``, ``data``, ``work``, ``encoding``,
        ``model_version`` and ``threads``, as :func:`main` parses them.

    Returns
    -------
    int
        The exit status, 0.

    Raises
    ------
    FileNotFoundError
        When the bundle does not exist.
    ValueError
        When ``--out`` already exists, or ``--data`` is given without ``--refit``.

    See Also
    --------
    musrec.cloud.update : The same from Python.

    Examples
    --------
    >>> import argparse
    >>> from musrec import cli
    >>> args = argparse.Namespace(
    ...     bundle="bundle", events=["events"], out="bundle-2", refit=False, iterations=5, data=None, work=None,
    ...     encoding=None, model_version=None, threads=0,
    ... )
    >>> cli.cloud_update(args)  # doctest: +SKIP
    """
    from . import cloud

    report = cloud.update(
        args.bundle,
        args.events,
        args.out,
        refit=args.refit,
        iterations=args.iterations,
        data=args.data,
        work=args.work,
        encoding=args.encoding,
        model_version=args.model_version,
        num_threads=args.threads,
        show_progress=sys.stderr.isatty(),
    )
    merged = ", ".join(f"{n:,} from {e}" for e, n in sorted(report["merged"].items())) or "no new events"
    skipped = sum(report["skipped"].values())
    note = f"; {skipped:,} naming songs the bundle lacks were skipped" if skipped else ""
    added = sum(report["songs_added"].values())
    if added:
        note += f"; {added:,} songs the edges added joined the bundle"
    for failed in report["songs_failed"]:
        print(
            f"musrec cloud update: song {failed['song_id']} of {failed['edge_id']}: {failed['error']}", file=sys.stderr
        )
    how = "WMF refit (warm start)" if report["refit"] else "fold-in"
    content = report["content"]
    if content is not None:
        how += (
            f", {content['kind']} content model trained again on {content['training_songs']:,} songs "
            f"({content['songs_missing']:,} not in --data), {content['songs_reembedded']:,} added songs embedded again"
        )
    print(
        f"musrec cloud update: merged {merged}{note}; {report['users_changed']:,} users updated by {how}; "
        f"wrote {args.out} (model {report['manifest']['model_version']}, offsets {report['offsets']})"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the ``musrec`` command line: ``reproduce``, ``export``, ``serve`` or ``cloud update``.

    Parses ``argv`` and runs the command (:func:`reproduce`, :func:`export`, :func:`serve`
    or :func:`cloud_update`). An error a user can fix (a :class:`musrec.MusrecError`,
    ``ValueError``, ``TypeError``, ``KeyError`` or ``OSError``) is printed to stderr as one
    ``musrec: error: ...`` line instead of a traceback; Ctrl-C prints that the finished
    stages are cached and that running the same command again continues.

    Parameters
    ----------
    argv : list of str or None, optional
        The arguments after the program name; None reads ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit status: 0 on success, 2 after an error, 130 after Ctrl-C.

    Raises
    ------
    SystemExit
        From argparse, for ``--help`` (status 0) or arguments it cannot parse (status 2).

    Examples
    --------
    >>> from musrec import cli
    >>> cli.main(["reproduce", "--preset", "tiny", "--out", "musrec-results", "--quiet"])  # doctest: +SKIP
    >>> cli.main(["reproduce", "--data", "no-such-directory"])
    2
    """
    parser = argparse.ArgumentParser(prog="musrec", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser(
        "reproduce",
        help="the paper's experiment end to end: tables and figures",
        description="Run WMF, audio features, the five networks and the evaluation; write Table 1 and "
        "Figures 2 and 3 as Markdown, CSV and PNG. Stages are cached in the work directory: a re-run "
        "redoes only what changed, and an interrupted run continues from the last finished stage.",
    )
    rep.add_argument("--data", help="a real dataset directory (train_triplets.txt, track_metadata.db, ...)")
    rep.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="size and settings (default: small on the synthetic world, paper with --data)",
    )
    rep.add_argument("--out", default="musrec-results", help="where the tables and figures go")
    rep.add_argument("--work", help="where the world and the stage caches go (default: OUT/work)")
    rep.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="run WMF and the audio features on a Ray cluster (ADDRESS for ray.init; none: a local one); "
        'needs pip install "musrec[ray]"',
    )
    rep.add_argument("--kinds", type=_kinds, help="comma-separated model kinds (default: all five)")
    rep.add_argument(
        "--learning-rates",
        type=_rates,
        help="Figure 3's learning rates, comma-separated (default: 0.1,0.01,0.001,0.0001; empty: skip)",
    )
    rep.add_argument("--epochs", type=int, help="override the preset's maximum number of training epochs")
    rep.add_argument("--factors", type=int, help="override the preset's number of WMF factors")
    rep.add_argument("--threads", type=int, default=0, help="0 = one per core")
    rep.add_argument("--seed", type=int, default=0)
    rep.add_argument("--quiet", action="store_true", help="no progress bars")
    exp = sub.add_parser(
        "export",
        help="write a trained pipeline as a model bundle for the edge service",
        description="Train (or read from the work directory's caches) the preset's pipeline and write its "
        "WMF vectors, play counts, ids, content model and feature settings as one bundle directory.",
    )
    exp.add_argument("--work", required=True, help="the work directory of `musrec reproduce` (stage caches)")
    exp.add_argument("--out", required=True, help="the bundle directory to write (must not exist)")
    exp.add_argument("--data", help="a real dataset directory (default: the preset's synthetic world)")
    exp.add_argument("--preset", choices=sorted(PRESETS), help="default: small, or paper with --data")
    exp.add_argument("--kind", default="fusion", help="the content model kind (default: fusion)")
    exp.add_argument("--encoding", choices=("f32", "f16", "int8"), default="f32", help="song vector storage")
    exp.add_argument("--model-version", help="default: a digest of the bundle's files")
    exp.add_argument("--threads", type=int, default=0, help="0 = one per core")
    exp.add_argument("--seed", type=int, default=0)
    exp.add_argument("--quiet", action="store_true", help="no progress output")
    srv = sub.add_parser(
        "serve",
        help="run the edge service on a model bundle",
        description="Serve recommendations, similar songs, audiences, new-song uploads and listening events "
        "over HTTP (JSON; see /openapi.json). Write endpoints need the bearer token of --token-file.",
    )
    srv.add_argument("bundle", help="a bundle directory written by `musrec export`")
    srv.add_argument("--host", default="127.0.0.1", help="default: loopback only")
    srv.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    srv.add_argument("--events", help="directory of this edge's durable event log")
    srv.add_argument("--edge-id", default="edge", help="this edge's id in its event records")
    srv.add_argument("--durability", choices=("buffered", "fsync"), default="buffered")
    srv.add_argument("--token-file", help="file holding the bearer token of the write and admin endpoints")
    srv.add_argument("--max-upload-mb", type=float, default=32.0, help="largest accepted song upload")
    srv.add_argument("--workers", type=int, default=2, help="threads answering requests")
    cld = sub.add_parser("cloud", help="the cloud side: fold the edges' events into a new bundle")
    cloud_sub = cld.add_subparsers(dest="cloud_command", required=True)
    upd = cloud_sub.add_parser(
        "update",
        help="merge new edge events into a bundle",
        description="Merge each edge's events after the offset the old bundle's manifest records for it "
        "(exactly once), fold the users in again or refit WMF warm-started (and, with --data, the content "
        "model), and write the new bundle.",
    )
    upd.add_argument("--bundle", required=True, help="the bundle the edges serve now")
    upd.add_argument("--events", required=True, nargs="+", help="the edges' event-log directories")
    upd.add_argument("--out", required=True, help="the new bundle directory (must not exist)")
    upd.add_argument("--refit", action="store_true", help="refit WMF on all plays (default: fold-in only)")
    upd.add_argument("--iterations", type=int, default=5, help="WMF iterations of a refit")
    upd.add_argument(
        "--data", help="with --refit: the dataset the bundle was trained from; trains the content model again"
    )
    upd.add_argument("--work", help="with --data: a directory for the feature cache of its songs")
    upd.add_argument("--encoding", choices=("f32", "f16", "int8"), help="default: the old bundle's")
    upd.add_argument("--model-version", help="default: a digest of the bundle's files")
    upd.add_argument("--threads", type=int, default=0, help="0 = one per core")
    args = parser.parse_args(argv)
    run = {"reproduce": reproduce, "export": export, "serve": serve, "cloud": cloud_update}[args.command]
    try:
        return run(args)
    except KeyboardInterrupt:
        print("\ninterrupted: finished stages are cached, run the same command again to continue", file=sys.stderr)
        return 130
    except (MusrecError, ValueError, TypeError, KeyError, OSError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"musrec: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
