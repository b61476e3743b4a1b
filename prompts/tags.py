"""The tags of the REER text protocol and the system prompt every request carries.

One home for the literals that the agents (prefills, parsing) and the scorer (the scoring
text) must agree on.
"""

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
REFINE_OPEN, REFINE_CLOSE = "<refine>", "</refine>"
ANALYZE_OPEN = "<analyze>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
SYSTEM_PROMPT = "You are a helpful assistant."  # reference sections 2 and 4
