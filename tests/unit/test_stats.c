/* qsync-step's period statistics (src/cli/stats.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stats.h"

static void fill(struct qsync__series *s, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        assert_int_equal(qsync__series_push(s, v), 0);
}

static char *table(uint64_t quantum, const struct qsync__summary *sum)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    qsync__print_period_table(f, quantum, sum);
    fclose(f);
    return buf;
}

static void test_exact_periods(void **state)
{
    (void)state;
    struct qsync__series s = {0};
    fill(&s, 500000, 3000); /* more than one growth of the array */
    struct qsync__summary sum;
    assert_int_equal(qsync__summarize(&s, &sum), 0);
    assert_int_equal(sum.count, 3000);
    assert_int_equal(sum.min, 500000);
    assert_int_equal(sum.max, 500000);
    assert_int_equal(sum.median, 500000);
    assert_true(sum.mean == 500000.0);
    assert_int_equal(sum.n_outliers, 0);
    char *t = table(500000, &sum);
    assert_non_null(strstr(t, "| 500 | 500.00 | 500 | 500 | 500 | 3000 | / |"));
    free(t);
    qsync__series_free(&s);
}

static void test_outliers_listed(void **state)
{
    (void)state;
    struct qsync__series s = {0};
    fill(&s, 100000, 999);
    fill(&s, 100010, 1); /* the +10 ns idle race, say */
    fill(&s, 100001, 0);
    struct qsync__summary sum;
    assert_int_equal(qsync__summarize(&s, &sum), 0);
    assert_int_equal(sum.count, 1000);
    assert_int_equal(sum.max, 100010);
    assert_int_equal(sum.median, 100000);
    assert_int_equal(sum.n_outliers, 1);
    assert_int_equal(sum.outliers[0], 100010);
    assert_int_equal(sum.outlier_samples, 1);
    char *t = table(100000, &sum);
    assert_non_null(strstr(t, "| 100 | 100.00 | 100 | 100 | 100.010 | 1000 | 100.010 |"));
    free(t);
    qsync__series_free(&s);
}

static void test_lower_median_and_empty(void **state)
{
    (void)state;
    struct qsync__series s = {0};
    struct qsync__summary sum;
    assert_int_equal(qsync__summarize(&s, &sum), 0);
    assert_int_equal(sum.count, 0);
    char *t = table(1000, &sum);
    assert_non_null(strstr(t, "| 1 | - | - | - | - | 0 | / |"));
    free(t);
    fill(&s, 4, 1);
    fill(&s, 2, 1);
    assert_int_equal(qsync__summarize(&s, &sum), 0);
    assert_int_equal(sum.median, 2);
    assert_int_equal(sum.n_outliers, 0); /* within 1 of the mean */
    qsync__series_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_periods),
        cmocka_unit_test(test_outliers_listed),
        cmocka_unit_test(test_lower_median_and_empty),
    };
    return cmocka_run_group_tests_name("stats", tests, NULL, NULL);
}
