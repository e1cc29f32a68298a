/* See progress.h. */
#include "progress.h"

#include <stdio.h>
#include <unistd.h>

int qsync__progress_wanted(int flag, int quiet)
{
    return flag == 1 || (flag == -1 && !quiet && isatty(STDERR_FILENO));
}

void qsync__progress_clear(struct qsync__progress *p)
{
    if (p->shown) {
        fputs("\r\033[K", stderr);
        p->shown = 0;
    }
}

static void tick(uv_timer_t *t)
{
    struct qsync__progress *p = t->data;
    if (p->mid_line)
        return; /* drawn over the guest's unfinished line, it would erase it */
    double wall = (double)(uv_hrtime() - p->t0) / 1e9;
    double virt = (double)*p->virtual_ns / 1e9;
    fprintf(stderr, "\r\033[K%s: virtual %.6f s  quanta %llu  speed %.3fx real time", p->prog,
            virt, (unsigned long long)*p->quanta, wall > 0 ? virt / wall : 0.0);
    if (p->frames)
        fprintf(stderr, "  frames %llu", (unsigned long long)*p->frames);
    p->shown = 1;
}

void qsync__progress_start(struct qsync__progress *p, uv_loop_t *loop, const char *prog,
                           const uint64_t *virtual_ns, const uint64_t *quanta,
                           const uint64_t *frames)
{
    p->prog = prog;
    p->virtual_ns = virtual_ns;
    p->quanta = quanta;
    p->frames = frames;
    p->t0 = uv_hrtime();
    p->shown = p->mid_line = 0;
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    uv_timer_start(&p->timer, tick, 200, 200);
    p->on = 1;
}

void qsync__progress_stop(struct qsync__progress *p)
{
    if (p->on) {
        p->on = 0;
        uv_close((uv_handle_t *)&p->timer, NULL);
        qsync__progress_clear(p);
    }
}
