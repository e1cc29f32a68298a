// qsync-systemc: a QEMU guest as a SystemC module, synchronised the way a
// TLM loosely-timed initiator is, with a quantum keeper.
//
// The module's SC_THREAD grants QEMU one SystemC quantum with
// qsync_advance_to_ns(), which returns at once, and counts that quantum as
// QEMU's local time ahead of SystemC. It then syncs: wait(quantum) lets
// SystemC's other processes (here a counter) run the same quantum while QEMU
// runs the guest's, and only then does the thread run the module's libuv
// loop until the guest reports it is frozen at the deadline. At every sync
// sc_time_stamp() must equal the virtual time the guest reached.
//
// The module owns its loop and its context, and creates both on the thread
// that runs them (the SC_THREAD's).
//
// usage: qsync-systemc QEMU_BINARY GUEST_ELF [--until 20ms] [--quantum 100us]
// Exit status 0 only if the times agreed at every sync.
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include <systemc>
#include <tlm>
#include <tlm_utils/tlm_quantumkeeper.h>

#include <qsync/qsync.h>

using sc_core::sc_module_name;
using sc_core::sc_time;
using sc_core::SC_NS;
using sc_core::SC_US;

namespace {

// The other SystemC process: a free-running counter, standing for any model
// that does its work inside the quantum.
class Counter : public sc_core::sc_module {
public:
    SC_HAS_PROCESS(Counter);
    Counter(sc_module_name name, sc_time period) : sc_module(name), period_(period)
    {
        SC_THREAD(run);
    }
    uint64_t value() const { return count_; }
    sc_time period() const { return period_; }

private:
    void run()
    {
        for (;;) {
            wait(period_);
            count_++;
        }
    }

    sc_time period_;
    uint64_t count_ = 0;
};

uint64_t to_ns(const sc_time &t)
{
    return t.value() / sc_time(1, SC_NS).value();
}

sc_time from_ns(uint64_t ns)
{
    return sc_time::from_value(ns * sc_time(1, SC_NS).value());
}

// QEMU as an initiator that runs ahead by one quantum.
class QemuCpu : public sc_core::sc_module {
public:
    SC_HAS_PROCESS(QemuCpu);
    QemuCpu(sc_module_name name, std::vector<std::string> argv, sc_time until,
            const Counter &counter)
        : sc_module(name), argv_(std::move(argv)), until_(until), counter_(counter)
    {
        SC_THREAD(run);
        // The thread runs libuv and the library's callbacks on its own stack.
        set_stack_size(1 << 20);
    }

    uint64_t syncs() const { return syncs_; }
    uint64_t agreed() const { return agreed_; }
    uint64_t guest_lines() const { return guest_lines_; }
    bool failed() const { return failed_; }

private:
    void run()
    {
        if (open() == 0)
            step_until_done();
        close();
        sc_core::sc_stop();
    }

    int open()
    {
        int rc = uv_loop_init(&loop_);
        if (rc < 0) {
            std::fprintf(stderr, "qsync-systemc: uv_loop_init: %s\n", uv_strerror(rc));
            failed_ = true;
            return rc;
        }
        loop_open_ = true;
        qsync_options opts;
        qsync_options_init(&opts);
        opts.stdout_mode = QSYNC_OUTPUT_CALLBACK; // the guest's serial lines
        opts.quantum_hint_ns = to_ns(tlm_utils::tlm_quantumkeeper::get_global_quantum());
        opts.advance_timeout_ms = 10000; // a stuck QEMU fails the run
        qsync_callbacks cbs;
        qsync_callbacks_init(&cbs);
        cbs.reached = &QemuCpu::on_reached;
        cbs.exited = &QemuCpu::on_exited;
        cbs.error = &QemuCpu::on_error;
        cbs.output = &QemuCpu::on_output;
        char err[256] = "";
        rc = qsync_ctx_new(&loop_, &opts, &cbs, &ctx_, err, sizeof err);
        if (rc < 0) {
            std::fprintf(stderr, "qsync-systemc: qsync_ctx_new: %s: %s\n", qsync_strerror(rc),
                         err);
            ctx_ = nullptr;
            failed_ = true;
            return rc;
        }
        qsync_set_data(ctx_, this);
        std::vector<const char *> c_argv;
        for (const auto &a : argv_)
            c_argv.push_back(a.c_str());
        c_argv.push_back(nullptr);
        rc = qsync_start(ctx_, c_argv.data());
        if (rc < 0)
            fail("qsync_start", rc);
        return rc;
    }

    void step_until_done()
    {
        tlm_utils::tlm_quantumkeeper keeper;
        keeper.reset();
        while (!failed_ && sc_core::sc_time_stamp() < until_) {
            // To the next quantum boundary (the last one may be cut short).
            sc_time q = tlm::tlm_global_quantum::instance().compute_local_quantum();
            if (sc_core::sc_time_stamp() + q > until_)
                q = until_ - sc_core::sc_time_stamp();
            granted_ns_ = to_ns(sc_core::sc_time_stamp() + q);
            pending_ = true;
            int rc = qsync_advance_to_ns(ctx_, granted_ns_);
            if (rc < 0) {
                fail("qsync_advance_to_ns", rc);
                return;
            }
            // QEMU runs [now, now + q) from here: it is q ahead of SystemC.
            keeper.inc(q);
            // wait(q): SystemC's other processes run the same quantum.
            keeper.sync();
            // Then the guest: run the module's loop until it is frozen.
            while (pending_)
                uv_run(&loop_, UV_RUN_ONCE);
            if (failed_)
                return;
            check_sync();
        }
    }

    void check_sync()
    {
        syncs_++;
        const sc_time now = sc_core::sc_time_stamp();
        const bool ok = stop_.virtual_ns == to_ns(now) && stop_.deadline_ns == to_ns(now) &&
                        from_ns(stop_.virtual_ns) == now;
        if (ok)
            agreed_++;
        // The counter has ticked at period, 2 period, ... up to now; whether
        // its tick at exactly now ran before this thread woke is SystemC's
        // choice, so both counts are right.
        const uint64_t ticks_to_now = to_ns(now) / to_ns(counter_.period());
        const bool at_tick = to_ns(now) % to_ns(counter_.period()) == 0;
        const bool counter_ok = counter_.value() == ticks_to_now ||
                                (at_tick && counter_.value() + 1 == ticks_to_now);
        if (!counter_ok)
            counter_wrong_++;
        std::printf("%5" PRIu64 "  sc_time_stamp %-12s guest %10" PRIu64 " ns  counter %5" PRIu64
                    "  %s\n",
                    syncs_, now.to_string().c_str(), stop_.virtual_ns, counter_.value(),
                    ok && counter_ok ? "ok" : "MISMATCH");
    }

    void close()
    {
        if (ctx_) {
            qsync_close(ctx_, &QemuCpu::on_closed);
            while (ctx_)
                uv_run(&loop_, UV_RUN_ONCE);
        }
        if (loop_open_) {
            uv_run(&loop_, UV_RUN_DEFAULT);
            uv_loop_close(&loop_);
        }
        if (counter_wrong_)
            failed_ = true;
    }

    void fail(const char *what, int code)
    {
        std::fprintf(stderr, "qsync-systemc: %s: %s (%s)\n", what, qsync_strerror(code),
                     ctx_ ? qsync_last_error(ctx_) : "");
        failed_ = true;
        pending_ = false;
    }

    static QemuCpu &self(qsync_ctx *ctx) { return *static_cast<QemuCpu *>(qsync_get_data(ctx)); }

    static void on_reached(qsync_ctx *ctx, int status, const qsync_stop *stop)
    {
        QemuCpu &m = self(ctx);
        if (status < 0) {
            m.fail("advance", status);
            return;
        }
        m.stop_ = *stop; // the pointer lives only during the callback
        m.stop_.vcpu_instructions = nullptr;
        m.pending_ = false;
    }

    static void on_exited(qsync_ctx *ctx, const qsync_exit *ex)
    {
        if (ex->by_close)
            return;
        std::fprintf(stderr, "qsync-systemc: QEMU exited by itself, status %" PRId64 "\n",
                     ex->exit_status);
        self(ctx).failed_ = true;
        self(ctx).pending_ = false;
    }

    static void on_error(qsync_ctx *ctx, int code, const char *message)
    {
        std::fprintf(stderr, "qsync-systemc: %s: %s\n", qsync_err_name(code), message);
        self(ctx).failed_ = true;
        self(ctx).pending_ = false;
    }

    // Guest lines, e.g. "qsync-guest: time 3 hpet_ns=H tsc=X". Under icount
    // the TSC counts virtual nanoseconds: the guest's own clock, which can
    // never be past what SystemC granted.
    static void on_output(qsync_ctx *ctx, const char *data, size_t len)
    {
        QemuCpu &m = self(ctx);
        for (char c : std::string_view(data, len)) {
            if (c != '\n') {
                m.line_ += c;
                continue;
            }
            unsigned long long k, hpet, tsc;
            std::printf("       guest| %s\n", m.line_.c_str());
            if (std::sscanf(m.line_.c_str(), "qsync-guest: time %llu hpet_ns=%llu tsc=%llu", &k,
                            &hpet, &tsc) == 3) {
                m.guest_lines_++;
                if (tsc > m.granted_ns_) {
                    std::printf("       guest| AHEAD of the granted %" PRIu64 " ns\n",
                                m.granted_ns_);
                    m.failed_ = true;
                }
            }
            m.line_.clear();
        }
    }

    static void on_closed(qsync_ctx *ctx) { self(ctx).ctx_ = nullptr; }

    std::vector<std::string> argv_;
    sc_time until_;
    const Counter &counter_;

    uv_loop_t loop_{};
    bool loop_open_ = false;
    qsync_ctx *ctx_ = nullptr;
    bool pending_ = false;
    qsync_stop stop_{};
    uint64_t granted_ns_ = 0;

    uint64_t syncs_ = 0, agreed_ = 0, counter_wrong_ = 0, guest_lines_ = 0;
    bool failed_ = false;
    std::string line_;
};

// "250us", "20ms", "1s", "500ns": a whole number and a unit.
bool parse_duration(const char *s, sc_time &out)
{
    char *end = nullptr;
    unsigned long long v = std::strtoull(s, &end, 10);
    std::string_view unit(end);
    if (end == s || *s == '-' || v == 0)
        return false;
    if (unit == "ns")
        out = sc_time(static_cast<double>(v), SC_NS);
    else if (unit == "us")
        out = sc_time(static_cast<double>(v), SC_US);
    else if (unit == "ms")
        out = sc_time(static_cast<double>(v), sc_core::SC_MS);
    else if (unit == "s")
        out = sc_time(static_cast<double>(v), sc_core::SC_SEC);
    else
        return false;
    return true;
}

[[noreturn]] void usage()
{
    std::fprintf(stderr,
                 "usage: qsync-systemc QEMU_BINARY GUEST_ELF [--until 20ms] [--quantum 100us]\n");
    std::exit(2);
}

} // namespace

int sc_main(int argc, char *argv[])
{
    if (argc < 3)
        usage();
    sc_time until(20, sc_core::SC_MS), quantum(100, SC_US);
    for (int i = 3; i < argc; i += 2) {
        std::string_view opt = argv[i];
        sc_time *dst = opt == "--until" ? &until : opt == "--quantum" ? &quantum : nullptr;
        if (!dst || i + 1 >= argc || !parse_duration(argv[i + 1], *dst))
            usage();
    }
    // The simulation ends with sc_stop(); that is not news.
    sc_core::sc_report_handler::set_actions(sc_core::SC_INFO, sc_core::SC_DO_NOTHING);

    // The guest prints its time every 500 us (250000 two-instruction loops)
    // with interrupts off; give it more prints than the run lasts, or it
    // would finish and power off first.
    const uint64_t delay = 250000;
    const std::string append = "time count=" + std::to_string(to_ns(until) / (2 * delay) + 20) +
                               " delay=" + std::to_string(delay);

    tlm_utils::tlm_quantumkeeper::set_global_quantum(quantum);
    Counter counter("counter", sc_time(10, SC_US));
    QemuCpu qemu("qemu",
                 {argv[1], "-M", "pc", "-nodefaults", "-display", "none", "-serial", "stdio",
                  "-no-reboot", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel",
                  argv[2], "-append", append},
                 until, counter);

    std::printf("qsync-systemc: quantum %s, until %s, counter every %s\n",
                quantum.to_string().c_str(), until.to_string().c_str(),
                counter.period().to_string().c_str());
    sc_core::sc_start();

    const uint64_t expected = (to_ns(until) + to_ns(quantum) - 1) / to_ns(quantum);
    const bool pass = !qemu.failed() && qemu.syncs() == expected &&
                      qemu.agreed() == qemu.syncs();
    std::printf("qsync-systemc: %" PRIu64 " syncs of %" PRIu64 " expected; sc_time_stamp() "
                "equalled the guest's time at %" PRIu64 "; counter at %" PRIu64
                "; guest printed its time %" PRIu64 " times\n",
                qemu.syncs(), expected, qemu.agreed(), counter.value(), qemu.guest_lines());
    std::printf("qsync-systemc: %s\n",
                pass ? "PASS: SystemC and the guest agreed at every sync" : "FAIL");
    return pass ? 0 : 1;
}
