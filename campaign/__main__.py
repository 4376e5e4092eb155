"""`python -m campaign`: the same command line as `campaign`."""

from .cli import main

main()
