/*
 * The statistics qsync-step prints: the period table (Period, Mean,
 * Median, Min, Max, Count, Outliers) over the virtual time between stops,
 * and the wall time each quantum took.
 */
#ifndef QSYNC_CLI_STATS_H
#define QSYNC_CLI_STATS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct qsync__series {
    uint64_t *v;
    size_t n, cap;
};

#define QSYNC__MAX_OUTLIERS 16

struct qsync__summary {
    size_t count;
    double mean;
    double stddev;
    uint64_t median, min, max;
    /* Values more than 3 standard deviations from the mean (and at least
     * 1 away from it): the distinct ones, ascending, up to the limit. */
    uint64_t outliers[QSYNC__MAX_OUTLIERS];
    size_t n_outliers;       /* distinct values listed                  */
    size_t outlier_samples;  /* samples that were outliers, all of them */
};

/* Appends x; returns 0 or -1 when memory runs out. */
int qsync__series_push(struct qsync__series *s, uint64_t x);
void qsync__series_free(struct qsync__series *s);

/* Summarises s (which it sorts a copy of). An empty series gives count 0. */
int qsync__summarize(const struct qsync__series *s, struct qsync__summary *out);

/* Prints the period table, all values in microseconds. */
void qsync__print_period_table(FILE *f, uint64_t quantum_ns, const struct qsync__summary *sum);

/* Prints one line about the wall time per quantum. */
void qsync__print_wall_line(FILE *f, const struct qsync__summary *wall);

#endif
