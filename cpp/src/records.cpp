// Record scanning for the byte-size split; the rules are in records.hpp. The scanners
// themselves are in record_scanner.hpp; this file feeds them files (pread into a
// bounded buffer per thread) and joins the ranges that helper threads scanned.
//
// Speed (bench/test_bench_tables.py): the delimited scanner looks at 64 bytes at a time.
// A block with no quote character and no lone CR, entered outside a quoted value, is
// handled from four bit masks (delimiters, LF, CR, quotes): one popcount per record
// instead of one branch per byte. Other blocks go through the byte-wise state machine,
// which is the reference: the fast path must give exactly what it would.
#include "parajob/records.hpp"

#include <pthread.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <thread>

#include "record_scanner.hpp"

namespace parajob {
namespace {

using detail::DelimitedScanner;
using detail::LineScanner;
using detail::RangeResult;

constexpr std::size_t kBufferBytes = std::size_t{1} << 20;       // per thread; stays in L2
constexpr unsigned kMaxThreads = 8;

// ----------------------------------------------------------------------------------------
// Files.

class File {
public:
    explicit File(const std::string& path) : path_(path) {
        do {
            fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        } while (fd_ < 0 && errno == EINTR);
        if (fd_ < 0) fail(errno, "cannot open");
        struct stat st {};
        if (::fstat(fd_, &st) != 0) fail(errno, "cannot stat");
        if (S_ISDIR(st.st_mode)) fail(EISDIR, "cannot read");
        size_ = static_cast<std::uint64_t>(st.st_size);
        ::posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);  // advice only: errors ignored
    }
    ~File() {
        if (fd_ >= 0) ::close(fd_);
    }
    File(const File&) = delete;
    File& operator=(const File&) = delete;

    std::uint64_t size() const { return size_; }

    // Feeds bytes [begin, end) to scanner in buffer-sized reads, then finish(end).
    template <class Scanner>
    void scan(Scanner& scanner, std::uint64_t begin, std::uint64_t end) const {
        std::unique_ptr<char[]> buffer(new char[kBufferBytes]);
        for (std::uint64_t at = begin; at < end;) {
            const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(kBufferBytes, end - at));
            const std::size_t got = read_at(buffer.get(), want, at);
            if (!scanner.feed(buffer.get(), got, at)) return;
            at += got;
        }
        scanner.finish(end);
    }

    // Offset just after the first LF at or after `from`; size() when there is none.
    std::uint64_t after_next_lf(std::uint64_t from) const {
        char buffer[65536];
        for (std::uint64_t at = from; at < size_;) {
            const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(sizeof buffer, size_ - at));
            const std::size_t got = read_at(buffer, want, at);
            if (const void* lf = std::memchr(buffer, '\n', got)) {
                return at + std::uint64_t(static_cast<const char*>(lf) - buffer) + 1;
            }
            at += got;
        }
        return size_;
    }

private:
    std::size_t read_at(char* out, std::size_t want, std::uint64_t at) const {
        std::size_t got = 0;
        while (got < want) {
            const ssize_t n = ::pread(fd_, out + got, want - got, static_cast<off_t>(at + got));
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) fail(errno, "cannot read");
            if (n == 0) fail(EIO, "file shrank while it was read");
            got += static_cast<std::size_t>(n);
        }
        return got;
    }

    [[noreturn]] void fail(int error, const char* what) const {
        throw PathError(error, path_, std::string(what) + " " + path_ + ": " + std::strerror(error));
    }

    std::string path_;
    int fd_ = -1;
    std::uint64_t size_ = 0;
};

// Assembles the public result of one range (lines already absolute).
ScanResult to_result(RangeResult&& r, std::uint64_t size) {
    ScanResult out;
    out.size = size;
    out.header_begin = r.header_begin;
    out.header_end = r.header_end;
    out.data_begin = r.data_begin;
    out.end = r.stopped && r.error.kind == RecordErrorKind::none ? r.stop_at : size;
    out.fields = r.first_fields;
    out.records = r.records;
    out.error = r.error;
    out.pieces = std::move(r.closed);
    out.pieces.push_back(r.open);
    std::erase_if(out.pieces, [](const Piece& p) { return p.records == 0; });
    return out;
}

unsigned thread_count(unsigned wanted, std::uint64_t bytes, std::uint64_t per_thread) {
    unsigned n = wanted != 0 ? wanted : std::max(1u, std::thread::hardware_concurrency());
    n = std::min(n, kMaxThreads);
    const std::uint64_t by_size = bytes / std::max<std::uint64_t>(1, per_thread);
    return static_cast<unsigned>(std::max<std::uint64_t>(1, std::min<std::uint64_t>(n, by_size)));
}

// Scans [data_begin, size) in `threads` ranges that start after an LF. Without
// multi_line every LF ends a record, so each range starts in a fresh record; the results
// are then joined in order (the piece open at a range's end continues in the next range).
ScanResult scan_in_threads(const File& file, const TextFormat& format, const ScanOptions& options,
                           RangeResult&& head, std::uint64_t expected, unsigned threads) {
    const std::uint64_t begin = head.data_begin, size = file.size();
    std::vector<std::uint64_t> starts{begin};
    for (unsigned k = 1; k < threads; ++k) {
        const std::uint64_t nominal = begin + (size - begin) / threads * k;
        starts.push_back(file.after_next_lf(std::max(nominal, starts.back())));
    }
    starts.push_back(size);

    ScanOptions part = options;
    part.header = false;
    std::vector<RangeResult> results(threads);
    std::vector<std::exception_ptr> errors(threads);
    {
        std::vector<std::jthread> pool;
        for (unsigned k = 0; k < threads; ++k) {
            pool.emplace_back([&, k] {
                // Named so that tests (and a user's py-spy/top) can tell our threads apart.
                pthread_setname_np(pthread_self(), "parajob-scan");
                try {
                    DelimitedScanner s(format, part, starts[k], 1, begin, false, expected);
                    file.scan(s, starts[k], starts[k + 1]);
                    results[k] = s.take(starts[k + 1]);
                } catch (...) {
                    errors[k] = std::current_exception();
                }
            });
        }
    }  // jthreads join here: no helper thread outlives the call
    for (auto& e : errors) {
        if (e) std::rethrow_exception(e);
    }

    RangeResult joined = std::move(head);
    joined.closed.clear();
    joined.records = 0;
    std::uint64_t base = joined.data_line - 1;  // absolute line = base + relative line
    Piece open{begin, begin, 0, joined.data_line};
    for (unsigned k = 0; k < threads; ++k) {
        RangeResult& r = results[k];
        auto shift = [base](Piece p) { p.first_line += base; return p; };
        joined.records += r.records;
        if (r.error.kind != RecordErrorKind::none) {
            joined.error = r.error;
            joined.error.line += base;
            joined.stopped = true;
            break;
        }
        if (!r.closed.empty()) {
            Piece first = r.closed.front();
            open.end = first.end;
            open.records += first.records;
            joined.closed.push_back(open);
            for (std::size_t i = 1; i < r.closed.size(); ++i) joined.closed.push_back(shift(r.closed[i]));
            open = shift(r.open);
        } else {
            open.end = r.open.end;
            open.records += r.open.records;
        }
        base += r.line - 1;
    }
    joined.open = open;
    return to_result(std::move(joined), size);
}

}  // namespace

ScanResult scan_delimited(std::string_view data, const TextFormat& format,
                          const ScanOptions& options) {
    const std::uint64_t begin = std::min<std::uint64_t>(options.begin, data.size());
    DelimitedScanner s(format, options, begin, 1, begin, options.header, options.expected_fields);
    s.feed(data.data() + begin, data.size() - begin, begin);
    s.finish(data.size());
    return to_result(s.take(data.size()), data.size());
}

ScanResult scan_delimited_file(const std::string& path, const TextFormat& format,
                               const ScanOptions& options) {
    const File file(path);
    const std::uint64_t size = file.size();
    const std::uint64_t begin = std::min(options.begin, size);
    const unsigned threads = format.multi_line || options.max_records != 0
                                 ? 1u : thread_count(options.threads, size - begin, options.thread_bytes);
    if (threads == 1) {
        DelimitedScanner s(format, options, begin, 1, begin, options.header, options.expected_fields);
        file.scan(s, begin, size);
        return to_result(s.take(size), size);
    }
    // The first record (the header, or the first data record) fixes the field count
    // every thread checks against; its end is where the data and the grid begin.
    ScanOptions first = options;
    first.max_records = 1;
    first.target_bytes = 0;
    DelimitedScanner head(format, first, begin, 1, begin, options.header, options.expected_fields);
    file.scan(head, begin, size);
    RangeResult h = head.take(size);
    if (h.error.kind != RecordErrorKind::none || h.first_fields == 0) {
        return to_result(std::move(h), size);
    }
    const std::uint64_t expected = options.expected_fields ? options.expected_fields : h.first_fields;
    return scan_in_threads(file, format, options, std::move(h), expected, threads);
}

ScanResult scan_lines(std::string_view data, const ScanOptions& options) {
    const std::uint64_t begin = std::min<std::uint64_t>(options.begin, data.size());
    LineScanner s(options, begin);
    s.feed(data.data() + begin, data.size() - begin, begin);
    s.finish(data.size());
    return to_result(s.take(data.size()), data.size());
}

ScanResult scan_lines_file(const std::string& path, const ScanOptions& options) {
    const File file(path);
    const std::uint64_t begin = std::min(options.begin, file.size());
    LineScanner s(options, begin);
    file.scan(s, begin, file.size());
    return to_result(s.take(file.size()), file.size());
}

}  // namespace parajob
