"""The runtime: one driver process, many forked workers, one shared-memory region.

Data flow of one parallel step (who writes what; arrows are the direction data moves):

    job.run_parallel_step (a YAML step) | map_step.planned_step (parajob.map_batches)
      | -> job.run_planned(PlannedStep): the same path from here on
      | plan (data/): FileList + [begin, end) ranges        -- built before fork, inherited
      | DispatchRegion (C++, MAP_SHARED, made before fork)
      v
    +------- engine (engine.py, one thread) + executor (executors/local.py: fork) ---------+
    | enqueue(batch, attempt): CAS, refused twice -> dispatch ring ---------------------+ |
    | drain_ended() <------------------------------- done ring <--------------------+   | |
    | reads batch slots (numpy, shm_view.py); SpoolChecker: CRC32 of DONE records  |   | |
    | executor.expired(): scan_expired() -> engine: take_back() CAS -> kill        |   | |
    | executor.wait(): pidfds -> WorkerDied -> settle held batches -> replacement  |   | |
    | _end_attempt(): the one retry/fail decision per (batch, attempt)             |   | |
    | journal.py: fsync spools, then append accepted batches (resume)              |   | |
    | executors/reaping.py: subreaper + janitor; kills what workers left at the end|   | |
    +-------------------------------------------------------------------------------|---|-+
                                                                                    |   |
    +------------------------- worker (worker.py, forked) ---------------------------|---v-+
    | next_batch(): pop (batch, k); slot.popped = (batch, k); CAS QUEUED(k) ->      |     |
    |               RUNNING(k, me); worker slot = batch                             |     |
    | materialise -> run(mini_batch) -> count + format -> end_run(): slot IDLE      |     |
    |   (map_batches: run() is the caller's fn, inherited; "format" is a pickle)   |     |
    | ResultWriter (C++): framed record, CRC32, in its own spool (fd >= 10000;     |     |
    |               gathered for quick runs: its flusher thread publishes them     |     |
    |               within 5 ms)                                                    |     |
    | publish(): CAS RUNNING(k, me) -> FINISHING -> DONE/ERRORED + fields -----------+     |
    +-------------------------------------------------------------------------------------+
      |
      v
    job.merge_output: DONE records only, checked, in batch order (C++) -> append_row
    output, written atomically; report.py: job_result.txt, processed_mini-batches.csv

The engine (policy) never imports the worker or fork code: executors/base.py is all it
knows of where attempts run. executors/serial.py runs the same worker code in the calling
thread instead (--serial), with one worker slot.

The single CAS in publish() against take_back() in the watchdog decides whether an attempt
counts: a worker that loses it leaves an orphan record that nothing points at, which is
what makes the output exactly-once.
"""
