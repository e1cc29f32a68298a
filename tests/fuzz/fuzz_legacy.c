/*
 * libFuzzer target for the two legacy protocols' decoders
 * (src/proto/legacy.c), driven the way the library's qqq and FIFO modes
 * drive them: the input is a script of events (requests, answers, chunks
 * of bytes, continues), and the decoders' verdicts must keep the
 * protocols' invariants.
 */
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "legacy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int take_int(const uint8_t **p, const uint8_t *end)
{
    int v = 0;
    if (end - *p >= (ptrdiff_t)sizeof v) {
        memcpy(&v, *p, sizeof v);
        *p += sizeof v;
    }
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *end = data + size;
    /* qqq state */
    int pending = 0, requested = 0;
    /* FIFO state: the first quantum runs at start */
    int running = 1, signal_bytes = 0, frozen_quanta = 0;

    while (p < end) {
        uint8_t op = *p++;
        switch (op & 3) {
        case 0: /* qqq: the controller asks for an advance */
            if (!pending) {
                requested = take_int(&p, end);
                if (requested <= 0)
                    requested = 1;
                pending = 1;
            }
            break;
        case 1: { /* qqq: QEMU answers */
            int answered = take_int(&p, end);
            enum qsync__qqq_verdict v = qsync__qqq_judge(pending, requested, answered);
            if (v == QSYNC__QQQ_OK && !(pending && answered > 0 && answered >= requested))
                __builtin_trap();
            if (v == QSYNC__QQQ_UNASKED && pending)
                __builtin_trap();
            if (v == QSYNC__QQQ_OK)
                pending = 0;
            else
                return 0; /* the library fails the context here */
            break;
        }
        case 2: { /* FIFO: a chunk of bytes from the plugin */
            size_t n = (size_t)((op >> 2) & 7) + 1;
            enum qsync__fifo_event e = qsync__fifo_classify(running, signal_bytes, n);
            switch (e) {
            case QSYNC__FIFO_DONE:
                if (!running || n > 2)
                    __builtin_trap();
                running = 0;
                signal_bytes = (int)n;
                frozen_quanta++;
                break;
            case QSYNC__FIFO_SECOND:
                if (running || signal_bytes != 1 || n != 1)
                    __builtin_trap();
                signal_bytes = 2;
                break;
            case QSYNC__FIFO_TOO_MANY:
                if (!running || n <= 2)
                    __builtin_trap();
                return 0;
            case QSYNC__FIFO_UNEXPECTED:
                if (running)
                    __builtin_trap();
                return 0;
            default:
                __builtin_trap();
            }
            break;
        }
        case 3: /* FIFO: the controller lets the guest run a quantum */
            if (!running)
                running = 1;
            break;
        }
    }
    (void)frozen_quanta;
    return 0;
}
