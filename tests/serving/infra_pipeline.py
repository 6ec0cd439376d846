"""The example penguin pipeline with an InfraValidator between ModelValidator and Pusher."""
from sluice.examples.penguin.penguin_pipeline import create_pipeline as penguin


def create_pipeline():
    return penguin(infra_validation=True)
