"""The student lab: the checklist of the eleven functions students write, the autograder's checks and runner, and the validation checks.

``python -m labcode.grade SUBMISSION...`` grades students' notebooks, one worker
process each (:mod:`labcode.lab.batch`, :mod:`labcode.lab.sandbox`,
:mod:`labcode.lab.worker`, :mod:`labcode.lab.protocol`); :mod:`labcode.lab.runner`
grades in the calling process (the notebook's self-grading cell). The chapters
"Validation", "KL divergence" and the appendix "Checklist" use this package.
Its extra dependencies (``nbformat``, ``jupytext``) read notebooks.
"""
