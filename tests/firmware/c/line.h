/* Lines of words, decimal and hex without printf (no float formatting: floats print as the hex
 * of their bits), as the Rust scenarios print them. */
#ifndef REGKERN_FW_LINE_H
#define REGKERN_FW_LINE_H

#include <stdint.h>
#include <string.h>

typedef struct {
    char buf[96];
    unsigned len;
} line;

static inline void line_push(line *l, char c) {
    if (l->len + 1 < sizeof l->buf) l->buf[l->len++] = c;
    l->buf[l->len] = 0;
}

static inline void line_start(line *l, const char *key) {
    l->len = 0;
    l->buf[0] = 0;
    while (*key) line_push(l, *key++);
}

static inline void line_word(line *l, const char *w) {
    line_push(l, ' ');
    while (*w) line_push(l, *w++);
}

static inline void line_digits(line *l, uint64_t v) {
    char d[20];
    int n = 0;
    do {
        d[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) line_push(l, d[--n]);
}

static inline void line_dec(line *l, uint64_t v) {
    line_push(l, ' ');
    line_digits(l, v);
}

static inline void line_int(line *l, int64_t v) {
    line_push(l, ' ');
    if (v < 0) line_push(l, '-');
    line_digits(l, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
}

static inline void line_hex(line *l, uint32_t v) {
    line_push(l, ' ');
    for (int i = 7; i >= 0; i--) line_push(l, "0123456789abcdef"[(v >> (4 * i)) & 0xf]);
}

static inline void line_f32(line *l, float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    line_hex(l, bits);
}

#endif
