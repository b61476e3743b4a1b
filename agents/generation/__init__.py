"""The generator endpoints: one endpoint's client and preflight, its breaker, the router over several, error translation, prefills and parsing what comes back."""
