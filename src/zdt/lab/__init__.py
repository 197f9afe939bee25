"""For demos, tests and benches only: the sandbox (a real local domain), the sample HTTP
service it runs, the counter workload of live updates, the demo, the load generators.

The product never imports this package; only the `zdt sandbox` and `zdt demo` commands
reach it, when they run.
"""
