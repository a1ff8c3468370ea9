// Python view of the spool merge (merge.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "record_arrays.hpp"
#include "parajob/merge.hpp"

namespace py = pybind11;

void bind_merge(py::module_& m) {
    m.def(
        "merge_records",
        [](const std::string& out_path, const std::vector<std::string>& spool_paths,
           parajob_bindings::U32Array batch,
           parajob_bindings::U32Array process,
           parajob_bindings::U64Array offset,
           parajob_bindings::U64Array length) {
            const std::size_t n = parajob_bindings::record_count(batch, process, offset, length);
            std::vector<parajob::RecordRef> records(n);
            for (std::size_t i = 0; i < n; ++i)
                records[i] = {batch.data()[i], process.data()[i], offset.data()[i], length.data()[i]};
            // Safe without the GIL: reads files and the vectors above, no Python objects.
            py::gil_scoped_release release;
            return parajob::merge_records(out_path, spool_paths, records);
        },
        py::arg("out_path"), py::arg("spool_paths"), py::arg("batch"), py::arg("process"), py::arg("offset"),
        py::arg("length"),
        "Write the payloads of the given spool records, in order, to out_path (truncated first). "
        "spool_paths[p] is the spool of process p. Returns the bytes written; does not fsync.");
}
