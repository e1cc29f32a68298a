/*
 * The virtual-clock stop timer: a QEMU_CLOCK_VIRTUAL timer that stops the
 * guest at the latest virtual time not past a deadline D that the guest
 * can reach. The timer engine stops on it at every deadline; the insn
 * engine arms it only while the guest idles. Needs QEMU's internals
 * (qemu_internals.h).
 *
 * Why a timer is exact: under -icount QEMU ends a vCPU's instruction
 * budget at the earliest virtual timer, and its idle warp (sleep=off)
 * jumps the clock to the earliest virtual timer, never past it. The
 * callback runs in the vCPU thread with the big lock held, outside guest
 * execution, so it may read the clock and block.
 *
 * With -icount shift=N > 0, the clock moves by s = 2^N ns per
 * instruction, and QEMU rounds an instruction budget up (icount_round),
 * so a timer at D would let the guest run up to s-1 ns past D. So:
 *   - the timer is first armed at D - (s-1): QEMU's rounded-up budget
 *     then ends on the last instruction boundary at or before D, whatever
 *     the clock's phase (an idle warp to a device timer at an odd time
 *     moves it off multiples of s);
 *   - if the timer fires short of D with every vCPU halted and no other
 *     virtual timer due before D, nothing can wake the guest before D
 *     (barring external I/O), so it is re-armed at D itself and the idle
 *     warp lands exactly on D.
 * "Halted" must not depend on host timing, or the stop would land on D
 * in one run and short of it in the next. QEMU's all_cpu_threads_idle()
 * does (work queued on a vCPU by the main loop, such as a timer
 * notification, makes it false for a moment), so with shift > 0 every
 * block also stores "ran" into a per-vCPU flag and every halting
 * instruction clears it: a vCPU is halted when its flag is clear and
 * QEMU's cpu_has_work() is false. Without the plugin API for that
 * (version 3) or cpu_has_work, all_cpu_threads_idle() is the fallback.
 * The stop is therefore at D when the guest idles into it, and otherwise
 * at most s-1 ns before it; never after it, except when external I/O
 * wakes a halted guest within that last s-1 ns window (reported by the
 * engines as a deviation). With shift=0 the timer is simply at D.
 *
 * Where the timer lives: alone in a timer list of its own
 * (qsync__vtimer_init_alone), not in the main loop's. QEMU looks at every
 * list of the clock for the budget and the warp, so the timer bounds them
 * as before; but no one runs that list. When the vCPU thread reaches a
 * deadline of the clock it notifies every list (icount_handle_deadline),
 * ours first (QEMU puts a new list at the head, and ours is made after
 * the main loop's), and the stop happens in that notification. Two costs
 * of the main list go away with it:
 *   - the main loop thread is woken (its AioContext lists are notified)
 *     only after the stop, not before it: it no longer wakes during the
 *     stop, blocks on the big lock the stop holds, and takes the CPU of a
 *     controller that is polling for the report;
 *   - re-arming at the stop no longer kicks the vCPU (the main list's
 *     notification does, in the vCPU thread), which made it leave its
 *     first block at once and take the big lock back from a main loop
 *     just woken.
 * Measured on QEMU 10.0.2, 2*10^8 instructions at 100 us quanta (qsync-step,
 * shared memory, polling controller, 2 cores): a stop's callback took
 * 13.5-14 us at the median in the main list and 1.4-2.0 us alone; the time
 * between stops 295-298 us against 286-289 us; the run 741.8 against
 * 717.4 ms (free-running icount: 642.9 ms), median of 8 interleaved runs.
 * A notification from another thread (the main loop's warp), of another
 * deadline, or of our own arming is not a stop: the vCPU thread notifies
 * again at its next look at the clock's deadlines.
 */
#ifndef QSYNC_PLUGIN_STOP_TIMER_H
#define QSYNC_PLUGIN_STOP_TIMER_H

#include <stdbool.h>
#include <stdint.h>

#include "qemu_abi.h"

/*
 * Creates the timer. on_stop is called, in the vCPU thread with the big
 * lock held, when the guest has reached the armed deadline as nearly as
 * it can (or, first, when armed with qsync__stop_timer_arm_first).
 * want_flags asks for the per-vCPU "ran" flags (below) even with shift 0,
 * so that qsync__stop_timer_next_event can tell a halted guest. Returns
 * 0, or -1 after printing a message. Install thread; internals must be
 * present.
 */
int qsync__stop_timer_init(const qemu_info_t *info, unsigned shift, bool want_flags,
                           void (*on_stop)(void));

/* Instruments a block (translation time): the engines call it for every
 * block, and qsync__stop_timer_instrument_halt for each halting
 * instruction in it. Both do nothing when shift is 0. */
void qsync__stop_timer_instrument_tb(struct qemu_plugin_tb *tb);
void qsync__stop_timer_instrument_halt(struct qemu_plugin_insn *insn);

/* Arms the timer for the very first stop, before the guest's first
 * instruction. Install thread. */
void qsync__stop_timer_arm_first(void);

/* Arms the timer for deadline_ns (replacing any earlier arming). Does not
 * read the clock, so it may be called from any thread, including a
 * plugin callback inside a translated block. */
void qsync__stop_timer_arm(uint64_t deadline_ns);

/* Disarms it. Any thread. */
void qsync__stop_timer_cancel(void);

/* Whether the "ran" flags are kept (shift > 0 or want_flags, plugin API
 * 3, and QEMU's cpu_has_work found), so that a halted guest can be told
 * from a busy one without host timing in the answer. */
bool qsync__stop_timer_can_tell_halted(void);

/* At a stop, in on_stop: 0 if some vCPU is running or may run now (it ran
 * a block since its last halting instruction, or has work), or if that
 * cannot be told; else the guest is halted and nothing but a timer of its
 * clock can wake it: the virtual time of the earliest one (devices', the
 * NICs' receive timers), or UINT64_MAX when none is armed. */
uint64_t qsync__stop_timer_next_event(void);

/* Whether it is armed (for the current deadline). */
bool qsync__stop_timer_armed(void);

/* Whether the calling thread is inside on_stop, i.e. at a point where
 * QEMU's clock may be read. */
bool qsync__stop_timer_in_callback(void);

/* Whether QEMU's clock may be read here (qemu_internals.h): outside a
 * vCPU thread, or in the stop timer's callback between two blocks. A stop
 * inside a block (the insn and block engines' callbacks) is not. Needs
 * QEMU's internals. */
bool qsync__stop_timer_safe_point(void);

/* Another of the plugin's QEMU_CLOCK_VIRTUAL timers says that its
 * callback runs (true) or has ended (false): between two blocks, like
 * on_stop, so qsync__stop_timer_safe_point() holds there too. */
void qsync__stop_timer_mark_safe(bool on);

#endif
