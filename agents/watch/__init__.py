"""What a person watches while a run goes: live counters, the terminal dashboard, the run's log file."""
