/*
 * qsync-step: steps a QEMU guest in lockstep from a terminal or a script.
 *
 * It is also the library's first user: it drives one context through the
 * asynchronous API on its own loop, granting one quantum at a time, from
 * the reached callback. The loop polls the shared-memory channel for each
 * answer (qsync_options.async_poll_ns, --poll), which the library's own
 * benchmark shows to be the fast path: a stop then costs no system call
 * and no wake-up of a sleeping thread, on either side. The loop still
 * gets a turn every few answers, for the signals and the progress line.
 */

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <qsync/qsync.h>

#include "args.h"
#include "duration.h"
#include "progress.h"
#include "stats.h"

#define EXIT_USAGE 2

/* --poll's default: how long the loop polls for each answer. Longer than
 * a quantum of up to about 1 ms takes on QEMU's side, so that a run of
 * such quanta is polled through; the library backs off by itself while
 * answers come later (longer quanta), and polls not at all with --pin. */
#define DEFAULT_POLL_NS 1000000u

struct step {
    uv_loop_t *loop;
    qsync_ctx *ctx;
    uv_signal_t sigint, sigterm;

    uint64_t quantum_ns;
    uint64_t until_ns; /* 0: until the guest exits */
    unsigned shift;
    const char *plugin;
    const char *plugin_args;
    const char *engine_opt;
    qsync_mode mode;
    int qqq_native;
    char fifo_keys[3][64]; /* --fifo-keys; empty: the library's default */
    int fifo_done_bytes;   /* --fifo-done-bytes; 0: the plugin's default */
    int pin_cpu;
    qsync_channel channel;
    uint64_t poll_ns; /* --poll */
    int poll_given;
    const char *json_path;
    const char *csv_path;
    int stats;
    int quiet;
    int progress; /* 1: on, 0: off, -1: on when stderr is a terminal */
    int timestamps;
    const char *quantum_arg;       /* --quantum as given, for messages */
    const char *const *qemu_argv;  /* after '--'                       */
    char engine_arg[64];           /* "engine=NAME" for --engine       */

    /* Per-quantum records. */
    FILE *csv;
    struct qsync__series periods; /* virtual ns between stops */
    struct qsync__series walls;   /* wall ns each quantum took */
    uint64_t prev_virtual_ns;
    uint64_t grant_t;
    /* QEMU's start-up, from qsync_start() to the first stop: the first
     * quantum cannot be told apart from it, and is left out of walls. */
    uint64_t startup_ns;
    /* The guest's output passes through us while the progress line is on,
     * so that the two never share a line (progress.h). */
    struct qsync__progress prog;

    /* Results. */
    int have_info;
    char engine[16];
    int exact, never_ahead_idle, vclock;
    unsigned vcpus;
    uint64_t quanta;
    uint64_t virtual_ns;
    uint64_t instructions;
    int64_t max_overshoot;
    int exited_by_itself;
    int64_t exit_status;
    int term_signal;
    int interrupted;
    int setup_error;
    int run_error;
    uint64_t t0;
    double wall_s;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qsync-step [OPTIONS] -- QEMU_BINARY [QEMU_ARGS...]\n"
            "Steps QEMU in lockstep: grants one quantum of virtual time at a time.\n"
            "\n"
            "  --quantum DUR   grant size: 1us, 250us, 1ms, ... (default 1ms)\n"
            "  --until DUR     stop granting at this virtual time, then end QEMU\n"
            "                  (default: until the guest exits)\n"
            "  --shift N       icount shift, 0..10: one instruction = 2^N ns (default 0)\n"
            "  --plugin PATH   plugin module (default: the one built or installed with\n"
            "                  this tool; in fifo mode, e.g. the SIL Kit Time Sync\n"
            "                  Plugin itself)\n"
            "  --engine NAME   the plugin's engine: auto, timer, insn or block (default auto)\n"
            "  --mode MODE     plugin (default), qqq (the adevs -qqq protocol) or fifo\n"
            "                  (the SIL Kit Time Sync Plugin FIFO protocol; --quantum\n"
            "                  is then fixed at start)\n"
            "  --qqq-native    in qqq mode, pass -qqq to a QEMU that has it, instead of\n"
            "                  speaking the protocol through our plugin\n"
            "  --plugin-args A extra key=value,... options for the plugin\n"
            "  --fifo-keys H,G,Q  fifo mode: the plugin's option names for HostToGuest,\n"
            "                  GuestToHost and the quantum (default: the Time Sync\n"
            "                  Plugin README's HostToGuestPipe,GuestToHostPipe,\n"
            "                  TimeinMicroseconds)\n"
            "  --fifo-done-bytes N  fifo mode, our plugin: bytes per quantum, 1 or 2\n"
            "  --pin CPU       run qsync-step and QEMU on this one core (cheaper stops)\n"
            "  --channel CH    plugin mode's channel: auto (default), shm (shared\n"
            "                  memory) or pipe\n"
            "  --poll DUR      on shared memory, poll for QEMU's answer for up to DUR\n"
            "                  after each grant, keeping a core busy (default 1ms; 0:\n"
            "                  sleep until QEMU wakes us, slower at small quanta)\n"
            "  --json FILE     write a summary as JSON to FILE ('-' for stdout)\n"
            "  --csv FILE      write one record per quantum to FILE ('-' for stdout)\n"
            "  --stats         print the period table, QEMU's start-up time and the wall\n"
            "                  time per quantum at the end\n"
            "  --progress      show the live progress line even when stderr is not a\n"
            "                  terminal (it is shown on a terminal by default)\n"
            "  --quiet         print nothing of our own but errors (no progress, no stats)\n"
            "  --timestamps    start each line of the guest's output with the virtual time\n"
            "                  of the stop that ended the quantum in which the line was\n"
            "                  completed: [    6.100000000] (seconds)\n"
            "  --help, --version\n"
            "\n"
            "qsync-step adds -icount and -plugin itself. The guest's output passes\n"
            "through to stdout (held until its quantum ends, with --timestamps).\n"
            "Exit status: QEMU's own when the guest ends by itself, 0 when --until\n"
            "ends the run, 2 for usage or set-up errors.\n");
}

static void finish(struct step *s)
{
    qsync__progress_stop(&s->prog);
    if (s->ctx) {
        qsync_close(s->ctx, NULL);
        s->ctx = NULL;
    }
    if (!uv_is_closing((uv_handle_t *)&s->sigint)) {
        uv_close((uv_handle_t *)&s->sigint, NULL);
        uv_close((uv_handle_t *)&s->sigterm, NULL);
    }
}

/* With the progress line on: the guest's output as it comes, on a line of
 * its own (the progress line is cleared first and drawn again at its next
 * tick). */
static void on_output(qsync_ctx *ctx, const char *data, size_t len)
{
    struct step *s = qsync_get_data(ctx);
    if (len == 0)
        return;
    qsync__progress_clear(&s->prog);
    fwrite(data, 1, len, stdout);
    fflush(stdout);
    s->prog.mid_line = data[len - 1] != '\n';
}

/* Whether the live progress line is shown: --progress, or stderr is a
 * terminal (unless --quiet). */
static int progress_wanted(const struct step *s)
{
    return qsync__progress_wanted(s->progress, s->quiet);
}

/* --timestamps: the library hands over each line the guest completed in
 * a quantum at that quantum's stop, with the stop's virtual time; print it
 * after "[seconds.nanoseconds] ". */
static void on_output_line(qsync_ctx *ctx, const char *line, size_t len, uint64_t v)
{
    struct step *s = qsync_get_data(ctx);
    qsync__progress_clear(&s->prog); /* the live line would end up inside ours */
    printf("[%5" PRIu64 ".%09" PRIu64 "] ", v / 1000000000u, v % 1000000000u);
    fwrite(line, 1, len, stdout);
    putchar('\n');
    fflush(stdout);
}

static void grant_next(struct step *s)
{
    uint64_t now = qsync_now_ns(s->ctx);
    uint64_t q = s->quantum_ns;
    if (s->until_ns && s->until_ns - now < q)
        q = s->until_ns - now;
    s->grant_t = uv_hrtime();
    int rc = qsync_advance_ns(s->ctx, q);
    if (rc) {
        fprintf(stderr, "qsync-step: advance failed: %s\n", qsync_last_error(s->ctx));
        s->run_error = 1;
        finish(s);
    }
}

static void on_ready(qsync_ctx *ctx, const qsync_info *info)
{
    struct step *s = qsync_get_data(ctx);
    s->have_info = 1;
    snprintf(s->engine, sizeof s->engine, "%s", info->engine);
    s->exact = info->exact;
    s->never_ahead_idle = info->never_ahead_idle;
    s->vclock = info->vclock;
    s->vcpus = info->n_vcpus;
    s->shift = info->icount_shift; /* qqq mode: the -icount in use */
}

static void on_reached(qsync_ctx *ctx, int status, const qsync_stop *stop)
{
    struct step *s = qsync_get_data(ctx);
    if (status) {
        /* QEMU ending by itself is reported by on_exited; other failures here. */
        if (status != QSYNC_EEXITED && status != QSYNC_ECANCELED) {
            fprintf(stderr, "qsync-step: %s\n", qsync_last_error(ctx));
            s->run_error = 1;
            finish(s);
        }
        return;
    }
    s->quanta++;
    uint64_t now = uv_hrtime();
    uint64_t wall = now - s->grant_t;
    if (s->quanta == 1)
        s->startup_ns = now - s->t0;
    if (qsync__series_push(&s->periods, stop->virtual_ns - s->prev_virtual_ns) ||
        (s->quanta > 1 && qsync__series_push(&s->walls, wall))) {
        fprintf(stderr, "qsync-step: out of memory for the statistics\n");
        s->run_error = 1;
        finish(s);
        return;
    }
    s->prev_virtual_ns = stop->virtual_ns;
    /* The library hands over a quantum's output before its stop. */
    if (s->csv)
        fprintf(s->csv, "%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%d,%" PRIu64 "\n",
                stop->seq, stop->deadline_ns, stop->virtual_ns, stop->instructions,
                (stop->flags & QSYNC_STOP_IDLE) ? 1 : 0, wall);
    s->virtual_ns = stop->virtual_ns;
    s->instructions = stop->instructions;
    if (stop->overshoot_insns > s->max_overshoot)
        s->max_overshoot = stop->overshoot_insns;
    if (s->until_ns && stop->deadline_ns >= s->until_ns) {
        finish(s);
        return;
    }
    grant_next(s);
}

/* What to do about the usual reasons QEMU refuses to start, read from
 * its own words. NULL when there is nothing to add. */
static const char *advice(const char *tail)
{
    static const struct {
        const char *seen, *hint;
    } table[] = {
        {"invalid option", "this QEMU may lack -plugin: install qemu-system-x86 (10.0) from "
                           "bookworm-backports, or pass --plugin to a QEMU built with plugins"},
        {"requires API version", "this QEMU's plugin API is too old for that engine: "
                                 "use --engine auto, or QEMU 10.0 from bookworm-backports"},
        {"undefined symbol: qemu_plugin_install", "--plugin names a library that is not a "
                                                  "QEMU plugin: give libqsync-plugin.so"},
        {"needs -icount", "qsync-step adds -icount itself in plugin mode; in qqq and fifo "
                          "modes give -icount shift=0,sleep=off yourself"},
        {"could not open kernel file", "check the -kernel path"},
        {"No such file or directory", "check the paths in the QEMU command"},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strstr(tail, table[i].seen))
            return table[i].hint;
    return NULL;
}

static void on_exited(qsync_ctx *ctx, const qsync_exit *ex)
{
    struct step *s = qsync_get_data(ctx);
    if (ex->by_close)
        return;
    s->exit_status = ex->exit_status;
    s->term_signal = ex->term_signal;
    if (ex->instructions >= s->instructions) {
        s->instructions = ex->instructions;
        s->virtual_ns = ex->virtual_ns;
    }
    if (!s->have_info) {
        /* QEMU never got as far as loading our plugin: a set-up error. */
        /* The FIFO protocol has no handshake: say what it has. */
        fprintf(stderr, "qsync-step: QEMU ended before %s: %s\n",
                s->mode == QSYNC_MODE_FIFO ? "its plugin opened the FIFOs"
                                           : "the plugin's handshake",
                qsync_last_error(ctx));
        const char *hint = advice(ex->stderr_tail);
        if (hint)
            fprintf(stderr, "qsync-step: %s\n", hint);
        s->setup_error = 1;
    } else {
        s->exited_by_itself = 1;
        /* A guest's own exit code is QEMU's status, and is passed on; but
         * QEMU failing (a missing kernel, a crash) deserves its reason. */
        if (ex->term_signal || (ex->exit_status != 0 && s->quanta == 0)) {
            fprintf(stderr, "qsync-step: %s\n", qsync_last_error(ctx));
            const char *hint = advice(ex->stderr_tail);
            if (hint)
                fprintf(stderr, "qsync-step: %s\n", hint);
        }
    }
    finish(s);
}

static void on_error(qsync_ctx *ctx, int code, const char *msg)
{
    struct step *s = qsync_get_data(ctx);
    fprintf(stderr, "qsync-step: %s: %s\n", qsync_err_name(code), msg);
    if (s->have_info)
        s->run_error = 1;
    else
        s->setup_error = 1;
    finish(s);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct step *s = h->data;
    fprintf(stderr, "qsync-step: %s, ending QEMU\n", strsignal(signum));
    s->interrupted = signum;
    finish(s);
}

/*
 * The library's messages about a bad option name the qsync_options field;
 * the user gave one of our flags. Returns the flag that sets the field a
 * message starts with, or NULL.
 */
static const char *flag_of(const char *msg)
{
    static const struct {
        const char *field, *flag;
    } table[] = {
        {"quantum_hint_ns", "--quantum"}, {"fifo_quantum_us", "--quantum"},
        {"icount_shift", "--shift"},      {"pin_cpu", "--pin"},
        {"plugin_path", "--plugin"},      {"plugin_args", "--plugin-args or --engine"},
        {"channel", "--channel"},         {"mode", "--mode"},
        {"async_poll_ns", "--poll"},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        size_t n = strlen(table[i].field);
        if (strncmp(msg, table[i].field, n) == 0 && (msg[n] == ':' || msg[n] == ' '))
            return table[i].flag;
    }
    return NULL;
}

/* Prints a library message about our set-up, led by the flag it is about. */
static void setup_message(const char *msg)
{
    const char *flag = flag_of(msg);
    if (flag)
        fprintf(stderr, "qsync-step: %s: %s\n", flag, msg);
    else
        fprintf(stderr, "qsync-step: %s\n", msg);
}

static void json_u64_or_null(FILE *f, const char *key, int present, int64_t v, const char *sep)
{
    if (present)
        fprintf(f, "  \"%s\": %" PRId64 "%s\n", key, v, sep);
    else
        fprintf(f, "  \"%s\": null%s\n", key, sep);
}

static int write_json(const struct step *s)
{
    /* "e": close-on-exec, like every descriptor of ours (QEMU is gone by
     * now, but nothing we start should ever hold our files). */
    FILE *f = strcmp(s->json_path, "-") == 0 ? stdout : fopen(s->json_path, "we");
    if (!f) {
        fprintf(stderr, "qsync-step: --json '%s': %s\n", s->json_path, strerror(errno));
        return -1;
    }
    fprintf(f, "{\n");
    fprintf(f, "  \"quanta\": %" PRIu64 ",\n", s->quanta);
    fprintf(f, "  \"virtual_ns\": %" PRIu64 ",\n", s->virtual_ns);
    fprintf(f, "  \"instructions\": %" PRIu64 ",\n", s->instructions);
    fprintf(f, "  \"wall_s\": %.6f,\n", s->wall_s);
    if (s->quanta)
        fprintf(f, "  \"startup_s\": %.6f,\n", (double)s->startup_ns / 1e9);
    else
        fprintf(f, "  \"startup_s\": null,\n");
    json_u64_or_null(f, "exit_status", s->exited_by_itself && !s->term_signal, s->exit_status, ",");
    json_u64_or_null(f, "term_signal", s->exited_by_itself && s->term_signal, s->term_signal, ",");
    fprintf(f, "  \"max_overshoot_insns\": %" PRId64 ",\n", s->max_overshoot);
    fprintf(f, "  \"quantum_ns\": %" PRIu64 ",\n", s->quantum_ns);
    json_u64_or_null(f, "until_ns", s->until_ns != 0, (int64_t)s->until_ns, ",");
    fprintf(f, "  \"icount_shift\": %u,\n", s->shift);
    fprintf(f, "  \"vcpus\": %u,\n", s->vcpus);
    fprintf(f, "  \"mode\": \"%s\",\n",
            s->mode == QSYNC_MODE_QQQ ? "qqq" : s->mode == QSYNC_MODE_FIFO ? "fifo" : "plugin");
    fprintf(f, "  \"engine\": \"%s\",\n", s->have_info ? s->engine : "");
    fprintf(f, "  \"guarantees\": {\"exact\": %s, \"never_ahead_idle\": %s, \"vclock\": %s}\n",
            s->exact ? "true" : "false", s->never_ahead_idle ? "true" : "false",
            s->vclock ? "true" : "false");
    fprintf(f, "}\n");
    int bad = ferror(f);
    if (f != stdout)
        bad |= fclose(f) != 0;
    else
        bad |= fflush(f) != 0;
    if (bad) {
        fprintf(stderr, "qsync-step: --json '%s': write failed: %s\n", s->json_path,
                strerror(errno));
        return -1;
    }
    return 0;
}

/* ---- parse: the command line ------------------------------------------ */

/* A duration flag: positive, in the units qsync__parse_duration takes. */
static int parse_positive_duration(const char *flag, const char *arg, uint64_t *out)
{
    return qsync__cli_positive_duration("qsync-step", flag, arg, out);
}

static int parse_shift(struct step *s, const char *arg)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(arg, &end, 10);
    if (errno || end == arg || *end || v > 10) {
        fprintf(stderr, "qsync-step: --shift '%s': expected an integer 0..10\n", arg);
        return EXIT_USAGE;
    }
    s->shift = (unsigned)v;
    return 0;
}

static int parse_engine(struct step *s, const char *arg)
{
    if (strcmp(arg, "auto") && strcmp(arg, "timer") && strcmp(arg, "insn") &&
        strcmp(arg, "block")) {
        fprintf(stderr, "qsync-step: --engine '%s': expected auto, timer, insn or block\n", arg);
        return EXIT_USAGE;
    }
    s->engine_opt = arg;
    return 0;
}

static int parse_mode(struct step *s, const char *arg)
{
    if (strcmp(arg, "plugin") == 0)
        s->mode = QSYNC_MODE_PLUGIN;
    else if (strcmp(arg, "qqq") == 0)
        s->mode = QSYNC_MODE_QQQ;
    else if (strcmp(arg, "fifo") == 0)
        s->mode = QSYNC_MODE_FIFO;
    else {
        fprintf(stderr, "qsync-step: --mode '%s': expected plugin, qqq or fifo\n", arg);
        return EXIT_USAGE;
    }
    return 0;
}

/* Three names, comma-separated; the library checks each. */
static int parse_fifo_keys(struct step *s, const char *arg)
{
    const char *p = arg;
    int k = 0;
    for (; k < 3; k++) {
        size_t n = strcspn(p, ",");
        if (n == 0 || n >= sizeof s->fifo_keys[k])
            break;
        memcpy(s->fifo_keys[k], p, n);
        s->fifo_keys[k][n] = '\0';
        p += n;
        if (k < 2 && *p++ != ',')
            break;
    }
    if (k != 3 || *p != '\0') {
        fprintf(stderr, "qsync-step: --fifo-keys '%s': give three option names, "
                        "HostToGuest's,GuestToHost's,the quantum's (e.g. "
                        "HostToGuestPipe,GuestToHostPipe,TimeInMicroSeconds)\n",
                arg);
        return EXIT_USAGE;
    }
    return 0;
}

static int parse_done_bytes(struct step *s, const char *arg)
{
    if (strcmp(arg, "1") != 0 && strcmp(arg, "2") != 0) {
        fprintf(stderr, "qsync-step: --fifo-done-bytes '%s': 1 or 2\n", arg);
        return EXIT_USAGE;
    }
    s->fifo_done_bytes = arg[0] - '0';
    return 0;
}

static int parse_pin(struct step *s, const char *arg)
{
    char *end;
    errno = 0;
    long v = strtol(arg, &end, 10);
    if (errno || end == arg || *end || v < 0 || v >= CPU_SETSIZE) {
        fprintf(stderr, "qsync-step: --pin '%s': expected a CPU number\n", arg);
        return EXIT_USAGE;
    }
    s->pin_cpu = (int)v;
    return 0;
}

static int parse_channel(struct step *s, const char *arg)
{
    if (strcmp(arg, "auto") == 0) {
        s->channel = QSYNC_CHANNEL_AUTO;
    } else if (strcmp(arg, "shm") == 0) {
        s->channel = QSYNC_CHANNEL_SHM;
    } else if (strcmp(arg, "pipe") == 0) {
        s->channel = QSYNC_CHANNEL_PIPE;
    } else {
        fprintf(stderr, "qsync-step: --channel '%s': expected auto, shm or pipe\n", arg);
        return EXIT_USAGE;
    }
    return 0;
}

/* --poll: a duration, 0 included, within the library's limit. */
static int parse_poll(struct step *s, const char *arg)
{
    char err[256] = "";
    s->poll_given = 1;
    if (strcmp(arg, "0") == 0) {
        s->poll_ns = 0;
        return 0;
    }
    if (qsync__parse_duration(arg, &s->poll_ns, err, sizeof err)) {
        fprintf(stderr, "qsync-step: --poll '%s': %s\n", arg, err);
        return EXIT_USAGE;
    }
    if (s->poll_ns > 1000000000u) {
        fprintf(stderr, "qsync-step: --poll '%s': at most 1s\n", arg);
        return EXIT_USAGE;
    }
    return 0;
}

/* One flag. Returns 0 to go on, or the exit code (-1 for a clean exit 0,
 * after --help or --version). */
static int parse_flag(struct step *s, int c, const char *arg)
{
    switch (c) {
    case 'q':
        s->quantum_arg = arg;
        return parse_positive_duration("quantum", arg, &s->quantum_ns);
    case 'u': return parse_positive_duration("until", arg, &s->until_ns);
    case 's': return parse_shift(s, arg);
    case 'e': return parse_engine(s, arg);
    case 'm': return parse_mode(s, arg);
    case 'K': return parse_fifo_keys(s, arg);
    case 'B': return parse_done_bytes(s, arg);
    case 'C': return parse_pin(s, arg);
    case 'H': return parse_channel(s, arg);
    case 'O': return parse_poll(s, arg);
    case 'p': s->plugin = arg; return 0;
    case 'j': s->json_path = arg; return 0;
    case 'N': s->qqq_native = 1; return 0;
    case 'a': s->plugin_args = arg; return 0;
    case 'c': s->csv_path = arg; return 0;
    case 'S': s->stats = 1; return 0;
    case 'Q': s->quiet = 1; return 0;
    case 'P': s->progress = 1; return 0;
    case 'T': s->timestamps = 1; return 0;
    case 'h':
        usage(stdout);
        return -1;
    case 'V':
        printf("qsync-step %s\n", qsync_version_string());
        return -1;
    default:
        usage(stderr);
        return EXIT_USAGE;
    }
}

/* The flags, then the QEMU command; returns 0 to go on, or the exit code
 * (-1 for a clean exit 0). */
static int parse_args(struct step *s, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"quantum", required_argument, NULL, 'q'}, {"until", required_argument, NULL, 'u'},
        {"shift", required_argument, NULL, 's'},   {"plugin", required_argument, NULL, 'p'},
        {"json", required_argument, NULL, 'j'},    {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},       {"engine", required_argument, NULL, 'e'},
        {"mode", required_argument, NULL, 'm'},    {"qqq-native", no_argument, NULL, 'N'},
        {"plugin-args", required_argument, NULL, 'a'}, {"csv", required_argument, NULL, 'c'},
        {"stats", no_argument, NULL, 'S'},         {"quiet", no_argument, NULL, 'Q'},
        {"progress", no_argument, NULL, 'P'},      {"pin", required_argument, NULL, 'C'},
        {"timestamps", no_argument, NULL, 'T'},    {"channel", required_argument, NULL, 'H'},
        {"fifo-keys", required_argument, NULL, 'K'},
        {"fifo-done-bytes", required_argument, NULL, 'B'},
        {"poll", required_argument, NULL, 'O'},
        {NULL, 0, NULL, 0}};
    int c;
    /* '+' stops at the first non-option, so QEMU's own options are left alone. */
    while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
        int rc = parse_flag(s, c, optarg);
        if (rc)
            return rc;
    }
    if (optind < argc && strcmp(argv[optind], "--") == 0)
        optind++;
    if (optind >= argc) {
        fprintf(stderr, "qsync-step: no QEMU command given after '--'\n");
        usage(stderr);
        return EXIT_USAGE;
    }
    s->qemu_argv = (const char *const *)(argv + optind);
    return 0;
}

/* ---- validate: flags that do not go together -------------------------- */

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = qsync__cli_usage_verror("qsync-step", fmt, ap);
    va_end(ap);
    return rc;
}

/* Which flags apply to which mode. */
static int validate_modes(const struct step *s)
{
    if (s->mode != QSYNC_MODE_PLUGIN && s->engine_opt)
        return usage_error("--engine applies to --mode plugin only; use --plugin-args");
    if (s->mode != QSYNC_MODE_PLUGIN && s->channel == QSYNC_CHANNEL_SHM)
        return usage_error("--channel shm applies to --mode plugin only (the qqq and "
                           "fifo protocols run on their own pipes or FIFOs)");
    if (s->poll_given && (s->mode != QSYNC_MODE_PLUGIN || s->channel == QSYNC_CHANNEL_PIPE))
        return usage_error("--poll applies to the shared-memory channel only (--mode plugin, "
                           "--channel auto or shm)");
    if (s->poll_given && s->poll_ns && s->pin_cpu >= 0)
        return usage_error("--poll: nothing polls with --pin (QEMU and qsync-step share one "
                           "core, where polling takes the core QEMU needs)");
    if ((s->fifo_keys[0][0] || s->fifo_done_bytes) && s->mode != QSYNC_MODE_FIFO)
        return usage_error("--%s needs --mode fifo",
                           s->fifo_keys[0][0] ? "fifo-keys" : "fifo-done-bytes");
    if (s->qqq_native && s->mode != QSYNC_MODE_QQQ)
        return usage_error("--qqq-native needs --mode qqq");
    if (s->mode == QSYNC_MODE_QQQ && s->quantum_ns % 1000)
        return usage_error("--quantum: qqq mode grants whole microseconds");
    if (s->mode == QSYNC_MODE_FIFO && s->quantum_ns % 1000)
        return usage_error("--quantum: fifo mode's quantum is whole microseconds");
    return 0;
}

/* The plugin takes a quantum hint of at most 10^15 ns, and a FIFO quantum
 * of at most 10^9 us; the adevs -qqq protocol grants a native int of
 * microseconds. Refused here, naming the flag, rather than by the library
 * or the plugin, naming an option the user never gave. */
static int validate_quantum(const struct step *s)
{
    if (s->quantum_ns > QSYNC_QUANTUM_HINT_MAX_NS)
        return usage_error("--quantum '%s': at most 1000000s (10^15 ns, the plugin's limit)",
                           s->quantum_arg);
    if (s->mode == QSYNC_MODE_FIFO && s->quantum_ns / 1000 > 1000000000u)
        return usage_error("--quantum '%s': fifo mode's quantum is at most 1000s (the "
                           "plugin's TimeInMicroSeconds takes up to 10^9)",
                           s->quantum_arg);
    if (s->mode == QSYNC_MODE_QQQ && s->quantum_ns / 1000 > INT_MAX)
        return usage_error("--quantum '%s': qqq mode grants at most %dus (2147.483647s, "
                           "a native int of microseconds)",
                           s->quantum_arg, INT_MAX);
    return 0;
}

static int validate(const struct step *s)
{
    int rc = validate_modes(s);
    if (rc == 0)
        rc = validate_quantum(s);
    if (rc)
        return rc;
    if (s->pin_cpu >= 0) {
        cpu_set_t allowed;
        if (sched_getaffinity(0, sizeof allowed, &allowed) == 0 &&
            !CPU_ISSET(s->pin_cpu, &allowed))
            return usage_error("--pin '%d': CPU %d is not one this process may run on "
                               "(it may use %d CPUs)",
                               s->pin_cpu, s->pin_cpu, CPU_COUNT(&allowed));
    }
    if (s->mode != QSYNC_MODE_PLUGIN && s->until_ns % s->quantum_ns)
        return usage_error("--until must be a multiple of --quantum in %s mode",
                           s->mode == QSYNC_MODE_QQQ ? "qqq" : "fifo");
    if (s->mode != QSYNC_MODE_PLUGIN && s->shift)
        return usage_error("--shift applies to --mode plugin only (give -icount yourself)");
    if (s->engine_opt && s->plugin_args)
        return usage_error("give the engine either with --engine or in --plugin-args");
    if (s->quiet && (s->progress == 1 || s->stats))
        return usage_error("--quiet cannot be combined with --progress or --stats");
    return 0;
}

/* ---- options: the library's options from the flags --------------------- */

static void make_options(struct step *s, qsync_options *o)
{
    qsync_options_init(o);
    o->icount_shift = s->shift;
    o->plugin_path = s->plugin;
    o->mode = s->mode;
    o->qqq_use_plugin = !s->qqq_native;
    o->fifo_quantum_us = s->quantum_ns / 1000;
    if (s->fifo_keys[0][0]) {
        o->fifo_h2g_key = s->fifo_keys[0];
        o->fifo_g2h_key = s->fifo_keys[1];
        o->fifo_quantum_key = s->fifo_keys[2];
    }
    o->fifo_done_bytes = s->fifo_done_bytes;
    o->quantum_hint_ns = s->quantum_ns;
    o->pin_cpu = s->pin_cpu;
    o->channel = s->channel;
    o->plugin_args = s->plugin_args;
    o->async_poll_ns = s->poll_ns;
    if (s->timestamps)
        o->stdout_mode = QSYNC_OUTPUT_LINES; /* otherwise QEMU writes to ours */
    else if (progress_wanted(s))
        o->stdout_mode = QSYNC_OUTPUT_CALLBACK; /* cleared around, see on_output */
    if (s->engine_opt) {
        snprintf(s->engine_arg, sizeof s->engine_arg, "engine=%s", s->engine_opt);
        o->plugin_args = s->engine_arg;
    }
}

/* ---- run: the context on the default loop ------------------------------ */

static int open_csv(struct step *s)
{
    if (!s->csv_path)
        return 0;
    /* "e": close-on-exec, so that QEMU does not inherit it. */
    s->csv = strcmp(s->csv_path, "-") == 0 ? stdout : fopen(s->csv_path, "we");
    if (!s->csv)
        return usage_error("--csv '%s': %s", s->csv_path, strerror(errno));
    fprintf(s->csv, "quantum,deadline_ns,virtual_ns,instructions,idle,wall_ns\n");
    return 0;
}

static void watch_signals_and_progress(struct step *s)
{
    uv_signal_init(s->loop, &s->sigint);
    uv_signal_init(s->loop, &s->sigterm);
    s->sigint.data = s->sigterm.data = s;
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    if (progress_wanted(s))
        qsync__progress_start(&s->prog, s->loop, "qsync-step", &s->virtual_ns, &s->quanta, NULL);
}

/* Creates the context, starts QEMU and runs the loop until all is done.
 * Returns 0, or EXIT_USAGE when QEMU could not be set up. */
static int run(struct step *s)
{
    qsync_options o;
    qsync_callbacks cb;
    char err[256];
    make_options(s, &o);
    qsync_callbacks_init(&cb);
    cb.ready = on_ready;
    cb.reached = on_reached;
    cb.exited = on_exited;
    cb.error = on_error;
    cb.output_line = on_output_line;
    cb.output = on_output;
    int rc = open_csv(s);
    if (rc)
        return rc;
    s->loop = uv_default_loop();
    if (qsync_ctx_new(s->loop, &o, &cb, &s->ctx, err, sizeof err)) {
        setup_message(err);
        return EXIT_USAGE;
    }
    qsync_set_data(s->ctx, s);
    watch_signals_and_progress(s);
    s->t0 = uv_hrtime();
    if (qsync_start(s->ctx, s->qemu_argv)) {
        setup_message(qsync_last_error(s->ctx));
        finish(s);
        uv_run(s->loop, UV_RUN_DEFAULT);
        uv_loop_close(s->loop);
        return EXIT_USAGE;
    }
    grant_next(s);
    uv_run(s->loop, UV_RUN_DEFAULT);
    s->wall_s = (double)(uv_hrtime() - s->t0) / 1e9;
    uv_loop_close(s->loop);
    return 0;
}

/* ---- report: the exit code, the statistics, the files ------------------ */

static int exit_code(const struct step *s)
{
    if (s->setup_error)
        return EXIT_USAGE;
    if (s->run_error)
        return 1;
    if (s->interrupted)
        return 128 + s->interrupted;
    if (s->exited_by_itself)
        return s->term_signal ? 128 + s->term_signal : (int)s->exit_status;
    return 0;
}

static int report(struct step *s)
{
    int code = exit_code(s);
    if (s->stats) {
        struct qsync__summary per, wall;
        if (qsync__summarize(&s->periods, &per) || qsync__summarize(&s->walls, &wall)) {
            fprintf(stderr, "qsync-step: out of memory for the statistics\n");
        } else {
            qsync__print_period_table(stderr, s->quantum_ns, &per);
            if (s->quanta)
                fprintf(stderr, "Start-up (us): %.2f, from QEMU's start to the first stop, "
                                "the first quantum included\n",
                        (double)s->startup_ns / 1000.0);
            qsync__print_wall_line(stderr, &wall);
        }
    }
    if (s->csv) {
        int bad = ferror(s->csv);
        bad |= (s->csv == stdout ? fflush(s->csv) : fclose(s->csv)) != 0;
        if (bad) {
            fprintf(stderr, "qsync-step: --csv '%s': write failed: %s\n", s->csv_path,
                    strerror(errno));
            if (code == 0)
                code = 1;
        }
    }
    qsync__series_free(&s->periods);
    qsync__series_free(&s->walls);
    if (s->json_path && write_json(s) && code == 0)
        code = 1;
    return code;
}

int main(int argc, char **argv)
{
    struct step s;
    memset(&s, 0, sizeof s);
    s.quantum_ns = 1000000;
    s.quantum_arg = "1ms";
    s.progress = -1;
    s.pin_cpu = -1;
    s.poll_ns = DEFAULT_POLL_NS;
    int rc = parse_args(&s, argc, argv);
    if (rc == 0)
        rc = validate(&s);
    if (rc == 0)
        rc = run(&s);
    if (rc)
        return rc < 0 ? 0 : rc;
    return report(&s);
}
