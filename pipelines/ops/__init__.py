"""Operating a pipeline over time: ``watch`` (run again when inputs change), ``gc`` (delete what
nothing needs)."""
