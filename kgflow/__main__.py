"""``python -m kgflow``: the command line, also how Lightning's DDP launcher re-runs it."""
from kgflow.cli import main

if __name__ == "__main__":
    main()
