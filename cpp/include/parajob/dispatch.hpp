// DispatchRegion: the driver <-> worker protocol over the shared-memory region.
//
// Who calls what:
//   driver (one thread, before and after fork): DispatchRegion(...), enqueue(), close(),
//       drain_ended(), take_back(), arm_driver_sleep()/disarm_driver_sleep(), the slot readers.
//   worker (after fork, one thread each): next_batch() (blocks), finish(), set_worker_state().
// Claiming and accepting (docs/design.md §4.4): a worker turns QUEUED(k) into RUNNING(k, p)
// by CAS and records the batch in its worker slot; it writes its result to its own spool,
// then CASes RUNNING(k, p) -> DONE(k, p). The driver's watchdog CASes RUNNING(k, p) -> TIMED_OUT or
// CRASHED. Exactly one of the two CASes wins, which is what makes output exactly-once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "parajob/dispatch_queue.hpp"
#include "parajob/shm_layout.hpp"

namespace parajob {

struct Claim {
    std::int64_t batch = -1;  // -1: the queue is closed and empty, the worker should exit
    std::uint32_t attempt = 0;
};

struct LayoutEntry {
    const char* name;
    std::uint64_t value;
};

class DispatchRegion {
public:
    // Maps a zeroed anonymous shared region for n_batches mini-batches and n_workers worker
    // slots. notify_fd is an eventfd the driver sleeps on (or -1 for none).
    DispatchRegion(std::uint32_t n_batches, std::uint32_t n_workers, int notify_fd);
    ~DispatchRegion();
    DispatchRegion(const DispatchRegion&) = delete;
    DispatchRegion& operator=(const DispatchRegion&) = delete;

    // ---- driver side ----------------------------------------------------------------
    // Marks `batch` QUEUED(attempt) and pushes it; wakes one sleeping worker. Never blocks.
    // Only from PENDING (attempt 0) or from an ended attempt (ERRORED, TIMED_OUT, CRASHED)
    // with a higher attempt number; returns false, and changes nothing, from any other
    // state: a second enqueue of an attempt is refused here, not left to the callers.
    bool enqueue(std::uint32_t batch, std::uint32_t attempt);
    // No more batches will be queued: workers exit once the queue is empty. Wakes all.
    void close();
    // Pops up to `max` batch ids whose attempt ended (DONE or ERRORED). Never blocks.
    std::vector<std::uint32_t> drain_ended(std::size_t max);
    // Takes a RUNNING(attempt, process) batch back as TIMED_OUT or CRASHED; false when the
    // worker's own finish() won the race (the batch is DONE or ERRORED instead).
    bool take_back(std::uint32_t batch, std::uint32_t attempt, std::uint32_t process, BatchState why);
    // A DONE(attempt, process) whose spool record does not validate becomes CRASHED, so
    // that it can be queued again; false when the word is anything else.
    bool reject_done(std::uint32_t batch, std::uint32_t attempt, std::uint32_t process);
    // Marks a batch FAILED for good (retries spent). Only from an ended attempt (ERRORED,
    // TIMED_OUT, CRASHED); false otherwise.
    bool mark_failed(std::uint32_t batch);
    // Once `process` (in worker slot `worker`) is dead and reaped: if its last pop was an
    // attempt it never claimed (it died between the pop and the claim), that batch is
    // taken back as CRASHED and its id returned; else -1.
    std::int64_t reclaim_unclaimed(std::uint32_t worker, std::uint32_t process);
    // Remote executors (executors/dask.py): the driver claims attempts for a whole node under
    // one virtual process; once the node says which of its processes ran one, the attempt
    // passes to that process: RUNNING(attempt, from) -> RUNNING(attempt, to), so that its
    // finish() (and the merge) name the process whose spool holds the record. With in_run,
    // worker slot `worker` also records the batch as the one in its run() (what a death
    // costs). False, nothing changed, when the word is anything else.
    bool hand_over(std::uint32_t worker, std::uint32_t batch, std::uint32_t attempt, std::uint32_t from,
                   std::uint32_t to, bool in_run);
    // Before any fork, on resume: a batch the journal says was accepted becomes DONE with
    // its spool record's place, and is never queued.
    void restore_done(std::uint32_t batch, std::uint32_t attempt, std::uint32_t process, std::uint64_t items_in,
                      std::uint64_t items_out, std::uint64_t spool_offset, std::uint64_t spool_length);
    // Call before sleeping on notify_fd, then check drain_ended() once more before sleeping:
    // a worker that ends an attempt after the flag is visible writes the eventfd.
    void arm_driver_sleep();
    void disarm_driver_sleep();

    // ---- worker side ----------------------------------------------------------------
    // Pops the next batch and claims it for `process` in worker slot `worker`; the worker
    // slot enters LOADING when `loading` (the worker calls set_worker_state(RUNNING) when
    // run() starts, which restarts the phase clock), else RUNNING at once (a plan whose
    // mini-batches take no time to materialise saves a call per batch). Blocks (futex,
    // no spinning) until a batch is available or the region is closed and empty, or until
    // timeout_ms passes (then returns batch -2). Safe to call without the GIL.
    Claim next_batch(std::uint32_t worker, std::uint32_t process, std::int64_t timeout_ms, bool loading = true);
    // Publishes the end of an attempt: DONE when ok (with the spool record's location),
    // else ERRORED with error_code. Returns false when the driver took the batch back first:
    // the spool record is then an orphan and must never be merged. Never blocks. May be
    // called from any thread of the worker (the ResultWriter's flusher thread does): it
    // touches only the batch slot and the done ring, never the worker slot.
    bool publish(std::uint32_t batch, std::uint32_t attempt, std::uint32_t process, bool ok, std::uint64_t items_in,
                 std::uint64_t items_out, std::uint64_t spool_offset, std::uint64_t spool_length,
                 std::int64_t error_code);
    // The worker's main thread, once run() returned: its slot holds no batch and is IDLE
    // (the watchdog stops timing it), whether or not the result is published yet.
    void end_run(std::uint32_t worker);
    // publish() then end_run(): an attempt ended and published at once.
    bool finish(std::uint32_t worker, std::uint32_t batch, std::uint32_t attempt, std::uint32_t process,
                bool ok, std::uint64_t items_in, std::uint64_t items_out, std::uint64_t spool_offset,
                std::uint64_t spool_length, std::int64_t error_code);
    void set_worker_state(std::uint32_t worker, WorkerState state);
    // Called by the driver before forking the process for `worker`.
    void reset_worker(std::uint32_t worker, std::uint32_t process);
    void set_worker_pid(std::uint32_t worker, std::int32_t pid);

    // ---- readers (any process) ------------------------------------------------------
    const RegionHeader& header() const { return *header_; }
    BatchSlot& batch(std::uint32_t i) const { return batches_[i]; }
    WorkerSlot& worker(std::uint32_t i) const { return workers_[i]; }
    std::uint32_t n_batches() const { return header_->n_batches; }
    std::uint32_t n_workers() const { return header_->n_workers; }
    std::uint64_t queued_approx() const { return dispatch_.size_approx(); }
    void* base() const { return base_; }

    // Sizes and offsets of every shared struct, for the layout test against Python's view.
    static std::vector<LayoutEntry> layout_description();

private:
    void wake_workers(int count);
    void notify_driver();

    void* base_ = nullptr;
    std::size_t size_ = 0;
    RegionHeader* header_ = nullptr;
    RingView dispatch_;
    RingView done_;
    BatchSlot* batches_ = nullptr;
    WorkerSlot* workers_ = nullptr;
};

std::int64_t monotonic_ns();

}  // namespace parajob
