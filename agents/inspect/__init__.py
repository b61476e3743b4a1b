"""Commands that read a run from its store alone (status, show, report, export) and the curator's filters: they never import the run's machinery."""
