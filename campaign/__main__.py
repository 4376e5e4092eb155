"""`python -m campaign`: the same command line as `campaign`."""

from .cli import main

if __name__ == "__main__":   # not when a spawned process imports the parent's main module (send/builder.py)
    main()
