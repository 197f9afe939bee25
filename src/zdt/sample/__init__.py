"""The sample HTTP service the sandbox runs on every node (stdlib only).

Run it as `python -m zdt.sample.service --home HOME --port PORT --server NAME --node NODE`.
"""
