// Mini-batch plans: how a list of items is cut into mini-batches.
#pragma once

#include <cstdint>
#include <vector>

namespace parajob {

// A half-open range [begin, end) of item indices: one mini-batch.
struct ItemRange {
    std::uint64_t begin;
    std::uint64_t end;
};

// Cuts n_items into consecutive mini-batches of batch_size items; the last one may be
// short. Every item lands in exactly one mini-batch, in order. batch_size must be >= 1.
std::vector<ItemRange> split_by_count(std::uint64_t n_items, std::uint64_t batch_size);

}  // namespace parajob
