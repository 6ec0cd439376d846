"""The ``sluice`` command line.

    sluice run FILE.py [--runner local|beam] [--metadata URL] [--beam-arg ARG ...] [--no-cache [NODE]]
                       [--from NODE] [--to NODE] [--only NODE]
    sluice run-node FILE.py --run-id RUN_ID --node NODE_ID [--metadata URL] [--no-retry]
    sluice watch FILE.py [--every SECONDS] [--metadata URL]
    sluice gc [--keep-runs N] [--older-than DAYS] [--abandoned-after DAYS] [--root DIR] [--dry-run] [--metadata URL]
    sluice resume RUN_ID [--runner local|beam] [--metadata URL]
    sluice runs [--pipeline NAME] [--metadata URL]
    sluice show RUN_ID [--metadata URL]
    sluice lineage ARTIFACT_ID [--metadata URL]
    sluice report RUN_ID [-o report.html] [--metadata URL]
    sluice production DEST [--metadata URL]
    sluice rollback DEST [--to VERSION] [--reason TEXT] [--metadata URL]
    sluice promote MODEL_ARTIFACT_ID DEST --reason TEXT [--metadata URL]
    sluice serve DEST [--name NAME] [--host 127.0.0.1] [--port 8501] [--poll S] [--log-requests RATE]
    sluice drift DEST [--since WHEN] [--threshold X] [--min-rows N] [--metadata URL]
    sluice export airflow FILE.py -o DAG.py [--metadata URL] [--dag-id ID]
    sluice export kfp FILE.py --image IMAGE -o pipeline.yaml [--metadata URL] [--file-in-image PATH]

Every command takes -q/--quiet (only the outcome) and -v/--verbose (the libraries' messages too;
by default they go to <pipeline_root>/.sluice-logs/RUN_ID.log).

Commands that read a store take it from --metadata, else from $SLUICE_METADATA, else from the one
``runs/*/metadata.db`` under the current directory. Nothing here imports TensorFlow.

The commands live by group: ``runs`` (run, run-node, watch, gc, resume), ``inspect`` (runs, show,
report, lineage), ``production`` (production, rollback, promote), ``serve``, ``drift`` and ``export``; each adds its own
subcommands to the parser (``add_parser``). ``python -m sluice.ui.cli`` runs the same ``main``.
"""
from __future__ import annotations

import argparse
import gc
import signal
import sys
from typing import Sequence

from sluice.components.component import WiringError
from sluice.dsl.pipeline import PipelineError
from sluice.metadata.records import MetadataStoreError
from sluice.metadata.storage import StorageError
from sluice.ui.cli import drift, export, inspect, production, runs, serve
from sluice.ui.cli.common import CliError, apply_monitoring


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='sluice', description='Run and inspect Sluice pipelines.')
    loud = parser.add_mutually_exclusive_group()  # also accepted after the command (see main)
    loud.add_argument('-v', '--verbose', dest='verbosity', action='store_const', const=1, default=0,
                      help="also print the libraries' messages (else kept in <pipeline_root>/.sluice-logs/RUN_ID.log)")
    loud.add_argument('-q', '--quiet', dest='verbosity', action='store_const', const=-1,
                      help='print only the outcome line of a run')
    sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    for group in (runs, inspect, production, serve, drift, export):
        group.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None and hasattr(signal, 'SIGPIPE'):  # `sluice runs | head`: end quietly, as Unix tools do
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if argv is None:
        # Started by a parent that ignores or blocks SIGINT (a shell's background job, a test runner's
        # worker), the process would inherit that, and Ctrl-C or `kill -INT` would not stop a run
        # cleanly (recorded CANCELED, lease released, resumable): take SIGINT back.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if hasattr(signal, 'pthread_sigmask'):  # POSIX only
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        # What the imports made lives as long as the process: out of the cyclic collector's way, no
        # collection walks it again, during the command or at exit (24 ms of a cached 8-step run's
        # 0.29 s, bench/fixed_cost.py). What the command itself creates is collected as usual.
        gc.freeze()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    for flag in extra:  # --verbose / --quiet after the command, as in `sluice run FILE --quiet`
        if flag not in ('-v', '--verbose', '-q', '--quiet'):
            parser.error(f'unrecognized arguments: {" ".join(extra)}')
        args.verbosity = 1 if flag in ('-v', '--verbose') else -1
    from sluice.ui.logs import setup as setup_logging
    apply_monitoring(args)
    try:
        with setup_logging(args.verbosity, args.command, process=argv is None):
            return args.func(args)
    except KeyboardInterrupt:
        print('sluice: interrupted', file=sys.stderr)
        return 130
    except (CliError, MetadataStoreError, PipelineError, WiringError, StorageError) as e:
        print(f'sluice: error: {e}', file=sys.stderr)
        return 2
