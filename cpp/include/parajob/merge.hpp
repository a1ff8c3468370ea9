// Merging spool records into the append_row output, in mini-batch order.
//
// Spool record (python/parajob/runtime/spool.py): magic "PJR1", kind u32, batch u32,
// attempt u32, payload length u64 (little-endian, packed: 24 bytes), then the payload.
// The driver passes, for every accepted mini-batch in order, where its record is; the
// merge checks each header against the expected batch and copies the payloads.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace parajob {

inline constexpr std::size_t kSpoolHeaderSize = 24;

struct RecordRef {
    std::uint32_t batch;
    std::uint32_t process;  // index into spool_paths
    std::uint64_t offset;   // of the record (header included)
    std::uint64_t length;   // header + payload
};

// Appends the payloads of `records`, in the given order, to the file at out_path (created
// or truncated). Throws std::runtime_error naming the spool and offset when a header does
// not match, std::system_error on I/O errors. Returns the bytes written. Does not fsync.
std::uint64_t merge_records(const std::string& out_path, const std::vector<std::string>& spool_paths,
                            const std::vector<RecordRef>& records);

}  // namespace parajob
