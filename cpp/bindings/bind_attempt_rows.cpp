// Python view of the attempt-row join (attempt_rows.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <string_view>
#include <vector>

#include "parajob/attempt_rows.hpp"

namespace py = pybind11;

namespace {
using I64Array = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;
}  // namespace

void bind_attempt_rows(py::module_& m) {
    m.def(
        "join_attempt_rows",
        [](const py::bytes& part, I64Array batch, I64Array attempt, I64Array start_ns, I64Array end_ns,
           const py::bytes& place) -> py::bytes {
            const auto n = static_cast<std::size_t>(batch.size());
            if (static_cast<std::size_t>(attempt.size()) != n || static_cast<std::size_t>(start_ns.size()) != n ||
                static_cast<std::size_t>(end_ns.size()) != n)
                throw py::value_error("batch, attempt, start_ns and end_ns must have the same length");
            std::vector<parajob::AcceptedAttempt> accepted(n);
            for (std::size_t i = 0; i < n; ++i) {
                const std::int64_t b = batch.data()[i];
                if (b < 0) throw py::value_error("join_attempt_rows: a negative batch index");
                accepted[i] = {static_cast<std::uint64_t>(b), attempt.data()[i], start_ns.data()[i], end_ns.data()[i]};
            }
            const std::string_view data = part;  // views into the bytes objects the caller holds
            const std::string_view where = place;
            std::string out;
            {
                // Safe without the GIL: reads the vector and the two views above only.
                py::gil_scoped_release release;
                out = parajob::join_attempt_rows(data, std::move(accepted), where);
            }
            return py::bytes(out);
        },
        py::arg("part"), py::arg("batch"), py::arg("attempt"), py::arg("start_ns"), py::arg("end_ns"),
        py::arg("place"),
        "A worker part's valid attempt rows, each completed with when (the first accepted attempt of "
        "its batch among the arrays given: attempt + 1, UTC ISO start and end) and where (place: "
        "b'pid,node_index,host') it ran; five empty columns for a row with none (attempt_rows.hpp).");
}
