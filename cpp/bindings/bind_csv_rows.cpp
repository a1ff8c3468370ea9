// Python view of the DataFrame row writer (csv_rows.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "parajob/csv_rows.hpp"

namespace py = pybind11;

namespace {

// kinds: one letter per column, from numpy's dtype.char where it names a width the same on
// every platform Python runs parajob on: b h i q (int8..int64), B H I Q (uint8..uint64),
// d (float64), ? (bool), O (object: str / None / NaN).
parajob::CsvKind kind_of(char k) {
    switch (k) {
        case 'b': return parajob::CsvKind::Int8;
        case 'h': return parajob::CsvKind::Int16;
        case 'i': return parajob::CsvKind::Int32;
        case 'q': return parajob::CsvKind::Int64;
        case 'B': return parajob::CsvKind::UInt8;
        case 'H': return parajob::CsvKind::UInt16;
        case 'I': return parajob::CsvKind::UInt32;
        case 'Q': return parajob::CsvKind::UInt64;
        case 'd': return parajob::CsvKind::Float64;
        case '?': return parajob::CsvKind::Bool;
        case 'O': return parajob::CsvKind::Text;
        default: throw py::value_error(std::string("format_csv_rows: unknown column kind ") + k);
    }
}

constexpr py::ssize_t item_size(parajob::CsvKind k) {
    switch (k) {
        case parajob::CsvKind::Int8: case parajob::CsvKind::UInt8: case parajob::CsvKind::Bool: return 1;
        case parajob::CsvKind::Int16: case parajob::CsvKind::UInt16: return 2;
        case parajob::CsvKind::Int32: case parajob::CsvKind::UInt32: return 4;
        case parajob::CsvKind::Text: return static_cast<py::ssize_t>(sizeof(PyObject*));
        default: return 8;
    }
}

}  // namespace

void bind_csv_rows(py::module_& m) {
    m.def(
        "format_csv_rows",
        [](const py::list& arrays, const std::string& kinds, py::ssize_t n_rows, char sep,
           const std::string& na_rep) -> py::object {
            if (static_cast<std::size_t>(py::len(arrays)) != kinds.size())
                throw py::value_error("format_csv_rows: one kind per column");
            std::vector<parajob::CsvColumn> columns;
            columns.reserve(kinds.size());
            // Text views point into the str objects' cached UTF-8, which the arrays (held by
            // the caller) keep alive for the whole call.
            std::vector<std::vector<std::string_view>> texts;
            std::vector<std::vector<std::uint8_t>> missing;
            for (std::size_t c = 0; c < kinds.size(); ++c) {
                auto a = py::reinterpret_borrow<py::array>(arrays[c]);
                const parajob::CsvKind kind = kind_of(kinds[c]);
                if (a.ndim() != 1 || a.shape(0) != n_rows || a.itemsize() != item_size(kind))
                    throw py::value_error("format_csv_rows: column " + std::to_string(c) +
                                          " is not a 1-d array of n_rows items of its kind");
                parajob::CsvColumn col{kind, static_cast<const char*>(a.data()), a.strides(0)};
                if (kind == parajob::CsvKind::Text) {
                    auto& views = texts.emplace_back(static_cast<std::size_t>(n_rows));
                    auto& gaps = missing.emplace_back(static_cast<std::size_t>(n_rows), 0);
                    for (py::ssize_t r = 0; r < n_rows; ++r) {
                        PyObject* v;
                        std::memcpy(&v, col.data + r * col.stride, sizeof v);
                        if (PyUnicode_CheckExact(v)) {
                            Py_ssize_t size = 0;
                            const char* utf8 = PyUnicode_AsUTF8AndSize(v, &size);
                            if (utf8 == nullptr) {  // lone surrogates: to_csv + surrogateescape
                                PyErr_Clear();
                                return py::none();
                            }
                            views[static_cast<std::size_t>(r)] = std::string_view(utf8, static_cast<std::size_t>(size));
                        } else if (v == Py_None || (PyFloat_Check(v) && std::isnan(PyFloat_AS_DOUBLE(v)))) {
                            gaps[static_cast<std::size_t>(r)] = 1;
                        } else {
                            return py::none();  // pd.NA, numbers, objects: to_csv's own str()
                        }
                    }
                    col.text = views.data();
                    col.missing = gaps.data();
                }
                columns.push_back(col);
            }
            std::string out;
            out.reserve(static_cast<std::size_t>(n_rows) * (columns.size() * 12 + 1));
            if (!parajob::append_csv_rows(out, columns, static_cast<std::size_t>(n_rows), sep, na_rep))
                return py::none();
            return py::bytes(out);
        },
        py::arg("arrays"), py::arg("kinds"), py::arg("n_rows"), py::arg("sep"), py::arg("na_rep"),
        "The rows as DataFrame.to_csv(sep=sep, na_rep=na_rep, header=False, index=False) "
        "writes them, UTF-8; None where to_csv would quote a field (the caller uses to_csv).");
}
