// Python view of the dispatch region (dispatch.hpp) and the watchdog scan (watchdog.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <string>

#include "parajob/dispatch.hpp"
#include "parajob/watchdog.hpp"

namespace py = pybind11;
using parajob::BatchState;
using parajob::DispatchRegion;
using parajob::WorkerState;

namespace {

py::tuple state_tuple(std::uint64_t word) {
    const auto w = parajob::StateWord::unpack(word);
    return py::make_tuple(static_cast<int>(w.state), w.attempt, w.process);
}

}  // namespace

void bind_dispatch(py::module_& m) {
    py::enum_<BatchState>(m, "BatchState", "State of a mini-batch in the shared region.")
        .value("PENDING", BatchState::kPending)
        .value("QUEUED", BatchState::kQueued)
        .value("RUNNING", BatchState::kRunning)
        .value("DONE", BatchState::kDone)
        .value("ERRORED", BatchState::kErrored)
        .value("TIMED_OUT", BatchState::kTimedOut)
        .value("CRASHED", BatchState::kCrashed)
        .value("FAILED", BatchState::kFailed)
        .value("FINISHING", BatchState::kFinishing);
    py::enum_<WorkerState>(m, "WorkerState", "What a worker process is doing.")
        .value("STARTING", WorkerState::kStarting)
        .value("INIT", WorkerState::kInit)
        .value("IDLE", WorkerState::kIdle)
        .value("RUNNING", WorkerState::kRunning)
        .value("SHUTDOWN", WorkerState::kShutdown)
        .value("EXITED", WorkerState::kExited)
        .value("INIT_FAILED", WorkerState::kInitFailed)
        .value("LOADING", WorkerState::kLoading);

    py::class_<DispatchRegion>(m, "DispatchRegion",
                               "Shared-memory dispatch region. Create in the driver before forking workers.")
        .def(py::init<std::uint32_t, std::uint32_t, int>(), py::arg("n_batches"), py::arg("n_workers"),
             py::arg("notify_fd") = -1)
        .def_property_readonly("n_batches", &DispatchRegion::n_batches)
        .def_property_readonly("n_workers", &DispatchRegion::n_workers)
        .def_property_readonly("size", [](const DispatchRegion& r) { return r.header().total_size; })
        .def("queued_approx", &DispatchRegion::queued_approx)
        // driver side
        .def("enqueue", &DispatchRegion::enqueue, py::arg("batch"), py::arg("attempt") = 0,
             "Queue an attempt; False (nothing changed) unless the batch is PENDING (attempt 0) or "
             "its last attempt ended (ERRORED, TIMED_OUT, CRASHED) with a lower number.")
        .def(
            "enqueue_range",
            [](DispatchRegion& r, std::uint32_t start, std::uint32_t stop) {
                std::uint32_t queued = 0;
                for (std::uint32_t b = start; b < stop; ++b) queued += r.enqueue(b, 0) ? 1 : 0;
                return queued;
            },
            py::arg("start"), py::arg("stop"), "Queue first attempts of batches [start, stop); how many were.")
        .def("close", &DispatchRegion::close)
        .def(
            "drain_ended",
            [](DispatchRegion& r, std::size_t max) {
                auto ids = r.drain_ended(max);
                // A uint32 array: the driver reads the slots of all of them at once (numpy).
                py::array_t<std::uint32_t> out(static_cast<py::ssize_t>(ids.size()));
                std::copy(ids.begin(), ids.end(), out.mutable_data());
                return out;
            },
            py::arg("max") = 1u << 20, "Batch ids whose attempt ended (DONE or ERRORED), as a uint32 array.")
        .def(
            "take_back",
            [](DispatchRegion& r, std::uint32_t batch, std::uint32_t attempt, std::uint32_t process,
               BatchState why) { return r.take_back(batch, attempt, process, why); },
            py::arg("batch"), py::arg("attempt"), py::arg("process"), py::arg("why"))
        .def("mark_failed", &DispatchRegion::mark_failed, py::arg("batch"))
        .def("reject_done", &DispatchRegion::reject_done, py::arg("batch"), py::arg("attempt"), py::arg("process"),
             "DONE(attempt, process) -> CRASHED, for a record that does not validate; False otherwise.")
        .def("reclaim_unclaimed", &DispatchRegion::reclaim_unclaimed, py::arg("worker"), py::arg("process"),
             "After reaping `process`: the batch it popped but never claimed, taken back as CRASHED; else -1.")
        .def("hand_over", &DispatchRegion::hand_over, py::arg("worker"), py::arg("batch"), py::arg("attempt"),
             py::arg("from_process"), py::arg("to_process"), py::arg("in_run"),
             "RUNNING(attempt, from) -> RUNNING(attempt, to) (a remote node's claim, named); False otherwise.")
        .def("restore_done", &DispatchRegion::restore_done, py::arg("batch"), py::arg("attempt"), py::arg("process"),
             py::arg("items_in"), py::arg("items_out"), py::arg("spool_offset"), py::arg("spool_length"),
             "On resume, before forking: mark a journalled batch DONE (it is never queued).")
        .def("arm_driver_sleep", &DispatchRegion::arm_driver_sleep)
        .def("disarm_driver_sleep", &DispatchRegion::disarm_driver_sleep)
        .def("reset_worker", &DispatchRegion::reset_worker, py::arg("worker"), py::arg("process"))
        .def("set_worker_pid", &DispatchRegion::set_worker_pid, py::arg("worker"), py::arg("pid"))
        // worker side
        .def(
            "next_batch",
            [](DispatchRegion& r, std::uint32_t worker, std::uint32_t process, std::int64_t timeout_ms,
               bool loading) {
                parajob::Claim claim;
                if (timeout_ms == 0) {
                    // A try that cannot block keeps the GIL: releasing and retaking it cost
                    // a third of the call (0.8 -> 0.5 us measured).
                    claim = r.next_batch(worker, process, 0, loading);
                } else {
                    // Safe without the GIL: touches only the shared region, no Python objects.
                    py::gil_scoped_release release;
                    claim = r.next_batch(worker, process, timeout_ms, loading);
                }
                return py::make_tuple(claim.batch, claim.attempt);
            },
            py::arg("worker"), py::arg("process"), py::arg("timeout_ms") = -1, py::arg("loading") = true,
            "Block until a batch is claimed: (batch, attempt); batch -1 when closed and empty, "
            "-2 on timeout.")
        .def("finish", &DispatchRegion::finish, py::arg("worker"), py::arg("batch"), py::arg("attempt"),
             py::arg("process"), py::arg("ok"), py::arg("items_in"), py::arg("items_out"), py::arg("spool_offset"),
             py::arg("spool_length"), py::arg("error_code"))
        .def("set_worker_state", &DispatchRegion::set_worker_state, py::arg("worker"), py::arg("state"))
        // readers
        .def(
            "batch_state", [](const DispatchRegion& r, std::uint32_t b) {
                if (b >= r.n_batches()) throw py::index_error("batch id out of range");
                return state_tuple(r.batch(b).word.load(std::memory_order_acquire));
            },
            "(state, attempt, process) of a batch.")
        .def(
            "batch_result",
            [](const DispatchRegion& r, std::uint32_t b) {
                if (b >= r.n_batches()) throw py::index_error("batch id out of range");
                const auto& s = r.batch(b);
                // acquire first: pairs with finish()'s release store of DONE/ERRORED.
                const std::uint64_t word = s.word.load(std::memory_order_acquire);
                const auto w = parajob::StateWord::unpack(word);
                return py::make_tuple(static_cast<int>(w.state), w.attempt, w.process,
                                      s.items_in.load(std::memory_order_relaxed),
                                      s.items_out.load(std::memory_order_relaxed),
                                      s.spool_offset.load(std::memory_order_relaxed),
                                      s.spool_length.load(std::memory_order_relaxed),
                                      s.error_code.load(std::memory_order_relaxed),
                                      s.start_ns.load(std::memory_order_relaxed),
                                      s.end_ns.load(std::memory_order_relaxed));
            },
            "(state, attempt, process, items_in, items_out, spool_offset, spool_length, error_code, "
            "start_ns, end_ns) of a batch.")
        .def(
            "worker_info",
            [](const DispatchRegion& r, std::uint32_t w) {
                if (w >= r.n_workers()) throw py::index_error("worker index out of range");
                const auto& s = r.worker(w);
                return py::make_tuple(s.pid.load(std::memory_order_acquire), s.process.load(std::memory_order_relaxed),
                                      s.state.load(std::memory_order_acquire),
                                      s.current_batch.load(std::memory_order_acquire),
                                      s.heartbeat_ns.load(std::memory_order_relaxed),
                                      s.phase_start_ns.load(std::memory_order_relaxed),
                                      s.batches_done.load(std::memory_order_relaxed));
            },
            "(pid, process, state, current_batch, heartbeat_ns, phase_start_ns, batches_done) of a worker slot.")
        .def(
            "buffer",
            [](const DispatchRegion& r) {
                return py::memoryview::from_memory(r.base(), static_cast<py::ssize_t>(r.header().total_size),
                                                   /*readonly=*/true);
            },
            py::keep_alive<0, 1>(), "Read-only view of the whole region (for numpy views of the slots).")
        .def_property_readonly("batches_offset", [](const DispatchRegion& r) { return r.header().batches_offset; })
        .def_property_readonly("workers_offset", [](const DispatchRegion& r) { return r.header().workers_offset; });

    m.def("region_layout", [] {
        py::dict out;
        for (const auto& e : DispatchRegion::layout_description()) out[py::str(e.name)] = e.value;
        return out;
    }, "Sizes and offsets of the shared structs as C++ lays them out.");

    m.def(
        "scan_expired",
        [](const DispatchRegion& r, std::int64_t now_ns, std::int64_t run_timeout_ns, std::int64_t init_timeout_ns,
           std::int64_t load_timeout_ns) {
            py::list out;
            for (const auto& e : parajob::scan_expired(r, now_ns, run_timeout_ns, init_timeout_ns, load_timeout_ns)) {
                const char* kind = e.why == parajob::Overrun::kRunTimeout    ? "run"
                                   : e.why == parajob::Overrun::kLoadTimeout ? "load"
                                                                             : "init";
                out.append(py::make_tuple(e.worker, e.pid, e.process, e.batch, e.attempt, kind, e.elapsed_ns));
            }
            return out;
        },
        py::arg("region"), py::arg("now_ns"), py::arg("run_timeout_ns"), py::arg("init_timeout_ns"),
        py::arg("load_timeout_ns") = 0,
        "Workers past a deadline: (worker, pid, process, batch, attempt, 'run'|'load'|'init', elapsed_ns). "
        "A timeout of 0 means no limit.");
    m.def("monotonic_ns", &parajob::monotonic_ns, "CLOCK_MONOTONIC in ns (the clock of the shared region).");
}
