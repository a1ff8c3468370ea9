// PathError (path_error.hpp) -> the OSError subclass Python itself would raise for that
// errno, with our message (which names the path) as str(exc) and exc.errno set for callers
// that branch on it. filename stays unset: setting it would make OSError.__str__ replace
// the message with "[Errno N] ...". One translator for every part of the core that does
// file I/O (listing, record scanning).
#include <pybind11/pybind11.h>

#include <cerrno>

#include "parajob/path_error.hpp"

namespace py = pybind11;

namespace {

void raise_path_error(const parajob::PathError& e) {
    PyObject* type = PyExc_OSError;
    switch (e.error_number()) {
        case ENOENT: type = PyExc_FileNotFoundError; break;
        case ENOTDIR: type = PyExc_NotADirectoryError; break;
        case EISDIR: type = PyExc_IsADirectoryError; break;
        case EACCES:
        case EPERM: type = PyExc_PermissionError; break;
        default: break;
    }
    // The message may hold path bytes that are not UTF-8: decode as os.fsdecode does.
    PyObject* text = PyUnicode_DecodeFSDefault(e.what());
    if (text == nullptr) throw py::error_already_set();
    py::object exc = py::reinterpret_borrow<py::object>(type)(py::reinterpret_steal<py::str>(text));
    exc.attr("errno") = e.error_number();
    PyErr_SetObject(type, exc.ptr());
}

}  // namespace

void bind_path_error(py::module_&) {
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const parajob::PathError& e) {
            raise_path_error(e);
        }
    });
}
