"""``sluice drift DEST``: has the data the model in production is served drifted from the data it was
trained on? (``sluice.components.served_drift``; its figures: ``sluice.observe.drift``)."""
from __future__ import annotations

import argparse

from sluice.ui.cli.common import CliError, open_store, with_monitoring, with_store


def add_parser(sub) -> None:
    p = with_monitoring(with_store(sub.add_parser(
        'drift', help='compare the data the model in production is served with its training data',
        description='Compare the rows sluice serve --log-requests logged for the version in production at DEST '
                    'with the statistics of the data it was trained on (TFDV: L-infinity distance for categorical '
                    'features, Jensen-Shannon divergence for numeric ones). Exit status 1 when a feature drifted '
                    'or the served rows have anomalies.')))
    p.add_argument('destination', metavar='DEST')
    p.add_argument('--since', metavar='WHEN', help='only request logs written since WHEN: 30m, 2h, 1d ago, or a '
                   'date and time (2026-12-03T10:00, UTC)')
    p.add_argument('--threshold', type=float, default=0.1, help='the skew above which a feature has drifted '
                   '(default 0.1)')
    p.add_argument('--feature-threshold', action='append', default=[], metavar='FEATURE=X',
                   help="one feature's threshold (repeatable)")
    p.add_argument('--min-rows', type=int, default=100, metavar='N',
                   help='judge only with at least N served rows (default 100)')
    p.add_argument('--log-dir', metavar='DIR', help='where sluice serve wrote the request logs (default '
                   'DEST/.sluice-requests)')
    p.add_argument('--json', metavar='PATH', help='also write the report as JSON')
    p.set_defaults(func=run)


def _thresholds(pairs: list[str]) -> dict[str, float]:
    found = {}
    for pair in pairs:
        name, _, value = pair.partition('=')
        try:
            found[name] = float(value)
        except ValueError:
            raise CliError(f'--feature-threshold {pair!r}: give FEATURE=NUMBER, e.g. body_mass_g=0.05') from None
    return found


def run(args: argparse.Namespace) -> int:
    from sluice.components.served_drift import DriftError, append_history, check, parse_since, write_report
    from sluice.observe.drift import drift_registry
    from sluice.observe import publish

    try:
        report = check(args.destination, open_store(args), log_dir=args.log_dir, since=parse_since(args.since),
                       thresholds=_thresholds(args.feature_threshold), default_threshold=args.threshold,
                       min_rows=args.min_rows)
    except DriftError as e:
        raise CliError(str(e)) from None
    print('\n'.join(report.lines()))
    problems = [append_history(report)]  # for the history views (sluice report, InteractiveContext.history)
    if args.json:
        write_report(report, args.json)
    problems += publish(drift_registry(report), str(report.model.get('pipeline') or 'unknown'), suffix='-drift')
    for problem in filter(None, problems):
        print(f'Note: {problem}.')
    return 1 if report.drifted or (report.judged and report.anomalies) else 0
