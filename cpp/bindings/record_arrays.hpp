// The numpy arrays that name spool records on the Python side: one entry per record,
// (batch, process, offset, length) in four parallel arrays (bind_merge, bind_spool_check).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>

namespace parajob_bindings {

namespace py = pybind11;

using U32Array = py::array_t<std::uint32_t, py::array::c_style | py::array::forcecast>;
using U64Array = py::array_t<std::uint64_t, py::array::c_style | py::array::forcecast>;

// The number of records; ValueError unless the four arrays have the same length.
inline std::size_t record_count(const U32Array& batch, const U32Array& process, const U64Array& offset,
                                const U64Array& length) {
    const auto n = static_cast<std::size_t>(batch.size());
    if (static_cast<std::size_t>(process.size()) != n || static_cast<std::size_t>(offset.size()) != n ||
        static_cast<std::size_t>(length.size()) != n)
        throw py::value_error("batch, process, offset and length must have the same length");
    return n;
}

}  // namespace parajob_bindings
