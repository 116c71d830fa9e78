"""Executors decide where a class is graded; both give the same results and both resume.

- ``local`` (:mod:`dlgrade.executors.local`): this machine, a pool of ``-j N`` sandboxed workers.
- ``slurm`` (:mod:`dlgrade.executors.slurm`): a Slurm job array on a cluster, each task running the
  same engine on its shard into a shared results folder; :mod:`dlgrade.executors.status` reports how
  a run is going from the results folder and the scheduler.

A student whose results are complete is not graded again (``--force`` regrades).
"""

EXECUTORS = ("local", "slurm")
