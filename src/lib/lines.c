/*
 * Guest output by lines (stdout_mode QSYNC_OUTPUT_LINES): the bytes QEMU
 * prints are held until the stop that ends their quantum, and each line
 * completed by then is handed to callbacks.output_line with that stop's
 * virtual time. A line is complete at its newline; one without a newline
 * waits for the stop after its newline comes, or for QEMU's end.
 *
 * Bounds: a line longer than QSYNC_LINE_MAX bytes is delivered in pieces
 * of that size. If more than LINES_HELD bytes arrive within one quantum,
 * what is held is delivered at once with the deadline the guest is
 * running to (the time of the stop that will end the quantum, for the
 * exact engines), so that no byte is lost and the pipe is always read.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define LINES_HELD (64u * 1024u)

int qsync__lines_init(qsync_ctx *ctx)
{
    free(ctx->lines.buf);
    ctx->lines.len = 0;
    ctx->lines.buf = malloc(LINES_HELD + 1);
    if (!ctx->lines.buf)
        return qsync__nomem(ctx, "qsync_start");
    return 0;
}

void qsync__lines_free(qsync_ctx *ctx)
{
    free(ctx->lines.buf);
    ctx->lines.buf = NULL;
    ctx->lines.len = 0;
}

/* Hands over the complete lines held (all of it when all is set), each
 * stamped with v. */
static void deliver(qsync_ctx *ctx, uint64_t v, int all)
{
    size_t done = 0;
    /* len is 0 unless stdout_mode is LINES, and the buffer lives as long
     * as the context, which is never freed under a callback. */
    while (done < ctx->lines.len) {
        char *line = ctx->lines.buf + done;
        size_t left = ctx->lines.len - done;
        size_t max = left < QSYNC_LINE_MAX ? left : QSYNC_LINE_MAX;
        char *nl = memchr(line, '\n', max);
        size_t n, used;
        if (nl) {
            n = (size_t)(nl - line);
            used = n + 1;
        } else if (max == QSYNC_LINE_MAX || all) {
            n = used = max; /* a piece of a long line, or the last one */
        } else {
            break;
        }
        /* The callback gets a NUL-terminated line without its newline;
         * the byte after it is put back once the callback returns. */
        char saved = line[n];
        line[n] = '\0';
        QSYNC__CALL(ctx, output_line, line, n, v);
        line[n] = saved;
        done += used;
    }
    if (done) {
        memmove(ctx->lines.buf, ctx->lines.buf + done, ctx->lines.len - done);
        ctx->lines.len -= done;
    }
}

void qsync__lines_add(qsync_ctx *ctx, const char *data, size_t len)
{
    while (len > 0) {
        if (ctx->lines.len == LINES_HELD)
            deliver(ctx, ctx->pending_seq ? ctx->pending_deadline : ctx->last_virtual_ns, 1);
        size_t room = LINES_HELD - ctx->lines.len;
        size_t n = len < room ? len : room;
        memcpy(ctx->lines.buf + ctx->lines.len, data, n);
        ctx->lines.len += n;
        data += n;
        len -= n;
    }
}

void qsync__lines_at_stop(qsync_ctx *ctx, uint64_t virtual_ns)
{
    deliver(ctx, virtual_ns, 0);
}

void qsync__lines_at_end(qsync_ctx *ctx)
{
    deliver(ctx, ctx->last_virtual_ns, 1);
}
