"""The fleet on Ray (``reer run --ray``): the driver, and the scorer and worker actors it starts."""
