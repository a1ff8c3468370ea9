// See csv_rows.hpp.
#include "parajob/csv_rows.hpp"

#include <charconv>
#include <cmath>
#include <cstring>

namespace parajob {
namespace {

template <typename T>
void append_int(std::string& out, const char* p) {
    T v;
    std::memcpy(&v, p, sizeof v);  // numpy strides need not keep T aligned
    char buf[24];
    auto res = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, res.ptr);
}

bool needs_quotes(std::string_view s, char sep) {
    for (char c : s) {
        if (c == sep || c == '"' || c == '\n' || c == '\r') return true;
    }
    return false;
}

}  // namespace

void append_float_repr(std::string& out, double v, std::string_view na_rep) {
    if (std::isnan(v)) {
        out.append(na_rep);
        return;
    }
    if (std::isinf(v)) {
        out.append(v < 0 ? "-inf" : "inf");
        return;
    }
    // Shortest round-trip digits in scientific form ("-1.2345e+03"), then laid out as
    // Python's float_repr_style 'short' does (Python/pystrtod.c format_float_short, mode 'r'):
    // positional for 1e-4 <= |v| < 1e16, else d.ddde+XX with at least two exponent digits.
    char buf[40];
    auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
    const char* p = buf;
    if (*p == '-') {
        out.push_back('-');
        ++p;
    }
    char digits[24];
    int nd = 0;
    const char* e = p;
    for (; e < res.ptr && *e != 'e'; ++e) {
        if (*e != '.') digits[nd++] = *e;
    }
    int exp10 = 0;
    std::from_chars(e + 1 + (e[1] == '+'), res.ptr, exp10);
    const int decpt = exp10 + 1;  // value = 0.d1d2... * 10^decpt
    if (decpt <= -4 || decpt > 16) {
        out.push_back(digits[0]);
        if (nd > 1) {
            out.push_back('.');
            out.append(digits + 1, static_cast<std::size_t>(nd - 1));
        }
        out.push_back('e');
        out.push_back(exp10 < 0 ? '-' : '+');
        const int a = exp10 < 0 ? -exp10 : exp10;
        if (a < 10) out.push_back('0');
        char eb[8];
        auto er = std::to_chars(eb, eb + sizeof eb, a);
        out.append(eb, er.ptr);
    } else if (decpt <= 0) {
        out.append("0.");
        out.append(static_cast<std::size_t>(-decpt), '0');
        out.append(digits, static_cast<std::size_t>(nd));
    } else if (decpt >= nd) {
        out.append(digits, static_cast<std::size_t>(nd));
        out.append(static_cast<std::size_t>(decpt - nd), '0');
        out.append(".0");
    } else {
        out.append(digits, static_cast<std::size_t>(decpt));
        out.push_back('.');
        out.append(digits + decpt, static_cast<std::size_t>(nd - decpt));
    }
}

bool append_csv_rows(std::string& out, const std::vector<CsvColumn>& columns, std::size_t n_rows, char sep,
                     std::string_view na_rep) {
    const bool single = columns.size() == 1;
    for (std::size_t r = 0; r < n_rows; ++r) {
        const std::size_t row_start = out.size();
        for (std::size_t c = 0; c < columns.size(); ++c) {
            if (c) out.push_back(sep);
            const CsvColumn& col = columns[c];
            const char* p = col.data + static_cast<std::ptrdiff_t>(r) * col.stride;
            switch (col.kind) {
                case CsvKind::Int8: append_int<std::int8_t>(out, p); break;
                case CsvKind::Int16: append_int<std::int16_t>(out, p); break;
                case CsvKind::Int32: append_int<std::int32_t>(out, p); break;
                case CsvKind::Int64: append_int<std::int64_t>(out, p); break;
                case CsvKind::UInt8: append_int<std::uint8_t>(out, p); break;
                case CsvKind::UInt16: append_int<std::uint16_t>(out, p); break;
                case CsvKind::UInt32: append_int<std::uint32_t>(out, p); break;
                case CsvKind::UInt64: append_int<std::uint64_t>(out, p); break;
                case CsvKind::Float64: {
                    double v;
                    std::memcpy(&v, p, sizeof v);
                    append_float_repr(out, v, na_rep);
                    break;
                }
                case CsvKind::Bool: out.append(*p ? "True" : "False"); break;
                case CsvKind::Text: {
                    if (col.missing[r]) {
                        out.append(na_rep);
                        break;
                    }
                    const std::string_view s = col.text[r];
                    if (needs_quotes(s, sep)) return false;
                    out.append(s);
                    break;
                }
            }
        }
        if (single && out.size() == row_start) return false;  // the csv module writes ""
        out.push_back('\n');
    }
    return true;
}

}  // namespace parajob
