"""TensorFlow settings the executors that run Keras models share (imported only where TensorFlow is)."""
from __future__ import annotations


def keras_without_autograph() -> None:
    """Let AutoGraph call Keras 2's own code as written, as TensorFlow does for the `keras` package.

    TensorFlow exempts modules named `keras` from AutoGraph's source conversion, but Keras 2 now lives
    in `tf_keras`, so every `fit` re-parses and rewrites hundreds of Keras functions: 13.5 s of a 14 s
    fit of the penguin model here, with the same weights either way (Keras 2 was written to run
    unconverted). The user's own functions are still converted.
    """
    from tensorflow.python.autograph.core import config, config_lib

    if not any(isinstance(r, config_lib.DoNotConvert) and r.matches('tf_keras') for r in config.CONVERSION_RULES):
        config.CONVERSION_RULES = (config_lib.DoNotConvert('tf_keras'),) + tuple(config.CONVERSION_RULES)
