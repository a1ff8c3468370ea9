// See attempt_rows.hpp. Replaces a numpy join that cost the driver ~0.45 s of serial
// end-of-job per 100,000 rows (a regex per row, then numpy string ufuncs), measured on the
// issue-13 tiny-file job with one file per mini-batch.
#include "parajob/attempt_rows.hpp"

#include <algorithm>
#include <charconv>
#include <cstddef>

namespace parajob {

namespace {

// Consumes one or more ASCII digits at s[i]; false if there is none.
bool digits(std::string_view s, std::size_t& i) {
    const std::size_t start = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    return i > start;
}

bool literal(std::string_view s, std::size_t& i, std::string_view what) {
    if (s.substr(i, what.size()) != what) return false;
    i += what.size();
    return true;
}

// Whether `line` (its terminator included) is a row as ResultWriter writes it.
bool valid_row(std::string_view line) {
    std::size_t i = 0;
    const bool head = digits(line, i) && literal(line, i, ",") && digits(line, i) && literal(line, i, ",node") &&
                      digits(line, i) && literal(line, i, ",process") && digits(line, i) &&
                      literal(line, i, ",") && digits(line, i) && literal(line, i, ",") && digits(line, i) &&
                      literal(line, i, ",") && digits(line, i) && literal(line, i, ".") && digits(line, i) &&
                      literal(line, i, ",");
    if (!head) return false;
    if (!literal(line, i, "succeeded") && !literal(line, i, "short_return")) return false;
    return literal(line, i, ",\n") && i == line.size();
}

void two_digits(std::string& out, unsigned v) {
    out.push_back(static_cast<char>('0' + v / 10));
    out.push_back(static_cast<char>('0' + v % 10));
}

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
    std::int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
    return q;
}

}  // namespace

void append_iso_time(std::string& out, std::int64_t ns) {
    const std::int64_t ms = floor_div(ns, 1'000'000);
    const std::int64_t day = floor_div(ms, 86'400'000);
    const std::int64_t ms_of_day = ms - day * 86'400'000;
    // Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's civil_from_days).
    const std::int64_t z = day + 719468;
    const std::int64_t era = floor_div(z, 146097);
    const std::int64_t doe = z - era * 146097;
    const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const std::int64_t mp = (5 * doy + 2) / 153;
    const auto d = static_cast<unsigned>(doy - (153 * mp + 2) / 5 + 1);
    const auto m = static_cast<unsigned>(mp < 10 ? mp + 3 : mp - 9);
    const std::int64_t y = yoe + era * 400 + (m <= 2 ? 1 : 0);
    const auto year = static_cast<unsigned>(std::clamp<std::int64_t>(y, 0, 9999));  // numpy's S10 date
    two_digits(out, year / 100);
    two_digits(out, year % 100);
    out.push_back('-');
    two_digits(out, m);
    out.push_back('-');
    two_digits(out, d);
    const auto second = static_cast<unsigned>(ms_of_day / 1000);
    const auto milli = static_cast<unsigned>(ms_of_day % 1000);
    out.push_back('T');
    two_digits(out, second / 3600);
    out.push_back(':');
    two_digits(out, second / 60 % 60);
    out.push_back(':');
    two_digits(out, second % 60);
    out.push_back('.');
    out.push_back(static_cast<char>('0' + milli / 100));
    two_digits(out, milli % 100);
    out.push_back('Z');
}

namespace {

// The ISO text of the last stamp formatted, by millisecond: the attempts of short
// mini-batches start and end within the same millisecond by the dozen.
class IsoCache {
public:
    const std::string& of(std::int64_t ns) {
        const std::int64_t ms = floor_div(ns, 1'000'000);
        if (text_.empty() || ms != ms_) {
            ms_ = ms;
            text_.clear();
            append_iso_time(text_, ns);
        }
        return text_;
    }

private:
    std::int64_t ms_ = 0;
    std::string text_;
};

}  // namespace

std::string join_attempt_rows(std::string_view part, std::vector<AcceptedAttempt> accepted,
                              std::string_view place) {
    // The first accepted attempt per batch wins (stable sort, then lower_bound).
    std::stable_sort(accepted.begin(), accepted.end(),
                     [](const AcceptedAttempt& a, const AcceptedAttempt& b) { return a.batch < b.batch; });
    std::string out;
    out.reserve(part.size() * 2 + (part.size() / 32) * place.size());
    IsoCache starts, ends;
    char digits_buf[24];
    std::size_t at = 0;
    while (at < part.size()) {
        // One line as bytes.splitlines(keepends=True) cuts it.
        std::size_t end = at;
        while (end < part.size() && part[end] != '\n' && part[end] != '\r') ++end;
        if (end < part.size()) end += (part[end] == '\r' && end + 1 < part.size() && part[end + 1] == '\n') ? 2 : 1;
        const std::string_view line = part.substr(at, end - at);
        at = end;
        if (!valid_row(line)) continue;
        const std::size_t comma1 = line.find(',');
        const std::size_t comma2 = line.find(',', comma1 + 1);
        const std::string_view index = line.substr(0, comma1);
        const std::string_view rest = line.substr(comma2, line.size() - 1 - comma2);  // ",node..,"
        std::uint64_t batch = 0;
        const auto parsed = std::from_chars(index.data(), index.data() + index.size(), batch);
        const AcceptedAttempt* found = nullptr;
        if (parsed.ec == std::errc()) {
            const auto it = std::lower_bound(
                accepted.begin(), accepted.end(), batch,
                [](const AcceptedAttempt& a, std::uint64_t b) { return a.batch < b; });
            if (it != accepted.end() && it->batch == batch) found = &*it;
        }
        out.append(index);
        out.push_back(',');
        if (found != nullptr) {
            const auto n = std::to_chars(digits_buf, digits_buf + sizeof digits_buf, found->attempt + 1);
            out.append(digits_buf, n.ptr);
            out.append(rest);
            out.push_back(',');
            out.append(starts.of(found->start_ns));
            out.push_back(',');
            out.append(ends.of(found->end_ns));
            out.push_back(',');
            out.append(place);
        } else {
            out.append(line.substr(comma1 + 1, comma2 - comma1 - 1));  // its own attempt
            out.append(rest);
            out.append(",,,,,");
        }
        out.push_back('\n');
    }
    return out;
}

}  // namespace parajob
