"""What a run supervises and connects to: child processes (scorers, the embedded endpoint) and the client side of several scorers."""
