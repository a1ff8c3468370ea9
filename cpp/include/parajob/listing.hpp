// Recursive listing of the regular files under a folder, with their sizes and mtimes.
//
// Contract
// - Who may call: any thread; list_files() touches no global state and needs no Python
//   (the binding releases the GIL around it). It may start helper threads (see
//   ListOptions::threads) but joins them all before returning, so a process that forks
//   after a listing forks with no extra threads. Do not fork() from another thread while
//   a listing runs. A FileList is immutable once built, so any number of threads, and
//   any number of processes forked after it was built, may read it.
// - Blocking: list_files() blocks on the file system for as long as the walk takes
//   (getdents64 per directory, one fstatat per file-like entry).
// - Errors: list_files() throws PathError (errno + path) and returns nothing partial;
//   it never skips an unreadable directory silently, because a silently short listing
//   is a job that "succeeds" on missing data. With several unreadable paths, which one
//   is reported depends on thread timing.
//
// What is listed
// - Regular files only (directories, FIFOs, sockets and devices are not listed).
//   Hidden (dot) files are included: the service lists every file.
// - Order: sorted by relative path, compared byte-wise (memcmp order of the raw name
//   bytes, '/' as separator), so "a-b" (0x2D) sorts before "a/x" (0x2F). The order is
//   a pure function of the tree, so a plan built from it is reproducible on resume.
// - Symlinks, with follow_symlinks: a link to a file is listed under the link's own path
//   with the target's size; a link to a directory is descended into, unless that
//   directory is already on the current descent path (a loop), which is skipped.
//   A broken link (dangling target, ELOOP, or a file used as a directory) is skipped.
//   Without follow_symlinks every symlink below the root is skipped. The root itself is
//   always followed: it is what the caller named.
// - Entries that vanish between reading a directory and stat-ing them (ENOENT) are
//   skipped, as if the listing had run a moment later.
// - Names are raw bytes, stored as the kernel returns them; decoding (os.fsdecode
//   semantics) is the binding's job.
// - Open files: a directory's fd stays open while any of its subdirectories waits to be
//   opened; with depth-first scheduling that is about (depth x threads) fds, so trees
//   deeper than the open-file limit allows fail with EMFILE (an OSError naming the path).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "parajob/path_error.hpp"

namespace parajob {


// The files under one root, in byte-wise relative-path order. Compact: all relative
// paths live in one char buffer addressed by offsets; there is no string per file.
// Indices are not bounds-checked here: the binding checks them.
class FileList {
public:
    FileList() = default;
    // rel_offsets has size() + 1 entries: path i is rel_paths[offsets[i], offsets[i+1]).
    // mtimes: empty (unknown, all 0) or one per file.
    FileList(std::string root, std::string rel_paths, std::vector<std::uint64_t> rel_offsets,
             std::vector<std::uint64_t> sizes, std::vector<std::int64_t> mtimes_ns = {});

    // Absolute, lexically normalised root (no trailing '/', except for "/" itself).
    const std::string& root() const noexcept { return root_; }
    std::size_t size() const noexcept { return sizes_.size(); }
    std::string_view relpath(std::size_t i) const noexcept {
        return {rel_paths_.data() + rel_offsets_[i], rel_offsets_[i + 1] - rel_offsets_[i]};
    }
    std::uint64_t file_size(std::size_t i) const noexcept { return sizes_[i]; }
    const std::vector<std::uint64_t>& sizes() const noexcept { return sizes_; }
    // Modification times (st_mtim, ns since the epoch; of the target, for a symlink), taken
    // by the same fstatat as the size: a resumed run compares them to see changed inputs.
    const std::vector<std::int64_t>& mtimes_ns() const noexcept { return mtimes_ns_; }
    std::uint64_t total_bytes() const noexcept { return total_bytes_; }

    // 16 bytes per file into out (size() * 16): a hash of its absolute path, size and
    // mtime, which a resumed run compares to find changed inputs. Not cryptographic (two
    // 64-bit multiply-xorshift lanes): it tells a changed file from an unchanged one, and
    // costs ~20 ns a file where a Python blake2b per file cost ~2 us (0.2 s per 100,000).
    void identity_digests(std::uint8_t* out) const;

    // Replaces `out` with root + "/" + relpath(i); reusing `out` keeps the per-path cost
    // of a batch of paths to one copy (this is the hot call, once per mini-batch).
    void absolute_path(std::size_t i, std::string& out) const;

private:
    std::string root_;
    std::string rel_paths_;
    std::vector<std::uint64_t> rel_offsets_{0};
    std::vector<std::uint64_t> sizes_;
    std::vector<std::int64_t> mtimes_ns_;
    std::uint64_t total_bytes_ = 0;
};

struct ListOptions {
    bool follow_symlinks = true;
    // Threads that stat and read directories concurrently (the caller's thread is one of
    // them); 0 = one per CPU this process may run on, at most 16. Helpers start only when
    // there is queued work for them, and all are joined before list_files() returns.
    unsigned threads = 0;
};

// Lists the regular files under `root` (relative roots are resolved against the current
// working directory; the result's root() is absolute and normalised, and that
// normalised path is the one opened). Throws PathError:
//   ENOENT  root missing                      ("input folder not found: <root>")
//   ENOTDIR root is not a directory
//   EACCES  any unreadable directory or entry (names it)
//   other   any other failure (strerror and the path)
FileList list_files(std::string_view root, const ListOptions& options = {});

// The absolute, lexically normalised form of `path` (like Python's os.path.abspath:
// "." and empty components dropped, ".." removes the previous component, never above
// "/"). Exposed for the binding and the tests.
std::string absolute_normalised(std::string_view path);

}  // namespace parajob
