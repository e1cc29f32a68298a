// qsync-cpp: libqsync from C++17, through the library's header-only RAII
// wrapper <qsync/qsync.hpp> and lambdas for the callbacks.
//
// It boots the project's guest in its compute mode (a busy loop) and
// advances it N quanta, one at a time, checking that every stop is exact:
// the guest is frozen at the deadline granted, to the nanosecond, with no
// instruction past it. Its serial output comes by lines, each with the
// virtual time of its quantum's stop. Then two guests step through 10
// barriers of a qsync::Group, and the raw C context is used once for a
// call the wrapper does not cover.
//
// usage: qsync-cpp QEMU_BINARY GUEST_ELF [--quanta 300] [--quantum-us 50]
// Exit status 0 only if all N stops were exact.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <qsync/qsync.hpp>

using namespace std::chrono_literals;
using qsync::Group;
using qsync::Guest;
using qsync::Loop;

namespace {

struct Args {
    std::string qemu, guest;
    unsigned long quanta = 300;
    std::chrono::microseconds quantum = 50us;
};

[[noreturn]] void usage()
{
    std::fprintf(stderr,
                 "usage: qsync-cpp QEMU_BINARY GUEST_ELF [--quanta N] [--quantum-us US]\n");
    std::exit(2);
}

Args parse(int argc, char **argv)
{
    if (argc < 3)
        usage();
    Args a{argv[1], argv[2]};
    for (int i = 3; i < argc; i += 2) {
        if (i + 1 >= argc)
            usage();
        std::string_view opt = argv[i];
        char *end = nullptr;
        unsigned long v = std::strtoul(argv[i + 1], &end, 10);
        if (*end != '\0' || v == 0)
            usage();
        if (opt == "--quanta")
            a.quanta = v;
        else if (opt == "--quantum-us")
            a.quantum = std::chrono::microseconds(v);
        else
            usage();
    }
    return a;
}

} // namespace

int main(int argc, char **argv)
{
    const Args args = parse(argc, argv);
    const auto quantum = std::chrono::nanoseconds(args.quantum);
    unsigned long stops = 0, exact = 0;
    bool guest_quit = false;

    try {
        Loop loop;
        qsync_options opts = Guest::default_options();
        opts.stdout_mode = QSYNC_OUTPUT_LINES; // the guest's serial port, by lines
        opts.quantum_hint_ns = static_cast<uint64_t>(quantum.count());
        opts.advance_timeout_ms = 10000; // a stuck QEMU fails the run
        Guest guest(loop, opts);

        guest.on_ready([](const qsync_info &info) {
            std::printf("qsync-cpp: plugin ready: engine %s, %u vCPU, exact %s\n", info.engine,
                        info.n_vcpus, info.exact ? "yes" : "no");
        });

        guest.on_reached([&](int status, const qsync_stop *stop) {
            if (status < 0)
                throw qsync::Error("advance", status);
            stops++;
            // Deadlines are absolute: the k-th stop is at k quanta.
            const auto want = static_cast<uint64_t>(quantum.count()) * stop->seq;
            const bool ok = stop->deadline_ns == want && stop->virtual_ns == want &&
                            stop->overshoot_insns == 0 &&
                            !(stop->flags & QSYNC_STOP_DEVIATION);
            if (ok)
                exact++;
            std::printf("stop %3llu: deadline %9llu ns  reached %9llu ns  overshoot %lld insns"
                        "  %llu insns so far  %s\n",
                        static_cast<unsigned long long>(stop->seq),
                        static_cast<unsigned long long>(stop->deadline_ns),
                        static_cast<unsigned long long>(stop->virtual_ns),
                        static_cast<long long>(stop->overshoot_insns),
                        static_cast<unsigned long long>(stop->instructions),
                        ok ? "exact" : "NOT EXACT");
            if (stops < args.quanta)
                guest.advance(quantum);
            else
                guest.close();
        });

        guest.on_exited([&](const qsync_exit &ex) {
            if (ex.by_close)
                return;
            guest_quit = true;
            std::fprintf(stderr, "qsync-cpp: QEMU exited by itself, status %lld: %s\n",
                         static_cast<long long>(ex.exit_status), ex.stderr_tail);
            guest.close();
        });

        guest.on_line([&](std::string_view line, uint64_t virtual_ns) {
            std::printf("      guest| %.*s  (by %llu ns)\n", static_cast<int>(line.size()),
                        line.data(), static_cast<unsigned long long>(virtual_ns));
        });

        guest.on_error([&](int code, std::string_view message) {
            throw qsync::Error(std::string(message), code);
        });

        // 10^9 loop iterations: 2 s of guest time, far more than we grant.
        guest.start({args.qemu, "-M", "pc", "-nodefaults", "-display", "none", "-serial",
                     "stdio", "-no-reboot", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
                     "-kernel", args.guest, "-append", "compute 1000000000"});
        guest.advance(quantum); // waits in the channel until QEMU is up
        loop.run();             // returns once the guest is closed
        guest.rethrow_if_failed();
    } catch (const std::exception &e) {
        std::fprintf(stderr, "qsync-cpp: %s\n", e.what());
        return 1;
    }

    // Two guests, one barrier: each group advance ends when both are there.
    unsigned barriers = 0, barriers_ok = 0;
    try {
        Loop loop;
        qsync_options opts = Guest::default_options();
        opts.stdout_mode = QSYNC_OUTPUT_DISCARD;
        opts.advance_timeout_ms = 10000;
        Guest a(loop, opts), b(loop, opts);
        const std::vector<std::string> qemu_argv = {
            args.qemu, "-M", "pc", "-nodefaults", "-display", "none", "-kernel", args.guest,
            "-append", "compute 1000000000"};
        a.start(qemu_argv);
        b.start(qemu_argv);
        Group group;
        group.add(a);
        group.add(b);
        std::function<void(int, uint64_t)> done = [&](int status, uint64_t deadline_ns) {
            if (status < 0)
                throw qsync::Error("group advance", status);
            barriers++;
            // The raw context, for a call the wrapper leaves to the C API.
            if (qsync_now_ns(a.raw()) == deadline_ns && b.now().count() >= 0 &&
                static_cast<uint64_t>(b.now().count()) == deadline_ns &&
                static_cast<uint64_t>(group.now().count()) == deadline_ns)
                barriers_ok++;
            if (barriers < 10) {
                group.advance(100us, done);
            } else {
                a.close();
                b.close();
            }
        };
        group.advance(100us, done);
        loop.run();
        group.rethrow_if_failed();
        a.rethrow_if_failed();
        b.rethrow_if_failed();
    } catch (const std::exception &e) {
        std::fprintf(stderr, "qsync-cpp: group: %s\n", e.what());
        return 1;
    }
    std::printf("qsync-cpp: group: %u of 10 barriers with both guests at the deadline\n",
                barriers_ok);

    const bool pass = !guest_quit && stops == args.quanta && exact == stops && barriers_ok == 10;
    std::printf("qsync-cpp: %lu of %lu stops exact\n", exact, args.quanta);
    std::printf("qsync-cpp: %s\n", pass ? "PASS" : "FAIL");
    return pass ? 0 : 1;
}
