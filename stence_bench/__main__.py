"""``python -m stence_bench``: the same as the ``stence-bench`` command."""

from .cli import main

main()
