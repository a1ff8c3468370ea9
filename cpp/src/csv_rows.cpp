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
    // Shortest round-trip digits in scientific form ("-1.2345e+03"), laid out as Python's
    // float_repr_style 'short' does (Python/pystrtod.c format_float_short, mode 'r'): as it
    // is for |v| < 1e-4 or >= 1e16 (both write at least two exponent digits), else
    // positional. Built with memcpy in a local buffer and appended once: per-character
    // appends cost ~60 ns a float, as much as the digits (measured on the scoring workload).
    char sci[32];
    const auto res = std::to_chars(sci, sci + sizeof sci, v, std::chars_format::scientific);
    const char* p = sci + (sci[0] == '-');
    const char* e = p;
    while (*e != 'e') ++e;
    int exp10 = 0;
    for (const char* q = e + 2; q < res.ptr; ++q) exp10 = exp10 * 10 + (*q - '0');
    if (e[1] == '-') exp10 = -exp10;
    const int decpt = exp10 + 1;  // value = 0.d1d2... * 10^decpt
    if (decpt <= -4 || decpt > 16) {
        out.append(sci, static_cast<std::size_t>(res.ptr - sci));
        return;
    }
    const char* rest = e > p + 1 ? p + 2 : e;  // the digits after the first one
    const auto n_rest = static_cast<int>(e - rest);
    const int nd = 1 + n_rest;
    char text[48];
    char* w = text;
    if (p != sci) *w++ = '-';
    if (decpt <= 0) {
        std::memcpy(w, "0.000", static_cast<std::size_t>(2 - decpt));
        w += 2 - decpt;
        *w++ = *p;
        std::memcpy(w, rest, static_cast<std::size_t>(n_rest));
        w += n_rest;
    } else if (decpt >= nd) {
        *w++ = *p;
        std::memcpy(w, rest, static_cast<std::size_t>(n_rest));
        w += n_rest;
        std::memset(w, '0', static_cast<std::size_t>(decpt - nd));
        w += decpt - nd;
        *w++ = '.';
        *w++ = '0';
    } else {
        *w++ = *p;
        std::memcpy(w, rest, static_cast<std::size_t>(decpt - 1));
        w += decpt - 1;
        *w++ = '.';
        std::memcpy(w, rest + decpt - 1, static_cast<std::size_t>(nd - decpt));
        w += nd - decpt;
    }
    out.append(text, static_cast<std::size_t>(w - text));
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
