/* See segment.h. */
#include "segment.h"

#include <stdlib.h>
#include <string.h>

#define ETH_HEADER 14u

int qsync__segment_init(struct qsync__segment *s, unsigned n_ports)
{
    memset(s, 0, sizeof *s);
    s->n_ports = n_ports;
    s->seq = calloc(n_ports ? n_ports : 1, sizeof *s->seq);
    s->fdb = calloc(QSYNC__SEGMENT_FDB_MAX, sizeof *s->fdb);
    if (!s->seq || !s->fdb) {
        qsync__segment_free(s);
        return -1;
    }
    return 0;
}

void qsync__segment_free(struct qsync__segment *s)
{
    qsync__segment_clear(s);
    free(s->frames);
    free(s->seq);
    free(s->fdb);
    memset(s, 0, sizeof *s);
}

int qsync__segment_push(struct qsync__segment *s, unsigned port, uint64_t t, const void *data,
                        size_t len)
{
    if (s->n_frames == s->cap_frames) {
        size_t cap = s->cap_frames ? s->cap_frames * 2 : 64;
        struct qsync__seg_frame *f = realloc(s->frames, cap * sizeof *f);
        if (!f)
            return -1;
        s->frames = f;
        s->cap_frames = cap;
    }
    unsigned char *copy = malloc(len ? len : 1);
    if (!copy)
        return -1;
    memcpy(copy, data, len);
    struct qsync__seg_frame *f = &s->frames[s->n_frames++];
    f->t = t;
    f->port = port;
    f->seq = s->seq[port]++;
    f->len = len;
    f->data = copy;
    return 0;
}

static int canonical(const void *a, const void *b)
{
    const struct qsync__seg_frame *x = a, *y = b;
    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    if (x->port != y->port)
        return x->port < y->port ? -1 : 1;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

void qsync__segment_sort(struct qsync__segment *s)
{
    if (s->n_frames > 1)
        qsort(s->frames, s->n_frames, sizeof *s->frames, canonical);
}

static struct qsync__seg_fdb_entry *fdb_find(struct qsync__segment *s, const uint8_t *mac)
{
    for (size_t i = 0; i < s->n_fdb; i++)
        if (memcmp(s->fdb[i].mac, mac, 6) == 0)
            return &s->fdb[i];
    return NULL;
}

static void learn(struct qsync__segment *s, const uint8_t *mac, unsigned port)
{
    if (mac[0] & 1)
        return; /* a group address is never a source */
    struct qsync__seg_fdb_entry *e = fdb_find(s, mac);
    if (!e) {
        if (s->n_fdb == QSYNC__SEGMENT_FDB_MAX)
            return;
        e = &s->fdb[s->n_fdb++];
        memcpy(e->mac, mac, 6);
    }
    e->port = port; /* a station that moved is found where it is now */
}

unsigned qsync__segment_route(struct qsync__segment *s, const struct qsync__seg_frame *f,
                              unsigned *out)
{
    if (f->len < ETH_HEADER)
        return 0;
    const uint8_t *dst = f->data, *src = f->data + 6;
    learn(s, src, f->port);
    if (!(dst[0] & 1)) {
        const struct qsync__seg_fdb_entry *e = fdb_find(s, dst);
        if (e) {
            if (e->port == f->port)
                return 0; /* on the sender's own port: filtered */
            out[0] = e->port;
            return 1;
        }
    }
    unsigned n = 0;
    for (unsigned p = 0; p < s->n_ports; p++)
        if (p != f->port)
            out[n++] = p;
    return n;
}

void qsync__segment_clear(struct qsync__segment *s)
{
    for (size_t i = 0; i < s->n_frames; i++)
        free(s->frames[i].data);
    s->n_frames = 0;
}
