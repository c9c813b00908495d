"""`python -m iberlite`: the same command line as the `iberlite` script."""

from iberlite.cli.app import main

main()
