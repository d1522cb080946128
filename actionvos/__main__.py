"""``python -m actionvos``: the same entry point as the ``actionvos`` console script."""

from actionvos.cli import main

if __name__ == "__main__":
    main()
