"""Serving the model in production: ``sluice serve DEST``.

Modules: ``server`` (serve: the process), ``follower`` (which version answers, hot swaps), ``app``
(the HTTP routes), ``metrics`` (Prometheus) and ``request_log`` (sampled requests as tf.Examples, for
drift). A served model (an ONNX Runtime session, the request forms, the warm-up) is
``sluice.components.onnx_export.serving``, beside the export it runs. Nothing here imports TensorFlow.
"""
