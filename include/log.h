/* log.h - structured (JSON line) logging to stderr.
 *
 * Never pass a header value, a request body, a URL query string or any key
 * material to these functions: the log is not a place for secrets. Values
 * from the network that are logged (paths, ids) go through log_safe(), which
 * drops control characters and caps length. */
#ifndef BYOK_LOG_H
#define BYOK_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_LEVEL_DEBUG = 0, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

void log_set_level(enum log_level level);
/* Parses "debug" / "info" / "warn" / "error"; returns -1 on anything else. */
int log_level_parse(const char *s, enum log_level *out);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Copies at most out_size-1 printable ASCII bytes of s (len bytes) into out,
 * replacing anything else (quotes, backslashes, control bytes) by '?'. */
const char *log_safe(const char *s, size_t len, char *out, size_t out_size);

/* A rate limit for one kind of line (a static per call site, shared by the
 * threads): at most one line per interval, however often the event
 * happens. Zero-initialised. */
struct log_limit {
    _Atomic long long next_ms;     /* mono_ms() from which the next line may go */
    _Atomic unsigned long skipped; /* events not logged since the last line */
};

/* True when a line may be written now (the caller writes it), and then
 * *skipped is how many events were not logged since the previous line;
 * false (the event is counted) otherwise. */
bool log_limit_allow(struct log_limit *l, int interval_ms, unsigned long *skipped);

#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)

#endif
