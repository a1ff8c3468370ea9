#include "parajob/result_writer.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <system_error>

#include "parajob/spool_format.hpp"

namespace parajob {
namespace {

constexpr std::int64_t kGatherMaxNs = 5'000'000;
constexpr double kGatherMaxRunSeconds = 0.001;
constexpr std::size_t kGatherMaxRecords = 256;
constexpr std::size_t kGatherMaxBytes = 1 << 18;

void write_all(int fd, const std::string& data) {
    const char* p = data.data();
    std::size_t left = data.size();
    while (left > 0) {
        const ssize_t n = write(fd, p, left);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw std::system_error(errno, std::generic_category(), "writing a result spool");
        }
        p += n;
        left -= static_cast<std::size_t>(n);
    }
}

}  // namespace

ResultWriter::ResultWriter(DispatchRegion& region, std::uint32_t worker, std::uint32_t process, int spool_fd,
                           int attempts_fd, std::string where)
    : region_(region), worker_(worker), process_(process), spool_fd_(spool_fd), attempts_fd_(attempts_fd),
      where_(std::move(where)) {
    struct stat st {};
    if (fstat(spool_fd_, &st) != 0) throw std::system_error(errno, std::generic_category(), "stat of a spool");
    offset_ = static_cast<std::uint64_t>(st.st_size);
}

ResultWriter::~ResultWriter() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
    }
    // notify_all reaches the thread in either wait (idle, or sleeping to a due time).
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
}

std::size_t ResultWriter::pending() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return pending_.size();
}

void ResultWriter::flusher() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stopping_) {
        if (pending_.empty() || thread_error_) {
            // Idle: the next first gathered record wakes us (add() notifies only then).
            flusher_idle_ = true;
            wake_.wait(lock, [this] { return stopping_ || (!pending_.empty() && !thread_error_); });
            flusher_idle_ = false;
            continue;
        }
        // first_pending_ns_ is CLOCK_MONOTONIC, which is what steady_clock reads on Linux.
        const auto due = std::chrono::steady_clock::time_point(std::chrono::nanoseconds(first_pending_ns_ + kGatherMaxNs));
        if (std::chrono::steady_clock::now() < due) {
            // Not notified while we sleep here: if the owner flushes in the meantime and
            // gathers anew, we wake at the old due time and sleep on to the new one. That
            // keeps add() free of a wake-up per gathered window (measured: ~5% of the
            // 100,000-mini-batch benchmark when add() notified every time).
            wake_.wait_until(lock, due);
            continue;
        }
        try {
            flush_locked();
        } catch (...) {
            // The owner sees it at its next add() or flush(); the records stay pending.
            thread_error_ = std::current_exception();
        }
    }
}

void ResultWriter::rethrow_locked() {
    if (thread_error_) {
        std::exception_ptr error = thread_error_;
        thread_error_ = nullptr;
        std::rethrow_exception(error);
    }
}

void ResultWriter::add(std::uint32_t batch, std::uint32_t attempt, bool ok, std::string_view payload,
                       std::uint64_t items_in, std::uint64_t items_out, std::int64_t error_code, double run_seconds) {
    std::unique_lock<std::mutex> lock(mutex_);
    rethrow_locked();
    const std::uint64_t offset = offset_ + buffer_.size();
    // Header, CRC32 over header and payload (a few ns for a short row), payload.
    append_spool_record(buffer_, ok, batch, attempt, payload.data(), payload.size());
    if (pending_.empty()) first_pending_ns_ = monotonic_ns();
    pending_.push_back({batch, attempt, ok, items_in, items_out, offset, kSpoolHeaderSize + payload.size(),
                        error_code, run_seconds});
    if (!ok || run_seconds >= kGatherMaxRunSeconds || pending_.size() >= kGatherMaxRecords ||
        buffer_.size() >= kGatherMaxBytes || monotonic_ns() - first_pending_ns_ >= kGatherMaxNs) {
        flush_locked();
        region_.end_run(worker_);
        return;
    }
    // run() returned: the worker slot is idle now, even while the record waits to be
    // published (the flusher thread publishes; it never touches the worker slot).
    region_.end_run(worker_);
    if (pending_.size() == 1) {  // the first gathered record: the flusher's clock starts
        if (!thread_.joinable()) {
            thread_ = std::thread([this] { flusher(); });
        } else if (flusher_idle_) {
            lock.unlock();
            wake_.notify_one();
        }
    }
}

void ResultWriter::flush() {
    std::lock_guard<std::mutex> lock(mutex_);
    rethrow_locked();
    flush_locked();
}

void ResultWriter::flush_locked() {
    if (pending_.empty()) return;
    write_all(spool_fd_, buffer_);  // first the records, whole ...
    offset_ += buffer_.size();
    buffer_.clear();
    rows_.clear();
    char row[96];
    for (const Pending& p : pending_) {
        // ... then each attempt's end: a batch is DONE only once its record is in the file.
        const bool won = region_.publish(p.batch, p.attempt, process_, p.ok, p.items_in, p.items_out, p.offset,
                                         p.length, p.error_code);
        if (won && p.ok) {  // failed attempts get their row from the driver, with the error
            const int n = std::snprintf(row, sizeof row, "%" PRIu32 ",%" PRIu32 ",", p.batch, p.attempt + 1);
            rows_.append(row, static_cast<std::size_t>(n));
            rows_ += where_;
            const int m = std::snprintf(row, sizeof row, ",%" PRIu64 ",%" PRIu64 ",%.4f,%s,\n", p.items_in,
                                        p.items_out, p.seconds, p.items_out >= p.items_in ? "succeeded" : "short_return");
            rows_.append(row, static_cast<std::size_t>(m));
        }
    }
    pending_.clear();
    if (attempts_fd_ >= 0 && !rows_.empty()) write_all(attempts_fd_, rows_);
}

}  // namespace parajob
