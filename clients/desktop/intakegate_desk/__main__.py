"""`python -m intakegate_desk`."""

from intakegate_desk.app import main

main()
