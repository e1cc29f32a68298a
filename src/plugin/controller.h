/*
 * The controller's life, seen from QEMU: QEMU never outlives the process
 * that drives it, and never stays stuck at a stop when it is told to end.
 *
 * The channel's hang-up (runtime.h's watcher) is the first defence. This
 * file adds what the hang-up cannot see:
 *
 * - parent=PID. The controller's process, watched directly: it must be
 *   QEMU's parent or an ancestor (a launcher that forks, like timeout,
 *   sh -c, strace -f or sudo, may stand between), and the watcher ends
 *   QEMU when it dies (a pidfd, Linux 5.3 and later). Where it is the
 *   parent, PR_SET_PDEATHSIG (SIGKILL) is armed too, as before. PID 1 is
 *   accepted without a watch: a controller that is PID 1 of its container
 *   takes the whole PID namespace, QEMU included, with it when it dies.
 *   This is the only defence before a FIFO controller has opened
 *   HostToGuest, which gives no hang-up until a writer has come.
 *
 * - SIGTERM, SIGINT, SIGHUP. QEMU's own handlers ask its main loop to shut
 *   down, which waits for every vCPU; a vCPU waiting at a stop for its
 *   controller never comes, and QEMU hung. At the first stop (QEMU has set
 *   its handlers by then) the plugin puts a handler in front of each of
 *   QEMU's that also wakes the watcher; the watcher ends QEMU if the guest
 *   is (or comes to be) waiting at a stop, and otherwise lets QEMU's own
 *   shutdown run.
 */
#ifndef QSYNC_PLUGIN_CONTROLLER_H
#define QSYNC_PLUGIN_CONTROLLER_H

#include <stdbool.h>

/*
 * parent=PID at install: opens the pidfd, arms PR_SET_PDEATHSIG when PID
 * is QEMU's parent, and checks that PID is an ancestor. A controller
 * already gone ends QEMU here (qsync__end_qemu, status 1, "the controller
 * (pid N) is gone"). A live PID that is no ancestor returns -1 after a
 * message that names what was seen (QEMU's parent and its ancestors, with
 * their names). With cleanup (QEMU's end has files to remove) the
 * parent-death signal, a SIGKILL that would leave them, is armed only
 * where no pidfd can be had. Install thread.
 */
int qsync__controller_check(int pid, bool cleanup);

/* The pidfd to watch (readable once the controller has died), or -1. */
int qsync__controller_pidfd(void);

/* The controller's pid given to qsync__controller_check, or 0. */
int qsync__controller_pid(void);

/* Makes the pipe that carries termination signals to the watcher; -1 after
 * a message. Install thread. */
int qsync__term_signals_init(void);

/* Its read end (one byte, the signal's number, per signal), or -1. */
int qsync__term_signals_fd(void);

/* Puts our handler in front of QEMU's for SIGTERM, SIGINT and SIGHUP.
 * Once, from the first stop; later calls do nothing. */
void qsync__term_signals_catch(void);

#endif
