/* fsutil.h - small file-system helpers the store and the usage writer share. */
#ifndef BYOK_FSUTIL_H
#define BYOK_FSUTIL_H

#include "common.h"

/* mkdir -p (mode 0750) of path itself, or of its directory part when
 * parent_of_file. -1 with errno on failure. */
MUST_CHECK int fs_make_dirs(const char *path, bool parent_of_file);
/* fsync of a directory (a file created, renamed or removed in it is
 * durable). -1 with errno on failure. */
MUST_CHECK int fs_sync_dir(const char *dir);

#endif
