/*
 * The live progress line the command-line tools show on stderr:
 *
 *   qsync-step: virtual 0.012000 s  quanta 1200  speed 0.085x real time
 *
 * refreshed five times a second from a timer on the tool's loop. The
 * tool clears it before it prints anything of the guest's, and tells it
 * when the guest's last line is unfinished, so that the two never share
 * a line.
 */
#ifndef QSYNC_CLI_PROGRESS_H
#define QSYNC_CLI_PROGRESS_H

#include <stdint.h>

#include <uv.h>

struct qsync__progress {
    uv_timer_t timer;
    int on;       /* the timer runs                                   */
    int shown;    /* the line is on the terminal now                  */
    int mid_line; /* the guest's output last ended without a newline:
                     the line waits until it ends with one            */
    uint64_t t0;  /* uv_hrtime() at start, for the speed              */
    const char *prog;
    /* Read at each tick: the virtual time reached, the quanta done,
     * and (when not NULL) the frames through the network. */
    const uint64_t *virtual_ns, *quanta, *frames;
};

/* Whether the line is shown: flag 1 (--progress), or flag -1 (the
 * default) with stderr a terminal and not quiet. */
int qsync__progress_wanted(int flag, int quiet);

/* Starts the timer on loop; the line is first drawn 200 ms later. frames
 * may be NULL. */
void qsync__progress_start(struct qsync__progress *p, uv_loop_t *loop, const char *prog,
                           const uint64_t *virtual_ns, const uint64_t *quanta,
                           const uint64_t *frames);

/* Erases the line if it is shown (before anything else is printed). */
void qsync__progress_clear(struct qsync__progress *p);

/* Erases the line and closes the timer; harmless when not started. */
void qsync__progress_stop(struct qsync__progress *p);

#endif
