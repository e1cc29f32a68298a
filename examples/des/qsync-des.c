/*
 * qsync-des: a small discrete-event simulator stepped in lockstep with a
 * QEMU guest.
 *
 * The model: a thermometer sampled every 250 us sends each reading across a
 * network link with a 40 us latency to a sink. The guest is the project's
 * bare-metal guest in its idle mode: it sleeps between timer interrupts and
 * prints one line per tick with its own clock.
 *
 * The lockstep is conservative and runs both sides at once. At every sync
 * point B the simulator grants QEMU the next window [B, B + quantum) with
 * qsync_advance_to_ns(), which returns at once, and then runs its own events
 * of that same window while QEMU runs the guest's. The sync point itself is
 * an event in the queue, so the simulator's clock reaches B + quantum by
 * popping it, like any other event. When the reached callback reports the
 * guest frozen there, both clocks must read the same nanosecond.
 *
 * usage: qsync-des QEMU_BINARY GUEST_ELF [--until 20ms] [--quantum 100us]
 * Exit status 0 only if the clocks agreed at every sync.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qsync/qsync.h>

#include "event_queue.h"

/* Events at the same time run in rank order: the sync point first, so that
 * a window is the half-open [B, B + quantum) and events at B + quantum run
 * in the next one. */
enum { RANK_SYNC = 0, RANK_MODEL = 1 };

#define SENSOR_PERIOD_NS 250000u
#define LINK_LATENCY_NS 40000u
#define GUEST_TICK_US 1000u

/* ---------------------------------------------------------------------- */
/* The model                                                               */

struct sink {
    uint64_t received;
    uint64_t late;      /* readings that did not take exactly the latency */
    uint64_t out_of_order;
    int64_t last_mC;    /* the last reading, in thousandths of a degree C */
};

struct link {
    uint64_t latency_ns;
    uint64_t sent;
    struct sink *sink;
};

struct sensor {
    uint64_t period_ns;
    uint64_t taken;
    struct link *link;
};

static void sink_receive(struct des *sim, const struct des_event *ev)
{
    struct sink *sink = ev->obj;
    uint64_t seq = ev->arg[0], taken_at = ev->arg[1];
    int64_t mC = (int64_t)ev->arg[2];

    if (sim->now_ns - taken_at != LINK_LATENCY_NS)
        sink->late++;
    if (seq != sink->received)
        sink->out_of_order++;
    sink->received++;
    sink->last_mC = mC;
}

/* Carries a reading to the sink: the event is the packet in flight. */
static int link_send(struct des *sim, struct link *link, uint64_t seq, uint64_t taken_at,
                     int64_t mC)
{
    link->sent++;
    return des_schedule(sim, sim->now_ns + link->latency_ns, RANK_MODEL, sink_receive,
                        link->sink, (const uint64_t[]){seq, taken_at, (uint64_t)mC});
}

/* A thermometer warming by 0.01 C per sample from 20 C, wrapping at 25 C. */
static void sensor_sample(struct des *sim, const struct des_event *ev)
{
    struct sensor *s = ev->obj;
    int64_t mC = 20000 + (int64_t)(s->taken % 500) * 10;
    uint64_t seq = s->taken++;

    if (link_send(sim, s->link, seq, sim->now_ns, mC) < 0 ||
        des_schedule(sim, sim->now_ns + s->period_ns, RANK_MODEL, sensor_sample, s, NULL) < 0) {
        fprintf(stderr, "qsync-des: out of memory\n");
        exit(1);
    }
}

/* ---------------------------------------------------------------------- */
/* The lockstep                                                            */

struct app {
    struct des sim;
    struct sensor sensor;
    struct link link;
    struct sink sink;

    uv_loop_t loop;
    qsync_ctx *ctx;
    uint64_t quantum_ns, until_ns;

    uint64_t granted_ns;  /* the deadline QEMU is running to */
    int at_sync;          /* the simulator has popped the sync event */
    uint64_t window_events;

    uint64_t syncs, agreed;
    int failed;

    /* The guest's serial output, split into lines. */
    char line[512];
    size_t line_len;
    uint64_t guest_ticks, guest_ahead;
};

static void fail(struct app *a, const char *what, int code)
{
    if (code)
        fprintf(stderr, "qsync-des: %s: %s (%s)\n", what, qsync_strerror(code),
                qsync_last_error(a->ctx));
    else
        fprintf(stderr, "qsync-des: %s\n", what);
    a->failed = 1;
    qsync_close(a->ctx, NULL); /* QSYNC_ESTATE when already closing: harmless */
}

static void on_sync_point(struct des *sim, const struct des_event *ev)
{
    struct app *a = ev->obj;
    (void)sim;
    a->at_sync = 1;
}

/*
 * Grants QEMU the next window and, while QEMU runs it, runs the simulator's
 * own events of the same window. Returns with the simulator at the window's
 * end, where it waits for the guest.
 */
static int run_window(struct app *a)
{
    uint64_t end = a->sim.now_ns + a->quantum_ns;
    if (end > a->until_ns)
        end = a->until_ns;

    int rc = qsync_advance_to_ns(a->ctx, end);
    if (rc < 0)
        return rc;
    a->granted_ns = end;

    /* QEMU is running [now, end) from here on. */
    rc = des_schedule(&a->sim, end, RANK_SYNC, on_sync_point, a, NULL);
    if (rc < 0)
        return rc;
    uint64_t before = a->sim.popped;
    a->at_sync = 0;
    while (!a->at_sync)
        des_step(&a->sim); /* never empty: the sync point is queued */
    a->window_events = a->sim.popped - before - 1;
    return 0;
}

static void print_ns_as_ms(uint64_t ns)
{
    printf("%10" PRIu64 ".%06" PRIu64, ns / 1000000u, ns % 1000000u);
}

static void on_reached(qsync_ctx *ctx, int status, const qsync_stop *stop)
{
    struct app *a = qsync_get_data(ctx);
    if (status < 0) {
        fail(a, "advance failed", status);
        return;
    }
    a->syncs++;
    int ok = stop->virtual_ns == a->sim.now_ns && stop->deadline_ns == a->sim.now_ns;
    if (ok)
        a->agreed++;
    printf("%5" PRIu64 " ", a->syncs);
    print_ns_as_ms(a->sim.now_ns);
    printf(" ");
    print_ns_as_ms(stop->virtual_ns);
    printf("  %-8s %6" PRIu64 " %5" PRIu64 " %5" PRIu64 "  %2" PRId64 ".%03" PRId64 " C\n",
           ok ? "ok" : "MISMATCH", a->window_events, a->link.sent, a->sink.received,
           a->sink.last_mC / 1000, a->sink.last_mC % 1000);

    if (a->sim.now_ns >= a->until_ns) {
        qsync_close(ctx, NULL);
        return;
    }
    int rc = run_window(a);
    if (rc < 0)
        fail(a, "granting the next window", rc);
}

/* A guest line, e.g. "qsync-guest: tick 3 hpet_ns=3004960 tsc=8687194". Under
 * icount the TSC counts virtual nanoseconds, so it is the guest's own view of
 * the time, and it can never be past what the simulator granted. */
static void guest_line(struct app *a, const char *line)
{
    unsigned long long k, hpet, tsc;
    printf("      guest| %s\n", line);
    if (sscanf(line, "qsync-guest: tick %llu hpet_ns=%llu tsc=%llu", &k, &hpet, &tsc) == 3) {
        a->guest_ticks++;
        if (tsc > a->granted_ns) {
            a->guest_ahead++;
            printf("      guest| AHEAD: tsc %llu is past the granted %" PRIu64 " ns\n", tsc,
                   a->granted_ns);
        }
    }
}

static void on_output(qsync_ctx *ctx, const char *data, size_t len)
{
    struct app *a = qsync_get_data(ctx);
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (c == '\n' || a->line_len == sizeof a->line - 1) {
            a->line[a->line_len] = '\0';
            guest_line(a, a->line);
            a->line_len = 0;
            if (c == '\n')
                continue;
        }
        if (c != '\r')
            a->line[a->line_len++] = c;
    }
}

static void on_exited(qsync_ctx *ctx, const qsync_exit *ex)
{
    struct app *a = qsync_get_data(ctx);
    if (!ex->by_close) {
        fprintf(stderr, "qsync-des: QEMU exited by itself (status %" PRId64 ") at %" PRIu64
                        " ns\n",
                ex->exit_status, ex->virtual_ns);
        a->failed = 1;
        qsync_close(ctx, NULL);
    }
}

static void on_error(qsync_ctx *ctx, int code, const char *message)
{
    struct app *a = qsync_get_data(ctx);
    fprintf(stderr, "qsync-des: %s: %s\n", qsync_err_name(code), message);
    a->failed = 1;
    qsync_close(ctx, NULL);
}

/* ---------------------------------------------------------------------- */
/* Set-up                                                                  */

/* "250us", "20ms", "1s", "500ns": a whole number and a unit. */
static int parse_duration(const char *s, uint64_t *ns)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    uint64_t scale;
    if (end == s || s[0] == '-')
        return -1;
    if (!strcmp(end, "ns"))
        scale = 1;
    else if (!strcmp(end, "us"))
        scale = 1000;
    else if (!strcmp(end, "ms"))
        scale = 1000000;
    else if (!strcmp(end, "s"))
        scale = 1000000000;
    else
        return -1;
    if (v > UINT64_MAX / scale)
        return -1;
    *ns = v * scale;
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: qsync-des QEMU_BINARY GUEST_ELF [--until 20ms] [--quantum 100us]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static struct app a; /* large; and the callbacks reach it through the context */
    a.quantum_ns = 100000;
    a.until_ns = 20000000;

    if (argc < 3)
        usage();
    const char *qemu = argv[1], *guest = argv[2];
    for (int i = 3; i < argc; i += 2) {
        uint64_t *dst = !strcmp(argv[i], "--until")     ? &a.until_ns
                        : !strcmp(argv[i], "--quantum") ? &a.quantum_ns
                                                        : NULL;
        if (!dst || i + 1 >= argc || parse_duration(argv[i + 1], dst) < 0)
            usage();
    }
    if (a.quantum_ns == 0 || a.until_ns == 0)
        usage();

    des_init(&a.sim);
    a.sink = (struct sink){0};
    a.link = (struct link){.latency_ns = LINK_LATENCY_NS, .sink = &a.sink};
    a.sensor = (struct sensor){.period_ns = SENSOR_PERIOD_NS, .link = &a.link};
    if (des_schedule(&a.sim, 0, RANK_MODEL, sensor_sample, &a.sensor, NULL) < 0)
        return 1;

    if (uv_loop_init(&a.loop) < 0)
        return 1;
    qsync_options opts;
    qsync_options_init(&opts);
    opts.stdout_mode = QSYNC_OUTPUT_CALLBACK; /* the guest's serial lines */
    opts.quantum_hint_ns = a.quantum_ns;
    opts.advance_timeout_ms = 10000; /* a stuck QEMU fails the run */
    qsync_callbacks cbs;
    qsync_callbacks_init(&cbs);
    cbs.reached = on_reached;
    cbs.output = on_output;
    cbs.exited = on_exited;
    cbs.error = on_error;
    char err[256];
    int rc = qsync_ctx_new(&a.loop, &opts, &cbs, &a.ctx, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "qsync-des: qsync_ctx_new: %s: %s\n", qsync_strerror(rc), err);
        return 1;
    }
    qsync_set_data(a.ctx, &a);

    /* The guest ticks every millisecond; give it more ticks than the run
     * needs, or it would finish and power off before --until. */
    char append[64];
    snprintf(append, sizeof append, "idle ticks=%" PRIu64 " period_us=%u",
             a.until_ns / (GUEST_TICK_US * 1000u) + 10, GUEST_TICK_US);
    const char *const qemu_argv[] = {
        qemu, "-M", "pc", "-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot",
        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel", guest,
        "-append", append, NULL};

    printf("qsync-des: sensor every %u us -> link %u us -> sink; quantum %" PRIu64
           " ns, until %" PRIu64 " ns\n",
           SENSOR_PERIOD_NS / 1000, LINK_LATENCY_NS / 1000, a.quantum_ns, a.until_ns);
    printf(" sync     simulator (ms)        guest (ms)  agree    events  sent recvd"
           "  last reading\n");

    rc = qsync_start(a.ctx, qemu_argv);
    if (rc == 0)
        rc = run_window(&a); /* the first grant waits in the channel for QEMU */
    if (rc < 0)
        fail(&a, "starting", rc);
    uv_run(&a.loop, UV_RUN_DEFAULT); /* returns once the context is closed */
    uv_loop_close(&a.loop);

    uint64_t expected = (a.until_ns + a.quantum_ns - 1) / a.quantum_ns;
    int ok = !a.failed && a.syncs == expected && a.agreed == a.syncs && a.sink.late == 0 &&
             a.sink.out_of_order == 0 && a.guest_ahead == 0;
    printf("qsync-des: %" PRIu64 " syncs of %" PRIu64 " expected; clocks agreed at %" PRIu64
           "; %" PRIu64 " readings delivered, %" PRIu64 " not exactly %u us after they were "
           "taken; guest printed %" PRIu64 " ticks, %" PRIu64 " ahead of the grant\n",
           a.syncs, expected, a.agreed, a.sink.received, a.sink.late + a.sink.out_of_order,
           LINK_LATENCY_NS / 1000, a.guest_ticks, a.guest_ahead);
    printf("qsync-des: %s\n", ok ? "PASS: the simulator and the guest agreed at every sync"
                                 : "FAIL");
    des_free(&a.sim);
    return ok ? 0 : 1;
}
