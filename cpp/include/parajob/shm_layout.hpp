// The shared-memory region that the driver and its forked workers share.
//
// One anonymous MAP_SHARED mapping, made by the driver before the first fork, so every
// worker inherits it at the same address. Everything in it is plain data addressed by
// index or offset, never by pointer (docs/design.md §4.3):
//
//   +--------------------+ 0
//   | RegionHeader       |   magic, sizes, offsets, closing flag, futex words, driver wake
//   +--------------------+ header.dispatch_offset
//   | RingHeader + cells |   dispatch queue: batch ids waiting for a worker (driver pushes)
//   +--------------------+ header.done_offset
//   | RingHeader + cells |   done queue: batch ids whose attempt ended (workers push)
//   +--------------------+ header.batches_offset
//   | BatchSlot[n]       |   one per mini-batch: state word, times, counts, spool location
//   +--------------------+ header.workers_offset
//   | WorkerSlot[m]      |   one per worker process: pid, heartbeat, current mini-batch
//   +--------------------+ header.total_size
//
// python/parajob/runtime/shm_view.py mirrors these structs as numpy dtypes; a test checks that
// both agree on every size and offset (layout_description() below).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace parajob {

inline constexpr std::uint64_t kRegionMagic = 0x50524a4f42534d31ULL;  // "PRJOBSM1"
inline constexpr std::uint32_t kRegionVersion = 1;

// Every field that crosses processes is a std::atomic; a lock-based atomic would put a
// process-private mutex in shared memory, so insist that these are lock-free.
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic<std::int64_t>::is_always_lock_free);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
static_assert(std::atomic<std::int32_t>::is_always_lock_free);

// States of a mini-batch. Only the transitions below happen:
//   driver:  PENDING -> QUEUED(0); ERRORED/TIMED_OUT/CRASHED(k) -> QUEUED(j > k) | FAILED
//            (enqueue() and mark_failed() CAS from exactly these states and refuse any
//            other: an attempt can never be queued twice, whoever asks)
//   worker:  QUEUED(k) -> RUNNING(k, p) -> FINISHING(k, p) -> DONE(k, p) | ERRORED(k, p)
//   driver:  RUNNING(k, p) -> TIMED_OUT(k, p) | CRASHED(k, p)   (CAS: races the worker)
//            FINISHING(k, p) -> CRASHED(k, p)                     (only once p is reaped)
//            QUEUED(k) -> CRASHED(k)   popped by p but never claimed (only once p is reaped)
// FINISHING exists so that a worker writes the result fields only after it has won the
// batch: a worker that lost the race to the watchdog can never scribble over the fields of
// the retry that another worker is running.
enum class BatchState : std::uint8_t {
    kPending = 0,   // planned, never queued
    kQueued = 1,    // in the dispatch queue, waiting for attempt `attempt`
    kRunning = 2,   // claimed by process `process`
    kDone = 3,      // accepted: its spool record is the one that reaches the output
    kErrored = 4,   // run() raised or returned a wrong type; the driver decides
    kTimedOut = 5,  // the driver's watchdog took it back; the worker is being killed
    kCrashed = 6,   // the worker holding it died
    kFailed = 7,    // failed for good (retries spent)
    kFinishing = 8, // the worker won the batch and is filling in its results (nanoseconds)
};

// The batch state word packs (state, attempt, process) so that one CAS decides who owns
// a mini-batch: state in bits 0-7, attempt in bits 8-31, process id in bits 32-63.
struct StateWord {
    BatchState state;
    std::uint32_t attempt;  // 0 for the first try
    std::uint32_t process;  // unique per forked worker process (never reused in a run)

    static constexpr std::uint64_t pack(BatchState s, std::uint32_t attempt, std::uint32_t process) {
        return static_cast<std::uint64_t>(s) | (static_cast<std::uint64_t>(attempt & 0xFFFFFFu) << 8) |
               (static_cast<std::uint64_t>(process) << 32);
    }
    static constexpr StateWord unpack(std::uint64_t w) {
        return {static_cast<BatchState>(w & 0xFFu), static_cast<std::uint32_t>((w >> 8) & 0xFFFFFFu),
                static_cast<std::uint32_t>(w >> 32)};
    }
};

struct alignas(64) RegionHeader {
    std::uint64_t magic;
    std::uint32_t version;
    std::uint32_t n_batches;
    std::uint32_t n_workers;
    std::uint32_t ring_capacity;  // power of two >= n_batches: a batch id sits in a ring at most once
    std::uint64_t dispatch_offset;
    std::uint64_t done_offset;
    std::uint64_t batches_offset;
    std::uint64_t workers_offset;
    std::uint64_t total_size;
    // Futex word that idle workers sleep on; the driver bumps it after pushing or closing.
    alignas(64) std::atomic<std::uint32_t> dispatch_seq;
    std::atomic<std::uint32_t> dispatch_sleepers;  // workers inside futex_wait (skip the wake syscall when 0)
    std::atomic<std::uint32_t> closing;            // 1: no more pushes; workers exit once the queue is empty
    // Set by the driver just before it sleeps; a worker that ends an attempt then writes the
    // driver's eventfd. While the driver is awake nobody writes it (no syscall per batch).
    alignas(64) std::atomic<std::uint32_t> driver_sleeping;
    std::atomic<std::int32_t> notify_fd;
    // (No job-wide counters here: a counter every finish() bumps is a cache line all
    // workers fight over; progress is summed from the per-worker slots instead.)
};

inline constexpr std::uint64_t kPoppedValid = 1ULL << 63;

// Dispatch ring values carry the attempt with the batch id, so that a popped value names
// exactly one attempt (a stale value can never claim a later attempt of the same batch).
inline constexpr std::uint64_t pack_dispatch(std::uint32_t batch, std::uint32_t attempt) {
    return static_cast<std::uint64_t>(attempt) << 32 | batch;
}

// A cell of the bounded MPMC ring (Vyukov). `sequence` tells producers and consumers whose
// turn the cell is; `value` is a batch id.
struct RingCell {
    std::atomic<std::uint64_t> sequence;
    std::uint64_t value;
};

struct alignas(64) RingHeader {
    std::atomic<std::uint64_t> enqueue_pos;
    alignas(64) std::atomic<std::uint64_t> dequeue_pos;
    alignas(64) std::uint64_t mask;  // capacity - 1
    // RingCell cells[capacity] follow, 64-byte aligned.
};

struct alignas(64) BatchSlot {
    std::atomic<std::uint64_t> word;        // StateWord::pack(...)
    std::atomic<std::int64_t> start_ns;     // CLOCK_MONOTONIC when the current attempt was claimed
    std::atomic<std::int64_t> end_ns;       // when it ended (DONE/ERRORED)
    std::atomic<std::uint64_t> items_in;
    std::atomic<std::uint64_t> items_out;
    std::atomic<std::uint64_t> spool_offset;  // of the DONE attempt's record in spool `process`
    std::atomic<std::uint64_t> spool_length;
    std::atomic<std::int64_t> error_code;     // worker-defined reason for ERRORED
};
static_assert(sizeof(BatchSlot) == 64);

enum class WorkerState : std::uint32_t {
    kStarting = 0,
    kInit = 1,      // inside init()
    kIdle = 2,      // waiting for a mini-batch
    kRunning = 3,   // inside run() (deadline: retry_settings.timeout)
    kShutdown = 4,  // inside shutdown()
    kExited = 5,
    kInitFailed = 6,
    kLoading = 7,   // claimed a mini-batch, materialising it (deadline: task_overhead_timeout)
};

struct alignas(64) WorkerSlot {
    std::atomic<std::int32_t> pid;
    std::atomic<std::uint32_t> process;       // unique id of the process now in this slot
    std::atomic<std::uint32_t> state;         // WorkerState
    std::atomic<std::uint32_t> reserved;
    std::atomic<std::int64_t> heartbeat_ns;   // last sign of life (state change, claim, finish)
    std::atomic<std::int64_t> current_batch;  // batch id held, -1 when none: the acknowledgement
                                              // that makes a per-task timeout possible (pebble)
    std::atomic<std::int64_t> phase_start_ns; // when the current state (init / run) began
    std::atomic<std::uint64_t> batches_done;
    // The last (batch, attempt) this process popped from the dispatch ring, packed as
    // kPoppedValid | attempt << 32 | batch; 0 before the first pop. Stored right after the
    // pop, before the claim: a worker that dies between the two leaves QUEUED(attempt) with
    // this record, and only then may the driver take the batch back (reclaim_unclaimed()).
    std::atomic<std::uint64_t> popped;
};
static_assert(sizeof(WorkerSlot) == 64);

}  // namespace parajob
