"""What users see: the ``sluice`` command, the run log, reports and the notebook/HTML views."""
