// A bounded multi-producer / multi-consumer ring of batch ids that lives in shared memory.
//
// Vyukov's bounded MPMC queue (as in rigtorp/MPMCQueue), with the cells found by offset from
// a RingHeader rather than through a pointer, so the same bytes work in every process that
// maps the region. Protocol, for a cell at position pos (index pos & mask):
//   1. A producer claims pos when cell.sequence == pos, by CAS on enqueue_pos; it writes the
//      value and then stores sequence = pos + 1 (release), handing the cell to consumers.
//   2. A consumer claims pos when cell.sequence == pos + 1, by CAS on dequeue_pos; it reads
//      the value and then stores sequence = pos + capacity (release), handing the cell back
//      to the producer of the next lap.
// try_push / try_pop never block and return false when the ring is full / empty.
#pragma once

#include <cstdint>

#include "parajob/shm_layout.hpp"

namespace parajob {

class RingView {
public:
    RingView() = default;
    explicit RingView(RingHeader* header) : header_(header) {}

    // Bytes needed for a ring of `capacity` cells (a power of two), header included.
    static constexpr std::uint64_t bytes_for(std::uint64_t capacity) {
        return sizeof(RingHeader) + capacity * sizeof(RingCell);
    }

    // Writes an empty ring into raw (zeroed) memory. Call once, before any fork.
    static RingView initialise(void* memory, std::uint64_t capacity) {
        auto* header = static_cast<RingHeader*>(memory);
        header->enqueue_pos.store(0, std::memory_order_relaxed);
        header->dequeue_pos.store(0, std::memory_order_relaxed);
        header->mask = capacity - 1;
        RingView ring(header);
        for (std::uint64_t i = 0; i < capacity; ++i) {
            // relaxed: the region is published to workers by fork(), which is a full barrier.
            ring.cell(i).sequence.store(i, std::memory_order_relaxed);
        }
        return ring;
    }

    bool try_push(std::uint64_t value) {
        std::uint64_t pos = header_->enqueue_pos.load(std::memory_order_relaxed);
        for (;;) {
            RingCell& c = cell(pos);
            // acquire: pairs with the consumer's release in try_pop step 2, so the cell is free.
            const std::uint64_t seq = c.sequence.load(std::memory_order_acquire);
            const auto diff = static_cast<std::int64_t>(seq - pos);
            if (diff == 0) {
                // relaxed: the CAS only claims the position; the cell's sequence publishes it.
                if (header_->enqueue_pos.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
                    c.value = value;
                    // release: publishes value; pairs with the acquire load in try_pop.
                    c.sequence.store(pos + 1, std::memory_order_release);
                    return true;
                }
            } else if (diff < 0) {
                return false;  // full: the cell still holds last lap's value
            } else {
                pos = header_->enqueue_pos.load(std::memory_order_relaxed);
            }
        }
    }

    bool try_pop(std::uint64_t& value) {
        std::uint64_t pos = header_->dequeue_pos.load(std::memory_order_relaxed);
        for (;;) {
            RingCell& c = cell(pos);
            // acquire: pairs with the producer's release in try_push, so value is visible.
            const std::uint64_t seq = c.sequence.load(std::memory_order_acquire);
            const auto diff = static_cast<std::int64_t>(seq - (pos + 1));
            if (diff == 0) {
                if (header_->dequeue_pos.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
                    value = c.value;
                    // release: returns the cell to producers; pairs with the acquire in try_push.
                    c.sequence.store(pos + header_->mask + 1, std::memory_order_release);
                    return true;
                }
            } else if (diff < 0) {
                return false;  // empty
            } else {
                pos = header_->dequeue_pos.load(std::memory_order_relaxed);
            }
        }
    }

    // Approximate: producers and consumers may move while it is read.
    std::uint64_t size_approx() const {
        const std::uint64_t tail = header_->enqueue_pos.load(std::memory_order_relaxed);
        const std::uint64_t head = header_->dequeue_pos.load(std::memory_order_relaxed);
        return tail > head ? tail - head : 0;
    }

    std::uint64_t capacity() const { return header_->mask + 1; }

private:
    RingCell& cell(std::uint64_t pos) const {
        auto* cells = reinterpret_cast<RingCell*>(reinterpret_cast<char*>(header_) + sizeof(RingHeader));
        return cells[pos & header_->mask];
    }

    RingHeader* header_ = nullptr;
};

}  // namespace parajob
