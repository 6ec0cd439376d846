"""What every command group of the ``sluice`` command line shares: the usage error (printed without a
traceback), the ``--metadata`` option and how a command finds its store, and plain-text tables."""
from __future__ import annotations

import argparse
import datetime
import glob
import os

from sluice.metadata.store import MetadataStore


class CliError(Exception):
    """A usage problem; printed without a traceback."""


def with_store(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument('--metadata', metavar='URL', help='metadata store URL (default: $SLUICE_METADATA, '
                   'else the one runs/*/metadata.db here); a URL without a password takes it from '
                   '$SLUICE_METADATA_PASSWORD, else $PGPASSWORD or ~/.pgpass')
    return p


def store_url(args: argparse.Namespace) -> str:
    if args.metadata:
        return args.metadata
    if os.environ.get('SLUICE_METADATA'):
        return os.environ['SLUICE_METADATA']
    found = sorted(glob.glob(os.path.join('runs', '*', 'metadata.db')))
    if len(found) == 1:
        return f'sqlite:///{found[0]}'
    where = f' Stores found here: {", ".join(found)}.' if found else ''
    raise CliError('Which metadata store? Pass --metadata URL (e.g. sqlite:///runs/penguin/metadata.db) or set '
                   f'SLUICE_METADATA.{where}')


def open_store(args: argparse.Namespace) -> MetadataStore:
    """The store a command reads: never created by reading (a mistyped path is an error)."""
    return MetadataStore(store_url(args), create=False)


def when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime('%Y-%m-%d %H:%M:%S')


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = '  '.join(f'{{:<{w}}}' for w in widths)
    return '\n'.join(fmt.format(*r).rstrip() for r in [header, *rows])


def with_monitoring(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument('--metrics-file', metavar='PATH', help="write the run's figures in Prometheus' text format to PATH "
                   'when it ends, for the node exporter\'s textfile collector ({pipeline} in PATH is replaced by the '
                   'pipeline name; default: $SLUICE_METRICS_FILE)')
    p.add_argument('--pushgateway', metavar='URL', help="push the run's figures to this Prometheus Pushgateway when "
                   'it ends (push-add, grouped by pipeline; default: $SLUICE_PUSHGATEWAY)')
    return p


def apply_monitoring(args: argparse.Namespace) -> None:
    """--metrics-file and --pushgateway, as the environment variables every part of a run reads."""
    from sluice.observe import METRICS_FILE_ENV, PUSHGATEWAY_ENV
    for flag, env in (('metrics_file', METRICS_FILE_ENV), ('pushgateway', PUSHGATEWAY_ENV)):
        if getattr(args, flag, None):
            os.environ[env] = getattr(args, flag)
