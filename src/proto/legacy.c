/* See legacy.h. */
#include "legacy.h"

enum qsync__qqq_verdict qsync__qqq_judge(int pending, int requested, int answered)
{
    if (!pending)
        return QSYNC__QQQ_UNASKED;
    if (answered <= 0 || answered < requested)
        return QSYNC__QQQ_SHORT;
    return QSYNC__QQQ_OK;
}

enum qsync__fifo_event qsync__fifo_classify(int running, int signal_bytes, size_t n)
{
    if (running)
        return n > 2 ? QSYNC__FIFO_TOO_MANY : QSYNC__FIFO_DONE;
    if (signal_bytes == 1 && n == 1)
        return QSYNC__FIFO_SECOND;
    return QSYNC__FIFO_UNEXPECTED;
}
