/*
 * A personality is the protocol the plugin speaks to its controller:
 *
 *   native  our protocol (docs/protocol.md), personality_native.c
 *   qqq     the adevs -qqq protocol, personality_qqq.c
 *   fifo    the SIL Kit Time Sync Plugin FIFO protocol, personality_fifo.c
 *
 * All three run on the same engines (engine.h). An engine knows nothing
 * of protocols: it calls qsync__runtime_stop() when the guest reaches the
 * deadline it was armed with (and once before the guest's first
 * instruction), and runtime.c passes the call to the active personality.
 * The personality then talks to its controller and arms the engine with
 * the next deadline, in the stopped vCPU's thread, exactly as the native
 * stop does (see runtime.c for who may touch what; it holds for every
 * personality).
 *
 * What every personality shares, from runtime.h: qsync__end_qemu() (the
 * one way the plugin ends QEMU) and the watcher thread
 * (qsync__watch_hangup), which ends QEMU as soon as the controller's end
 * of the channel is closed, even mid-quantum.
 */
#ifndef QSYNC_PLUGIN_PERSONALITY_H
#define QSYNC_PLUGIN_PERSONALITY_H

#include "engine.h"
#include "options.h"
#include "qemu_abi.h"

struct qsync__personality {
    const char *name; /* for messages */

    /*
     * Opens the channel that opt describes (checks inherited descriptors,
     * opens FIFOs) and remembers the engine whose stops it serves.
     * Returns 0, or -1 after printing a message that names the option.
     * Install thread, after the engine is chosen, before it is installed.
     */
    int (*open)(const struct qsync__options *opt, const struct qsync__engine *engine);

    /* After the engine's install: a greeting, where the protocol has one
     * (NULL: none). Returns 0 or -1 after a message. Install thread. */
    int (*started)(const qemu_info_t *info, const struct qsync__options *opt);

    /* The stop; see qsync__runtime_stop. Never returns when the
     * controller is gone or misbehaves: QEMU ends there. */
    void (*stop)(unsigned int vcpu_index);

    /* QEMU exits by itself (its atexit callback; NULL: nothing to say). */
    void (*exit)(void);

    /* Starts the watcher on the descriptor whose hang-up means the
     * controller is gone. Returns 0 or -1 after a message. Called last in
     * install. */
    int (*watch)(void);
};

extern const struct qsync__personality qsync__personality_native;
extern const struct qsync__personality qsync__personality_qqq;
extern const struct qsync__personality qsync__personality_fifo;

/*
 * The FIFO personality's remove_fifos=1, set up before anything can end
 * QEMU (the controller check included): from then on, QEMU's end removes
 * the FIFOs and their directory. Returns 0, or -1 after a message.
 */
int qsync__fifo_cleanup_setup(const struct qsync__options *opt);

#endif
