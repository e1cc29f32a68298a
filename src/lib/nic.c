/*
 * NICs (docs/network.md): the guest's Ethernet interfaces, whose frames
 * come to the caller and go to the guest through the plugin.
 *
 * The library adds the NIC devices to QEMU's command line and tells the
 * plugin how many NICs to serve (nics=); the plugin gives each one a
 * backend that QEMU's device sends into and receives from. Frames the
 * caller sends wait here, in the order (time, call), until the grant whose
 * quantum they fall in: each grant is preceded by the frames due before its
 * deadline, so the plugin always has them before the guest's clock gets
 * there. What the guest sends comes back as FRAME messages before the
 * REPORT of the quantum it was sent in, and NIC_STATUS messages carry the
 * plugin's counters.
 */
#include "internal.h"

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A frame the caller sent, waiting for its grant. */
struct out_frame {
    uint64_t at_ns;
    uint64_t seq; /* call order, for frames due at the same time */
    unsigned nic;
    uint32_t len;
    uint8_t data[];
};

struct nic {
    qsync_nic_info info;
    char model[8];
    char netdev[16];
    unsigned rx_queue;
    qsync_nic_stats stats;
    uint64_t to_plugin; /* frames sent to the plugin                   */
    int warned;         /* QSYNC_ENODRIVER was told                    */
};

struct qsync__nics {
    unsigned n;
    struct nic nic[QSYNC_NIC_MAX];
    qsync_nic_info info[QSYNC_NIC_MAX]; /* what qsync_info points to      */
    char qemu[256];                       /* argv[0], for messages         */
    struct out_frame **queue;             /* not yet sent to the plugin    */
    size_t queued, cap;
    uint64_t next_seq;
};

/* NICs made without a MAC of their own, in this process: the last two
 * bytes of the next default address. */
static atomic_uint default_macs;

void qsync_nic_config_init(qsync_nic_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->size = sizeof *cfg;
}

static struct qsync__nics *nics_of(qsync_ctx *ctx)
{
    if (!ctx->nics) {
        ctx->nics = calloc(1, sizeof *ctx->nics);
    }
    return ctx->nics;
}

int qsync_nic_add(qsync_ctx *ctx, const qsync_nic_config *cfg)
{
    if (cfg == NULL || cfg->size < offsetof(qsync_nic_config, rx_queue_frames) +
                                       sizeof cfg->rx_queue_frames)
        return qsync__set_error(ctx, QSYNC_EARG,
                                "qsync_nic_add: no configuration (fill one with "
                                "qsync_nic_config_init())");
    if (ctx->closing)
        return qsync__set_error(ctx, QSYNC_ESTATE, "qsync_nic_add: the context is closing");
    if (ctx->started || ctx->child.alive)
        return qsync__set_error(ctx, QSYNC_ESTATE,
                                "qsync_nic_add: QEMU is started; add NICs before qsync_start()");
    if (ctx->opts.mode != QSYNC_MODE_PLUGIN)
        return qsync__set_error(ctx, QSYNC_ENOTSUP,
                                "qsync_nic_add: NICs need plugin mode (the %s protocol carries "
                                "no frames)",
                                ctx->mode->name);
    const char *model = cfg->model && cfg->model[0] ? cfg->model : "e1000";
    if (strcmp(model, "e1000") != 0 && strcmp(model, "virtio") != 0)
        return qsync__set_error(ctx, QSYNC_EARG,
                                "qsync_nic_add: unknown NIC model '%s' (known: e1000, virtio)",
                                model);
    if (cfg->has_mac && (cfg->mac[0] & 1))
        return qsync__set_error(ctx, QSYNC_EARG,
                                "qsync_nic_add: MAC %02x:%02x:%02x:%02x:%02x:%02x is a "
                                "multicast address",
                                cfg->mac[0], cfg->mac[1], cfg->mac[2], cfg->mac[3], cfg->mac[4],
                                cfg->mac[5]);
    if (cfg->rx_queue_frames > QSYNC_NIC_RX_QUEUE_MAX)
        return qsync__set_error(ctx, QSYNC_EARG,
                                "qsync_nic_add: rx_queue_frames %u is more than "
                                "QSYNC_NIC_RX_QUEUE_MAX (%u)",
                                cfg->rx_queue_frames, QSYNC_NIC_RX_QUEUE_MAX);
    struct qsync__nics *ns = nics_of(ctx);
    if (!ns)
        return qsync__nomem(ctx, "qsync_nic_add");
    if (ns->n >= QSYNC_NIC_MAX)
        return qsync__set_error(ctx, QSYNC_ERANGE,
                                "qsync_nic_add: a context has at most QSYNC_NIC_MAX (%u) NICs",
                                QSYNC_NIC_MAX);
    unsigned i = ns->n++;
    struct nic *n = &ns->nic[i];
    memset(n, 0, sizeof *n);
    snprintf(n->model, sizeof n->model, "%s", model);
    snprintf(n->netdev, sizeof n->netdev, "qsync-nic%u", i);
    n->rx_queue = cfg->rx_queue_frames ? cfg->rx_queue_frames : QSYNC_NIC_RX_QUEUE_DEFAULT;
    if (cfg->has_mac) {
        memcpy(n->info.mac, cfg->mac, 6);
    } else {
        unsigned k = atomic_fetch_add(&default_macs, 1) + 1;
        const uint8_t mac[6] = {0x52, 0x54, 0x00, 0x51, (uint8_t)(k >> 8), (uint8_t)k};
        memcpy(n->info.mac, mac, 6);
    }
    n->info.model = n->model;
    n->info.netdev = n->netdev;
    /* Both models hand frames on in guest-synchronous code: e1000 in the
     * vCPU's register write, virtio-net in its transmit timer (docs). */
    n->info.tx_stamp = QSYNC_STAMP_EXACT;
    n->info.rx_time = QSYNC_STAMP_EXACT;
    ns->info[i] = n->info;
    return (int)i;
}

unsigned qsync__nic_count(const qsync_ctx *ctx)
{
    return ctx->nics ? ctx->nics->n : 0;
}

const qsync_nic_info *qsync__nic_infos(const qsync_ctx *ctx)
{
    return ctx->nics && ctx->nics->n ? ctx->nics->info : NULL;
}

int qsync__nic_prepare(qsync_ctx *ctx, const char *qemu, struct qsync__launch *l,
                       char *plugin_opts, size_t cap)
{
    struct qsync__nics *ns = ctx->nics;
    if (!ns || ns->n == 0)
        return 0;
    snprintf(ns->qemu, sizeof ns->qemu, "%s", qemu);
    size_t used = strlen(plugin_opts);
    int w = snprintf(plugin_opts + used, cap - used, ",nics=");
    for (unsigned i = 0; i < ns->n && w > 0 && (size_t)w < cap - used; i++) {
        used += (size_t)w;
        w = snprintf(plugin_opts + used, cap - used, "%s%u", i ? ":" : "", ns->nic[i].rx_queue);
    }
    if (w < 0 || (size_t)w >= cap - used)
        return qsync__set_error(ctx, QSYNC_EARG, "qsync_start: the plugin's options are too long");
    /* -nic none: QEMU adds no NIC of its own (it would whenever argv has
     * no -nic, -net or -netdev). */
    if (qsync__launch_add(l, "-nic") || qsync__launch_add(l, "none"))
        return qsync__set_error(ctx, QSYNC_EARG, "too many arguments");
    for (unsigned i = 0; i < ns->n; i++) {
        const struct nic *n = &ns->nic[i];
        const uint8_t *m = n->info.mac;
        int virtio = strcmp(n->model, "virtio") == 0;
        if (qsync__launch_add(l, "-device") ||
            qsync__launch_add(l, "%s,netdev=%s,mac=%02x:%02x:%02x:%02x:%02x:%02x%s",
                              virtio ? "virtio-net-pci" : "e1000", n->netdev, m[0], m[1], m[2],
                              m[3], m[4], m[5], virtio ? ",ioeventfd=off,tx=timer" : ""))
            return qsync__set_error(ctx, QSYNC_EARG, "too many arguments");
    }
    return 0;
}

void qsync__nic_exit_hint(const qsync_ctx *ctx, const char *last, char *out, size_t cap)
{
    const struct qsync__nics *ns = ctx->nics;
    out[0] = '\0';
    if (!ns || ns->n == 0 || !strstr(last, "qsync-nic"))
        return;
    snprintf(out, cap,
             " (%s could not make the NIC that qsync_nic_add() asked for: NICs need a QEMU and "
             "a machine with PCI and the %s device)",
             ns->qemu, ns->nic[0].model[0] == 'v' ? "virtio-net-pci" : "e1000");
}

int qsync__nic_check_hello(qsync_ctx *ctx, const struct qsync__wire_hello *h)
{
    if (qsync__nic_count(ctx) == 0 || (h->guarantees & QSYNC__WIRE_G_FRAMES))
        return 0;
    qsync__on_failure(ctx, QSYNC_EVERSION,
                      "the plugin (protocol %u.%u) does not serve NICs; frames need protocol "
                      "1.3 or later",
                      h->major, h->minor);
    return -1;
}

/* ---- Frames to the guest ------------------------------------------------ */

int qsync_send_frame(qsync_ctx *ctx, unsigned nic, uint64_t at_ns, const void *data, size_t len)
{
    static const char what[] = "qsync_send_frame";
    if (ctx->closing)
        return qsync__set_error(ctx, QSYNC_ESTATE, "%s: the context is closing", what);
    if (ctx->fatal)
        return qsync__refuse_failed(ctx, what);
    if (!ctx->started || !ctx->have_hello)
        return qsync__set_error(ctx, QSYNC_ESTATE, "%s: QEMU is not started or not ready yet",
                                what);
    if (nic >= qsync__nic_count(ctx))
        return qsync__set_error(ctx, QSYNC_EARG, "%s: no NIC %u (the context has %u)", what, nic,
                                qsync__nic_count(ctx));
    if (data == NULL || len < QSYNC_FRAME_MIN || len > QSYNC_FRAME_MAX)
        return qsync__set_error(ctx, QSYNC_EARG,
                                "%s: a frame of %zu bytes; frames are %u to %u bytes (an "
                                "Ethernet header at least, no FCS)",
                                what, data ? len : 0, QSYNC_FRAME_MIN, QSYNC_FRAME_MAX);
    uint64_t current = ctx->pending_seq ? ctx->pending_deadline : ctx->now_ns;
    if (at_ns < current)
        return qsync__set_error(ctx, QSYNC_ERANGE,
                                "%s: time %llu ns is in the past: the guest is %s %llu ns",
                                what, (unsigned long long)at_ns,
                                ctx->pending_seq ? "running to" : "stopped at",
                                (unsigned long long)current);
    if (at_ns > QSYNC_DEADLINE_MAX)
        return qsync__set_error(ctx, QSYNC_ERANGE, "%s: time %llu ns is past QSYNC_DEADLINE_MAX",
                                what, (unsigned long long)at_ns);
    struct qsync__nics *ns = ctx->nics;
    if (ns->queued == ns->cap) {
        size_t cap = ns->cap ? ns->cap * 2 : 64;
        struct out_frame **q = realloc(ns->queue, cap * sizeof *q);
        if (!q)
            return qsync__nomem(ctx, what);
        ns->queue = q;
        ns->cap = cap;
    }
    struct out_frame *f = malloc(sizeof *f + len);
    if (!f)
        return qsync__nomem(ctx, what);
    f->at_ns = at_ns;
    f->seq = ns->next_seq++;
    f->nic = nic;
    f->len = (uint32_t)len;
    memcpy(f->data, data, len);
    ns->queue[ns->queued++] = f;
    return 0;
}

uint64_t qsync__nic_earliest(const qsync_ctx *ctx)
{
    const struct qsync__nics *ns = ctx->nics;
    uint64_t t = UINT64_MAX;
    for (size_t i = 0; ns && i < ns->queued; i++)
        if (ns->queue[i]->at_ns < t)
            t = ns->queue[i]->at_ns;
    return t;
}

static int frame_order(const void *a, const void *b)
{
    const struct out_frame *x = *(struct out_frame *const *)a;
    const struct out_frame *y = *(struct out_frame *const *)b;
    if (x->at_ns != y->at_ns)
        return x->at_ns < y->at_ns ? -1 : 1;
    return x->seq < y->seq ? -1 : (x->seq > y->seq);
}

/* Sends one frame, waiting while the channel is full: the plugin is at a
 * stop, reading until the grant, so room comes; a plugin that stops
 * reading for this long is taken as hung. */
#define SEND_WAIT_MS 10000

static int send_waiting(qsync_ctx *ctx, const uint8_t *buf, size_t len)
{
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        int rc = qsync__transport_send(ctx, buf, len);
        if (rc != QSYNC_EFULL)
            return rc;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long long ms = (now.tv_sec - start.tv_sec) * 1000LL + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (ms > SEND_WAIT_MS)
            return qsync__set_error(ctx, QSYNC_ETIMEDOUT,
                                    "QEMU took no frame for %d ms: the plugin does not read",
                                    SEND_WAIT_MS);
        if (ctx->transport.shm) {
            const struct timespec pause_ts = {0, 20000};
            nanosleep(&pause_ts, NULL);
        } else {
            struct pollfd p = {.fd = ctx->transport.grant_fd, .events = POLLOUT};
            (void)poll(&p, 1, 100);
        }
    }
}

int qsync__nic_before_grant(qsync_ctx *ctx, uint64_t deadline_ns)
{
    struct qsync__nics *ns = ctx->nics;
    if (!ns || ns->queued == 0)
        return 0;
    qsort(ns->queue, ns->queued, sizeof *ns->queue, frame_order);
    size_t due = 0;
    while (due < ns->queued && ns->queue[due]->at_ns < deadline_ns)
        due++;
    if (due == 0)
        return 0;
    uint8_t *buf = malloc(QSYNC__WIRE_MAX_FRAME);
    if (!buf)
        return qsync__nomem(ctx, "qsync_advance");
    int rc = 0;
    size_t sent = 0;
    for (; sent < due && rc == 0; sent++) {
        const struct out_frame *f = ns->queue[sent];
        long n = qsync__wire_encode_frame(f->nic, f->at_ns, f->data, f->len, buf,
                                          QSYNC__WIRE_MAX_FRAME);
        if (n < 0)
            rc = qsync__set_error(ctx, QSYNC_EPROTO, "cannot encode a frame");
        else
            rc = send_waiting(ctx, buf, (size_t)n);
        if (rc == 0)
            ns->nic[f->nic].to_plugin++;
    }
    free(buf);
    /* What was sent leaves the queue; a failure breaks the channel, so
     * what stays is never sent twice. */
    if (rc)
        sent--;
    for (size_t i = 0; i < sent; i++)
        free(ns->queue[i]);
    memmove(ns->queue, ns->queue + sent, (ns->queued - sent) * sizeof *ns->queue);
    ns->queued -= sent;
    return rc;
}

/* ---- Frames and counters from the guest --------------------------------- */

void qsync__nic_on_frame(qsync_ctx *ctx, const struct qsync__wire_frame *f)
{
    if (f->nic >= qsync__nic_count(ctx)) {
        qsync__on_failure(ctx, QSYNC_EPROTO,
                          "protocol error: a frame from NIC %u, but the context has %u NICs",
                          f->nic, qsync__nic_count(ctx));
        return;
    }
    ctx->nics->nic[f->nic].stats.tx_frames++;
    QSYNC__CALL(ctx, frame, f->nic, f->time_ns, f->data, f->len);
}

void qsync__nic_on_status(qsync_ctx *ctx, const struct qsync__wire_nic_status *s)
{
    if (s->nic >= qsync__nic_count(ctx)) {
        qsync__on_failure(ctx, QSYNC_EPROTO,
                          "protocol error: the status of NIC %u, but the context has %u NICs",
                          s->nic, qsync__nic_count(ctx));
        return;
    }
    struct nic *n = &ctx->nics->nic[s->nic];
    n->stats.rx_frames = s->rx_frames;
    n->stats.rx_dropped = s->rx_dropped;
    n->stats.rx_waiting = s->rx_waiting;
    n->stats.receiver_on = (s->flags & QSYNC__WIRE_NIC_RX_ON) != 0;
    n->stats.receiver_ever_on = (s->flags & QSYNC__WIRE_NIC_RX_EVER_ON) != 0;
    if (n->stats.rx_dropped > 0 && !n->stats.receiver_ever_on && !n->warned) {
        n->warned = 1;
        char msg[192];
        snprintf(msg, sizeof msg,
                 "NIC %u (%s): %llu frame(s) dropped; the guest never turned the NIC's receiver "
                 "on (does it have a driver for %s, and is the interface up?)",
                 s->nic, n->model, (unsigned long long)n->stats.rx_dropped, n->model);
        QSYNC__CALL(ctx, error, QSYNC_ENODRIVER, msg);
    }
}

int qsync_nic_get_stats(const qsync_ctx *ctx, unsigned nic, qsync_nic_stats *stats)
{
    if (stats == NULL || nic >= qsync__nic_count(ctx))
        return QSYNC_EARG;
    if (!ctx->started)
        return QSYNC_ESTATE;
    const struct qsync__nics *ns = ctx->nics;
    const struct nic *n = &ns->nic[nic];
    *stats = n->stats;
    uint64_t in_library = 0;
    for (size_t i = 0; i < ns->queued; i++)
        in_library += ns->queue[i]->nic == nic;
    uint64_t settled = n->stats.rx_frames + n->stats.rx_dropped + n->stats.rx_waiting;
    stats->rx_pending = in_library + (n->to_plugin > settled ? n->to_plugin - settled : 0);
    return 0;
}

void qsync__nic_free(qsync_ctx *ctx)
{
    struct qsync__nics *ns = ctx->nics;
    if (!ns)
        return;
    for (size_t i = 0; i < ns->queued; i++)
        free(ns->queue[i]);
    free(ns->queue);
    free(ns);
    ctx->nics = NULL;
}
