"""``sluice export airflow|kfp``: write an Airflow DAG or a Kubeflow Pipelines spec that runs a pipeline
node by node, each task a ``sluice run-node`` (the writers are ``sluice.integrations.airflow`` and
``sluice.integrations.kfp``)."""
from __future__ import annotations

import argparse

from sluice.ui.cli.common import CliError


def cmd_export(args: argparse.Namespace) -> int:
    """Write an Airflow DAG or a Kubeflow Pipelines spec running the pipeline node by node."""
    from sluice.integrations.tasks import ExportError

    try:
        if args.target == 'airflow':
            from sluice.integrations.airflow import write_airflow_dag
            path = write_airflow_dag(args.file, args.output, metadata=args.metadata, dag_id=args.dag_id)
        else:
            from sluice.integrations.kfp import write_kfp_pipeline
            path = write_kfp_pipeline(args.file, args.output, args.image, metadata=args.metadata,
                                      file_in_image=args.file_in_image)
    except ExportError as e:
        raise CliError(str(e)) from None
    print(f'Wrote {path}')
    from sluice.metadata.credentials import has_password
    if has_password(args.metadata):
        print('The password in --metadata is not written there: give the tasks SLUICE_METADATA_PASSWORD in their '
              'environment (or PGPASSWORD, or a ~/.pgpass on the machines that run them).')
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """``sluice export`` and its two targets."""
    p = sub.add_parser('export', help='write an Airflow DAG or a Kubeflow Pipelines spec running each node '
                                      'with run-node')
    targets = p.add_subparsers(dest='target', required=True, metavar='TARGET')
    t = targets.add_parser('airflow', help='an Airflow DAG file: one BashOperator task per node')
    t.add_argument('--dag-id', help='the DAG id (default: the pipeline name)')
    t.set_defaults(image=None, file_in_image=None)
    k = targets.add_parser('kfp', help='a Kubeflow Pipelines v2 pipeline spec (YAML): one task per node')
    k.add_argument('--image', required=True, help='the container image the tasks run in (Sluice and the pipeline '
                   'file installed)')
    k.add_argument('--file-in-image', metavar='PATH', help="the pipeline file's path in the image (default: its "
                   'absolute path here)')
    k.set_defaults(dag_id=None)
    for q in (t, k):
        q.add_argument('file', help='the pipeline file')
        q.add_argument('-o', '--output', required=True, metavar='FILE', help='where to write it')
        q.add_argument('--metadata', metavar='URL', help="the store the tasks use (default: the pipeline's own)")
    p.set_defaults(func=cmd_export)
