"""`python -m iberlite`: the same command line as the `iberlite` script."""

from .cli import main

main()
