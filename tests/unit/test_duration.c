/*
 * qsync-step's duration parser (src/cli/duration.c): what it accepts, and
 * the message it gives for what it refuses, since that message is what the
 * user reads after "qsync-step: --quantum 'X': ".
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "duration.h"

#define NO_NUMBER "expected a number with a unit, e.g. 10us or 1ms"
#define NO_UNIT "missing unit (ns, us, ms or s)"
#define BAD_UNIT "unknown unit (use ns, us, ms or s)"
#define TOO_LARGE_NUMBER "number too large"
#define TOO_LARGE "duration too large"
#define TOO_PRECISE "too many decimals"
#define NOT_WHOLE "not a whole number of nanoseconds"

/* Parses text and expects value; the error buffer must come back empty. */
static void expect_ns(const char *text, uint64_t value)
{
    uint64_t ns = 0xdeadbeef;
    char err[128];
    memset(err, 'x', sizeof err);
    if (qsync__parse_duration(text, &ns, err, sizeof err) != 0)
        fail_msg("'%s' refused: %s", text, err);
    if (ns != value)
        fail_msg("'%s' gave %llu ns, expected %llu", text, (unsigned long long)ns,
                 (unsigned long long)value);
    assert_string_equal(err, "");
}

/* Parses text and expects a refusal with exactly this message; the output
 * value must be left alone. */
static void expect_error(const char *text, const char *message)
{
    uint64_t ns = 0xdeadbeef;
    char err[128];
    int rc = qsync__parse_duration(text, &ns, err, sizeof err);
    if (rc != -1)
        fail_msg("'%s' accepted as %llu ns (rc %d)", text, (unsigned long long)ns, rc);
    assert_string_equal(err, message);
    assert_true(ns == 0xdeadbeef);
}

static void test_units(void **state)
{
    (void)state;
    expect_ns("1us", 1000);
    expect_ns("250us", 250000);
    expect_ns("1ms", 1000000);
    expect_ns("2s", 2000000000);
    expect_ns("500ns", 500);
    expect_ns("1ns", 1);
    expect_ns("0ns", 0); /* the parser allows 0; qsync-step refuses it itself */
    expect_ns("10us", 10000);
    expect_ns("007ms", 7000000);
}

static void test_fractions(void **state)
{
    (void)state;
    expect_ns("1.5ms", 1500000);
    expect_ns("0.5us", 500);
    expect_ns("0.001us", 1);
    expect_ns("0.000000001s", 1);   /* nine decimals: the finest a second splits */
    expect_ns("1.000000001s", 1000000001);
    expect_ns("2.50ms", 2500000);
    expect_ns("1.0ns", 1);
    expect_ns("3.ms", 3000000);     /* a bare point is harmless */
    expect_ns(".5ms", 500000);      /* so is a missing integer part */
}

static void test_largest(void **state)
{
    (void)state;
    expect_ns("18446744073ms", 18446744073000000ull);
    expect_ns("18446744073s", 18446744073000000000ull);
    expect_ns("18446744073709551609ns", 18446744073709551609ull);
    expect_ns("18446744073.709551609s", 18446744073709551609ull);
}

static void test_reject_no_unit(void **state)
{
    (void)state;
    expect_error("10", NO_UNIT);
    expect_error("1.5", NO_UNIT);
}

static void test_reject_unknown_unit(void **state)
{
    (void)state;
    expect_error("10m", BAD_UNIT);
    expect_error("10sec", BAD_UNIT);
    expect_error("10US", BAD_UNIT); /* units are lower case */
    expect_error("10 us", BAD_UNIT);
    expect_error("10us ", BAD_UNIT);
    expect_error("1us5", BAD_UNIT);
    expect_error("1.5.ms", BAD_UNIT);
}

static void test_reject_no_number(void **state)
{
    (void)state;
    expect_error("", NO_NUMBER);
    expect_error("us", NO_NUMBER);
    expect_error("ms", NO_NUMBER);
    expect_error(".us", NO_NUMBER);
    expect_error(" 1ms", NO_NUMBER);
    expect_error("+1ms", NO_NUMBER);
}

static void test_reject_negative(void **state)
{
    (void)state;
    expect_error("-1ms", NO_NUMBER);
    expect_error("-0ns", NO_NUMBER);
}

static void test_reject_overflow(void **state)
{
    (void)state;
    /* Too many digits for 64 bits. */
    expect_error("99999999999999999999ns", TOO_LARGE_NUMBER);
    expect_error("100000000000000000000000s", TOO_LARGE_NUMBER);
    /* Fits as a number, not once scaled to nanoseconds. */
    expect_error("18446744074s", TOO_LARGE);
    expect_error("18446744073710ms", TOO_LARGE);
    /* Fits once scaled, but not with the fraction added. */
    expect_error("18446744073.709551616s", TOO_LARGE);
}

static void test_reject_not_whole_ns(void **state)
{
    (void)state;
    /* Ten decimals of a second are refused before any arithmetic. */
    expect_error("0.0000000001s", TOO_PRECISE);
    expect_error("1.0000000000ms", TOO_PRECISE);
    /* Fewer decimals that still split a nanosecond. */
    expect_error("0.5ns", NOT_WHOLE);
    expect_error("1.0001us", NOT_WHOLE);
    expect_error("0.0000001ms", NOT_WHOLE);
}

static void test_error_buffer_optional(void **state)
{
    (void)state;
    uint64_t ns = 0;
    /* No buffer, or a zero-length one: still refused, and nothing written. */
    assert_int_equal(qsync__parse_duration("10", &ns, NULL, 0), -1);
    char one = 'z';
    assert_int_equal(qsync__parse_duration("10", &ns, &one, 0), -1);
    assert_int_equal(one, 'z');
    /* A short buffer holds a truncated, terminated message. */
    char small[8];
    assert_int_equal(qsync__parse_duration("10", &ns, small, sizeof small), -1);
    assert_string_equal(small, "missing");
    assert_int_equal(qsync__parse_duration("10ms", &ns, NULL, 0), 0);
    assert_true(ns == 10000000);
}

int main(void)
{
    const struct CMUnitTest duration[] = {
        cmocka_unit_test(test_units),
        cmocka_unit_test(test_fractions),
        cmocka_unit_test(test_largest),
        cmocka_unit_test(test_reject_no_unit),
        cmocka_unit_test(test_reject_unknown_unit),
        cmocka_unit_test(test_reject_no_number),
        cmocka_unit_test(test_reject_negative),
        cmocka_unit_test(test_reject_overflow),
        cmocka_unit_test(test_reject_not_whole_ns),
        cmocka_unit_test(test_error_buffer_optional),
    };
    return cmocka_run_group_tests_name("duration", duration, NULL, NULL);
}
