// A small RAII wrapper over libqsync's C API, for C++17 programs.
//
// It belongs to this example, not to the library: copy it and change it to
// suit your simulator. It shows the three things a C++ user needs:
//   - ownership: the loop and the context are objects that clean up in their
//     destructors, so QEMU never outlives the scope that started it;
//   - callbacks as std::function (lambdas that capture), dispatched from the
//     C callbacks through qsync_get_data();
//   - errors as exceptions, and never an exception thrown through C: one that
//     escapes a callback is kept, the context is closed, and
//     rethrow_if_failed() throws it again on the caller's side.
#ifndef QSYNC_EXAMPLE_GUEST_HPP
#define QSYNC_EXAMPLE_GUEST_HPP

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

namespace qsync_example {

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
    Guest &on_output(OutputFn f) { output_ = std::move(f); return *this; }

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
};

} // namespace qsync_example

#endif
