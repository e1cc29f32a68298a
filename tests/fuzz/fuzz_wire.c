/*
 * libFuzzer target for the native protocol's decoder (src/proto/wire.c),
 * which both the library and the plugin run on bytes from the other side.
 * Every input is decoded frame by frame as a stream; every frame that
 * decodes must re-encode to the same bytes.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        struct qsync__wire_msg m;
        size_t used = 0;
        int st = qsync__wire_decode(data + off, size - off, &m, &used);
        if (st != QSYNC__WIRE_OK)
            break;
        if (used < QSYNC__WIRE_HEADER_SIZE || used > size - off)
            __builtin_trap();
        /* A frame that decodes encodes back to itself. */
        uint8_t again[QSYNC__WIRE_MAX_FRAME];
        long n = qsync__wire_encode(&m, again, sizeof again);
        if (n != (long)used || memcmp(again, data + off, used) != 0)
            __builtin_trap();
        off += used;
    }
    return 0;
}
