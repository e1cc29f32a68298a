/* See input.h. */
#include "input.h"

#include <string.h>

#include "qemu_internals.h"

/* A ring would save the memmove, but the queue is nearly always empty
 * after a delivery: a guest reads its FIFO long before the next stop. */
static uint8_t queue[QSYNC_INPUT_QUEUE_MAX];
static size_t queued;

bool qsync__input_supported(void)
{
    return qsync__qemu_can_feed_serial();
}

int qsync__input_queue(const uint8_t *data, size_t len)
{
    if (len > sizeof queue - queued)
        return -1;
    memcpy(queue + queued, data, len);
    queued += len;
    return 0;
}

bool qsync__input_has_port(void)
{
    return qsync__qemu_has_serial0();
}

static int feed(void)
{
    long took = qsync__qemu_feed_serial(queue, queued);
    if (took < 0)
        return -1;
    memmove(queue, queue + took, queued - (size_t)took);
    queued -= (size_t)took;
    return 0;
}

/* The timer that feeds at the end of the current block (see input.h). */
static struct qsync__vtimer feed_timer;
static bool feed_timer_made, feed_timer_armed;

static void feed_timer_cb(void *opaque)
{
    (void)opaque;
    feed_timer_armed = false;
    if (queued > 0)
        (void)feed(); /* serial0 was checked when the bytes came */
}

int qsync__input_deliver(bool safe_point)
{
    if (queued == 0)
        return 0;
    if (safe_point)
        return feed();
    if (!feed_timer_made) {
        qsync__vtimer_init(&feed_timer, feed_timer_cb, NULL);
        feed_timer_made = true;
    }
    if (!feed_timer_armed) {
        /* Due in the past: it runs as soon as QEMU looks at its timers,
         * which under -icount is when this block ends. */
        feed_timer_armed = true;
        qsync__vtimer_mod(&feed_timer, 0);
    }
    return 0;
}

size_t qsync__input_pending(void)
{
    return queued;
}
