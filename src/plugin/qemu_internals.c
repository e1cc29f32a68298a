/*
 * The one place that knows QEMU's internal functions; see
 * qemu_internals.h for how they may be used.
 *
 * Checked on:
 *   QEMU 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1, x86_64 host):
 *     every symbol below, with the prototypes written here.
 *   QEMU 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3, bookworm, x86_64 host):
 *     every required symbol below and icount_update are exported (nm
 *     -D), and the timer engine's tests pass on it (-smp 1, 2 and 4,
 *     idle, shift 3). cpu_has_work is an inline there, so it is absent
 *     (optional: the fallback is all_cpu_threads_idle). The big lock is
 *     qemu_mutex_lock_iothread_impl/qemu_mutex_unlock_iothread, which is
 *     why both spellings are resolved (guest input takes it). The icount
 *     prototypes were read in QEMU 7.x's softmmu/icount.c.
 * Update this list when a version is checked; a QEMU whose binary lacks
 * a symbol (a build without modules exports none of them) simply gets
 * the plugin-API engines.
 *
 * The prototypes, from QEMU's include/qemu/timer.h, system/cpu-timers.h,
 * hw/core/cpu.h and qemu/main-loop.h (unchanged from 7.2 to 10.0 except
 * for the lock's name):
 *   void    timer_init_full(QEMUTimer *, QEMUTimerListGroup *, QEMUClockType,
 *                           int scale, int attributes, QEMUTimerCB *, void *);
 *   void    timer_mod_ns(QEMUTimer *, int64_t expire_time);
 *   void    timer_del(QEMUTimer *);
 *   int64_t qemu_clock_get_ns(QEMUClockType);
 *   int64_t qemu_clock_deadline_ns_all(QEMUClockType, int attr_mask);
 *   int64_t icount_get_raw(void);
 *   bool    all_cpu_threads_idle(void);
 *   bool    qemu_in_vcpu_thread(void);
 *   CPUState *qemu_get_cpu(int index);
 *   void    icount_update(CPUState *);          optional
 *   bool    cpu_has_work(CPUState *);           optional (an inline in 7.2)
 *   void    bql_lock_impl(const char *, int) / bql_unlock(void)        10.0
 *   void    qemu_mutex_lock_iothread_impl(const char *, int) /
 *           qemu_mutex_unlock_iothread(void)                           7.2
 *   bool    bql_locked(void) / qemu_mutex_iothread_locked(void)  10.0 / 7.2
 *   QEMUTimerList *timerlist_new(QEMUClockType,
 *                                QEMUTimerListNotifyCB *, void *);   optional
 *       QEMUTimerListNotifyCB is void (void *opaque, QEMUClockType); a
 *       QEMUTimerListGroup is an array of QEMU_CLOCK_MAX (4) list pointers
 *       (include/qemu/timer.h; exported by 10.0.2 and 7.2.22)
 * The icount mode and shift (qsync__probe_icount; 7.2 to 10.0):
 *   int     use_icount;                 a variable: 0 off, 1 fixed, 2 adaptive
 *   int64_t icount_to_ns(int64_t icount);   2^shift for icount 1
 * For guest input (optional; checked exported on 10.0.2 and 7.2.22, from
 * include/chardev/char.h and include/sysemu|system/sysemu.h):
 *   Chardev *serial_hd(int i);                  NULL when there is none
 *   int     qemu_chr_be_can_write(Chardev *);   bytes the frontend takes now
 *   void    qemu_chr_be_write(Chardev *, const uint8_t *, int len);
 * Enum values used: QEMU_CLOCK_VIRTUAL = 1, SCALE_NS = 1,
 * QEMU_TIMER_ATTR_ALL = 0xffffffff; a NULL timer list group means the
 * main loop's.
 *
 * TEST HOOKS, read once at install from QEMU's environment (which the
 * library passes down from its caller's):
 *   QSYNC_PLUGIN_NO_INTERNALS=1  the probe reports the internals as
 *       missing, as on a QEMU built without modules, so that the
 *       fallbacks (engine=auto -> insn, or block on plugin API 1;
 *       engine=timer refused) can be tested on any QEMU.
 *   QSYNC_PLUGIN_MAIN_TIMER_LIST=1  qsync__vtimer_init_alone declines, so
 *       the stop timer sits in the main loop's list as it did before
 *       (stop_timer.h says what that costs), to measure the difference.
 *   QSYNC_PLUGIN_NO_HALT_SYNC=1  qsync__qemu_icount_sync does nothing, so
 *       QEMU's idle race (engine_timer.c, on_halt) can be measured with
 *       and without the plugin's fix.
 */
#include "qemu_internals.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu_api.h"

#define CLOCK_VIRTUAL 1
#define SCALE_NS 1
#define ATTR_ALL ((int)0xffffffff)

static struct {
    void (*timer_init_full)(void *ts, void *tlg, int type, int scale, int attributes,
                            void (*cb)(void *), void *opaque);
    void (*timer_mod_ns)(void *ts, int64_t expire_time);
    void (*timer_del)(void *ts);
    int64_t (*clock_get_ns)(int type);
    int64_t (*clock_deadline_ns_all)(int type, int attr_mask);
    int64_t (*icount_get_raw)(void);
    bool (*all_cpu_threads_idle)(void);
    bool (*in_vcpu_thread)(void);
    void (*lock)(const char *file, int line);
    void (*unlock)(void);
    void *(*get_cpu)(int index);
    /* optional */
    void (*icount_update)(void *cpu);
    bool (*cpu_has_work)(void *cpu);
    bool (*locked)(void);
    void *(*serial_hd)(int index);
    int (*chr_can_write)(void *chr);
    void (*chr_write)(void *chr, const uint8_t *buf, int len);
    void *(*timerlist_new)(int type, void (*notify)(void *opaque, int type), void *opaque);
} q;

static bool found;
static bool can_sync;

/* Resolves a required symbol; the first one missing is remembered. */
static void *need(const char *name, const char **missing)
{
    void *p = qsync__qemu_sym(name);
    if (p == NULL && *missing == NULL)
        *missing = name;
    return p;
}

bool qsync__qemu_internals_probe(const char **missing)
{
    const char *hook = getenv("QSYNC_PLUGIN_NO_INTERNALS");
    const char *miss = NULL;

    found = false;
    can_sync = false;
    if (hook != NULL && strcmp(hook, "1") == 0) {
        *missing = "QSYNC_PLUGIN_NO_INTERNALS=1 hides them";
        return false;
    }

    q.timer_init_full = (__typeof__(q.timer_init_full))need("timer_init_full", &miss);
    q.timer_mod_ns = (__typeof__(q.timer_mod_ns))need("timer_mod_ns", &miss);
    q.timer_del = (__typeof__(q.timer_del))need("timer_del", &miss);
    q.clock_get_ns = (__typeof__(q.clock_get_ns))need("qemu_clock_get_ns", &miss);
    q.clock_deadline_ns_all =
        (__typeof__(q.clock_deadline_ns_all))need("qemu_clock_deadline_ns_all", &miss);
    q.icount_get_raw = (__typeof__(q.icount_get_raw))need("icount_get_raw", &miss);
    q.all_cpu_threads_idle =
        (__typeof__(q.all_cpu_threads_idle))need("all_cpu_threads_idle", &miss);
    q.in_vcpu_thread = (__typeof__(q.in_vcpu_thread))need("qemu_in_vcpu_thread", &miss);
    q.get_cpu = (__typeof__(q.get_cpu))need("qemu_get_cpu", &miss);

    /* The big lock: 10.0's name first, then 7.2's. */
    q.lock = (__typeof__(q.lock))qsync__qemu_sym("bql_lock_impl");
    q.unlock = (__typeof__(q.unlock))qsync__qemu_sym("bql_unlock");
    if (q.lock == NULL || q.unlock == NULL) {
        q.lock = (__typeof__(q.lock))qsync__qemu_sym("qemu_mutex_lock_iothread_impl");
        q.unlock = (__typeof__(q.unlock))qsync__qemu_sym("qemu_mutex_unlock_iothread");
    }
    if ((q.lock == NULL || q.unlock == NULL) && miss == NULL)
        miss = "bql_lock_impl/bql_unlock (or qemu_mutex_lock_iothread_impl)";

    if (miss != NULL) {
        static char text[160];
        snprintf(text, sizeof text, "missing: %s", miss);
        *missing = text;
        return false;
    }

    q.icount_update = (__typeof__(q.icount_update))qsync__qemu_sym("icount_update");
    hook = getenv("QSYNC_PLUGIN_NO_HALT_SYNC");
    can_sync = q.icount_update != NULL && !(hook != NULL && strcmp(hook, "1") == 0);
    q.cpu_has_work = (__typeof__(q.cpu_has_work))qsync__qemu_sym("cpu_has_work");
    q.locked = (__typeof__(q.locked))qsync__qemu_sym("bql_locked");
    if (q.locked == NULL)
        q.locked = (__typeof__(q.locked))qsync__qemu_sym("qemu_mutex_iothread_locked");
    q.serial_hd = (__typeof__(q.serial_hd))qsync__qemu_sym("serial_hd");
    q.chr_can_write = (__typeof__(q.chr_can_write))qsync__qemu_sym("qemu_chr_be_can_write");
    q.chr_write = (__typeof__(q.chr_write))qsync__qemu_sym("qemu_chr_be_write");
    q.timerlist_new = (__typeof__(q.timerlist_new))qsync__qemu_sym("timerlist_new");
    found = true;
    return true;
}

bool qsync__qemu_internals_found(void)
{
    return found;
}

bool qsync__qemu_can_sync_icount(void)
{
    return can_sync;
}

void qsync__vtimer_init(struct qsync__vtimer *t, void (*cb)(void *), void *opaque)
{
    memset(t, 0, sizeof *t);
    q.timer_init_full(t->opaque, NULL, CLOCK_VIRTUAL, SCALE_NS, 0, cb, opaque);
}

/* A QEMUTimerListGroup is an array of QEMU_CLOCK_MAX (4) list pointers;
 * timer_init_full reads the entry of its clock type only. */
static void *alone_group[8];
static void (*alone_notify)(void *);
static void *alone_opaque;

static void alone_notified(void *opaque, int type)
{
    (void)opaque;
    (void)type;
    alone_notify(alone_opaque);
}

bool qsync__vtimer_init_alone(struct qsync__vtimer *t, void (*notify)(void *), void *opaque)
{
    const char *off = getenv("QSYNC_PLUGIN_MAIN_TIMER_LIST");
    if (q.timerlist_new == NULL || (off != NULL && strcmp(off, "1") == 0))
        return false;
    alone_notify = notify;
    alone_opaque = opaque;
    alone_group[CLOCK_VIRTUAL] = q.timerlist_new(CLOCK_VIRTUAL, alone_notified, NULL);
    if (alone_group[CLOCK_VIRTUAL] == NULL)
        return false;
    memset(t, 0, sizeof *t);
    q.timer_init_full(t->opaque, alone_group, CLOCK_VIRTUAL, SCALE_NS, 0, NULL, NULL);
    return true;
}

void qsync__vtimer_mod(struct qsync__vtimer *t, int64_t expire_ns)
{
    q.timer_mod_ns(t->opaque, expire_ns);
}

void qsync__vtimer_del(struct qsync__vtimer *t)
{
    q.timer_del(t->opaque);
}

int64_t qsync__qemu_vclock_ns(void)
{
    return q.clock_get_ns(CLOCK_VIRTUAL);
}

int64_t qsync__qemu_icount(void)
{
    return q.icount_get_raw();
}

int64_t qsync__qemu_next_vtimer_ns(void)
{
    return q.clock_deadline_ns_all(CLOCK_VIRTUAL, ATTR_ALL);
}

bool qsync__qemu_all_vcpus_idle(void)
{
    return q.all_cpu_threads_idle();
}

bool qsync__qemu_in_vcpu_thread(void)
{
    return !found || q.in_vcpu_thread();
}

int qsync__qemu_vcpu_has_work(unsigned int vcpu_index)
{
    if (q.cpu_has_work == NULL)
        return -1;
    void *cpu = q.get_cpu((int)vcpu_index);
    return cpu != NULL && q.cpu_has_work(cpu);
}

bool qsync__qemu_icount_sync(unsigned int vcpu_index)
{
    if (!can_sync)
        return false;
    void *cpu = q.get_cpu((int)vcpu_index);
    if (cpu == NULL)
        return false;
    q.icount_update(cpu);
    return true;
}

static void lock_bql(void)
{
    q.lock(__FILE__, __LINE__);
}

static void unlock_bql(void)
{
    q.unlock();
}

bool qsync__qemu_can_feed_serial(void)
{
    return found && q.locked != NULL && q.serial_hd != NULL && q.chr_can_write != NULL &&
           q.chr_write != NULL;
}

bool qsync__qemu_has_serial0(void)
{
    return qsync__qemu_can_feed_serial() && q.serial_hd(0) != NULL;
}

long qsync__qemu_feed_serial(const uint8_t *buf, size_t len)
{
    if (!qsync__qemu_can_feed_serial())
        return -1;
    /* The device's state and its interrupt line belong to the big lock:
     * the timer engine stops with it held, the insn engine without. */
    bool take = !q.locked();
    if (take)
        lock_bql();
    long done = 0;
    void *chr = q.serial_hd(0);
    if (chr == NULL) {
        done = -1;
    } else {
        while ((size_t)done < len) {
            int room = q.chr_can_write(chr);
            if (room <= 0)
                break;
            size_t n = len - (size_t)done;
            if (n > (size_t)room)
                n = (size_t)room;
            q.chr_write(chr, buf + done, (int)n);
            done += (long)n;
        }
    }
    if (take)
        unlock_bql();
    return done;
}

/*
 * QEMU (7.2 to 10.0 at least) keeps the icount mode in an exported int-sized
 * variable, use_icount: 0 off, 1 fixed shift, 2 adaptive. Its shift is
 * private, but icount_to_ns(1) is 2^shift. Both are set while QEMU parses
 * its command line, before plugins are installed (checked on 10.0.2).
 */
enum qsync__icount_state qsync__probe_icount(unsigned *shift)
{
    const int *use_icount = qsync__qemu_sym("use_icount");
    int64_t (*to_ns)(int64_t);

    if (use_icount == NULL)
        return QSYNC_ICOUNT_UNKNOWN;
    switch (*use_icount) {
    case 0: return QSYNC_ICOUNT_OFF;
    case 1: break;
    case 2: return QSYNC_ICOUNT_ADAPTIVE;
    default: return QSYNC_ICOUNT_UNKNOWN;
    }

    *shift = QSYNC_SHIFT_UNKNOWN;
    to_ns = (int64_t (*)(int64_t))qsync__qemu_sym("icount_to_ns");
    if (to_ns != NULL) {
        int64_t ns = to_ns(1);
        for (unsigned s = 0; s < 63; s++) {
            if (ns == (int64_t)1 << s)
                *shift = s;
        }
    }
    return QSYNC_ICOUNT_FIXED;
}
