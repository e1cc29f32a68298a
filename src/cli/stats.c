/* See stats.h. */
#include "stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int qsync__series_push(struct qsync__series *s, uint64_t x)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        uint64_t *v = realloc(s->v, cap * sizeof *v);
        if (!v)
            return -1;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = x;
    return 0;
}

void qsync__series_free(struct qsync__series *s)
{
    free(s->v);
    memset(s, 0, sizeof *s);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

int qsync__summarize(const struct qsync__series *s, struct qsync__summary *out)
{
    memset(out, 0, sizeof *out);
    if (s->n == 0)
        return 0;
    uint64_t *v = malloc(s->n * sizeof *v);
    if (!v)
        return -1;
    memcpy(v, s->v, s->n * sizeof *v);
    qsort(v, s->n, sizeof *v, cmp_u64);
    double sum = 0;
    for (size_t i = 0; i < s->n; i++)
        sum += (double)v[i];
    out->count = s->n;
    out->mean = sum / (double)s->n;
    double var = 0;
    for (size_t i = 0; i < s->n; i++)
        var += ((double)v[i] - out->mean) * ((double)v[i] - out->mean);
    out->stddev = sqrt(var / (double)s->n);
    out->min = v[0];
    out->max = v[s->n - 1];
    /* The lower median for an even count: a value that actually occurred. */
    out->median = v[(s->n - 1) / 2];
    double fence = 3 * out->stddev;
    if (fence < 1)
        fence = 1;
    for (size_t i = 0; i < s->n; i++) {
        if (fabs((double)v[i] - out->mean) <= fence)
            continue;
        out->outlier_samples++;
        if (out->n_outliers > 0 && out->outliers[out->n_outliers - 1] == v[i])
            continue;
        if (out->n_outliers < QSYNC__MAX_OUTLIERS)
            out->outliers[out->n_outliers++] = v[i];
    }
    free(v);
    return 0;
}

/* Prints ns as microseconds, with only the decimals it needs. */
static void print_us(FILE *f, double ns)
{
    double us = ns / 1000.0;
    if (fabs(us - floor(us + 0.5)) < 1e-9)
        fprintf(f, "%.0f", us);
    else
        fprintf(f, "%.3f", us);
}

void qsync__print_period_table(FILE *f, uint64_t quantum_ns, const struct qsync__summary *sum)
{
    fprintf(f, "Virtual period between stops (us):\n");
    fprintf(f, "| Period | Mean | Median | Minimum | Maximum | Count | Outliers |\n");
    fprintf(f, "|--------|------|--------|---------|---------|-------|----------|\n");
    fprintf(f, "| ");
    print_us(f, (double)quantum_ns);
    fprintf(f, " | ");
    if (sum->count) {
        double mean_us = sum->mean / 1000.0;
        fprintf(f, "%.2f | ", mean_us);
        print_us(f, (double)sum->median);
        fprintf(f, " | ");
        print_us(f, (double)sum->min);
        fprintf(f, " | ");
        print_us(f, (double)sum->max);
    } else {
        fprintf(f, "- | - | - | -");
    }
    fprintf(f, " | %zu | ", sum->count);
    if (sum->n_outliers == 0) {
        fprintf(f, "/");
    } else {
        for (size_t i = 0; i < sum->n_outliers; i++) {
            if (i)
                fprintf(f, ", ");
            print_us(f, (double)sum->outliers[i]);
        }
        size_t listed = sum->n_outliers;
        if (sum->outlier_samples > listed)
            fprintf(f, " (%zu samples)", sum->outlier_samples);
    }
    fprintf(f, " |\n");
}

void qsync__print_wall_line(FILE *f, const struct qsync__summary *wall)
{
    if (!wall->count) {
        fprintf(f, "Wall time per quantum: no quanta\n");
        return;
    }
    fprintf(f, "Wall time per quantum (us): mean %.2f, median %.2f, min %.2f, max %.2f, over %zu quanta\n",
            wall->mean / 1000.0, (double)wall->median / 1000.0, (double)wall->min / 1000.0,
            (double)wall->max / 1000.0, wall->count);
}
