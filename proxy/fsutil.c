/* fsutil.c - small file-system helpers (fsutil.h). */
#include "common.h"
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fs_make_dirs(const char *path, bool parent_of_file)
{
    char *dir = strdup(path);
    int rc = -1;
    if (dir == NULL)
        return -1;
    if (parent_of_file) {
        char *slash = strrchr(dir, '/');
        if (slash == NULL || slash == dir) {
            rc = 0;
            goto out;
        }
        *slash = '\0';
    }
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0750) == -1 && errno != EEXIST)
            goto out;
        *p = '/';
    }
    if (mkdir(dir, 0750) == -1 && errno != EEXIST)
        goto out;
    rc = 0;
out:
    free(dir);
    return rc;
}

int fs_sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd == -1)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}
