"""Workflows across a domain: what was asked (request.py), of which kind (kinds/), planned
(plan.py), run (engine.py, runner.py) and remembered (journal.py)."""
