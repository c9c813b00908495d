"""`python -m iberlite`: the command line."""

from .cli import main

main()
