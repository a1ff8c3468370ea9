// SpoolChecker: the driver's check that the records of accepted attempts are intact.
//
// A worker publishes a record's place (offset, length) with finish(); what is at that place
// can still be wrong: user code in the worker may have written garbage through the spool's
// descriptor, or dup2'd another file over it, so the write landed elsewhere. The driver
// checks every DONE attempt's record (spool_format.hpp: magic, batch, length, CRC32) before
// accepting it, and runs the mini-batch again when it does not check out.
//
// Cost: records a worker wrote in one go are contiguous, so each run of adjacent records is
// read with one pread() (the pages were just written: page cache), then CRC'd in memory.
// One call per drain of the done ring; ~10 ns + one CRC per record.
//
// Driver-only, one thread. Keeps one read-only descriptor (O_CLOEXEC) per spool it has read.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace parajob {

class SpoolChecker {
public:
    SpoolChecker() = default;
    ~SpoolChecker();
    SpoolChecker(const SpoolChecker&) = delete;
    SpoolChecker& operator=(const SpoolChecker&) = delete;

    // The spool file of `process` (opened on first use: it exists once a record is in it).
    void add_spool(std::uint32_t process, std::string path);

    // ok[i] = whether record i (batch[i], process[i], offset[i], length[i]) is intact. A
    // record of an unknown process, a missing or short file counts as not intact. Throws
    // nothing for bad records; std::system_error only for unexpected I/O errors.
    void check(std::size_t n, const std::uint32_t* batch, const std::uint32_t* process, const std::uint64_t* offset,
               const std::uint64_t* length, std::uint8_t* ok);

    // Closes every descriptor (they are opened again on demand).
    void close();

private:
    int fd_of(std::uint32_t process);

    std::unordered_map<std::uint32_t, std::string> paths_;
    std::unordered_map<std::uint32_t, int> fds_;
    std::string buffer_;
};

}  // namespace parajob
