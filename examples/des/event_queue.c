/* See event_queue.h. */
#include "event_queue.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int before(const struct des_event *a, const struct des_event *b)
{
    if (a->t_ns != b->t_ns)
        return a->t_ns < b->t_ns;
    if (a->rank != b->rank)
        return a->rank < b->rank;
    return a->seq < b->seq;
}

static void swap(struct des_event *a, struct des_event *b)
{
    struct des_event t = *a;
    *a = *b;
    *b = t;
}

void des_init(struct des *sim)
{
    *sim = (struct des){0};
}

void des_free(struct des *sim)
{
    free(sim->heap);
    *sim = (struct des){0};
}

int des_schedule(struct des *sim, uint64_t t_ns, unsigned rank, des_handler fn, void *obj,
                 const uint64_t *arg)
{
    if (t_ns < sim->now_ns || !fn)
        return -EINVAL;
    if (sim->len == sim->cap) {
        size_t cap = sim->cap ? sim->cap * 2 : 64;
        struct des_event *h = realloc(sim->heap, cap * sizeof *h);
        if (!h)
            return -ENOMEM;
        sim->heap = h;
        sim->cap = cap;
    }
    size_t i = sim->len++;
    sim->heap[i] = (struct des_event){.t_ns = t_ns,
                                      .rank = rank,
                                      .seq = sim->next_seq++,
                                      .fn = fn,
                                      .obj = obj};
    if (arg)
        memcpy(sim->heap[i].arg, arg, sizeof sim->heap[i].arg);
    /* Sift up: the new event climbs while it is earlier than its parent. */
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(&sim->heap[i], &sim->heap[parent]))
            break;
        swap(&sim->heap[i], &sim->heap[parent]);
        i = parent;
    }
    return 0;
}

uint64_t des_next_time(const struct des *sim)
{
    return sim->len ? sim->heap[0].t_ns : UINT64_MAX;
}

int des_pop(struct des *sim, struct des_event *ev)
{
    if (sim->len == 0)
        return -ENOENT;
    *ev = sim->heap[0];
    sim->heap[0] = sim->heap[--sim->len];
    /* Sift down: the moved event sinks below any earlier child. */
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, min = i;
        if (l < sim->len && before(&sim->heap[l], &sim->heap[min]))
            min = l;
        if (r < sim->len && before(&sim->heap[r], &sim->heap[min]))
            min = r;
        if (min == i)
            break;
        swap(&sim->heap[i], &sim->heap[min]);
        i = min;
    }
    sim->now_ns = ev->t_ns;
    sim->popped++;
    return 0;
}

int des_step(struct des *sim)
{
    struct des_event ev;
    int rc = des_pop(sim, &ev);
    if (rc == 0)
        ev.fn(sim, &ev);
    return rc;
}
