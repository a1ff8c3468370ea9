// Python view of the driver's record check (spool_check.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "record_arrays.hpp"
#include "parajob/spool_check.hpp"

namespace py = pybind11;

void bind_spool_check(py::module_& m) {
    py::class_<parajob::SpoolChecker>(m, "SpoolChecker",
                                      "Checks spool records (magic, batch, length, CRC32) before they are accepted.")
        .def(py::init<>())
        .def("add_spool", &parajob::SpoolChecker::add_spool, py::arg("process"), py::arg("path"))
        .def(
            "check",
            [](parajob::SpoolChecker& c, parajob_bindings::U32Array batch,
               parajob_bindings::U32Array process,
               parajob_bindings::U64Array offset,
               parajob_bindings::U64Array length) {
                const std::size_t n = parajob_bindings::record_count(batch, process, offset, length);
                py::array_t<bool> ok(static_cast<py::ssize_t>(n));
                auto* out = reinterpret_cast<std::uint8_t*>(ok.mutable_data());
                {
                    // Safe without the GIL: reads files and the arrays above, which the
                    // caller's references keep alive; no Python object is touched.
                    py::gil_scoped_release release;
                    c.check(n, batch.data(), process.data(), offset.data(), length.data(), out);
                }
                return ok;
            },
            py::arg("batch"), py::arg("process"), py::arg("offset"), py::arg("length"),
            "A bool array: whether each record is intact.")
        .def("close", &parajob::SpoolChecker::close);
}
