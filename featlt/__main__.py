"""``python -m featlt``: the same as the ``featlt`` console script."""

from featlt.cli import main

main(prog_name="featlt")
