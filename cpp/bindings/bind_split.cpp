// Python view of the mini-batch planners (split.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "parajob/split.hpp"

namespace py = pybind11;

void bind_split(py::module_& m) {
    m.def(
        "split_by_count",
        [](std::uint64_t n_items, std::uint64_t batch_size) {
            auto ranges = parajob::split_by_count(n_items, batch_size);
            // An (n, 2) uint64 array of [begin, end): compact even for millions of batches.
            py::array_t<std::uint64_t> out({static_cast<py::ssize_t>(ranges.size()), py::ssize_t{2}});
            auto view = out.mutable_unchecked<2>();
            for (py::ssize_t i = 0; i < static_cast<py::ssize_t>(ranges.size()); ++i) {
                view(i, 0) = ranges[i].begin;
                view(i, 1) = ranges[i].end;
            }
            return out;
        },
        py::arg("n_items"), py::arg("batch_size"),
        "Cut n_items into [begin, end) ranges of batch_size items (last one short). "
        "Returns an (n_batches, 2) uint64 array.");
}
