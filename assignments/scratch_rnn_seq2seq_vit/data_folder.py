# Supplied by the autograder to hw4_seq2seq.ipynb: lets `from data import ...` find the course's data/data.py.
#
# The notebook's setup cell does `sys.path.append("data")`; that is a call, and the grader does not run calls
# (docs/notebooks.md), so this file does the same before your cells: it appends the `data` folder that sits
# next to the graded notebook (or in the current folder) to sys.path. The grader places the released data/data.py
# there. Standard library only.

import os as _os
import sys as _sys

for _base in (_os.path.dirname(_os.path.abspath(globals().get("__file__") or "")), _os.getcwd()):
    _folder = _os.path.join(_base, "data")
    if _os.path.isfile(_os.path.join(_folder, "data.py")) and _folder not in _sys.path:
        _sys.path.append(_folder)
