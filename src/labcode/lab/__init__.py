"""The student lab: the checklist of the eleven functions students write, the autograder's checks and runner, and the validation checks.

``python -m labcode.grade PATH`` grades a student's notebook (:mod:`labcode.lab.runner`);
the chapters "Validation", "KL divergence" and the appendix "Checklist" use this package.
Its extra dependencies (``nbformat``, ``jupytext``) read notebooks.
"""
