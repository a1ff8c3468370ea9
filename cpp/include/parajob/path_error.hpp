// PathError: a failure of the core's file I/O (listing, record scanning), with the errno
// that caused it and the path it concerns. what() is a complete, user-facing sentence that
// names the path. The bindings turn it into the matching OSError subclass
// (cpp/bindings/path_error.hpp).
#pragma once

#include <stdexcept>
#include <string>

namespace parajob {

class PathError : public std::runtime_error {
public:
    PathError(int error_number, std::string path, const std::string& message)
        : std::runtime_error(message), error_number_(error_number), path_(std::move(path)) {}

    int error_number() const noexcept { return error_number_; }
    const std::string& path() const noexcept { return path_; }

private:
    int error_number_;
    std::string path_;
};

}  // namespace parajob
