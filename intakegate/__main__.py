"""`python -m intakegate`: the same CLI as the `intakegate` script."""

from intakegate.cli import main

if __name__ == "__main__":
    main()
