// qsync.hpp: libqsync for C++17, header-only, over the C API of qsync.h.
//
//   - Ownership: Loop, Guest and Group clean up in their destructors, so
//     QEMU never outlives the scope that started it.
//   - Callbacks are std::function (lambdas that capture), dispatched from
//     the C callbacks through qsync_get_data().
//   - Errors are exceptions (qsync::Error, with the library's code), and no
//     exception ever crosses the C library: one that escapes a callback is
//     kept, the guest is closed, and rethrow_if_failed() throws it again on
//     the caller's side.
//   - Everything the wrapper does not cover is one call away: raw() gives
//     the qsync_ctx / qsync_group for any function of qsync.h.
#ifndef QSYNC_QSYNC_HPP
#define QSYNC_QSYNC_HPP

#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <qsync/qsync.h>

namespace qsync {

// A failed call: the library's code and its text.
class Error : public std::runtime_error {
public:
    Error(const std::string &what, int code)
        : std::runtime_error(what + ": " + qsync_strerror(code)), code_(code)
    {
    }
    int code() const noexcept { return code_; }

private:
    int code_;
};

// A libuv loop that lives as long as the object.
class Loop {
public:
    Loop()
    {
        int rc = uv_loop_init(&loop_);
        if (rc < 0)
            throw Error("uv_loop_init", rc); // libuv's codes are -errno here
    }
    ~Loop()
    {
        uv_run(&loop_, UV_RUN_DEFAULT); // let closing handles finish
        uv_loop_close(&loop_);
    }
    Loop(const Loop &) = delete;
    Loop &operator=(const Loop &) = delete;

    uv_loop_t *get() noexcept { return &loop_; }
    // Runs until nothing is left to do (every context closed).
    void run() { uv_run(&loop_, UV_RUN_DEFAULT); }
    // Waits for one round of events; what the callbacks do is up to them.
    void run_once() { uv_run(&loop_, UV_RUN_ONCE); }

private:
    uv_loop_t loop_;
};

// One QEMU, stepped through a context on a Loop. Not copyable or movable:
// the C context keeps a pointer to this object for its callbacks.
class Guest {
public:
    using ReadyFn = std::function<void(const qsync_info &)>;
    using ReachedFn = std::function<void(int status, const qsync_stop *stop)>;
    using ExitedFn = std::function<void(const qsync_exit &)>;
    using ErrorFn = std::function<void(int code, std::string_view message)>;
    using OutputFn = std::function<void(std::string_view data)>;
    using LineFn = std::function<void(std::string_view line, uint64_t virtual_ns)>;

    // Filled with the library's defaults; change fields before passing it.
    static qsync_options default_options()
    {
        qsync_options o;
        qsync_options_init(&o);
        return o;
    }

    explicit Guest(Loop &loop, const qsync_options &opts = default_options()) : loop_(loop)
    {
        qsync_callbacks cbs;
        qsync_callbacks_init(&cbs);
        cbs.ready = &Guest::c_ready;
        cbs.reached = &Guest::c_reached;
        cbs.exited = &Guest::c_exited;
        cbs.error = &Guest::c_error;
        cbs.output = &Guest::c_output;
        cbs.output_line = &Guest::c_output_line;
        cbs.stderr_output = nullptr; // set by on_stderr(), before start()
        char err[256] = "";
        int rc = qsync_ctx_new(loop.get(), &opts, &cbs, &ctx_, err, sizeof err);
        if (rc < 0)
            throw Error(std::string("qsync_ctx_new (") + err + ")", rc);
        qsync_set_data(ctx_, this);
    }

    // Ends QEMU and waits for the context to be freed, running the loop. Do
    // not destroy a Guest from inside one of its own callbacks: call close()
    // there instead.
    ~Guest()
    {
        if (!ctx_)
            return;
        close();
        while (ctx_)
            loop_.run_once();
    }

    Guest(const Guest &) = delete;
    Guest &operator=(const Guest &) = delete;

    Guest &on_ready(ReadyFn f) { ready_ = std::move(f); return *this; }
    Guest &on_reached(ReachedFn f) { reached_ = std::move(f); return *this; }
    Guest &on_exited(ExitedFn f) { exited_ = std::move(f); return *this; }
    Guest &on_error(ErrorFn f) { error_ = std::move(f); return *this; }
    // stdout_mode QSYNC_OUTPUT_CALLBACK: the bytes as they come.
    Guest &on_output(OutputFn f) { output_ = std::move(f); return *this; }
    // stdout_mode QSYNC_OUTPUT_LINES: each line, with the virtual time of
    // the stop that ended its quantum.
    Guest &on_line(LineFn f) { line_ = std::move(f); return *this; }

    // Spawns QEMU: argv[0] is the binary, the rest its arguments.
    void start(const std::vector<std::string> &argv)
    {
        std::vector<const char *> c_argv;
        for (const auto &a : argv)
            c_argv.push_back(a.c_str());
        c_argv.push_back(nullptr);
        check("qsync_start", qsync_start(live(), c_argv.data()));
    }

    // Grants d of virtual time past the current deadline; returns at once,
    // and on_reached fires when the guest is frozen there.
    void advance(std::chrono::nanoseconds d)
    {
        if (d.count() < 0)
            throw std::invalid_argument("advance: negative duration");
        check("qsync_advance_ns", qsync_advance_ns(live(), static_cast<uint64_t>(d.count())));
    }

    // Grants up to an absolute deadline.
    void advance_to(std::chrono::nanoseconds deadline)
    {
        if (deadline.count() < 0)
            throw std::invalid_argument("advance_to: negative deadline");
        check("qsync_advance_to_ns",
              qsync_advance_to_ns(live(), static_cast<uint64_t>(deadline.count())));
    }

    // Bytes for the guest's serial0 at the current stop (plugin mode).
    void send_input(std::string_view bytes)
    {
        check("qsync_send_input", qsync_send_input(live(), bytes.data(), bytes.size()));
    }

    // What the handshake said (throws before it).
    qsync_info info() const
    {
        qsync_info i;
        if (!ctx_)
            throw Error("the guest is closed", QSYNC_ESTATE);
        int rc = qsync_get_info(ctx_, &i);
        if (rc < 0)
            throw Error("qsync_get_info", rc);
        return i;
    }

    // The C context, for any call of qsync.h this class does not wrap;
    // nullptr once the guest is closed. Do not close or free it yourself.
    qsync_ctx *raw() const noexcept { return ctx_; }

    // Closes the context; QEMU ends. Asynchronous: the context is freed from
    // the loop (closed() turns true). Harmless when already closing.
    void close()
    {
        if (ctx_ && !closing_) {
            closing_ = true;
            qsync_close(ctx_, &Guest::c_closed);
        }
    }

    bool closed() const noexcept { return ctx_ == nullptr; }
    std::chrono::nanoseconds now() const
    {
        return std::chrono::nanoseconds(ctx_ ? qsync_now_ns(ctx_) : 0);
    }

    // Throws the exception that escaped one of the callbacks, if one did.
    void rethrow_if_failed()
    {
        if (failure_)
            std::rethrow_exception(std::exchange(failure_, nullptr));
    }

private:
    qsync_ctx *live()
    {
        if (!ctx_ || closing_)
            throw Error("the guest is closed", QSYNC_ESTATE);
        return ctx_;
    }

    void check(const char *what, int rc)
    {
        if (rc < 0)
            throw Error(std::string(what) + " (" + qsync_last_error(ctx_) + ")", rc);
    }

    static Guest &self(qsync_ctx *ctx) { return *static_cast<Guest *>(qsync_get_data(ctx)); }

    // Runs a user's callback; an exception must not cross the C library.
    template <typename F, typename... Args>
    static void dispatch(qsync_ctx *ctx, F &fn, Args &&...args) noexcept
    {
        Guest &g = self(ctx);
        if (!fn)
            return;
        try {
            fn(std::forward<Args>(args)...);
        } catch (...) {
            if (!g.failure_)
                g.failure_ = std::current_exception();
            g.close();
        }
    }

    static void c_ready(qsync_ctx *ctx, const qsync_info *info)
    {
        dispatch(ctx, self(ctx).ready_, *info);
    }
    static void c_reached(qsync_ctx *ctx, int status, const qsync_stop *stop)
    {
        dispatch(ctx, self(ctx).reached_, status, stop);
    }
    static void c_exited(qsync_ctx *ctx, const qsync_exit *ex)
    {
        dispatch(ctx, self(ctx).exited_, *ex);
    }
    static void c_error(qsync_ctx *ctx, int code, const char *message)
    {
        dispatch(ctx, self(ctx).error_, code, std::string_view(message));
    }
    static void c_output(qsync_ctx *ctx, const char *data, size_t len)
    {
        dispatch(ctx, self(ctx).output_, std::string_view(data, len));
    }
    static void c_output_line(qsync_ctx *ctx, const char *line, size_t len, uint64_t v)
    {
        dispatch(ctx, self(ctx).line_, std::string_view(line, len), v);
    }
    static void c_closed(qsync_ctx *ctx) { self(ctx).ctx_ = nullptr; }

    Loop &loop_;
    qsync_ctx *ctx_ = nullptr;
    bool closing_ = false;
    std::exception_ptr failure_;
    ReadyFn ready_;
    ReachedFn reached_;
    ExitedFn exited_;
    ErrorFn error_;
    OutputFn output_;
    LineFn line_;
};

// A barrier over several Guests on one Loop (qsync_group_*). It does not
// own its members: a Guest leaves the group when it is closed and freed.
// Destroy the Group only when no group advance is pending, or from the
// loop's thread: the C group is freed once its callback has fired.
class Group {
public:
    using DoneFn = std::function<void(int status, uint64_t deadline_ns)>;

    Group()
    {
        int rc = qsync_group_new(&group_);
        if (rc < 0)
            throw Error("qsync_group_new", rc);
        qsync_group_set_data(group_, this);
    }
    ~Group()
    {
        if (group_) {
            qsync_group_set_data(group_, nullptr);
            qsync_group_free(group_);
        }
    }
    Group(const Group &) = delete;
    Group &operator=(const Group &) = delete;

    void add(Guest &g) { check("qsync_group_add", g, qsync_group_add(group_, live(g))); }
    void remove(Guest &g) { check("qsync_group_remove", g, qsync_group_remove(group_, live(g))); }
    size_t size() const noexcept { return qsync_group_size(group_); }
    std::chrono::nanoseconds now() const
    {
        return std::chrono::nanoseconds(qsync_group_now_ns(group_));
    }

    // Advances every member to the deadline; done fires once, after each
    // member's own on_reached, with the first failure or 0. An exception
    // that escapes done is kept for rethrow_if_failed().
    void advance_to(std::chrono::nanoseconds deadline, DoneFn done)
    {
        done_ = std::move(done);
        int rc = qsync_group_advance_to_ns(group_, static_cast<uint64_t>(deadline.count()),
                                           &Group::c_done);
        if (rc < 0)
            throw Error("qsync_group_advance_to_ns", rc);
    }
    void advance(std::chrono::nanoseconds d, DoneFn done) { advance_to(now() + d, std::move(done)); }

    void rethrow_if_failed()
    {
        if (failure_)
            std::rethrow_exception(std::exchange(failure_, nullptr));
    }

    qsync_group *raw() const noexcept { return group_; }

private:
    static qsync_ctx *live(Guest &g)
    {
        if (!g.raw())
            throw Error("the guest is closed", QSYNC_ESTATE);
        return g.raw();
    }
    static void check(const char *what, Guest &g, int rc)
    {
        if (rc < 0)
            throw Error(std::string(what) + " (" + qsync_last_error(g.raw()) + ")", rc);
    }
    static void c_done(qsync_group *group, int status, uint64_t deadline_ns)
    {
        auto *self = static_cast<Group *>(qsync_group_get_data(group));
        if (!self || !self->done_)
            return;
        DoneFn fn = self->done_; // the callback may start the next advance
        try {
            fn(status, deadline_ns);
        } catch (...) {
            if (!self->failure_)
                self->failure_ = std::current_exception();
        }
    }

    qsync_group *group_ = nullptr;
    DoneFn done_;
    std::exception_ptr failure_;
};

} // namespace qsync

#endif /* QSYNC_QSYNC_HPP */
