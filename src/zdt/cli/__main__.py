"""`python -m zdt.cli …` is `zdt …`."""

from zdt.cli.main import main

main()
