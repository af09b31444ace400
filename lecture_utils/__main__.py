"""``python -m lecture_utils ...``: the course's command line (``lecture_utils.course.cli``)."""

import sys

from lecture_utils.course.cli import main

if __name__ == "__main__":
    sys.exit(main())
