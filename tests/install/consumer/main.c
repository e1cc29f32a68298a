/*
 * A program outside the tree, built against the installed library only.
 * It finds the installed plugin by itself (next to the library) and steps
 * the project's guest three quanta through the blocking helpers.
 * usage: consumer QEMU GUEST_ELF
 */
#include <stdio.h>

#include <qsync/qsync.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: consumer QEMU GUEST_ELF\n");
        return 2;
    }
    qsync_options o;
    qsync_options_init(&o);
    o.stdout_mode = QSYNC_OUTPUT_DISCARD;
    qsync_ctx *ctx;
    char err[256];
    int rc = qsync_ctx_new(NULL, &o, NULL, &ctx, err, sizeof err);
    if (rc) {
        fprintf(stderr, "consumer: %s\n", err);
        return 1;
    }
    const char *args[] = {argv[1], "-M", "pc", "-nodefaults", "-display", "none",
                          "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
                          "-kernel", argv[2], "-append", "compute 100000000", NULL};
    rc = qsync_start(ctx, args);
    for (int i = 0; rc == 0 && i < 3; i++) {
        qsync_stop stop;
        rc = qsync_advance_wait_ns(ctx, 10000, &stop);
        if (rc == 0 && (stop.virtual_ns != 10000u * (unsigned)(i + 1) || stop.overshoot_insns != 0)) {
            fprintf(stderr, "consumer: stop %d at %llu ns\n", i, (unsigned long long)stop.virtual_ns);
            rc = -1;
        }
    }
    if (rc)
        fprintf(stderr, "consumer: %s: %s\n", qsync_strerror(rc), qsync_last_error(ctx));
    qsync_close_wait(ctx);
    if (rc == 0)
        printf("consumer: libqsync %s stepped 3 exact quanta\n", qsync_version_string());
    return rc ? 1 : 0;
}
