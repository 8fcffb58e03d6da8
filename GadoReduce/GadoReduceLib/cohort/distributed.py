"""Cohort cases as tasks of a Dask graph: an embedded ``LocalCluster`` of worker processes on this machine, or
an existing cluster (``--scheduler tcp://host:8786``: ``dask scheduler`` / ``dask worker``, or dask-jobqueue on
SLURM). Every worker loads the model once and runs whole cases with the same pipeline as a serial run, so the
outputs are the same. Workers must see the input and output paths (a shared file system on a cluster)."""

from __future__ import annotations

import os

CASE_MEMORY_GB = 4.0
"""Memory one case takes at most with the shipped model (a 240x240x155 BraTS pair peaks at about 3 GB,
README's performance section): ``--workers auto`` starts no more workers than the free memory holds."""

def resolve_workers(setting, cases: int) -> int:
    """Worker processes for ``--workers`` ("auto": one per 2 cores, at most one per CASE_MEMORY_GB of free memory
    and one per case; else a positive integer). 1 means a serial run in this process."""
    if setting in (None, "", "auto"):
        from ..inference.predict import free_memory_bytes
        import torch
        by_memory = int(free_memory_bytes(torch.device("cpu")) / 2 ** 30 // CASE_MEMORY_GB)
        return max(1, min(cases, (os.cpu_count() or 1) // 2, by_memory))
    try:
        workers = int(setting)
    except (TypeError, ValueError):
        workers = 0
    if workers < 1:
        raise ValueError(f"--workers {setting!r}: give auto or a number of worker processes (1 or more)")
    return workers


def run_on_dask(cases: list, task, options: dict, log, scheduler: str | None = None, workers: int = 2) -> dict:
    """Run ``task(case, options, threads)`` for every case as a Dask task (on ``scheduler``, else a LocalCluster of
    ``workers`` processes; ``threads``: the cores per worker on the local cluster, None on a scheduler's); returns
    {case name: the task's summary row}, logging each case as it finishes."""
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ValueError("--scheduler and --workers need Dask: pip install dask distributed") from None
    cluster = None
    if scheduler:
        log(f"sending {len(cases)} cases to the Dask scheduler at {scheduler}")
        client = Client(scheduler, timeout="30s")
    else:
        log(f"starting a local Dask cluster of {workers} worker processes for {len(cases)} cases")
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    rows = {}
    try:
        threads = None if scheduler else max(1, (os.cpu_count() or 1) // workers)  # no oversubscribed cores
        futures = {client.submit(task, case, options, threads, key=f"gadoreduce-{case.name}", pure=False): case
                   for case in cases}
        for number, future in enumerate(as_completed(futures), start=1):
            case = futures[future]
            row = future.result()
            rows[case.name] = row
            log(f"[{number}/{len(cases)} finished] {case.name}: {row['status']}"
                + (f" ({row['error']})" if row["error"] else ""))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return rows
