// Python view of the record scanner (records.hpp): scan_delimited(), scan_lines().
//
// Paths go in with os.fsencode semantics (PyUnicode_FSConverter). A scan returns a
// RecordScan whose pieces are an (n, 4) uint64 array [begin, end, records, first_line]:
// compact for the thousands of pieces of a large file, and ready for numpy.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cerrno>
#include <string>

#include "parajob/records.hpp"

namespace py = pybind11;

namespace {

std::string fs_encode(const py::object& path) {
    PyObject* encoded = nullptr;
    if (PyUnicode_FSConverter(path.ptr(), &encoded) == 0) throw py::error_already_set();
    const auto bytes = py::reinterpret_steal<py::bytes>(encoded);
    return std::string(bytes);
}

char one_byte(const std::string& text, const char* what) {
    if (text.size() != 1)
        throw py::value_error(std::string(what) + " must be a single byte, found '" + text + "'");
    return text[0];
}

py::array_t<std::uint64_t> pieces_array(const std::vector<parajob::Piece>& pieces) {
    py::array_t<std::uint64_t> out({static_cast<py::ssize_t>(pieces.size()), py::ssize_t{4}});
    auto view = out.mutable_unchecked<2>();
    for (py::ssize_t i = 0; i < static_cast<py::ssize_t>(pieces.size()); ++i) {
        const auto& p = pieces[static_cast<std::size_t>(i)];
        view(i, 0) = p.begin;
        view(i, 1) = p.end;
        view(i, 2) = p.records;
        view(i, 3) = p.first_line;
    }
    return out;
}

py::object error_tuple(const parajob::RecordError& e) {
    switch (e.kind) {
        case parajob::RecordErrorKind::none: return py::none();
        case parajob::RecordErrorKind::field_count:
            return py::make_tuple("field_count", e.line, e.offset, e.expected, e.found);
        case parajob::RecordErrorKind::line_break_in_quotes:
            return py::make_tuple("line_break_in_quotes", e.line, e.offset, e.expected, e.found);
    }
    return py::none();
}

}  // namespace

void bind_records(py::module_& m) {
    py::class_<parajob::ScanResult>(m, "RecordScan",
                                    "Record boundaries of one delimited-text or JSON-lines file.")
        .def_readonly("size", &parajob::ScanResult::size)
        .def_readonly("header_begin", &parajob::ScanResult::header_begin)
        .def_readonly("header_end", &parajob::ScanResult::header_end)
        .def_readonly("data_begin", &parajob::ScanResult::data_begin)
        .def_readonly("end", &parajob::ScanResult::end)
        .def_readonly("fields", &parajob::ScanResult::fields)
        .def_readonly("records", &parajob::ScanResult::records)
        .def_property_readonly(
            "pieces", [](const parajob::ScanResult& r) { return pieces_array(r.pieces); },
            "(n, 4) uint64 array: [begin, end, records, first_line] per piece.")
        .def_property_readonly(
            "error", [](const parajob::ScanResult& r) { return error_tuple(r.error); },
            "None, or (kind, line, offset, expected, found) of the first bad record.")
        .def("__repr__", [](const parajob::ScanResult& r) {
            return py::str("<RecordScan {} bytes, {} records, {} pieces>")
                .format(r.size, r.records, r.pieces.size());
        });

    m.def(
        "scan_delimited",
        [](const py::object& path, const std::string& delimiter, const std::string& quote,
           bool quoting, bool multi_line, std::uint64_t begin, bool header,
           std::uint64_t expected_fields, bool check_fields, std::uint64_t target_bytes,
           std::uint64_t max_records, unsigned threads, std::uint64_t thread_bytes) {
            parajob::TextFormat format{one_byte(delimiter, "delimiter"), one_byte(quote, "quote"),
                                       quoting, multi_line};
            if (format.delimiter == '\n' || format.delimiter == '\r' ||
                (quoting && format.delimiter == format.quote))
                throw py::value_error("the delimiter cannot be a line break or the quote character");
            parajob::ScanOptions options{begin,        header,      expected_fields, check_fields,
                                         target_bytes, max_records, threads, thread_bytes};
            const std::string file = fs_encode(path);
            // Safe without the GIL: the scan reads only C++ copies (file, format, options)
            // and joins its helper threads before returning; no Python object is touched.
            py::gil_scoped_release no_gil;
            return parajob::scan_delimited_file(file, format, options);
        },
        py::arg("path"), py::kw_only(), py::arg("delimiter") = ",", py::arg("quote") = "\"",
        py::arg("quoting") = true, py::arg("multi_line") = false, py::arg("begin") = 0,
        py::arg("header") = false, py::arg("expected_fields") = 0, py::arg("check_fields") = true,
        py::arg("target_bytes") = 0, py::arg("max_records") = 0, py::arg("threads") = 0,
        py::arg("thread_bytes") = std::uint64_t{32} << 20,
        "Scan a delimited-text file for record boundaries and cut it near every target_bytes.\n\n"
        "Releases the GIL; helper threads (threads: 0 = one per CPU, at most 8; each gets at\n"
        "least thread_bytes; never with multi_line) are joined before it returns. Raises OSError\n"
        "subclasses naming the path; problems in the data are in RecordScan.error.");

    m.def(
        "scan_lines",
        [](const py::object& path, std::uint64_t begin, std::uint64_t target_bytes,
           std::uint64_t max_records) {
            parajob::ScanOptions options;
            options.begin = begin;
            options.target_bytes = target_bytes;
            options.max_records = max_records;
            const std::string file = fs_encode(path);
            py::gil_scoped_release no_gil;  // as for scan_delimited
            return parajob::scan_lines_file(file, options);
        },
        py::arg("path"), py::kw_only(), py::arg("begin") = 0, py::arg("target_bytes") = 0,
        py::arg("max_records") = 0,
        "Scan a JSON-lines file: records are non-blank lines; cut near every target_bytes.");
}
