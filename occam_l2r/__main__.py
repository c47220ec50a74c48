"""``python -m occam_l2r`` entry point: dispatches to :func:`occam_l2r.cli.main`.

Called without arguments, :func:`~occam_l2r.cli.main` reads ``sys.argv`` and prints a known
error as one message with exit status 3 (``--debug`` or ``OCCAM_L2R_DEBUG=1``: the traceback).
Lightning relaunches this module with the same ``sys.argv`` for the ranks > 0 of a DDP run.
"""

from occam_l2r.cli import main

if __name__ == "__main__":
    main()
