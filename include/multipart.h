/* multipart.h - multipart/form-data bodies (RFC 7578) and the parameters of
 * a header value ("type/sub; a=b; name=\"v\""): what the meter reads out of
 * an audio upload (the model, stream, the file). Pure, fuzzed. */
#ifndef BYOK_MULTIPART_H
#define BYOK_MULTIPART_H

#include "common.h"

/* The value of parameter name (case-insensitive) in a header value such as
 * `multipart/form-data; boundary="x"` or `form-data; name="file"`, unquoted,
 * copied into out (NUL-terminated). -1 when absent, empty or too long. */
MUST_CHECK int multipart_param(const char *v, size_t len, const char *name, char *out,
                               size_t out_size);

/* One part: its form field name ("" when it has none) and content. Borrowed
 * for the call. */
typedef void (*multipart_part_cb)(void *arg, const char *name, const char *data, size_t len);

/* Calls cb for every complete part of body, in order. A truncated last
 * part is not reported. -1 when content_type is not multipart/form-data
 * with a boundary, or no delimiter is found. */
MUST_CHECK int multipart_parse(const char *body, size_t len, const char *content_type,
                               size_t content_type_len, multipart_part_cb cb, void *arg);

#endif
