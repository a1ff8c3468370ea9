#include "parajob/split.hpp"

#include <stdexcept>

namespace parajob {

std::vector<ItemRange> split_by_count(std::uint64_t n_items, std::uint64_t batch_size) {
    if (batch_size == 0) throw std::invalid_argument("batch_size must be at least 1");
    std::vector<ItemRange> ranges;
    ranges.reserve(n_items / batch_size + 1);
    for (std::uint64_t begin = 0; begin < n_items; begin += batch_size) {
        const std::uint64_t end = begin + batch_size < n_items ? begin + batch_size : n_items;
        ranges.push_back({begin, end});
    }
    return ranges;
}

}  // namespace parajob
