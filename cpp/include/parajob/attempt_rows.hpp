// Joining a worker's attempt rows with when and where they ran (processed_mini-batches.csv).
//
//   worker part file (ResultWriter rows: index .. error)  --+
//   the driver's accepted attempts of that process  --------+--> join_attempt_rows() -->
//   (batch, attempt, start ns, end ns) + "pid,node,host"        the part's valid rows,
//                                                               each with 5 more columns
//
// A worker's part file is one of its open files, so user code that writes to inherited
// descriptors can reach it (issue 8): a line that is not exactly a row as ResultWriter
// writes it is dropped, never copied. Lines are cut as Python's bytes.splitlines() cuts them
// (\n, \r\n, \r); a valid line is
//   \d+,\d+,node\d+,process\d+,\d+,\d+,\d+\.\d+,(succeeded|short_return),\n
// Pure: no I/O, no Python; the binding releases the GIL around it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace parajob {

struct AcceptedAttempt {
    std::uint64_t batch;
    std::int64_t attempt;  // the driver's, 0-based (a Dask node numbers its own from 0)
    std::int64_t start_ns;  // wall clock, ns since the epoch
    std::int64_t end_ns;
};

// The valid rows of `part`, in order, each rewritten as
//   index,<attempt>,<the row's fields from node on, error included>,<start>,<end>,<place>\n
// where, for the first accepted attempt (in the order given) of the row's index, <attempt>
// is its attempt + 1 and <start>/<end> are UTC ISO-8601 with milliseconds
// ("2026-12-01T23:57:27.893Z"); a row with no accepted attempt keeps its own attempt and
// gets five empty columns (a driver killed before its log closed).
std::string join_attempt_rows(std::string_view part, std::vector<AcceptedAttempt> accepted,
                              std::string_view place);

// "YYYY-MM-DDTHH:MM:SS.mmmZ" of a wall-clock ns stamp (floor to the millisecond), appended.
void append_iso_time(std::string& out, std::int64_t ns);

}  // namespace parajob
