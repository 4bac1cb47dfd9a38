"""`python -m intakegate.cli`."""

from intakegate.cli import main

main()
