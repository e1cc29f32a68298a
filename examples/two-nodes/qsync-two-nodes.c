/*
 * qsync-two-nodes: two QEMU guests joined by a simulated serial link.
 *
 * Node A runs the project's guest in its "send" mode: it writes frames
 * "#k t\n" on its serial port, t being its own clock (the TSC, which under
 * -icount is the virtual time in ns) when the frame leaves. Node B runs the
 * "recv" mode: it polls its serial port and prints, for each frame, the
 * send time it carries and its own clock when the frame's first byte came.
 *
 * The simulator is the link. It advances both guests together through one
 * group barrier, reads what A wrote during each step (the library hands a
 * quantum's output over before the quantum's reached callback), and feeds
 * each frame into B with qsync_send_input() at exactly t + L, the send time
 * plus the link's latency. That needs B to be stopped at t + L, so the next
 * barrier is the earlier of "now + quantum" and the next frame's due time.
 *
 * Why nothing is ever late: a frame written during the step (now, next]
 * has t > now, so it is due after now + L >= now + quantum >= next, which
 * is B's future. The latency is the lookahead; it must be at least the
 * quantum, and the program refuses a shorter one.
 *
 * Every line printed is a function of virtual time only, so two runs print
 * the same transcript byte for byte (the example's test checks it).
 *
 * usage: qsync-two-nodes QEMU_BINARY GUEST_ELF [--count 8] [--quantum-us 10]
 *                        [--latency-us 25] [--until-ms 50]
 * Exit status 0 only if every frame was delivered at exactly t + L and B
 * saw it there.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qsync/qsync.h>

#define MAX_FRAMES 99         /* the guest's own limit                    */
#define OUT_CAP (64 * 1024)   /* unprocessed output of one node           */
#define POLL_SLACK_NS 1000    /* B sees a byte within this of its arrival */

struct node {
    const char *name;
    qsync_ctx *ctx;
    int ready;
    char out[OUT_CAP]; /* what the guest printed, not yet processed */
    size_t out_len;
};

struct frame {
    unsigned k;
    uint64_t sent_ns; /* the stamp A put in it */
    uint64_t due_ns;  /* sent_ns + latency     */
    char bytes[32];
    size_t len;
    int delivered;
};

struct app {
    uv_loop_t loop;
    qsync_group *group;
    struct node a, b;
    uint64_t quantum_ns, latency_ns, until_ns;
    unsigned count;

    uint64_t now_ns, next_ns;
    struct frame frames[MAX_FRAMES];
    unsigned n_frames;     /* frames A has sent           */
    unsigned n_delivered;  /* frames fed into B           */
    unsigned n_received;   /* frames B reported           */
    unsigned n_exact;      /* delivered at exactly t + L  */
    uint64_t steps;
    uint64_t min_seen_ns, max_seen_ns; /* B's first look after delivery */
    int failed;
    int finished;
};

static void finish(struct app *app, int failed)
{
    if (app->finished)
        return;
    app->finished = 1;
    app->failed |= failed;
    qsync_close(app->a.ctx, NULL);
    qsync_close(app->b.ctx, NULL);
}

static void fail_with(struct app *app, const char *what, int code)
{
    fprintf(stderr, "qsync-two-nodes: %s: %s\n", what, qsync_strerror(code));
    finish(app, 1);
}

/* ---------------------------------------------------------------------- */
/* The link                                                                */

/* A frame line from A: "#k t". */
static void link_take(struct app *app, const char *line)
{
    unsigned k;
    unsigned long long t;
    if (sscanf(line, "#%u %llu", &k, &t) != 2 || app->n_frames == MAX_FRAMES) {
        printf("%12" PRIu64 "  link: refused a malformed frame from A: '%s'\n", app->now_ns,
               line);
        app->failed = 1;
        return;
    }
    struct frame *f = &app->frames[app->n_frames++];
    f->k = k;
    f->sent_ns = t;
    f->due_ns = t + app->latency_ns;
    f->len = (size_t)snprintf(f->bytes, sizeof f->bytes, "%s\n", line);
    printf("%12" PRIu64 "  A sends #%u, stamped %llu ns; due at B at %" PRIu64 " ns\n",
           app->now_ns, k, t, f->due_ns);
    /* The stamp must lie in the step just run, and the frame must be due
     * in B's future: the lookahead argument at the top of the file. */
    if (t > app->now_ns || f->due_ns <= app->now_ns) {
        printf("%12" PRIu64 "  link: frame #%u is outside the lookahead window\n",
               app->now_ns, k);
        app->failed = 1;
    }
}

/* Feeds B the frames due now. */
static void link_deliver(struct app *app)
{
    for (unsigned i = 0; i < app->n_frames; i++) {
        struct frame *f = &app->frames[i];
        if (f->delivered || f->due_ns > app->now_ns)
            continue;
        int rc = qsync_send_input(app->b.ctx, f->bytes, f->len);
        if (rc < 0) {
            fail_with(app, "qsync_send_input", rc);
            return;
        }
        f->delivered = 1;
        app->n_delivered++;
        int exact = f->due_ns == app->now_ns;
        app->n_exact += exact;
        printf("%12" PRIu64 "  link delivers #%u into B = sent %" PRIu64 " + latency %" PRIu64
               "%s\n",
               app->now_ns, f->k, f->sent_ns, app->latency_ns, exact ? "" : "  LATE");
    }
}

/* The earliest time a frame still in flight is due, or UINT64_MAX. */
static uint64_t link_next_due(const struct app *app)
{
    uint64_t due = UINT64_MAX;
    for (unsigned i = 0; i < app->n_frames; i++)
        if (!app->frames[i].delivered && app->frames[i].due_ns < due)
            due = app->frames[i].due_ns;
    return due;
}

/* A line from B: "qsync-guest: recv k sent=S arrived=T latency=X". */
static void node_b_line(struct app *app, const char *line)
{
    unsigned k;
    unsigned long long sent, arrived, latency;
    if (sscanf(line, "qsync-guest: recv %u sent=%llu arrived=%llu latency=%llu", &k, &sent,
               &arrived, &latency) != 4) {
        printf("%12" PRIu64 "  B| %s\n", app->now_ns, line);
        return;
    }
    const struct frame *f = NULL;
    for (unsigned i = 0; i < app->n_frames; i++)
        if (app->frames[i].k == k && app->frames[i].delivered)
            f = &app->frames[i];
    app->n_received++;
    if (f == NULL || sent != f->sent_ns || arrived < f->due_ns ||
        arrived - f->due_ns > POLL_SLACK_NS) {
        printf("%12" PRIu64 "  B got #%u at %llu ns: NOT at its delivery time\n", app->now_ns,
               k, arrived);
        app->failed = 1;
        return;
    }
    uint64_t seen = arrived - f->due_ns;
    if (app->n_received == 1 || seen < app->min_seen_ns)
        app->min_seen_ns = seen;
    if (seen > app->max_seen_ns)
        app->max_seen_ns = seen;
    printf("%12" PRIu64 "  B got #%u at %llu ns by its own clock: sent %llu + %llu ns "
           "(latency %" PRIu64 " + %" PRIu64 " ns to poll)\n",
           app->now_ns, k, arrived, sent, latency, app->latency_ns, seen);
}

/* Takes the complete lines a node printed; keeps a partial last line. */
static void node_lines(struct app *app, struct node *n)
{
    size_t start = 0;
    for (size_t i = 0; i < n->out_len; i++) {
        if (n->out[i] != '\n')
            continue;
        n->out[i] = '\0';
        const char *line = n->out + start;
        if (n == &app->a && line[0] == '#')
            link_take(app, line);
        else if (n == &app->b)
            node_b_line(app, line);
        else
            printf("%12" PRIu64 "  %s| %s\n", app->now_ns, n->name, line);
        start = i + 1;
    }
    memmove(n->out, n->out + start, n->out_len - start);
    n->out_len -= start;
}

/* ---------------------------------------------------------------------- */
/* The lockstep                                                            */

static void on_step(qsync_group *g, int status, uint64_t deadline_ns);

static void step(struct app *app)
{
    if (app->now_ns >= app->until_ns) {
        printf("%12" PRIu64 "  --until reached with %u of %u frames received\n", app->now_ns,
               app->n_received, app->count);
        finish(app, 1);
        return;
    }
    uint64_t next = app->now_ns + app->quantum_ns;
    uint64_t due = link_next_due(app);
    if (due < next)
        next = due;
    app->next_ns = next;
    int rc = qsync_group_advance_to_ns(app->group, next, on_step);
    if (rc < 0)
        fail_with(app, "qsync_group_advance_to_ns", rc);
}

static void on_step(qsync_group *g, int status, uint64_t deadline_ns)
{
    (void)deadline_ns;
    struct app *app = qsync_group_get_data(g);
    if (status < 0) {
        fail_with(app, "a node's advance", status);
        return;
    }
    app->now_ns = app->next_ns;
    app->steps++;
    /* Both nodes are frozen at now; what they printed up to now is here. */
    node_lines(app, &app->a);
    node_lines(app, &app->b);
    if (app->finished)
        return;
    if (app->n_received == app->count) {
        finish(app, 0);
        return;
    }
    link_deliver(app);
    if (!app->finished)
        step(app);
}

/* ---------------------------------------------------------------------- */
/* Callbacks                                                               */

static void on_ready(qsync_ctx *ctx, const qsync_info *info)
{
    struct node *n = qsync_get_data(ctx);
    n->ready = 1;
    if (!info->exact || !info->input) {
        fprintf(stderr,
                "qsync-two-nodes: node %s: this QEMU gives no %s (engine %s); the example "
                "needs exact stops and guest input\n",
                n->name, !info->exact ? "exact stops" : "guest input", info->engine);
        exit(1);
    }
}

static void on_output(qsync_ctx *ctx, const char *data, size_t len)
{
    struct node *n = qsync_get_data(ctx);
    if (len > sizeof n->out - n->out_len) {
        fprintf(stderr, "qsync-two-nodes: node %s printed more than %d bytes in one step\n",
                n->name, OUT_CAP);
        exit(1);
    }
    memcpy(n->out + n->out_len, data, len);
    n->out_len += len;
}

static void on_exited(qsync_ctx *ctx, const qsync_exit *ex)
{
    struct node *n = qsync_get_data(ctx);
    if (!ex->by_close) {
        fprintf(stderr, "qsync-two-nodes: node %s: QEMU exited by itself (status %" PRId64
                        ", signal %d)\n%s",
                n->name, ex->exit_status, ex->term_signal,
                ex->stderr_tail ? ex->stderr_tail : "");
        exit(1);
    }
}

static void on_error(qsync_ctx *ctx, int code, const char *message)
{
    struct node *n = qsync_get_data(ctx);
    fprintf(stderr, "qsync-two-nodes: node %s: %s: %s\n", n->name, qsync_err_name(code),
            message);
    exit(1);
}

/* ---------------------------------------------------------------------- */
/* Set-up                                                                  */

/* A whole decimal number in [min, max]. */
static int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    if (s[0] < '0' || s[0] > '9')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static void usage(const char *why)
{
    fprintf(stderr,
            "qsync-two-nodes: %s\n"
            "usage: qsync-two-nodes QEMU_BINARY GUEST_ELF [--count 8] [--quantum-us 10]\n"
            "                       [--latency-us 25] [--until-ms 50]\n",
            why);
    exit(2);
}

static int start_node(struct app *app, struct node *n, const char *name, const char *qemu,
                      const char *guest, const char *append)
{
    qsync_options opts;
    qsync_options_init(&opts);
    opts.stdout_mode = QSYNC_OUTPUT_CALLBACK;
    opts.quantum_hint_ns = app->quantum_ns;
    opts.advance_timeout_ms = 10000;
    qsync_callbacks cbs;
    qsync_callbacks_init(&cbs);
    cbs.ready = on_ready;
    cbs.output = on_output;
    cbs.exited = on_exited;
    cbs.error = on_error;
    char err[256];
    n->name = name;
    int rc = qsync_ctx_new(&app->loop, &opts, &cbs, &n->ctx, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "qsync-two-nodes: node %s: %s: %s\n", name, qsync_strerror(rc), err);
        return rc;
    }
    qsync_set_data(n->ctx, n);
    const char *const argv[] = {
        qemu, "-M", "pc", "-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot",
        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel", guest,
        "-append", append, NULL};
    rc = qsync_start(n->ctx, argv);
    if (rc == 0)
        rc = qsync_group_add(app->group, n->ctx);
    if (rc < 0)
        fprintf(stderr, "qsync-two-nodes: node %s: %s: %s\n", name, qsync_strerror(rc),
                qsync_last_error(n->ctx));
    return rc;
}

int main(int argc, char **argv)
{
    static struct app app; /* large: two output buffers */
    uint64_t count = 8;

    if (argc < 3)
        usage("QEMU_BINARY and GUEST_ELF are required");
    const char *qemu = argv[1], *guest = argv[2];
    uint64_t quantum_us = 10, latency_us = 25, until_ms = 50;
    for (int i = 3; i < argc; i += 2) {
        const char *opt = argv[i];
        if (i + 1 >= argc)
            usage("an option needs a value");
        const char *v = argv[i + 1];
        int bad = !strcmp(opt, "--count")        ? parse_uint(v, 1, MAX_FRAMES, &count)
                  : !strcmp(opt, "--quantum-us") ? parse_uint(v, 1, 1000000, &quantum_us)
                  : !strcmp(opt, "--latency-us") ? parse_uint(v, 1, 1000000, &latency_us)
                  : !strcmp(opt, "--until-ms")   ? parse_uint(v, 1, 100000, &until_ms)
                                                 : (usage("unknown option"), -1);
        if (bad)
            usage("bad value: --count is 1..99, --quantum-us and --latency-us 1..1000000, "
                  "--until-ms 1..100000");
    }
    if (latency_us < quantum_us)
        usage("--latency-us must be at least --quantum-us: the latency is the lookahead that "
              "lets both guests run a quantum at once");
    app.quantum_ns = quantum_us * 1000;
    app.latency_ns = latency_us * 1000;
    app.until_ns = until_ms * 1000000;
    app.count = (unsigned)count;

    if (uv_loop_init(&app.loop) < 0 || qsync_group_new(&app.group) < 0)
        return 1;
    qsync_group_set_data(app.group, &app);

    char append_a[64], append_b[64];
    snprintf(append_a, sizeof append_a, "send count=%u gap=20000", app.count);
    snprintf(append_b, sizeof append_b, "recv count=%u", app.count);
    printf("qsync-two-nodes: A -> link (latency %" PRIu64 " ns) -> B; quantum %" PRIu64
           " ns; %u frames\n",
           app.latency_ns, app.quantum_ns, app.count);
    printf("     time_ns  event\n");

    int rc = start_node(&app, &app.a, "A", qemu, guest, append_a);
    if (rc == 0)
        rc = start_node(&app, &app.b, "B", qemu, guest, append_b);
    if (rc == 0)
        step(&app); /* the first grants wait in the channels for QEMU */
    else
        finish(&app, 1);
    uv_run(&app.loop, UV_RUN_DEFAULT); /* returns once both contexts are closed */
    qsync_group_free(app.group);
    uv_loop_close(&app.loop);

    int ok = !app.failed && app.n_frames == app.count && app.n_exact == app.count &&
             app.n_received == app.count;
    printf("qsync-two-nodes: %u frames sent, %u delivered at exactly send + %" PRIu64
           " ns, %u received; B saw each %" PRIu64 "..%" PRIu64
           " ns after delivery; %" PRIu64 " steps\n",
           app.n_frames, app.n_exact, app.latency_ns, app.n_received, app.min_seen_ns,
           app.max_seen_ns, app.steps);
    printf("qsync-two-nodes: %s\n",
           ok ? "PASS: every frame reached B at its send time plus the link latency" : "FAIL");
    return ok ? 0 : 1;
}
