/* log.c - JSON-line logger on stderr; one write(2) per line so lines from
 * different threads never interleave. */
#include "common.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static enum log_level min_level = LOG_LEVEL_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(enum log_level level)
{
    min_level = level;
}

int log_level_parse(const char *s, enum log_level *out)
{
    for (size_t i = 0; i < ARRAY_SIZE(level_names); i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

const char *log_safe(const char *s, size_t len, char *out, size_t out_size)
{
    size_t n = 0;
    if (out_size == 0)
        return out;
    for (size_t i = 0; i < len && n + 1 < out_size; i++) {
        unsigned char ch = (unsigned char)s[i];
        out[n++] = (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\') ? (char)ch : '?';
    }
    out[n] = '\0';
    return out;
}

int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level < min_level)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    /* Escape the message for JSON: callers already pass log_safe()'d network
     * values, this only guards the framing. */
    char esc[2048];
    size_t n = 0;
    for (const char *p = msg; *p && n + 7 < sizeof(esc); p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '"' || ch == '\\') {
            esc[n++] = '\\';
            esc[n++] = (char)ch;
        } else if (ch < 0x20) {
            n += (size_t)snprintf(esc + n, sizeof(esc) - n, "\\u%04x", ch);
        } else {
            esc[n++] = (char)ch;
        }
    }
    esc[n] = '\0';

    int64_t ms = now_ms();
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char line[2300];
    int len = snprintf(
        line, sizeof(line),
        "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\",\"level\":\"%s\",\"msg\":\"%s\"}\n",
        tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
        (int)(ms % 1000), level_names[level], esc);
    if (len > 0) {
        ssize_t w = write(STDERR_FILENO, line, (size_t)MIN((size_t)len, sizeof(line) - 1));
        (void)w;
    }
}

bool log_limit_allow(struct log_limit *l, int interval_ms, unsigned long *skipped)
{
    long long now = (long long)mono_ms();
    long long next = atomic_load_explicit(&l->next_ms, memory_order_relaxed);
    /* One thread wins the slot of this interval; the others count. */
    if (now < next ||
        !atomic_compare_exchange_strong_explicit(&l->next_ms, &next, now + interval_ms,
                                                 memory_order_relaxed, memory_order_relaxed)) {
        atomic_fetch_add_explicit(&l->skipped, 1, memory_order_relaxed);
        return false;
    }
    *skipped = atomic_exchange_explicit(&l->skipped, 0, memory_order_relaxed);
    return true;
}
