// The spool record format (documented for Python in python/parajob/runtime/spool.py).
//
// Little-endian, packed, 32-byte header then the payload:
//   0  magic "PJR2"      4  kind u32 (0 rows, 1 error)   8  batch u32   12  attempt u32
//   16 payload length u64                                24  crc32 u32  28  reserved u32 (0)
// crc32 (crc32.hpp, zlib's) covers header bytes [0, 24) and then the payload. A record that
// does not check out (torn, overwritten, written through a descriptor user code dup2'd)
// is discarded by the driver and its mini-batch runs again (spool_check.hpp).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include "parajob/crc32.hpp"

namespace parajob {

inline constexpr std::size_t kSpoolHeaderSize = 32;
inline constexpr char kSpoolMagic[4] = {'P', 'J', 'R', '2'};

// Appends one whole record to out.
inline void append_spool_record(std::string& out, bool ok, std::uint32_t batch, std::uint32_t attempt,
                                const char* payload, std::size_t size) {
    char header[kSpoolHeaderSize] = {};
    const std::uint32_t kind = ok ? 0u : 1u;
    const std::uint64_t length = size;
    std::memcpy(header, kSpoolMagic, 4);
    std::memcpy(header + 4, &kind, 4);  // x86-64 and aarch64 are little-endian
    std::memcpy(header + 8, &batch, 4);
    std::memcpy(header + 12, &attempt, 4);
    std::memcpy(header + 16, &length, 8);
    const std::uint32_t crc = crc32(crc32(0, header, 24), payload, size);
    std::memcpy(header + 24, &crc, 4);
    out.append(header, kSpoolHeaderSize);
    out.append(payload, size);
}

// Whether data[0, length) is one whole, intact record of `batch`.
inline bool spool_record_valid(const char* data, std::uint64_t length, std::uint32_t batch) {
    if (length < kSpoolHeaderSize || std::memcmp(data, kSpoolMagic, 4) != 0) return false;
    std::uint32_t rec_batch = 0;
    std::uint64_t size = 0;
    std::uint32_t crc = 0;
    std::memcpy(&rec_batch, data + 8, 4);
    std::memcpy(&size, data + 16, 8);
    std::memcpy(&crc, data + 24, 4);
    if (rec_batch != batch || size > length || kSpoolHeaderSize + size != length) return false;
    return crc32(crc32(0, data, 24), data + kSpoolHeaderSize, size) == crc;
}

}  // namespace parajob
