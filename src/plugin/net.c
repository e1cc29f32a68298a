/*
 * See net.h. QEMU's net layer, as this file uses it (include/net/net.h,
 * net/net.c, net/queue.c; read in QEMU 7.2 and 10.0, and run on Debian's
 * 7.2.22 and 10.0.2):
 *
 *   NetClientState *qemu_new_net_client(NetClientInfo *info,
 *                                       NetClientState *peer,
 *                                       const char *model, const char *name);
 *   ssize_t qemu_send_packet_async(NetClientState *sender, const uint8_t *buf,
 *                                  int size, NetPacketSent *sent_cb);
 *   int     qemu_can_send_packet(NetClientState *sender);
 *   typedef void NetPacketSent(NetClientState *sender, ssize_t ret);
 *
 * NetClientInfo begins { NetClientDriver type; size_t size; NetReceive
 * *receive; ... } in every version from 1.x to 10.0 (later fields came and
 * went: receive_raw was dropped in 9.x). This file fills those three and
 * leaves every other field NULL, which QEMU takes as "not offered". type 0
 * is NET_CLIENT_DRIVER_NONE. size is what QEMU allocates for the client
 * and must cover its NetClientState (about 400 bytes in 10.0); 4 KiB does.
 *
 * A client made with no peer and the name qsync-nicN is what `-device
 * e1000,netdev=qsync-nicN` finds when QEMU creates the device, after the
 * plugins are installed; the NIC becomes its peer. Then:
 * - the NIC's transmit calls our receive() in its own thread, with the big
 *   lock held;
 * - qemu_send_packet_async() from our client delivers into the NIC at once
 *   and returns the size, or, when the NIC cannot receive (ring full,
 *   receiver off, e1000's 1 s hold after an RCTL write), queues the frame
 *   in the NIC's incoming queue and returns 0; QEMU then delivers it when
 *   the NIC flushes its queue (it does when the guest gives it room) and
 *   calls sent_cb with the size, or with 0 when it purges the queue
 *   instead. Frames with a sent_cb are never dropped by QEMU's own bound.
 */
#include "net.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "log.h"
#include "qemu_api.h"
#include "qemu_internals.h"
#include "stop_timer.h"

/* The beginning of QEMU's NetClientInfo (see above). */
struct qemu_net_client_info {
    int type;
    size_t size;
    ssize_t (*receive)(void *nc, const uint8_t *buf, size_t size);
    void *rest[64]; /* every later field: NULL */
};

typedef void (*sent_cb_fn)(void *nc, ssize_t ret);

static struct {
    void *(*new_client)(void *info, void *peer, const char *model, const char *name);
    ssize_t (*send_async)(void *nc, const uint8_t *buf, int size, sent_cb_fn cb);
    int (*can_send)(void *nc);
} q;

struct nic {
    void *nc;
    unsigned rx_limit;    /* frames that may wait in QEMU's queue        */
    unsigned in_qemu;     /* waiting there now                           */
    bool rx_on, rx_ever_on;
    uint64_t rx_frames, rx_dropped, tx_frames, tx_dropped;
    struct qsync__wire_nic_status sent; /* as last told                 */
    bool told;
};

static struct qemu_net_client_info client_info;
static struct nic nics[QSYNC__WIRE_MAX_NICS];
static unsigned n_nics;
static qsync__net_send_fn send_out;

/* Guards everything below and the counters above: the NICs' threads, the
 * delivery timer and the thread in a stop all come here. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* Frames from the controller, in time order (the controller sends them so;
 * one grant's frames all come before the next grant's, which are later). */
struct in_frame {
    uint64_t time_ns;
    unsigned nic;
    uint32_t len;
    uint8_t data[];
};
static struct in_frame **waiting;
static size_t w_head, w_tail, w_cap;

/* Captured frames, encoded, not yet sent. Flushed at each stop, and as
 * soon as it holds TX_FLUSH_BYTES (so that one send stays well inside the
 * 64 KiB shared-memory ring). */
#define TX_FLUSH_BYTES 32768u
static uint8_t *tx_buf;
static size_t tx_len;

static struct qsync__vtimer timer;
static bool timer_made;

static int nic_index(const void *nc)
{
    for (unsigned i = 0; i < n_nics; i++)
        if (nics[i].nc == nc)
            return (int)i;
    return -1;
}

static int flush_locked(bool status);

/* The NIC sent a frame: stamp it with the virtual clock, now. */
static ssize_t client_receive(void *nc, const uint8_t *buf, size_t size)
{
    int i = nic_index(nc);
    if (i < 0)
        return (ssize_t)size;
    int64_t now = qsync__qemu_vclock_ns();
    pthread_mutex_lock(&lock);
    struct nic *n = &nics[i];
    if (size == 0 || size > QSYNC__WIRE_MAX_ETHER) {
        n->tx_dropped++;
    } else {
        long w = qsync__wire_encode_frame((uint32_t)i, (uint64_t)now, buf, size, tx_buf + tx_len,
                                          TX_FLUSH_BYTES + QSYNC__WIRE_MAX_FRAME - tx_len);
        if (w > 0) {
            tx_len += (size_t)w;
            n->tx_frames++;
        } else {
            n->tx_dropped++;
        }
        if (tx_len >= TX_FLUSH_BYTES)
            (void)flush_locked(false); /* a failed send ends QEMU at the stop */
    }
    pthread_mutex_unlock(&lock);
    return (ssize_t)size;
}

/* QEMU delivered (ret > 0) or purged (0) a frame it had queued. */
static void sent_cb(void *nc, ssize_t ret)
{
    int i = nic_index(nc);
    if (i < 0)
        return;
    pthread_mutex_lock(&lock);
    struct nic *n = &nics[i];
    if (n->in_qemu > 0)
        n->in_qemu--;
    if (ret > 0) {
        n->rx_frames++;
        n->rx_ever_on = true;
    } else {
        n->rx_dropped++;
    }
    pthread_mutex_unlock(&lock);
}

static void *sym(const char *name, const char **missing)
{
    void *p = qsync__qemu_sym(name);
    if (p == NULL && *missing == NULL)
        *missing = name;
    return p;
}

int qsync__net_install(const struct qsync__options *opt, qsync__net_send_fn send)
{
    if (opt->n_nics == 0)
        return 0;
    const char *missing = NULL;
    *(void **)&q.new_client = sym("qemu_new_net_client", &missing);
    *(void **)&q.send_async = sym("qemu_send_packet_async", &missing);
    *(void **)&q.can_send = sym("qemu_can_send_packet", &missing);
    if (missing == NULL && !qsync__qemu_internals_found())
        missing = "timer_init_full";
    if (missing != NULL) {
        char exe[512];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        exe[n > 0 ? n : 0] = '\0';
        qsync__log("NICs need QEMU's %s, which this QEMU (%s) does not export", missing,
                   n > 0 ? exe : "unknown path");
        return -1;
    }
    tx_buf = malloc(TX_FLUSH_BYTES + QSYNC__WIRE_MAX_FRAME);
    if (tx_buf == NULL) {
        qsync__log("NICs: out of memory");
        return -1;
    }
    client_info.type = 0;
    client_info.size = 4096;
    client_info.receive = client_receive;
    send_out = send;
    for (unsigned i = 0; i < opt->n_nics; i++) {
        char name[32];
        snprintf(name, sizeof name, "qsync-nic%u", i);
        nics[i].rx_limit = opt->nic_rx_queue[i];
        nics[i].nc = q.new_client(&client_info, NULL, "qsync", name);
        if (nics[i].nc == NULL) {
            qsync__log("NICs: QEMU made no net client %s", name);
            return -1;
        }
        n_nics = i + 1;
    }
    return 0;
}

bool qsync__net_active(void)
{
    return n_nics > 0;
}

int qsync__net_frame_in(const struct qsync__wire_frame *f, const char **why)
{
    if (f->nic >= n_nics) {
        *why = n_nics ? "a frame for a NIC this QEMU does not have"
                      : "a frame, but the plugin was given no NICs (nics=)";
        return -1;
    }
    struct in_frame *e = malloc(sizeof *e + f->len);
    if (e == NULL) {
        *why = "out of memory for a frame";
        return -1;
    }
    e->time_ns = f->time_ns;
    e->nic = f->nic;
    e->len = f->len;
    memcpy(e->data, f->data, f->len);
    pthread_mutex_lock(&lock);
    if (w_tail == w_cap) {
        if (w_head > 0) {
            memmove(waiting, waiting + w_head, (w_tail - w_head) * sizeof *waiting);
            w_tail -= w_head;
            w_head = 0;
        }
        if (w_tail == w_cap) {
            size_t cap = w_cap ? w_cap * 2 : 64;
            struct in_frame **nw = realloc(waiting, cap * sizeof *nw);
            if (nw == NULL) {
                pthread_mutex_unlock(&lock);
                free(e);
                *why = "out of memory for a frame";
                return -1;
            }
            waiting = nw;
            w_cap = cap;
        }
    }
    /* In time order; equal times keep their order of arrival. */
    size_t at = w_tail;
    while (at > w_head && waiting[at - 1]->time_ns > e->time_ns) {
        waiting[at] = waiting[at - 1];
        at--;
    }
    waiting[at] = e;
    w_tail++;
    pthread_mutex_unlock(&lock);
    return 0;
}

/* Hands one frame to its NIC. Big lock held, at a safe point. */
static void hand_over(struct in_frame *e)
{
    struct nic *n = &nics[e->nic];
    pthread_mutex_lock(&lock);
    bool room = n->in_qemu < n->rx_limit;
    if (!room)
        n->rx_dropped++;
    pthread_mutex_unlock(&lock);
    if (!room)
        return;
    /* Outside our lock: QEMU may call sent_cb or receive from in here. */
    bool could = q.can_send(n->nc) != 0;
    ssize_t r = q.send_async(n->nc, e->data, (int)e->len, sent_cb);
    pthread_mutex_lock(&lock);
    n->rx_on = could;
    if (could)
        n->rx_ever_on = true;
    if (r > 0)
        n->rx_frames++;
    else if (r == 0)
        n->in_qemu++;
    else
        n->rx_dropped++;
    pthread_mutex_unlock(&lock);
}

static void arm_next(void);

/* Hands over every frame due by now. Safe point, big lock held. */
static void deliver_due(void)
{
    int64_t now = qsync__qemu_vclock_ns();
    for (;;) {
        pthread_mutex_lock(&lock);
        struct in_frame *e = NULL;
        if (w_head < w_tail && (int64_t)waiting[w_head]->time_ns <= now)
            e = waiting[w_head++];
        pthread_mutex_unlock(&lock);
        if (e == NULL)
            break;
        hand_over(e);
        free(e);
    }
    arm_next();
}

static void timer_cb(void *opaque)
{
    (void)opaque;
    deliver_due();
}

/* Sets the timer for the earliest waiting frame, or stops it. */
static void arm_next(void)
{
    pthread_mutex_lock(&lock);
    bool any = w_head < w_tail;
    int64_t at = any ? (int64_t)waiting[w_head]->time_ns : 0;
    pthread_mutex_unlock(&lock);
    if (!timer_made) {
        qsync__vtimer_init(&timer, timer_cb, NULL);
        timer_made = true;
    }
    if (any)
        qsync__vtimer_mod(&timer, at);
    else
        qsync__vtimer_del(&timer);
}

void qsync__net_resume(void)
{
    if (n_nics == 0)
        return;
    /* In the stop timer's callback (between two blocks, big lock held)
     * the frames due now go at once; elsewhere (inside a block) the
     * timer, due now or earlier, runs as soon as the block ends: QEMU may
     * not run device code in the middle of one. */
    if (qsync__stop_timer_in_callback())
        deliver_due();
    else
        arm_next();
}

/* Whether the NIC can receive now: only asked where the big lock is held
 * (a safe point); elsewhere the last answer stands. */
static void refresh_rx_on(void)
{
    if (!qsync__stop_timer_in_callback())
        return;
    for (unsigned i = 0; i < n_nics; i++) {
        bool on = q.can_send(nics[i].nc) != 0;
        pthread_mutex_lock(&lock);
        nics[i].rx_on = on;
        if (on)
            nics[i].rx_ever_on = true;
        pthread_mutex_unlock(&lock);
    }
}

static int flush_locked(bool status)
{
    int rc = 0;
    if (tx_len > 0) {
        rc = send_out(tx_buf, tx_len);
        tx_len = 0;
    }
    for (unsigned i = 0; status && rc == 0 && i < n_nics; i++) {
        struct nic *n = &nics[i];
        struct qsync__wire_nic_status s = {
            .nic = i,
            .flags = (n->rx_on ? QSYNC__WIRE_NIC_RX_ON : 0u) |
                     (n->rx_ever_on ? QSYNC__WIRE_NIC_RX_EVER_ON : 0u),
            .rx_frames = n->rx_frames,
            .rx_dropped = n->rx_dropped,
            .rx_waiting = n->in_qemu,
            .tx_frames = n->tx_frames,
            .tx_dropped = n->tx_dropped,
        };
        if (n->told && memcmp(&s, &n->sent, sizeof s) == 0)
            continue;
        struct qsync__wire_msg *m = malloc(sizeof *m);
        if (m == NULL)
            return -ENOMEM;
        memset(m, 0, sizeof *m);
        m->type = QSYNC__MSG_NIC_STATUS;
        m->u.nic_status = s;
        uint8_t buf[QSYNC__WIRE_HEADER_SIZE + 64];
        long w = qsync__wire_encode(m, buf, sizeof buf);
        free(m);
        rc = w > 0 ? send_out(buf, (size_t)w) : -EINVAL;
        n->sent = s;
        n->told = true;
    }
    return rc;
}

int qsync__net_flush(bool status)
{
    if (n_nics == 0)
        return 0;
    if (status)
        refresh_rx_on();
    pthread_mutex_lock(&lock);
    int rc = flush_locked(status);
    pthread_mutex_unlock(&lock);
    return rc;
}
