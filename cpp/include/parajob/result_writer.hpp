// ResultWriter: a worker's side of ending attempts — spool records, finish(), CSV rows.
//
// One per worker process, used by its one thread. Each ended attempt becomes a framed
// record in the process's spool file (format: python/parajob/runtime/spool.py and
// merge.hpp). Records of quick run() calls are gathered and written with one write();
// each attempt's DispatchRegion::finish() is called only after that write returned, so a
// mini-batch is DONE only once its record is in the file. Gathering is bounded (5 ms, 256
// records, 256 KiB, and only behind run() calls under 1 ms): a worker that dies with
// records gathered costs those mini-batches a retry, never their rows twice.
//
// The 5 ms bound holds whatever the worker does next: a flusher thread, started with the
// first gathered record (so a job whose run() calls all take >= 1 ms never has one),
// publishes what has waited 5 ms even while the next run() is still going (issue 8: a
// long run() that then died used to take the quick mini-batches before it down with it).
// The thread is plain C++: it never touches Python objects or the GIL; add() and flush()
// share one mutex with it.
//
// Why C++: in Python this bookkeeping cost ~5 us per mini-batch, a third of the whole
// per-mini-batch overhead with one-file mini-batches (bench/test_bench_job.py).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <string_view>
#include <vector>

#include "parajob/dispatch.hpp"

namespace parajob {

class ResultWriter {
public:
    // spool_fd: the process's spool, opened O_APPEND; attempts_fd: its part of
    // processed_mini-batches.csv; where: "<node>,<process name>" for the CSV rows.
    ResultWriter(DispatchRegion& region, std::uint32_t worker, std::uint32_t process, int spool_fd,
                 int attempts_fd, std::string where);
    ~ResultWriter();  // stops the flusher thread; does not flush (call flush() first)
    ResultWriter(const ResultWriter&) = delete;
    ResultWriter& operator=(const ResultWriter&) = delete;

    // One ended attempt: its rows (ok) or its error text. Writes and publishes at once
    // unless gathering pays off. Throws std::system_error when a write fails.
    void add(std::uint32_t batch, std::uint32_t attempt, bool ok, std::string_view payload, std::uint64_t items_in,
             std::uint64_t items_out, std::int64_t error_code, double run_seconds);

    // Writes what is gathered, then calls finish() for each attempt in order. Rethrows a
    // write error the flusher thread met.
    void flush();

    std::size_t pending() const;

private:
    void flush_locked();  // mutex_ held
    void flusher();       // the flusher thread's loop
    void rethrow_locked();

    struct Pending {
        std::uint32_t batch;
        std::uint32_t attempt;
        bool ok;
        std::uint64_t items_in;
        std::uint64_t items_out;
        std::uint64_t offset;
        std::uint64_t length;
        std::int64_t error_code;
        double seconds;
    };

    DispatchRegion& region_;
    std::uint32_t worker_;
    std::uint32_t process_;
    int spool_fd_;
    int attempts_fd_;
    std::string where_;
    std::uint64_t offset_;  // end of the spool file as written so far
    std::string buffer_;    // gathered records
    std::string rows_;      // CSV rows of the accepted attempts of one flush
    std::vector<Pending> pending_;
    std::int64_t first_pending_ns_ = 0;

    mutable std::mutex mutex_;          // guards everything above, for add/flush/flusher
    std::condition_variable wake_;      // the flusher waits here for a first gathered record
    bool stopping_ = false;
    bool flusher_idle_ = false;         // the flusher waits for a first record (not a due time)
    std::exception_ptr thread_error_;   // a write the flusher thread failed, for the owner
    std::thread thread_;                // started lazily by the first gathered record
};

}  // namespace parajob
