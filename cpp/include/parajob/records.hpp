// Record boundaries in delimited-text (CSV) and JSON-lines files: the byte-size split of
// tabular inputs (docs/contract.md §7.3).
//
// Contract
// - Who may call: any thread. scan_*() touch no global state and need no Python (the
//   binding releases the GIL around them). scan_delimited_file() may start helper threads
//   (ScanOptions::threads) and joins them all before returning, so a process that forks
//   after a scan forks with no extra threads. Do not fork() while a scan runs.
// - Blocking: the file functions read the file with pread() into a bounded buffer per
//   thread (never mmap: mapped pages would count in the caller's resident memory, and the
//   driver must stay far below the size of the data it plans).
// - Errors: I/O failures throw PathError (errno + path) and return nothing partial.
//   Problems in the data (a record with the wrong number of fields, a line break inside a
//   quoted field without multi_line) are not exceptions: the scan stops at the first one
//   and reports it in ScanResult::error with its line, so the caller can name it.
//
// What a record is (the rules of Arrow's CSV parser, which reads the pieces later; the
// property tests check that the two agree)
// - Line endings are "\n", "\r\n" and a lone "\r". Lines count from 1; every ending counts
//   once, including endings inside quoted values.
// - A record is a non-empty line: empty lines are skipped (Arrow's ignore_empty_lines);
//   a line holding only spaces is a record with one field.
// - Quoting: a quote opens a quoted value only at the start of a field; inside, a doubled
//   quote is a literal quote and delimiters are data; after the closing quote the field
//   goes on unquoted ("a"b is ab). A quote in the middle of an unquoted field is data.
// - A line break inside a quoted value belongs to the value with multi_line; without it,
//   it is an error (kind line_break_in_quotes): cutting there would split a record.
// - End of file ends the last record, whether or not it ends with a line break, and
//   whether or not a quote is left open (Arrow reads an open quote to the end).
// - JSON lines (scan_lines_*): records are lines ending in "\n" holding anything but
//   JSON whitespace (space, tab, CR), as Arrow's JSON reader skips blank lines.
//
// Where the cuts are (the split)
// - Data starts at data_begin (after the header record, if any). Grid points lie at
//   data_begin + k * target_bytes, k >= 1; each grid point cuts at the first record end at
//   or after it, so a piece is at most target_bytes plus one record long, and a file no
//   longer than target_bytes (after its header) is one piece. The cuts depend only on the
//   bytes, never on how many threads scanned them.
// - Pieces are [begin, end) ranges of whole records that together hold every data record
//   exactly once, in order; a range holding no record (only empty lines) is left out.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "parajob/path_error.hpp"

namespace parajob {


struct TextFormat {
    char delimiter = ',';
    char quote = '"';
    bool quoting = true;     // false: quote characters are plain data
    bool multi_line = false; // a line break inside a quoted value belongs to the value
};

struct ScanOptions {
    std::uint64_t begin = 0;          // where the first record starts (after a byte-order mark)
    bool header = false;              // the first record is a header, in no piece
    std::uint64_t expected_fields = 0; // every data record must have this many; 0: as many as
                                      // the first record (the header, when there is one)
    bool check_fields = true;         // false: count records without checking fields
    std::uint64_t target_bytes = 0;   // grid step; 0: no cuts (one piece)
    std::uint64_t max_records = 0;    // stop after this many data records; 0: no limit
    unsigned threads = 1;             // helper threads for one large file (no multi_line,
                                      // no max_records); 0: one per usable CPU, at most 8
    std::uint64_t thread_bytes = std::uint64_t{32} << 20;  // at least this much per thread
};

// A mini-batch's share of one file: whole records in [begin, end).
struct Piece {
    std::uint64_t begin = 0;
    std::uint64_t end = 0;
    std::uint64_t records = 0;    // data records in the range
    std::uint64_t first_line = 0; // 1-based line number of the byte at begin
};

enum class RecordErrorKind : std::uint8_t { none = 0, field_count = 1, line_break_in_quotes = 2 };

struct RecordError {
    RecordErrorKind kind = RecordErrorKind::none;
    std::uint64_t line = 0;   // 1-based line where the record starts
    std::uint64_t offset = 0; // byte offset where the record starts
    std::uint64_t expected = 0;
    std::uint64_t found = 0;
};

struct ScanResult {
    std::uint64_t size = 0;         // bytes in the file (or the buffer)
    std::uint64_t header_begin = 0; // the header record's bytes; equal when there is none
    std::uint64_t header_end = 0;
    std::uint64_t data_begin = 0;   // first byte after the header (or begin)
    std::uint64_t end = 0;          // where the scan stopped: size, or after max_records
    std::uint64_t fields = 0;       // fields of the first record (header or data); 0: none
    std::uint64_t records = 0;      // data records seen
    std::vector<Piece> pieces;
    RecordError error;              // kind none: the data is well-formed
};

// Delimited text in memory (tests, benchmarks). Single-threaded.
ScanResult scan_delimited(std::string_view data, const TextFormat& format,
                          const ScanOptions& options);
// Delimited text in a file, read with pread(); threads as ScanOptions::threads says.
ScanResult scan_delimited_file(const std::string& path, const TextFormat& format,
                               const ScanOptions& options);

// JSON lines in memory / in a file. ScanOptions::header, expected_fields, check_fields
// and threads are ignored; ScanResult::fields is 0.
ScanResult scan_lines(std::string_view data, const ScanOptions& options);
ScanResult scan_lines_file(const std::string& path, const ScanOptions& options);

}  // namespace parajob
