// Python view of the recursive listing (listing.hpp): FileList and list_files().
//
// Paths cross into Python with os.fsdecode semantics: PyUnicode_DecodeFSDefaultAndSize
// uses the interpreter's file-system encoding and error handler (UTF-8 with
// surrogateescape on Linux), so valid UTF-8 names come out as plain str and any other
// byte b comes out as the lone surrogate U+DC00+b, which os.fsencode() and open() turn
// back into the original bytes. Roots go in through PyUnicode_FSConverter, the inverse.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "parajob/listing.hpp"

namespace py = pybind11;

namespace {

py::str fs_decode(std::string_view bytes) {
    PyObject* text =
        PyUnicode_DecodeFSDefaultAndSize(bytes.data(), static_cast<Py_ssize_t>(bytes.size()));
    if (text == nullptr) throw py::error_already_set();
    return py::reinterpret_steal<py::str>(text);
}

// str, bytes or os.PathLike -> raw bytes, as os.fsencode would give them.
std::string fs_encode(const py::object& path) {
    PyObject* encoded = nullptr;
    if (PyUnicode_FSConverter(path.ptr(), &encoded) == 0) throw py::error_already_set();
    const auto bytes = py::reinterpret_steal<py::bytes>(encoded);
    return std::string(bytes);
}

// Python-style index: negative counts from the end; IndexError outside.
std::size_t checked_index(const parajob::FileList& files, py::ssize_t i) {
    const auto n = static_cast<py::ssize_t>(files.size());
    const py::ssize_t j = i < 0 ? i + n : i;
    if (j < 0 || j >= n)
        throw py::index_error("file index " + std::to_string(i) +
                              " out of range for a FileList of " + std::to_string(n) + " files");
    return static_cast<std::size_t>(j);
}

// [start, stop) clamped exactly like list[start:stop].
std::pair<std::size_t, std::size_t> clamp_slice(const parajob::FileList& files, py::ssize_t start,
                                                py::ssize_t stop) {
    const auto n = static_cast<py::ssize_t>(files.size());
    const auto clamp = [n](py::ssize_t k) {
        if (k < 0) k += n;
        return std::clamp<py::ssize_t>(k, 0, n);
    };
    const py::ssize_t lo = clamp(start);
    const py::ssize_t hi = std::max(lo, clamp(stop));
    return {static_cast<std::size_t>(lo), static_cast<std::size_t>(hi)};
}

// The hot call (one per mini-batch): one reused byte buffer, one decode and no
// intermediate Python objects per path.
py::list absolute_paths(const parajob::FileList& files, py::ssize_t start, py::ssize_t stop) {
    const auto [lo, hi] = clamp_slice(files, start, stop);
    py::list out(hi - lo);
    std::string buffer;
    for (std::size_t i = lo; i < hi; ++i) {
        files.absolute_path(i, buffer);
        const auto slot = static_cast<py::ssize_t>(i - lo);
        PyList_SET_ITEM(out.ptr(), slot, fs_decode(buffer).release().ptr());
    }
    return out;
}

}  // namespace

void bind_listing(py::module_& m) {
    py::class_<parajob::FileList>(m, "FileList",
                                  "The regular files under a folder, sorted by relative path "
                                  "(byte-wise), with sizes. Immutable; safe to read after fork().")
        .def_property_readonly(
            "root", [](const parajob::FileList& f) { return fs_decode(f.root()); },
            "Absolute, normalised root folder that was listed.")
        .def("__len__", &parajob::FileList::size)
        .def(
            "path",
            [](const parajob::FileList& f, py::ssize_t i) {
                std::string buffer;
                f.absolute_path(checked_index(f, i), buffer);
                return fs_decode(buffer);
            },
            py::arg("i"), "Absolute path of file i (negative i counts from the end).")
        .def(
            "relpath",
            [](const parajob::FileList& f, py::ssize_t i) {
                return fs_decode(f.relpath(checked_index(f, i)));
            },
            py::arg("i"), "Path of file i relative to root, '/'-separated.")
        .def(
            "size",
            [](const parajob::FileList& f, py::ssize_t i) {
                return f.file_size(checked_index(f, i));
            },
            py::arg("i"), "Size of file i in bytes (of the target, for a symlink).")
        .def("paths", &absolute_paths, py::arg("start"), py::arg("stop"),
             "Absolute paths of files [start, stop), clamped like a slice.")
        .def(
            "sizes",
            [](const parajob::FileList& f) {
                const auto& sizes = f.sizes();
                const auto n = static_cast<py::ssize_t>(sizes.size());
                return py::array_t<std::uint64_t>(n, sizes.data());
            },
            "A uint64 numpy array (a copy) of all sizes, in listing order.")
        .def(
            "mtimes_ns",
            [](const parajob::FileList& f) {
                const auto& mtimes = f.mtimes_ns();
                const auto n = static_cast<py::ssize_t>(mtimes.size());
                return py::array_t<std::int64_t>(n, mtimes.data());
            },
            "An int64 numpy array (a copy) of all modification times (ns since the epoch, "
            "of the target for a symlink), taken by the listing's own stat, in listing order.")
        .def(
            "identity_digests",
            [](const parajob::FileList& f) {
                py::array_t<std::uint8_t> out({static_cast<py::ssize_t>(f.size()), py::ssize_t{16}});
                f.identity_digests(out.mutable_data());
                return out;
            },
            "An (n, 16) uint8 array: per file a hash of its absolute path, size and mtime.")
        .def_property_readonly("total_bytes", &parajob::FileList::total_bytes,
                               "Sum of all sizes in bytes.")
        .def("__repr__", [](const parajob::FileList& f) {
            return py::str("<FileList {!r}: {} files, {} bytes>")
                .format(fs_decode(f.root()), f.size(), f.total_bytes());
        });

    m.def(
        "list_files",
        [](const py::object& root, bool follow_symlinks, unsigned threads) {
            const std::string root_bytes = fs_encode(root);
            // Safe without the GIL: the listing (and its helper threads) reads only
            // root_bytes (a C++ copy) and its own C++ state, and no Python object is
            // touched until the GIL is back (the FileList is wrapped after this returns).
            py::gil_scoped_release no_gil;
            return parajob::list_files(root_bytes,
                                       {.follow_symlinks = follow_symlinks, .threads = threads});
        },
        py::arg("root"), py::arg("follow_symlinks") = true, py::kw_only(), py::arg("threads") = 0,
        "List the regular files under root recursively, sorted by relative path (byte-wise).\n\n"
        "Symlinks to files are listed under the link's path with the target's size; symlinks\n"
        "to directories are descended into unless they loop back to an ancestor; broken\n"
        "symlinks are skipped. With follow_symlinks=False every symlink is skipped.\n"
        "Raises FileNotFoundError (root missing), NotADirectoryError (root is not a folder),\n"
        "PermissionError (any unreadable folder or entry, named), OSError (anything else).\n"
        "threads: concurrent stat/readdir threads, 0 = one per usable CPU (at most 16); all\n"
        "are joined before it returns. Releases the GIL while it walks.");
}
