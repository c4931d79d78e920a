"""`python -m xaug ...`: the same as the `xaug` command.

The guard matters: DataLoader workers start from a forkserver that imports the main module as
`__mp_main__`; without it they would run the command line again.
"""
from xaug.cli import main

if __name__ == "__main__":
    main()
