/*
 * util.c - arithmetic and memory helpers for the freestanding guest.
 *
 * The guest links with -nostdlib, so a plain 64-bit '/' or '%' (which gcc
 * turns into calls to __udivdi3/__umoddi3 on i386) would not link. The
 * routines here only ever divide a 64-bit value by a 32-bit one, which the
 * x86 'divl' instruction does in two steps without overflowing.
 */
#include "guest.h"

/* (hi:lo) / d where hi < d, so the quotient fits 32 bits. */
static inline u32 div_step(u32 hi, u32 lo, u32 d, u32 *rem)
{
    u32 q, r;
    __asm__("divl %4" : "=a"(q), "=d"(r) : "a"(lo), "d"(hi), "rm"(d));
    *rem = r;
    return q;
}

u64 udiv64_32(u64 n, u32 d, u32 *rem)
{
    u32 hi = (u32)(n >> 32);
    u32 lo = (u32)n;
    u32 qhi = hi / d; /* 32-bit division: no helper needed */
    u32 r = hi % d;
    u32 qlo = div_step(r, lo, d, &r);
    if (rem)
        *rem = r;
    return ((u64)qhi << 32) | qlo;
}

u64 muldiv64_32(u64 a, u32 b, u32 d)
{
    /* 64 x 32 -> 96-bit product w2:w1:w0 (64-bit multiplies are inline). */
    u64 plo = (u64)(u32)a * b;
    u64 phi = (u64)(u32)(a >> 32) * b;
    u64 mid = (plo >> 32) + (u32)phi;
    u32 w0 = (u32)plo;
    u32 w1 = (u32)mid;
    u32 w2 = (u32)(phi >> 32) + (u32)(mid >> 32);

    /* Long division of the 96-bit value by d, one 32-bit word at a time. */
    u32 r = w2 % d;
    u32 q2 = w2 / d;
    u32 q1 = div_step(r, w1, d, &r);
    u32 q0 = div_step(r, w0, d, &r);
    if (q2 != 0)
        return ~0ull;
    return ((u64)q1 << 32) | q0;
}

/*
 * gcc may emit calls to memset/memcpy even in freestanding code, so they
 * have to exist. String instructions keep the compiler from turning these
 * bodies back into calls to themselves.
 */
void *memset(void *dst, int c, unsigned int n)
{
    void *d = dst;
    __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
    return dst;
}

void *memcpy(void *dst, const void *src, unsigned int n)
{
    void *d = dst;
    __asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
    return dst;
}
