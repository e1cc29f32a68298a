/*
 * Groups: several contexts advanced to one common deadline, with a single
 * callback when every one of them is there (a barrier). The members keep
 * their own reached callbacks; the group's fires after the last of them.
 *
 * A group drives its members through the public API; the one internal
 * call it makes is the advance check (qsync__check_advance), so that a
 * refusal advances none of them. The context tells the group of a
 * member's outcome through qsync__group_take() and qsync__group_done().
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct member {
    qsync_ctx *ctx;
    int pending; /* its part of the group's advance is still out */
};

struct qsync_group {
    struct member *members;
    size_t n, cap;
    size_t pending; /* members whose group advance is still out */
    int status;     /* the first failure among them, or 0         */
    uint64_t deadline;
    qsync_group_cb cb;
    void *data;
    int in_callback;
    int free_requested;
};

int qsync_group_new(qsync_group **out)
{
    if (!out)
        return QSYNC_EARG;
    *out = calloc(1, sizeof **out);
    return *out ? 0 : -ENOMEM;
}

void qsync_group_set_data(qsync_group *g, void *data)
{
    g->data = data;
}

void *qsync_group_get_data(const qsync_group *g)
{
    return g->data;
}

static struct member *find(qsync_group *g, const qsync_ctx *ctx)
{
    for (size_t i = 0; i < g->n; i++)
        if (g->members[i].ctx == ctx)
            return &g->members[i];
    return NULL;
}

int qsync_group_add(qsync_group *g, qsync_ctx *ctx)
{
    if (ctx->group == g)
        return 0;
    if (ctx->group)
        return qsync__set_error(ctx, QSYNC_ESTATE, "qsync_group_add: already in another group");
    if (ctx->closing)
        return qsync__set_error(ctx, QSYNC_ESTATE, "qsync_group_add: the context is closing");
    if (g->pending)
        return qsync__set_error(ctx, QSYNC_EBUSY, "qsync_group_add: the group's advance is pending");
    if (g->n > 0 && qsync_get_loop(g->members[0].ctx) != qsync_get_loop(ctx))
        return qsync__set_error(ctx, QSYNC_EARG,
                                "qsync_group_add: the group's contexts must share one loop");
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 8;
        struct member *m = realloc(g->members, cap * sizeof *m);
        if (!m)
            return qsync__nomem(ctx, "qsync_group_add");
        g->members = m;
        g->cap = cap;
    }
    g->members[g->n].ctx = ctx;
    g->members[g->n].pending = 0;
    g->n++;
    ctx->group = g;
    return 0;
}

qsync_group *qsync__group_take(qsync_ctx *ctx)
{
    qsync_group *g = ctx->group;
    struct member *m = g ? find(g, ctx) : NULL;
    if (!m || !m->pending)
        return NULL;
    m->pending = 0;
    return g;
}

void qsync__group_leave(qsync_ctx *ctx)
{
    qsync_group *g = ctx->group;
    if (!g)
        return;
    struct member *m = find(g, ctx);
    int pending = m && m->pending;
    if (m)
        *m = g->members[--g->n];
    ctx->group = NULL;
    if (pending)
        qsync__group_done(g, QSYNC_ECANCELED);
}

size_t qsync_group_size(const qsync_group *g)
{
    return g->n;
}

int qsync_group_remove(qsync_group *g, qsync_ctx *ctx)
{
    if (ctx->group != g)
        return qsync__set_error(ctx, QSYNC_EARG, "qsync_group_remove: not a member of this group");
    if (find(g, ctx)->pending)
        return qsync__set_error(ctx, QSYNC_EBUSY,
                                "qsync_group_remove: its part of the group's advance is pending; "
                                "remove it from its reached callback or after the group's");
    qsync__group_leave(ctx);
    return 0;
}

uint64_t qsync_group_now_ns(const qsync_group *g)
{
    uint64_t now = 0;
    for (size_t i = 0; i < g->n; i++)
        if (qsync_now_ns(g->members[i].ctx) > now)
            now = qsync_now_ns(g->members[i].ctx);
    return now;
}

uint64_t qsync_group_next_event_ns(const qsync_group *g)
{
    uint64_t next = QSYNC_DEADLINE_MAX;
    for (size_t i = 0; i < g->n; i++) {
        const qsync_ctx *ctx = g->members[i].ctx;
        /* A member whose context has failed (its QEMU ended, say) does
         * nothing more; one with nothing known (an advance pending, no
         * stop yet) may act now. */
        if (qsync__ctx_done(ctx))
            continue;
        uint64_t t = qsync_next_event_ns(ctx);
        if (t == 0)
            t = qsync_now_ns(ctx);
        if (t < next)
            next = t;
    }
    return next;
}

uint64_t qsync_skip_to_ns(uint64_t now, uint64_t w, uint64_t due)
{
    if (w == 0 || now >= QSYNC_DEADLINE_MAX || w > QSYNC_DEADLINE_MAX - now)
        return QSYNC_DEADLINE_MAX;
    if (due <= now)
        return now + w;
    if (due >= QSYNC_DEADLINE_MAX - w)
        return QSYNC_DEADLINE_MAX;
    return now + (due + w - now) / w * w;
}

static void group_free_now(qsync_group *g)
{
    for (size_t i = 0; i < g->n; i++)
        g->members[i].ctx->group = NULL;
    free(g->members);
    free(g);
}

void qsync__group_done(qsync_group *g, int status)
{
    if (status && !g->status)
        g->status = status;
    if (--g->pending > 0)
        return;
    if (g->cb) {
        g->in_callback++;
        g->cb(g, g->status, g->deadline);
        g->in_callback--;
    }
    if (g->free_requested && !g->in_callback && !g->pending)
        group_free_now(g);
}

int qsync_group_advance_to_ns(qsync_group *g, uint64_t deadline_ns, qsync_group_cb cb)
{
    if (g->n == 0 || g->free_requested)
        return QSYNC_ESTATE;
    if (g->pending)
        return QSYNC_EBUSY;
    /* Check every member first, so that a refusal advances none of them. */
    for (size_t i = 0; i < g->n; i++) {
        char what[64];
        snprintf(what, sizeof what, "group advance: member %zu", i);
        int rc = qsync__check_advance(g->members[i].ctx, deadline_ns, what);
        if (rc)
            return rc;
    }
    g->status = 0;
    g->cb = cb;
    g->deadline = deadline_ns;
    g->pending = g->n + 1; /* +1: held until every member has been asked */
    for (size_t i = 0; i < g->n; i++) {
        int rc = qsync_advance_to_ns(g->members[i].ctx, deadline_ns);
        if (rc) {
            /* Refused after the checks (the channel broke just now): that
             * member is done, with its error. */
            if (!g->status)
                g->status = rc;
            g->pending--;
        } else {
            g->members[i].pending = 1;
        }
    }
    /* Callbacks never run from inside this call: members answer on the
     * loop. If every member failed at once, the call's result says so. */
    if (g->pending == 1) {
        g->pending = 0;
        return g->status;
    }
    g->pending--;
    return 0;
}

int qsync_group_advance_ns(qsync_group *g, uint64_t ns, qsync_group_cb cb)
{
    if (g->n == 0)
        return QSYNC_ESTATE;
    uint64_t now = qsync_group_now_ns(g);
    if (ns > UINT64_MAX - now)
        return QSYNC_ERANGE;
    return qsync_group_advance_to_ns(g, now + ns, cb);
}

void qsync_group_free(qsync_group *g)
{
    if (!g)
        return;
    if (g->in_callback || g->pending) {
        /* Freed when the callback returns, or when the pending advance
         * completes (its callback still fires, with its status). */
        g->free_requested = 1;
        return;
    }
    group_free_now(g);
}
