"""``python -m crawler``: the command line."""

from crawler._cli import main

main()
