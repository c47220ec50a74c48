"""``python -m occam_l2r`` entry point: dispatches to :func:`occam_l2r.cli.main`."""

from occam_l2r.cli import main

if __name__ == "__main__":
    main()
