"""parajob against its peers on issue 13's four workloads (bench/test_bench_peers.py).

    workloads.py   seeded inputs, made once under $TMPDIR/parajob-bench-peers-*
         |
         v
    work_*.py      the work itself: one function per unit (file, image, byte range,
         |         row-group range, group); parajob's entry scripts and every peer call it
         v
    jobs.py        parajob's side: a pipeline YAML + entry script per workload
    runners.py     the peers' side: `python -m peers.runners RUNNER WORKLOAD ...`, one
         |         fresh process per run (serial, Pool, ProcessPoolExecutor, joblib,
         |         Dask, Ray), each lists / reads its input itself and writes its lines
         v
    measure.py     launch one runner (wall time from Popen to exit, the launched
         |         process's peak RSS), check its lines against serial's (as a multiset)
         v
    results.py     the table (text for the terminal, bench/RESULTS.md from the JSON)

Invariant: every runner of a workload writes the same multiset of lines as the serial
loop, or the benchmark fails (no runner wins by dropping or duplicating work).
"""
