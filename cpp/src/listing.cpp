// Recursive listing (listing.hpp).
//
// Every lookup is relative to an open directory fd (getdents64 on it, fstatat/openat by
// bare name), so no syscall re-walks a full path. The walk is a small task pool:
//
//   visit(dir)  -- getdents64 --> entries (name, d_type)
//       |  stat tasks: fstatat each file-like entry, in chunks of kStatChunk entries
//       v  (the last chunk to finish, via chunks_left, runs finish(dir))
//   finish(dir) -- sort entries by key, one open task per subdirectory
//   open(sub)   -- openat(parent fd, name), loop check, then visit(sub)
//
// Tasks share nothing but their own DirNode (written by one task at a time, handed on
// through the pool's mutex) and the entries array of a directory being stat-ed in
// chunks (disjoint index ranges). The DirNode tree is then flattened, single-threaded,
// into the FileList in key order. Why threads at all: fstatat costs ~1.9 us per cached
// file here (a bare syscall ~0.3 us), so one thread tops out near 3x os.walk; on
// network and FUSE mounts a stat is a round trip and only concurrency hides it.
#include "parajob/listing.hpp"

#include <pthread.h>

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <numeric>
#include <thread>
#include <utility>

namespace parajob {

FileList::FileList(std::string root, std::string rel_paths,
                   std::vector<std::uint64_t> rel_offsets, std::vector<std::uint64_t> sizes,
                   std::vector<std::int64_t> mtimes_ns)
    : root_(std::move(root)),
      rel_paths_(std::move(rel_paths)),
      rel_offsets_(std::move(rel_offsets)),
      sizes_(std::move(sizes)),
      mtimes_ns_(std::move(mtimes_ns)) {
    if (rel_offsets_.size() != sizes_.size() + 1 || rel_offsets_.back() != rel_paths_.size())
        throw std::invalid_argument("FileList: offsets do not match the paths and sizes");
    if (mtimes_ns_.empty()) mtimes_ns_.resize(sizes_.size(), 0);
    if (mtimes_ns_.size() != sizes_.size())
        throw std::invalid_argument("FileList: mtimes do not match the sizes");
    total_bytes_ = std::accumulate(sizes_.begin(), sizes_.end(), std::uint64_t{0});
}

void FileList::absolute_path(std::size_t i, std::string& out) const {
    out.assign(root_);
    if (root_ != "/") out.push_back('/');  // "/" already ends with the separator
    out.append(relpath(i));
}

namespace {

// One step of a 64-bit multiply-xorshift hash (the finaliser of splitmix64 over h ^ v).
std::uint64_t mix(std::uint64_t h, std::uint64_t v) {
    h ^= v + 0x9E3779B97F4A7C15ULL + (h << 6) + (h >> 2);
    h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ULL;
    h = (h ^ (h >> 27)) * 0x94D049BB133111EBULL;
    return h ^ (h >> 31);
}

std::uint64_t hash_bytes(std::uint64_t seed, std::string_view bytes) {
    std::uint64_t h = mix(seed, bytes.size());
    std::size_t i = 0;
    for (; i + 8 <= bytes.size(); i += 8) {
        std::uint64_t word;
        std::memcpy(&word, bytes.data() + i, 8);
        h = mix(h, word);
    }
    std::uint64_t tail = 0;
    std::memcpy(&tail, bytes.data() + i, bytes.size() - i);
    return mix(h, tail);
}

}  // namespace

void FileList::identity_digests(std::uint8_t* out) const {
    std::string path;
    for (std::size_t i = 0; i < size(); ++i) {
        absolute_path(i, path);
        const std::int64_t mtime = mtimes_ns_.empty() ? 0 : mtimes_ns_[i];
        std::uint64_t lanes[2];
        for (int lane = 0; lane < 2; ++lane) {
            std::uint64_t h = hash_bytes(lane ? 0x243F6A8885A308D3ULL : 0x13198A2E03707344ULL, path);
            h = mix(h, sizes_[i]);
            lanes[lane] = mix(h, static_cast<std::uint64_t>(mtime));
        }
        std::memcpy(out + 16 * i, lanes, 16);
    }
}

namespace {

std::string current_directory() {
    std::string buffer(256, '\0');
    while (::getcwd(buffer.data(), buffer.size()) == nullptr) {
        const int err = errno;
        if (err != ERANGE)
            throw PathError(err, ".", std::string("cannot resolve the current directory: ") +
                                             std::strerror(err));
        buffer.resize(buffer.size() * 2);
    }
    buffer.resize(std::strlen(buffer.c_str()));
    return buffer;
}

}  // namespace

std::string absolute_normalised(std::string_view path) {
    std::string joined;
    if (path.empty() || path.front() != '/') joined = current_directory() + "/";
    joined.append(path);

    std::vector<std::string_view> parts;
    std::string_view rest = joined;
    while (!rest.empty()) {
        const std::size_t slash = rest.find('/');
        const std::string_view part = rest.substr(0, slash);
        rest = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
        if (part.empty() || part == ".") continue;
        if (part == "..") {
            if (!parts.empty()) parts.pop_back();  // ".." at "/" stays at "/", as in POSIX
            continue;
        }
        parts.push_back(part);
    }
    if (parts.empty()) return "/";
    std::string out;
    for (const std::string_view part : parts) out.append("/").append(part);
    return out;
}

namespace {

// O_CLOEXEC: no directory fd may leak into workers forked (and exec'd by user code) later.
constexpr int kDirectoryOpenFlags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOCTTY;
// 64 KiB of dirents per getdents64: ~1,500 short names per syscall, twice glibc's readdir.
constexpr std::size_t kDentsBufferBytes = 64 * 1024;
// ~1 ms of fstatat per task: large enough to dwarf the pool's locking, small enough that a
// flat folder of 100,000 files is spread over every thread.
constexpr std::uint32_t kStatChunk = 512;
// A cap for the default: the pool has one mutex, and more threads than this are untested.
constexpr unsigned kMaxThreads = 16;

class Fd {
public:
    explicit Fd(int fd) noexcept : fd_(fd) {}
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() { ::close(fd_); }
    int get() const noexcept { return fd_; }

private:
    int fd_;
};
// Shared by a directory's pending tasks: the fd closes when the last one is done with it,
// so open fds stay near (depth x threads), never one per queued subdirectory.
using SharedFd = std::shared_ptr<const Fd>;

enum class Kind : std::uint8_t { unresolved, skip, file, directory, symlink_to_directory };

struct Entry {
    std::uint32_t name_offset;  // into DirNode::names, NUL-terminated (ready for fstatat)
    std::uint16_t name_length;  // NAME_MAX is 255
    std::uint8_t d_type;
    Kind kind;
    std::uint64_t size;
    std::int64_t mtime_ns;
};

struct DirNode {
    const DirNode* parent = nullptr;
    std::string name;        // in the parent; empty for the root
    bool via_symlink = false;
    bool listed = false;     // false: vanished or a loop, contributes nothing
    dev_t dev = 0;
    ino_t ino = 0;
    std::string names;
    std::vector<Entry> entries;
    std::vector<std::unique_ptr<DirNode>> subdirs;  // one per directory entry, in entry order
    // acq_rel: each stat chunk releases its writes to `entries`; the chunk that brings
    // this to 0 acquires them all before finish() reads them.
    std::atomic<std::uint32_t> chunks_left{0};

    const char* name_of(const Entry& e) const { return names.data() + e.name_offset; }
    std::string_view view_of(const Entry& e) const { return {name_of(e), e.name_length}; }
    bool is_dir(const Entry& e) const {
        return e.kind == Kind::directory || e.kind == Kind::symlink_to_directory;
    }
};

// A directory's key is its name plus '/', a file's is its name. Every path below a
// directory starts with its key, so sorting keys within each directory and walking
// depth-first gives the global byte-wise order of relative paths ("a-b" < "a/x" because
// '-' < '/'), with no global sort. Bytes compare unsigned, as memcmp does.
bool key_less(const DirNode& dir, const Entry& a, const Entry& b) {
    const std::string_view x = dir.view_of(a), y = dir.view_of(b);
    const std::size_t n = std::min(x.size(), y.size());
    if (const int r = std::memcmp(x.data(), y.data(), n); r != 0) return r < 0;
    // One name is a prefix of the other: compare the next key byte (a file's key has
    // ended: -1). Names never contain '/', so the two next bytes never tie.
    const int next_x = x.size() > n ? static_cast<unsigned char>(x[n]) : (dir.is_dir(a) ? '/' : -1);
    const int next_y = y.size() > n ? static_cast<unsigned char>(y[n]) : (dir.is_dir(b) ? '/' : -1);
    return next_x < next_y;
}

std::string path_of(const std::string& root, const DirNode& dir, std::string_view entry) {
    std::vector<const std::string*> chain;
    for (const DirNode* d = &dir; d->parent != nullptr; d = d->parent) chain.push_back(&d->name);
    std::string path = root;
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) path.append("/").append(**it);
    if (!entry.empty()) path.append("/").append(entry);
    return path.starts_with("//") ? path.substr(1) : path;  // root "/"
}

[[noreturn]] void fail(int err, std::string path, const char* action) {
    if (err == EACCES || err == EPERM) {
        const std::string message = "permission denied: cannot " + std::string(action) + " " +
                                    path +
                                    " (the listing would otherwise silently miss files; make it "
                                    "readable or list a folder you can read)";
        throw PathError(err, std::move(path), message);
    }
    const std::string message = "cannot " + std::string(action) + " " + path +
                                " while listing the input folder: " + std::strerror(err);
    throw PathError(err, std::move(path), message);
}

// What one task needs to do. `fd` is the directory's own fd (visit, stat) or its
// parent's (open).
struct Task {
    enum class Op : std::uint8_t { visit, stat, open } op;
    DirNode* dir;
    SharedFd fd;
    std::uint32_t begin = 0, end = 0;  // stat: entries [begin, end)
};

class Walk {
public:
    Walk(std::string root, const ListOptions& options)
        : root_(std::move(root)),
          follow_(options.follow_symlinks),
          max_threads_(thread_count(options)) {}

    // Runs every task reachable from the root on this thread plus up to max_threads_ - 1
    // helpers, which are all joined before this returns (no thread outlives a listing,
    // so a later fork() sees a single-threaded process).
    void run(DirNode& root, SharedFd root_fd) {
        push({{Task::Op::visit, &root, std::move(root_fd)}});
        work();
        helpers_.clear();  // jthread joins; all have left work() since pending_ hit 0
        if (error_) std::rethrow_exception(error_);
    }

    const std::string& root() const { return root_; }

private:
    static unsigned thread_count(const ListOptions& options) {
        if (options.threads > 0) return options.threads;
        cpu_set_t cpus;
        const int n = ::sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : 1;
        return std::clamp<unsigned>(static_cast<unsigned>(n), 1, kMaxThreads);
    }

    void work() {
        std::vector<char> dents(kDentsBufferBytes);  // per thread
        std::unique_lock lock(mutex_);
        for (;;) {
            ++idle_;
            ready_.wait(lock, [&] { return !tasks_.empty() || pending_ == 0 || error_; });
            --idle_;
            if (tasks_.empty() || error_) return;
            Task task = std::move(tasks_.back());  // LIFO: depth-first keeps few fds open
            tasks_.pop_back();
            lock.unlock();
            try {
                execute(task, dents);
            } catch (...) {
                lock.lock();
                if (!error_) error_ = std::current_exception();
                tasks_.clear();
                ready_.notify_all();
                return;
            }
            task.fd.reset();  // close a finished directory outside the lock
            lock.lock();
            if (--pending_ == 0) ready_.notify_all();
        }
    }

    void push(std::vector<Task> tasks) {
        if (tasks.empty()) return;
        const std::lock_guard lock(mutex_);
        if (error_) return;
        pending_ += tasks.size();
        for (Task& t : tasks) tasks_.push_back(std::move(t));
        // Threads start only when there is queued work no idle thread can take, so a
        // small listing never starts one.
        // The pusher itself counts as one taker: it comes back for work when done.
        while (helpers_.size() + 1 < max_threads_ &&
               tasks_.size() > idle_ + helpers_starting_ + 1) {
            try {
                helpers_.emplace_back([this] { started_helper(); });
                ++helpers_starting_;
            } catch (const std::system_error&) {  // out of threads: carry on with fewer
                break;
            }
        }
        ready_.notify_all();
    }

    void started_helper() {
        pthread_setname_np(pthread_self(), "parajob-list");  // tells our threads apart
        {
            const std::lock_guard lock(mutex_);
            --helpers_starting_;
        }
        work();
    }

    void execute(Task& task, std::vector<char>& dents) {
        switch (task.op) {
            case Task::Op::visit: visit(*task.dir, std::move(task.fd), dents); return;
            case Task::Op::stat: stat_chunk(*task.dir, task.fd, task.begin, task.end); return;
            case Task::Op::open: open_subdir(*task.dir, *task.fd, dents); return;
        }
    }

    void visit(DirNode& dir, SharedFd fd, std::vector<char>& dents) {
        read_directory(dir, fd->get(), dents);
        const auto n = static_cast<std::uint32_t>(dir.entries.size());
        const std::uint32_t chunks = std::max<std::uint32_t>(1, (n + kStatChunk - 1) / kStatChunk);
        dir.chunks_left.store(chunks, std::memory_order_relaxed);  // published by push()
        std::vector<Task> rest;
        for (std::uint32_t c = 1; c < chunks; ++c)
            rest.push_back(
                {Task::Op::stat, &dir, fd, c * kStatChunk, std::min(n, (c + 1) * kStatChunk)});
        push(std::move(rest));
        stat_chunk(dir, fd, 0, std::min(n, kStatChunk));
    }

    // Reads the whole directory; only d_type is known yet (kind resolved by stat_chunk).
    void read_directory(DirNode& dir, int fd, std::vector<char>& dents) {
        for (;;) {
            const long n = ::syscall(SYS_getdents64, fd, dents.data(), dents.size());
            if (n == 0) return;
            if (n < 0) fail(errno, path_of(root_, dir, ""), "read directory");
            for (long pos = 0; pos < n;) {
                const auto* d = reinterpret_cast<const dirent64*>(dents.data() + pos);
                pos += d->d_reclen;
                add_entry(dir, d->d_name, d->d_type);
            }
        }
    }

    void add_entry(DirNode& dir, const char* name, unsigned char d_type) {
        if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))) return;
        if (d_type != DT_DIR && d_type != DT_REG && d_type != DT_LNK && d_type != DT_UNKNOWN)
            return;  // FIFO, socket, device: not regular files
        if (d_type == DT_LNK && !follow_) return;
        const std::size_t length = std::strlen(name);
        if (dir.names.size() + length + 1 > UINT32_MAX)
            fail(EOVERFLOW, path_of(root_, dir, ""), "list directory (names exceed 4 GiB)");
        const auto offset = static_cast<std::uint32_t>(dir.names.size());
        dir.names.append(name, length + 1);  // keep the NUL: fstatat/openat take it as is
        const Kind kind = d_type == DT_DIR ? Kind::directory : Kind::unresolved;
        dir.entries.push_back({offset, static_cast<std::uint16_t>(length), d_type, kind, 0, 0});
    }

    // Resolves entries [begin, end): disjoint ranges, so chunks never race on an entry.
    void stat_chunk(DirNode& dir, const SharedFd& fd, std::uint32_t begin, std::uint32_t end) {
        for (std::uint32_t i = begin; i < end; ++i) {
            Entry& e = dir.entries[i];
            if (e.kind == Kind::unresolved) resolve(dir, fd->get(), e, e.d_type == DT_LNK);
        }
        if (dir.chunks_left.fetch_sub(1, std::memory_order_acq_rel) == 1) finish(dir, fd);
    }

    // d_type already spared the stat of real directories; files need one for their size.
    void resolve(const DirNode& dir, int fd, Entry& e, bool follow) {
        struct stat st;
        e.kind = Kind::skip;
        if (::fstatat(fd, dir.name_of(e), &st, follow ? 0 : AT_SYMLINK_NOFOLLOW) != 0) {
            const int err = errno;
            if (err == ENOENT) return;  // vanished since getdents, or a dangling symlink
            if (follow && (err == ELOOP || err == ENOTDIR)) return;  // broken symlink
            fail(err, path_of(root_, dir, dir.view_of(e)), "stat");
        }
        if (S_ISLNK(st.st_mode)) {  // DT_UNKNOWN file systems only
            if (follow_) resolve(dir, fd, e, true);
        } else if (S_ISREG(st.st_mode)) {
            e.kind = Kind::file;
            e.size = static_cast<std::uint64_t>(st.st_size);
            e.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 +
                         st.st_mtim.tv_nsec;
        } else if (S_ISDIR(st.st_mode)) {
            e.kind = follow ? Kind::symlink_to_directory : Kind::directory;
        }
    }

    void finish(DirNode& dir, const SharedFd& fd) {
        std::erase_if(dir.entries, [](const Entry& e) { return e.kind == Kind::skip; });
        std::sort(dir.entries.begin(), dir.entries.end(),
                  [&dir](const Entry& a, const Entry& b) { return key_less(dir, a, b); });
        std::vector<Task> opens;
        for (const Entry& e : dir.entries) {
            if (e.kind == Kind::file) continue;
            auto& sub = dir.subdirs.emplace_back(std::make_unique<DirNode>());
            sub->parent = &dir;
            sub->name = dir.view_of(e);
            sub->via_symlink = e.kind == Kind::symlink_to_directory;
            opens.push_back({Task::Op::open, sub.get(), fd});
        }
        push(std::move(opens));
    }

    void open_subdir(DirNode& dir, const Fd& parent_fd, std::vector<char>& dents) {
        // A real directory is opened with O_NOFOLLOW, so one swapped for a symlink since
        // getdents is not followed when follow_symlinks is off.
        const int flags = kDirectoryOpenFlags | (dir.via_symlink ? 0 : O_NOFOLLOW);
        const int raw = ::openat(parent_fd.get(), dir.name.c_str(), flags);
        if (raw < 0) {
            const int err = errno;
            // Removed, or replaced by a file or link, since getdents: as if listed later.
            if (err == ENOENT || err == ENOTDIR || err == ELOOP) return;
            fail(err, path_of(root_, dir, ""), "open directory");
        }
        auto fd = std::make_shared<const Fd>(raw);
        struct stat st;
        if (::fstat(raw, &st) != 0) fail(errno, path_of(root_, dir, ""), "stat directory");
        dir.dev = st.st_dev;
        dir.ino = st.st_ino;
        if (loops_back(dir)) return;  // a symlink (or bind mount) back to an ancestor
        dir.listed = true;
        visit(dir, std::move(fd), dents);
    }

    static bool loops_back(const DirNode& dir) {
        for (const DirNode* a = dir.parent; a != nullptr; a = a->parent)
            if (a->dev == dir.dev && a->ino == dir.ino) return true;
        return false;
    }

    std::string root_;
    bool follow_;
    unsigned max_threads_;
    std::mutex mutex_;  // guards everything below
    std::condition_variable ready_;
    std::vector<Task> tasks_;
    std::size_t pending_ = 0;  // queued + running tasks; 0 means the walk is over
    std::size_t idle_ = 0;
    std::size_t helpers_starting_ = 0;
    std::exception_ptr error_;
    std::vector<std::jthread> helpers_;
};

// Flattens the finished tree in key order; frees each directory's scratch as it goes.
class Flatten {
public:
    void add(DirNode& dir, std::string& rel_dir) {
        std::size_t sub = 0;
        for (const Entry& e : dir.entries) {
            if (e.kind == Kind::file) {
                paths_.append(rel_dir).append(dir.view_of(e));
                offsets_.push_back(paths_.size());
                sizes_.push_back(e.size);
                mtimes_.push_back(e.mtime_ns);
                continue;
            }
            DirNode& child = *dir.subdirs[sub++];
            if (!child.listed) continue;
            const std::size_t length = rel_dir.size();
            rel_dir.append(child.name).push_back('/');
            add(child, rel_dir);
            rel_dir.resize(length);
        }
        dir.entries = {};
        dir.names = {};
    }

    FileList take(std::string root) {
        // Growth leaves up to half of each buffer unused; a listing lives for the whole
        // job (and in every forked worker), so give the slack back once.
        paths_.shrink_to_fit();
        offsets_.shrink_to_fit();
        sizes_.shrink_to_fit();
        mtimes_.shrink_to_fit();
        return FileList(std::move(root), std::move(paths_), std::move(offsets_), std::move(sizes_),
                        std::move(mtimes_));
    }

private:
    std::string paths_;
    std::vector<std::uint64_t> offsets_{0};
    std::vector<std::uint64_t> sizes_;
    std::vector<std::int64_t> mtimes_;
};

[[noreturn]] void fail_root(int err, const std::string& root) {
    switch (err) {
        case ENOENT: throw PathError(err, root, "input folder not found: " + root);
        case ENOTDIR: throw PathError(err, root, "input folder is not a directory: " + root);
        case EACCES:
        case EPERM: fail(err, root, "open input folder");
        default:
            throw PathError(err, root,
                               "cannot open input folder " + root + ": " + std::strerror(err));
    }
}

}  // namespace

FileList list_files(std::string_view root, const ListOptions& options) {
    // An empty root is a missing setting, not "the current directory".
    if (root.empty()) throw PathError(ENOENT, "", "input folder not found: (empty path)");
    if (root.find('\0') != std::string_view::npos)
        throw PathError(EINVAL, std::string(root), "input folder path contains a NUL byte");
    std::string absolute = absolute_normalised(root);

    const int raw = ::open(absolute.c_str(), kDirectoryOpenFlags);
    if (raw < 0) fail_root(errno, absolute);
    auto fd = std::make_shared<const Fd>(raw);
    DirNode tree;
    struct stat st;
    if (::fstat(raw, &st) != 0) fail_root(errno, absolute);
    tree.dev = st.st_dev;
    tree.ino = st.st_ino;
    tree.listed = true;

    Walk walk(std::move(absolute), options);
    walk.run(tree, std::move(fd));
    Flatten flat;
    std::string rel_dir;
    flat.add(tree, rel_dir);
    return flat.take(walk.root());
}

}  // namespace parajob
