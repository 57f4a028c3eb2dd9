"""Several run directories → calibrated agreement, what moved, aligned maps, report.

``compare(folders, out, cfg)`` (``core.py``) reads finished runs (``runs.py``), measures every
pair (``pairs.py`` with ``agreement.py``: mutual k-NN agreement calibrated against shuffles
of the token correspondence, and per token what moved), optionally lays the later runs out
again from the first run's map (``aligned.py``), draws (``pictures.py``, ``moved.py``) and
writes the report (``report.py``).
"""

from job.compare.core import compare
from job.compare.runs import CompareError, output_dir, planned

__all__ = ["CompareError", "compare", "output_dir", "planned"]
