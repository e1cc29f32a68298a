/*
 * Counting what this process holds, for the leak checks of the unit and
 * end-to-end tests (Linux /proc).
 */
#ifndef QSYNC_TESTS_PROC_COUNT_H
#define QSYNC_TESTS_PROC_COUNT_H

/* Open file descriptors of this process (entries of /proc/self/fd, the
 * directory's own included), or -1. */
int proc_count_fds(void);

/* Children of this process still around, zombies included, or -1. */
int proc_count_children(void);

#endif
