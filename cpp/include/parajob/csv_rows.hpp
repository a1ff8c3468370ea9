// CsvRows: append_row's text of a DataFrame, written the way DataFrame.to_csv writes it.
//
//     run() result (DataFrame) --runtime/output.py: columns as numpy arrays-->
//     CsvColumn[] --append_csv_rows--> "v,v,v\n" per row --> the mini-batch's spool record
//
// The oracle is pandas: to_csv(sep=S, header=False, index=False) turns each number into
// numpy's str() of it (shortest round-trip float, Python repr's layout: "1e-05", "1e+16",
// "-0.0", "inf"; integers in decimal; booleans True/False), a missing value into na_rep,
// and quotes a field with the csv module's QUOTE_MINIMAL. This writer never quotes: a text
// field that would need quotes (separator, '"', '\r' or '\n' in it — the csv module's
// rule for '\r' changed in Python 3.13), and a row that is one empty field (the csv module
// writes '""'), make append_csv_rows return false and the caller uses to_csv itself. So the
// bytes are to_csv's or nothing (tests/test_fast_rows.py compares them on random frames).
//
// Pure computation, no Python, no allocation beyond `out`; any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace parajob {

enum class CsvKind : std::uint8_t { Int8, Int16, Int32, Int64, UInt8, UInt16, UInt32, UInt64, Float64, Bool, Text };

struct CsvColumn {
    CsvKind kind;
    const char* data = nullptr;       // numbers: element 0 (row r at data + r * stride)
    std::ptrdiff_t stride = 0;
    const std::string_view* text = nullptr;  // Text: one view per row
    const std::uint8_t* missing = nullptr;   // Text: 1 where the row's value is missing
};

// Appends n_rows rows of `columns` (each row ended by '\n', fields by sep) to out. Returns
// false, leaving out in an unspecified state, when a row needs the csv module's quoting.
bool append_csv_rows(std::string& out, const std::vector<CsvColumn>& columns, std::size_t n_rows, char sep,
                     std::string_view na_rep);

// Python's repr() of v (numpy's str() of a float64 is the same text); NaN as na_rep.
void append_float_repr(std::string& out, double v, std::string_view na_rep);

}  // namespace parajob
