// Watchdog: one scan over the worker slots that reports who overran a deadline.
//
// Called by the driver's loop on every wake-up; the driver decides what to do (take the
// batch back, kill the process group, requeue or fail). Reads only; never blocks.
#pragma once

#include <cstdint>
#include <vector>

#include "parajob/dispatch.hpp"

namespace parajob {

enum class Overrun : std::uint32_t {
    kRunTimeout = 1,   // run() of the held batch exceeded retry_settings.timeout
    kInitTimeout = 2,  // init() exceeded its deadline
    kLoadTimeout = 3,  // materialising the held batch exceeded task_overhead_timeout
};

struct Expired {
    std::uint32_t worker;
    std::int32_t pid;
    std::uint32_t process;
    std::int64_t batch;  // -1 for init overruns
    std::uint32_t attempt;
    Overrun why;
    std::int64_t elapsed_ns;
};

// Workers whose current phase started more than the matching timeout ago (0 = no limit).
std::vector<Expired> scan_expired(const DispatchRegion& region, std::int64_t now_ns, std::int64_t run_timeout_ns,
                                  std::int64_t init_timeout_ns, std::int64_t load_timeout_ns);

}  // namespace parajob
