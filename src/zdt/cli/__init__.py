"""The `zdt` command: parse, call the application layer (`zdt.app`), print. Nothing else.

main.py builds the command tree; rollout.py makes one command per workflow kind from the
kind's fields and the options every kind shares; status.py reads the journal back;
live.py drives single-host live updates; archive.py makes and checks archives.
"""
