#include "parajob/dispatch.hpp"

#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstring>
#include <ctime>
#include <new>
#include <stdexcept>
#include <system_error>

namespace parajob {
namespace {

std::uint64_t round_up(std::uint64_t n, std::uint64_t to) { return (n + to - 1) / to * to; }

std::uint64_t next_power_of_two(std::uint64_t n) {
    std::uint64_t p = 1;
    while (p < n) p <<= 1;
    return p;
}

// Shared (not FUTEX_PRIVATE) futex operations: the word lives in a MAP_SHARED mapping that
// several processes use, and private futexes only match waiters of one address space.
void futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t expected, std::int64_t timeout_ns) {
    timespec ts{};
    timespec* tsp = nullptr;
    if (timeout_ns >= 0) {
        ts.tv_sec = static_cast<time_t>(timeout_ns / 1'000'000'000);
        ts.tv_nsec = static_cast<long>(timeout_ns % 1'000'000'000);
        tsp = &ts;
    }
    // Returns at once with EAGAIN when *word != expected: that closes the lost-wake-up race.
    syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT, expected, tsp, nullptr, 0);
}

void futex_wake(std::atomic<std::uint32_t>* word, int count) {
    syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAKE, count, nullptr, nullptr, 0);
}

}  // namespace

std::int64_t monotonic_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);  // the clock Python's time.monotonic_ns() reads
    return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

DispatchRegion::DispatchRegion(std::uint32_t n_batches, std::uint32_t n_workers, int notify_fd) {
    if (n_workers == 0) throw std::invalid_argument("a dispatch region needs at least one worker");
    // A batch id is in a ring at most once at a time (it is requeued only after its attempt
    // ended and was drained), so rings of >= n_batches cells can never be full.
    const std::uint64_t capacity = next_power_of_two(n_batches < 2 ? 2 : n_batches);
    const std::uint64_t dispatch_offset = round_up(sizeof(RegionHeader), 64);
    const std::uint64_t done_offset = round_up(dispatch_offset + RingView::bytes_for(capacity), 64);
    const std::uint64_t batches_offset = round_up(done_offset + RingView::bytes_for(capacity), 64);
    const std::uint64_t workers_offset = round_up(batches_offset + std::uint64_t{n_batches} * sizeof(BatchSlot), 64);
    const std::uint64_t total = round_up(workers_offset + std::uint64_t{n_workers} * sizeof(WorkerSlot), 4096);

    // Anonymous MAP_SHARED: inherited by fork() at the same address, gone when the last
    // process unmaps it; no /dev/shm name to leak when the driver is SIGKILLed.
    void* base = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap of the dispatch region");
    base_ = base;
    size_ = total;
    auto* bytes = static_cast<char*>(base);

    header_ = new (bytes) RegionHeader();
    header_->magic = kRegionMagic;
    header_->version = kRegionVersion;
    header_->n_batches = n_batches;
    header_->n_workers = n_workers;
    header_->ring_capacity = static_cast<std::uint32_t>(capacity);
    header_->dispatch_offset = dispatch_offset;
    header_->done_offset = done_offset;
    header_->batches_offset = batches_offset;
    header_->workers_offset = workers_offset;
    header_->total_size = total;
    header_->notify_fd.store(notify_fd, std::memory_order_relaxed);

    dispatch_ = RingView::initialise(bytes + dispatch_offset, capacity);
    done_ = RingView::initialise(bytes + done_offset, capacity);
    batches_ = reinterpret_cast<BatchSlot*>(bytes + batches_offset);
    workers_ = reinterpret_cast<WorkerSlot*>(bytes + workers_offset);
    // The mapping is zero-filled: PENDING batch slots; worker slots need current_batch = -1.
    for (std::uint32_t w = 0; w < n_workers; ++w) workers_[w].current_batch.store(-1, std::memory_order_relaxed);
}

DispatchRegion::~DispatchRegion() {
    if (base_ != nullptr) munmap(base_, size_);
}

// ---- driver side --------------------------------------------------------------------

namespace {
// States from which the driver may queue a batch again or fail it: nobody else touches it.
bool ended(BatchState s) {
    return s == BatchState::kErrored || s == BatchState::kTimedOut || s == BatchState::kCrashed;
}
}  // namespace

bool DispatchRegion::enqueue(std::uint32_t batch, std::uint32_t attempt) {
    if (batch >= n_batches()) throw std::out_of_range("batch id out of range");
    auto& word = batches_[batch].word;
    std::uint64_t seen = word.load(std::memory_order_acquire);
    const StateWord now = StateWord::unpack(seen);
    const bool fresh = now.state == BatchState::kPending && attempt == 0;
    if (!fresh && !(ended(now.state) && attempt > now.attempt)) return false;
    // acq_rel CAS, not a store: the word can only leave an ended state through the driver,
    // but a CAS makes "refuse a second enqueue" hold even for a caller that races itself.
    // Its release half publishes QUEUED before the id can be popped (the ring's release
    // store orders it too); pairs with the acquire load in next_batch().
    if (!word.compare_exchange_strong(seen, StateWord::pack(BatchState::kQueued, attempt, 0),
                                      std::memory_order_acq_rel)) {
        return false;
    }
    // Cannot fail: a batch is in the ring at most once (it left QUEUED before it can be
    // queued again), and the ring has >= n_batches cells.
    if (!dispatch_.try_push(pack_dispatch(batch, attempt))) throw std::logic_error("dispatch ring full");
    wake_workers(1);
    return true;
}

void DispatchRegion::close() {
    // seq_cst: ordered before the dispatch_seq bump in wake_workers, which sleepers re-check.
    header_->closing.store(1, std::memory_order_seq_cst);
    wake_workers(INT_MAX);
}

void DispatchRegion::wake_workers(int count) {
    // seq_cst on both the bump and the sleeper count (paired with the seq_cst increment in
    // next_batch): either we see the sleeper and wake it, or it sees the new sequence and
    // its futex_wait returns at once. Skips the syscall when nobody sleeps.
    header_->dispatch_seq.fetch_add(1, std::memory_order_seq_cst);
    if (header_->dispatch_sleepers.load(std::memory_order_seq_cst) > 0) futex_wake(&header_->dispatch_seq, count);
}

std::vector<std::uint32_t> DispatchRegion::drain_ended(std::size_t max) {
    std::vector<std::uint32_t> ended;
    std::uint64_t id = 0;
    while (ended.size() < max && done_.try_pop(id)) ended.push_back(static_cast<std::uint32_t>(id));
    return ended;
}

bool DispatchRegion::take_back(std::uint32_t batch, std::uint32_t attempt, std::uint32_t process, BatchState why) {
    auto& word = batches_[batch].word;
    const std::uint64_t target = StateWord::pack(why, attempt, process);
    std::uint64_t expected = StateWord::pack(BatchState::kRunning, attempt, process);
    // acq_rel: wins or loses against the worker's CAS in finish(); acquire so that a loss
    // shows the worker's final state.
    if (word.compare_exchange_strong(expected, target, std::memory_order_acq_rel)) return true;
    if (why == BatchState::kCrashed) {
        // A worker that died inside finish() left FINISHING: its fields may be half-written.
        expected = StateWord::pack(BatchState::kFinishing, attempt, process);
        return word.compare_exchange_strong(expected, target, std::memory_order_acq_rel);
    }
    return false;
}

bool DispatchRegion::reject_done(std::uint32_t batch, std::uint32_t attempt, std::uint32_t process) {
    if (batch >= n_batches()) throw std::out_of_range("batch id out of range");
    std::uint64_t expected = StateWord::pack(BatchState::kDone, attempt, process);
    // acq_rel: the driver owns a DONE batch; the CAS keeps the transition one-way.
    return batches_[batch].word.compare_exchange_strong(
        expected, StateWord::pack(BatchState::kCrashed, attempt, process), std::memory_order_acq_rel);
}

bool DispatchRegion::mark_failed(std::uint32_t batch) {
    auto& word = batches_[batch].word;
    std::uint64_t seen = word.load(std::memory_order_acquire);
    const StateWord now = StateWord::unpack(seen);
    if (!ended(now.state)) return false;
    // release: pairs with the acquire loads of the driver's slot readers (merge, progress).
    return word.compare_exchange_strong(seen, StateWord::pack(BatchState::kFailed, now.attempt, now.process),
                                        std::memory_order_acq_rel);
}

std::int64_t DispatchRegion::reclaim_unclaimed(std::uint32_t worker, std::uint32_t process) {
    WorkerSlot& me = workers_[worker];
    if (me.process.load(std::memory_order_relaxed) != process) return -1;
    // acquire: pairs with the release store of popped in next_batch().
    const std::uint64_t popped = me.popped.load(std::memory_order_acquire);
    if ((popped & kPoppedValid) == 0) return -1;
    const auto batch = static_cast<std::uint32_t>(popped & 0xFFFFFFFFu);
    const auto attempt = static_cast<std::uint32_t>((popped >> 32) & 0xFFFFFFu);
    if (batch >= n_batches()) return -1;
    // Still QUEUED(attempt): that value left the ring with this process and was never
    // claimed (a claimed attempt is RUNNING or later; a requeue has a higher attempt).
    std::uint64_t expected = StateWord::pack(BatchState::kQueued, attempt, 0);
    if (!batches_[batch].word.compare_exchange_strong(expected, StateWord::pack(BatchState::kCrashed, attempt, process),
                                                      std::memory_order_acq_rel)) {
        return -1;
    }
    return batch;
}

bool DispatchRegion::hand_over(std::uint32_t worker, std::uint32_t batch, std::uint32_t attempt, std::uint32_t from,
                              std::uint32_t to, bool in_run) {
    if (batch >= n_batches()) throw std::out_of_range("batch id out of range");
    if (worker >= n_workers()) throw std::out_of_range("worker index out of range");
    std::uint64_t expected = StateWord::pack(BatchState::kRunning, attempt, from);
    // acq_rel: like take_back(), one CAS decides; the driver's own thread is the only caller.
    if (!batches_[batch].word.compare_exchange_strong(expected, StateWord::pack(BatchState::kRunning, attempt, to),
                                                      std::memory_order_acq_rel)) {
        return false;
    }
    if (in_run) workers_[worker].current_batch.store(static_cast<std::int64_t>(batch), std::memory_order_release);
    return true;
}

void DispatchRegion::restore_done(std::uint32_t batch, std::uint32_t attempt, std::uint32_t process,
                                  std::uint64_t items_in, std::uint64_t items_out, std::uint64_t spool_offset,
                                  std::uint64_t spool_length) {
    if (batch >= n_batches()) throw std::out_of_range("batch id out of range");
    BatchSlot& slot = batches_[batch];
    slot.items_in.store(items_in, std::memory_order_relaxed);
    slot.items_out.store(items_out, std::memory_order_relaxed);
    slot.spool_offset.store(spool_offset, std::memory_order_relaxed);
    slot.spool_length.store(spool_length, std::memory_order_relaxed);
    // release: publishes the fields above (fork() publishes them to workers in any case).
    slot.word.store(StateWord::pack(BatchState::kDone, attempt, process), std::memory_order_release);
}

void DispatchRegion::arm_driver_sleep() {
    // seq_cst: pairs with the seq_cst load in notify_driver(); the driver drains once more
    // after arming, so an attempt that ended before the flag was seen is not missed.
    header_->driver_sleeping.store(1, std::memory_order_seq_cst);
}

void DispatchRegion::disarm_driver_sleep() { header_->driver_sleeping.store(0, std::memory_order_relaxed); }

void DispatchRegion::notify_driver() {
    const int fd = header_->notify_fd.load(std::memory_order_relaxed);
    if (fd < 0) return;
    // exchange: only the first worker to see the flag pays for the write() syscall.
    if (header_->driver_sleeping.load(std::memory_order_seq_cst) != 0 &&
        header_->driver_sleeping.exchange(0, std::memory_order_seq_cst) != 0) {
        const std::uint64_t one = 1;
        [[maybe_unused]] ssize_t n = write(fd, &one, sizeof one);  // eventfd: never blocks below 2^64-1
    }
}

// ---- worker side --------------------------------------------------------------------

Claim DispatchRegion::next_batch(std::uint32_t worker, std::uint32_t process, std::int64_t timeout_ms,
                                 bool loading) {
    WorkerSlot& me = workers_[worker];
    const std::int64_t deadline = timeout_ms < 0 ? -1 : monotonic_ns() + timeout_ms * 1'000'000;
    for (;;) {
        // acquire: pairs with the seq_cst bump in wake_workers(); read before trying the ring
        // so that a push after our failed try changes the word and futex_wait returns.
        const std::uint32_t seq = header_->dispatch_seq.load(std::memory_order_acquire);
        std::uint64_t value = 0;
        if (dispatch_.try_pop(value)) {
            // The acknowledgement first: if we die after the pop, the driver finds the
            // attempt here and takes it back (reclaim_unclaimed(): QUEUED, in no ring).
            // release: pairs with the acquire load in reclaim_unclaimed().
            me.popped.store(kPoppedValid | value, std::memory_order_release);
            const auto id = static_cast<std::uint32_t>(value & 0xFFFFFFFFu);
            const auto popped_attempt = static_cast<std::uint32_t>(value >> 32);
            me.current_batch.store(static_cast<std::int64_t>(id), std::memory_order_release);
            BatchSlot& slot = batches_[id];
            std::uint64_t word = slot.word.load(std::memory_order_acquire);
            const StateWord queued = StateWord::unpack(word);
            if (queued.state == BatchState::kQueued && queued.attempt == popped_attempt &&
                // acq_rel: the claim; pairs with take_back() and with the driver's readers.
                slot.word.compare_exchange_strong(word, StateWord::pack(BatchState::kRunning, queued.attempt, process),
                                                  std::memory_order_acq_rel)) {
                const std::int64_t now = monotonic_ns();
                slot.start_ns.store(now, std::memory_order_relaxed);
                me.phase_start_ns.store(now, std::memory_order_relaxed);
                me.heartbeat_ns.store(now, std::memory_order_relaxed);
                // release: the watchdog that sees LOADING/RUNNING also sees phase_start_ns.
                me.state.store(static_cast<std::uint32_t>(loading ? WorkerState::kLoading : WorkerState::kRunning),
                               std::memory_order_release);
                return {static_cast<std::int64_t>(id), queued.attempt};
            }
            // Not this attempt's turn any more (cannot happen while enqueue() refuses
            // duplicates; kept so that a stale value could never claim a batch).
            me.current_batch.store(-1, std::memory_order_release);
            continue;
        }
        if (header_->closing.load(std::memory_order_acquire) != 0) return {-1, 0};
        std::int64_t remaining = -1;
        if (deadline >= 0) {
            remaining = deadline - monotonic_ns();
            if (remaining <= 0) return {-2, 0};
        }
        header_->dispatch_sleepers.fetch_add(1, std::memory_order_seq_cst);
        futex_wait(&header_->dispatch_seq, seq, remaining);
        header_->dispatch_sleepers.fetch_sub(1, std::memory_order_seq_cst);
    }
}

bool DispatchRegion::publish(std::uint32_t batch, std::uint32_t attempt, std::uint32_t process, bool ok,
                             std::uint64_t items_in, std::uint64_t items_out, std::uint64_t spool_offset,
                             std::uint64_t spool_length, std::int64_t error_code) {
    BatchSlot& slot = batches_[batch];
    std::uint64_t expected = StateWord::pack(BatchState::kRunning, attempt, process);
    // acq_rel: the one CAS that decides between this worker and the watchdog's take_back().
    const bool won = slot.word.compare_exchange_strong(
        expected, StateWord::pack(BatchState::kFinishing, attempt, process), std::memory_order_acq_rel);
    if (!won) return false;
    slot.items_in.store(items_in, std::memory_order_relaxed);
    slot.items_out.store(items_out, std::memory_order_relaxed);
    slot.spool_offset.store(spool_offset, std::memory_order_relaxed);
    slot.spool_length.store(spool_length, std::memory_order_relaxed);
    slot.error_code.store(error_code, std::memory_order_relaxed);
    slot.end_ns.store(monotonic_ns(), std::memory_order_relaxed);
    // release: publishes the fields above; pairs with the acquire load of the word by
    // the driver after drain_ended().
    slot.word.store(StateWord::pack(ok ? BatchState::kDone : BatchState::kErrored, attempt, process),
                    std::memory_order_release);
    if (!done_.try_push(batch)) throw std::logic_error("done ring full: an attempt ended twice");
    notify_driver();
    return true;
}

void DispatchRegion::end_run(std::uint32_t worker) {
    WorkerSlot& me = workers_[worker];
    me.current_batch.store(-1, std::memory_order_release);
    me.heartbeat_ns.store(monotonic_ns(), std::memory_order_relaxed);
    me.batches_done.fetch_add(1, std::memory_order_relaxed);
    // release: the watchdog that sees IDLE stops timing this worker.
    me.state.store(static_cast<std::uint32_t>(WorkerState::kIdle), std::memory_order_release);
}

bool DispatchRegion::finish(std::uint32_t worker, std::uint32_t batch, std::uint32_t attempt, std::uint32_t process,
                            bool ok, std::uint64_t items_in, std::uint64_t items_out, std::uint64_t spool_offset,
                            std::uint64_t spool_length, std::int64_t error_code) {
    const bool won = publish(batch, attempt, process, ok, items_in, items_out, spool_offset, spool_length, error_code);
    end_run(worker);
    return won;
}

void DispatchRegion::set_worker_state(std::uint32_t worker, WorkerState state) {
    WorkerSlot& me = workers_[worker];
    const std::int64_t now = monotonic_ns();
    me.phase_start_ns.store(now, std::memory_order_relaxed);
    me.heartbeat_ns.store(now, std::memory_order_relaxed);
    // release: phase_start_ns is visible to the watchdog with the new state.
    me.state.store(static_cast<std::uint32_t>(state), std::memory_order_release);
}

void DispatchRegion::reset_worker(std::uint32_t worker, std::uint32_t process) {
    WorkerSlot& slot = workers_[worker];
    slot.pid.store(0, std::memory_order_relaxed);
    slot.process.store(process, std::memory_order_relaxed);
    slot.current_batch.store(-1, std::memory_order_relaxed);
    slot.batches_done.store(0, std::memory_order_relaxed);
    slot.popped.store(0, std::memory_order_relaxed);
    slot.phase_start_ns.store(monotonic_ns(), std::memory_order_relaxed);
    slot.heartbeat_ns.store(monotonic_ns(), std::memory_order_relaxed);
    // release: the fields above are set before the worker (forked next) reads them.
    slot.state.store(static_cast<std::uint32_t>(WorkerState::kStarting), std::memory_order_release);
}

void DispatchRegion::set_worker_pid(std::uint32_t worker, std::int32_t pid) {
    workers_[worker].pid.store(pid, std::memory_order_release);
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winvalid-offsetof"
std::vector<LayoutEntry> DispatchRegion::layout_description() {
    return {
        {"RegionHeader.size", sizeof(RegionHeader)},
        {"RegionHeader.n_batches", offsetof(RegionHeader, n_batches)},
        {"RegionHeader.dispatch_offset", offsetof(RegionHeader, dispatch_offset)},
        {"RegionHeader.batches_offset", offsetof(RegionHeader, batches_offset)},
        {"RegionHeader.workers_offset", offsetof(RegionHeader, workers_offset)},
        {"RegionHeader.dispatch_seq", offsetof(RegionHeader, dispatch_seq)},
        {"RegionHeader.closing", offsetof(RegionHeader, closing)},
        {"RegionHeader.driver_sleeping", offsetof(RegionHeader, driver_sleeping)},
        {"RingHeader.size", sizeof(RingHeader)},
        {"RingCell.size", sizeof(RingCell)},
        {"BatchSlot.size", sizeof(BatchSlot)},
        {"BatchSlot.word", offsetof(BatchSlot, word)},
        {"BatchSlot.start_ns", offsetof(BatchSlot, start_ns)},
        {"BatchSlot.end_ns", offsetof(BatchSlot, end_ns)},
        {"BatchSlot.items_in", offsetof(BatchSlot, items_in)},
        {"BatchSlot.items_out", offsetof(BatchSlot, items_out)},
        {"BatchSlot.spool_offset", offsetof(BatchSlot, spool_offset)},
        {"BatchSlot.spool_length", offsetof(BatchSlot, spool_length)},
        {"BatchSlot.error_code", offsetof(BatchSlot, error_code)},
        {"WorkerSlot.size", sizeof(WorkerSlot)},
        {"WorkerSlot.pid", offsetof(WorkerSlot, pid)},
        {"WorkerSlot.process", offsetof(WorkerSlot, process)},
        {"WorkerSlot.state", offsetof(WorkerSlot, state)},
        {"WorkerSlot.heartbeat_ns", offsetof(WorkerSlot, heartbeat_ns)},
        {"WorkerSlot.current_batch", offsetof(WorkerSlot, current_batch)},
        {"WorkerSlot.phase_start_ns", offsetof(WorkerSlot, phase_start_ns)},
        {"WorkerSlot.batches_done", offsetof(WorkerSlot, batches_done)},
        {"WorkerSlot.popped", offsetof(WorkerSlot, popped)},
    };
}
#pragma GCC diagnostic pop

}  // namespace parajob
