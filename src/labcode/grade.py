"""``python -m labcode.grade SUBMISSION...``: the lab's autograder, under the name the lab hands out.

The command line is :func:`labcode.lab.batch.main`: each submission is graded
in a worker process of its own (:mod:`labcode.lab.sandbox`). The student
edition's self-grading cell imports :func:`grade_namespace` and
:func:`format_report` from here; they grade in the calling process
(:mod:`labcode.lab.runner`).
"""

from __future__ import annotations

import sys

from .lab.batch import main
from .lab.runner import format_report, grade_namespace, grade_path
from .lab.sandbox import grade_submission

__all__ = ["format_report", "grade_namespace", "grade_path", "grade_submission", "main"]

if __name__ == "__main__":
    sys.exit(main())
