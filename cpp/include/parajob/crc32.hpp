// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320): the checksum of a spool record.
//
// The same function as zlib's crc32(), so that Python checks a record with zlib.crc32
// (runtime/spool.py) without another implementation. Slicing-by-8 over tables built at
// compile time: ~1 byte/cycle, i.e. a few nanoseconds for a short output row; no zlib to
// link, and no SSE4.2 _mm_crc32 (that is CRC-32C, and needs a run-time CPU check).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace parajob {
namespace detail {

constexpr std::array<std::array<std::uint32_t, 256>, 8> make_crc32_tables() {
    std::array<std::array<std::uint32_t, 256>, 8> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
        std::uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
        t[0][i] = c;
    }
    for (std::size_t i = 0; i < 256; ++i)
        for (std::size_t s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFFu];
    return t;
}

inline constexpr auto kCrc32Tables = make_crc32_tables();

}  // namespace detail

// Continues `crc` (0 to start) over n bytes: crc32(crc32(0, a), b) == crc32(0, a + b).
inline std::uint32_t crc32(std::uint32_t crc, const void* data, std::size_t n) {
    const auto& t = detail::kCrc32Tables;
    const auto* p = static_cast<const unsigned char*>(data);
    crc = ~crc;
    while (n >= 8) {
        std::uint32_t lo = 0;
        std::uint32_t hi = 0;
        std::memcpy(&lo, p, 4);  // little-endian hosts only (x86-64, aarch64), as the spool
        std::memcpy(&hi, p + 4, 4);
        lo ^= crc;
        crc = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^
              t[3][hi & 0xFF] ^ t[2][(hi >> 8) & 0xFF] ^ t[1][(hi >> 16) & 0xFF] ^ t[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n-- > 0) crc = (crc >> 8) ^ t[0][(crc ^ *p++) & 0xFF];
    return ~crc;
}

}  // namespace parajob
