"""One record's search (pure decisions apart from the I/O), the worker's claim loop, and reading and validating the input."""
