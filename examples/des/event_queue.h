/*
 * A discrete-event simulator's core: a clock and a queue of timed events,
 * kept as a binary min-heap.
 *
 * Events are ordered by time, then by rank (lower first), then by the order
 * in which they were scheduled, so two runs of the same model pop the same
 * events in the same order. The clock moves only when an event is popped:
 * it then jumps to that event's time.
 */
#ifndef DES_EVENT_QUEUE_H
#define DES_EVENT_QUEUE_H

#include <stddef.h>
#include <stdint.h>

/* Words of payload an event carries, so that most events need no allocation. */
#define DES_ARGS 3

struct des;
struct des_event;

/* Runs an event. sim->now_ns is already the event's time. */
typedef void (*des_handler)(struct des *sim, const struct des_event *ev);

struct des_event {
    uint64_t t_ns;    /* when it happens */
    unsigned rank;    /* among events at the same time: lower first */
    uint64_t seq;     /* scheduling order, the last tie-breaker */
    des_handler fn;
    void *obj;        /* the model object the event belongs to */
    uint64_t arg[DES_ARGS]; /* a small payload, copied with the event */
};

struct des {
    uint64_t now_ns;
    uint64_t popped;  /* events run so far */
    struct des_event *heap;
    size_t len, cap;
    uint64_t next_seq;
};

void des_init(struct des *sim);
void des_free(struct des *sim);

/* Schedules an event at t_ns, which must not be in the past: fn will run
 * with the event, which carries obj and a copy of arg (DES_ARGS words, or
 * zeros when arg is NULL). Returns 0, -EINVAL (t_ns before now, or no fn)
 * or -ENOMEM. */
int des_schedule(struct des *sim, uint64_t t_ns, unsigned rank, des_handler fn, void *obj,
                 const uint64_t *arg);

/* The earliest event's time, or UINT64_MAX when the queue is empty. */
uint64_t des_next_time(const struct des *sim);

/* Removes the earliest event into *ev and moves the clock to its time.
 * Returns 0, or -ENOENT when the queue is empty. The caller runs it with
 * ev->fn(sim, ev), or des_step() does both. */
int des_pop(struct des *sim, struct des_event *ev);

/* Pops the earliest event and runs it. Returns 0 or -ENOENT. */
int des_step(struct des *sim);

#endif
