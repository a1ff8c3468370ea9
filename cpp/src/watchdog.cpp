#include "parajob/watchdog.hpp"

namespace parajob {

std::vector<Expired> scan_expired(const DispatchRegion& region, std::int64_t now_ns, std::int64_t run_timeout_ns,
                                  std::int64_t init_timeout_ns, std::int64_t load_timeout_ns) {
    std::vector<Expired> expired;
    for (std::uint32_t w = 0; w < region.n_workers(); ++w) {
        const WorkerSlot& slot = region.worker(w);
        // acquire: pairs with the release store of state in next_batch()/set_worker_state(),
        // so phase_start_ns belongs to this state.
        const auto state = static_cast<WorkerState>(slot.state.load(std::memory_order_acquire));
        const std::int64_t elapsed = now_ns - slot.phase_start_ns.load(std::memory_order_relaxed);
        const std::int32_t pid = slot.pid.load(std::memory_order_relaxed);
        const std::uint32_t process = slot.process.load(std::memory_order_relaxed);
        const bool running = state == WorkerState::kRunning && run_timeout_ns > 0 && elapsed > run_timeout_ns;
        const bool loading = state == WorkerState::kLoading && load_timeout_ns > 0 && elapsed > load_timeout_ns;
        if (running || loading) {
            const std::int64_t batch = slot.current_batch.load(std::memory_order_acquire);
            if (batch < 0) continue;  // finished between the two loads
            const StateWord word = StateWord::unpack(
                region.batch(static_cast<std::uint32_t>(batch)).word.load(std::memory_order_acquire));
            if (word.state != BatchState::kRunning || word.process != process) continue;
            expired.push_back({w, pid, process, batch, word.attempt,
                               running ? Overrun::kRunTimeout : Overrun::kLoadTimeout, elapsed});
        } else if (state == WorkerState::kInit && init_timeout_ns > 0 && elapsed > init_timeout_ns) {
            expired.push_back({w, pid, process, -1, 0, Overrun::kInitTimeout, elapsed});
        }
    }
    return expired;
}

}  // namespace parajob
