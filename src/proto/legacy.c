/* See legacy.h. */
#include "legacy.h"

enum qsync_qqq_verdict qsync__qqq_judge(int pending, int requested, int answered)
{
    if (!pending)
        return QSYNC_QQQ_UNASKED;
    if (answered <= 0 || answered < requested)
        return QSYNC_QQQ_SHORT;
    return QSYNC_QQQ_OK;
}

enum qsync_fifo_event qsync__fifo_classify(int running, int signal_bytes, size_t n)
{
    if (running)
        return n > 2 ? QSYNC_FIFO_TOO_MANY : QSYNC_FIFO_DONE;
    if (signal_bytes == 1 && n == 1)
        return QSYNC_FIFO_SECOND;
    return QSYNC_FIFO_UNEXPECTED;
}
