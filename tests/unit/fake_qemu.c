/*
 * A fake QEMU for the library's state-machine tests: it speaks the plugin's
 * side of the native protocol on fds 3 and 4 (as the real plugin would),
 * and misbehaves on request. The scenario is the first argument, the way a
 * user's QEMU arguments would come first; the library appends -icount and
 * -plugin, which are checked here.
 *
 * Scenarios:
 *   good        exact reports, until EOF (then exit 0, like the plugin)
 *   die-mid     HELLO, read one grant, then SIGKILL itself
 *   garbage     HELLO, read one grant, answer with garbage bytes
 *   bad-version HELLO with protocol major 99
 *   wrong-seq   HELLO, answer the first grant with the wrong seq
 *   short       HELLO, answer the first grant 1 ns short of its deadline,
 *               with no deviation flagged
 *   short-far   HELLO, answer the first grant at virtual time 0, flagged
 *               as a deviation
 *   plugin-err  HELLO, read one grant, send an ERROR message
 *   stderr-exit print two lines on stderr and exit 3 before HELLO
 *   no-hello    never speak; sleep until killed
 *   hang        HELLO, read one grant, never answer; ignore EOF
 *   poweroff    answer 2 grants, then on the 3rd send EXIT, say "the guest
 *               powered off" on stderr and exit 7
 *   truncated   HELLO, read one grant, send half a REPORT, exit 0
 *   stray-pipe  HELLO, read one grant, write a frame header of type 0x7f
 *               straight to fd 4 (the report pipe, which carries nothing
 *               on shared memory)
 *   chatty      print 100 KiB on stderr, then behave as good
 *   chatty-exit print the same 100 KiB, answer 20 grants, then on the 21st
 *               send EXIT and exit 0 (all of stderr is read before exited)
 *   stderr-each as good, but print "fake-qemu: quantum <seq>\n" on stderr
 *               before each report
 *   fds         print "fake-qemu: fd <n> -> <target>\n" on stderr for each
 *               descriptor above 2 that it inherited, then behave as good
 *   stdout      print "hello from the guest\n" on stdout, then as good
 *   stamped     as good, but print "q<seq>\n" on stdout before each report,
 *               the way a guest prints during its quantum
 *   lines       prints partial and whole lines, one too long, and a last
 *               one without a newline, around 7 grants (see the code)
 *   input       offers guest input in HELLO; before each report prints
 *               "in <bytes> <frames> <sum>\n" for the INPUT frames that came
 *               before the grant (sum: of the bytes, mod 2^32)
 *   net         offers NICs (G_FRAMES); prints "argv <arg>" on stdout for
 *               each -nic/-device argument and the -plugin's nics= value
 *               ("nics <value>"); before each report, prints
 *               "rx <nic> <time> <len> <first byte>" for each FRAME that
 *               came before the grant and "grant <seq> <deadline>", then
 *               sends a FRAME from NIC 0 at deadline - 1 whose first byte
 *               is the seq and a NIC_STATUS for NIC 0 whose rx_frames
 *               counts the frames received
 *   net-old     as net, but with no G_FRAMES in HELLO (an older plugin)
 *   net-badnic  as net, but its first FRAME claims NIC 5
 *   net-nodriver as net, but NIC_STATUS counts every frame received as
 *               dropped, with a receiver that was never on
 *   next        offers G_NEXT when -plugin has next=1; as good, but before
 *               the report of every even grant sends NEXT with the grant's
 *               deadline + 1000 (a halted guest whose next timer is 1 us on)
 *   next-unasked as next, whether or not the library asked for it
 *   next-twice  as next, but sends NEXT twice before one report
 *   prompt      as good, but a grant that the fake waited for as long as one
 *               of its sleep's time-out slices (slice_ns= on -plugin,
 *               default 10 ms) is answered with an ERROR naming it: on
 *               shared memory, the library did not wake the sleeping fake
 *
 * With shm=5,efd=6 on its -plugin option it speaks all of these over the
 * shared-memory rings (src/proto/shm.h) instead of the pipes, as the
 * plugin does: it polls for a grant for spin_ns (from -plugin, default
 * 50 us, 0 on one CPU), then sleeps on the futex, and writes the eventfd
 * only when the library waits. delay_ns= on -plugin makes the scenarios
 * that serve grants answer each that many ns late, as a QEMU whose quantum
 * takes time.
 *
 * With -qqq write=4,read=3 it is a QEMU with the adevs -qqq protocol's option instead:
 *   qqq-good, qqq-slow-start (sleeps 400 ms before it reads), qqq-split (answers in two short writes), qqq-more (answers 3 us
 *   more), qqq-less, qqq-negative, qqq-half (half an answer, then exits),
 *   qqq-eof-start, qqq-eof-mid (dies inside the second advance),
 *   qqq-close-read (closes its read end of the request pipe, prints
 *   "closed\n" on stdout, and stays alive answering nothing until the
 *   controller's end of the answer pipe is gone)
 * With -plugin ...,HostToGuestPipe=,GuestToHostPipe=,TimeinMicroseconds= (the
 * README's spelling, and no key of our plugin's) it is the Time Sync Plugin:
 *   fifo-one (one byte per quantum), fifo-two (two), fifo-garbage (five at
 *   once), fifo-extra (bytes while frozen), fifo-eof-mid (dies after two
 *   quanta), fifo-never-open, fifo-die-before-open, fifo-close-read (opens
 *   both FIFOs, closes its HostToGuest end, signals the first quantum done,
 *   and stays alive)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "fdio.h"
#include "shm.h"
#include "wire.h"

#define FD_IN 3
#define FD_OUT 4

/* ---- The native protocol's transport: pipes, or shared memory -------- */

static void *shm_base; /* NULL: the pipes carry the frames */
static struct qsync__shm_ring to_plugin, to_library;
static int shm_efd = -1;
static struct qsync__shm_spinner shm_spinner;
static uint64_t shm_slice_ns = 10000000;
static uint64_t answer_delay_ns; /* delay_ns= */
static unsigned slices_slept; /* waits for a frame that lasted a whole slice */

static void shm_setup(const char *shm_fd, const char *efd, const char *spin, const char *slice)
{
    size_t size = qsync__shm_region_size();
    char why[160];
    void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, atoi(shm_fd), 0);
    if (base == MAP_FAILED || qsync__shm_check(base, size, why, sizeof why)) {
        fprintf(stderr, "fake-qemu: bad shm=%s: %s\n", shm_fd,
                base == MAP_FAILED ? strerror(errno) : why);
        exit(66);
    }
    qsync__shm_ring(base, QSYNC__SHM_TO_PLUGIN, &to_plugin);
    qsync__shm_ring(base, QSYNC__SHM_TO_LIBRARY, &to_library);
    shm_efd = atoi(efd);
    cpu_set_t set;
    uint64_t spin_ns = 50000;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) == 1)
        spin_ns = 0;
    if (spin)
        spin_ns = strtoull(spin, NULL, 10);
    qsync__shm_spinner_init(&shm_spinner, spin_ns);
    if (slice)
        shm_slice_ns = strtoull(slice, NULL, 10);
    shm_base = base;
}

/* The controller hung up: fd 3 says so, as the plugin's watcher sees it. */
static int hung_up(void *arg)
{
    (void)arg;
    struct pollfd p = {.fd = FD_IN, .events = 0};
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR)) ? -EPIPE : 0;
}

/* As qsync__write_all(FD_OUT, ...). */
static int out_write(const void *buf, size_t len)
{
    if (!shm_base)
        return qsync__write_all(FD_OUT, buf, len);
    int rc;
    while ((rc = qsync__shm_write(&to_library, buf, len)) == -EAGAIN) {
        if (hung_up(NULL))
            return -EPIPE;
        usleep(100);
    }
    if (rc == 1) {
        uint64_t one = 1;
        if (write(shm_efd, &one, sizeof one) < 0 && errno != EAGAIN)
            return -errno;
    }
    return rc < 0 ? rc : 0;
}

/* As qsync__read_full(FD_IN, ...): frames arrive whole, so *got stays 0
 * at the hang-up. */
static int in_read(void *buf, size_t len, size_t *got)
{
    if (!shm_base)
        return qsync__read_full(FD_IN, buf, len, got);
    if (got)
        *got = 0;
    uint64_t t0 = qsync__shm_now_ns();
    int rc = qsync__shm_wait(&to_plugin, (uint32_t)len, &shm_spinner, shm_slice_ns, hung_up, NULL);
    if (rc)
        return rc;
    /* A wake-up comes at once; a frame found only when a slice ran out
     * was published without one. */
    if (qsync__shm_now_ns() - t0 >= shm_slice_ns)
        slices_slept++;
    size_t n = qsync__shm_read(&to_plugin, buf, len);
    if (got)
        *got = n;
    return 0;
}

static void send_msg(const struct qsync__wire_msg *m)
{
    uint8_t buf[QSYNC__WIRE_MAX_FRAME];
    long n = qsync__wire_encode(m, buf, sizeof buf);
    if (n < 0 || out_write(buf, (size_t)n)) {
        fprintf(stderr, "fake-qemu: write failed\n");
        exit(70);
    }
}

static uint32_t extra_guarantees; /* scenario "input" */

static void send_hello(unsigned major, unsigned shift)
{
    struct qsync__wire_msg m;
    memset(&m, 0, sizeof m);
    m.type = QSYNC__MSG_HELLO;
    m.u.hello.major = (uint16_t)major;
    m.u.hello.minor = 0;
    m.u.hello.plugin_version = 0x000100;
    m.u.hello.n_vcpus = 1;
    m.u.hello.engine = QSYNC__WIRE_ENGINE_INSN;
    m.u.hello.icount_shift = (uint8_t)shift;
    m.u.hello.api_version = 4;
    m.u.hello.guarantees = QSYNC__WIRE_G_EXACT | extra_guarantees;
    snprintf(m.u.hello.target, sizeof m.u.hello.target, "fake");
    send_msg(&m);
}

/* Returns 0 and the grant, or -1 at EOF. */
static int read_grant(struct qsync__wire_grant *g)
{
    uint8_t buf[QSYNC__WIRE_HEADER_SIZE + 16];
    size_t got = 0;
    if (in_read(buf, sizeof buf, &got))
        return -1;
    struct qsync__wire_msg m;
    size_t used;
    if (qsync__wire_decode(buf, sizeof buf, &m, &used) != QSYNC__WIRE_OK || m.type != QSYNC__MSG_GRANT) {
        fprintf(stderr, "fake-qemu: bad grant\n");
        exit(71);
    }
    *g = m.u.grant;
    return 0;
}

static int stamp_output; /* scenario "stamped" */
static int next_each;    /* scenarios "next*": NEXTs before even reports */
static int stamp_stderr; /* scenario "stderr-each" */
static int check_prompt; /* scenario "prompt"  */

static void send_report(const struct qsync__wire_grant *g, uint64_t seq)
{
    if (stamp_output) {
        printf("q%llu\n", (unsigned long long)seq);
        fflush(stdout);
    }
    if (stamp_stderr)
        fprintf(stderr, "fake-qemu: quantum %llu\n", (unsigned long long)seq);
    struct qsync__wire_msg m;
    memset(&m, 0, sizeof m);
    m.type = QSYNC__MSG_REPORT;
    m.u.report.seq = seq;
    m.u.report.deadline_ns = g->deadline_ns;
    m.u.report.virtual_ns = g->deadline_ns;
    m.u.report.instructions = g->deadline_ns;
    m.u.report.n_vcpus = 1;
    m.u.report.vcpu_insns[0] = g->deadline_ns;
    send_msg(&m);
}

/* The plugin's goodbye when the guest ends: virtual time and instructions
 * 4242, which the tests look for in exited. */
static void send_exit(void)
{
    struct qsync__wire_msg m;
    memset(&m, 0, sizeof m);
    m.type = QSYNC__MSG_EXIT;
    m.u.exit.virtual_ns = 4242;
    m.u.exit.instructions = 4242;
    send_msg(&m);
}

static int serve(int max_grants, int exit_code_after)
{
    struct qsync__wire_grant g;
    int n = 0;
    slices_slept = 0;
    while (read_grant(&g) == 0) {
        if (check_prompt && slices_slept > 0) {
            struct qsync__wire_msg m;
            memset(&m, 0, sizeof m);
            m.type = QSYNC__MSG_ERROR;
            m.u.error.code = 1;
            snprintf(m.u.error.text, sizeof m.u.error.text,
                     "grant %llu came only after a time-out slice of %llu ns",
                     (unsigned long long)g.seq, (unsigned long long)shm_slice_ns);
            send_msg(&m);
            char c;
            while (read(FD_IN, &c, 1) > 0) {
            }
            return 0;
        }
        if (max_grants >= 0 && n == max_grants) {
            send_exit();
            return exit_code_after;
        }
        if (answer_delay_ns) {
            struct timespec ts = {(time_t)(answer_delay_ns / 1000000000u),
                                  (long)(answer_delay_ns % 1000000000u)};
            nanosleep(&ts, NULL);
        }
        for (int k = 0; k < next_each && g.seq % 2 == 0; k++) {
            struct qsync__wire_msg m;
            memset(&m, 0, sizeof m);
            m.type = QSYNC__MSG_NEXT;
            m.u.next.timer_ns = g.deadline_ns + 1000;
            send_msg(&m);
        }
        send_report(&g, g.seq);
        n++;
        slices_slept = 0;
    }
    return 0; /* EOF: the controller closed; end at once like the plugin */
}

/* Reads one whole message of any type. Returns 0, or -1 at EOF; a bad
 * frame ends the fake with 71. */
static int read_msg(struct qsync__wire_msg *m)
{
    static uint8_t buf[QSYNC__WIRE_MAX_FRAME];
    size_t frame = 0, used;
    if (in_read(buf, QSYNC__WIRE_HEADER_SIZE, NULL))
        return -1;
    if (qsync__wire_frame_len(buf, QSYNC__WIRE_HEADER_SIZE, &frame) != QSYNC__WIRE_OK ||
        in_read(buf + QSYNC__WIRE_HEADER_SIZE, frame - QSYNC__WIRE_HEADER_SIZE, NULL) ||
        qsync__wire_decode(buf, frame, m, &used) != QSYNC__WIRE_OK) {
        fprintf(stderr, "fake-qemu: bad frame\n");
        exit(71);
    }
    return 0;
}

/* Like serve(-1, 0), taking INPUT frames before each grant. */
static int serve_input(void)
{
    static struct qsync__wire_msg m;
    size_t bytes = 0, frames = 0;
    uint32_t sum = 0;
    for (;;) {
        if (read_msg(&m))
            return 0;
        if (m.type == QSYNC__MSG_INPUT) {
            frames++;
            bytes += m.u.input.len;
            for (uint32_t i = 0; i < m.u.input.len; i++)
                sum += m.u.input.data[i];
            continue;
        }
        struct qsync__wire_grant g = m.u.grant;
        printf("in %zu %zu %u\n", bytes, frames, (unsigned)sum);
        fflush(stdout);
        bytes = frames = 0;
        sum = 0;
        send_report(&g, g.seq);
    }
}

/* Scenarios net, net-old and net-badnic: FRAMEs both ways. */
static int serve_net(int bad_nic, int no_driver)
{
    static uint8_t buf[QSYNC__WIRE_MAX_FRAME];
    static struct qsync__wire_msg m;
    uint64_t received = 0;
    for (;;) {
        if (read_msg(&m))
            return 0;
        if (m.type == QSYNC__MSG_FRAME) {
            received++;
            printf("rx %u %llu %u %u\n", (unsigned)m.u.frame.nic,
                   (unsigned long long)m.u.frame.time_ns, (unsigned)m.u.frame.len,
                   (unsigned)m.u.frame.data[0]);
            continue;
        }
        if (m.type != QSYNC__MSG_GRANT) {
            fprintf(stderr, "fake-qemu: message type %u before a grant\n", (unsigned)m.type);
            exit(71);
        }
        struct qsync__wire_grant g = m.u.grant;
        printf("grant %llu %llu\n", (unsigned long long)g.seq, (unsigned long long)g.deadline_ns);
        fflush(stdout);
        uint8_t frame[60] = {0};
        frame[0] = (uint8_t)g.seq;
        long n = qsync__wire_encode_frame(bad_nic ? 5 : 0, g.deadline_ns ? g.deadline_ns - 1 : 0,
                                          frame, sizeof frame, buf, sizeof buf);
        if (n < 0 || out_write(buf, (size_t)n))
            exit(0);
        memset(&m, 0, sizeof m);
        m.type = QSYNC__MSG_NIC_STATUS;
        m.u.nic_status.flags = no_driver ? 0 : QSYNC__WIRE_NIC_RX_EVER_ON;
        m.u.nic_status.rx_frames = no_driver ? 0 : received;
        m.u.nic_status.rx_dropped = no_driver ? received : 0;
        m.u.nic_status.tx_frames = g.seq;
        send_msg(&m);
        send_report(&g, g.seq);
    }
}

/* ---- the adevs -qqq protocol: native ints of microseconds ---------- */

static int read_int(int *v)
{
    return qsync__read_full(FD_IN, v, sizeof *v, NULL) ? -1 : 0;
}

static void write_int(int v)
{
    if (qsync__write_all(FD_OUT, &v, sizeof v))
        exit(0); /* the controller is gone */
}

static int qqq_main(const char *sc)
{
    int req;
    if (strcmp(sc, "qqq-eof-start") == 0)
        return 0;
    if (strcmp(sc, "qqq-slow-start") == 0)
        usleep(400000); /* a QEMU that takes its time to start */
    if (strcmp(sc, "qqq-close-read") == 0) {
        /* Requests now have no reader here; the controller's writes must
         * neither kill it with SIGPIPE nor fail while QEMU lives. */
        close(FD_IN);
        printf("closed\n");
        fflush(stdout);
        /* Until SIGKILL, or until the controller's read end of the answer
         * pipe is gone (a test that failed half-way): no fake outlives it. */
        struct pollfd p = {.fd = FD_OUT, .events = 0};
        while (poll(&p, 1, -1) == 0 || !(p.revents & (POLLERR | POLLHUP))) {
        }
        return 0;
    }
    for (int n = 0; read_int(&req) == 0; n++) {
        if (strcmp(sc, "qqq-good") == 0 || strcmp(sc, "qqq-slow-start") == 0) {
            write_int(req);
        } else if (strcmp(sc, "qqq-split") == 0) {
            /* A short write: the answer arrives in two pieces. */
            uint8_t b[sizeof req];
            memcpy(b, &req, sizeof b);
            qsync__write_all(FD_OUT, b, 2);
            usleep(20000);
            qsync__write_all(FD_OUT, b + 2, sizeof b - 2);
        } else if (strcmp(sc, "qqq-more") == 0) {
            write_int(req + 3);
        } else if (strcmp(sc, "qqq-less") == 0) {
            write_int(req - 1);
        } else if (strcmp(sc, "qqq-negative") == 0) {
            write_int(-5);
        } else if (strcmp(sc, "qqq-half") == 0) {
            qsync__write_all(FD_OUT, &req, 2);
            return 0;
        } else if (strcmp(sc, "qqq-eof-mid") == 0) {
            if (n == 1)
                return 0; /* answered once, dies inside the second */
            write_int(req);
        } else {
            fprintf(stderr, "fake-qemu: unknown qqq scenario '%s'\n", sc);
            return 64;
        }
    }
    return 0; /* the controller closed its pipes: end, as -qqq does */
}

/* ---- the Time Sync Plugin's legacy FIFOs --------------------------------------- */

static const char *plugin_opt(int argc, char **argv, const char *key, char *out, size_t cap)
{
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "-plugin") != 0)
            continue;
        const char *p = strstr(argv[i + 1], key);
        if (!p)
            continue;
        p += strlen(key);
        size_t n = strcspn(p, ",");
        if (n >= cap)
            return NULL;
        memcpy(out, p, n);
        out[n] = '\0';
        return out;
    }
    return NULL;
}

static int fifo_main(const char *sc, const char *h2g, const char *g2h)
{
    /* As the plugin does with parent=: a test that fails between the
     * spawn and the open of HostToGuest leaves no fake blocked in open(). */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        return 0;
    if (strcmp(sc, "fifo-die-before-open") == 0) {
        fprintf(stderr, "fake-qemu: died before opening the FIFOs\n");
        return 3;
    }
    if (strcmp(sc, "fifo-never-open") == 0) {
        for (;;)
            pause();
    }
    /* As the Time Sync Plugin: both opens block until the controller's ends exist. */
    int in = open(h2g, O_RDONLY);
    int out = open(g2h, O_WRONLY);
    if (in < 0 || out < 0) {
        fprintf(stderr, "fake-qemu: cannot open the FIFOs\n");
        return 66;
    }
    if (strcmp(sc, "fifo-close-read") == 0) {
        /* The controller's HostToGuest end is open (our open returned):
         * from now on its next byte has no reader, while we live on. */
        close(in);
        qsync__write_all(out, "f", 1);
        for (;;)
            pause();
    }
    for (int n = 0;; n++) {
        /* The quantum runs; then "done". */
        if (strcmp(sc, "fifo-one") == 0 || strcmp(sc, "fifo-eof-mid") == 0) {
            qsync__write_all(out, "f", 1);
        } else if (strcmp(sc, "fifo-two") == 0) {
            qsync__write_all(out, "ff", 2);
        } else if (strcmp(sc, "fifo-garbage") == 0) {
            qsync__write_all(out, "\x01\x02\x03\x04\x05", 5);
        } else if (strcmp(sc, "fifo-extra") == 0) {
            qsync__write_all(out, "f", 1);
            usleep(20000);
            qsync__write_all(out, "zz", 2); /* while frozen: not allowed */
        } else {
            fprintf(stderr, "fake-qemu: unknown fifo scenario '%s'\n", sc);
            return 64;
        }
        if (strcmp(sc, "fifo-eof-mid") == 0 && n == 1)
            return 0;
        char c;
        size_t got;
        if (qsync__read_full(in, &c, 1, &got))
            return 0; /* the controller closed HostToGuest */
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "fake-qemu: no scenario\n");
        return 64;
    }
    char h2g[4096], g2h[4096];
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "-qqq") == 0) {
            if (i + 1 >= argc || strcmp(argv[i + 1], "write=4,read=3") != 0) {
                fprintf(stderr, "fake-qemu: bad -qqq argument\n");
                return 65;
            }
            return qqq_main(argv[1]);
        }
    }
    if (plugin_opt(argc, argv, "HostToGuestPipe=", h2g, sizeof h2g) &&
        plugin_opt(argc, argv, "GuestToHostPipe=", g2h, sizeof g2h)) {
        /* The Time Sync Plugin's README spells the quantum so, and its plugin is not
         * ours: the library must pass its keys alone. */
        char q[64];
        if (!plugin_opt(argc, argv, ",TimeinMicroseconds=", q, sizeof q) ||
            plugin_opt(argc, argv, "TimeInMicroSeconds=", q, sizeof q) ||
            plugin_opt(argc, argv, "parent=", q, sizeof q) ||
            plugin_opt(argc, argv, "remove_fifos=", q, sizeof q)) {
            fprintf(stderr, "fake-qemu: the FIFO keys are not the Time Sync Plugin's README's alone\n");
            return 67;
        }
        return fifo_main(argv[1], h2g, g2h);
    }
    /* As QEMU does; and, like our plugin in QEMU, skip the write guard. */
    signal(SIGPIPE, SIG_IGN);
    qsync__fdio_sigpipe_ignored();
    /* The library must append exactly these. */
    unsigned shift = 0;
    int have_icount = 0, have_plugin = 0;
    for (int i = 2; i + 1 < argc; i++) {
        if (strcmp(argv[i], "-icount") == 0) {
            have_icount = 1;
            sscanf(argv[i + 1], "shift=%u", &shift);
        }
        if (strcmp(argv[i], "-plugin") == 0 && strstr(argv[i + 1], "fd_in=3,fd_out=4"))
            have_plugin = 1;
    }
    if (!have_icount || !have_plugin) {
        fprintf(stderr, "fake-qemu: missing -icount or -plugin\n");
        return 65;
    }
    char shm_fd[16], efd[16], spin[32], slice[32], delay[32];
    if (plugin_opt(argc, argv, ",delay_ns=", delay, sizeof delay))
        answer_delay_ns = strtoull(delay, NULL, 10);
    if (plugin_opt(argc, argv, ",shm=", shm_fd, sizeof shm_fd) &&
        plugin_opt(argc, argv, ",efd=", efd, sizeof efd))
        shm_setup(shm_fd, efd, plugin_opt(argc, argv, ",spin_ns=", spin, sizeof spin),
                  plugin_opt(argc, argv, ",slice_ns=", slice, sizeof slice));
    const char *sc = argv[1];
    struct qsync__wire_grant g;

    if (strcmp(sc, "good") == 0) {
        send_hello(QSYNC__WIRE_MAJOR, shift);
        return serve(-1, 0);
    }
    if (strcmp(sc, "stdout") == 0) {
        printf("hello from the guest\n");
        fflush(stdout);
        send_hello(QSYNC__WIRE_MAJOR, shift);
        return serve(-1, 0);
    }
    if (strcmp(sc, "input") == 0) {
        extra_guarantees = QSYNC__WIRE_G_INPUT;
        send_hello(QSYNC__WIRE_MAJOR, shift);
        return serve_input();
    }
    if (strncmp(sc, "net", 3) == 0) {
        char nics[64];
        for (int i = 2; i + 1 < argc; i++)
            if (strcmp(argv[i], "-nic") == 0 || strcmp(argv[i], "-device") == 0)
                printf("argv %s %s\n", argv[i], argv[i + 1]);
        if (plugin_opt(argc, argv, ",nics=", nics, sizeof nics))
            printf("nics %s\n", nics);
        fflush(stdout);
        if (strcmp(sc, "net-old") != 0)
            extra_guarantees = QSYNC__WIRE_G_FRAMES;
        send_hello(QSYNC__WIRE_MAJOR, shift);
        return serve_net(strcmp(sc, "net-badnic") == 0, strcmp(sc, "net-nodriver") == 0);
    }
    if (strncmp(sc, "next", 4) == 0) {
        char next[8];
        int asked = plugin_opt(argc, argv, ",next=", next, sizeof next) && next[0] == '1';
        if (asked)
            extra_guarantees = QSYNC__WIRE_G_NEXT;
        next_each = asked || strcmp(sc, "next-unasked") == 0;
        if (strcmp(sc, "next-twice") == 0)
            next_each = 2;
        send_hello(QSYNC__WIRE_MAJOR, shift);
        return serve(-1, 0);
    }
    if (strcmp(sc, "prompt") == 0) {
        check_prompt = 1;
        send_hello(QSYNC__WIRE_MAJOR, shift);
        return serve(-1, 0);
    }
    if (strcmp(sc, "stamped") == 0) {
        stamp_output = 1;
        send_hello(QSYNC__WIRE_MAJOR, shift);
        return serve(-1, 0);
    }
    if (strcmp(sc, "chatty") == 0 || strcmp(sc, "chatty-exit") == 0) {
        for (int i = 0; i < 1024; i++)
            fprintf(stderr, "%099d\n", i);
        fprintf(stderr, "fake-qemu: last words\n");
        send_hello(QSYNC__WIRE_MAJOR, shift);
        return strcmp(sc, "chatty") == 0 ? serve(-1, 0) : serve(20, 0);
    }
    if (strcmp(sc, "fds") == 0) {
        DIR *dir = opendir("/proc/self/fd");
        struct dirent *e;
        while (dir && (e = readdir(dir)) != NULL) {
            char path[64], target[4096];
            int fd = atoi(e->d_name);
            if (fd <= 2 || fd == dirfd(dir))
                continue;
            snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
            ssize_t n = readlink(path, target, sizeof target - 1);
            target[n > 0 ? n : 0] = '\0';
            fprintf(stderr, "fake-qemu: fd %d -> %s\n", fd, target);
        }
        if (dir)
            closedir(dir);
        send_hello(QSYNC__WIRE_MAJOR, shift);
        return serve(-1, 0);
    }
    if (strcmp(sc, "stderr-each") == 0) {
        stamp_stderr = 1;
        send_hello(QSYNC__WIRE_MAJOR, shift);
        return serve(-1, 0);
    }
    if (strcmp(sc, "lines") == 0) {
        /* Before report k: "x<k>-", a newline after even k, 5000 'L' and
         * a newline at k = 5; at grant 7, a last line with no newline,
         * then EXIT and status 9. */
        send_hello(QSYNC__WIRE_MAJOR, shift);
        for (int n = 1; read_grant(&g) == 0; n++) {
            if (n == 7) {
                printf("end-without-newline");
                fflush(stdout);
                send_exit();
                return 9;
            }
            printf("x%d-%s", n, n % 2 == 0 ? "\n" : "");
            if (n == 5) {
                for (int i = 0; i < 5000; i++)
                    putchar('L');
                putchar('\n');
            }
            fflush(stdout);
            send_report(&g, g.seq);
        }
        return 0;
    }
    if (strcmp(sc, "poweroff") == 0) {
        send_hello(QSYNC__WIRE_MAJOR, shift);
        int rc = serve(2, 7);
        fprintf(stderr, "fake-qemu: the guest powered off\n");
        return rc;
    }
    if (strcmp(sc, "stderr-exit") == 0) {
        fprintf(stderr, "qemu-system-x86_64: first line\nqemu-system-x86_64: could not load kernel 'nope'\n");
        return 3;
    }
    if (strcmp(sc, "no-hello") == 0) {
        for (;;)
            pause();
    }
    if (strcmp(sc, "bad-version") == 0) {
        send_hello(99, shift);
        return serve(-1, 0);
    }
    send_hello(QSYNC__WIRE_MAJOR, shift);
    if (read_grant(&g))
        return 0;
    if (strcmp(sc, "die-mid") == 0) {
        raise(SIGKILL);
    } else if (strcmp(sc, "garbage") == 0) {
        static const uint8_t junk[] = {0xde, 0xad, 0xbe, 0xef, 0x00, 0x01, 0x02, 0x03,
                                       0x04, 0x05, 0x06, 0x07};
        out_write(junk, sizeof junk);
    } else if (strcmp(sc, "wrong-seq") == 0) {
        send_report(&g, g.seq + 5);
    } else if (strcmp(sc, "short") == 0 || strcmp(sc, "short-far") == 0) {
        /* A stop short of its deadline: by 1 ns with no deviation flagged,
         * or flagged but far more than shift 0's rounding (as an engine
         * that read a deadline past 2^63 as negative did: it stopped at
         * once, where it was). */
        struct qsync__wire_msg m;
        memset(&m, 0, sizeof m);
        m.type = QSYNC__MSG_REPORT;
        m.u.report.seq = g.seq;
        m.u.report.deadline_ns = g.deadline_ns;
        int far = strcmp(sc, "short-far") == 0;
        m.u.report.virtual_ns = far ? 0 : g.deadline_ns - 1;
        m.u.report.flags = far ? QSYNC__WIRE_R_DEVIATION : 0;
        m.u.report.n_vcpus = 1;
        send_msg(&m);
    } else if (strcmp(sc, "plugin-err") == 0) {
        struct qsync__wire_msg m;
        memset(&m, 0, sizeof m);
        m.type = QSYNC__MSG_ERROR;
        m.u.error.code = 1;
        snprintf(m.u.error.text, sizeof m.u.error.text, "grant went backwards");
        send_msg(&m);
    } else if (strcmp(sc, "truncated") == 0) {
        uint8_t buf[QSYNC__WIRE_MAX_FRAME];
        struct qsync__wire_msg m;
        memset(&m, 0, sizeof m);
        m.type = QSYNC__MSG_REPORT;
        m.u.report.seq = g.seq;
        m.u.report.deadline_ns = g.deadline_ns;
        m.u.report.n_vcpus = 1;
        long n = qsync__wire_encode(&m, buf, sizeof buf);
        out_write(buf, (size_t)n / 2);
        return 0;
    } else if (strcmp(sc, "stray-pipe") == 0) {
        qsync__write_all(FD_OUT, "\x7f\x00\x00\x00\x00\x00\x00\x00", 8);
    } else if (strcmp(sc, "hang") == 0) {
        signal(SIGTERM, SIG_IGN);
        for (;;)
            pause();
    } else {
        fprintf(stderr, "fake-qemu: unknown scenario '%s'\n", sc);
        return 64;
    }
    /* Stay alive until the controller closes; then exit like the plugin. */
    char c;
    while (read(FD_IN, &c, 1) > 0) {
    }
    return 0;
}
