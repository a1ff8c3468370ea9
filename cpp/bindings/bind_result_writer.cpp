// Python view of a worker's ResultWriter (result_writer.hpp).
#include <pybind11/pybind11.h>

#include <string>

#include "parajob/result_writer.hpp"

namespace py = pybind11;

void bind_result_writer(py::module_& m) {
    py::class_<parajob::ResultWriter>(m, "ResultWriter",
                                      "A worker's spool writer: gathers records, writes them, then finish()es.")
        .def(py::init<parajob::DispatchRegion&, std::uint32_t, std::uint32_t, int, int, std::string>(),
             py::arg("region"), py::arg("worker"), py::arg("process"), py::arg("spool_fd"), py::arg("attempts_fd"),
             py::arg("where"), py::keep_alive<1, 2>())
        .def(
            "add",
            [](parajob::ResultWriter& w, std::uint32_t batch, std::uint32_t attempt, bool ok, const py::bytes& payload,
               std::uint64_t items_in, std::uint64_t items_out, std::int64_t error_code, double run_seconds) {
                char* data = nullptr;
                Py_ssize_t size = 0;
                if (PyBytes_AsStringAndSize(payload.ptr(), &data, &size) != 0) throw py::error_already_set();
                w.add(batch, attempt, ok, std::string_view(data, static_cast<std::size_t>(size)), items_in, items_out,
                      error_code, run_seconds);
            },
            py::arg("batch"), py::arg("attempt"), py::arg("ok"), py::arg("payload"), py::arg("items_in"),
            py::arg("items_out"), py::arg("error_code"), py::arg("run_seconds"))
        .def("flush", &parajob::ResultWriter::flush)
        .def_property_readonly("pending", &parajob::ResultWriter::pending);
}
