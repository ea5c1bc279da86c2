"""``python -m labcode.grade PATH``: the lab's autograder (:mod:`labcode.lab.runner`), under the name the lab hands out.

The student edition's self-grading cell imports :func:`grade_namespace` and
:func:`format_report` from here.
"""

from __future__ import annotations

import sys

from .lab.runner import format_report, grade_namespace, grade_path, main

__all__ = ["format_report", "grade_namespace", "grade_path", "main"]

if __name__ == "__main__":
    # Run the imported module's main, so that a notebook cell that imports
    # labcode.grade sees the same module state (labcode.lab.runner._executing_student_code).
    from labcode.lab.runner import main as _main

    sys.exit(_main())
