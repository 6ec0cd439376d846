"""Sluice under other orchestrators: Airflow DAG and KFP pipeline-spec exports (each task a
``sluice run-node``). TFX's own API surface is ``sluice.tfx.v1``."""
