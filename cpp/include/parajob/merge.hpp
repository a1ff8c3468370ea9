// Merging spool records into the append_row output, in mini-batch order.
//
// Spool records: spool_format.hpp. The driver passes, for every accepted mini-batch in
// order, where its record is; the merge checks each record (header, batch, CRC32) and
// copies the payloads.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "parajob/spool_format.hpp"

namespace parajob {

struct RecordRef {
    std::uint32_t batch;
    std::uint32_t process;  // index into spool_paths
    std::uint64_t offset;   // of the record (header included)
    std::uint64_t length;   // header + payload
};

// Appends the payloads of `records`, in the given order, to the file at out_path (created
// or truncated). Throws std::runtime_error naming the spool, offset and batch when a
// record does not check out, std::system_error on I/O errors. Returns the bytes written. Does not fsync.
std::uint64_t merge_records(const std::string& out_path, const std::vector<std::string>& spool_paths,
                            const std::vector<RecordRef>& records);

}  // namespace parajob
