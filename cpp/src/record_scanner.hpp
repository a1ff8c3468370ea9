// The scanners behind records.cpp (internal: not installed, no Python): the byte-wise
// reference state machine, its 64-byte fast path, and the piece bookkeeping. The rules
// they implement are in parajob/records.hpp. Included by records.cpp only.
#pragma once

#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "parajob/records.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace parajob::detail {

// ----------------------------------------------------------------------------------------
// Pieces from record ends.

// Collects pieces in file order from the record ends it is told about. A grid point g
// cuts at the first record end >= g, so after a cut at `end` the next grid point that
// matters is the first one > end: the cuts are a function of the bytes alone, and a
// builder started at any record end (a thread's first byte) makes the same cuts as one
// that ran from the beginning.
class PieceBuilder {
public:
    PieceBuilder() = default;
    PieceBuilder(std::uint64_t start, std::uint64_t line, std::uint64_t origin,
                 std::uint64_t target)
        : origin_(origin), target_(target), open_{start, start, 0, line} {
        next_grid_ = target_ ? grid_after(start) : 0;
    }

    // A line ended at `end` (just after its line break); `record`: it held a data record.
    void line_end(std::uint64_t end, bool record, std::uint64_t line_after) {
        if (record) ++open_.records;
        if (target_ != 0 && end >= next_grid_) {
            open_.end = end;
            closed_.push_back(open_);
            open_ = Piece{end, end, 0, line_after};
            next_grid_ = grid_after(end);
        }
    }

    void finish(std::uint64_t end) { open_.end = end; }
    std::vector<Piece>& closed() { return closed_; }
    Piece& open() { return open_; }

private:
    std::uint64_t grid_after(std::uint64_t at) const {
        return origin_ + ((at - origin_) / target_ + 1) * target_;
    }

    std::uint64_t origin_ = 0;
    std::uint64_t target_ = 0;
    std::uint64_t next_grid_ = 0;
    Piece open_;
    std::vector<Piece> closed_;
};

// What a scanner of one contiguous range found; lines are relative to the range's start.
struct RangeResult {
    std::vector<Piece> closed;
    Piece open;
    std::uint64_t records = 0;
    std::uint64_t first_fields = 0;
    std::uint64_t line = 1;  // line number where the scan stopped
    std::uint64_t header_begin = 0, header_end = 0, data_begin = 0, data_line = 1;
    std::uint64_t stop_at = 0;
    bool stopped = false;
    RecordError error;
};

// ----------------------------------------------------------------------------------------
// The record bookkeeping shared by both scanners.

class RecordSink {
public:
    RecordSink(const ScanOptions& options, std::uint64_t start, std::uint64_t line,
               std::uint64_t grid_origin, bool header_pending, std::uint64_t expected)
        : opts_(options), header_pending_(header_pending), expected_(expected),
          line_(line), rec_start_(start), rec_line_(line),
          builder_(start, line, grid_origin, options.target_bytes) {
        out_.data_begin = start;
        out_.data_line = line;
    }

    bool stopped() const { return out_.stopped; }

    RangeResult take(std::uint64_t eof) {
        builder_.finish(out_.stopped ? out_.stop_at : eof);
        out_.closed = std::move(builder_.closed());
        out_.open = builder_.open();
        out_.line = line_;
        return std::move(out_);
    }

protected:
    // The line that began at rec_start_ ended at `end` (line_ already counts its break).
    void end_record(std::uint64_t end) {
        if (content_ && header_pending_) {
            header_pending_ = false;
            out_.header_begin = rec_start_;
            out_.header_end = end;
            out_.first_fields = fields_;
            if (expected_ == 0) expected_ = fields_;
            out_.data_begin = end;
            out_.data_line = line_;
            builder_ = PieceBuilder(end, line_, end, opts_.target_bytes);
        } else {
            if (content_) {
                if (out_.first_fields == 0) out_.first_fields = fields_;
                if (expected_ == 0) expected_ = fields_;
                if (opts_.check_fields && fields_ != expected_) {
                    fail(RecordErrorKind::field_count, expected_, fields_);
                    return;
                }
                ++out_.records;
            }
            builder_.line_end(end, content_, line_);
            if (content_ && opts_.max_records != 0 && out_.records >= opts_.max_records) {
                out_.stopped = true;
                out_.stop_at = end;
            }
        }
        rec_start_ = end;
        rec_line_ = line_;
        fields_ = 1;
        content_ = false;
    }

    void fail(RecordErrorKind kind, std::uint64_t expected, std::uint64_t found) {
        out_.error = RecordError{kind, rec_line_, rec_start_, expected, found};
        out_.stopped = true;
        out_.stop_at = rec_start_;
    }

    const ScanOptions& opts_;
    bool header_pending_;
    std::uint64_t expected_;
    std::uint64_t line_;        // line number of the next byte
    std::uint64_t rec_start_;   // offset where the current line/record began
    std::uint64_t rec_line_;
    std::uint64_t fields_ = 1;
    bool content_ = false;      // the current line holds a record (not an empty line)
    PieceBuilder builder_;
    RangeResult out_;
};

// ----------------------------------------------------------------------------------------
// Delimited text.

// Ones in x. Without -mpopcnt, GCC turns __builtin_popcountll into a call to libgcc's
// __popcountdi2 on x86-64: 21% of the scan of a numeric CSV under perf. The SWAR form
// inlines to a dozen instructions; with -mpopcnt (or on other targets) the builtin is one.
inline unsigned count_ones(std::uint64_t x) {
#if defined(__x86_64__) && !defined(__POPCNT__)
    x = x - ((x >> 1) & 0x5555555555555555ULL);
    x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
    x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
    return static_cast<unsigned>((x * 0x0101010101010101ULL) >> 56);
#else
    return static_cast<unsigned>(__builtin_popcountll(x));
#endif
}

struct Masks {
    std::uint64_t delim, quote, lf, cr;
};

inline Masks block_masks(const char* p, char delim, char quote) {
#if defined(__SSE2__)
    const __m128i vd = _mm_set1_epi8(delim), vq = _mm_set1_epi8(quote);
    const __m128i vl = _mm_set1_epi8('\n'), vc = _mm_set1_epi8('\r');
    Masks m{0, 0, 0, 0};
    for (int k = 0; k < 4; ++k) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * k));
        const int shift = 16 * k;
        m.delim |= std::uint64_t(std::uint32_t(_mm_movemask_epi8(_mm_cmpeq_epi8(v, vd)))) << shift;
        m.quote |= std::uint64_t(std::uint32_t(_mm_movemask_epi8(_mm_cmpeq_epi8(v, vq)))) << shift;
        m.lf |= std::uint64_t(std::uint32_t(_mm_movemask_epi8(_mm_cmpeq_epi8(v, vl)))) << shift;
        m.cr |= std::uint64_t(std::uint32_t(_mm_movemask_epi8(_mm_cmpeq_epi8(v, vc)))) << shift;
    }
    return m;
#else
    Masks m{0, 0, 0, 0};
    for (int i = 0; i < 64; ++i) {
        const std::uint64_t bit = std::uint64_t{1} << i;
        m.delim |= p[i] == delim ? bit : 0;
        m.quote |= p[i] == quote ? bit : 0;
        m.lf |= p[i] == '\n' ? bit : 0;
        m.cr |= p[i] == '\r' ? bit : 0;
    }
    return m;
#endif
}

class DelimitedScanner : public RecordSink {
public:
    DelimitedScanner(const TextFormat& format, const ScanOptions& options, std::uint64_t start,
                     std::uint64_t line, std::uint64_t grid_origin, bool header_pending,
                     std::uint64_t expected)
        : RecordSink(options, start, line, grid_origin, header_pending, expected),
          fmt_(format) {}

    // Bytes [at, at + n) of the input, in order. False once the scan has stopped.
    bool feed(const char* data, std::size_t n, std::uint64_t at) {
        std::size_t i = 0;
        for (; i + 64 <= n; i += 64) {
            if (!block(data + i, at + i)) return false;
        }
        for (; i < n; ++i) {
            if (!step(data[i], at + i)) return false;
        }
        return true;
    }

    // End of input at offset eof: ends an open record.
    void finish(std::uint64_t eof) {
        if (out_.stopped) return;
        if (pending_cr_ || content_) end_record(eof);
    }

private:
    enum class State : std::uint8_t { field_start, in_field, in_quoted, quote_in_quoted };

    bool block(const char* p, std::uint64_t at) {
        const Masks m = block_masks(p, fmt_.delimiter, fmt_.quote);
        const bool outside = state_ == State::field_start || state_ == State::in_field;
        const bool quotes = fmt_.quoting && m.quote != 0;
        // Every CR must be the first half of a CRLF inside this block (bit 63 cannot be).
        if (!outside || pending_cr_ || quotes || (m.cr & ~(m.lf >> 1)) != 0) {
            for (int i = 0; i < 64; ++i) {
                if (!step(p[i], at + i)) return false;
            }
            return true;
        }
        unsigned pos = 0;
        for (std::uint64_t lf = m.lf; lf != 0; lf &= lf - 1) {
            const unsigned i = static_cast<unsigned>(__builtin_ctzll(lf));
            const std::uint64_t span = ((std::uint64_t{1} << i) - 1) & ~((std::uint64_t{1} << pos) - 1);
            fields_ += count_ones(m.delim & span);
            unsigned len = i - pos;
            if (len != 0 && ((m.cr >> (i - 1)) & 1)) --len;  // the CR of a CRLF is no content
            if (len != 0) content_ = true;
            ++line_;
            end_record(at + i + 1);
            if (out_.stopped) return false;
            pos = i + 1;
        }
        state_ = State::field_start;
        if (pos < 64) {
            fields_ += count_ones(m.delim & (~std::uint64_t{0} << pos));
            content_ = true;
            state_ = ((m.delim >> 63) & 1) ? State::field_start : State::in_field;
        }
        prev_cr_ = false;
        return true;
    }

    // The reference state machine: one byte at offset o.
    bool step(char c, std::uint64_t o) {
        if (pending_cr_) {  // a CR outside quotes ended a line: is it a CRLF?
            pending_cr_ = false;
            if (c == '\n') {
                prev_cr_ = false;
                end_record(o + 1);
                state_ = State::field_start;
                return !out_.stopped;
            }
            end_record(o);
            state_ = State::field_start;
            if (out_.stopped) return false;
        }
        switch (state_) {
        case State::in_quoted:
            if (fmt_.quoting && c == fmt_.quote) {
                state_ = State::quote_in_quoted;
            } else if (c == '\n' || c == '\r') {
                if (!fmt_.multi_line) {
                    fail(RecordErrorKind::line_break_in_quotes, 0, 0);
                    return false;
                }
                if (c == '\r' || !prev_cr_) ++line_;
            }
            prev_cr_ = c == '\r';
            return true;
        case State::quote_in_quoted:
            if (c == fmt_.quote) {  // a doubled quote: a literal quote, still quoted
                state_ = State::in_quoted;
                prev_cr_ = false;
                return true;
            }
            state_ = State::in_field;  // after the closing quote the field goes on unquoted
            [[fallthrough]];
        default:
            prev_cr_ = false;
            if (c == fmt_.delimiter) {
                ++fields_;
                content_ = true;
                state_ = State::field_start;
            } else if (c == '\n') {
                ++line_;
                end_record(o + 1);
                state_ = State::field_start;
            } else if (c == '\r') {
                ++line_;
                pending_cr_ = true;
                prev_cr_ = true;
            } else if (fmt_.quoting && c == fmt_.quote && state_ == State::field_start) {
                state_ = State::in_quoted;
                content_ = true;
            } else {
                state_ = State::in_field;
                content_ = true;
            }
            return !out_.stopped;
        }
    }

    const TextFormat& fmt_;
    State state_ = State::field_start;
    bool pending_cr_ = false;  // a CR outside quotes ended a line; LF may follow
    bool prev_cr_ = false;     // the previous byte was a CR (CRLF counts as one line)
};

// ----------------------------------------------------------------------------------------
// JSON lines.

class LineScanner : public RecordSink {
public:
    LineScanner(const ScanOptions& options, std::uint64_t start)
        : RecordSink(options, start, 1, start, false, 0) {}

    bool feed(const char* data, std::size_t n, std::uint64_t at) {
        const char* p = data;
        const char* const stop = data + n;
        while (p < stop) {
            const char* lf = static_cast<const char*>(std::memchr(p, '\n', std::size_t(stop - p)));
            const char* line_stop = lf ? lf : stop;
            for (const char* q = p; !content_ && q < line_stop; ++q) {
                content_ = !(*q == ' ' || *q == '\t' || *q == '\r');
            }
            if (lf == nullptr) break;
            ++line_;
            end_record(at + std::uint64_t(lf - data) + 1);
            if (out_.stopped) return false;
            p = lf + 1;
        }
        return true;
    }

    void finish(std::uint64_t eof) {
        if (!out_.stopped && content_) end_record(eof);
    }
};

}  // namespace parajob::detail
