"""The ways a run is driven: ``local`` (in process), ``beam`` (a Beam pipeline of nodes),
``interactive`` (a notebook, one component at a time), ``run_node`` (one node, from an orchestrator)."""
