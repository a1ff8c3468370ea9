#include "parajob/merge.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

namespace parajob {
namespace {

struct Mapped {
    const char* data = nullptr;
    std::size_t size = 0;
};

// A read-only mapping of one spool, made on first use and unmapped at the end.
class SpoolMaps {
public:
    explicit SpoolMaps(const std::vector<std::string>& paths) : paths_(paths), maps_(paths.size()) {}
    ~SpoolMaps() {
        for (auto& m : maps_)
            if (m.data != nullptr && m.size != 0) munmap(const_cast<char*>(m.data), m.size);
    }
    SpoolMaps(const SpoolMaps&) = delete;
    SpoolMaps& operator=(const SpoolMaps&) = delete;

    const Mapped& get(std::uint32_t process) {
        if (process >= maps_.size() || paths_[process].empty())
            throw std::runtime_error("no spool file for process " + std::to_string(process));
        Mapped& m = maps_[process];
        if (m.data == nullptr) {
            const int fd = open(paths_[process].c_str(), O_RDONLY | O_CLOEXEC);
            if (fd < 0) throw std::system_error(errno, std::generic_category(), "open " + paths_[process]);
            struct stat st {};
            if (fstat(fd, &st) != 0) {
                const int err = errno;
                close(fd);
                throw std::system_error(err, std::generic_category(), "stat " + paths_[process]);
            }
            m.size = static_cast<std::size_t>(st.st_size);
            if (m.size == 0) {
                m.data = "";
            } else {
                void* p = mmap(nullptr, m.size, PROT_READ, MAP_PRIVATE, fd, 0);
                if (p == MAP_FAILED) {
                    const int err = errno;
                    close(fd);
                    throw std::system_error(err, std::generic_category(), "mmap " + paths_[process]);
                }
                madvise(p, m.size, MADV_SEQUENTIAL);
                m.data = static_cast<const char*>(p);
            }
            close(fd);
        }
        return m;
    }

    const std::string& path(std::uint32_t process) const { return paths_[process]; }

private:
    const std::vector<std::string>& paths_;
    std::vector<Mapped> maps_;
};

void write_all(int fd, const char* data, std::size_t size, const std::string& path) {
    while (size > 0) {
        const ssize_t n = write(fd, data, size);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw std::system_error(errno, std::generic_category(), "write " + path);
        }
        data += n;
        size -= static_cast<std::size_t>(n);
    }
}

}  // namespace

std::uint64_t merge_records(const std::string& out_path, const std::vector<std::string>& spool_paths,
                            const std::vector<RecordRef>& records) {
    SpoolMaps spools(spool_paths);
    const int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) throw std::system_error(errno, std::generic_category(), "open " + out_path);
    std::string buffer;  // payloads are small and many: write in 1 MiB blocks
    buffer.reserve(1 << 20);
    std::uint64_t total = 0;
    try {
        for (const RecordRef& r : records) {
            const Mapped& m = spools.get(r.process);
            const bool fits = r.offset <= m.size && r.length <= m.size - r.offset;
            if (!fits || !spool_record_valid(m.data + r.offset, r.length, r.batch)) {
                throw std::runtime_error("spool " + spools.path(r.process) + " is corrupt at offset " +
                                         std::to_string(r.offset) + " (expected mini-batch " +
                                         std::to_string(r.batch) + ")");
            }
            const std::uint64_t size = r.length - kSpoolHeaderSize;
            buffer.append(m.data + r.offset + kSpoolHeaderSize, size);
            total += size;
            if (buffer.size() >= (1 << 20)) {
                write_all(out, buffer.data(), buffer.size(), out_path);
                buffer.clear();
            }
        }
        write_all(out, buffer.data(), buffer.size(), out_path);
    } catch (...) {
        close(out);
        throw;
    }
    if (close(out) != 0) throw std::system_error(errno, std::generic_category(), "close " + out_path);
    return total;
}

}  // namespace parajob
