"""TensorFlow settings the executors that run Keras models share (imported only where TensorFlow is)."""
from __future__ import annotations


def libraries_without_autograph() -> None:
    """Let AutoGraph call the code of ``UNCONVERTED`` libraries as written, as TensorFlow does for the
    `keras` package: Keras 2, tf.Transform and tfx_bsl, written to run as graph code.

    TensorFlow exempts modules named `keras` from AutoGraph's source conversion, but Keras 2 now lives
    in `tf_keras`, so every `fit` re-parses and rewrites hundreds of Keras functions: 13.5 s of a 14 s
    fit of the penguin model here, with the same loss and accuracy either way (Keras 2 was written to
    run unconverted). With tf.Transform and tfx_bsl exempt too, the penguin Trainer took 2.9 s instead
    of 6.2 s (one run each way). The user's own functions (``preprocessing_fn``, ``run_fn`` and what
    they call) are still converted.
    """
    from tensorflow.python.autograph.core import config, config_lib

    for package in UNCONVERTED:
        if not any(isinstance(r, config_lib.DoNotConvert) and r.matches(package) for r in config.CONVERSION_RULES):
            config.CONVERSION_RULES = (config_lib.DoNotConvert(package),) + tuple(config.CONVERSION_RULES)


# Libraries written to run as graph code without AutoGraph (they also run in TF1 graph mode).
UNCONVERTED = ('tf_keras', 'tensorflow_transform', 'tfx_bsl')
