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

int qsync__input_deliver(void)
{
    if (queued == 0)
        return 0;
    long took = qsync__qemu_feed_serial(queue, queued);
    if (took < 0)
        return -1;
    memmove(queue, queue + took, queued - (size_t)took);
    queued -= (size_t)took;
    return 0;
}

size_t qsync__input_pending(void)
{
    return queued;
}
