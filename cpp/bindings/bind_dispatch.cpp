// placeholder: replaced by the listing implementation
#include <pybind11/pybind11.h>
namespace py = pybind11;
void bind_dispatch(py::module_&) {}
