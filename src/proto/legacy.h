/*
 * The decisions of the two legacy protocols' decoders, as pure functions
 * so that the library's modes (src/lib/mode_qqq.c, mode_fifo.c) and the
 * fuzz target (tests/fuzz/fuzz_legacy.c) run the same code.
 *
 * qqq (the adevs -qqq protocol): each answer is a native int, the microseconds QEMU
 * advanced, which must be at least the request.
 * FIFO (the Time Sync Plugin): after each quantum the plugin writes one or two bytes;
 * a two-byte signal arrives in one write.
 */
#ifndef QSYNC_PROTO_LEGACY_H
#define QSYNC_PROTO_LEGACY_H

#include <stddef.h>

enum qsync__qqq_verdict {
    QSYNC__QQQ_OK = 0,      /* the answer completes the pending request   */
    QSYNC__QQQ_UNASKED = 1, /* an answer with no request pending           */
    QSYNC__QQQ_SHORT = 2    /* less than the request (or not positive)     */
};

/* Judges one answer of `answered` us to a pending request of `requested`
 * us (pending: whether a request is out). */
enum qsync__qqq_verdict qsync__qqq_judge(int pending, int requested, int answered);

enum qsync__fifo_event {
    QSYNC__FIFO_DONE = 0,       /* a quantum ended: the guest is frozen       */
    QSYNC__FIFO_SECOND = 1,     /* the late second byte of a two-byte signal  */
    QSYNC__FIFO_TOO_MANY = 2,   /* more than two bytes for one quantum        */
    QSYNC__FIFO_UNEXPECTED = 3  /* bytes while the guest is frozen            */
};

/* What a chunk of n (> 0) bytes means while the guest is running or
 * frozen, after a last signal of signal_bytes bytes. */
enum qsync__fifo_event qsync__fifo_classify(int running, int signal_bytes, size_t n);

/*
 * Our plugin's FIFO personality takes keys that the Time Sync Plugin does not
 * (parent=, remove_fifos=, done_bytes=). The plugin's file carries this
 * string, and the library passes those keys only to a plugin whose file
 * holds it: the Time Sync Plugin itself gets its own keys alone.
 */
#define QSYNC__FIFO_KEYS_MARKER "qsync-plugin FIFO keys: parent remove_fifos done_bytes"

#endif
