#include "parajob/spool_check.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <numeric>

#include "parajob/spool_format.hpp"

namespace parajob {
namespace {

constexpr std::uint64_t kMaxSpan = 4u << 20;  // one pread() covers adjacent records up to 4 MiB

// Reads exactly [offset, offset + size) into out; false when the file is shorter.
bool read_span(int fd, std::uint64_t offset, std::uint64_t size, std::string& out) {
    out.resize(size);
    std::uint64_t done = 0;
    while (done < size) {
        const ssize_t n = pread(fd, out.data() + done, size - done, static_cast<off_t>(offset + done));
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        if (n == 0) return false;
        done += static_cast<std::uint64_t>(n);
    }
    return true;
}

}  // namespace

SpoolChecker::~SpoolChecker() { close(); }

void SpoolChecker::add_spool(std::uint32_t process, std::string path) { paths_[process] = std::move(path); }

void SpoolChecker::close() {
    for (auto& [process, fd] : fds_)
        if (fd >= 0) ::close(fd);
    fds_.clear();
}

int SpoolChecker::fd_of(std::uint32_t process) {
    auto it = fds_.find(process);
    if (it != fds_.end() && it->second >= 0) return it->second;
    auto path = paths_.find(process);
    if (path == paths_.end()) return -1;
    const int fd = open(path->second.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) fds_[process] = fd;  // a missing file is retried next time
    return fd;
}

void SpoolChecker::check(std::size_t n, const std::uint32_t* batch, const std::uint32_t* process,
                         const std::uint64_t* offset, const std::uint64_t* length, std::uint8_t* ok) {
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        return process[a] != process[b] ? process[a] < process[b] : offset[a] < offset[b];
    });
    std::size_t i = 0;
    while (i < n) {
        // A run of records that lie end to end in one spool: read together.
        const std::size_t first = order[i];
        const std::uint32_t p = process[first];
        const std::uint64_t start = offset[first];
        std::uint64_t end = start + length[first];
        std::size_t j = i + 1;
        while (j < n && process[order[j]] == p && offset[order[j]] == end && end - start + length[order[j]] <= kMaxSpan) {
            end += length[order[j]];
            ++j;
        }
        const int fd = fd_of(p);
        const bool readable = fd >= 0 && end >= start && read_span(fd, start, end - start, buffer_);
        for (std::size_t k = i; k < j; ++k) {
            const std::size_t r = order[k];
            ok[r] = readable && spool_record_valid(buffer_.data() + (offset[r] - start), length[r], batch[r]) ? 1 : 0;
        }
        i = j;
    }
}

}  // namespace parajob
