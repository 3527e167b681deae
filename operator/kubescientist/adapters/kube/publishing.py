"""The entrypoint of a run's writeup and review pods: fetch the records, write or review, upload.

    python -m kubescientist.adapters.kube.publishing writeup --records-url URL \\
        --put-url paper.pdf=URL --put-url paper.tar.gz=URL
    python -m kubescientist.adapters.kube.publishing review --records-url URL --paper-url URL \\
        [--reviewers N] --put-url review.json=URL

Like a node's pod, these pods hold no credential: the run's records (``records.tar.gz``: run.yaml,
journal.json, summary.json, the template, every good node's metrics and plots, laid out as a local run
folder) come by a presigned GET, the products leave by presigned PUTs, and the outcome is one JSON line
in the termination message: ``{"status": "succeeded", "message": ..., "pages"|"decision"/"overall": ...}``
or ``{"status": "error", "message": ...}`` (exit 1).

Offline for now: the paper is written by the offline writer and reviewed by the rubric reviewer; a model
writer and model reviewers plug in here once the operator passes LLM settings to these pods.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from experiment_runtime.pod import (DEFAULT_TERMINATION_LOG, DEFAULT_WORK_DIR, TERMINATION_LOG_ENV, WORK_DIR_ENV,
                                    TransferError, env_path, error_message, fetch, pack, put, put_urls, unpack,
                                    write_termination_message)

RECORDS_LIMIT = 1024 * 1024 * 1024
"""The largest records tarball a writeup pod accepts."""


def _line(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(',', ':'), ensure_ascii=False)[:4000]


def writeup(run_dir: pathlib.Path, urls: dict[str, str]) -> dict[str, Any]:
    from kubescientist.paper import write_paper  # heavy (matplotlib): only in the pod that needs it

    result = write_paper(run_dir)
    put(urls['paper.pdf'], result.pdf.read_bytes(), 'paper.pdf', 'application/pdf')
    if 'paper.tar.gz' in urls:
        put(urls['paper.tar.gz'], pack(result.directory), 'paper.tar.gz', 'application/gzip')
    pages = result.build.pages
    return {'status': 'succeeded', 'message': f"paper written: {pages} pages, {result.title}"[:500],
            'pages': pages, 'title': result.title[:300]}


WEAKNESSES = 5
"""Weaknesses of a review carried in the termination message to status.review (a campaign's feedback)."""
WEAKNESS_CHARS = 200
"""Each cut to this many characters: the termination message holds at most 4 KiB."""


def review(run_dir: pathlib.Path, urls: dict[str, str], paper_url: str) -> dict[str, Any]:
    from kubescientist.review import REVIEW_FILE, review as review_run

    unpack(fetch(paper_url, 'the paper', limit=RECORDS_LIMIT), run_dir / 'paper')
    report = review_run(run_dir)
    put(urls['review.json'], (run_dir / REVIEW_FILE).read_bytes(), 'review.json', 'application/json')
    return {'status': 'succeeded', 'message': f"review: {report.review.decision}, overall {report.review.overall} "
            f"({report.kind})", 'decision': report.review.decision, 'overall': report.review.overall,
            'kind': report.kind, 'weaknesses': [w[:WEAKNESS_CHARS] for w in report.review.weaknesses[:WEAKNESSES]]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m kubescientist.adapters.kube.publishing',
                                     description=__doc__.split('\n\n')[0])
    parser.add_argument('role', choices=('writeup', 'review'))
    parser.add_argument('--records-url', required=True, help="presigned GET URL of the run's records.tar.gz")
    parser.add_argument('--paper-url', default=None, help="presigned GET URL of paper.tar.gz (review)")
    parser.add_argument('--reviewers', type=int, default=1, help="reviews to write (offline: the rubric, once)")
    parser.add_argument('--put-url', action='append', default=[], metavar='NAME=URL')
    parser.add_argument('--work-dir', type=pathlib.Path, default=env_path(WORK_DIR_ENV, DEFAULT_WORK_DIR))
    parser.add_argument('--termination-log', type=pathlib.Path,
                        default=env_path(TERMINATION_LOG_ENV, DEFAULT_TERMINATION_LOG))
    args = parser.parse_args(argv)
    run_dir = args.work_dir / 'run'
    try:
        urls = put_urls(args.put_url, None)
        unpack(fetch(args.records_url, 'the records', limit=RECORDS_LIMIT), run_dir)
        if args.role == 'writeup':
            report = writeup(run_dir, urls)
        else:
            if not args.paper_url:
                raise ValueError("review: --paper-url is required")
            report = review(run_dir, urls, args.paper_url)
    except (TransferError, OSError, ValueError, KeyError) as err:
        message = f"{args.role} failed: {type(err).__name__}: {err}"
        print(message, file=sys.stderr)
        write_termination_message(args.termination_log, error_message(message))
        return 1
    except Exception as err:  # noqa: BLE001 - the writer's and reviewer's own errors are many; report any
        traceback.print_exc()
        message = f"{args.role} failed: {type(err).__name__}: {err}"
        write_termination_message(args.termination_log, error_message(message))
        return 1
    print(json.dumps(report, indent=2))
    write_termination_message(args.termination_log, _line(report))
    return 0


if __name__ == '__main__':
    sys.exit(main())
