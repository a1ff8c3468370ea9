// parajob._core: the compiled core. This file only assembles the module; each
// concept binds itself in its own bind_<concept>.cpp (the boost-histogram layout).
#include <pybind11/pybind11.h>

namespace py = pybind11;

void bind_path_error(py::module_& m);
void bind_listing(py::module_& m);
void bind_split(py::module_& m);
void bind_dispatch(py::module_& m);
void bind_records(py::module_& m);
void bind_merge(py::module_& m);
void bind_result_writer(py::module_& m);
void bind_spool_check(py::module_& m);
void bind_csv_rows(py::module_& m);
void bind_attempt_rows(py::module_& m);

PYBIND11_MODULE(_core, m) {
    m.doc() = "parajob's compiled core: listing, splitting, shared-memory dispatch, watchdog.";
    bind_path_error(m);
    bind_listing(m);
    bind_split(m);
    bind_dispatch(m);
    bind_records(m);
    bind_merge(m);
    bind_result_writer(m);
    bind_spool_check(m);
    bind_csv_rows(m);
    bind_attempt_rows(m);
}
